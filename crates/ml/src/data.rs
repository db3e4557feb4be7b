//! Feature matrices and their scaling.
//!
//! A feature matrix is `&[Vec<f64>]`: one `Vec` per row (customer, session),
//! every row the same length, every value finite. [`check_matrix`] enforces
//! that; every fit calls it first.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Check that `rows` is a non-empty rectangular matrix of finite values with
/// at least one column; return the number of columns.
pub fn check_matrix(rows: &[Vec<f64>], what: &'static str) -> Result<usize> {
    let first = rows.first().ok_or(Error::Empty(what))?;
    let d = first.len();
    if d == 0 {
        return Err(Error::Shape(format!("{what}: rows have no columns")));
    }
    for (i, row) in rows.iter().enumerate() {
        if row.len() != d {
            return Err(Error::Shape(format!(
                "{what}: row {i} has {} columns, row 0 has {d}",
                row.len()
            )));
        }
        if let Some(j) = row.iter().position(|v| !v.is_finite()) {
            return Err(Error::InvalidValue(format!(
                "{what}: row {i}, column {j} is not finite ({})",
                row[j]
            )));
        }
    }
    Ok(d)
}

/// Check that `labels` has one entry per row and both classes occur.
pub(crate) fn check_binary_labels(labels: &[bool], n_rows: usize) -> Result<()> {
    if labels.len() != n_rows {
        return Err(Error::Shape(format!(
            "{n_rows} rows but {} labels",
            labels.len()
        )));
    }
    let positives = labels.iter().filter(|&&y| y).count();
    if positives == 0 || positives == labels.len() {
        return Err(Error::Degenerate(format!(
            "labels have one class only ({positives} positive of {})",
            labels.len()
        )));
    }
    Ok(())
}

/// Per-column mean and standard deviation, to map features to z-scores.
///
/// A constant column (standard deviation below `1e-12` times its scale) gets
/// a divisor of 1, so it transforms to all zeros instead of `NaN`;
/// [`Standardizer::constant`] tells which columns those are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Standardizer {
    /// Column means.
    pub means: Vec<f64>,
    /// Column divisors: the population standard deviation, or 1 for a
    /// constant column.
    pub scales: Vec<f64>,
    /// `true` for columns that were constant in the fitting data.
    pub constant: Vec<bool>,
}

impl Standardizer {
    /// Fit means and standard deviations on `rows`.
    pub fn fit(rows: &[Vec<f64>]) -> Result<Self> {
        let d = check_matrix(rows, "standardizer rows")?;
        let n = rows.len() as f64;
        let mut means = vec![0.0; d];
        for row in rows {
            for (m, v) in means.iter_mut().zip(row) {
                *m += v;
            }
        }
        means.iter_mut().for_each(|m| *m /= n);
        let mut vars = vec![0.0; d];
        for row in rows {
            for ((s, v), m) in vars.iter_mut().zip(row).zip(&means) {
                *s += (v - m) * (v - m);
            }
        }
        let mut scales = Vec::with_capacity(d);
        let mut constant = Vec::with_capacity(d);
        for (var, m) in vars.iter().zip(&means) {
            let sd = (var / n).sqrt();
            let is_constant = sd.is_nan() || sd <= 1e-12 * m.abs().max(1.0);
            constant.push(is_constant);
            scales.push(if is_constant { 1.0 } else { sd });
        }
        Ok(Standardizer {
            means,
            scales,
            constant,
        })
    }

    /// Number of columns this standardizer was fitted on.
    pub fn n_features(&self) -> usize {
        self.means.len()
    }

    /// Whether every column was constant (nothing to learn from).
    pub fn all_constant(&self) -> bool {
        self.constant.iter().all(|&c| c)
    }

    /// The z-scores of one row (its length must be [`Self::n_features`]).
    pub fn transform_row(&self, row: &[f64]) -> Vec<f64> {
        row.iter()
            .zip(&self.means)
            .zip(&self.scales)
            .map(|((v, m), s)| (v - m) / s)
            .collect()
    }

    /// The z-scores of every row; checks the shape and values first.
    pub fn transform(&self, rows: &[Vec<f64>]) -> Result<Vec<Vec<f64>>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let d = check_matrix(rows, "rows to standardize")?;
        if d != self.n_features() {
            return Err(Error::Shape(format!(
                "standardizer fitted on {} columns, rows have {d}",
                self.n_features()
            )));
        }
        Ok(rows.iter().map(|r| self.transform_row(r)).collect())
    }

    /// Map a z-score row back to original units.
    pub fn inverse_row(&self, z: &[f64]) -> Vec<f64> {
        z.iter()
            .zip(&self.means)
            .zip(&self.scales)
            .map(|((v, m), s)| v * s + m)
            .collect()
    }
}

/// Squared Euclidean distance of two equally long slices.
pub(crate) fn sq_dist(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}
