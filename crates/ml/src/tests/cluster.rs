//! K-means, silhouette, choose_k and RFM segments.

use crate::*;

/// `per` points around each of `centers` with standard deviation `sd`,
/// shuffled; returns rows and true labels.
fn planted(centers: &[Vec<f64>], per: usize, sd: f64, seed: u64) -> (Vec<Vec<f64>>, Vec<usize>) {
    let mut rng = Rng::new(seed);
    let mut rows = Vec::new();
    for (c, center) in centers.iter().enumerate() {
        for _ in 0..per {
            rows.push((
                center
                    .iter()
                    .map(|m| m + sd * rng.normal())
                    .collect::<Vec<f64>>(),
                c,
            ));
        }
    }
    rng.shuffle(&mut rows);
    rows.into_iter().unzip()
}

fn four_centers() -> Vec<Vec<f64>> {
    vec![
        vec![0.0, 0.0, 0.0],
        vec![6.0, 0.0, 0.0],
        vec![0.0, 6.0, 0.0],
        vec![0.0, 0.0, 6.0],
    ]
}

#[test]
fn kmeans_recovers_planted_clusters_and_choose_k_finds_k() {
    let (rows, truth) = planted(&four_centers(), 150, 0.8, 1);
    let model = KMeans::fit(
        &rows,
        &KMeansConfig {
            seed: 9,
            ..KMeansConfig::new(4)
        },
    )
    .unwrap();
    let labels = model.predict(&rows).unwrap();
    let ari = adjusted_rand_index(&truth, &labels).unwrap();
    eprintln!("k-means ARI = {ari:.4}, inertia = {:.1}", model.inertia);
    assert!(ari >= 0.95, "ARI {ari}");
    assert_eq!(model.sizes.iter().sum::<usize>(), rows.len());
    // Same seed, same model.
    let again = KMeans::fit(
        &rows,
        &KMeansConfig {
            seed: 9,
            ..KMeansConfig::new(4)
        },
    )
    .unwrap();
    assert_eq!(model, again);

    let choice = choose_k(&rows, 2..=8, &KMeansConfig::new(2)).unwrap();
    eprintln!(
        "choose_k scores: {:?}",
        choice
            .scores
            .iter()
            .map(|s| (s.k, (s.silhouette * 1000.0).round() / 1000.0))
            .collect::<Vec<_>>()
    );
    assert_eq!(choice.k, 4);
    assert_eq!(choice.scores.len(), 7);
    // JSON keeps every value to within an ulp (serde_json's default parser).
    let back: KMeans = from_json(&to_json(&choice.model).unwrap()).unwrap();
    assert_eq!(back.sizes, choice.model.sizes);
    for (a, b) in back
        .centroids
        .iter()
        .flatten()
        .zip(choice.model.centroids.iter().flatten())
    {
        assert!((a - b).abs() <= 1e-12 * b.abs().max(1.0));
    }
}

#[test]
fn silhouette_of_a_perfect_clustering_is_high() {
    let (rows, truth) = planted(&four_centers(), 100, 0.7, 2);
    let s = silhouette(&rows, &truth, 0).unwrap();
    eprintln!("silhouette (exact, n = {}) = {s:.4}", rows.len());
    assert!(s > 0.7, "{s}");
    // A random labeling scores near 0.
    let mut rng = Rng::new(5);
    let random: Vec<usize> = rows.iter().map(|_| rng.below(4)).collect();
    assert!(silhouette(&rows, &random, 0).unwrap() < 0.1);
    // Above SILHOUETTE_EXACT_MAX the sampled estimate still sees the structure.
    let centers2 = vec![vec![0.0, 0.0], vec![8.0, 0.0]];
    let (big, big_truth) = planted(&centers2, SILHOUETTE_EXACT_MAX / 2 + 200, 1.0, 3);
    assert!(big.len() > SILHOUETTE_EXACT_MAX);
    let sampled = silhouette(&big, &big_truth, 11).unwrap();
    eprintln!("silhouette (sampled, n = {}) = {sampled:.4}", big.len());
    assert!(sampled > 0.7, "{sampled}");
    assert!(matches!(
        silhouette(&rows, &vec![0; rows.len()], 0),
        Err(Error::Degenerate(_))
    ));
}

#[test]
fn kmeans_rejects_degenerate_input() {
    let rows = vec![vec![1.0, 2.0], vec![3.0, 4.0], vec![5.0, 6.0]];
    assert!(matches!(
        KMeans::fit(&[], &KMeansConfig::new(2)),
        Err(Error::Empty(_))
    ));
    assert!(matches!(
        KMeans::fit(&rows, &KMeansConfig::new(4)),
        Err(Error::Degenerate(_))
    ));
    assert!(matches!(
        KMeans::fit(&rows, &KMeansConfig::new(0)),
        Err(Error::Config(_))
    ));
    let same = vec![vec![1.0, 1.0]; 10];
    assert!(matches!(
        KMeans::fit(&same, &KMeansConfig::new(2)),
        Err(Error::Degenerate(_))
    ));
    // k = 1 on constant data is fine: one centroid at the point.
    let one = KMeans::fit(&same, &KMeansConfig::new(1)).unwrap();
    assert_eq!(one.inertia, 0.0);
    assert!(matches!(
        choose_k(&same, 2..=8, &KMeansConfig::new(2)),
        Err(Error::Degenerate(_))
    ));
    let nan = vec![vec![1.0, f64::NAN], vec![0.0, 0.0]];
    assert!(matches!(
        KMeans::fit(&nan, &KMeansConfig::new(1)),
        Err(Error::InvalidValue(_))
    ));
    // k = n distinct points works and has zero inertia.
    let exact = KMeans::fit(&rows, &KMeansConfig::new(3)).unwrap();
    assert!(exact.inertia < 1e-12);
    assert!(exact.centroids.iter().flatten().all(|v| v.is_finite()));
}

#[test]
fn quintile_scores_handle_ties_and_direction() {
    let values: Vec<f64> = (1..=10).map(f64::from).collect();
    assert_eq!(
        quintile_scores(&values, true).unwrap(),
        vec![1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    );
    assert_eq!(
        quintile_scores(&values, false).unwrap(),
        vec![5, 5, 4, 4, 3, 3, 2, 2, 1, 1]
    );
    let tied = [1.0, 1.0, 1.0, 1.0, 9.0];
    let s = quintile_scores(&tied, true).unwrap();
    assert!(
        s[..4].iter().all(|&v| v == s[0]),
        "ties share a score: {s:?}"
    );
    assert_eq!(s[4], 5);
    assert_eq!(quintile_scores(&[2.0; 7], true).unwrap(), vec![3; 7]);
    assert!(matches!(quintile_scores(&[], true), Err(Error::Empty(_))));
    let rfm = rfm_scores(&[1.0, 300.0], &[10.0, 1.0], &[900.0, 20.0]).unwrap();
    assert_eq!(rfm[0].code(), "444");
    assert_eq!(rfm[1].code(), "222");
    assert!(rfm_scores(&[1.0], &[1.0, 2.0], &[1.0]).is_err());
}

fn profile(recency_days: f64, frequency: f64, monetary: f64) -> RfmProfile {
    RfmProfile {
        recency_days,
        frequency,
        monetary,
        size: 100,
    }
}

#[test]
fn segment_names_are_stable_on_handcrafted_profiles() {
    let profiles = vec![
        profile(10.0, 12.0, 1500.0), // champions
        profile(200.0, 1.2, 60.0),   // hibernating
        profile(8.0, 1.1, 50.0),     // new
        profile(120.0, 8.0, 900.0),  // at risk
        profile(25.0, 7.0, 700.0),   // loyal
        profile(30.0, 2.0, 150.0),   // promising
    ];
    let names = name_segments(&profiles).unwrap();
    let want = [
        Segment::Champions,
        Segment::Hibernating,
        Segment::New,
        Segment::AtRisk,
        Segment::Loyal,
        Segment::Promising,
    ];
    assert_eq!(names, want);
    assert_eq!(
        names.iter().map(|s| s.as_str()).collect::<Vec<_>>()[3],
        "at_risk"
    );
    // Names follow the profiles, not their order.
    let mut rev = profiles.clone();
    rev.reverse();
    let mut rev_names = name_segments(&rev).unwrap();
    rev_names.reverse();
    assert_eq!(rev_names, want);
    // Units do not matter (z-scores): spend in cents gives the same names.
    let cents: Vec<RfmProfile> = profiles
        .iter()
        .map(|p| RfmProfile {
            monetary: p.monetary * 100.0,
            ..*p
        })
        .collect();
    assert_eq!(name_segments(&cents).unwrap(), want);
    // Two clusters: good and bad.
    let two = name_segments(&profiles[..2]).unwrap();
    assert_eq!(two, vec![Segment::Champions, Segment::Hibernating]);
    assert_eq!(name_segments(&profiles[..1]).unwrap(), vec![Segment::Loyal]);
    assert!(matches!(name_segments(&[]), Err(Error::Empty(_))));
    assert_eq!(
        serde_json::to_string(&Segment::NeedsAttention).unwrap(),
        "\"needs_attention\""
    );
}

#[test]
fn segmentation_pipeline_end_to_end() {
    // Three planted customer groups in (recency, frequency, monetary).
    let mut rng = Rng::new(8);
    let mut rec = Vec::new();
    let mut freq = Vec::new();
    let mut mon = Vec::new();
    for (r, f, m) in [(10.0, 10.0, 1000.0), (200.0, 1.0, 40.0), (15.0, 1.0, 50.0)] {
        for _ in 0..120 {
            rec.push((r + 5.0 * rng.normal()).max(0.0));
            freq.push((f + 0.5 * rng.normal()).max(1.0));
            mon.push((m + m * 0.1 * rng.normal()).max(1.0));
        }
    }
    let rows: Vec<Vec<f64>> = (0..rec.len())
        .map(|i| vec![rec[i], freq[i], mon[i].ln()])
        .collect();
    let scaler = Standardizer::fit(&rows).unwrap();
    let z = scaler.transform(&rows).unwrap();
    let choice = choose_k(&z, 2..=6, &KMeansConfig::new(2)).unwrap();
    assert_eq!(choice.k, 3);
    let labels = choice.model.predict(&z).unwrap();
    let profiles = cluster_profiles(&rec, &freq, &mon, &labels, choice.k).unwrap();
    let mut names = name_segments(&profiles).unwrap();
    names.sort();
    assert_eq!(
        names,
        vec![Segment::Champions, Segment::New, Segment::Hibernating]
    );
}
