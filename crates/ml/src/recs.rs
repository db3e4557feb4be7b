//! Item-to-item recommendations from baskets (orders, sessions), a
//! popularity baseline, and offline ranking metrics.
//!
//! ```text
//!  baskets ──► dedupe ──► inverted index item → baskets
//!          ──► per item i: co-occurrence counts c_ij with every j (scratch array)
//!          ──► similarity s_ij, keep the top M neighbours of i
//!  recommend(seeds with weights, exclude, k):
//!          score(j) = Σ_seeds w · s_seed,j  ──► top k, then fill with popular items
//! ```
//!
//! Items are `u64` ids (map product ids to them). Similarities, with `n_i`
//! the baskets holding `i`, `N` the baskets used and `λ` the shrinkage:
//!
//! * cosine: `c_ij / √(n_i·n_j) · c_ij/(c_ij+λ)`
//! * lift: `c_ij·N / (n_i·n_j) · c_ij/(c_ij+λ)`
//!
//! The shrinkage term damps pairs seen only a few times. Cost: time
//! O(Σ_b |b|²) over baskets `b` (baskets above `max_basket` distinct items
//! are skipped for pairs; they still count for popularity), memory
//! O(items + Σ_b |b|) while fitting and O(M × items) in the model.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// An item (product) id.
pub type ItemId = u64;

/// Which similarity [`ItemItemModel`] computes from co-occurrence counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SimilarityMeasure {
    /// Cosine of the items' basket-incidence vectors, shrunk.
    Cosine,
    /// Co-occurrence relative to independence, shrunk; favours rarer items.
    Lift,
}

/// Settings of an item-item fit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemItemConfig {
    /// The similarity measure.
    pub measure: SimilarityMeasure,
    /// Shrinkage λ ≥ 0 in `c/(c+λ)`.
    pub shrinkage: f64,
    /// Neighbours kept per item (M), at least 1.
    pub top_m: usize,
    /// Baskets with more distinct items than this are skipped for pairs.
    pub max_basket: usize,
    /// Pairs seen in fewer baskets than this are dropped.
    pub min_cooccurrence: u32,
}

impl Default for ItemItemConfig {
    fn default() -> Self {
        ItemItemConfig {
            measure: SimilarityMeasure::Cosine,
            shrinkage: 10.0,
            top_m: 50,
            max_basket: 100,
            min_cooccurrence: 1,
        }
    }
}

/// A similar item and its similarity.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Neighbour {
    /// The neighbour item.
    pub item: ItemId,
    /// Its similarity (> 0).
    pub score: f64,
}

/// Where a recommendation came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Similar to the seed items.
    Similar,
    /// Popularity fallback (cold start or too few similar items).
    Popular,
}

/// One recommended item.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Recommendation {
    /// The item.
    pub item: ItemId,
    /// Summed weighted similarity for [`Source::Similar`]; the item's basket
    /// count for [`Source::Popular`].
    pub score: f64,
    /// Where it came from.
    pub source: Source,
}

/// Items ranked by the number of baskets holding them (most first, then by
/// id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Popularity {
    /// `(item, baskets holding it)` in rank order.
    pub ranked: Vec<(ItemId, u32)>,
}

impl Popularity {
    /// Count baskets per item (an item twice in a basket counts once).
    pub fn fit(baskets: &[Vec<ItemId>]) -> Result<Self> {
        let mut counts: HashMap<ItemId, u32> = HashMap::new();
        for basket in baskets {
            let mut items = basket.clone();
            items.sort_unstable();
            items.dedup();
            for item in items {
                *counts.entry(item).or_insert(0) += 1;
            }
        }
        if counts.is_empty() {
            return Err(Error::Empty("baskets with items"));
        }
        let mut ranked: Vec<(ItemId, u32)> = counts.into_iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        Ok(Popularity { ranked })
    }

    /// The `k` most popular items not in `exclude`.
    pub fn recommend(&self, exclude: &HashSet<ItemId>, k: usize) -> Vec<Recommendation> {
        self.ranked
            .iter()
            .filter(|(item, _)| !exclude.contains(item))
            .take(k)
            .map(|&(item, count)| Recommendation {
                item,
                score: f64::from(count),
                source: Source::Popular,
            })
            .collect()
    }
}

/// A fitted item-to-item model: the top M neighbours of every item plus the
/// popularity ranking for the fallback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemItemModel {
    /// The settings it was fitted with.
    pub config: ItemItemConfig,
    /// Neighbours of each item with any, best first.
    pub neighbours: BTreeMap<ItemId, Vec<Neighbour>>,
    /// The popularity fallback.
    pub popularity: Popularity,
}

impl ItemItemModel {
    /// Fit from baskets (one `Vec` of item ids per order or session).
    ///
    /// Errors: no items at all, `top_m = 0`, `max_basket < 2`, negative or
    /// non-finite shrinkage. Baskets with one item teach popularity only.
    pub fn fit(baskets: &[Vec<ItemId>], config: &ItemItemConfig) -> Result<Self> {
        if config.top_m == 0
            || config.max_basket < 2
            || !(config.shrinkage >= 0.0 && config.shrinkage.is_finite())
        {
            return Err(Error::Config(format!(
                "item-item settings out of range: {config:?}"
            )));
        }
        let popularity = Popularity::fit(baskets)?;
        let mut ids: Vec<ItemId> = popularity.ranked.iter().map(|&(i, _)| i).collect();
        ids.sort_unstable();
        let index: HashMap<ItemId, u32> = ids
            .iter()
            .enumerate()
            .map(|(i, &id)| (id, i as u32))
            .collect();
        let n_items = ids.len();
        // Dense, deduplicated baskets eligible for pairs.
        let mut dense: Vec<Vec<u32>> = Vec::new();
        for basket in baskets {
            let mut items: Vec<u32> = basket.iter().map(|id| index[id]).collect();
            items.sort_unstable();
            items.dedup();
            if items.len() >= 2 && items.len() <= config.max_basket {
                dense.push(items);
            }
        }
        let mut item_count = vec![0u32; n_items];
        for b in &dense {
            for &i in b {
                item_count[i as usize] += 1;
            }
        }
        // Inverted index (CSR): baskets of each item.
        let mut starts = vec![0usize; n_items + 1];
        for i in 0..n_items {
            starts[i + 1] = starts[i] + item_count[i] as usize;
        }
        let mut fill = starts.clone();
        let mut postings = vec![0u32; starts[n_items]];
        for (b, basket) in dense.iter().enumerate() {
            for &i in basket {
                postings[fill[i as usize]] = b as u32;
                fill[i as usize] += 1;
            }
        }
        let n_baskets = dense.len() as f64;
        let lambda = config.shrinkage;
        let mut scratch = vec![0u32; n_items];
        let mut touched: Vec<u32> = Vec::new();
        let mut neighbours = BTreeMap::new();
        for i in 0..n_items {
            for &b in &postings[starts[i]..starts[i + 1]] {
                for &j in &dense[b as usize] {
                    if j as usize != i {
                        if scratch[j as usize] == 0 {
                            touched.push(j);
                        }
                        scratch[j as usize] += 1;
                    }
                }
            }
            let ni = f64::from(item_count[i]);
            let mut list: Vec<Neighbour> = Vec::with_capacity(touched.len());
            for &j in &touched {
                let c = scratch[j as usize];
                scratch[j as usize] = 0;
                if c < config.min_cooccurrence {
                    continue;
                }
                let (c, nj) = (f64::from(c), f64::from(item_count[j as usize]));
                let shrink = c / (c + lambda);
                let score = match config.measure {
                    SimilarityMeasure::Cosine => c / (ni * nj).sqrt() * shrink,
                    SimilarityMeasure::Lift => c * n_baskets / (ni * nj) * shrink,
                };
                list.push(Neighbour {
                    item: ids[j as usize],
                    score,
                });
            }
            touched.clear();
            if list.is_empty() {
                continue;
            }
            list.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.item.cmp(&b.item)));
            list.truncate(config.top_m);
            neighbours.insert(ids[i], list);
        }
        Ok(ItemItemModel {
            config: config.clone(),
            neighbours,
            popularity,
        })
    }

    /// The stored neighbours of `item` (empty if unknown).
    pub fn neighbours_of(&self, item: ItemId) -> &[Neighbour] {
        self.neighbours.get(&item).map_or(&[], |v| v.as_slice())
    }

    /// Up to `k` items for a user, session or product page.
    ///
    /// Each candidate scores `Σ weight × similarity` over the `seeds`
    /// (`(item, weight)`, e.g. weights decaying with age; non-positive or
    /// non-finite weights are ignored). Seeds themselves and `exclude`
    /// (e.g. already bought) are never returned. Ranked by score, then id;
    /// if fewer than `k` similar items exist, popular items fill the rest.
    /// Cost: O(|seeds| × M + |candidates| log |candidates|).
    pub fn recommend(
        &self,
        seeds: &[(ItemId, f64)],
        exclude: &HashSet<ItemId>,
        k: usize,
    ) -> Vec<Recommendation> {
        let seed_set: HashSet<ItemId> = seeds.iter().map(|&(i, _)| i).collect();
        let mut scores: HashMap<ItemId, f64> = HashMap::new();
        for &(seed, weight) in seeds {
            if !(weight > 0.0 && weight.is_finite()) {
                continue;
            }
            for nb in self.neighbours_of(seed) {
                if !exclude.contains(&nb.item) && !seed_set.contains(&nb.item) {
                    *scores.entry(nb.item).or_insert(0.0) += weight * nb.score;
                }
            }
        }
        let mut ranked: Vec<(ItemId, f64)> = scores.into_iter().collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        ranked.truncate(k);
        let mut out: Vec<Recommendation> = ranked
            .into_iter()
            .map(|(item, score)| Recommendation {
                item,
                score,
                source: Source::Similar,
            })
            .collect();
        if out.len() < k {
            let mut skip: HashSet<ItemId> = exclude.union(&seed_set).copied().collect();
            skip.extend(out.iter().map(|r| r.item));
            let fill = self.popularity.recommend(&skip, k - out.len());
            out.extend(fill);
        }
        out
    }
}

/// Hit rate and NDCG at k over a set of evaluation cases.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RankingMetrics {
    /// The cut-off.
    pub k: usize,
    /// Cases evaluated (those with at least one relevant item).
    pub cases: usize,
    /// Fraction of cases with a relevant item in the top k.
    pub hit_rate: f64,
    /// Mean NDCG@k with binary relevance:
    /// `Σ_{rank r ≤ k, relevant} 1/log2(r+1)` over its ideal value.
    pub ndcg: f64,
}

/// Hit rate@k and NDCG@k of `recommended[c]` (ranked lists) against
/// `relevant[c]` (held-out items) for every case `c`. Cases without relevant
/// items are skipped; errors if none remain or the lengths differ.
pub fn ranking_metrics(
    recommended: &[Vec<ItemId>],
    relevant: &[Vec<ItemId>],
    k: usize,
) -> Result<RankingMetrics> {
    if recommended.len() != relevant.len() {
        return Err(Error::Shape(format!(
            "{} recommendation lists but {} relevant sets",
            recommended.len(),
            relevant.len()
        )));
    }
    if k == 0 {
        return Err(Error::Config("ranking metrics need k ≥ 1".into()));
    }
    let (mut cases, mut hits, mut ndcg_sum) = (0usize, 0usize, 0.0);
    for (recs, rel) in recommended.iter().zip(relevant) {
        let rel: HashSet<ItemId> = rel.iter().copied().collect();
        if rel.is_empty() {
            continue;
        }
        cases += 1;
        let mut seen = HashSet::new();
        let mut dcg = 0.0;
        let mut hit = false;
        for (r, item) in recs.iter().take(k).enumerate() {
            if rel.contains(item) && seen.insert(*item) {
                dcg += 1.0 / ((r + 2) as f64).log2();
                hit = true;
            }
        }
        let ideal: f64 = (0..rel.len().min(k))
            .map(|r| 1.0 / ((r + 2) as f64).log2())
            .sum();
        hits += usize::from(hit);
        ndcg_sum += dcg / ideal;
    }
    if cases == 0 {
        return Err(Error::Empty("evaluation cases with relevant items"));
    }
    Ok(RankingMetrics {
        k,
        cases,
        hit_rate: hits as f64 / cases as f64,
        ndcg: ndcg_sum / cases as f64,
    })
}
