//! An independent model of the lake: reads the raw files with the `csv` crate
//! and `serde_json` and recomputes every built-in report in plain Rust, from
//! the semantics the product documents (never by running its SQL).
//!
//! * money is integer cents;
//! * a basket is (customer_id, transaction_date); net = totals of completed
//!   lines; returned and refunded lines are returns;
//! * a session is (date, session_id) of clickstream rows; its funnel stage is
//!   the furthest step any of its events reached (a session counts at every
//!   step up to its stage, and at none when it reached none); its device and
//!   traffic source/medium come from its first event;
//! * product views/carts are `product_view`/`add_to_cart` events on
//!   `/product/<id>` pages or with `product_id=<id>` in the query;
//! * RFM scores and segments follow `crates/jobs/src/curate.rs` (`CUSTOMERS`).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde_json::value::RawValue;
use shoplake_core::event::canonical_event_type;

use super::{Want, WantRow, day};

/// One order line.
#[derive(Debug, Clone, PartialEq)]
pub struct Tx {
    /// transaction_id
    pub id: String,
    /// customer_id
    pub customer: String,
    /// product_id
    pub product: String,
    /// Units.
    pub qty: i64,
    /// Unit price, cents.
    pub price: i128,
    /// Line total, cents.
    pub total: i128,
    /// Day.
    pub date: i32,
    /// completed, returned or refunded.
    pub status: String,
}

impl Tx {
    /// Returned or refunded.
    pub fn returned(&self) -> bool {
        self.status != "completed"
    }

    /// Net value: the total of a completed line, else 0.
    pub fn net(&self) -> i128 {
        if self.returned() { 0 } else { self.total }
    }

    /// The basket: customer and day.
    pub fn basket(&self) -> (String, i32) {
        (self.customer.clone(), self.date)
    }
}

/// The catalogue's latest version of a product.
#[derive(Debug, Clone)]
pub struct Product {
    /// Name.
    pub name: String,
    /// Category.
    pub category: String,
    /// Brand.
    pub brand: Option<String>,
}

/// One session.
#[derive(Debug, Clone)]
pub struct Session {
    /// Day.
    pub date: i32,
    /// Session id.
    pub id: String,
    /// Device of the first event.
    pub device: String,
    /// utm_source of the first event, else `direct`.
    pub source: String,
    /// utm_medium of the first event, else `none`.
    pub medium: String,
    /// Furthest funnel stage.
    pub stage: i32,
    /// Events.
    pub events: usize,
    /// Whole seconds from the first to the last event.
    pub duration_s: i64,
    /// At least one purchase.
    pub converted: bool,
}

/// One review.
#[derive(Debug, Clone)]
pub struct Review {
    /// Product.
    pub product: String,
    /// Customer.
    pub customer: String,
    /// Stars.
    pub rating: i64,
    /// Day.
    pub date: i32,
}

/// A customer's lifetime aggregates and RFM scores.
#[derive(Debug, Clone, Default)]
pub struct Customer {
    /// First purchase day.
    pub first: i32,
    /// Last purchase day.
    pub last: i32,
    /// Baskets.
    pub orders: i64,
    /// Lines.
    pub lines: i64,
    /// Returned or refunded lines.
    pub returned_lines: i64,
    /// Sum of line totals.
    pub gross: i128,
    /// Totals of returned/refunded lines.
    pub refunded: i128,
    /// Days since the last purchase, as of the newest transaction date.
    pub recency: i64,
    /// Scores.
    pub r: i64,
    /// Scores.
    pub f: i64,
    /// Scores.
    pub m: i64,
    /// Segment.
    pub segment: &'static str,
}

impl Customer {
    /// gross − refunded.
    pub fn ltv(&self) -> i128 {
        self.gross - self.refunded
    }
}

/// An inclusive date range; `ALL` is every date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// First day.
    pub from: i32,
    /// Last day.
    pub to: i32,
}

impl Range {
    /// Every date.
    pub const ALL: Range = Range {
        from: i32::MIN,
        to: i32::MAX,
    };

    /// `from`..=`to` (YYYY-MM-DD).
    pub fn new(from: &str, to: &str) -> Range {
        Range {
            from: day(from),
            to: day(to),
        }
    }

    /// Whether `d` is inside.
    pub fn has(&self, d: i32) -> bool {
        self.from <= d && d <= self.to
    }
}

/// Everything the reports are computed from.
#[derive(Debug, Clone, Default)]
pub struct Model {
    /// Order lines (deduplicated by id within a date, the later file wins).
    pub txs: Vec<Tx>,
    /// product_id → latest catalogue row.
    pub products: BTreeMap<String, Product>,
    /// Sessions.
    pub sessions: Vec<Session>,
    /// (date, product) → (views, carts).
    pub product_events: BTreeMap<(i32, String), (i64, i64)>,
    /// Reviews.
    pub reviews: Vec<Review>,
}

/// Files of one raw source: (partition day, path), sorted like the lake lists
/// them (partition, then path); hidden files skipped.
fn raw_files(root: &Path, source: &str) -> Vec<(i32, PathBuf)> {
    let mut out = Vec::new();
    let Ok(parts) = std::fs::read_dir(root.join(source)) else {
        return out;
    };
    for p in parts {
        let p = p.unwrap().path();
        let name = p.file_name().unwrap().to_str().unwrap().to_string();
        let Some(date) = name.strip_prefix("date=") else {
            continue;
        };
        let d = day(date);
        for f in std::fs::read_dir(&p).unwrap() {
            let f = f.unwrap().path();
            let fname = f.file_name().unwrap().to_str().unwrap();
            if fname.starts_with('.') || fname.starts_with('_') {
                continue;
            }
            out.push((d, f));
        }
    }
    out.sort();
    out
}

/// Exact cents of a decimal text such as `12.5` or `3.99`.
pub fn cents(s: &str) -> i128 {
    let s = s.trim();
    let (units, frac) = s.split_once('.').unwrap_or((s, ""));
    assert!(
        frac.len() <= 2 && !units.is_empty(),
        "not a money amount: {s:?}"
    );
    let units: i128 = units.parse().unwrap_or_else(|_| panic!("amount {s:?}"));
    let frac: i128 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<2}").parse().unwrap()
    };
    units * 100 + frac
}

fn json_str(v: &RawValue) -> Option<String> {
    serde_json::from_str::<Option<String>>(v.get()).unwrap()
}

/// Device name as the lake normalises it.
fn device(d: &str) -> String {
    match d.trim().to_ascii_lowercase().as_str() {
        "desktop" => "desktop".into(),
        "mobile" => "mobile".into(),
        "tablet" => "tablet".into(),
        other => panic!("the model does not know device {other:?}"),
    }
}

/// Funnel stage of a canonical event type.
fn stage(event_type: &str) -> i32 {
    match event_type {
        "page_view" => 1,
        "product_view" | "product_list_view" | "search" => 2,
        "add_to_cart" | "cart_view" => 3,
        "checkout_started" | "checkout_step" => 4,
        "purchase" => 5,
        _ => 0,
    }
}

fn query_param(page: &str, key: &str) -> Option<String> {
    let (_, q) = page.split_once('?')?;
    q.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key && !v.is_empty()).then(|| v.to_string())
    })
}

/// The product a page is about: `/product/<id>` or `?product_id=<id>`.
fn page_product(page: &str) -> Option<String> {
    let path = page.split('?').next().unwrap_or("");
    if let Some(rest) = path.strip_prefix("/product/") {
        let id = rest.split('/').next().unwrap_or("");
        if !id.is_empty() {
            return Some(id.to_string());
        }
    }
    query_param(page, "product_id")
}

/// Days of a `YYYY-MM-DD` text.
fn parse_day(s: &str) -> i32 {
    day(s.trim())
}

/// Parses one transactions CSV file: header names map columns.
pub fn read_transactions_csv(text: &str) -> Vec<Tx> {
    let mut rdr = csv::Reader::from_reader(text.as_bytes());
    let headers = rdr.headers().unwrap().clone();
    let idx = |n: &str| headers.iter().position(|h| h == n).unwrap();
    let (ti, ci, pi, qi, pri, toi, di, si) = (
        idx("transaction_id"),
        idx("customer_id"),
        idx("product_id"),
        idx("quantity"),
        idx("price"),
        idx("total_amount"),
        idx("transaction_date"),
        idx("status"),
    );
    rdr.records()
        .map(|r| {
            let r = r.unwrap();
            Tx {
                id: r[ti].trim().to_string(),
                customer: r[ci].trim().to_string(),
                product: r[pi].trim().to_string(),
                qty: r[qi].trim().parse().unwrap(),
                price: cents(&r[pri]),
                total: cents(&r[toi]),
                date: parse_day(&r[di]),
                status: r[si].trim().to_ascii_lowercase(),
            }
        })
        .collect()
}

impl Model {
    /// Reads every raw file under `raw_root`.
    pub fn from_raw(raw_root: &Path) -> Model {
        Model::read(raw_root, false)
    }

    /// [`Model::from_raw`], leaving out clickstream rows without an
    /// `event_type` (rows the lake must reject).
    pub fn from_raw_skipping_bad_events(raw_root: &Path) -> Model {
        Model::read(raw_root, true)
    }

    fn read(raw_root: &Path, skip_bad_events: bool) -> Model {
        let mut m = Model::default();

        // products: the newest file wins, rows in file order
        for (_, f) in raw_files(raw_root, "products") {
            for line in std::fs::read_to_string(&f).unwrap().lines() {
                if line.trim().is_empty() {
                    continue;
                }
                let o: BTreeMap<String, &RawValue> = serde_json::from_str(line).unwrap();
                let id = json_str(o["product_id"]).unwrap();
                m.products.insert(
                    id,
                    Product {
                        name: json_str(o["name"]).unwrap(),
                        category: json_str(o["category"]).unwrap(),
                        brand: o.get("brand").and_then(|b| json_str(b)),
                    },
                );
            }
        }

        // transactions, last id wins within a date partition
        let mut by_date: BTreeMap<i32, Vec<Tx>> = BTreeMap::new();
        for (d, f) in raw_files(raw_root, "transactions") {
            let rows = read_transactions_csv(&std::fs::read_to_string(&f).unwrap());
            for t in rows {
                assert_eq!(t.date, d, "{}: a row outside its partition", f.display());
                by_date.entry(d).or_default().push(t);
            }
        }
        for (_, rows) in by_date {
            m.add_transactions(&rows);
        }

        // reviews
        for (d, f) in raw_files(raw_root, "reviews") {
            let text = std::fs::read_to_string(&f).unwrap();
            let mut rdr = csv::Reader::from_reader(text.as_bytes());
            for r in rdr.deserialize::<HashMap<String, String>>() {
                let r = r.unwrap();
                let date = parse_day(&r["review_date"]);
                assert_eq!(date, d);
                m.reviews.push(Review {
                    product: r["product_id"].clone(),
                    customer: r["customer_id"].clone(),
                    rating: r["rating"].parse().unwrap(),
                    date,
                });
            }
        }

        // clickstream → sessions and product events
        struct Ev {
            ts: i64,
            order: (usize, usize),
            etype: &'static str,
            page: Option<String>,
            device: String,
        }
        let mut sessions: BTreeMap<(i32, String), Vec<Ev>> = BTreeMap::new();
        for (fi, (d, f)) in raw_files(raw_root, "clickstream").into_iter().enumerate() {
            let text = std::fs::read_to_string(&f).unwrap();
            for (li, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let o: BTreeMap<String, &RawValue> = serde_json::from_str(line).unwrap();
                if skip_bad_events && !o.contains_key("event_type") {
                    continue;
                }
                let sid = json_str(o["session_id"]).expect("every generated event has a session");
                let ts = chrono::DateTime::parse_from_rfc3339(&json_str(o["timestamp"]).unwrap())
                    .unwrap()
                    .timestamp_micros();
                let date = ts.div_euclid(86_400_000_000) as i32;
                assert_eq!(date, d, "{}: event outside its partition", f.display());
                let etype = canonical_event_type(&json_str(o["event_type"]).unwrap());
                let page = o.get("page").and_then(|p| json_str(p));
                if matches!(etype, "product_view" | "add_to_cart")
                    && let Some(p) = page.as_deref().and_then(page_product)
                {
                    let e = m.product_events.entry((date, p)).or_default();
                    if etype == "product_view" {
                        e.0 += 1;
                    } else {
                        e.1 += 1;
                    }
                }
                sessions.entry((date, sid)).or_default().push(Ev {
                    ts,
                    order: (fi, li),
                    etype,
                    page,
                    device: device(&json_str(o["device"]).unwrap()),
                });
            }
        }
        for ((date, id), mut evs) in sessions {
            evs.sort_by_key(|e| (e.ts, e.order));
            let first = &evs[0];
            let last = &evs[evs.len() - 1];
            let landing = first.page.as_deref().unwrap_or("/");
            let source = query_param(landing, "utm_source");
            let medium = query_param(landing, "utm_medium");
            m.sessions.push(Session {
                date,
                id,
                device: first.device.clone(),
                // processed.sessions.traffic_medium: "utm_medium of the landing
                // page; `unknown` when it has a utm_source but no medium, else
                // `none`"
                medium: match (&source, medium) {
                    (_, Some(md)) => md,
                    (Some(_), None) => "unknown".into(),
                    (None, None) => "none".into(),
                },
                source: source.unwrap_or_else(|| "direct".into()),
                stage: evs.iter().map(|e| stage(e.etype)).max().unwrap(),
                events: evs.len(),
                duration_s: (last.ts - first.ts) / 1_000_000,
                converted: evs.iter().any(|e| e.etype == "purchase"),
            });
        }
        m
    }

    /// Adds order lines of one date partition (as if from a later file: an
    /// id already there is replaced).
    pub fn add_transactions(&mut self, rows: &[Tx]) {
        for t in rows {
            if let Some(i) = self
                .txs
                .iter()
                .position(|x| x.date == t.date && x.id == t.id)
            {
                self.txs.remove(i);
            }
            self.txs.push(t.clone());
        }
    }

    /// Every day with sales or sessions.
    pub fn kpi_dates(&self) -> BTreeSet<i32> {
        self.txs
            .iter()
            .map(|t| t.date)
            .chain(self.sessions.iter().map(|s| s.date))
            .collect()
    }

    /// Days with sales.
    pub fn sale_dates(&self) -> BTreeSet<i32> {
        self.txs.iter().map(|t| t.date).collect()
    }

    fn product_attrs(&self, id: &str) -> (Option<String>, String, Option<String>) {
        match self.products.get(id) {
            Some(p) => (Some(p.name.clone()), p.category.clone(), p.brand.clone()),
            None => (None, "unknown".into(), None),
        }
    }

    // -----------------------------------------------------------------------
    // aggregates

    /// Customers with their lifetime aggregates and RFM scores.
    pub fn customers(&self) -> BTreeMap<String, Customer> {
        let mut cs: BTreeMap<String, Customer> = BTreeMap::new();
        let mut baskets: HashSet<(String, i32)> = HashSet::new();
        for t in &self.txs {
            let c = cs.entry(t.customer.clone()).or_insert_with(|| Customer {
                first: t.date,
                last: t.date,
                ..Default::default()
            });
            c.first = c.first.min(t.date);
            c.last = c.last.max(t.date);
            if baskets.insert(t.basket()) {
                c.orders += 1;
            }
            c.lines += 1;
            c.gross += t.total;
            if t.returned() {
                c.returned_lines += 1;
                c.refunded += t.total;
            }
        }
        let asof = self.txs.iter().map(|t| t.date).max().unwrap_or(0);
        for c in cs.values_mut() {
            c.recency = i64::from(asof - c.last);
        }
        // score = 1 + ⌊5 × ((rank − 1) + (ties − 1) / 2) / n⌋, worst first
        let n = cs.len() as i64;
        let score = |worse: i64, ties: i64| 1 + 5 * (2 * worse + ties - 1) / (2 * n);
        let snapshot: Vec<Customer> = cs.values().cloned().collect();
        for c in cs.values_mut() {
            let count =
                |f: &dyn Fn(&Customer) -> bool| snapshot.iter().filter(|x| f(x)).count() as i64;
            c.r = score(
                count(&|x| x.recency > c.recency),
                count(&|x| x.recency == c.recency),
            );
            c.f = score(
                count(&|x| x.orders < c.orders),
                count(&|x| x.orders == c.orders),
            );
            c.m = score(
                count(&|x| x.ltv() < c.ltv()),
                count(&|x| x.ltv() == c.ltv()),
            );
            let (r, f, m) = (c.r, c.f, c.m);
            c.segment = if r >= 4 && f >= 4 && m >= 4 {
                "champions"
            } else if r <= 1 && f >= 4 && m >= 4 {
                "cant_lose"
            } else if r >= 3 && f >= 4 {
                "loyal"
            } else if r <= 2 && f >= 3 {
                "at_risk"
            } else if r >= 4 && f >= 2 {
                "potential_loyalists"
            } else if r >= 4 {
                "new"
            } else if r == 3 && f >= 2 {
                "need_attention"
            } else if r == 3 {
                "promising"
            } else if r == 2 {
                "hibernating"
            } else {
                "lost"
            };
        }
        cs
    }

    /// Per product over `range`: every product with sales, views/carts or
    /// reviews in it.
    pub fn product_stats(&self, range: Range) -> BTreeMap<String, PStat> {
        let mut ps: BTreeMap<String, PStat> = BTreeMap::new();
        for t in self.txs.iter().filter(|t| range.has(t.date)) {
            let p = ps.entry(t.product.clone()).or_default();
            p.baskets.insert(t.basket());
            p.lines += 1;
            p.units += t.qty;
            p.gross += t.total;
            p.net += t.net();
            if t.returned() {
                p.returned_lines += 1;
                p.returned_units += t.qty;
                p.refunded += t.total;
            }
        }
        for ((d, id), (v, c)) in &self.product_events {
            if range.has(*d) {
                let p = ps.entry(id.clone()).or_default();
                p.views += v;
                p.carts += c;
            }
        }
        for r in self.reviews.iter().filter(|r| range.has(r.date)) {
            let p = ps.entry(r.product.clone()).or_default();
            p.reviews += 1;
            p.rating_sum += r.rating;
        }
        ps
    }

    /// Baskets in `range`: basket → products.
    pub fn baskets(&self, range: Range) -> BTreeMap<(String, i32), BTreeSet<String>> {
        let mut b: BTreeMap<(String, i32), BTreeSet<String>> = BTreeMap::new();
        for t in self.txs.iter().filter(|t| range.has(t.date)) {
            b.entry(t.basket()).or_default().insert(t.product.clone());
        }
        b
    }

    /// Per day: sales and sessions.
    pub fn day_stats(&self) -> BTreeMap<i32, DayStat> {
        let mut ds: BTreeMap<i32, DayStat> = BTreeMap::new();
        for d in self.kpi_dates() {
            ds.insert(d, DayStat::default());
        }
        for t in &self.txs {
            let s = ds.get_mut(&t.date).unwrap();
            s.gross += t.total;
            s.lines += 1;
            s.units += t.qty;
            s.baskets.insert(t.customer.clone());
            s.customers.insert(t.customer.clone());
            if t.returned() {
                s.refunded += t.total;
                s.returned_lines += 1;
            }
        }
        for c in self.customers().values() {
            ds.get_mut(&c.first).unwrap().new_customers += 1;
        }
        for se in &self.sessions {
            let s = ds.get_mut(&se.date).unwrap();
            s.sessions += 1;
            s.converted += i64::from(se.converted);
        }
        ds
    }

    // -----------------------------------------------------------------------
    // the reports

    /// `daily_kpis`.
    pub fn daily_kpis(&self, range: Range) -> Vec<WantRow> {
        self.day_stats()
            .into_iter()
            .filter(|(d, _)| range.has(*d))
            .map(|(d, s)| {
                let orders = s.baskets.len() as i64;
                vec![
                    ("date", Want::Date(d)),
                    ("gross_revenue", Want::Cents(s.gross)),
                    ("net_revenue", Want::Cents(s.gross - s.refunded)),
                    ("orders", Want::Int(orders)),
                    ("aov", Want::CentsAbout(div_round(s.gross, orders))),
                    ("customers", Want::Int(s.customers.len() as i64)),
                    ("new_customers", Want::Int(s.new_customers)),
                    ("sessions", Want::Int(s.sessions)),
                    ("converted_sessions", Want::Int(s.converted)),
                    (
                        "conversion_pct",
                        Want::r2(pct(s.converted, s.sessions).unwrap_or(0.0)),
                    ),
                    (
                        "return_pct",
                        Want::r2(pct(s.returned_lines, s.lines).unwrap_or(0.0)),
                    ),
                ]
            })
            .collect()
    }

    /// `revenue_trends` at `grain` (day, week or month).
    pub fn revenue_trends(&self, range: Range, grain: &str) -> Vec<WantRow> {
        #[derive(Default)]
        struct P {
            days: i64,
            net: i128,
            gross: i128,
            orders: i64,
        }
        let mut ps: BTreeMap<i32, P> = BTreeMap::new();
        for (d, s) in self.day_stats().into_iter().filter(|(d, _)| range.has(*d)) {
            let p = ps.entry(period_start(d, grain)).or_default();
            p.days += 1;
            p.net += s.gross - s.refunded;
            p.gross += s.gross;
            p.orders += s.baskets.len() as i64;
        }
        let mut prev: Option<i128> = None;
        ps.into_iter()
            .map(|(start, p)| {
                let row = vec![
                    ("period_start", Want::Date(start)),
                    ("days", Want::Int(p.days)),
                    ("net_revenue", Want::Cents(p.net)),
                    ("gross_revenue", Want::Cents(p.gross)),
                    ("orders", Want::Int(p.orders)),
                    (
                        "aov",
                        if p.orders == 0 {
                            Want::Null
                        } else {
                            Want::CentsAbout(div_round(p.gross, p.orders))
                        },
                    ),
                    ("prev_net_revenue", prev.map_or(Want::Null, Want::Cents)),
                    (
                        "change_pct",
                        Want::opt_r2(
                            prev.filter(|v| *v != 0)
                                .map(|v| (p.net as f64 / v as f64 - 1.0) * 100.0),
                        ),
                    ),
                ];
                prev = Some(p.net);
                row
            })
            .collect()
    }

    /// `top_products`.
    pub fn top_products(&self, range: Range, limit: usize) -> Vec<WantRow> {
        let ps: Vec<(String, PStat)> = self
            .product_stats(range)
            .into_iter()
            .filter(|(_, p)| p.lines > 0)
            .collect();
        let cat = |id: &str| self.product_attrs(id).1;
        let mut rows: Vec<(&String, &PStat)> = ps.iter().map(|(id, p)| (id, p)).collect();
        rows.sort_by(|a, b| b.1.net.cmp(&a.1.net).then(a.0.cmp(b.0)));
        rows.into_iter()
            .take(limit)
            .map(|(id, p)| {
                let (name, category, brand) = self.product_attrs(id);
                let rank = 1 + ps
                    .iter()
                    .filter(|(o, q)| cat(o) == category && q.net > p.net)
                    .count() as i64;
                vec![
                    ("product_id", Want::s(id.clone())),
                    ("product_name", Want::opt_s(name)),
                    ("category", Want::s(category)),
                    ("brand", Want::opt_s(brand)),
                    ("rank_in_category", Want::Int(rank)),
                    ("units", Want::Int(p.units)),
                    ("orders", Want::Int(p.baskets.len() as i64)),
                    ("net_revenue", Want::Cents(p.net)),
                    ("gross_revenue", Want::Cents(p.gross)),
                    ("views", Want::Int(p.views)),
                    ("carts", Want::Int(p.carts)),
                    ("view_to_cart_pct", Want::opt_r2(pct(p.carts, p.views))),
                    ("return_pct", Want::opt_r2(pct(p.returned_lines, p.lines))),
                    ("avg_rating", Want::opt_r2(ratio(p.rating_sum, p.reviews))),
                ]
            })
            .collect()
    }

    /// `revenue_by_category`.
    pub fn revenue_by_category(&self, range: Range) -> Vec<WantRow> {
        #[derive(Default)]
        struct C {
            net: i128,
            gross: i128,
            refunded: i128,
            units: i64,
            orders: i64,
            products: i64,
        }
        let mut cs: BTreeMap<String, C> = BTreeMap::new();
        for (id, p) in self
            .product_stats(range)
            .iter()
            .filter(|(_, p)| p.lines > 0)
        {
            let c = cs.entry(self.product_attrs(id).1).or_default();
            c.net += p.net;
            c.gross += p.gross;
            c.refunded += p.refunded;
            c.units += p.units;
            c.orders += p.baskets.len() as i64;
            c.products += 1;
        }
        let total: i128 = cs.values().map(|c| c.net).sum();
        let mut rows: Vec<(String, C)> = cs.into_iter().collect();
        rows.sort_by(|a, b| b.1.net.cmp(&a.1.net).then(a.0.cmp(&b.0)));
        rows.into_iter()
            .map(|(name, c)| {
                vec![
                    ("category", Want::s(name)),
                    ("net_revenue", Want::Cents(c.net)),
                    ("gross_revenue", Want::Cents(c.gross)),
                    ("refunded_amount", Want::Cents(c.refunded)),
                    ("units", Want::Int(c.units)),
                    ("orders", Want::Int(c.orders)),
                    ("products_sold", Want::Int(c.products)),
                    ("share_pct", Want::r2(c.net as f64 * 100.0 / total as f64)),
                ]
            })
            .collect()
    }

    /// `conversion_funnel`.
    pub fn conversion_funnel(&self, range: Range) -> Vec<WantRow> {
        const STEPS: [&str; 5] = [
            "page_view",
            "product_view",
            "add_to_cart",
            "checkout",
            "purchase",
        ];
        let mut by_dev: BTreeMap<String, [i64; 5]> = BTreeMap::new();
        let mut all = [0i64; 5];
        for s in self.sessions.iter().filter(|s| range.has(s.date)) {
            let e = by_dev.entry(s.device.clone()).or_default();
            for k in 0..5 {
                if s.stage > k as i32 {
                    e[k] += 1;
                    all[k] += 1;
                }
            }
        }
        let mut rows = Vec::new();
        for (dev, s) in std::iter::once(("all".to_string(), all)).chain(by_dev) {
            for k in 0..5 {
                let prev = if k == 0 { s[0] } else { s[k - 1] };
                rows.push(vec![
                    ("device_type", Want::s(dev.clone())),
                    ("step_no", Want::Int(k as i64 + 1)),
                    ("step", Want::s(STEPS[k])),
                    ("sessions", Want::Int(s[k])),
                    ("pct_of_previous", Want::opt_r2(pct(s[k], prev))),
                    ("pct_of_start", Want::opt_r2(pct(s[k], s[0]))),
                    ("drop_off", Want::Int(prev - s[k])),
                ]);
            }
        }
        rows
    }

    /// `customer_ltv`.
    pub fn customer_ltv(&self, range: Range) -> Vec<WantRow> {
        let mut cohorts: BTreeMap<String, Vec<Customer>> = BTreeMap::new();
        for c in self
            .customers()
            .into_values()
            .filter(|c| range.has(c.first))
        {
            cohorts
                .entry(super::ymd(c.first)[..7].to_string())
                .or_default()
                .push(c);
        }
        cohorts
            .into_iter()
            .map(|(cohort, cs)| {
                let n = cs.len() as i64;
                let total: i128 = cs.iter().map(Customer::ltv).sum();
                let mut ltvs: Vec<i128> = cs.iter().map(Customer::ltv).collect();
                ltvs.sort();
                let median = if ltvs.len() % 2 == 1 {
                    ltvs[ltvs.len() / 2]
                } else {
                    div_round(ltvs[ltvs.len() / 2 - 1] + ltvs[ltvs.len() / 2], 2)
                };
                let orders: i64 = cs.iter().map(|c| c.orders).sum();
                let repeat = cs.iter().filter(|c| c.orders >= 2).count() as i64;
                vec![
                    ("cohort", Want::s(cohort)),
                    ("customers", Want::Int(n)),
                    ("total_ltv", Want::Cents(total)),
                    ("avg_ltv", Want::CentsAbout(div_round(total, n))),
                    ("median_ltv", Want::CentsAbout(median)),
                    ("avg_orders", Want::r2(orders as f64 / n as f64)),
                    ("repeat_pct", Want::r2(repeat as f64 * 100.0 / n as f64)),
                ]
            })
            .collect()
    }

    /// `customer_segments`.
    pub fn customer_segments(&self) -> Vec<WantRow> {
        let cs = self.customers();
        let mut segs: BTreeMap<&str, Vec<&Customer>> = BTreeMap::new();
        for c in cs.values() {
            segs.entry(c.segment).or_default().push(c);
        }
        let n = cs.len() as f64;
        let total: i128 = cs.values().map(Customer::ltv).sum();
        let mut rows: Vec<(&str, Vec<&Customer>, i128)> = segs
            .into_iter()
            .map(|(s, v)| {
                let rev = v.iter().map(|c| c.ltv()).sum();
                (s, v, rev)
            })
            .collect();
        rows.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(b.0)));
        rows.into_iter()
            .map(|(seg, v, rev)| {
                let k = v.len() as f64;
                vec![
                    ("segment", Want::s(seg)),
                    ("customers", Want::Int(v.len() as i64)),
                    ("share_pct", Want::r2(k * 100.0 / n)),
                    ("revenue", Want::Cents(rev)),
                    (
                        "revenue_share_pct",
                        Want::r2(rev as f64 * 100.0 / total as f64),
                    ),
                    (
                        "avg_recency_days",
                        Want::r1(v.iter().map(|c| c.recency as f64).sum::<f64>() / k),
                    ),
                    (
                        "avg_orders",
                        Want::r2(v.iter().map(|c| c.orders as f64).sum::<f64>() / k),
                    ),
                    ("avg_ltv", Want::CentsAbout(div_round(rev, v.len() as i64))),
                ]
            })
            .collect()
    }

    /// `top_customers`.
    pub fn top_customers(&self, limit: usize) -> Vec<WantRow> {
        let cs = self.customers();
        let mut v: Vec<(&String, &Customer)> = cs.iter().collect();
        v.sort_by(|a, b| b.1.ltv().cmp(&a.1.ltv()).then(a.0.cmp(b.0)));
        v.into_iter()
            .take(limit)
            .map(|(id, c)| {
                vec![
                    ("customer_id", Want::s(id.clone())),
                    ("lifetime_value", Want::Cents(c.ltv())),
                    ("orders", Want::Int(c.orders)),
                    (
                        "avg_order_value",
                        Want::CentsAbout(div_round(c.gross, c.orders)),
                    ),
                    ("first_purchase_date", Want::Date(c.first)),
                    ("last_purchase_date", Want::Date(c.last)),
                    ("recency_days", Want::Int(c.recency)),
                    (
                        "return_pct",
                        Want::r2(c.returned_lines as f64 * 100.0 / c.lines as f64),
                    ),
                    ("rfm_segment", Want::s(c.segment)),
                ]
            })
            .collect()
    }

    /// `return_rate`.
    pub fn return_rate(&self, range: Range, limit: usize, min_lines: i64) -> Vec<WantRow> {
        struct R {
            level: &'static str,
            key: String,
            name: Option<String>,
            category: String,
            lines: i64,
            returned_lines: i64,
            returned_units: i64,
            refunded: i128,
            rating_sum: i64,
            reviews: i64,
        }
        impl R {
            /// The value the SQL orders by: ROUND(x, 2) as DataFusion computes it.
            fn pct(&self) -> f64 {
                round2(self.returned_lines as f64 * 100.0 / self.lines as f64)
            }
        }
        let ps = self.product_stats(range);
        let mut cats: BTreeMap<String, R> = BTreeMap::new();
        let mut prods = Vec::new();
        for (id, p) in &ps {
            let (name, category, _) = self.product_attrs(id);
            if p.lines > 0 {
                let c = cats.entry(category.clone()).or_insert_with(|| R {
                    level: "category",
                    key: category.clone(),
                    name: Some(category.clone()),
                    category: category.clone(),
                    lines: 0,
                    returned_lines: 0,
                    returned_units: 0,
                    refunded: 0,
                    rating_sum: 0,
                    reviews: 0,
                });
                c.lines += p.lines;
                c.returned_lines += p.returned_lines;
                c.returned_units += p.returned_units;
                c.refunded += p.refunded;
                c.rating_sum += p.rating_sum;
                c.reviews += p.reviews;
            }
            if p.lines >= min_lines {
                prods.push(R {
                    level: "product",
                    key: id.clone(),
                    name,
                    category,
                    lines: p.lines,
                    returned_lines: p.returned_lines,
                    returned_units: p.returned_units,
                    refunded: p.refunded,
                    rating_sum: p.rating_sum,
                    reviews: p.reviews,
                });
            }
        }
        let order = |a: &R, b: &R| {
            b.pct()
                .total_cmp(&a.pct())
                .then(b.lines.cmp(&a.lines))
                .then(a.key.cmp(&b.key))
        };
        prods.sort_by(order);
        prods.truncate(limit);
        let mut all: Vec<R> = cats.into_values().chain(prods).collect();
        all.sort_by(|a, b| a.level.cmp(b.level).then(order(a, b)));
        all.into_iter()
            .map(|r| {
                vec![
                    ("level", Want::s(r.level)),
                    ("key", Want::s(r.key.clone())),
                    ("name", Want::opt_s(r.name.clone())),
                    ("category", Want::s(r.category.clone())),
                    ("lines", Want::Int(r.lines)),
                    ("returned_lines", Want::Int(r.returned_lines)),
                    (
                        "return_pct",
                        Want::r2(r.returned_lines as f64 * 100.0 / r.lines as f64),
                    ),
                    ("returned_units", Want::Int(r.returned_units)),
                    ("refunded_amount", Want::Cents(r.refunded)),
                    ("avg_rating", Want::opt_r2(ratio(r.rating_sum, r.reviews))),
                ]
            })
            .collect()
    }

    /// `product_affinity`: the pairs, all of them ordered (callers compare
    /// the top rows).
    pub fn product_affinity(&self, range: Range, limit: usize, min_baskets: i64) -> Vec<WantRow> {
        let baskets = self.baskets(range);
        let n = baskets.len() as i64;
        let mut together: BTreeMap<(String, String), i64> = BTreeMap::new();
        let mut per: BTreeMap<String, i64> = BTreeMap::new();
        for products in baskets.values() {
            let v: Vec<&String> = products.iter().collect();
            for (i, a) in v.iter().enumerate() {
                *per.entry((*a).clone()).or_default() += 1;
                for b in &v[i + 1..] {
                    *together.entry(((*a).clone(), (*b).clone())).or_default() += 1;
                }
            }
        }
        let mut rows: Vec<(f64, i64, &String, &String)> = together
            .iter()
            .filter(|(_, t)| **t >= min_baskets)
            .map(|((a, b), t)| {
                let lift = *t as f64 * n as f64 / (per[a] as f64 * per[b] as f64);
                (lift, *t, a, b)
            })
            .collect();
        rows.sort_by(|x, y| {
            y.0.total_cmp(&x.0)
                .then(y.1.cmp(&x.1))
                .then(x.2.cmp(y.2))
                .then(x.3.cmp(y.3))
        });
        rows.into_iter()
            .take(limit)
            .map(|(lift, t, a, b)| {
                vec![
                    ("product_a", Want::s(a.clone())),
                    ("product_b", Want::s(b.clone())),
                    ("name_a", Want::opt_s(self.product_attrs(a).0)),
                    ("name_b", Want::opt_s(self.product_attrs(b).0)),
                    ("baskets_together", Want::Int(t)),
                    ("support", Want::Rel(t as f64 / n as f64, 1e-3)),
                    (
                        "confidence_a_to_b",
                        Want::Rel(t as f64 / per[a] as f64, 1e-3),
                    ),
                    (
                        "confidence_b_to_a",
                        Want::Rel(t as f64 / per[b] as f64, 1e-3),
                    ),
                    ("lift", Want::Rel(lift, 1e-3)),
                ]
            })
            .collect()
    }

    /// `traffic_sources`.
    pub fn traffic_sources(&self, range: Range) -> Vec<WantRow> {
        #[derive(Default)]
        struct T {
            sessions: i64,
            bounces: i64,
            converted: i64,
            duration: i64,
        }
        let mut ts: BTreeMap<(String, String), T> = BTreeMap::new();
        for s in self.sessions.iter().filter(|s| range.has(s.date)) {
            let t = ts.entry((s.source.clone(), s.medium.clone())).or_default();
            t.sessions += 1;
            t.bounces += i64::from(s.events == 1);
            t.converted += i64::from(s.converted);
            t.duration += s.duration_s;
        }
        let total: i64 = ts.values().map(|t| t.sessions).sum();
        let mut rows: Vec<((String, String), T)> = ts.into_iter().collect();
        rows.sort_by(|a, b| b.1.sessions.cmp(&a.1.sessions).then(a.0.cmp(&b.0)));
        rows.into_iter()
            .map(|((src, med), t)| {
                vec![
                    ("traffic_source", Want::s(src)),
                    ("traffic_medium", Want::s(med)),
                    ("sessions", Want::Int(t.sessions)),
                    (
                        "share_pct",
                        Want::r2(t.sessions as f64 * 100.0 / total as f64),
                    ),
                    ("bounce_pct", Want::opt_r2(pct(t.bounces, t.sessions))),
                    ("converted_sessions", Want::Int(t.converted)),
                    ("conversion_pct", Want::opt_r2(pct(t.converted, t.sessions))),
                    (
                        "avg_session_seconds",
                        Want::r1(t.duration as f64 / t.sessions as f64),
                    ),
                ]
            })
            .collect()
    }
}

/// Per product aggregates over a range.
#[derive(Debug, Clone, Default)]
pub struct PStat {
    /// Baskets holding the product.
    pub baskets: HashSet<(String, i32)>,
    /// Lines.
    pub lines: i64,
    /// Units.
    pub units: i64,
    /// Sum of totals.
    pub gross: i128,
    /// Totals of completed lines.
    pub net: i128,
    /// Returned/refunded lines.
    pub returned_lines: i64,
    /// Their units.
    pub returned_units: i64,
    /// Their totals.
    pub refunded: i128,
    /// product_view events.
    pub views: i64,
    /// add_to_cart events.
    pub carts: i64,
    /// Reviews.
    pub reviews: i64,
    /// Their stars.
    pub rating_sum: i64,
}

/// Per day aggregates.
#[derive(Debug, Clone, Default)]
pub struct DayStat {
    /// Sum of totals.
    pub gross: i128,
    /// Totals of returned/refunded lines.
    pub refunded: i128,
    /// Lines.
    pub lines: i64,
    /// Units.
    pub units: i64,
    /// Baskets of the day (a basket is a customer's lines of the day).
    pub baskets: HashSet<String>,
    /// Buying customers.
    pub customers: HashSet<String>,
    /// Returned/refunded lines.
    pub returned_lines: i64,
    /// Customers whose first purchase was this day.
    pub new_customers: i64,
    /// Sessions.
    pub sessions: i64,
    /// Sessions with a purchase.
    pub converted: i64,
}

/// `a / b` in cents, rounded half up (b > 0; 0 when b is 0).
pub fn div_round(a: i128, b: impl Into<i128>) -> i128 {
    let b = b.into();
    if b == 0 {
        return 0;
    }
    (2 * a + b).div_euclid(2 * b)
}

/// `a × 100 / b`, `None` when b is 0.
pub fn pct(a: i64, b: i64) -> Option<f64> {
    (b != 0).then(|| a as f64 * 100.0 / b as f64)
}

/// `a / b`, `None` when b is 0.
pub fn ratio(a: i64, b: i64) -> Option<f64> {
    (b != 0).then(|| a as f64 / b as f64)
}

/// DataFusion's `ROUND(x, 2)` on a double.
pub fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// The first day of `d`'s period: the day itself, its week's Monday, or its
/// month's first day.
pub fn period_start(d: i32, grain: &str) -> i32 {
    match grain {
        "day" => d,
        "week" => d - (d + 3).rem_euclid(7),
        "month" => {
            let s = super::ymd(d);
            day(&format!("{}-01", &s[..7]))
        }
        other => panic!("the model has no grain {other}"),
    }
}
