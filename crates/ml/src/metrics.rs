//! Evaluation metrics: ranking (ROC AUC, precision/recall in the top
//! fraction), probability quality (calibration table, Brier score, log-loss),
//! regression errors (MAE, RMSE) and cluster agreement (adjusted Rand index).
//!
//! Every function validates lengths and finiteness and returns an [`Error`]
//! rather than `NaN`.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

fn check_scores(scores: &[f64], labels_len: usize, what: &'static str) -> Result<()> {
    if scores.is_empty() {
        return Err(Error::Empty(what));
    }
    if scores.len() != labels_len {
        return Err(Error::Shape(format!(
            "{what}: {} scores but {labels_len} labels",
            scores.len()
        )));
    }
    if let Some(i) = scores.iter().position(|s| !s.is_finite()) {
        return Err(Error::InvalidValue(format!(
            "{what}: score {i} is not finite"
        )));
    }
    Ok(())
}

fn check_probabilities(probs: &[f64], what: &'static str) -> Result<()> {
    if let Some(i) = probs.iter().position(|p| !(0.0..=1.0).contains(p)) {
        return Err(Error::InvalidValue(format!(
            "{what}: probability {i} = {} is outside [0, 1]",
            probs[i]
        )));
    }
    Ok(())
}

/// Area under the ROC curve: the probability that a random positive scores
/// above a random negative, ties counting one half (the Mann–Whitney U
/// statistic with mid-ranks). O(n log n).
///
/// Errors if the inputs are empty, of different lengths, non-finite, or
/// contain one class only.
pub fn roc_auc(scores: &[f64], labels: &[bool]) -> Result<f64> {
    check_scores(scores, labels.len(), "roc_auc")?;
    let n_pos = labels.iter().filter(|&&y| y).count();
    let n_neg = labels.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return Err(Error::Degenerate(
            "roc_auc needs both positive and negative labels".into(),
        ));
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Sum of the (1-based, mid-) ranks of the positives.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let mid_rank = (i + j) as f64 / 2.0 + 1.0;
        let positives = order[i..=j].iter().filter(|&&k| labels[k]).count();
        rank_sum += mid_rank * positives as f64;
        i = j + 1;
    }
    let (p, n) = (n_pos as f64, n_neg as f64);
    Ok((rank_sum - p * (p + 1.0) / 2.0) / (p * n))
}

/// Precision and recall when the `fraction` highest-scored rows are
/// selected (e.g. `0.1` for the top decile).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TopFraction {
    /// The fraction asked for.
    pub fraction: f64,
    /// Rows selected: `ceil(fraction × n)`, at least 1.
    pub selected: usize,
    /// Positives among the selected rows / selected rows.
    pub precision: f64,
    /// Positives among the selected rows / all positives.
    pub recall: f64,
    /// Positives / rows in the whole set (the precision of a random pick).
    pub base_rate: f64,
    /// `precision / base_rate`.
    pub lift: f64,
}

/// Precision and recall in the top `fraction` of `scores`. Rows with equal
/// scores are taken in input order, so the result is deterministic.
pub fn precision_recall_at_top(
    scores: &[f64],
    labels: &[bool],
    fraction: f64,
) -> Result<TopFraction> {
    check_scores(scores, labels.len(), "precision_recall_at_top")?;
    if !(fraction > 0.0 && fraction <= 1.0) {
        return Err(Error::Config(format!(
            "top fraction must be in (0, 1], got {fraction}"
        )));
    }
    let total_pos = labels.iter().filter(|&&y| y).count();
    if total_pos == 0 {
        return Err(Error::Degenerate(
            "precision/recall need at least one positive label".into(),
        ));
    }
    let n = scores.len();
    let selected = ((fraction * n as f64).ceil() as usize).clamp(1, n);
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    let hits = order[..selected].iter().filter(|&&i| labels[i]).count();
    let precision = hits as f64 / selected as f64;
    let base_rate = total_pos as f64 / n as f64;
    Ok(TopFraction {
        fraction,
        selected,
        precision,
        recall: hits as f64 / total_pos as f64,
        base_rate,
        lift: precision / base_rate,
    })
}

/// One bin of a calibration table.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CalibrationBin {
    /// Lower edge of the predicted-probability range (inclusive).
    pub lower: f64,
    /// Upper edge (exclusive, except 1.0 for the last bin).
    pub upper: f64,
    /// Rows whose prediction falls in this bin.
    pub count: usize,
    /// Mean predicted probability of those rows (0 when `count` is 0).
    pub mean_predicted: f64,
    /// Fraction of those rows that are positive (0 when `count` is 0).
    pub observed_rate: f64,
}

/// A calibration table with `n_bins` equal-width bins over `[0, 1]`; every
/// bin is returned, empty ones with `count = 0`, so the counts sum to `n`.
pub fn calibration_table(
    probs: &[f64],
    labels: &[bool],
    n_bins: usize,
) -> Result<Vec<CalibrationBin>> {
    check_scores(probs, labels.len(), "calibration_table")?;
    check_probabilities(probs, "calibration_table")?;
    if n_bins == 0 {
        return Err(Error::Config("calibration needs at least one bin".into()));
    }
    let mut sums = vec![(0usize, 0.0f64, 0usize); n_bins];
    for (&p, &y) in probs.iter().zip(labels) {
        let b = ((p * n_bins as f64) as usize).min(n_bins - 1);
        sums[b].0 += 1;
        sums[b].1 += p;
        sums[b].2 += usize::from(y);
    }
    Ok(sums
        .iter()
        .enumerate()
        .map(|(b, &(count, psum, pos))| CalibrationBin {
            lower: b as f64 / n_bins as f64,
            upper: (b + 1) as f64 / n_bins as f64,
            count,
            mean_predicted: if count > 0 { psum / count as f64 } else { 0.0 },
            observed_rate: if count > 0 {
                pos as f64 / count as f64
            } else {
                0.0
            },
        })
        .collect())
}

/// Brier score: mean squared difference of probability and outcome (0 is
/// perfect, 0.25 is a constant 0.5).
pub fn brier_score(probs: &[f64], labels: &[bool]) -> Result<f64> {
    check_scores(probs, labels.len(), "brier_score")?;
    check_probabilities(probs, "brier_score")?;
    let sum: f64 = probs
        .iter()
        .zip(labels)
        .map(|(&p, &y)| (p - f64::from(u8::from(y))).powi(2))
        .sum();
    Ok(sum / probs.len() as f64)
}

/// Mean binary log-loss (cross-entropy) in nats; probabilities are clipped
/// to `[1e-15, 1 - 1e-15]` so a confident mistake costs about 34.5, not ∞.
pub fn log_loss(probs: &[f64], labels: &[bool]) -> Result<f64> {
    check_scores(probs, labels.len(), "log_loss")?;
    check_probabilities(probs, "log_loss")?;
    let sum: f64 = probs
        .iter()
        .zip(labels)
        .map(|(&p, &y)| {
            let p = p.clamp(1e-15, 1.0 - 1e-15);
            if y { -p.ln() } else { -(1.0 - p).ln() }
        })
        .sum();
    Ok(sum / probs.len() as f64)
}

fn check_pairs(pred: &[f64], actual: &[f64], what: &'static str) -> Result<()> {
    check_scores(pred, actual.len(), what)?;
    if actual.iter().any(|a| !a.is_finite()) {
        return Err(Error::InvalidValue(format!(
            "{what}: an actual value is not finite"
        )));
    }
    Ok(())
}

/// Mean absolute error.
pub fn mae(pred: &[f64], actual: &[f64]) -> Result<f64> {
    check_pairs(pred, actual, "mae")?;
    Ok(pred
        .iter()
        .zip(actual)
        .map(|(p, a)| (p - a).abs())
        .sum::<f64>()
        / pred.len() as f64)
}

/// Root mean squared error.
pub fn rmse(pred: &[f64], actual: &[f64]) -> Result<f64> {
    check_pairs(pred, actual, "rmse")?;
    let mse = pred
        .iter()
        .zip(actual)
        .map(|(p, a)| (p - a).powi(2))
        .sum::<f64>()
        / pred.len() as f64;
    Ok(mse.sqrt())
}

/// Adjusted Rand index of two labelings of the same points: 1 for identical
/// partitions (up to renaming), about 0 for independent ones.
pub fn adjusted_rand_index(a: &[usize], b: &[usize]) -> Result<f64> {
    if a.is_empty() {
        return Err(Error::Empty("adjusted_rand_index labels"));
    }
    if a.len() != b.len() {
        return Err(Error::Shape(format!("{} vs {} labels", a.len(), b.len())));
    }
    let ka = a.iter().max().map_or(0, |m| m + 1);
    let kb = b.iter().max().map_or(0, |m| m + 1);
    let mut table = vec![0u64; ka * kb];
    let mut rows = vec![0u64; ka];
    let mut cols = vec![0u64; kb];
    for (&x, &y) in a.iter().zip(b) {
        table[x * kb + y] += 1;
        rows[x] += 1;
        cols[y] += 1;
    }
    let c2 = |v: u64| (v * v.saturating_sub(1)) as f64 / 2.0;
    let index: f64 = table.iter().map(|&v| c2(v)).sum();
    let sum_a: f64 = rows.iter().map(|&v| c2(v)).sum();
    let sum_b: f64 = cols.iter().map(|&v| c2(v)).sum();
    let total = c2(a.len() as u64);
    let expected = sum_a * sum_b / total.max(1.0);
    let max_index = (sum_a + sum_b) / 2.0;
    if (max_index - expected).abs() < 1e-12 {
        // Both labelings put everything in one cluster (or all singletons).
        return Ok(if index == max_index { 1.0 } else { 0.0 });
    }
    Ok((index - expected) / (max_index - expected))
}
