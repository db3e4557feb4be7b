//! Customer lifetime value: BG/NBD for the number of future purchases
//! (Fader, Hardie & Lee 2005, "Counting your customers the easy way") and
//! Gamma–Gamma for the value per purchase (Fader & Hardie 2013), plus a
//! naive baseline to judge them against.
//!
//! ## Inputs
//!
//! Per customer, over a calibration period that ends at the cut-off date:
//! * `x` — **repeat** purchases (orders after the first one);
//! * `t_x` — time from the first purchase to the last one (0 if `x = 0`);
//! * `t` (`T` in the papers) — time from the first purchase to the cut-off;
//! * for Gamma–Gamma, the mean value of the repeat purchases.
//!
//! Times are in any unit (days, weeks) as long as it is the same for `t_x`,
//! `t` and every horizon; the fitted `alpha` is in that unit.
//!
//! ## Fitting
//!
//! Both models maximise the closed-form log-likelihood with
//! [`nelder_mead`] over log-parameters (so they stay positive), evaluated
//! with [`ln_gamma`] and log-sum-exp. Customers with the same `x` share
//! the gamma-function terms, so one evaluation costs O(distinct x) gamma
//! calls plus O(n) logarithms. Log-parameters are confined to ±`20` around
//! their starting point; a parameter at that wall means the data do not
//! identify it (e.g. no one ever drops out).

use serde::{Deserialize, Serialize};

use crate::optim::{NelderMeadConfig, nelder_mead};
use crate::special::{hyp2f1, ln_gamma, log_add_exp};
use crate::{Error, Result};

/// One customer's purchase history summary over the calibration period.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CustomerHistory {
    /// Repeat purchases (after the first).
    pub x: u32,
    /// Time of the last purchase, measured from the first (0 if `x = 0`).
    pub t_x: f64,
    /// Time from the first purchase to the end of the period (`T`).
    pub t: f64,
}

fn check_history(h: &CustomerHistory, i: usize) -> Result<()> {
    if !(h.t.is_finite() && h.t_x.is_finite() && h.t > 0.0 && h.t_x >= 0.0 && h.t_x <= h.t) {
        return Err(Error::InvalidValue(format!(
            "customer {i}: need 0 ≤ t_x ≤ t and t > 0, got t_x = {}, t = {}",
            h.t_x, h.t
        )));
    }
    if h.x > 0 && h.t_x == 0.0 {
        return Err(Error::InvalidValue(format!(
            "customer {i}: {} repeat purchases but t_x = 0",
            h.x
        )));
    }
    Ok(())
}

/// Bound on how far a log-parameter may move from its starting value.
const LOG_PARAM_RANGE: f64 = 20.0;

fn out_of_range(theta: &[f64], start: &[f64]) -> bool {
    theta
        .iter()
        .zip(start)
        .any(|(t, s)| (t - s).abs() > LOG_PARAM_RANGE)
}

/// A fitted BG/NBD model: purchase rates λ ~ Gamma(r, α) across customers,
/// and after each repeat purchase a customer drops out with probability
/// p ~ Beta(a, b).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BgNbd {
    /// Shape of the purchase-rate distribution.
    pub r: f64,
    /// Rate (inverse scale) of the purchase-rate distribution, in the time
    /// unit of the data.
    pub alpha: f64,
    /// First shape of the dropout-probability distribution.
    pub a: f64,
    /// Second shape of the dropout-probability distribution.
    pub b: f64,
    /// Mean log-likelihood per customer at the optimum.
    pub mean_log_likelihood: f64,
    /// Customers fitted on.
    pub customers: usize,
    /// Whether the optimizer met its tolerances.
    pub converged: bool,
}

/// Customers grouped by `x`: `(x, [(t_x, t)])`.
fn group_by_x(customers: &[CustomerHistory]) -> Vec<(u32, Vec<(f64, f64)>)> {
    let mut sorted: Vec<&CustomerHistory> = customers.iter().collect();
    sorted.sort_by_key(|c| c.x);
    let mut groups: Vec<(u32, Vec<(f64, f64)>)> = Vec::new();
    for c in sorted {
        match groups.last_mut() {
            Some((x, v)) if *x == c.x => v.push((c.t_x, c.t)),
            _ => groups.push((c.x, vec![(c.t_x, c.t)])),
        }
    }
    groups
}

fn bgnbd_total_ll(groups: &[(u32, Vec<(f64, f64)>)], r: f64, alpha: f64, a: f64, b: f64) -> f64 {
    let ln_alpha = alpha.ln();
    let (lg_r, lg_b, lg_ab) = (ln_gamma(r), ln_gamma(b), ln_gamma(a + b));
    let mut total = 0.0;
    for (x, rows) in groups {
        let xf = f64::from(*x);
        let common = ln_gamma(r + xf) - lg_r + r * ln_alpha + lg_ab + ln_gamma(b + xf)
            - lg_b
            - ln_gamma(a + b + xf);
        let drop_term = if *x > 0 {
            a.ln() - (b + xf - 1.0).ln()
        } else {
            0.0
        };
        let mut sum = 0.0;
        for &(t_x, t) in rows {
            let alive = -(r + xf) * (alpha + t).ln();
            sum += if *x > 0 {
                log_add_exp(alive, drop_term - (r + xf) * (alpha + t_x).ln())
            } else {
                alive
            };
        }
        total += common * rows.len() as f64 + sum;
    }
    total
}

impl BgNbd {
    /// Fit r, α, a, b by maximum likelihood.
    ///
    /// Errors: no customers, an invalid history (`t ≤ 0`, `t_x > t`,
    /// non-finite), nobody with a repeat purchase (nothing to learn), or a
    /// non-finite optimum.
    pub fn fit(customers: &[CustomerHistory]) -> Result<Self> {
        if customers.is_empty() {
            return Err(Error::Empty("customer histories"));
        }
        for (i, c) in customers.iter().enumerate() {
            check_history(c, i)?;
        }
        if customers.iter().all(|c| c.x == 0) {
            return Err(Error::Degenerate(
                "no customer made a repeat purchase".into(),
            ));
        }
        let n = customers.len() as f64;
        let mean_t = customers.iter().map(|c| c.t).sum::<f64>() / n;
        let mean_x = customers.iter().map(|c| f64::from(c.x)).sum::<f64>() / n;
        // Start: r = 1, α so that r/α matches the mean rate, a = 0.5, b = 2.
        let start = vec![
            0.0,
            (mean_t / mean_x.max(1e-3)).ln(),
            0.5f64.ln(),
            2.0f64.ln(),
        ];
        let groups = group_by_x(customers);
        let mut objective = |theta: &[f64]| -> f64 {
            if out_of_range(theta, &start) {
                return f64::INFINITY;
            }
            let p: Vec<f64> = theta.iter().map(|v| v.exp()).collect();
            -bgnbd_total_ll(&groups, p[0], p[1], p[2], p[3]) / n
        };
        let min = nelder_mead(&mut objective, &start, &NelderMeadConfig::default());
        let p: Vec<f64> = min.x.iter().map(|v| v.exp()).collect();
        if !min.value.is_finite() || p.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
            return Err(Error::NotConverged(
                "BG/NBD likelihood has no finite optimum".into(),
            ));
        }
        Ok(BgNbd {
            r: p[0],
            alpha: p[1],
            a: p[2],
            b: p[3],
            mean_log_likelihood: -min.value,
            customers: customers.len(),
            converged: min.converged,
        })
    }

    /// Log-likelihood of one customer's history under this model.
    pub fn log_likelihood(&self, c: &CustomerHistory) -> f64 {
        bgnbd_total_ll(
            &[(c.x, vec![(c.t_x, c.t)])],
            self.r,
            self.alpha,
            self.a,
            self.b,
        )
    }

    /// Probability the customer is still active at the end of the period:
    /// `1 / (1 + [x > 0] · a/(b+x−1) · ((α+t)/(α+t_x))^(r+x))`, in logs.
    pub fn p_alive(&self, x: u32, t_x: f64, t: f64) -> f64 {
        if x == 0 {
            return 1.0;
        }
        let xf = f64::from(x);
        let log_odds_dead = self.a.ln() - (self.b + xf - 1.0).ln()
            + (self.r + xf) * ((self.alpha + t).ln() - (self.alpha + t_x).ln());
        1.0 / (1.0 + log_odds_dead.exp())
    }

    /// Expected purchases in the next `horizon` time units for a customer
    /// with history `(x, t_x, t)` — FHL 2005 eq. (10):
    ///
    /// `(a+b+x−1)/(a−1) · [1 − (1−z)^(a−1) · ₂F₁(a+b−1−r, a−1; a+b+x−1; z)] · p_alive`
    /// with `z = horizon/(α+t+horizon)`, after Euler's transformation of the
    /// paper's `((α+t)/(α+t+horizon))^(r+x) ₂F₁(r+x, b+x; a+b+x−1; z)`, which
    /// keeps the series terms small for large `x`. `z < 1` always holds;
    /// horizons much longer than `α + t` converge slowly (see [`hyp2f1`]).
    /// At `a = 1` (a removable singularity) the value is the mean of
    /// `a = 1 ± 1e-5`.
    pub fn expected_purchases(&self, horizon: f64, x: u32, t_x: f64, t: f64) -> Result<f64> {
        check_history(&CustomerHistory { x, t_x, t }, 0)?;
        if !(horizon >= 0.0 && horizon.is_finite()) {
            return Err(Error::InvalidValue(format!(
                "horizon must be ≥ 0, got {horizon}"
            )));
        }
        if horizon == 0.0 {
            return Ok(0.0);
        }
        let xf = f64::from(x);
        let z = horizon / (self.alpha + t + horizon);
        let at = |a: f64| -> Result<f64> {
            let f = hyp2f1(a + self.b - 1.0 - self.r, a - 1.0, a + self.b + xf - 1.0, z)?;
            let bracket = 1.0 - (1.0 - z).powf(a - 1.0) * f;
            Ok((a + self.b + xf - 1.0) / (a - 1.0) * bracket)
        };
        let raw = if (self.a - 1.0).abs() < 1e-5 {
            (at(1.0 + 1e-5)? + at(1.0 - 1e-5)?) / 2.0
        } else {
            at(self.a)?
        };
        let value = raw * self.p_alive(x, t_x, t);
        if !value.is_finite() {
            return Err(Error::NotConverged(
                "expected purchases is not finite".into(),
            ));
        }
        Ok(value.max(0.0))
    }
}

/// A fitted Gamma–Gamma model of the value per purchase: each purchase's
/// value ~ Gamma(p, ν) with ν ~ Gamma(q, γ) per customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GammaGamma {
    /// Shape of the per-purchase value.
    pub p: f64,
    /// Shape of the customers' rate distribution (> 1 for a finite mean).
    pub q: f64,
    /// Scale of the customers' rate distribution, in money units.
    pub gamma: f64,
    /// Mean log-likelihood per customer at the optimum.
    pub mean_log_likelihood: f64,
    /// Customers fitted on (those with `x ≥ 1` and positive value).
    pub customers: usize,
    /// Whether the optimizer met its tolerances.
    pub converged: bool,
}

impl GammaGamma {
    /// Fit p, q, γ on customers with at least one repeat purchase:
    /// `frequency[i]` is `x`, `mean_value[i]` the mean value of those
    /// purchases. Entries with `x = 0` are ignored.
    ///
    /// Errors: length mismatch, a non-finite or non-positive value where
    /// `x ≥ 1`, fewer than 2 usable customers, all mean values equal, or a
    /// fitted `q ≤ 1` (the population mean value would be infinite).
    pub fn fit(frequency: &[u32], mean_value: &[f64]) -> Result<Self> {
        if frequency.len() != mean_value.len() {
            return Err(Error::Shape(format!(
                "{} frequencies but {} values",
                frequency.len(),
                mean_value.len()
            )));
        }
        let mut rows: Vec<(u32, f64)> = Vec::new();
        for (i, (&x, &m)) in frequency.iter().zip(mean_value).enumerate() {
            if x == 0 {
                continue;
            }
            if !(m.is_finite() && m > 0.0) {
                return Err(Error::InvalidValue(format!(
                    "customer {i}: mean value {m} must be > 0"
                )));
            }
            rows.push((x, m));
        }
        if rows.len() < 2 {
            return Err(Error::Empty("customers with a repeat purchase (need 2)"));
        }
        if rows.iter().all(|r| r.1 == rows[0].1) {
            return Err(Error::Degenerate(
                "every customer has the same mean value".into(),
            ));
        }
        rows.sort_by_key(|r| r.0);
        let n = rows.len() as f64;
        let mean_m = rows.iter().map(|r| r.1).sum::<f64>() / n;
        // Start: p = 1, q = 2, γ = mean (population mean value pγ/(q−1)).
        let start = vec![0.0, 2.0f64.ln(), mean_m.ln()];
        let mut objective = |theta: &[f64]| -> f64 {
            if out_of_range(theta, &start) {
                return f64::INFINITY;
            }
            let (p, q, g) = (theta[0].exp(), theta[1].exp(), theta[2].exp());
            let (lg_q, ln_g) = (ln_gamma(q), g.ln());
            let mut total = 0.0;
            let mut i = 0;
            while i < rows.len() {
                let x = rows[i].0;
                let xf = f64::from(x);
                let px = p * xf;
                let common = ln_gamma(px + q) - ln_gamma(px) - lg_q + q * ln_g + px * xf.ln();
                while i < rows.len() && rows[i].0 == x {
                    let m = rows[i].1;
                    total += common + (px - 1.0) * m.ln() - (px + q) * (g + xf * m).ln();
                    i += 1;
                }
            }
            -total / n
        };
        let min = nelder_mead(&mut objective, &start, &NelderMeadConfig::default());
        let (p, q, gamma) = (min.x[0].exp(), min.x[1].exp(), min.x[2].exp());
        if !min.value.is_finite() || ![p, q, gamma].iter().all(|v| v.is_finite() && *v > 0.0) {
            return Err(Error::NotConverged(
                "Gamma–Gamma likelihood has no finite optimum".into(),
            ));
        }
        if q <= 1.0 {
            return Err(Error::Degenerate(format!(
                "fitted q = {q:.3} ≤ 1: the mean value per purchase is unbounded (heavy tail)"
            )));
        }
        Ok(GammaGamma {
            p,
            q,
            gamma,
            mean_log_likelihood: -min.value,
            customers: rows.len(),
            converged: min.converged,
        })
    }

    /// The population mean value per purchase, `pγ/(q−1)`.
    pub fn population_mean(&self) -> f64 {
        self.p * self.gamma / (self.q - 1.0)
    }

    /// Expected value per purchase of a customer with `x` repeat purchases
    /// of mean value `mean_value`: `p(γ + x·m)/(p·x + q − 1)`, a weighted
    /// mean of the population mean and the customer's own. With `x = 0`
    /// (or a non-finite `mean_value`) it is the population mean.
    pub fn expected_avg_value(&self, x: u32, mean_value: f64) -> f64 {
        if x == 0 || !mean_value.is_finite() {
            return self.population_mean();
        }
        let xf = f64::from(x);
        self.p * (self.gamma + xf * mean_value) / (self.p * xf + self.q - 1.0)
    }
}

/// BG/NBD and Gamma–Gamma together: the predicted spend over a horizon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LtvModel {
    /// The purchase-count model.
    pub purchases: BgNbd,
    /// The value-per-purchase model.
    pub value: GammaGamma,
}

impl LtvModel {
    /// Expected spend in the next `horizon` time units:
    /// `expected_purchases × expected_avg_value`.
    pub fn predicted_spend(
        &self,
        horizon: f64,
        history: &CustomerHistory,
        mean_value: f64,
    ) -> Result<f64> {
        let n = self
            .purchases
            .expected_purchases(horizon, history.x, history.t_x, history.t)?;
        Ok(n * self.value.expected_avg_value(history.x, mean_value))
    }
}

/// Naive baseline: the customer's past rate continued — `past / t × horizon`
/// (`past` = purchases or spend over the customer's age `t > 0`).
pub fn naive_forecast(horizon: f64, past: f64, t: f64) -> Result<f64> {
    if !(t > 0.0 && t.is_finite() && past.is_finite() && horizon.is_finite()) {
        return Err(Error::InvalidValue(format!(
            "naive forecast needs t > 0, got t = {t}"
        )));
    }
    Ok(past / t * horizon)
}
