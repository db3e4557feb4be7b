//! Special functions, the generator, scaling, metrics and JSON.

use crate::*;

/// AUC by counting every positive–negative pair (ties count ½).
pub(crate) fn brute_force_auc(scores: &[f64], labels: &[bool]) -> f64 {
    let (mut wins, mut pairs) = (0.0, 0.0);
    for (i, &yi) in labels.iter().enumerate() {
        for (j, &yj) in labels.iter().enumerate() {
            if yi && !yj {
                pairs += 1.0;
                if scores[i] > scores[j] {
                    wins += 1.0;
                } else if scores[i] == scores[j] {
                    wins += 0.5;
                }
            }
        }
    }
    wins / pairs
}

#[test]
fn ln_gamma_matches_known_values() {
    let cases = [
        (1.0, 0.0),
        (2.0, 0.0),
        (0.5, 0.5 * std::f64::consts::PI.ln()),
        (3.0, 2.0f64.ln()),
        (10.0, 362_880.0f64.ln()),
        (0.1, 2.252_712_651_734_206),
        (2.5, 0.284_682_870_472_919_2),
        (100.0, 359.134_205_369_575_4),
        (1e-3, 6.907_178_885_383_853),
    ];
    for (x, want) in cases {
        let got = ln_gamma(x);
        assert!(
            (got - want).abs() < 1e-12 * want.abs().max(1.0),
            "ln_gamma({x}) = {got}, want {want}"
        );
    }
    // Γ(x+1) = x Γ(x) across a range.
    for i in 1..200 {
        let x = i as f64 * 0.37;
        let lhs = ln_gamma(x + 1.0);
        let rhs = x.ln() + ln_gamma(x);
        assert!(
            (lhs - rhs).abs() < 1e-11 * lhs.abs().max(1.0),
            "recurrence at {x}"
        );
    }
    assert_eq!(ln_gamma(0.0), f64::INFINITY);
    assert_eq!(ln_gamma(-2.0), f64::INFINITY);
}

#[test]
fn hyp2f1_matches_closed_forms() {
    for &z in &[-0.9f64, -0.3, 0.0, 0.2, 0.5, 0.9, 0.99] {
        // ₂F₁(1, 1; 2; z) = −ln(1 − z)/z
        let want = if z == 0.0 { 1.0 } else { -(1.0 - z).ln() / z };
        let got = hyp2f1(1.0, 1.0, 2.0, z).unwrap();
        assert!(
            (got - want).abs() < 1e-10 * want.abs(),
            "z = {z}: {got} vs {want}"
        );
        // ₂F₁(a, b; b; z) = (1 − z)^(−a)
        let got = hyp2f1(2.5, 3.0, 3.0, z).unwrap();
        let want = (1.0 - z).powf(-2.5);
        assert!((got - want).abs() < 1e-9 * want, "z = {z}: {got} vs {want}");
    }
    // Terminating series: ₂F₁(−2, b; c; z) is a polynomial.
    let (b, c, z) = (3.0, 4.0, 0.7);
    let want = 1.0 - 2.0 * b / c * z + b * (b + 1.0) / (c * (c + 1.0)) * z * z;
    assert!((hyp2f1(-2.0, b, c, z).unwrap() - want).abs() < 1e-14);
    assert!(matches!(
        hyp2f1(1.0, 1.0, 2.0, 1.0),
        Err(Error::InvalidValue(_))
    ));
    assert!(matches!(
        hyp2f1(1.0, 1.0, -1.0, 0.5),
        Err(Error::InvalidValue(_))
    ));
}

#[test]
fn rng_is_deterministic_and_samplers_have_the_right_moments() {
    let a: Vec<u64> = (0..5)
        .map({
            let mut r = Rng::new(42);
            move |_| r.next_u64()
        })
        .collect();
    let b: Vec<u64> = (0..5)
        .map({
            let mut r = Rng::new(42);
            move |_| r.next_u64()
        })
        .collect();
    assert_eq!(a, b);
    let mut rng = Rng::new(7);
    let n = 20_000;
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let g: Vec<f64> = (0..n).map(|_| rng.gamma(0.5, 2.0)).collect();
    assert!((mean(&g) - 0.25).abs() < 0.02, "gamma mean {}", mean(&g));
    let g: Vec<f64> = (0..n).map(|_| rng.gamma(6.0, 3.0)).collect();
    assert!((mean(&g) - 2.0).abs() < 0.05);
    let bt: Vec<f64> = (0..n).map(|_| rng.beta(0.8, 3.0)).collect();
    assert!((mean(&bt) - 0.8 / 3.8).abs() < 0.01);
    let nm: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
    assert!(mean(&nm).abs() < 0.03);
    assert!((0..1000).all(|_| rng.below(7) < 7));
}

#[test]
fn standardizer_handles_constant_columns() {
    let rows = vec![
        vec![1.0, 5.0, 10.0],
        vec![3.0, 5.0, 20.0],
        vec![5.0, 5.0, 30.0],
    ];
    let s = Standardizer::fit(&rows).unwrap();
    assert_eq!(s.constant, vec![false, true, false]);
    let z = s.transform(&rows).unwrap();
    for row in &z {
        assert_eq!(row[1], 0.0);
        assert!(row.iter().all(|v| v.is_finite()));
    }
    assert!((z[0][0] + 1.224_744_871).abs() < 1e-6);
    let back = s.inverse_row(&z[2]);
    assert!((back[2] - 30.0).abs() < 1e-12 && (back[1] - 5.0).abs() < 1e-12);
    assert!(matches!(Standardizer::fit(&[]), Err(Error::Empty(_))));
    assert!(matches!(
        Standardizer::fit(&[vec![1.0], vec![1.0, 2.0]]),
        Err(Error::Shape(_))
    ));
    assert!(matches!(
        Standardizer::fit(&[vec![f64::NAN]]),
        Err(Error::InvalidValue(_))
    ));
    assert!(matches!(s.transform(&[vec![1.0]]), Err(Error::Shape(_))));
}

#[test]
fn auc_matches_brute_force_with_ties() {
    let mut rng = Rng::new(3);
    for trial in 0..20 {
        let n = 50 + trial * 10;
        // Coarse scores so ties are common.
        let labels: Vec<bool> = (0..n).map(|_| rng.next_f64() < 0.3).collect();
        let scores: Vec<f64> = labels
            .iter()
            .map(|&y| ((rng.next_f64() + if y { 0.3 } else { 0.0 }) * 5.0).floor())
            .collect();
        if labels.iter().all(|&y| y) || labels.iter().all(|&y| !y) {
            continue;
        }
        let fast = roc_auc(&scores, &labels).unwrap();
        let slow = brute_force_auc(&scores, &labels);
        assert!(
            (fast - slow).abs() < 1e-12,
            "trial {trial}: {fast} vs {slow}"
        );
    }
    assert_eq!(roc_auc(&[0.1, 0.9], &[false, true]).unwrap(), 1.0);
    assert_eq!(roc_auc(&[0.5, 0.5], &[false, true]).unwrap(), 0.5);
    assert!(matches!(
        roc_auc(&[0.1, 0.2], &[true, true]),
        Err(Error::Degenerate(_))
    ));
    assert!(matches!(roc_auc(&[], &[]), Err(Error::Empty(_))));
    assert!(matches!(
        roc_auc(&[0.1], &[true, false]),
        Err(Error::Shape(_))
    ));
    assert!(matches!(
        roc_auc(&[f64::NAN, 0.1], &[true, false]),
        Err(Error::InvalidValue(_))
    ));
}

#[test]
fn probability_metrics_are_consistent() {
    let probs = [0.05, 0.15, 0.15, 0.55, 0.95, 1.0, 0.0];
    let labels = [false, false, true, true, true, true, false];
    let table = calibration_table(&probs, &labels, 10).unwrap();
    assert_eq!(table.len(), 10);
    assert_eq!(table.iter().map(|b| b.count).sum::<usize>(), probs.len());
    assert_eq!(table[9].count, 2, "1.0 lands in the last bin");
    assert_eq!(table[1].count, 2);
    assert!((table[1].observed_rate - 0.5).abs() < 1e-12);
    let brier = brier_score(&probs, &labels).unwrap();
    assert!(brier > 0.0 && brier < 0.25);
    let ll = log_loss(&probs, &labels).unwrap();
    assert!(ll.is_finite() && ll > 0.0);
    // A confident mistake is clipped, not infinite.
    assert!(log_loss(&[0.0], &[true]).unwrap() < 40.0);
    assert!(matches!(
        brier_score(&[1.5], &[true]),
        Err(Error::InvalidValue(_))
    ));
    let top = precision_recall_at_top(&probs, &labels, 0.3).unwrap();
    assert_eq!(top.selected, 3);
    assert_eq!(top.precision, 1.0);
    assert_eq!(top.recall, 0.75);
    assert!(matches!(
        precision_recall_at_top(&probs, &labels, 0.0),
        Err(Error::Config(_))
    ));
    assert_eq!(mae(&[1.0, 3.0], &[2.0, 2.0]).unwrap(), 1.0);
    assert!((rmse(&[0.0, 3.0], &[0.0, 0.0]).unwrap() - (4.5f64).sqrt()).abs() < 1e-12);
    assert!(matches!(mae(&[], &[]), Err(Error::Empty(_))));
}

#[test]
fn adjusted_rand_index_properties() {
    let a = [0, 0, 1, 1, 2, 2];
    assert!((adjusted_rand_index(&a, &[5, 5, 3, 3, 0, 0]).unwrap() - 1.0).abs() < 1e-12);
    let bad = adjusted_rand_index(&a, &[0, 1, 2, 0, 1, 2]).unwrap();
    assert!(bad < 0.1, "{bad}");
    assert!(matches!(
        adjusted_rand_index(&[], &[]),
        Err(Error::Empty(_))
    ));
}
