//! The common face of the binary classifiers, so a caller can fit several
//! and keep the better one.

use serde::{Deserialize, Serialize};

use crate::data::check_matrix;
use crate::gbt::GradientBoostedTrees;
use crate::logistic::LogisticRegression;
use crate::metrics::roc_auc;
use crate::{Error, Result};

/// A fitted model that scores rows with a probability of the positive class.
pub trait BinaryClassifier {
    /// A stable snake_case name for reports (`"logistic_regression"`).
    fn name(&self) -> &'static str;

    /// Number of features a row must have.
    fn n_features(&self) -> usize;

    /// The probability of the positive class for one row of
    /// [`Self::n_features`] values (not checked; use [`Self::predict_proba`]
    /// for untrusted input).
    fn predict_proba_row(&self, row: &[f64]) -> f64;

    /// Probabilities for every row, after checking shape and finiteness.
    fn predict_proba(&self, rows: &[Vec<f64>]) -> Result<Vec<f64>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let d = check_matrix(rows, "rows to score")?;
        if d != self.n_features() {
            return Err(Error::Shape(format!(
                "{} expects {} features, rows have {d}",
                self.name(),
                self.n_features()
            )));
        }
        Ok(rows.iter().map(|r| self.predict_proba_row(r)).collect())
    }
}

/// A churn model of either kind, for storing whichever won.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Classifier {
    /// A logistic regression.
    Logistic(LogisticRegression),
    /// A gradient-boosted tree ensemble.
    Gbt(GradientBoostedTrees),
}

impl Classifier {
    fn inner(&self) -> &dyn BinaryClassifier {
        match self {
            Classifier::Logistic(m) => m,
            Classifier::Gbt(m) => m,
        }
    }
}

impl BinaryClassifier for Classifier {
    fn name(&self) -> &'static str {
        self.inner().name()
    }

    fn n_features(&self) -> usize {
        self.inner().n_features()
    }

    fn predict_proba_row(&self, row: &[f64]) -> f64 {
        self.inner().predict_proba_row(row)
    }
}

/// Score every candidate on held-out rows and return the index of the one
/// with the highest ROC AUC (the earlier candidate on a tie) and every AUC,
/// in candidate order.
pub fn select_by_auc(
    candidates: &[&dyn BinaryClassifier],
    x: &[Vec<f64>],
    y: &[bool],
) -> Result<(usize, Vec<f64>)> {
    if candidates.is_empty() {
        return Err(Error::Empty("candidate models"));
    }
    let mut aucs = Vec::with_capacity(candidates.len());
    for model in candidates {
        aucs.push(roc_auc(&model.predict_proba(x)?, y)?);
    }
    let mut best = 0;
    for (i, auc) in aucs.iter().enumerate() {
        if *auc > aucs[best] {
            best = i;
        }
    }
    Ok((best, aucs))
}
