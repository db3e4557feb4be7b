//! # shoplake-gen
//!
//! Realistic, deterministic sample data for shoplake: the four batch sources
//! (transactions, products, clickstream, reviews) written as raw files under
//! `raw_root/<source>/date=YYYY-MM-DD/<file>`, ready for `shoplake import`.
//!
//! The same [`GenConfig`] always gives the same bytes: the generator uses its
//! own PRNG (SplitMix64-seeded xoshiro256**) and its own `ln`/`exp`, with one
//! random stream per purpose and day, so days can be simulated in parallel.
//!
//! ## The model
//!
//! * **Catalogue** — ten categories with their own brands, names (brand +
//!   adjective + noun), log-normal prices (books cheap, electronics dear) and
//!   stock. Each product has a latent quality (standard normal) that drives
//!   its return rate (category matters too: fashion is returned most) and its
//!   ratings. Popularity is Zipf (exponent 1.1) over a shuffled order. Each
//!   product has 1–2 planted complements, added to an order 20% of the time.
//!   Every week about 2% of the catalogue is repriced; transactions use the
//!   price in force that day.
//! * **Customers** — 65% signed up before the window, the rest arrive through
//!   it (accelerating). A log-normal personal purchase rate (heavy tail), a
//!   preferred device, a favourite category, and for 35% a churn day: their
//!   activity fades over the four weeks before it and stops (orders and
//!   visits) from it.
//! * **Orders** — lines per day follow weekly seasonality and a mild growth
//!   trend; each order belongs to a customer drawn by purchase rate, has 1–5
//!   lines (mostly 1–2) whose first product comes from the customer's
//!   favourite category 80% of the time and whose other products are
//!   correlated (complements, same category), quantities mostly 1, and a
//!   return/refund status (2:1).
//! * **Sessions** — an order gets a purchase session that day (landing with
//!   UTM parameters → product views → add to cart for each ordered product →
//!   checkout → `/checkout/confirmation?order_id=<its first line>`) while the
//!   clickstream budget allows at a plausible conversion rate; the rest of the
//!   budget is browsing sessions (40% anonymous, mobile heavy) with
//!   device-dependent drop-off at each funnel step. Event times follow a
//!   diurnal curve (evening peak, night trough) and never cross midnight.
//! * **Reviews** — by buyers of the product, 0–60 days after the purchase,
//!   rated from the product's quality and much lower after a return.
#![deny(missing_docs)]

use std::collections::BTreeMap;
use std::io;
use std::ops::Range;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use shoplake_core::sources::Source;
use shoplake_core::time::{days_from_civil, format_date};

mod catalog;
mod day;
mod files;
mod people;
mod reviews;
mod rng;
mod write;

#[cfg(test)]
mod tests;

use catalog::{Catalog, id_width};
use day::{DayOut, Plan, WEEKDAYS, calibrate, simulate, weekday};
use files::{Ids, Written};
use rng::{Rng, Stream, apportion, exp};

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenConfig {
    /// Number of customers (ids `C00001`…).
    pub customers: usize,
    /// Number of products in the catalogue (ids `P00001`…).
    pub products: usize,
    /// Order lines in total (exactly).
    pub transactions: usize,
    /// Clickstream events in total (exactly).
    pub clickstream: usize,
    /// Reviews wanted; fewer when there are not enough purchases to review
    /// (the summary says so).
    pub reviews: usize,
    /// Days in the window.
    pub days: u32,
    /// First day of the window, in days since 1970-01-01.
    pub start_date: i32,
    /// Seed: the same seed and sizes give the same bytes.
    pub seed: u64,
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            customers: 5_000,
            products: 500,
            transactions: 100_000,
            clickstream: 500_000,
            reviews: 10_000,
            days: 90,
            start_date: days_from_civil(2025, 1, 1),
            seed: 42,
        }
    }
}

/// Earliest and latest dates the core validators accept (1990-01-01,
/// 2100-12-31).
const MIN_DAY: i32 = 7_305;
const MAX_DAY: i32 = 47_846;

impl GenConfig {
    /// Checks sizes and dates; the message says what to change.
    pub fn validate(&self) -> Result<(), String> {
        if self.customers == 0 {
            return Err("customers must be at least 1".into());
        }
        if self.products == 0 {
            return Err("products must be at least 1".into());
        }
        if self.customers > 100_000_000 {
            return Err(format!(
                "customers must be at most 100000000, got {}",
                self.customers
            ));
        }
        if self.products > 10_000_000 {
            return Err(format!(
                "products must be at most 10000000, got {}",
                self.products
            ));
        }
        if self.transactions > 1_000_000_000 {
            return Err(format!(
                "transactions must be at most 1000000000, got {}",
                self.transactions
            ));
        }
        if self.clickstream > 4_000_000_000 {
            return Err(format!(
                "clickstream must be at most 4000000000, got {}",
                self.clickstream
            ));
        }
        if self.reviews > 1_000_000_000 {
            return Err(format!(
                "reviews must be at most 1000000000, got {}",
                self.reviews
            ));
        }
        if self.days == 0 {
            return Err("days must be at least 1".into());
        }
        if self.days > 3_660 {
            return Err(format!(
                "days must be at most 3660 (about ten years), got {}",
                self.days
            ));
        }
        let last = i64::from(self.start_date) + i64::from(self.days) - 1;
        if self.start_date < MIN_DAY || last > i64::from(MAX_DAY) {
            return Err(format!(
                "the window must lie within 1990-01-01..2100-12-31, got start {} for {} days",
                if (MIN_DAY - 1..=MAX_DAY + 1).contains(&self.start_date) {
                    format_date(self.start_date)
                } else {
                    format!("day {}", self.start_date)
                },
                self.days
            ));
        }
        Ok(())
    }
}

/// What [`generate`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenSummary {
    /// Rows written per source (every source present, 0 when none).
    pub rows: BTreeMap<Source, u64>,
    /// Files written.
    pub files: u64,
    /// Bytes written.
    pub bytes: u64,
    /// First day of the window (days since the epoch).
    pub first_date: i32,
    /// Last day of the window (days since the epoch).
    pub last_date: i32,
    /// Things the caller should know: budgets that fell short, repricing.
    pub notes: Vec<String>,
}

/// Target conversion rate (purchase sessions / sessions) when the
/// clickstream budget cannot cover every order at a lower one.
const TARGET_CONVERSION: f64 = 0.04;
/// Growth of daily activity over the window.
const TREND: f64 = 0.3;

/// Writes the files under `raw_root/<source>/date=YYYY-MM-DD/<file>`; returns
/// what it wrote.
///
/// Each file is written to a hidden temporary name in its folder and renamed
/// into place, so an interrupted run never leaves a partial file under a
/// final name; files of the same name are replaced, others left alone.
/// `progress` receives, now and then, the rows written so far for a source.
pub fn generate(
    cfg: &GenConfig,
    raw_root: &Path,
    progress: &dyn Fn(Source, u64),
) -> io::Result<GenSummary> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8);
    generate_with(cfg, raw_root, progress, threads)
}

/// [`generate`] on a given number of threads (the output does not depend on
/// it).
fn generate_with(
    cfg: &GenConfig,
    raw_root: &Path,
    progress: &dyn Fn(Source, u64),
    threads: usize,
) -> io::Result<GenSummary> {
    cfg.validate()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let days = cfg.days;
    let catalog = Catalog::new(cfg.seed, cfg.products, days);
    let customers = people::customers(cfg.seed, cfg.customers, days);
    let mut plan = Plan::new(cfg.seed, cfg.start_date, days, &catalog, &customers);

    // -- how much happens each day
    let mut noise = Rng::new(cfg.seed, Stream::DayNoise, 0);
    let sums = parallel_map(0..days, threads, |d| {
        let d = d as i32;
        customers.iter().fold((0.0, 0.0), |(o, v), c| {
            (o + c.order_weight(d), v + c.visit_weight(d))
        })
    });
    let mut order_w = Vec::with_capacity(days as usize);
    let mut visit_w = Vec::with_capacity(days as usize);
    for (d, &(o, v)) in sums.iter().enumerate() {
        let season = WEEKDAYS[weekday(cfg.start_date + d as i32)];
        let trend = 1.0 + TREND * d as f64 / f64::from(days);
        let wobble = exp(0.05 * noise.normal());
        let w = season * trend * wobble;
        order_w.push(w * o);
        visit_w.push((w, v));
    }
    let mean_v = visit_w.iter().map(|x| x.1).sum::<f64>() / f64::from(days);
    let traffic: Vec<f64> = visit_w
        .iter()
        .map(|&(w, v)| w * (0.4 + if mean_v > 0.0 { 0.6 * v / mean_v } else { 0.6 }))
        .collect();
    plan.lines = apportion(cfg.transactions as u64, &order_w);
    plan.events = apportion(cfg.clickstream as u64, &traffic);

    // -- how many orders the clickstream can cover, and review sampling
    let cal = calibrate(&plan);
    let est_orders = cfg.transactions as f64 / cal.lines_per_order;
    let per_order = cal.purchase_events + cal.browse_events * (1.0 / TARGET_CONVERSION - 1.0);
    let coverable = cfg.clickstream as f64 / per_order;
    plan.coverage = if est_orders <= coverable {
        1.0
    } else {
        coverable / est_orders
    };
    if cfg.transactions > 0 && cfg.reviews > 0 {
        // share of reviews that land inside the window, by line volume
        let mut inside = 0.0;
        for (d, &l) in plan.lines.iter().enumerate() {
            let left = f64::from(days) - d as f64;
            inside += l as f64 * (1.0 - exp(-left / reviews::MEAN_DELAY_DAYS));
        }
        let inside = (inside / cfg.transactions as f64).max(0.05);
        plan.review_p = (reviews::OVERSAMPLE * cfg.reviews as f64
            / (cfg.transactions as f64 * inside))
            .min(1.0);
    }

    let ids = Ids {
        customer: id_width(cfg.customers as u64, 5),
        product: catalog.id_width,
        transaction: id_width(cfg.transactions as u64, 9),
        session: id_width(cfg.clickstream as u64, 10),
        review: id_width(cfg.reviews as u64, 7),
    };
    let mut rows: BTreeMap<Source, u64> = Source::ALL.iter().map(|&s| (s, 0)).collect();
    let mut file_count = 0u64;
    let mut bytes = 0u64;
    let mut notes = Vec::new();
    let mut add = |rows: &mut BTreeMap<Source, u64>, s: Source, w: Written| {
        *rows.get_mut(&s).expect("source") += w.rows;
        file_count += 1;
        bytes += w.bytes;
    };

    // -- products
    add(
        &mut rows,
        Source::Products,
        files::write_catalogue(raw_root, cfg.start_date, &catalog)?,
    );
    for u in &catalog.updates {
        let w = files::write_price_update(raw_root, cfg.start_date + u.day as i32, &catalog, u)?;
        add(&mut rows, Source::Products, w);
    }
    progress(Source::Products, rows[&Source::Products]);
    if !catalog.updates.is_empty() {
        let repriced: usize = catalog.updates.iter().map(|u| u.products.len()).sum();
        notes.push(format!(
            "products: the full catalogue is on {}; {} repricing files (every {} days, {} rows in all) repeat the full row of each repriced product — the latest row per product_id is in force",
            format_date(cfg.start_date),
            catalog.updates.len(),
            catalog::REPRICE_EVERY,
            repriced
        ));
    }

    // -- transactions and clickstream, a chunk of days at a time
    let chunk = (2 * threads as u32).max(days.div_ceil(600));
    let mut next_line = 1u64;
    let mut next_session = 1u64;
    let (mut orders, mut covered) = (0u64, 0u64);
    let mut candidates = Vec::new();
    let mut start = 0;
    while start < days {
        let range = start..(start + chunk).min(days);
        let outs: Vec<DayOut> = parallel_map(range.clone(), threads, |d| simulate(&plan, d));
        let mut bases = Vec::with_capacity(outs.len());
        for out in &outs {
            bases.push((next_line, next_session));
            orders += out.orders;
            covered += out.covered;
            candidates.extend(out.candidates.iter().map(|c| day::Candidate {
                line: c.line + next_line,
                ..*c
            }));
            next_line += out.lines.len() as u64;
            next_session += out.sessions.len() as u64;
        }
        let written = parallel_map(
            0..outs.len() as u32,
            threads,
            |i| -> io::Result<[Option<Written>; 2]> {
                let out = &outs[i as usize];
                let epoch_day = cfg.start_date + (range.start + i) as i32;
                let (line0, session0) = bases[i as usize];
                let t = if out.lines.is_empty() {
                    None
                } else {
                    Some(files::write_transactions(
                        raw_root, epoch_day, &out.lines, line0, &ids,
                    )?)
                };
                let c = if out.events.is_empty() {
                    None
                } else {
                    Some(files::write_clickstream(
                        raw_root, epoch_day, out, session0, line0, &catalog, &ids,
                    )?)
                };
                Ok([t, c])
            },
        );
        for w in written {
            let [t, c] = w?;
            if let Some(t) = t {
                add(&mut rows, Source::Transactions, t);
            }
            if let Some(c) = c {
                add(&mut rows, Source::Clickstream, c);
            }
        }
        if cfg.transactions > 0 {
            progress(Source::Transactions, rows[&Source::Transactions]);
        }
        if cfg.clickstream > 0 {
            progress(Source::Clickstream, rows[&Source::Clickstream]);
        }
        start = range.end;
    }
    if covered < orders {
        let needed = (orders as f64 * per_order / 1000.0).ceil() * 1000.0;
        notes.push(format!(
            "clickstream: {} events cover {covered} of {orders} orders ({:.1}%) with a purchase session at a plausible ~{:.0}% conversion rate; about {needed:.0} events would cover them all",
            cfg.clickstream,
            100.0 * covered as f64 / orders as f64,
            100.0 * TARGET_CONVERSION,
        ));
    }

    // -- reviews
    if cfg.reviews > 0 {
        let chosen = reviews::select(candidates, cfg.reviews);
        let mut i = 0;
        let mut next_review = 1u64;
        let mut last_progress = 0u32;
        while i < chosen.len() {
            let d = chosen[i].review_day;
            let j = i + chosen[i..].iter().take_while(|c| c.review_day == d).count();
            let w = files::write_reviews(
                raw_root,
                cfg.start_date + d as i32,
                &chosen[i..j],
                next_review,
                cfg.seed,
                &catalog,
                &ids,
            )?;
            next_review += w.rows;
            add(&mut rows, Source::Reviews, w);
            if d >= last_progress + chunk || j == chosen.len() {
                progress(Source::Reviews, rows[&Source::Reviews]);
                last_progress = d;
            }
            i = j;
        }
        if chosen.len() < cfg.reviews {
            notes.push(format!(
                "reviews: {} of {} written — not enough distinct purchases inside the window to review (more transactions or days would give more)",
                chosen.len(),
                cfg.reviews
            ));
        }
    }

    Ok(GenSummary {
        rows,
        files: file_count,
        bytes,
        first_date: cfg.start_date,
        last_date: cfg.start_date + days as i32 - 1,
        notes,
    })
}

/// Maps `f` over `range` on up to `threads` threads; results in range order.
fn parallel_map<T: Send>(range: Range<u32>, threads: usize, f: impl Fn(u32) -> T + Sync) -> Vec<T> {
    let n = range.len();
    if threads <= 1 || n <= 1 {
        return range.map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let slots: Vec<Mutex<Option<T>>> = (0..n).map(|_| Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..threads.min(n) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let v = f(range.start + i as u32);
                    *slots[i].lock().expect("slot") = Some(v);
                }
            });
        }
    });
    slots
        .into_iter()
        .map(|m| m.into_inner().expect("slot").expect("filled"))
        .collect()
}
