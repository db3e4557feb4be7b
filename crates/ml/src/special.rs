//! Special functions the lifetime-value models need.

use crate::{Error, Result};

const LANCZOS_G: f64 = 7.0;
const LANCZOS: [f64; 9] = [
    0.999_999_999_999_809_9,
    676.520_368_121_885_1,
    -1_259.139_216_722_402_8,
    771.323_428_777_653_1,
    -176.615_029_162_140_6,
    12.507_343_278_686_905,
    -0.138_571_095_265_720_12,
    9.984_369_578_019_572e-6,
    1.505_632_735_149_311_6e-7,
];

/// `ln |Γ(x)|` by the Lanczos approximation (g = 7, 9 terms), about 15
/// significant digits for `x > 0`; negative non-integers use the reflection
/// formula, and non-positive integers (the poles) give `+∞`.
pub fn ln_gamma(x: f64) -> f64 {
    if x <= 0.0 && x.fract() == 0.0 {
        return f64::INFINITY;
    }
    if x < 0.5 {
        let s = (std::f64::consts::PI * x).sin();
        if s == 0.0 {
            return f64::INFINITY;
        }
        return (std::f64::consts::PI / s.abs()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut acc = LANCZOS[0];
    for (i, c) in LANCZOS.iter().enumerate().skip(1) {
        acc += c / (x + i as f64);
    }
    let t = x + LANCZOS_G + 0.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + acc.ln()
}

/// Most terms [`hyp2f1`] sums before giving up.
pub const HYP2F1_MAX_TERMS: usize = 200_000;

/// The Gauss hypergeometric function `₂F₁(a, b; c; z)` by its power series
/// `Σ (a)ₙ(b)ₙ / ((c)ₙ n!) zⁿ`.
///
/// Domain: `|z| < 1` and `c` not a non-positive integer. The series
/// converges geometrically with ratio `|z|`, so `z` near 1 needs many terms;
/// summing stops when a term falls below `1e-16` of the sum (twice in a row)
/// and fails with [`Error::NotConverged`] after [`HYP2F1_MAX_TERMS`] terms
/// or on a non-finite sum.
pub fn hyp2f1(a: f64, b: f64, c: f64, z: f64) -> Result<f64> {
    if z.is_nan() || z.abs() >= 1.0 || ![a, b, c].iter().all(|v| v.is_finite()) {
        return Err(Error::InvalidValue(format!(
            "hyp2f1 needs |z| < 1 and finite a, b, c; got z = {z}"
        )));
    }
    if c <= 0.0 && c.fract() == 0.0 {
        return Err(Error::InvalidValue(format!(
            "hyp2f1 is undefined for c = {c}"
        )));
    }
    let mut term = 1.0;
    let mut sum = 1.0;
    let mut small = 0;
    for n in 0..HYP2F1_MAX_TERMS {
        let nf = n as f64;
        term *= (a + nf) * (b + nf) / ((c + nf) * (nf + 1.0)) * z;
        sum += term;
        if !sum.is_finite() {
            break;
        }
        if term.abs() <= 1e-16 * sum.abs() {
            small += 1;
            if small >= 2 || term == 0.0 {
                return Ok(sum);
            }
        } else {
            small = 0;
        }
    }
    Err(Error::NotConverged(format!(
        "hyp2f1({a}, {b}; {c}; {z}) series"
    )))
}

/// `ln(eᵃ + eᵇ)` without overflow.
pub(crate) fn log_add_exp(a: f64, b: f64) -> f64 {
    let m = a.max(b);
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + ((a - m).exp() + (b - m).exp()).ln()
}
