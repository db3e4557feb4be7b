//! Requests per second per client address on the collection endpoints
//! (`server.ip_requests_per_sec`), checked before a body is read or decoded,
//! so a flood from one address costs a 429, not a decode.
//!
//! One token bucket per address (bursts of two seconds' worth), in 16
//! shards. At most [`MAX_ADDRESSES`] addresses are tracked: past that, the
//! shard forgets addresses whose bucket has refilled (they are idle), and if
//! none has, the oldest half, so memory stays bounded under a spoofed or
//! distributed flood (a forgotten address starts with a full bucket).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Addresses tracked at most (about 48 bytes each).
pub const MAX_ADDRESSES: usize = 200_000;
const SHARDS: usize = 16;

/// The limiter; `None` rate means off.
#[derive(Debug)]
pub struct IpLimiter {
    rate: f64,
    shards: Vec<Mutex<HashMap<IpAddr, (f64, Instant)>>>,
}

impl IpLimiter {
    /// `rate` requests per second per address; `None` when `rate` is 0.
    pub fn new(rate: f64) -> Option<IpLimiter> {
        (rate > 0.0).then(|| IpLimiter {
            rate,
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        })
    }

    /// Takes one request of `ip`'s allowance; `Err(seconds)` to wait.
    pub fn admit(&self, ip: IpAddr) -> Result<(), u64> {
        self.admit_at(ip, Instant::now())
    }

    fn admit_at(&self, ip: IpAddr, now: Instant) -> Result<(), u64> {
        let burst = (self.rate * 2.0).max(1.0);
        let shard = &self.shards[shard_of(ip)];
        let mut m = shard.lock().expect("unpoisoned");
        if m.len() >= MAX_ADDRESSES / SHARDS && !m.contains_key(&ip) {
            let rate = self.rate;
            m.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * rate < burst
            });
            if m.len() >= MAX_ADDRESSES / SHARDS {
                let mut ages: Vec<Instant> = m.values().map(|(_, at)| *at).collect();
                ages.sort();
                let cut = ages[ages.len() / 2];
                m.retain(|_, (_, at)| *at > cut);
            }
        }
        let (tokens, at) = m.entry(ip).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / self.rate).ceil().max(1.0) as u64)
        }
    }

    /// Addresses tracked now.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().expect("unpoisoned").len())
            .sum()
    }
}

fn shard_of(ip: IpAddr) -> usize {
    let h = match ip {
        IpAddr::V4(v) => u32::from(v) as u64,
        IpAddr::V6(v) => {
            let n = u128::from(v);
            (n as u64) ^ ((n >> 64) as u64)
        }
    };
    (h.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 60) as usize % SHARDS
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn each_address_gets_its_burst_then_its_rate() {
        let l = IpLimiter::new(5.0).unwrap();
        let t0 = Instant::now();
        let a: IpAddr = "198.51.100.7".parse().unwrap();
        let b: IpAddr = "2001:db8::1".parse().unwrap();
        for _ in 0..10 {
            assert!(l.admit_at(a, t0).is_ok());
        }
        assert_eq!(l.admit_at(a, t0), Err(1), "burst of 2 s used up");
        assert!(l.admit_at(b, t0).is_ok(), "another address is not affected");
        assert!(
            l.admit_at(a, t0 + Duration::from_millis(250)).is_ok(),
            "refilled"
        );
        assert!(IpLimiter::new(0.0).is_none());
    }

    #[test]
    fn memory_stays_bounded_under_a_spoofed_flood() {
        let l = IpLimiter::new(1.0).unwrap();
        let t0 = Instant::now();
        for i in 0..(MAX_ADDRESSES as u32 * 2) {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0A00_0000 + i));
            let _ = l.admit_at(ip, t0 + Duration::from_micros(i as u64));
        }
        assert!(l.tracked() <= MAX_ADDRESSES, "{}", l.tracked());
    }
}
