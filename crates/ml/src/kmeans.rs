//! K-means clustering (k-means++ seeding, Lloyd iterations, restarts),
//! silhouette scores and choosing k by silhouette.
//!
//! Run it on standardized features ([`crate::Standardizer`]): distances are
//! Euclidean, so a feature in cents would otherwise drown one in days.
//!
//! Cost: one Lloyd iteration is O(n·k·d); a fit is at most
//! `n_init × max_iter` of them. [`silhouette`] is O(m²·d) with
//! `m = min(n, SILHOUETTE_EXACT_MAX)`.

use std::ops::RangeInclusive;

use serde::{Deserialize, Serialize};

use crate::data::{check_matrix, sq_dist};
use crate::rng::Rng;
use crate::{Error, Result};

/// Above this many points, [`silhouette`] is computed on a seeded uniform
/// sample of this many points (distances within the sample only), as
/// scikit-learn's `sample_size` does. At or below it, it is exact.
pub const SILHOUETTE_EXACT_MAX: usize = 5_000;

/// Settings of a k-means fit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KMeansConfig {
    /// Number of clusters, at least 1 and at most the number of distinct
    /// points.
    pub k: usize,
    /// Lloyd iterations per restart at most.
    pub max_iter: usize,
    /// Stop a restart when the summed squared centroid movement falls below
    /// `tol ×` the mean per-feature variance of the data.
    pub tol: f64,
    /// Restarts from independent k-means++ seedings; the lowest inertia wins.
    pub n_init: usize,
    /// Seed of the seedings.
    pub seed: u64,
}

impl KMeansConfig {
    /// `k` clusters with defaults: 300 iterations, `tol = 1e-6`, 5 restarts,
    /// seed 0.
    pub fn new(k: usize) -> Self {
        KMeansConfig {
            k,
            max_iter: 300,
            tol: 1e-6,
            n_init: 5,
            seed: 0,
        }
    }
}

/// A fitted k-means model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KMeans {
    /// One centroid per cluster, in the (standardized) feature space of the
    /// fit.
    pub centroids: Vec<Vec<f64>>,
    /// Points per cluster in the fitting data.
    pub sizes: Vec<usize>,
    /// Sum of squared distances of the fitting points to their centroid.
    pub inertia: f64,
    /// Lloyd iterations of the winning restart.
    pub iterations: usize,
}

fn nearest(centroids: &[Vec<f64>], row: &[f64]) -> (usize, f64) {
    let mut best = (0, f64::INFINITY);
    for (c, centroid) in centroids.iter().enumerate() {
        let d = sq_dist(centroid, row);
        if d < best.1 {
            best = (c, d);
        }
    }
    best
}

/// Number of distinct rows (exact, by bit pattern, `-0.0` = `0.0`).
fn distinct_rows(data: &[Vec<f64>]) -> usize {
    let mut keys: Vec<Vec<u64>> = data
        .iter()
        .map(|r| r.iter().map(|v| (v + 0.0).to_bits()).collect())
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys.len()
}

impl KMeans {
    /// Cluster `data` (rows of equal length, finite values).
    ///
    /// Errors: empty or ragged data, `k = 0`, `n_init = 0`, or fewer distinct
    /// points than `k`.
    pub fn fit(data: &[Vec<f64>], config: &KMeansConfig) -> Result<Self> {
        let d = check_matrix(data, "k-means data")?;
        if config.k == 0 || config.n_init == 0 || config.max_iter == 0 {
            return Err(Error::Config(
                "k-means needs k, n_init and max_iter ≥ 1".into(),
            ));
        }
        if config.tol.is_nan() || config.tol < 0.0 {
            return Err(Error::Config(format!(
                "k-means tol must be ≥ 0, got {}",
                config.tol
            )));
        }
        let distinct = distinct_rows(data);
        if config.k > distinct {
            return Err(Error::Degenerate(format!(
                "k = {} clusters but only {distinct} distinct points (of {})",
                config.k,
                data.len()
            )));
        }
        let mean_var = {
            let n = data.len() as f64;
            let mut total = 0.0;
            for j in 0..d {
                let m = data.iter().map(|r| r[j]).sum::<f64>() / n;
                total += data.iter().map(|r| (r[j] - m).powi(2)).sum::<f64>() / n;
            }
            total / d as f64
        };
        let threshold = config.tol * mean_var;
        let mut rng = Rng::new(config.seed);
        let mut best: Option<KMeans> = None;
        for _ in 0..config.n_init {
            let mut run_rng = Rng::new(rng.fork());
            let model = lloyd(
                data,
                config,
                plus_plus(data, config.k, &mut run_rng),
                threshold,
            );
            if best.as_ref().is_none_or(|b| model.inertia < b.inertia) {
                best = Some(model);
            }
        }
        best.ok_or_else(|| Error::NotConverged("k-means ran no restart".into()))
    }

    /// Number of clusters.
    pub fn k(&self) -> usize {
        self.centroids.len()
    }

    /// The nearest centroid of one row.
    pub fn predict_row(&self, row: &[f64]) -> usize {
        nearest(&self.centroids, row).0
    }

    /// The nearest centroid of every row.
    pub fn predict(&self, data: &[Vec<f64>]) -> Result<Vec<usize>> {
        if data.is_empty() {
            return Ok(Vec::new());
        }
        let d = check_matrix(data, "k-means rows to predict")?;
        if d != self.centroids[0].len() {
            return Err(Error::Shape(format!(
                "model has {} features, rows have {d}",
                self.centroids[0].len()
            )));
        }
        Ok(data.iter().map(|r| self.predict_row(r)).collect())
    }
}

/// k-means++ seeding: the first centroid uniformly, each next one with
/// probability proportional to its squared distance to the nearest chosen.
fn plus_plus(data: &[Vec<f64>], k: usize, rng: &mut Rng) -> Vec<Vec<f64>> {
    let n = data.len();
    let mut centroids = vec![data[rng.below(n)].clone()];
    let mut dist: Vec<f64> = data.iter().map(|r| sq_dist(r, &centroids[0])).collect();
    while centroids.len() < k {
        let total: f64 = dist.iter().sum();
        let pick = if total > 0.0 {
            let mut target = rng.next_f64() * total;
            let mut chosen = n - 1;
            for (i, &w) in dist.iter().enumerate() {
                if target < w {
                    chosen = i;
                    break;
                }
                target -= w;
            }
            // Rounding can land on an already chosen point (weight 0).
            if dist[chosen] == 0.0 {
                dist.iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map_or(0, |(i, _)| i)
            } else {
                chosen
            }
        } else {
            rng.below(n)
        };
        let c = data[pick].clone();
        for (dd, r) in dist.iter_mut().zip(data) {
            *dd = dd.min(sq_dist(r, &c));
        }
        centroids.push(c);
    }
    centroids
}

fn lloyd(
    data: &[Vec<f64>],
    config: &KMeansConfig,
    mut centroids: Vec<Vec<f64>>,
    threshold: f64,
) -> KMeans {
    let (k, d) = (centroids.len(), data[0].len());
    let mut labels = vec![0usize; data.len()];
    let mut dists = vec![0.0; data.len()];
    let mut iterations = 0;
    for _ in 0..config.max_iter {
        iterations += 1;
        for (i, row) in data.iter().enumerate() {
            (labels[i], dists[i]) = nearest(&centroids, row);
        }
        let mut sums = vec![vec![0.0; d]; k];
        let mut counts = vec![0usize; k];
        for (row, &l) in data.iter().zip(&labels) {
            counts[l] += 1;
            sums[l].iter_mut().zip(row).for_each(|(s, v)| *s += v);
        }
        // An empty cluster takes the point farthest from its centroid.
        for c in 0..k {
            if counts[c] == 0 {
                let far = dists
                    .iter()
                    .enumerate()
                    .filter(|&(i, _)| counts[labels[i]] > 1)
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map_or(0, |(i, _)| i);
                let old = labels[far];
                counts[old] -= 1;
                sums[old]
                    .iter_mut()
                    .zip(&data[far])
                    .for_each(|(s, v)| *s -= v);
                labels[far] = c;
                dists[far] = 0.0;
                counts[c] = 1;
                sums[c] = data[far].clone();
            }
        }
        let mut shift = 0.0;
        for c in 0..k {
            let new: Vec<f64> = sums[c].iter().map(|s| s / counts[c] as f64).collect();
            shift += sq_dist(&new, &centroids[c]);
            centroids[c] = new;
        }
        if shift <= threshold {
            break;
        }
    }
    let mut sizes = vec![0usize; k];
    let mut inertia = 0.0;
    for row in data {
        let (l, dd) = nearest(&centroids, row);
        sizes[l] += 1;
        inertia += dd;
    }
    KMeans {
        centroids,
        sizes,
        inertia,
        iterations,
    }
}

/// Mean silhouette coefficient of a labeling: for each point,
/// `(b − a) / max(a, b)` with `a` its mean distance to its own cluster and
/// `b` the smallest mean distance to another cluster; points alone in their
/// cluster score 0. Between −1 and 1, higher is better.
///
/// Exact for `n ≤ SILHOUETTE_EXACT_MAX`; above, computed on a uniform sample
/// of that many points drawn with `seed`. Errors unless at least two
/// clusters occur (in the sample).
pub fn silhouette(data: &[Vec<f64>], labels: &[usize], seed: u64) -> Result<f64> {
    check_matrix(data, "silhouette data")?;
    if labels.len() != data.len() {
        return Err(Error::Shape(format!(
            "{} rows but {} labels",
            data.len(),
            labels.len()
        )));
    }
    let mut idx: Vec<usize> = (0..data.len()).collect();
    if idx.len() > SILHOUETTE_EXACT_MAX {
        Rng::new(seed).shuffle(&mut idx);
        idx.truncate(SILHOUETTE_EXACT_MAX);
        idx.sort_unstable();
    }
    let k = idx.iter().map(|&i| labels[i]).max().unwrap_or(0) + 1;
    let mut sizes = vec![0usize; k];
    for &i in &idx {
        sizes[labels[i]] += 1;
    }
    if sizes.iter().filter(|&&s| s > 0).count() < 2 {
        return Err(Error::Degenerate(
            "silhouette needs at least two non-empty clusters".into(),
        ));
    }
    let m = idx.len();
    // sums[p * k + c] = summed distance from sample point p to cluster c.
    let mut sums = vec![0.0; m * k];
    for p in 0..m {
        for q in (p + 1)..m {
            let dist = sq_dist(&data[idx[p]], &data[idx[q]]).sqrt();
            sums[p * k + labels[idx[q]]] += dist;
            sums[q * k + labels[idx[p]]] += dist;
        }
    }
    let mut total = 0.0;
    for p in 0..m {
        let own = labels[idx[p]];
        if sizes[own] <= 1 {
            continue;
        }
        let a = sums[p * k + own] / (sizes[own] - 1) as f64;
        let b = (0..k)
            .filter(|&c| c != own && sizes[c] > 0)
            .map(|c| sums[p * k + c] / sizes[c] as f64)
            .fold(f64::INFINITY, f64::min);
        let denom = a.max(b);
        if denom > 0.0 {
            total += (b - a) / denom;
        }
    }
    Ok(total / m as f64)
}

/// Silhouette and inertia of one candidate k.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct KScore {
    /// Number of clusters.
    pub k: usize,
    /// Mean silhouette of the fit's labeling.
    pub silhouette: f64,
    /// Inertia of the fit.
    pub inertia: f64,
}

/// The outcome of [`choose_k`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KChoice {
    /// The k with the highest silhouette (the smaller k on a tie).
    pub k: usize,
    /// The model fitted with that k.
    pub model: KMeans,
    /// Every candidate tried, in increasing k.
    pub scores: Vec<KScore>,
}

/// Fit k-means for every k in `ks` (values below 2 or above the number of
/// distinct points are skipped) with `base`'s other settings, and keep the k
/// with the best silhouette. Cost: one fit and one silhouette per k.
pub fn choose_k(
    data: &[Vec<f64>],
    ks: RangeInclusive<usize>,
    base: &KMeansConfig,
) -> Result<KChoice> {
    check_matrix(data, "choose_k data")?;
    let distinct = distinct_rows(data);
    let mut best: Option<(f64, KMeans)> = None;
    let mut scores = Vec::new();
    for k in ks.filter(|&k| k >= 2 && k <= distinct) {
        let model = KMeans::fit(data, &KMeansConfig { k, ..base.clone() })?;
        let labels = model.predict(data)?;
        let s = silhouette(data, &labels, base.seed)?;
        scores.push(KScore {
            k,
            silhouette: s,
            inertia: model.inertia,
        });
        if best.as_ref().is_none_or(|(bs, _)| s > *bs) {
            best = Some((s, model));
        }
    }
    let (_, model) = best.ok_or_else(|| {
        Error::Degenerate(format!(
            "no k in the range fits: need 2 ≤ k ≤ {distinct} distinct points"
        ))
    })?;
    Ok(KChoice {
        k: model.k(),
        model,
        scores,
    })
}
