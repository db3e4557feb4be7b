//! Item-to-item recommendations against the popularity baseline.

use std::collections::HashSet;

use crate::*;

const GROUPS: u64 = 20;
const PER_GROUP: u64 = 10;

/// Users who buy within one "complementary" group of items (item id =
/// group × 10 + slot), plus one popular item from anywhere; item popularity
/// is skewed (Zipf-like) so the popularity baseline is a fair opponent.
fn planted_baskets(users: usize, seed: u64) -> Vec<Vec<ItemId>> {
    let mut rng = Rng::new(seed);
    let n_items = GROUPS * PER_GROUP;
    // Zipf weights over all items, in a shuffled order.
    let mut order: Vec<u64> = (0..n_items).collect();
    rng.shuffle(&mut order);
    let mut weight = vec![0.0; n_items as usize];
    for (rank, &item) in order.iter().enumerate() {
        weight[item as usize] = 1.0 / (rank as f64 + 1.0);
    }
    let pick = |rng: &mut Rng, items: &[u64]| -> u64 {
        let total: f64 = items.iter().map(|&i| weight[i as usize]).sum();
        let mut t = rng.next_f64() * total;
        for &i in items {
            t -= weight[i as usize];
            if t < 0.0 {
                return i;
            }
        }
        items[items.len() - 1]
    };
    let all: Vec<u64> = (0..n_items).collect();
    (0..users)
        .map(|_| {
            let g = rng.below(GROUPS as usize) as u64;
            let group: Vec<u64> = (g * PER_GROUP..(g + 1) * PER_GROUP).collect();
            let size = 3 + rng.below(3);
            let mut basket: Vec<u64> = Vec::new();
            while basket.len() < size {
                let item = pick(&mut rng, &group);
                if !basket.contains(&item) {
                    basket.push(item);
                }
            }
            let noise = pick(&mut rng, &all);
            if !basket.contains(&noise) {
                basket.insert(rng.below(basket.len() + 1), noise);
            }
            basket
        })
        .collect()
}

#[test]
fn item_item_beats_popularity_on_planted_co_purchases() {
    let train = planted_baskets(3000, 1);
    let test_users = planted_baskets(800, 2);
    // Hold out each test user's last item; the rest is their history.
    let (histories, held): (Vec<Vec<ItemId>>, Vec<Vec<ItemId>>) = test_users
        .iter()
        .map(|b| (b[..b.len() - 1].to_vec(), vec![b[b.len() - 1]]))
        .unzip();
    let popularity = Popularity::fit(&train).unwrap();
    let pop_lists: Vec<Vec<ItemId>> = histories
        .iter()
        .map(|h| {
            let exclude: HashSet<ItemId> = h.iter().copied().collect();
            popularity
                .recommend(&exclude, 10)
                .iter()
                .map(|r| r.item)
                .collect()
        })
        .collect();
    let pop = ranking_metrics(&pop_lists, &held, 10).unwrap();
    for measure in [SimilarityMeasure::Cosine, SimilarityMeasure::Lift] {
        let config = ItemItemConfig {
            measure,
            top_m: 20,
            ..ItemItemConfig::default()
        };
        let model = ItemItemModel::fit(&train, &config).unwrap();
        assert!(
            model.neighbours.values().all(|v| v.len() <= 20),
            "top-M bound"
        );
        let lists: Vec<Vec<ItemId>> = histories
            .iter()
            .map(|h| {
                let exclude: HashSet<ItemId> = h.iter().copied().collect();
                let seeds: Vec<(ItemId, f64)> = h.iter().map(|&i| (i, 1.0)).collect();
                let recs = model.recommend(&seeds, &exclude, 10);
                assert_eq!(recs.len(), 10);
                assert!(recs.iter().all(|r| !exclude.contains(&r.item)));
                recs.iter().map(|r| r.item).collect()
            })
            .collect();
        let m = ranking_metrics(&lists, &held, 10).unwrap();
        eprintln!(
            "{measure:?}: hit-rate@10 {:.3} vs popularity {:.3}; NDCG@10 {:.3} vs {:.3} ({} cases)",
            m.hit_rate, pop.hit_rate, m.ndcg, pop.ndcg, m.cases
        );
        assert!(
            m.hit_rate >= 2.0 * pop.hit_rate,
            "{measure:?} hit rate {} vs {}",
            m.hit_rate,
            pop.hit_rate
        );
        assert!(
            m.ndcg >= 2.0 * pop.ndcg,
            "{measure:?} NDCG {} vs {}",
            m.ndcg,
            pop.ndcg
        );
    }
    // Neighbours of an item are mostly its own group.
    let model = ItemItemModel::fit(&train, &ItemItemConfig::default()).unwrap();
    let top5 = &model.neighbours_of(42)[..5];
    assert!(
        top5.iter().filter(|n| n.item / PER_GROUP == 4).count() >= 4,
        "{top5:?}"
    );
}

#[test]
fn recommend_falls_back_to_popularity_and_respects_exclusions() {
    let baskets = vec![
        vec![1, 2, 3],
        vec![1, 2],
        vec![2, 3],
        vec![4, 5],
        vec![2],
        vec![2, 2, 6],
    ];
    let model = ItemItemModel::fit(
        &baskets,
        &ItemItemConfig {
            shrinkage: 0.0,
            ..ItemItemConfig::default()
        },
    )
    .unwrap();
    // Item 2 is in 5 baskets (duplicates within a basket count once).
    assert_eq!(model.popularity.ranked[0], (2, 5));
    // Cold start: an unknown seed gets popular items only.
    let cold = model.recommend(&[(999, 1.0)], &HashSet::new(), 3);
    assert_eq!(
        cold.iter().map(|r| r.item).collect::<Vec<_>>(),
        vec![2, 1, 3]
    );
    assert!(cold.iter().all(|r| r.source == Source::Popular));
    // Seed 1: similar items first (2, 3), then popular fill; never the seed.
    let recs = model.recommend(&[(1, 1.0)], &HashSet::new(), 4);
    let items: Vec<ItemId> = recs.iter().map(|r| r.item).collect();
    assert_eq!(&items[..2], &[2, 3]);
    assert_eq!(recs[0].source, Source::Similar);
    assert_eq!(recs[2].source, Source::Popular);
    assert!(!items.contains(&1));
    let exclude: HashSet<ItemId> = [2].into_iter().collect();
    let recs = model.recommend(&[(1, 1.0)], &exclude, 10);
    assert!(recs.iter().all(|r| r.item != 2 && r.item != 1));
    assert_eq!(recs.len(), 4, "all remaining items: 3, 4, 5, 6");
    // Cosine with no shrinkage: c/√(n_i n_j); 1 and 2 share 2 of 2 and 4 pair-baskets.
    let s12 = model
        .neighbours_of(1)
        .iter()
        .find(|n| n.item == 2)
        .unwrap()
        .score;
    assert!((s12 - 2.0 / (2.0f64 * 4.0).sqrt()).abs() < 1e-12, "{s12}");
    let back: ItemItemModel = from_json(&to_json(&model).unwrap()).unwrap();
    assert_eq!(back.neighbours_of(1).len(), model.neighbours_of(1).len());
    assert!(matches!(
        ItemItemModel::fit(&[], &ItemItemConfig::default()),
        Err(Error::Empty(_))
    ));
    assert!(matches!(
        ItemItemModel::fit(&[vec![]], &ItemItemConfig::default()),
        Err(Error::Empty(_))
    ));
    assert!(matches!(
        ItemItemModel::fit(
            &baskets,
            &ItemItemConfig {
                top_m: 0,
                ..ItemItemConfig::default()
            }
        ),
        Err(Error::Config(_))
    ));
    assert!(matches!(
        ranking_metrics(&[vec![1]], &[vec![]], 10),
        Err(Error::Empty(_))
    ));
    let perfect = ranking_metrics(&[vec![7, 8]], &[vec![7]], 10).unwrap();
    assert_eq!((perfect.hit_rate, perfect.ndcg), (1.0, 1.0));
    let second = ranking_metrics(&[vec![8, 7]], &[vec![7]], 10).unwrap();
    assert!((second.ndcg - 1.0 / 3f64.log2()).abs() < 1e-12);
}

/// Users with a favourite category who buy one item at a time, each by
/// popularity within the category 80% of the time (anything popular
/// otherwise): taste with no companions, which item-item learns poorly and
/// category affinity learns well.
fn planted_taste(users: usize, seed: u64) -> (Vec<Vec<ItemId>>, Vec<Option<u32>>) {
    const PER_CATEGORY: u64 = 60;
    let mut rng = Rng::new(seed ^ 0x7a57e);
    let n_items = GROUPS * PER_CATEGORY;
    let categories: Vec<Option<u32>> = (0..n_items)
        .map(|i| Some((i / PER_CATEGORY) as u32))
        .collect();
    let zipf = |rng: &mut Rng, n: u64| -> u64 {
        // rank r with weight 1/(r+1)
        let total: f64 = (0..n).map(|r| 1.0 / (r as f64 + 1.0)).sum();
        let mut t = rng.next_f64() * total;
        for r in 0..n {
            t -= 1.0 / (r as f64 + 1.0);
            if t < 0.0 {
                return r;
            }
        }
        n - 1
    };
    let users = (0..users)
        .map(|_| {
            let fav = rng.below(GROUPS as usize) as u64;
            let n = 3 + rng.below(4);
            let mut bought = Vec::new();
            while bought.len() < n {
                let item = if rng.next_f64() < 0.8 {
                    fav * PER_CATEGORY + zipf(&mut rng, PER_CATEGORY)
                } else {
                    zipf(&mut rng, n_items)
                };
                if !bought.contains(&item) {
                    bought.push(item);
                }
            }
            bought
        })
        .collect();
    (users, categories)
}

#[test]
fn category_affinity_learns_taste_that_item_item_misses() {
    let (train, categories) = planted_taste(3000, 5);
    // one-item baskets (no co-purchases) plus each user's history as a basket
    let mut baskets: Vec<Vec<ItemId>> = train.iter().flatten().map(|&i| vec![i]).collect();
    baskets.extend(train.iter().cloned());
    let (test, _) = planted_taste(800, 6);
    let (histories, held): (Vec<Vec<ItemId>>, Vec<Vec<ItemId>>) = test
        .iter()
        .map(|b| (b[..b.len() - 1].to_vec(), vec![b[b.len() - 1]]))
        .unzip();
    let model = HybridModel::fit(
        &baskets,
        &categories,
        &ItemItemConfig::default(),
        Blend::default(),
    )
    .unwrap();
    let affinity = model.affinity.as_ref().expect("categories known");
    assert_eq!(affinity.ranked.len(), GROUPS as usize);
    let eval = |beta: f64| {
        let lists: Vec<Vec<ItemId>> = histories
            .iter()
            .map(|h| {
                let exclude: HashSet<ItemId> = h.iter().copied().collect();
                let seeds: Vec<(ItemId, f64)> = h.iter().map(|&i| (i, 1.0)).collect();
                let blend = Blend {
                    affinity: beta,
                    ..Blend::default()
                };
                let recs = model.recommend_with(&blend, &seeds, &exclude, 10);
                assert_eq!(recs.len(), 10, "filled to k");
                assert!(recs.iter().all(|r| !exclude.contains(&r.item)));
                let unique: HashSet<ItemId> = recs.iter().map(|r| r.item).collect();
                assert_eq!(unique.len(), 10, "no item twice");
                recs.iter().map(|r| r.item).collect()
            })
            .collect();
        ranking_metrics(&lists, &held, 10).unwrap()
    };
    let pop_lists: Vec<Vec<ItemId>> = histories
        .iter()
        .map(|h| {
            let exclude: HashSet<ItemId> = h.iter().copied().collect();
            let recs = model.item_item.popularity.recommend(&exclude, 10);
            recs.iter().map(|r| r.item).collect()
        })
        .collect();
    let pop = ranking_metrics(&pop_lists, &held, 10).unwrap();
    let (ii, half, aff) = (eval(0.0), eval(0.5), eval(1.0));
    eprintln!(
        "hit-rate@10: popularity {:.3}, item-item {:.3}, blend 0.5 {:.3}, affinity {:.3}",
        pop.hit_rate, ii.hit_rate, half.hit_rate, aff.hit_rate
    );
    assert!(aff.hit_rate >= 2.0 * pop.hit_rate, "{aff:?} vs {pop:?}");
    assert!(aff.hit_rate > ii.hit_rate, "{aff:?} vs {ii:?}");
    assert!(half.hit_rate > ii.hit_rate, "{half:?} vs {ii:?}");
    // β = 0 is exactly item-item
    let seeds = [(histories[0][0], 1.0)];
    let plain = Blend {
        affinity: 0.0,
        ..Blend::default()
    };
    assert_eq!(
        model.recommend_with(&plain, &seeds, &HashSet::new(), 10),
        model.item_item.recommend(&seeds, &HashSet::new(), 10)
    );
    // out-of-range blends are brought into range, never NaN scores
    let wild = Blend {
        affinity: f64::NAN,
        sharpness: f64::INFINITY,
        popular: -3.0,
    };
    assert_eq!(
        wild.clamped(),
        Blend {
            affinity: 0.0,
            sharpness: 8.0,
            popular: 0.0
        }
    );
    let pure = Blend {
        affinity: 1.0,
        sharpness: 8.0,
        popular: 0.0,
    };
    let recs = model.recommend_with(&pure, &seeds, &HashSet::new(), 10);
    assert!(recs.iter().all(|r| r.score.is_finite() && r.score > 0.0));
    // no categories at all: no affinity part, and β is then ignored
    let none = HybridModel::fit(
        &baskets,
        &vec![None; categories.len()],
        &ItemItemConfig::default(),
        pure,
    )
    .unwrap();
    assert!(none.affinity.is_none());
    assert_eq!(none.recommend(&seeds, &HashSet::new(), 10).len(), 10);
    let back: HybridModel = from_json(&to_json(&model).unwrap()).unwrap();
    let items = |m: &HybridModel| -> Vec<ItemId> {
        let recs = m.recommend(&seeds, &HashSet::new(), 10);
        recs.iter().map(|r| r.item).collect()
    };
    assert_eq!(items(&back), items(&model));
}
