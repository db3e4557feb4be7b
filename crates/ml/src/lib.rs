//! # shoplake-ml
//!
//! The algorithms behind `shoplake ml`: customer segments, churn scores,
//! product recommendations and lifetime value — in plain Rust, with no I/O
//! and no dependency beyond serde. The caller (the jobs and server crates)
//! reads features from curated tables, calls these fits, and writes models
//! (all `Serialize`/`Deserialize`) and scores back to the lake.
//!
//! ```text
//!  curated tables ──► features (rows of f64, item baskets, purchase summaries)
//!      │
//!      ├─ segments:  Standardizer ─► choose_k / KMeans ─► cluster_profiles ─► name_segments
//!      │             rfm_scores (quintiles 1–5)
//!      ├─ churn:     LogisticRegression, GradientBoostedTrees ─► select_by_auc
//!      │             ─► roc_auc, precision_recall_at_top, calibration_table, brier_score
//!      ├─ recs:      HybridModel = ItemItemModel (cosine / lift, shrinkage, top-M)
//!      │             + CategoryAffinity (taste) + Popularity (fallback)
//!      │             ─► recommend(seeds, exclude, k) ─► ranking_metrics (hit-rate, NDCG)
//!      └─ ltv:       BgNbd × GammaGamma = LtvModel::predicted_spend ─► mae vs naive_forecast
//! ```
//!
//! ## Contract
//!
//! * **No panics, no NaN.** Every fit validates its input and returns an
//!   [`Error`] for empty input, ragged rows, non-finite values, a single
//!   class, all-constant features, `k` above the number of distinct points,
//!   or an optimum that is not finite.
//! * **Deterministic.** Randomized steps (k-means++ seeding, silhouette
//!   sampling, row subsampling) take a `seed` and use the crate's own
//!   [`Rng`]; same input and seed, same model, on every platform.
//! * **No global state, no threads, no I/O.** Fits are CPU-bound and
//!   synchronous; run them off the async runtime (`spawn_blocking`).
//!
//! Each module documents its cost and numerical limits.

#![deny(missing_docs)]

mod classifier;
mod data;
mod error;
mod gbt;
mod kmeans;
mod logistic;
mod ltv;
mod metrics;
mod optim;
mod recs;
mod rfm;
mod rng;
mod special;

#[cfg(test)]
mod tests;

pub use classifier::{BinaryClassifier, Classifier, select_by_auc};
pub use data::{Standardizer, check_matrix};
pub use error::{Error, Result};
pub use gbt::{GbtConfig, GradientBoostedTrees, Node, Tree};
pub use kmeans::{
    KChoice, KMeans, KMeansConfig, KScore, SILHOUETTE_EXACT_MAX, choose_k, silhouette,
};
pub use logistic::{LogisticConfig, LogisticRegression};
pub use ltv::{BgNbd, CustomerHistory, GammaGamma, LtvModel, naive_forecast};
pub use metrics::{
    CalibrationBin, TopFraction, adjusted_rand_index, brier_score, calibration_table, log_loss,
    mae, precision_recall_at_top, rmse, roc_auc,
};
pub use optim::{Minimum, NelderMeadConfig, nelder_mead};
pub use recs::{
    Blend, CategoryAffinity, HybridModel, ItemId, ItemItemConfig, ItemItemModel, Neighbour,
    Popularity, RankingMetrics, Recommendation, SimilarityMeasure, Source, ranking_metrics,
};
pub use rfm::{
    RfmProfile, RfmScore, Segment, cluster_profiles, name_segments, quintile_scores, rfm_scores,
};
pub use rng::Rng;
pub use special::{HYP2F1_MAX_TERMS, hyp2f1, ln_gamma};

/// Serialize a fitted model to JSON.
pub fn to_json<T: serde::Serialize>(model: &T) -> Result<String> {
    serde_json::to_string(model).map_err(|e| Error::Json(e.to_string()))
}

/// Read a fitted model from JSON written by [`to_json`].
///
/// Floats come back within one ulp of what was written (serde_json's default
/// float parser); enable serde_json's `float_roundtrip` feature in the final
/// binary if bit-exact round trips matter.
pub fn from_json<T: serde::de::DeserializeOwned>(json: &str) -> Result<T> {
    serde_json::from_str(json).map_err(|e| Error::Json(e.to_string()))
}
