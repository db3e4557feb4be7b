//! RFM (recency, frequency, monetary) scores and readable segment names.
//!
//! * [`quintile_scores`] turns one measure into scores 1–5 by rank; equal
//!   values always get equal scores.
//! * [`rfm_scores`] applies it to the three measures (recency: fewer days
//!   since the last order is better).
//! * [`name_segments`] names clusters from their mean RFM profile — see its
//!   rules.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Scores 1–5 by quintile of rank. Each value gets the percentile
/// `(mid_rank − 0.5) / n` (mid-rank: the mean 1-based rank of its tied
/// group, so ties share a score), and score `1 + ⌊5 × percentile⌋`; with
/// `higher_is_better = false` the percentile is mirrored first. A column of
/// equal values scores 3 everywhere.
pub fn quintile_scores(values: &[f64], higher_is_better: bool) -> Result<Vec<u8>> {
    if values.is_empty() {
        return Err(Error::Empty("values to score"));
    }
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(Error::InvalidValue(format!("value {i} is not finite")));
    }
    let n = values.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut scores = vec![0u8; n];
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && values[order[j + 1]] == values[order[i]] {
            j += 1;
        }
        let mid_rank = (i + j) as f64 / 2.0 + 1.0;
        let mut pct = (mid_rank - 0.5) / n as f64;
        if !higher_is_better {
            pct = 1.0 - pct;
        }
        let score = (1.0 + (5.0 * pct).floor()).clamp(1.0, 5.0) as u8;
        for &k in &order[i..=j] {
            scores[k] = score;
        }
        i = j + 1;
    }
    Ok(scores)
}

/// One customer's RFM scores, each 1 (worst) to 5 (best).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RfmScore {
    /// Recency score: 5 for the most recent buyers.
    pub r: u8,
    /// Frequency score: 5 for the most frequent buyers.
    pub f: u8,
    /// Monetary score: 5 for the biggest spenders.
    pub m: u8,
}

impl RfmScore {
    /// The classic three-digit code, e.g. `"545"`.
    pub fn code(&self) -> String {
        format!("{}{}{}", self.r, self.f, self.m)
    }
}

/// RFM scores of every customer from days since the last order, number of
/// orders and total spend (three slices of equal length).
pub fn rfm_scores(
    recency_days: &[f64],
    frequency: &[f64],
    monetary: &[f64],
) -> Result<Vec<RfmScore>> {
    if recency_days.len() != frequency.len() || recency_days.len() != monetary.len() {
        return Err(Error::Shape(format!(
            "recency/frequency/monetary lengths {}/{}/{}",
            recency_days.len(),
            frequency.len(),
            monetary.len()
        )));
    }
    let r = quintile_scores(recency_days, false)?;
    let f = quintile_scores(frequency, true)?;
    let m = quintile_scores(monetary, true)?;
    Ok((0..r.len())
        .map(|i| RfmScore {
            r: r[i],
            f: f[i],
            m: m[i],
        })
        .collect())
}

/// The readable name of a customer segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Segment {
    /// Recent, frequent, high spend: the best cluster.
    Champions,
    /// Recent and above-average value, but not the best.
    Loyal,
    /// Recent, below-average value, not the most recent such cluster.
    Promising,
    /// The most recent of the recent, low-value clusters: new customers.
    New,
    /// Lapsing clusters that are neither the most valuable nor the coldest.
    NeedsAttention,
    /// Lapsing but valuable: the most valuable of the not-recent clusters.
    AtRisk,
    /// Not recent and low value: the coldest cluster.
    Hibernating,
}

impl Segment {
    /// The snake_case name (`"at_risk"`), as stored in score tables.
    pub fn as_str(&self) -> &'static str {
        match self {
            Segment::Champions => "champions",
            Segment::Loyal => "loyal",
            Segment::Promising => "promising",
            Segment::New => "new",
            Segment::NeedsAttention => "needs_attention",
            Segment::AtRisk => "at_risk",
            Segment::Hibernating => "hibernating",
        }
    }
}

/// A cluster's mean RFM measures in raw units.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RfmProfile {
    /// Mean days since the last order (lower is better).
    pub recency_days: f64,
    /// Mean number of orders.
    pub frequency: f64,
    /// Mean spend.
    pub monetary: f64,
    /// Customers in the cluster.
    pub size: usize,
}

/// Mean RFM measures per cluster (`labels[i] < k`); empty clusters get
/// zeros and `size = 0`.
pub fn cluster_profiles(
    recency_days: &[f64],
    frequency: &[f64],
    monetary: &[f64],
    labels: &[usize],
    k: usize,
) -> Result<Vec<RfmProfile>> {
    let n = labels.len();
    if recency_days.len() != n || frequency.len() != n || monetary.len() != n {
        return Err(Error::Shape(
            "RFM measures and labels differ in length".into(),
        ));
    }
    if let Some(&bad) = labels.iter().find(|&&l| l >= k) {
        return Err(Error::InvalidValue(format!("label {bad} ≥ k = {k}")));
    }
    let mut out = vec![
        RfmProfile {
            recency_days: 0.0,
            frequency: 0.0,
            monetary: 0.0,
            size: 0
        };
        k
    ];
    for i in 0..n {
        let p = &mut out[labels[i]];
        p.recency_days += recency_days[i];
        p.frequency += frequency[i];
        p.monetary += monetary[i];
        p.size += 1;
    }
    for p in &mut out {
        if p.size > 0 {
            let s = p.size as f64;
            p.recency_days /= s;
            p.frequency /= s;
            p.monetary /= s;
        }
    }
    Ok(out)
}

fn z_scores(values: &[f64]) -> Vec<f64> {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let sd = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
    if sd.is_nan() || sd <= 1e-12 * mean.abs().max(1.0) {
        return vec![0.0; values.len()];
    }
    values.iter().map(|v| (v - mean) / sd).collect()
}

/// Name clusters from their RFM profiles. Deterministic rules:
///
/// 1. Across clusters, take z-scores of each measure: `r = −z(recency)`
///    (recent is positive), `v = (z(frequency) + z(monetary)) / 2` (value).
/// 2. If every cluster has `r = 0` and `v = 0` (one cluster, or identical
///    profiles), all are [`Segment::Loyal`].
/// 3. Otherwise each cluster falls in a quadrant (`≥ 0` counts as high):
///    * high r, high v: the one with the largest `r + v` is
///      [`Segment::Champions`], the others [`Segment::Loyal`];
///    * high r, low v: the one with the largest `r` is [`Segment::New`], the
///      others [`Segment::Promising`];
///    * low r, high v: the one with the largest `v` is [`Segment::AtRisk`],
///      the others [`Segment::NeedsAttention`];
///    * low r, low v: the one with the smallest `r + v` is
///      [`Segment::Hibernating`], the others [`Segment::NeedsAttention`].
///
/// Ties go to the lower cluster index. Champions, new, at risk and
/// hibernating name at most one cluster each; the other names may repeat.
pub fn name_segments(profiles: &[RfmProfile]) -> Result<Vec<Segment>> {
    if profiles.is_empty() {
        return Err(Error::Empty("cluster profiles"));
    }
    if profiles
        .iter()
        .any(|p| !(p.recency_days.is_finite() && p.frequency.is_finite() && p.monetary.is_finite()))
    {
        return Err(Error::InvalidValue(
            "a cluster profile is not finite".into(),
        ));
    }
    let col = |f: fn(&RfmProfile) -> f64| z_scores(&profiles.iter().map(f).collect::<Vec<_>>());
    let r: Vec<f64> = col(|p| p.recency_days).iter().map(|z| -z).collect();
    let fz = col(|p| p.frequency);
    let mz = col(|p| p.monetary);
    let v: Vec<f64> = fz.iter().zip(&mz).map(|(f, m)| (f + m) / 2.0).collect();
    let k = profiles.len();
    if (0..k).all(|i| r[i] == 0.0 && v[i] == 0.0) {
        return Ok(vec![Segment::Loyal; k]);
    }
    let mut names = vec![Segment::Loyal; k];
    // (quadrant predicate, ranking key (larger wins), primary, secondary)
    type Rule = (fn(f64, f64) -> bool, fn(f64, f64) -> f64, Segment, Segment);
    let rules: [Rule; 4] = [
        (
            |r, v| r >= 0.0 && v >= 0.0,
            |r, v| r + v,
            Segment::Champions,
            Segment::Loyal,
        ),
        (
            |r, v| r >= 0.0 && v < 0.0,
            |r, _| r,
            Segment::New,
            Segment::Promising,
        ),
        (
            |r, v| r < 0.0 && v >= 0.0,
            |_, v| v,
            Segment::AtRisk,
            Segment::NeedsAttention,
        ),
        (
            |r, v| r < 0.0 && v < 0.0,
            |r, v| -(r + v),
            Segment::Hibernating,
            Segment::NeedsAttention,
        ),
    ];
    for (inside, key, primary, secondary) in rules {
        let members: Vec<usize> = (0..k).filter(|&i| inside(r[i], v[i])).collect();
        let mut top: Option<usize> = None;
        for &i in &members {
            names[i] = secondary;
            if top.is_none_or(|t| key(r[i], v[i]) > key(r[t], v[t])) {
                top = Some(i);
            }
        }
        if let Some(t) = top {
            names[t] = primary;
        }
    }
    Ok(names)
}
