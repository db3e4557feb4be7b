//! Gradient-boosted regression trees for binary log-loss (second-order
//! boosting as in XGBoost/LightGBM, small and exact enough for churn).
//!
//! * Each feature is cut once, before boosting, at up to `n_bins − 1`
//!   quantiles of its values; split finding scans per-node histograms of
//!   gradient and hessian over those bins.
//! * A split is `x ≤ threshold` (left) / `x > threshold` (right), with
//!   threshold one of the cuts; at prediction a `NaN` goes right.
//! * Gain is `½ [G_L²/(H_L+λ) + G_R²/(H_R+λ) − G²/(H+λ)]`; a leaf's value is
//!   `−learning_rate · G/(H+λ)`. Each child must hold `min_leaf` sampled rows.
//! * Each tree sees a seeded `subsample` of the rows.
//!
//! Cost per tree: O(s·d·depth) with `s` sampled rows and `d` features, plus
//! O(n·depth) to update the scores. Memory: one byte per row and feature for
//! the bins.

use serde::{Deserialize, Serialize};

use crate::classifier::BinaryClassifier;
use crate::data::{check_binary_labels, check_matrix};
use crate::logistic::sigmoid;
use crate::rng::Rng;
use crate::{Error, Result};

/// Settings of a boosting run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GbtConfig {
    /// Number of trees.
    pub n_trees: usize,
    /// Shrinkage applied to every leaf, in (0, 1].
    pub learning_rate: f64,
    /// Maximum depth of a tree (1 = stumps), at most 16.
    pub max_depth: usize,
    /// Minimum sampled rows in a leaf, at least 1.
    pub min_leaf: usize,
    /// Histogram bins per feature, 2 to 256.
    pub n_bins: usize,
    /// Fraction of rows each tree is fitted on, in (0, 1].
    pub subsample: f64,
    /// L2 penalty λ on leaf values, ≥ 0.
    pub l2: f64,
    /// Seed of the row sampling.
    pub seed: u64,
}

impl Default for GbtConfig {
    fn default() -> Self {
        GbtConfig {
            n_trees: 150,
            learning_rate: 0.1,
            max_depth: 4,
            min_leaf: 20,
            n_bins: 64,
            subsample: 0.8,
            l2: 1.0,
            seed: 0,
        }
    }
}

/// One node of a tree, stored in a flat vector (the root is node 0).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Node {
    /// An inner node: rows with `x[feature] ≤ threshold` go to `left`.
    Split {
        /// Feature index.
        feature: usize,
        /// Split value (one of the feature's quantile cuts).
        threshold: f64,
        /// Index of the left child.
        left: usize,
        /// Index of the right child.
        right: usize,
    },
    /// A leaf: its contribution to the log-odds (already shrunk).
    Leaf {
        /// Log-odds contribution.
        value: f64,
    },
}

/// One regression tree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tree {
    /// The nodes; node 0 is the root.
    pub nodes: Vec<Node>,
}

impl Tree {
    /// The tree's log-odds contribution for one row.
    pub fn predict_row(&self, row: &[f64]) -> f64 {
        let mut i = 0;
        loop {
            match &self.nodes[i] {
                Node::Leaf { value } => return *value,
                Node::Split {
                    feature,
                    threshold,
                    left,
                    right,
                } => {
                    i = if row[*feature] <= *threshold {
                        *left
                    } else {
                        *right
                    }
                }
            }
        }
    }
}

/// A fitted gradient-boosted tree ensemble.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GradientBoostedTrees {
    /// Log-odds of the training base rate, the starting score.
    pub base_score: f64,
    /// The trees, in boosting order.
    pub trees: Vec<Tree>,
    /// Summed split gain per feature over all trees (unnormalized).
    pub gain: Vec<f64>,
    /// Number of features the model was fitted on.
    pub features: usize,
}

/// Quantile cut points of one column: distinct values below the maximum, at
/// most `n_bins − 1` of them. Empty for a constant column.
fn quantile_cuts(values: &mut [f64], n_bins: usize) -> Vec<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let max = values[n - 1];
    let mut cuts: Vec<f64> = (1..n_bins)
        .map(|q| values[(q * n / n_bins).min(n - 1)])
        .filter(|&c| c < max)
        .collect();
    cuts.dedup();
    cuts
}

struct Trainer<'a> {
    config: &'a GbtConfig,
    cuts: &'a [Vec<f64>],
    /// bins[j][i]: bin of row i in feature j (= number of cuts below the value).
    bins: &'a [Vec<u8>],
    grad: Vec<f64>,
    hess: Vec<f64>,
    gain: Vec<f64>,
    nodes: Vec<Node>,
}

struct BestSplit {
    gain: f64,
    feature: usize,
    bin: usize,
}

impl Trainer<'_> {
    fn leaf(&mut self, g: f64, h: f64) -> usize {
        self.nodes.push(Node::Leaf {
            value: -self.config.learning_rate * g / (h + self.config.l2),
        });
        self.nodes.len() - 1
    }

    fn build(&mut self, rows: &mut [usize], depth: usize) -> usize {
        let (g, h) = rows.iter().fold((0.0, 0.0), |(g, h), &i| {
            (g + self.grad[i], h + self.hess[i])
        });
        let min_leaf = self.config.min_leaf;
        if depth >= self.config.max_depth || rows.len() < 2 * min_leaf {
            return self.leaf(g, h);
        }
        let lambda = self.config.l2;
        let parent = g * g / (h + lambda);
        let mut best: Option<BestSplit> = None;
        for (j, cuts) in self.cuts.iter().enumerate() {
            if cuts.is_empty() {
                continue;
            }
            let mut hist = vec![(0.0f64, 0.0f64, 0usize); cuts.len() + 1];
            let col = &self.bins[j];
            for &i in rows.iter() {
                let cell = &mut hist[col[i] as usize];
                cell.0 += self.grad[i];
                cell.1 += self.hess[i];
                cell.2 += 1;
            }
            let (mut gl, mut hl, mut nl) = (0.0, 0.0, 0usize);
            for (b, cell) in hist[..cuts.len()].iter().enumerate() {
                gl += cell.0;
                hl += cell.1;
                nl += cell.2;
                let nr = rows.len() - nl;
                if nl < min_leaf {
                    continue;
                }
                if nr < min_leaf {
                    break;
                }
                let (gr, hr) = (g - gl, h - hl);
                let gain = 0.5 * (gl * gl / (hl + lambda) + gr * gr / (hr + lambda) - parent);
                if gain > 1e-12 && best.as_ref().is_none_or(|bs| gain > bs.gain) {
                    best = Some(BestSplit {
                        gain,
                        feature: j,
                        bin: b,
                    });
                }
            }
        }
        let Some(split) = best else {
            return self.leaf(g, h);
        };
        self.gain[split.feature] += split.gain;
        let col = &self.bins[split.feature];
        // Partition rows in place: bin ≤ split.bin first.
        let mut mid = 0;
        for k in 0..rows.len() {
            if (col[rows[k]] as usize) <= split.bin {
                rows.swap(k, mid);
                mid += 1;
            }
        }
        let me = self.nodes.len();
        self.nodes.push(Node::Leaf { value: 0.0 });
        let (left_rows, right_rows) = rows.split_at_mut(mid);
        let left = self.build(left_rows, depth + 1);
        let right = self.build(right_rows, depth + 1);
        self.nodes[me] = Node::Split {
            feature: split.feature,
            threshold: self.cuts[split.feature][split.bin],
            left,
            right,
        };
        me
    }
}

impl GradientBoostedTrees {
    /// Boost trees on `x` and binary `y`.
    ///
    /// Errors: empty or ragged `x`, non-finite values, label mismatch, one
    /// class only, every feature constant, or a setting out of range.
    pub fn fit(x: &[Vec<f64>], y: &[bool], config: &GbtConfig) -> Result<Self> {
        let d = check_matrix(x, "gradient boosting rows")?;
        check_binary_labels(y, x.len())?;
        let c = config;
        if c.n_trees == 0
            || !(c.learning_rate > 0.0 && c.learning_rate <= 1.0)
            || c.max_depth == 0
            || c.max_depth > 16
            || c.min_leaf == 0
            || !(2..=256).contains(&c.n_bins)
            || !(c.subsample > 0.0 && c.subsample <= 1.0)
            || !(c.l2 >= 0.0 && c.l2.is_finite())
        {
            return Err(Error::Config(format!(
                "gradient boosting settings out of range: {c:?}"
            )));
        }
        let n = x.len();
        let mut cuts = Vec::with_capacity(d);
        let mut bins = Vec::with_capacity(d);
        for j in 0..d {
            let mut col: Vec<f64> = x.iter().map(|r| r[j]).collect();
            let feature_cuts = quantile_cuts(&mut col, c.n_bins);
            bins.push(
                x.iter()
                    .map(|r| feature_cuts.partition_point(|&cut| cut < r[j]) as u8)
                    .collect::<Vec<u8>>(),
            );
            cuts.push(feature_cuts);
        }
        if cuts.iter().all(|c| c.is_empty()) {
            return Err(Error::Degenerate("every feature is constant".into()));
        }
        let targets: Vec<f64> = y.iter().map(|&v| f64::from(u8::from(v))).collect();
        let rate = targets.iter().sum::<f64>() / n as f64;
        let base_score = (rate / (1.0 - rate)).ln();
        let mut scores = vec![base_score; n];
        let mut rng = Rng::new(c.seed);
        let sample_size = ((c.subsample * n as f64).round() as usize).clamp(1, n);
        let mut all_rows: Vec<usize> = (0..n).collect();
        let mut trainer = Trainer {
            config: c,
            cuts: &cuts,
            bins: &bins,
            grad: vec![0.0; n],
            hess: vec![0.0; n],
            gain: vec![0.0; d],
            nodes: Vec::new(),
        };
        let mut trees = Vec::with_capacity(c.n_trees);
        for _ in 0..c.n_trees {
            for i in 0..n {
                let p = sigmoid(scores[i]);
                trainer.grad[i] = p - targets[i];
                trainer.hess[i] = (p * (1.0 - p)).max(1e-16);
            }
            let rows = if sample_size < n {
                // Partial Fisher–Yates: the first sample_size entries.
                for i in 0..sample_size {
                    let j = i + rng.below(n - i);
                    all_rows.swap(i, j);
                }
                &mut all_rows[..sample_size]
            } else {
                &mut all_rows[..]
            };
            trainer.nodes = Vec::new();
            trainer.build(rows, 0);
            let tree = Tree {
                nodes: std::mem::take(&mut trainer.nodes),
            };
            for (s, row) in scores.iter_mut().zip(x) {
                *s += tree.predict_row(row);
            }
            trees.push(tree);
        }
        if scores.iter().any(|s| !s.is_finite()) {
            return Err(Error::NotConverged(
                "boosting produced non-finite scores".into(),
            ));
        }
        Ok(GradientBoostedTrees {
            base_score,
            trees,
            gain: trainer.gain,
            features: d,
        })
    }

    /// The log-odds of one row.
    pub fn decision_function(&self, row: &[f64]) -> f64 {
        self.base_score + self.trees.iter().map(|t| t.predict_row(row)).sum::<f64>()
    }

    /// Gain importance per feature, normalized to sum to 1 (all zeros if no
    /// tree split).
    pub fn feature_importance(&self) -> Vec<f64> {
        let total: f64 = self.gain.iter().sum();
        if total > 0.0 {
            self.gain.iter().map(|g| g / total).collect()
        } else {
            vec![0.0; self.gain.len()]
        }
    }
}

impl BinaryClassifier for GradientBoostedTrees {
    fn name(&self) -> &'static str {
        "gradient_boosted_trees"
    }

    fn n_features(&self) -> usize {
        self.features
    }

    fn predict_proba_row(&self, row: &[f64]) -> f64 {
        sigmoid(self.decision_function(row))
    }
}
