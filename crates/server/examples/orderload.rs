//! Load generator for the orders API of `shoplake serve` (used by
//! `bench/orders`).
//!
//! ```text
//! orderload ADDR TOKEN [--connections N] [--seconds S] [--rate ORDERS_PER_S]
//!                      [--count N] [--run-id ID]
//! orderload ADDR TOKEN --search M [--connections N]
//! orderload ADDR TOKEN --paths FILE [--connections N] [--seconds S] [--rate R]
//! ```
//!
//! **Create mode** keeps N keep-alive HTTP/1.1 connections sending
//! `POST /api/orders` with `Authorization: Bearer TOKEN`: realistic orders
//! of 1 to 4 lines from the generator's catalogue, each with a unique
//! `order_id` and an `Idempotency-Key`, `placed_at` = now, and a `total`
//! the server checks. Closed loop (each connection sends its next order
//! when the last is answered) for S seconds or until `--count` orders were
//! sent; or, with `--rate`, open loop: each connection has a schedule of
//! intended send times at rate/N per second, and latency is measured from
//! the intended time, so a server that falls behind shows its queueing
//! (no coordinated omission). Prints one JSON line: creations per second,
//! latency percentiles, answers by HTTP status.
//!
//! **Search mode** sends M `GET /api/orders?q=WORD&limit=50` over N
//! connections, WORD drawn from the catalogue's product-name words, and
//! prints p50/p90/p99/max latency and how many orders the pages held.
//!
//! **Paths mode** sends `GET` requests for the lines of FILE in turn (e.g.
//! `/api/recommendations?customer_id=...`, used by `bench/recs`) over N
//! connections for S seconds, closed loop, or open loop at R requests/s
//! with latency from the intended send time; prints requests/s, latency
//! percentiles and answers by status.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The generator's catalogue vocabulary (crates/gen/src/catalog.rs): category,
/// median price, brands, adjectives, nouns with their relative price.
#[rustfmt::skip]
type Category = (&'static str, f64, &'static [&'static str], &'static [&'static str], &'static [(&'static str, f64)]);
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
    ("Garden", 29.0, &["Greenthumb", "Terracraft", "Bloomfield", "Yardly", "Fernhill"],
     &["Solar", "Cordless", "Galvanized", "Self-Watering", "Weatherproof", "Collapsible", "Raised", "Terracotta", "Heavy-Duty", "Telescopic"],
     &[("Garden Hose", 1.1), ("Pruning Shears", 0.8), ("Planter", 0.9), ("String Lights", 0.9), ("Lawn Mower", 8.0), ("Bird Feeder", 0.8), ("Watering Can", 0.7), ("Seed Starter Kit", 0.6), ("Patio Chair", 2.5), ("Garden Gloves", 0.4), ("Compost Bin", 1.8), ("Hedge Trimmer", 3.5)]),
    ("Health & Household", 17.0, &["Vitalis", "Nordic Well", "Carewell", "Purelife", "Thrivewell"],
     &["Daily", "Vegan", "Sugar-Free", "Extra Strength", "Digital", "Chewable", "Unscented", "Reusable", "Travel-Size", "Family-Size"],
     &[("Multivitamin", 1.0), ("Omega-3 Capsules", 1.0), ("Thermometer", 0.9), ("First Aid Kit", 1.2), ("Hand Sanitizer", 0.3), ("Probiotic", 1.5), ("Electric Toothbrush", 3.0), ("Blood Pressure Monitor", 3.0), ("Vitamin D Drops", 0.7), ("Massage Gun", 5.0), ("Sleep Aid", 0.7), ("Protein Powder", 2.0)]),
];

/// Products of the run: (product id, sku, name, category, price in cents).
type Product = (String, String, String, &'static str, i64);

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
            let sku = format!("{}-{i:05}", &category[..3].to_ascii_uppercase());
            (
                format!("P{i:05}"),
                sku,
                format!("{brand} {adjective} {noun}"),
                category,
                cents,
            )
        })
        .collect()
}

/// The distinct lower-case words of the catalogue's product names.
fn name_words() -> Vec<String> {
    let mut words: Vec<String> = CATALOGUE
        .iter()
        .flat_map(|(_, _, brands, adjectives, nouns)| {
            let nouns = nouns.iter().map(|(n, _)| *n);
            brands
                .iter()
                .copied()
                .chain(adjectives.iter().copied())
                .chain(nouns)
        })
        .flat_map(|s| {
            s.split(|c: char| !c.is_alphanumeric())
                .map(str::to_lowercase)
                .collect::<Vec<_>>()
        })
        .filter(|w| w.len() >= 3)
        .collect();
    words.sort();
    words.dedup();
    words
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

fn money(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// One realistic order body.
fn order_body(id: &str, products: &[Product], rng: &mut Rng) -> String {
    use std::fmt::Write as _;
    let customer = rng.below(200_000);
    let n_lines = 1 + rng.below(4);
    let mut lines = String::new();
    let mut subtotal = 0;
    for i in 0..n_lines {
        // popular products first: the square of a uniform skews to low indices
        let u = rng.below(10_000) as f64 / 10_000.0;
        let (pid, sku, name, category, price) = &products[(u * u * products.len() as f64) as usize];
        let quantity = 1 + (rng.below(10) / 7) as i64; // mostly 1, sometimes 2
        subtotal += price * quantity;
        if i > 0 {
            lines.push(',');
        }
        let _ = write!(
            lines,
            r#"{{"product_id":"{pid}","sku":"{sku}","name":"{name}","category":"{category}","quantity":{quantity},"unit_price":"{}"}}"#,
            money(*price)
        );
    }
    let shipping = if subtotal >= 5000 { 0 } else { 495 };
    let (discount, coupon) = if rng.below(5) == 0 {
        (subtotal / 10, r#""WELCOME10""#)
    } else {
        (0, "null")
    };
    let tax = (subtotal - discount) * 19 / 119;
    let total = subtotal - discount + tax + shipping;
    let placed_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    format!(
        r#"{{"order_id":"{id}","customer_id":"cust-{customer:06}","email":"customer{customer}@example.com","currency":"EUR","tax":"{}","shipping":"{}","discount":"{}","coupon":{coupon},"placed_at":"{placed_at}","lines":[{lines}],"total":"{}"}}"#,
        money(tax),
        money(shipping),
        money(discount),
        money(total)
    )
}

/// One request on a keep-alive connection; returns the status and the
/// response body.
async fn request(
    s: &mut TcpStream,
    head: &str,
    body: &[u8],
    buf: &mut Vec<u8>,
) -> std::io::Result<(u16, usize)> {
    let mut out = Vec::with_capacity(head.len() + body.len());
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(body);
    s.write_all(&out).await?;
    buf.clear();
    let mut tmp = [0u8; 8192];
    loop {
        let n = s.read(&mut tmp).await?;
        if n == 0 {
            return Err(std::io::Error::other("connection closed"));
        }
        buf.extend_from_slice(&tmp[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = s.read(&mut tmp).await?;
                if n == 0 {
                    return Err(std::io::Error::other("connection closed"));
                }
                buf.extend_from_slice(&tmp[..n]);
            }
            let status = head
                .split(' ')
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            buf.drain(..end + 4);
            return Ok((status, len));
        }
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

fn latency_json(lat: &mut [u64]) -> serde_json::Value {
    lat.sort_unstable();
    serde_json::json!({"p50": pct(lat, 0.5), "p90": pct(lat, 0.9), "p99": pct(lat, 0.99), "max": pct(lat, 1.0)})
}

/// Per-connection results: latencies (µs) of 2xx answers, answers by status
/// (0: the connection failed).
type Tally = (Vec<u64>, BTreeMap<u16, u64>);

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!(
            "usage: orderload ADDR TOKEN [--connections N] [--seconds S] [--rate ORDERS_PER_S] [--count N] [--run-id ID]\n       orderload ADDR TOKEN --search M [--connections N]\n       orderload ADDR TOKEN --paths FILE [--connections N] [--seconds S] [--rate R]"
        );
        std::process::exit(2);
    }
    let addr: SocketAddr = args[1].parse().expect("ADDR as host:port");
    let token = args[2].clone();
    let paths: String = arg(&args, "--paths", String::new());
    if !paths.is_empty() {
        gets(addr, &token, &paths, &args).await;
        return;
    }
    let searches: u64 = arg(&args, "--search", 0);
    if searches > 0 {
        search(addr, &token, searches, arg(&args, "--connections", 4)).await;
    } else {
        create(addr, &token, &args).await;
    }
}

async fn create(addr: SocketAddr, token: &str, args: &[String]) {
    let conns: usize = arg(args, "--connections", 64);
    let seconds: f64 = arg(args, "--seconds", 10.0);
    let rate: f64 = arg(args, "--rate", 0.0);
    let count: u64 = arg(args, "--count", u64::MAX);
    let run_id: String = arg(
        args,
        "--run-id",
        format!(
            "{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() % 1_000_000)
                .unwrap_or(0)
        ),
    );
    let catalogue = Arc::new(products(2_000));
    let sent = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..conns {
        let (catalogue, sent, stop, token, run_id) = (
            catalogue.clone(),
            sent.clone(),
            stop.clone(),
            token.to_string(),
            run_id.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut tally: Tally = Default::default();
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (c as u64 + 1).wrapping_mul(0x1000_0000_01b3));
            let mut s = TcpStream::connect(addr).await.expect("connect");
            s.set_nodelay(true).ok();
            let mut buf = Vec::new();
            // open loop: this connection's share of the rate, staggered
            let interval = (rate > 0.0).then(|| Duration::from_secs_f64(conns as f64 / rate));
            let mut due = Instant::now()
                + interval.map_or(Duration::ZERO, |i| i.mul_f64(c as f64 / conns as f64));
            while !stop.load(Relaxed) {
                if interval.is_some() {
                    tokio::time::sleep_until(due.into()).await;
                }
                let n = sent.fetch_add(1, Relaxed);
                if n >= count {
                    break;
                }
                let id = format!("ol-{run_id}-{n:09}");
                let body = order_body(&id, &catalogue, &mut rng);
                let head = format!(
                    "POST /api/orders HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nIdempotency-Key: ik-{id}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                // closed loop: from the send; open loop: from the intended send
                let t0 = if interval.is_some() { due } else { Instant::now() };
                if let Some(i) = interval {
                    due += i;
                }
                match request(&mut s, &head, body.as_bytes(), &mut buf).await {
                    Ok((status, _)) => {
                        *tally.1.entry(status).or_default() += 1;
                        if (200..300).contains(&status) {
                            tally.0.push(t0.elapsed().as_micros() as u64);
                        } else if status == 503 || status == 429 {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                    Err(_) => {
                        *tally.1.entry(0).or_default() += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        match TcpStream::connect(addr).await {
                            Ok(n) => {
                                n.set_nodelay(true).ok();
                                s = n;
                            }
                            Err(_) => break,
                        }
                    }
                }
            }
            tally
        }));
    }
    let deadline = tokio::time::sleep(Duration::from_secs_f64(seconds));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => break,
            _ = tokio::time::sleep(Duration::from_millis(50)) => {
                if tasks.iter().all(|t| t.is_finished()) {
                    break;
                }
            }
        }
    }
    stop.store(true, Relaxed);
    let mut lat = Vec::new();
    let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
    for t in tasks {
        let (l, s) = t.await.unwrap_or_default();
        lat.extend(l);
        for (k, v) in s {
            *statuses.entry(k).or_default() += v;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let created = statuses.get(&201).copied().unwrap_or(0);
    let errors: BTreeMap<String, u64> = statuses
        .iter()
        .filter(|(k, _)| !(200..300).contains(*k))
        .map(|(k, v)| (k.to_string(), *v))
        .collect();
    let out = serde_json::json!({
        "mode": "create",
        "connections": conns,
        "target_rate": rate,
        "seconds": elapsed,
        "created": created,
        "creations_per_s": created as f64 / elapsed,
        "answers_by_status": statuses.iter().map(|(k, v)| (k.to_string(), *v)).collect::<BTreeMap<_, _>>(),
        "errors_by_status": errors,
        "latency_ms": latency_json(&mut lat),
        "latency_from": if rate > 0.0 { "intended send time" } else { "send" },
    });
    println!("{out}");
}

async fn search(addr: SocketAddr, token: &str, requests: u64, conns: usize) {
    let words = Arc::new(name_words());
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..conns)
        .map(|c| {
            let (words, next, token) = (words.clone(), next.clone(), token.to_string());
            tokio::spawn(async move {
                let mut rng = Rng(0xdead_beef ^ (c as u64 + 7).wrapping_mul(0x1000_0000_01b3));
                let mut s = TcpStream::connect(addr).await.expect("connect");
                s.set_nodelay(true).ok();
                let mut buf = Vec::new();
                let (mut lat, mut statuses, mut hits) = (Vec::new(), BTreeMap::<u16, u64>::new(), 0u64);
                while next.fetch_add(1, Relaxed) < requests {
                    let word = &words[rng.below(words.len())];
                    let head = format!(
                        "GET /api/orders?q={word}&limit=50 HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\r\n"
                    );
                    let t0 = Instant::now();
                    match request(&mut s, &head, b"", &mut buf).await {
                        Ok((status, _)) => {
                            lat.push(t0.elapsed().as_micros() as u64);
                            *statuses.entry(status).or_default() += 1;
                            hits += buf.windows(11).filter(|w| w == b"\"order_id\":").count() as u64;
                        }
                        Err(_) => {
                            *statuses.entry(0).or_default() += 1;
                            match TcpStream::connect(addr).await {
                                Ok(n) => s = n,
                                Err(_) => break,
                            }
                        }
                    }
                }
                (lat, statuses, hits)
            })
        })
        .collect();
    let (mut lat, mut statuses, mut hits) = (Vec::new(), BTreeMap::<u16, u64>::new(), 0);
    for t in tasks {
        if let Ok((l, s, h)) = t.await {
            lat.extend(l);
            hits += h;
            for (k, v) in s {
                *statuses.entry(k).or_default() += v;
            }
        }
    }
    let n = lat.len().max(1) as f64;
    let out = serde_json::json!({
        "mode": "search",
        "connections": conns,
        "requests": lat.len(),
        "seconds": start.elapsed().as_secs_f64(),
        "words": words.len(),
        "mean_orders_per_page": hits as f64 / n,
        "answers_by_status": statuses.iter().map(|(k, v)| (k.to_string(), *v)).collect::<BTreeMap<_, _>>(),
        "latency_ms": latency_json(&mut lat),
    });
    println!("{out}");
}

async fn gets(addr: SocketAddr, token: &str, file: &str, args: &[String]) {
    let conns: usize = arg(args, "--connections", 8);
    let seconds: f64 = arg(args, "--seconds", 10.0);
    let rate: f64 = arg(args, "--rate", 0.0);
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{file}: {e}"));
    let paths: Arc<Vec<String>> = Arc::new(
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect(),
    );
    assert!(!paths.is_empty(), "{file} lists no paths");
    let next = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let tasks: Vec<_> = (0..conns)
        .map(|c| {
            let (paths, next, stop, token) =
                (paths.clone(), next.clone(), stop.clone(), token.to_string());
            tokio::spawn(async move {
                let mut tally: Tally = Default::default();
                let mut s = TcpStream::connect(addr).await.expect("connect");
                s.set_nodelay(true).ok();
                let mut buf = Vec::new();
                let interval = (rate > 0.0).then(|| Duration::from_secs_f64(conns as f64 / rate));
                let mut due = Instant::now()
                    + interval.map_or(Duration::ZERO, |i| i.mul_f64(c as f64 / conns as f64));
                while !stop.load(Relaxed) {
                    if interval.is_some() {
                        tokio::time::sleep_until(due.into()).await;
                    }
                    let n = next.fetch_add(1, Relaxed) as usize;
                    let head = format!(
                        "GET {} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\r\n",
                        paths[n % paths.len()]
                    );
                    let t0 = if interval.is_some() {
                        due
                    } else {
                        Instant::now()
                    };
                    if let Some(i) = interval {
                        due += i;
                    }
                    match request(&mut s, &head, b"", &mut buf).await {
                        Ok((status, _)) => {
                            *tally.1.entry(status).or_default() += 1;
                            if (200..300).contains(&status) {
                                tally.0.push(t0.elapsed().as_micros() as u64);
                            }
                        }
                        Err(_) => {
                            *tally.1.entry(0).or_default() += 1;
                            match TcpStream::connect(addr).await {
                                Ok(n) => s = n,
                                Err(_) => break,
                            }
                        }
                    }
                }
                tally
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    stop.store(true, Relaxed);
    let (mut lat, mut statuses) = (Vec::new(), BTreeMap::<u16, u64>::new());
    for t in tasks {
        let (l, s) = t.await.unwrap_or_default();
        lat.extend(l);
        for (k, v) in s {
            *statuses.entry(k).or_default() += v;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let out = serde_json::json!({
        "mode": "paths",
        "connections": conns,
        "target_rate": rate,
        "seconds": elapsed,
        "requests": lat.len(),
        "requests_per_s": lat.len() as f64 / elapsed,
        "answers_by_status": statuses.iter().map(|(k, v)| (k.to_string(), *v)).collect::<BTreeMap<_, _>>(),
        "latency_ms": latency_json(&mut lat),
        "latency_from": if rate > 0.0 { "intended send time" } else { "send" },
    });
    println!("{out}");
}
