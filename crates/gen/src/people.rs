//! Customers: signup day, a heavy-tailed personal purchase rate, a preferred
//! device and, for about a third of them, a churn day after which they
//! neither buy nor visit.

use crate::rng::{Rng, Stream, powf};

/// Device codes.
pub(crate) const DESKTOP: u8 = 0;
pub(crate) const MOBILE: u8 = 1;
pub(crate) const TABLET: u8 = 2;
/// Device names, indexed by code.
pub(crate) const DEVICE_NAMES: [&str; 3] = ["desktop", "mobile", "tablet"];

/// Share of customers who churn inside the window.
pub(crate) const CHURN_SHARE: f64 = 0.35;
/// Share of customers who signed up before the window.
const EXISTING_SHARE: f64 = 0.65;
/// Days before churn over which a churner's activity fades.
const FADE_DAYS: f64 = 28.0;
/// Days after signup with extra activity.
const WELCOME_DAYS: i32 = 7;

/// Marks "never churns".
pub(crate) const NEVER: i32 = i32::MAX;

/// One customer.
#[derive(Debug, Clone)]
pub(crate) struct Customer {
    /// Signup day, as an offset from the window start (negative: before).
    pub signup: i32,
    /// First day offset without any activity ([`NEVER`] for loyal customers).
    pub churn: i32,
    /// Relative purchase rate (log-normal, heavy-tailed).
    pub rate: f64,
    /// Relative visit rate (less skewed than buying).
    pub visit: f64,
    /// Preferred device.
    pub device: u8,
}

impl Customer {
    /// Whether the customer exists and has not churned on day offset `d`.
    #[inline]
    pub(crate) fn active(&self, d: i32) -> bool {
        d >= self.signup && d < self.churn
    }

    /// Activity multiplier on day `d`: fading before churn, boosted just
    /// after signup.
    #[inline]
    fn factor(&self, d: i32) -> f64 {
        let mut f = 1.0;
        if self.churn != NEVER {
            let left = f64::from(self.churn - d);
            if left < FADE_DAYS {
                f *= 0.2 + 0.8 * left / FADE_DAYS;
            }
        }
        if d - self.signup < WELCOME_DAYS {
            f *= 2.5;
        }
        f
    }

    /// Relative chance of ordering on day `d` (0 when inactive).
    #[inline]
    pub(crate) fn order_weight(&self, d: i32) -> f64 {
        if self.active(d) {
            self.rate * self.factor(d)
        } else {
            0.0
        }
    }

    /// Relative chance of visiting on day `d` (0 when inactive).
    #[inline]
    pub(crate) fn visit_weight(&self, d: i32) -> f64 {
        if self.active(d) {
            self.visit * self.factor(d)
        } else {
            0.0
        }
    }
}

/// Builds `n` customers for a window of `days` days.
pub(crate) fn customers(seed: u64, n: usize, days: u32) -> Vec<Customer> {
    let mut rng = Rng::new(seed, Stream::Customers, 0);
    let days = days as i32;
    (0..n)
        .map(|_| {
            let signup = if rng.chance(EXISTING_SHARE) {
                -(1 + rng.below(730) as i32)
            } else {
                // arrivals accelerate through the window
                (f64::from(days) * powf(rng.f64(), 0.8)).floor() as i32
            };
            let signup = signup.min(days - 1);
            let first = signup.max(0) + 1;
            let churn = if first < days && rng.chance(CHURN_SHARE) {
                rng.range(i64::from(first), i64::from(days - 1)) as i32
            } else {
                NEVER
            };
            let rate = rng.lognormal(1.0, 1.1);
            let visit = powf(rate, 0.6);
            let device = match rng.below(100) {
                0..=41 => DESKTOP,
                42..=89 => MOBILE,
                _ => TABLET,
            };
            Customer {
                signup,
                churn,
                rate,
                visit,
                device,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn customers_are_heterogeneous() {
        let cs = customers(9, 10_000, 90);
        let churners = cs.iter().filter(|c| c.churn != NEVER).count() as f64 / cs.len() as f64;
        assert!((0.30..0.40).contains(&churners), "{churners}");
        let new = cs.iter().filter(|c| c.signup >= 0).count() as f64 / cs.len() as f64;
        assert!((0.25..0.45).contains(&new), "{new}");
        assert!(cs.iter().all(|c| c.churn > c.signup && c.signup < 90));
        // heavy tail: top 10% of rates hold well over a third of the total
        let mut r: Vec<f64> = cs.iter().map(|c| c.rate).collect();
        r.sort_by(|a, b| b.total_cmp(a));
        let top: f64 = r[..1_000].iter().sum();
        assert!(top / r.iter().sum::<f64>() > 0.35);
        // fading before churn
        let c = cs
            .iter()
            .find(|c| c.churn != NEVER && c.churn > 40 && c.signup < 0)
            .unwrap();
        assert!(c.order_weight(c.churn - 1) < 0.3 * c.order_weight(c.churn - 40));
        assert_eq!(c.order_weight(c.churn), 0.0);
    }
}
