//! Store-level benchmark of order creation (no HTTP): opens an
//! [`OrderStore`] and creates orders from many concurrent tasks.
//!
//! ```text
//! storebench [URL] [--tasks N] [--seconds S] [--warmup S] [--rate ORDERS_PER_S]
//!                  [--preload N] [--no-keys] [--keep]
//! ```
//!
//! URL is `postgres://...` (the orders go to a fresh schema
//! `storebench_<pid>_<time>`, dropped at the end unless `--keep`), a SQLite
//! file path, or `sqlite` (default: a fresh database in a temporary
//! directory under the current directory, removed at the end).
//!
//! Every order is realistic, like `crates/server/examples/orderload.rs`
//! sends them: 1 to 4 lines from a fixed catalogue (product names of brand,
//! adjective and noun, so the full-text index has real words), a unique
//! `order_id`, an idempotency key (unless `--no-keys`), `placed_at` = now
//! and a `total` the store checks.
//!
//! * `--preload N` first creates N orders at saturation (not measured), so
//!   the indexes are not empty.
//! * `--warmup S` seconds of load (default 2) before the measured window.
//! * Closed loop (default): each of the N tasks (default 64) creates its
//!   next order as soon as the last one is answered, for S seconds
//!   (default 10); latency from the call.
//! * `--rate R`: open loop, each task has a schedule of intended send times
//!   at R/N per second and latency is measured from the intended time (no
//!   coordinated omission).
//!
//! Prints one human-readable line and one JSON line: creations/s, latency
//! p50/p90/p99/max, errors, and the writer's batches (count, mean size,
//! and on PostgreSQL the distribution of orders per transaction, read from
//! `xmin`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use chrono::Utc;
use shoplake_orders::{Line, Money, NewOrder, OrderStore};
use sqlx::Connection as _;

/// The generator's catalogue vocabulary (a subset of
/// crates/gen/src/catalog.rs): category, median price in units, brands,
/// adjectives, nouns with their relative price.
type Category = (
    &'static str,
    f64,
    &'static [&'static str],
    &'static [&'static str],
    &'static [(&'static str, f64)],
);
#[rustfmt::skip]
const CATALOGUE: &[Category] = &[
    ("Electronics", 59.0, &["Voltix", "Nexora", "Aurion", "Quantix", "Lumetra", "Sonaro"],
     &["Wireless", "Smart", "Portable", "Ultra-Slim", "Noise-Cancelling", "4K", "Bluetooth", "Rechargeable", "Compact", "Pro"],
     &[("Headphones", 1.3), ("Earbuds", 0.9), ("Speaker", 1.0), ("Smartwatch", 2.2), ("Power Bank", 0.5), ("Webcam", 0.9), ("Keyboard", 0.9), ("Mouse", 0.45), ("Monitor", 3.2), ("Tablet", 4.0), ("Charger", 0.35), ("Router", 1.6), ("Action Camera", 3.0), ("E-Reader", 2.0)]),
    ("Home & Kitchen", 32.0, &["Hearthly", "Casa Nova", "Kitchara", "Dwello", "Oakmere", "Brightnest"],
     &["Stainless Steel", "Non-Stick", "Ceramic", "Bamboo", "Cast Iron", "Glass", "Insulated", "Stackable", "Minimalist", "Electric"],
     &[("Frying Pan", 1.0), ("Chef's Knife", 1.1), ("Cutting Board", 0.6), ("Kettle", 1.0), ("Coffee Maker", 2.2), ("Blender", 2.0), ("Storage Set", 0.7), ("Table Lamp", 1.2), ("Throw Blanket", 0.9), ("Dinnerware Set", 1.6), ("Toaster", 1.3), ("Mixing Bowls", 0.7), ("Air Fryer", 2.8)]),
    ("Fashion", 35.0, &["Urbanthread", "Maison Vale", "Northloom", "Kindred & Co", "Velora", "Stitchworks"],
     &["Slim-Fit", "Oversized", "Linen", "Cotton", "Leather", "Wool", "Denim", "Quilted", "Vintage", "Classic"],
     &[("T-Shirt", 0.5), ("Jeans", 1.3), ("Jacket", 2.5), ("Sneakers", 2.0), ("Dress", 1.5), ("Hoodie", 1.1), ("Scarf", 0.6), ("Boots", 2.6), ("Shirt", 0.9), ("Sweater", 1.3), ("Belt", 0.6), ("Backpack", 1.4), ("Chinos", 1.1)]),
    ("Beauty", 18.0, &["Lumiere", "Pure Petal", "Glowra", "Verdant Skin", "Aurelle"],
     &["Hydrating", "Vitamin C", "Matte", "Organic", "Fragrance-Free", "Nourishing", "Brightening", "Long-Lasting", "Gentle", "Rose"],
     &[("Face Serum", 1.5), ("Moisturizer", 1.2), ("Lipstick", 0.8), ("Mascara", 0.7), ("Cleanser", 0.8), ("Sunscreen", 0.9), ("Eye Cream", 1.6), ("Hair Oil", 1.0), ("Shampoo", 0.6), ("Face Mask", 0.5), ("Foundation", 1.3), ("Body Lotion", 0.7)]),
    ("Sports & Outdoors", 38.0, &["Peakform", "Stridex", "Trailborn", "Kinetic Edge", "Summit & Pine"],
     &["Lightweight", "Adjustable", "Waterproof", "Foldable", "Breathable", "Ergonomic", "Heavy-Duty", "Non-Slip", "Insulated", "Reflective"],
     &[("Yoga Mat", 0.8), ("Dumbbell Set", 1.8), ("Running Shoes", 2.5), ("Water Bottle", 0.5), ("Tent", 4.0), ("Resistance Bands", 0.5), ("Cycling Helmet", 1.6), ("Hiking Backpack", 2.2), ("Jump Rope", 0.3), ("Fitness Tracker", 2.0), ("Sleeping Bag", 2.0), ("Foam Roller", 0.6)]),
    ("Books", 14.0, &["Inkwell Press", "Northlight Books", "Paperlantern", "Meridian House", "Quillstone"],
     &["Illustrated", "Bestselling", "Complete", "Pocket", "Annotated", "Collector's", "Beginner's", "Essential", "Modern", "Classic"],
     &[("Cookbook", 1.6), ("Mystery Novel", 0.8), ("Sci-Fi Novel", 0.8), ("Biography", 1.3), ("Travel Guide", 1.2), ("Poetry Collection", 0.9), ("History of Rome", 1.5), ("Guide to Python", 2.4), ("Fantasy Saga", 1.1), ("Picture Book", 0.9), ("Self-Help Book", 1.0), ("Graphic Novel", 1.3)]),
    ("Toys & Games", 25.0, &["Playwise", "Tinkertot", "Brickhaven", "Jollyjam", "Wonderkin"],
     &["Wooden", "Educational", "Magnetic", "Remote-Control", "Plush", "Glow-in-the-Dark", "Interactive", "Classic", "Deluxe", "Mini"],
     &[("Building Blocks", 1.5), ("Puzzle", 0.7), ("Board Game", 1.3), ("Race Car", 1.0), ("Teddy Bear", 0.8), ("Dollhouse", 3.0), ("Science Kit", 1.2), ("Card Game", 0.5), ("Train Set", 2.2), ("Drone", 2.8), ("Art Set", 0.9), ("Marble Run", 1.4)]),
    ("Grocery", 9.0, &["Harvest Table", "Greenfield Farms", "Daily Pantry", "Artisan Roast", "Orchard Lane"],
     &["Organic", "Whole Bean", "Extra Virgin", "Gluten-Free", "Dark", "Raw", "Smoked", "Sea Salt", "Spicy", "Wildflower"],
     &[("Coffee", 1.5), ("Olive Oil", 1.4), ("Honey", 1.1), ("Granola", 0.7), ("Green Tea", 0.7), ("Pasta", 0.4), ("Chocolate Bar", 0.4), ("Almonds", 1.1), ("Hot Sauce", 0.7), ("Maple Syrup", 1.4), ("Protein Bars", 1.8), ("Oat Milk", 0.5)]),
];

/// A product of the run: id, sku, name, category, price in cents.
struct Product {
    id: String,
    sku: String,
    name: String,
    category: &'static str,
    cents: i64,
}

/// A fixed catalogue of `n` products built from [`CATALOGUE`].
fn products(n: usize) -> Vec<Product> {
    let mut rng = Rng(0x5eed_0f0d_e125);
    (0..n)
        .map(|i| {
            let (category, median, brands, adjectives, nouns) = CATALOGUE[i % CATALOGUE.len()];
            let brand = brands[rng.below(brands.len())];
            let adjective = adjectives[rng.below(adjectives.len())];
            let (noun, factor) = nouns[rng.below(nouns.len())];
            // a spread of about ±50 % around the noun's price
            let spread = 0.5 + rng.below(1000) as f64 / 1000.0;
            let cents = ((median * factor * spread * 100.0).round() as i64).max(99);
            Product {
                id: format!("P{i:05}"),
                sku: format!("{}-{i:05}", &category[..3].to_ascii_uppercase()),
                name: format!("{brand} {adjective} {noun}"),
                category,
                cents,
            }
        })
        .collect()
}

/// xorshift64*: enough randomness for load, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// One realistic order with a checked total.
fn new_order(id: &str, products: &[Product], rng: &mut Rng) -> NewOrder {
    let customer = rng.below(200_000);
    let n_lines = 1 + rng.below(4);
    let mut lines = Vec::with_capacity(n_lines);
    let mut subtotal = 0;
    for _ in 0..n_lines {
        // popular products first: the square of a uniform skews to low indices
        let u = rng.below(10_000) as f64 / 10_000.0;
        let p = &products[(u * u * products.len() as f64) as usize];
        let quantity = 1 + (rng.below(10) / 7) as i64; // mostly 1, sometimes 2
        subtotal += p.cents * quantity;
        lines.push(Line {
            product_id: p.id.clone(),
            sku: Some(p.sku.clone()),
            name: Some(p.name.clone()),
            category: Some(p.category.to_string()),
            quantity,
            unit_price: Money::from_cents(p.cents),
        });
    }
    let shipping = if subtotal >= 5000 { 0 } else { 495 };
    let (discount, coupon) = if rng.below(5) == 0 {
        (subtotal / 10, Some("WELCOME10".to_string()))
    } else {
        (0, None)
    };
    let tax = (subtotal - discount) * 19 / 119;
    let total = subtotal - discount + tax + shipping;
    NewOrder {
        order_id: id.to_string(),
        customer_id: format!("cust-{customer:06}"),
        email: Some(format!("customer{customer}@example.com")),
        currency: "EUR".into(),
        tax: Money::from_cents(tax),
        shipping: Money::from_cents(shipping),
        discount: Money::from_cents(discount),
        coupon,
        placed_at: Some(Utc::now()),
        lines,
        total: Some(Money::from_cents(total)),
    }
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pct(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64 / 1000.0
}

/// What one phase of load measured.
struct Phase {
    seconds: f64,
    created: u64,
    errors: u64,
    first_error: Option<String>,
    /// Latencies in µs, sorted.
    latencies: Vec<u64>,
    batches: u64,
    writes: u64,
}

/// What [`load`] runs.
#[derive(Clone, Copy)]
struct Load {
    /// Concurrent tasks.
    tasks: usize,
    /// For how long.
    seconds: f64,
    /// At most this many orders.
    count: u64,
    /// Orders per second (open loop), or 0 (closed loop).
    rate: f64,
    /// Whether orders come with an idempotency key.
    keys: bool,
}

/// Creates orders with ids `{prefix}-{n}` as `how` says.
async fn load(store: &OrderStore, catalogue: &Arc<Vec<Product>>, prefix: &str, how: Load) -> Phase {
    let Load {
        tasks,
        seconds,
        count,
        rate,
        keys,
    } = how;
    let sent = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let before = store.writer_stats();
    let start = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let (store, catalogue, sent, stop, prefix) = (
            store.clone(),
            catalogue.clone(),
            sent.clone(),
            stop.clone(),
            prefix.to_string(),
        );
        handles.push(tokio::spawn(async move {
            let mut rng =
                Rng(0x9e37_79b9_7f4a_7c15 ^ (t as u64 + 1).wrapping_mul(0x1000_0000_01b3));
            let (mut lat, mut errors, mut first_error) = (Vec::new(), 0_u64, None);
            let interval = (rate > 0.0).then(|| Duration::from_secs_f64(tasks as f64 / rate));
            let mut due = Instant::now()
                + interval.map_or(Duration::ZERO, |i| i.mul_f64(t as f64 / tasks as f64));
            while !stop.load(Relaxed) {
                if interval.is_some() {
                    tokio::time::sleep_until(due.into()).await;
                    if stop.load(Relaxed) {
                        break;
                    }
                }
                let n = sent.fetch_add(1, Relaxed);
                if n >= count {
                    break;
                }
                let id = format!("{prefix}-{n:09}");
                let order = new_order(&id, &catalogue, &mut rng);
                let key = keys.then(|| format!("ik-{id}"));
                let t0 = if interval.is_some() {
                    due
                } else {
                    Instant::now()
                };
                if let Some(i) = interval {
                    due += i;
                }
                match store.create(&order, key.as_deref()).await {
                    Ok(c) if !c.replayed => lat.push(t0.elapsed().as_micros() as u64),
                    Ok(_) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| format!("{id} replayed"));
                    }
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| e.to_string());
                    }
                }
            }
            (lat, errors, first_error)
        }));
    }
    let deadline = tokio::time::sleep(Duration::from_secs_f64(seconds));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => break,
            _ = tokio::time::sleep(Duration::from_millis(20)) => {
                if handles.iter().all(|h| h.is_finished()) {
                    break;
                }
            }
        }
    }
    stop.store(true, Relaxed);
    let mut phase = Phase {
        seconds: 0.0,
        created: 0,
        errors: 0,
        first_error: None,
        latencies: Vec::new(),
        batches: 0,
        writes: 0,
    };
    for h in handles {
        let (lat, errors, first_error) = h.await.expect("a load task panicked");
        phase.latencies.extend(lat);
        phase.errors += errors;
        if phase.first_error.is_none() {
            phase.first_error = first_error;
        }
    }
    phase.seconds = start.elapsed().as_secs_f64();
    phase.created = phase.latencies.len() as u64;
    phase.latencies.sort_unstable();
    let after = store.writer_stats();
    phase.batches = after.batches - before.batches;
    phase.writes = after.writes - before.writes;
    phase
}

/// On PostgreSQL: orders per committed transaction (by `xmin`) of the
/// orders whose id starts with `prefix`: (transactions, p50, p90, max).
async fn pg_batches(url: &str, schema: &str, prefix: &str) -> Option<(i64, i64, i64, i64)> {
    let mut conn = sqlx::PgConnection::connect(url).await.ok()?;
    let sql = format!(
        "WITH b AS (SELECT count(*) AS n FROM {schema}.orders WHERE order_id LIKE $1 GROUP BY xmin::text::bigint) \
         SELECT count(*), percentile_disc(0.5) WITHIN GROUP (ORDER BY n), \
                percentile_disc(0.9) WITHIN GROUP (ORDER BY n), max(n) FROM b"
    );
    let row: (i64, Option<i64>, Option<i64>, Option<i64>) =
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(format!("{prefix}-%"))
            .fetch_one(&mut conn)
            .await
            .ok()?;
    conn.close().await.ok()?;
    Some((row.0, row.1?, row.2?, row.3?))
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = args
        .get(1)
        .filter(|a| !a.starts_with("--"))
        .cloned()
        .unwrap_or_else(|| "sqlite".to_string());
    let tasks: usize = arg(&args, "--tasks", 64);
    let seconds: f64 = arg(&args, "--seconds", 10.0);
    let warmup: f64 = arg(&args, "--warmup", 2.0);
    let rate: f64 = arg(&args, "--rate", 0.0);
    let preload: u64 = arg(&args, "--preload", 0);
    let keys = !args.iter().any(|a| a == "--no-keys");
    let keep = args.iter().any(|a| a == "--keep");

    let run = format!(
        "{}_{}",
        std::process::id(),
        Utc::now().timestamp_subsec_nanos()
    );
    let postgres = url.starts_with("postgres://") || url.starts_with("postgresql://");
    let (store, schema, _dir) = if postgres {
        let schema = format!("storebench_{run}");
        let store = OrderStore::open_postgres_in_schema(&url, &schema)
            .await
            .expect("opening PostgreSQL");
        (store, Some(schema), None)
    } else if url == "sqlite" {
        let dir = tempfile::tempdir_in(".").expect("a temporary directory");
        let store = OrderStore::open_sqlite(dir.path().join("orders.db"))
            .await
            .expect("opening SQLite");
        (store, None, Some(dir))
    } else {
        let store = OrderStore::open(&url, std::path::Path::new("."))
            .await
            .expect("opening SQLite");
        (store, None, None)
    };
    let catalogue = Arc::new(products(2_000));
    let measured = Load {
        tasks,
        seconds,
        count: u64::MAX,
        rate,
        keys,
    };

    if preload > 0 {
        let how = Load {
            seconds: 1e9,
            count: preload,
            rate: 0.0,
            ..measured
        };
        let p = load(&store, &catalogue, &format!("pre{run}"), how).await;
        eprintln!(
            "preloaded {} orders in {:.1} s ({:.0}/s)",
            p.created,
            p.seconds,
            p.created as f64 / p.seconds
        );
    }
    if warmup > 0.0 {
        let how = Load {
            seconds: warmup,
            ..measured
        };
        load(&store, &catalogue, &format!("w{run}"), how).await;
    }
    let prefix = format!("m{run}");
    let p = load(&store, &catalogue, &prefix, measured).await;
    let per_s = p.created as f64 / p.seconds;
    let mean_batch = p.writes as f64 / p.batches.max(1) as f64;
    let lat = &p.latencies;
    let mode = if rate > 0.0 {
        format!("paced {rate:.0}/s")
    } else {
        "closed loop".to_string()
    };
    let pg = match &schema {
        Some(s) => pg_batches(&url, s, &prefix).await,
        None => None,
    };
    println!(
        "{} {mode}, {tasks} tasks, {:.1} s: {} created, {per_s:.0}/s, p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms, errors {}{}; {} batches, mean {mean_batch:.1} writes{}",
        store.backend(),
        p.seconds,
        p.created,
        pct(lat, 0.5),
        pct(lat, 0.9),
        pct(lat, 0.99),
        pct(lat, 1.0),
        p.errors,
        p.first_error
            .as_deref()
            .map(|e| format!(" (first: {e})"))
            .unwrap_or_default(),
        p.batches,
        pg.map(|(n, p50, p90, max)| format!(
            " (committed transactions: {n}, orders each p50 {p50}, p90 {p90}, max {max})"
        ))
        .unwrap_or_default(),
    );
    println!(
        "{}",
        serde_json::json!({
            "backend": store.backend(),
            "mode": if rate > 0.0 { "paced" } else { "closed" },
            "target_rate": rate,
            "tasks": tasks,
            "seconds": p.seconds,
            "created": p.created,
            "creations_per_s": per_s,
            "errors": p.errors,
            "latency_ms": {
                "p50": pct(lat, 0.5), "p90": pct(lat, 0.9), "p99": pct(lat, 0.99), "max": pct(lat, 1.0),
            },
            "latency_from": if rate > 0.0 { "intended send time" } else { "call" },
            "batches": p.batches,
            "mean_batch": mean_batch,
        })
    );
    if let Some(schema) = schema.filter(|_| !keep)
        && let Ok(mut conn) = sqlx::PgConnection::connect(&url).await
    {
        let drop = format!("DROP SCHEMA IF EXISTS {schema} CASCADE");
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(drop))
            .execute(&mut conn)
            .await;
        let _ = conn.close().await;
    }
    store.close().await;
}
