//! BG/NBD and Gamma–Gamma on data simulated from known parameters.

use crate::*;

struct Simulated {
    history: CustomerHistory,
    /// Purchases in (T, T + horizon].
    future: u32,
}

/// Simulate BG/NBD customers: λ ~ Gamma(r, α), p ~ Beta(a, b); purchases
/// form a Poisson(λ) process from the first purchase at time 0, and after
/// each repeat purchase the customer drops out with probability p.
/// Calibration length T is uniform on [30, 52]; the hold-out is `horizon`.
fn simulate_bgnbd(
    n: usize,
    (r, alpha, a, b): (f64, f64, f64, f64),
    horizon: f64,
    seed: u64,
) -> Vec<Simulated> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|_| {
            let lambda = rng.gamma(r, alpha);
            let p = rng.beta(a, b);
            let t_cal = 30.0 + 22.0 * rng.next_f64();
            let (mut x, mut t_x, mut future) = (0u32, 0.0, 0u32);
            let mut now = 0.0;
            loop {
                now += rng.exponential(lambda);
                if now > t_cal + horizon {
                    break;
                }
                if now <= t_cal {
                    x += 1;
                    t_x = now;
                } else {
                    future += 1;
                }
                if rng.next_f64() < p {
                    break;
                }
            }
            Simulated {
                history: CustomerHistory { x, t_x, t: t_cal },
                future,
            }
        })
        .collect()
}

const TRUE: (f64, f64, f64, f64) = (0.8, 6.0, 0.6, 2.5);
const HORIZON: f64 = 26.0;

fn rel(fitted: f64, truth: f64) -> f64 {
    (fitted - truth).abs() / truth
}

#[test]
fn bgnbd_recovers_parameters_and_beats_the_naive_forecast() {
    let sim = simulate_bgnbd(4000, TRUE, HORIZON, 17);
    let histories: Vec<CustomerHistory> = sim.iter().map(|s| s.history).collect();
    let model = BgNbd::fit(&histories).unwrap();
    let (r, alpha, a, b) = TRUE;
    eprintln!(
        "BG/NBD fitted r {:.3} (true {r}), alpha {:.3} ({alpha}), a {:.3} ({a}), b {:.3} ({b}); converged {}",
        model.r, model.alpha, model.a, model.b, model.converged
    );
    assert!(rel(model.r, r) < 0.2, "r {}", model.r);
    assert!(rel(model.alpha, alpha) < 0.25, "alpha {}", model.alpha);
    assert!(rel(model.a, a) < 0.4, "a {}", model.a);
    assert!(rel(model.b, b) < 0.5, "b {}", model.b);
    // The optimum is at least as likely as the truth on the same data.
    let truth = BgNbd {
        r,
        alpha,
        a,
        b,
        ..model.clone()
    };
    let ll_fit: f64 = histories.iter().map(|h| model.log_likelihood(h)).sum();
    let ll_true: f64 = histories.iter().map(|h| truth.log_likelihood(h)).sum();
    assert!(ll_fit >= ll_true - 1e-6, "{ll_fit} < {ll_true}");
    assert!((ll_fit / histories.len() as f64 - model.mean_log_likelihood).abs() < 1e-9);

    // Hold-out forecast: totals close, per-customer MAE better than naive.
    let predicted: Vec<f64> = histories
        .iter()
        .map(|h| model.expected_purchases(HORIZON, h.x, h.t_x, h.t).unwrap())
        .collect();
    let naive: Vec<f64> = histories
        .iter()
        .map(|h| naive_forecast(HORIZON, f64::from(h.x), h.t).unwrap())
        .collect();
    let actual: Vec<f64> = sim.iter().map(|s| f64::from(s.future)).collect();
    let (sum_pred, sum_actual) = (predicted.iter().sum::<f64>(), actual.iter().sum::<f64>());
    let (mae_model, mae_naive) = (
        mae(&predicted, &actual).unwrap(),
        mae(&naive, &actual).unwrap(),
    );
    eprintln!(
        "hold-out {HORIZON} weeks: predicted {sum_pred:.0} vs actual {sum_actual:.0} purchases; MAE model {mae_model:.3} vs naive {mae_naive:.3}"
    );
    assert!(rel(sum_pred, sum_actual) < 0.15);
    assert!(mae_model < mae_naive * 0.95);
}

#[test]
fn bgnbd_predictions_behave() {
    let model = BgNbd {
        r: 0.8,
        alpha: 6.0,
        a: 0.6,
        b: 2.5,
        mean_log_likelihood: 0.0,
        customers: 0,
        converged: true,
    };
    // More purchases, recently: more expected purchases; monotone in x.
    let mut last = 0.0;
    for x in 0..40 {
        let t_x = if x == 0 { 0.0 } else { 40.0 };
        let e = model.expected_purchases(HORIZON, x, t_x, 40.0).unwrap();
        assert!(e > last, "x = {x}: {e} ≤ {last}");
        last = e;
    }
    // The same x long ago: less likely alive, fewer purchases.
    assert!(model.p_alive(5, 5.0, 40.0) < model.p_alive(5, 39.0, 40.0));
    assert_eq!(model.p_alive(0, 0.0, 40.0), 1.0);
    assert!(
        model.expected_purchases(HORIZON, 5, 5.0, 40.0).unwrap()
            < model.expected_purchases(HORIZON, 5, 39.0, 40.0).unwrap()
    );
    // Longer horizon, more purchases; zero horizon, none.
    assert!(
        model.expected_purchases(52.0, 3, 20.0, 40.0).unwrap()
            > model.expected_purchases(26.0, 3, 20.0, 40.0).unwrap()
    );
    assert_eq!(model.expected_purchases(0.0, 3, 20.0, 40.0).unwrap(), 0.0);
    // The Euler-transformed formula equals the paper's direct one.
    for (x, t_x, t) in [
        (0u32, 0.0, 40.0),
        (1, 10.0, 40.0),
        (4, 35.0, 40.0),
        (12, 38.0, 45.0),
    ] {
        let xf = f64::from(x);
        let (r, al, a, b) = (model.r, model.alpha, model.a, model.b);
        let z = HORIZON / (al + t + HORIZON);
        let f = hyp2f1(r + xf, b + xf, a + b + xf - 1.0, z).unwrap();
        let direct = (a + b + xf - 1.0) / (a - 1.0)
            * (1.0 - ((al + t) / (al + t + HORIZON)).powf(r + xf) * f)
            * model.p_alive(x, t_x, t);
        let ours = model.expected_purchases(HORIZON, x, t_x, t).unwrap();
        assert!(
            (ours - direct).abs() < 1e-9 * direct.max(1.0),
            "x = {x}: {ours} vs {direct}"
        );
    }
    // a = 1 exactly (removable singularity) stays finite and between neighbours.
    let at = |a: f64| {
        BgNbd { a, ..model.clone() }
            .expected_purchases(HORIZON, 3, 30.0, 40.0)
            .unwrap()
    };
    let (lo, mid, hi) = (at(0.99), at(1.0), at(1.01));
    assert!(
        mid.is_finite() && (lo.min(hi)..=lo.max(hi)).contains(&mid),
        "{lo} {mid} {hi}"
    );
    // Huge x does not overflow.
    assert!(
        model
            .expected_purchases(HORIZON, 5000, 39.0, 40.0)
            .unwrap()
            .is_finite()
    );
    assert!(
        model.expected_purchases(HORIZON, 3, 50.0, 40.0).is_err(),
        "t_x > t"
    );
}

#[test]
fn gamma_gamma_recovers_parameters_and_ltv_beats_naive_spend() {
    let (p, q, gamma) = (6.0, 4.0, 15.0);
    let mut rng = Rng::new(23);
    let (mut freq, mut means) = (Vec::new(), Vec::new());
    for _ in 0..3000 {
        let x = 1 + rng.below(8) as u32;
        let nu = rng.gamma(q, gamma);
        let total: f64 = (0..x).map(|_| rng.gamma(p, nu)).sum();
        freq.push(x);
        means.push(total / f64::from(x));
    }
    let gg = GammaGamma::fit(&freq, &means).unwrap();
    eprintln!(
        "Gamma-Gamma fitted p {:.2} (true {p}), q {:.2} ({q}), gamma {:.2} ({gamma}); population mean {:.2} (true {:.2})",
        gg.p,
        gg.q,
        gg.gamma,
        gg.population_mean(),
        p * gamma / (q - 1.0)
    );
    assert!(rel(gg.p, p) < 0.25 && rel(gg.q, q) < 0.35 && rel(gg.gamma, gamma) < 0.4);
    assert!(rel(gg.population_mean(), p * gamma / (q - 1.0)) < 0.08);
    // Shrinkage: the estimate lies between the customer's mean and the population mean.
    let e = gg.expected_avg_value(2, 100.0);
    assert!(e > gg.population_mean() && e < 100.0);
    assert_eq!(gg.expected_avg_value(0, f64::NAN), gg.population_mean());

    // End to end: BG/NBD × Gamma–Gamma spend vs past spend rate × horizon.
    let sim = simulate_bgnbd(3000, TRUE, HORIZON, 29);
    let histories: Vec<CustomerHistory> = sim.iter().map(|s| s.history).collect();
    let mut rng = Rng::new(31);
    let mut past_spend = Vec::new();
    let mut past_mean = Vec::new();
    let mut future_spend = Vec::new();
    for s in &sim {
        let nu = rng.gamma(q, gamma);
        let repeat: f64 = (0..s.history.x).map(|_| rng.gamma(p, nu)).sum();
        past_spend.push(repeat);
        past_mean.push(if s.history.x > 0 {
            repeat / f64::from(s.history.x)
        } else {
            0.0
        });
        future_spend.push((0..s.future).map(|_| rng.gamma(p, nu)).sum::<f64>());
    }
    let freq: Vec<u32> = histories.iter().map(|h| h.x).collect();
    let ltv = LtvModel {
        purchases: BgNbd::fit(&histories).unwrap(),
        value: GammaGamma::fit(&freq, &past_mean).unwrap(),
    };
    let predicted: Vec<f64> = histories
        .iter()
        .zip(&past_mean)
        .map(|(h, &m)| ltv.predicted_spend(HORIZON, h, m).unwrap())
        .collect();
    let naive: Vec<f64> = histories
        .iter()
        .zip(&past_spend)
        .map(|(h, &s)| naive_forecast(HORIZON, s, h.t).unwrap())
        .collect();
    let (mae_model, mae_naive) = (
        mae(&predicted, &future_spend).unwrap(),
        mae(&naive, &future_spend).unwrap(),
    );
    eprintln!("{HORIZON}-week spend MAE: model {mae_model:.2} vs naive {mae_naive:.2}");
    assert!(mae_model < mae_naive);
    let back: LtvModel = from_json(&to_json(&ltv).unwrap()).unwrap();
    assert!(rel(back.value.p, ltv.value.p) < 1e-12);
}

#[test]
fn lifetime_fits_reject_degenerate_input() {
    assert!(matches!(BgNbd::fit(&[]), Err(Error::Empty(_))));
    let no_repeat = vec![
        CustomerHistory {
            x: 0,
            t_x: 0.0,
            t: 10.0
        };
        5
    ];
    assert!(matches!(BgNbd::fit(&no_repeat), Err(Error::Degenerate(_))));
    let bad = vec![CustomerHistory {
        x: 2,
        t_x: 12.0,
        t: 10.0,
    }];
    assert!(matches!(BgNbd::fit(&bad), Err(Error::InvalidValue(_))));
    let nan = vec![CustomerHistory {
        x: 2,
        t_x: f64::NAN,
        t: 10.0,
    }];
    assert!(matches!(BgNbd::fit(&nan), Err(Error::InvalidValue(_))));
    let zero_t = vec![CustomerHistory {
        x: 0,
        t_x: 0.0,
        t: 0.0,
    }];
    assert!(matches!(BgNbd::fit(&zero_t), Err(Error::InvalidValue(_))));
    // Everyone buys like clockwork and nobody drops out: still finite.
    let steady: Vec<CustomerHistory> = (1..50)
        .map(|i| CustomerHistory {
            x: 5,
            t_x: 20.0 + f64::from(i % 5),
            t: 25.0,
        })
        .collect();
    if let Ok(m) = BgNbd::fit(&steady) {
        assert!(
            [m.r, m.alpha, m.a, m.b]
                .iter()
                .all(|v| v.is_finite() && *v > 0.0)
        );
        assert!(
            m.expected_purchases(10.0, 5, 24.0, 25.0)
                .map(f64::is_finite)
                .unwrap_or(true)
        );
    }
    assert!(matches!(
        GammaGamma::fit(&[0, 0], &[1.0, 2.0]),
        Err(Error::Empty(_))
    ));
    assert!(matches!(
        GammaGamma::fit(&[1, 2], &[5.0, 5.0]),
        Err(Error::Degenerate(_))
    ));
    assert!(matches!(
        GammaGamma::fit(&[1, 2], &[5.0, -1.0]),
        Err(Error::InvalidValue(_))
    ));
    assert!(matches!(
        GammaGamma::fit(&[1], &[5.0, 1.0]),
        Err(Error::Shape(_))
    ));
    assert!(naive_forecast(10.0, 3.0, 0.0).is_err());
}
