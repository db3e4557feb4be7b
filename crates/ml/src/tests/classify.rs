//! Churn classifiers: logistic regression, boosted trees, model selection.

use super::util::brute_force_auc;
use crate::*;

/// A churn-like problem whose signal a linear model cannot represent: an
/// XOR-style interaction of features 0 and 1 and a threshold on feature 2,
/// plus a linear term on feature 3; feature 4 is noise.
fn churn_data(n: usize, seed: u64) -> (Vec<Vec<f64>>, Vec<bool>) {
    let mut rng = Rng::new(seed);
    let mut rows = Vec::with_capacity(n);
    let mut labels = Vec::with_capacity(n);
    for _ in 0..n {
        let x: Vec<f64> = (0..5).map(|_| rng.normal()).collect();
        let interaction = if x[0] * x[1] > 0.0 { 1.6 } else { -1.6 };
        let threshold = if x[2] > 0.8 { 1.5 } else { 0.0 };
        let logit = -0.6 + interaction + threshold + 0.6 * x[3];
        labels.push(rng.next_f64() < 1.0 / (1.0 + (-logit).exp()));
        rows.push(x);
    }
    (rows, labels)
}

#[test]
fn boosted_trees_beat_logistic_on_a_nonlinear_signal() {
    let (x_train, y_train) = churn_data(3000, 1);
    let (x_test, y_test) = churn_data(2000, 2);
    let logistic = LogisticRegression::fit(&x_train, &y_train, &LogisticConfig::default()).unwrap();
    let gbt = GradientBoostedTrees::fit(
        &x_train,
        &y_train,
        &GbtConfig {
            seed: 3,
            ..GbtConfig::default()
        },
    )
    .unwrap();
    let p_log = logistic.predict_proba(&x_test).unwrap();
    let p_gbt = gbt.predict_proba(&x_test).unwrap();
    let auc_log = roc_auc(&p_log, &y_test).unwrap();
    let auc_gbt = roc_auc(&p_gbt, &y_test).unwrap();
    let top_log = precision_recall_at_top(&p_log, &y_test, 0.1).unwrap();
    let top_gbt = precision_recall_at_top(&p_gbt, &y_test, 0.1).unwrap();
    eprintln!(
        "test AUC: logistic {auc_log:.4}, gbt {auc_gbt:.4}; top decile precision/recall: logistic {:.3}/{:.3}, gbt {:.3}/{:.3}, base rate {:.3}",
        top_log.precision, top_log.recall, top_gbt.precision, top_gbt.recall, top_gbt.base_rate
    );
    eprintln!(
        "logistic: {} iterations, coefficients {:?}",
        logistic.iterations, logistic.coefficients
    );
    eprintln!("gbt importance {:?}", gbt.feature_importance());
    assert!(auc_log > 0.6, "logistic AUC {auc_log}");
    assert!(auc_gbt > 0.75, "gbt AUC {auc_gbt}");
    assert!(
        auc_gbt > auc_log + 0.05,
        "gbt {auc_gbt} vs logistic {auc_log}"
    );
    assert!((auc_gbt - brute_force_auc(&p_gbt, &y_test)).abs() < 1e-12);
    assert!((auc_log - brute_force_auc(&p_log, &y_test)).abs() < 1e-12);
    assert!(top_gbt.precision > top_gbt.base_rate * 1.3);

    // The interaction features carry most of the boosted trees' gain; noise little.
    let imp = gbt.feature_importance();
    assert!((imp.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    assert!(
        imp[0] > imp[4] && imp[1] > imp[4] && imp[2] > imp[4],
        "{imp:?}"
    );
    // Logistic sees the linear and threshold parts with the right sign.
    assert!(logistic.coefficients[3] > 0.2 && logistic.coefficients[2] > 0.2);

    for probs in [&p_log, &p_gbt] {
        assert!(probs.iter().all(|p| (0.0..=1.0).contains(p)));
        let table = calibration_table(probs, &y_test, 10).unwrap();
        assert_eq!(table.iter().map(|b| b.count).sum::<usize>(), y_test.len());
        let brier = brier_score(probs, &y_test).unwrap();
        assert!(brier < 0.25, "brier {brier}");
    }
    let ll_gbt = log_loss(&p_gbt, &y_test).unwrap();
    assert!(ll_gbt < log_loss(&p_log, &y_test).unwrap());

    // Keep the better.
    let (best, aucs) = select_by_auc(&[&logistic, &gbt], &x_test, &y_test).unwrap();
    assert_eq!(best, 1);
    assert_eq!(aucs, vec![auc_log, auc_gbt]);
    let stored = Classifier::Gbt(gbt.clone());
    assert_eq!(stored.name(), "gradient_boosted_trees");
    let back: Classifier = from_json(&to_json(&stored).unwrap()).unwrap();
    let p_back = back.predict_proba(&x_test[..50]).unwrap();
    for (a, b) in p_back.iter().zip(&p_gbt[..50]) {
        assert!((a - b).abs() < 1e-9);
    }
    // Same seed, same ensemble.
    let again = GradientBoostedTrees::fit(
        &x_train,
        &y_train,
        &GbtConfig {
            seed: 3,
            ..GbtConfig::default()
        },
    )
    .unwrap();
    assert_eq!(again, gbt);
}

#[test]
fn logistic_recovers_a_linear_model() {
    let mut rng = Rng::new(11);
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for _ in 0..4000 {
        let row = vec![rng.normal() * 2.0 + 5.0, rng.normal(), 7.0];
        let logit = 0.5 + 0.8 * (row[0] - 5.0) - 1.2 * row[1];
        y.push(rng.next_f64() < 1.0 / (1.0 + (-logit).exp()));
        x.push(row);
    }
    let model = LogisticRegression::fit(
        &x,
        &y,
        &LogisticConfig {
            l2: 1e-3,
            ..LogisticConfig::default()
        },
    )
    .unwrap();
    let (intercept, raw) = model.raw_coefficients();
    eprintln!("raw coefficients {raw:?}, intercept {intercept:.3} (true 0.8, -1.2, 0; -3.5)");
    assert!(model.converged);
    assert!((raw[0] - 0.8).abs() < 0.12, "{raw:?}");
    assert!((raw[1] + 1.2).abs() < 0.15, "{raw:?}");
    assert_eq!(raw[2], 0.0, "constant feature gets no weight");
    assert!((intercept - (0.5 - 4.0)).abs() < 0.6, "{intercept}");
    // Perfectly separable data stays finite thanks to L2.
    let sep_x: Vec<Vec<f64>> = (0..100).map(|i| vec![f64::from(i)]).collect();
    let sep_y: Vec<bool> = (0..100).map(|i| i >= 50).collect();
    let sep = LogisticRegression::fit(&sep_x, &sep_y, &LogisticConfig::default()).unwrap();
    let p = sep.predict_proba(&sep_x).unwrap();
    assert!(p.iter().all(|v| v.is_finite()));
    assert!(roc_auc(&p, &sep_y).unwrap() == 1.0);
}

#[test]
fn classifiers_reject_degenerate_input() {
    let x = vec![vec![1.0, 2.0], vec![2.0, 1.0], vec![3.0, 0.0]];
    let one_class = vec![true, true, true];
    let y = vec![true, false, true];
    let constant = vec![vec![1.0, 2.0]; 3];
    let lc = LogisticConfig::default();
    let gc = GbtConfig {
        min_leaf: 1,
        ..GbtConfig::default()
    };
    assert!(matches!(
        LogisticRegression::fit(&[], &[], &lc),
        Err(Error::Empty(_))
    ));
    assert!(matches!(
        GradientBoostedTrees::fit(&[], &[], &gc),
        Err(Error::Empty(_))
    ));
    assert!(matches!(
        LogisticRegression::fit(&x, &one_class, &lc),
        Err(Error::Degenerate(_))
    ));
    assert!(matches!(
        GradientBoostedTrees::fit(&x, &one_class, &gc),
        Err(Error::Degenerate(_))
    ));
    assert!(matches!(
        LogisticRegression::fit(&constant, &y, &lc),
        Err(Error::Degenerate(_))
    ));
    assert!(matches!(
        GradientBoostedTrees::fit(&constant, &y, &gc),
        Err(Error::Degenerate(_))
    ));
    assert!(matches!(
        LogisticRegression::fit(&x, &y[..2], &lc),
        Err(Error::Shape(_))
    ));
    let nan = vec![vec![1.0, f64::NAN], vec![2.0, 1.0], vec![3.0, 0.0]];
    assert!(matches!(
        GradientBoostedTrees::fit(&nan, &y, &gc),
        Err(Error::InvalidValue(_))
    ));
    let bad = GbtConfig {
        learning_rate: 0.0,
        ..gc.clone()
    };
    assert!(matches!(
        GradientBoostedTrees::fit(&x, &y, &bad),
        Err(Error::Config(_))
    ));
    assert!(matches!(
        LogisticRegression::fit(
            &x,
            &y,
            &LogisticConfig {
                l2: 0.0,
                ..lc.clone()
            }
        ),
        Err(Error::Config(_))
    ));
    // Tiny but valid input fits and predicts finite probabilities.
    let m = GradientBoostedTrees::fit(&x, &y, &gc).unwrap();
    assert!(m.predict_proba(&x).unwrap().iter().all(|p| p.is_finite()));
    assert!(matches!(
        m.predict_proba(&[vec![1.0]]),
        Err(Error::Shape(_))
    ));
    let l = LogisticRegression::fit(&x, &y, &lc).unwrap();
    assert!(l.predict_proba(&x).unwrap().iter().all(|p| p.is_finite()));
    assert!(matches!(select_by_auc(&[], &x, &y), Err(Error::Empty(_))));
}
