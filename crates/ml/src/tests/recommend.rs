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
