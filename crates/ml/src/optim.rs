//! Derivative-free minimization (Nelder–Mead), used to fit the
//! lifetime-value models on log-parameters.

/// Settings of [`nelder_mead`].
#[derive(Debug, Clone, PartialEq)]
pub struct NelderMeadConfig {
    /// Function evaluations at most (over all restarts).
    pub max_evals: usize,
    /// Stop when the simplex's values differ by less than
    /// `ftol × (1 + |best|)` and its points by less than `xtol`.
    pub ftol: f64,
    /// See `ftol`.
    pub xtol: f64,
    /// Edge length of the initial simplex.
    pub step: f64,
    /// Fresh simplexes built around the best point after convergence, to
    /// escape a collapsed simplex.
    pub restarts: usize,
}

impl Default for NelderMeadConfig {
    fn default() -> Self {
        NelderMeadConfig {
            max_evals: 5_000,
            ftol: 1e-10,
            xtol: 1e-7,
            step: 0.5,
            restarts: 2,
        }
    }
}

/// The outcome of [`nelder_mead`].
#[derive(Debug, Clone, PartialEq)]
pub struct Minimum {
    /// The best point found.
    pub x: Vec<f64>,
    /// `f(x)`.
    pub value: f64,
    /// Evaluations used.
    pub evals: usize,
    /// Whether the last run met the tolerances before `max_evals`.
    pub converged: bool,
}

/// Minimize `f` from `x0` with the Nelder–Mead simplex method (reflection
/// 1, expansion 2, contraction ½, shrink ½). Non-finite values of `f` are
/// treated as `+∞`, so `f` may return `∞` outside its domain.
pub fn nelder_mead(
    f: &mut dyn FnMut(&[f64]) -> f64,
    x0: &[f64],
    config: &NelderMeadConfig,
) -> Minimum {
    let mut evals = 0;
    let mut eval = |x: &[f64], evals: &mut usize| {
        *evals += 1;
        let v = f(x);
        if v.is_finite() { v } else { f64::INFINITY }
    };
    let n = x0.len();
    let mut best_x = x0.to_vec();
    let mut best_v = eval(&best_x, &mut evals);
    let mut converged = false;
    for _ in 0..=config.restarts {
        let mut simplex: Vec<(Vec<f64>, f64)> = vec![(best_x.clone(), best_v)];
        for i in 0..n {
            let mut x = best_x.clone();
            x[i] += config.step;
            let v = eval(&x, &mut evals);
            simplex.push((x, v));
        }
        converged = false;
        while evals < config.max_evals {
            simplex.sort_by(|a, b| a.1.total_cmp(&b.1));
            let (f_best, f_worst) = (simplex[0].1, simplex[n].1);
            let spread = (1..=n)
                .flat_map(|i| (0..n).map(move |j| (i, j)))
                .map(|(i, j)| (simplex[i].0[j] - simplex[0].0[j]).abs())
                .fold(0.0, f64::max);
            if f_worst - f_best <= config.ftol * (1.0 + f_best.abs()) && spread <= config.xtol {
                converged = true;
                break;
            }
            let mut centroid = vec![0.0; n];
            for (x, _) in &simplex[..n] {
                centroid
                    .iter_mut()
                    .zip(x)
                    .for_each(|(c, v)| *c += v / n as f64);
            }
            let along = |t: f64| -> Vec<f64> {
                centroid
                    .iter()
                    .zip(&simplex[n].0)
                    .map(|(c, w)| c + t * (c - w))
                    .collect()
            };
            let xr = along(1.0);
            let fr = eval(&xr, &mut evals);
            if fr < f_best {
                let xe = along(2.0);
                let fe = eval(&xe, &mut evals);
                simplex[n] = if fe < fr { (xe, fe) } else { (xr, fr) };
                continue;
            }
            if fr < simplex[n - 1].1 {
                simplex[n] = (xr, fr);
                continue;
            }
            let (xc, fc) = if fr < f_worst {
                let xc = along(0.5);
                let fc = eval(&xc, &mut evals);
                (xc, fc)
            } else {
                let xc = along(-0.5);
                let fc = eval(&xc, &mut evals);
                (xc, fc)
            };
            if fc < fr.min(f_worst) {
                simplex[n] = (xc, fc);
                continue;
            }
            let best = simplex[0].0.clone();
            for point in simplex.iter_mut().skip(1) {
                let x: Vec<f64> = best
                    .iter()
                    .zip(&point.0)
                    .map(|(b, v)| b + 0.5 * (v - b))
                    .collect();
                let v = eval(&x, &mut evals);
                *point = (x, v);
            }
        }
        simplex.sort_by(|a, b| a.1.total_cmp(&b.1));
        let improved = simplex[0].1 < best_v - config.ftol * (1.0 + best_v.abs());
        if simplex[0].1 <= best_v {
            best_x = simplex[0].0.clone();
            best_v = simplex[0].1;
        }
        if !improved && converged || evals >= config.max_evals {
            break;
        }
    }
    Minimum {
        x: best_x,
        value: best_v,
        evals,
        converged,
    }
}
