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

    /// `Σ weight × similarity` of every neighbour of the seeds that is
    /// neither a seed nor excluded.
    fn similar(
        &self,
        seeds: &[(ItemId, f64)],
        exclude: &HashSet<ItemId>,
        seed_set: &HashSet<ItemId>,
    ) -> HashMap<ItemId, f64> {
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
        scores
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
        let mut ranked: Vec<(ItemId, f64)> = self
            .similar(seeds, exclude, &seed_set)
            .into_iter()
            .collect();
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

/// Category affinity: `P(j | user) = Σ_c P(c | user) · P(j | c)`, the
/// user's category shares (from the seeds' weights) times each item's share
/// of its category's baskets, mixed with plain popularity:
///
/// ```text
/// aff(j) = (1 − μ) · w_c^γ / Σ_c' w_c'^γ · n_j / total_c  +  μ · n_j / N
/// ```
///
/// with `w_c` the seed weight in category `c`, `γ` the sharpness (above 1
/// favours the user's main category), `μ` the popular mix. It learns taste
/// ("buys garden things") where item-item learns companions ("bought with a
/// hose").
///
/// Cost: fit O(items); scoring O(|seeds| + Σ_c scan_c), where each scan
/// (each category the seeds touch, and the overall ranking) stops after
/// `limit` items not skipped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoryAffinity {
    /// The category of each item that has one.
    pub category: BTreeMap<ItemId, u32>,
    /// Each category's items by popularity (baskets holding them), most
    /// first, then by id; indexed by category.
    pub ranked: Vec<Vec<(ItemId, u32)>>,
    /// Baskets summed over each category's items.
    pub totals: Vec<u64>,
    /// Baskets summed over every item (N).
    pub all: u64,
}

/// How [`HybridModel`] mixes its parts; choose it on a validation window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Blend {
    /// β: weight of category affinity against item-item, in `[0, 1]`.
    pub affinity: f64,
    /// γ ≥ 0: sharpness of the category shares.
    pub sharpness: f64,
    /// μ: weight of plain popularity inside the affinity part, in `[0, 1]`.
    pub popular: f64,
}

impl Default for Blend {
    fn default() -> Self {
        Blend {
            affinity: 0.5,
            sharpness: 2.0,
            popular: 0.3,
        }
    }
}

impl Blend {
    /// Out-of-range or non-finite parts brought into range (β and μ to
    /// `[0, 1]`, γ to `[0, 8]`; NaN to 0, or 1 for γ).
    pub fn clamped(self) -> Blend {
        let c = |v: f64, hi: f64, nan: f64| if v.is_nan() { nan } else { v.clamp(0.0, hi) };
        Blend {
            affinity: c(self.affinity, 1.0, 0.0),
            sharpness: c(self.sharpness, 8.0, 1.0),
            popular: c(self.popular, 1.0, 0.0),
        }
    }
}

impl CategoryAffinity {
    /// Fits from item categories (`categories[i]` is item `i`'s category,
    /// `None` if unknown) and the popularity counts. Items with no category
    /// score only through the popular mix.
    pub fn fit(categories: &[Option<u32>], popularity: &Popularity) -> Result<Self> {
        let n_cats = categories.iter().flatten().map(|&c| c as usize + 1).max();
        let Some(n_cats) = n_cats else {
            return Err(Error::Empty("items with a category"));
        };
        let mut ranked = vec![Vec::new(); n_cats];
        let mut category = BTreeMap::new();
        for &(item, count) in &popularity.ranked {
            if let Some(Some(c)) = usize::try_from(item).ok().and_then(|i| categories.get(i)) {
                ranked[*c as usize].push((item, count));
                category.insert(item, *c);
            }
        }
        // popularity.ranked is already most-first then by id
        let totals = ranked
            .iter()
            .map(|r| r.iter().map(|&(_, n)| u64::from(n)).sum())
            .collect();
        let all = popularity.ranked.iter().map(|&(_, n)| u64::from(n)).sum();
        Ok(CategoryAffinity {
            category,
            ranked,
            totals,
            all,
        })
    }

    /// `aff(j)` of at most `limit` items from each category the seeds touch
    /// and `limit` from the overall ranking (`popularity`); seeds with no
    /// known category or a non-positive weight are ignored, and items in
    /// `skip` are passed over.
    pub fn scores(
        &self,
        seeds: &[(ItemId, f64)],
        skip: &HashSet<ItemId>,
        limit: usize,
        blend: &Blend,
        popularity: &Popularity,
    ) -> HashMap<ItemId, f64> {
        let b = blend.clamped();
        let mut share: BTreeMap<u32, f64> = BTreeMap::new();
        for &(item, w) in seeds {
            if let Some(&c) = self.category.get(&item)
                && w > 0.0
                && w.is_finite()
            {
                *share.entry(c).or_insert(0.0) += w;
            }
        }
        let sum: f64 = share.values().map(|w| w.powf(b.sharpness)).sum();
        // candidate → (its category part, its basket count)
        let mut cand: HashMap<ItemId, (f64, u32)> = HashMap::new();
        if sum > 0.0 && sum.is_finite() && b.popular < 1.0 {
            for (&c, w) in &share {
                let total = self.totals[c as usize] as f64;
                if total <= 0.0 {
                    continue;
                }
                let p_c = w.powf(b.sharpness) / sum;
                for &(j, n) in self.ranked[c as usize]
                    .iter()
                    .filter(|(j, _)| !skip.contains(j))
                    .take(limit)
                {
                    cand.insert(j, ((1.0 - b.popular) * p_c * f64::from(n) / total, n));
                }
            }
        }
        if b.popular > 0.0 {
            for &(j, n) in popularity
                .ranked
                .iter()
                .filter(|(j, _)| !skip.contains(j))
                .take(limit)
            {
                cand.entry(j).or_insert((0.0, n));
            }
        }
        let all = self.all.max(1) as f64;
        cand.into_iter()
            .map(|(j, (part, n))| (j, part + b.popular * f64::from(n) / all))
            .collect()
    }
}

/// Item-item similarity blended with category affinity:
/// `score(j) = (1 − β)·ii(j)/max ii + β·aff(j)/max aff`, each part scaled
/// to its best candidate so β means the same whatever the data's scale.
/// `β = 0` is plain item-item; choose the [`Blend`] on a validation window
/// ([`HybridModel::recommend_with`] takes any blend for that).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HybridModel {
    /// Companions: item-to-item neighbours, and the popularity fallback.
    pub item_item: ItemItemModel,
    /// Taste: category affinity (None when no item has a category).
    pub affinity: Option<CategoryAffinity>,
    /// How the parts are mixed.
    pub blend: Blend,
}

impl HybridModel {
    /// Fits both parts from the same baskets; `categories[i]` is item `i`'s
    /// category.
    pub fn fit(
        baskets: &[Vec<ItemId>],
        categories: &[Option<u32>],
        config: &ItemItemConfig,
        blend: Blend,
    ) -> Result<Self> {
        let item_item = ItemItemModel::fit(baskets, config)?;
        let affinity = CategoryAffinity::fit(categories, &item_item.popularity).ok();
        Ok(HybridModel {
            item_item,
            affinity,
            blend: blend.clamped(),
        })
    }

    /// Up to `k` items with the model's own blend; see
    /// [`HybridModel::recommend_with`].
    pub fn recommend(
        &self,
        seeds: &[(ItemId, f64)],
        exclude: &HashSet<ItemId>,
        k: usize,
    ) -> Vec<Recommendation> {
        self.recommend_with(&self.blend, seeds, exclude, k)
    }

    /// Up to `k` items for the seeds with `blend`: never a seed, never in
    /// `exclude`; ranked by blended score, then id; popular items fill the
    /// rest. A candidate that only category affinity proposes is reported
    /// as [`Source::Similar`] too (it is similar in taste).
    pub fn recommend_with(
        &self,
        blend: &Blend,
        seeds: &[(ItemId, f64)],
        exclude: &HashSet<ItemId>,
        k: usize,
    ) -> Vec<Recommendation> {
        let blend = blend.clamped();
        let beta = blend.affinity;
        let affinity = match &self.affinity {
            Some(a) if beta > 0.0 => a,
            _ => return self.item_item.recommend(seeds, exclude, k),
        };
        let seed_set: HashSet<ItemId> = seeds.iter().map(|&(i, _)| i).collect();
        let mut scores = if beta < 1.0 {
            self.item_item.similar(seeds, exclude, &seed_set)
        } else {
            HashMap::new()
        };
        let ii_max = scores.values().copied().fold(0.0, f64::max);
        for s in scores.values_mut() {
            *s *= if ii_max > 0.0 {
                (1.0 - beta) / ii_max
            } else {
                0.0
            };
        }
        let mut skip: HashSet<ItemId> = exclude.union(&seed_set).copied().collect();
        let aff = if seed_set.is_empty() {
            HashMap::new()
        } else {
            affinity.scores(
                seeds,
                &skip,
                k.saturating_mul(4).max(k),
                &blend,
                &self.item_item.popularity,
            )
        };
        let aff_max = aff.values().copied().fold(0.0, f64::max);
        if aff_max > 0.0 {
            for (j, s) in aff {
                *scores.entry(j).or_insert(0.0) += beta * s / aff_max;
            }
        }
        let mut ranked: Vec<(ItemId, f64)> = scores.into_iter().filter(|&(_, s)| s > 0.0).collect();
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
            skip.extend(out.iter().map(|r| r.item));
            let fill = self.item_item.popularity.recommend(&skip, k - out.len());
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
