//! End-to-end tests: generate small data sets, read every file back through
//! the core validators, and check the properties the model promises.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::OnceLock;

use shoplake_core::sources::{
    Record, Source, Status, Val, parse_click, parse_product, parse_review, parse_transaction,
};
use shoplake_core::time::{MICROS_PER_DAY, days_from_civil, parse_date};

use crate::{GenConfig, GenSummary, catalog, generate, people};

// ---------------------------------------------------------------------------
// reading the files back

#[derive(Debug, Clone)]
struct Tx {
    id: String,
    customer: String,
    product: String,
    qty: i32,
    price: i128,
    total: i128,
    date: i32,
    status: Status,
}

#[derive(Debug, Clone)]
struct Prod {
    day: i32,
    id: String,
    category: String,
    price: i128,
}

#[derive(Debug, Clone)]
struct Click {
    session: String,
    customer: Option<String>,
    kind: String,
    page: String,
    ts: i64,
    device: String,
}

#[derive(Debug, Clone)]
struct Rev {
    id: String,
    product: String,
    customer: String,
    rating: i32,
    text: Option<String>,
    date: i32,
}

#[derive(Debug, Default)]
struct Data {
    tx: Vec<Tx>,
    products: Vec<Prod>,
    clicks: Vec<Click>,
    reviews: Vec<Rev>,
    files: BTreeMap<String, Vec<u8>>,
}

/// RFC 4180: quoted fields, doubled quotes, newlines inside quotes.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    field.push('"');
                    chars.next();
                } else {
                    quoted = false;
                }
            } else {
                field.push(c);
            }
        } else {
            match c {
                '"' => {
                    assert!(field.is_empty(), "quote inside an unquoted field: {field}");
                    quoted = true;
                }
                ',' => row.push(std::mem::take(&mut field)),
                '\n' => {
                    row.push(std::mem::take(&mut field));
                    rows.push(std::mem::take(&mut row));
                }
                c => field.push(c),
            }
        }
    }
    assert!(!quoted, "unterminated quote");
    assert!(
        field.is_empty() && row.is_empty(),
        "file must end with a newline"
    );
    rows
}

fn csv_record(source: Source, fields: &[String]) -> Record<'_> {
    assert_eq!(fields.len(), source.columns().len(), "{fields:?}");
    let mut r = Record::missing(source.columns().len());
    for (i, v) in fields.iter().enumerate() {
        r.vals[i] = if v.is_empty() {
            Val::Null
        } else {
            Val::Str(Cow::Borrowed(v))
        };
    }
    r
}

/// Reads every generated file, checking folder layout, partition dates and
/// every row against the core validators.
fn read_all(root: &Path) -> Data {
    let mut data = Data::default();
    for src_dir in std::fs::read_dir(root).unwrap() {
        let src_dir = src_dir.unwrap();
        let source = Source::parse(src_dir.file_name().to_str().unwrap()).expect("a source folder");
        let (file_name, _) = source.default_file();
        for part in std::fs::read_dir(src_dir.path()).unwrap() {
            let part = part.unwrap();
            let pname = part.file_name().into_string().unwrap();
            let day = parse_date(pname.strip_prefix("date=").expect("date= folder")).unwrap();
            let entries: Vec<_> = std::fs::read_dir(part.path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(
                entries,
                vec![std::ffi::OsString::from(file_name)],
                "{pname}: only the data file, no temp files"
            );
            let bytes = std::fs::read(part.path().join(file_name)).unwrap();
            let text = String::from_utf8(bytes.clone()).unwrap();
            assert!(!text.is_empty());
            data.files
                .insert(format!("{}/{pname}/{file_name}", source.name()), bytes);
            match source {
                Source::Transactions | Source::Reviews => {
                    let rows = parse_csv(&text);
                    assert_eq!(rows[0].join(","), source.columns().join(","));
                    assert!(rows.len() > 1, "no empty files");
                    for fields in &rows[1..] {
                        let rec = csv_record(source, fields);
                        if source == Source::Transactions {
                            let t = parse_transaction(&rec)
                                .unwrap_or_else(|e| panic!("{fields:?}: {e}"));
                            assert_eq!(t.transaction_date, day, "row in its day's partition");
                            data.tx.push(Tx {
                                id: t.transaction_id.into_owned(),
                                customer: t.customer_id.into_owned(),
                                product: t.product_id.into_owned(),
                                qty: t.quantity,
                                price: t.price,
                                total: t.total_amount,
                                date: t.transaction_date,
                                status: t.status,
                            });
                        } else {
                            let r =
                                parse_review(&rec).unwrap_or_else(|e| panic!("{fields:?}: {e}"));
                            assert_eq!(r.review_date, day);
                            data.reviews.push(Rev {
                                id: r.review_id.into_owned(),
                                product: r.product_id.into_owned(),
                                customer: r.customer_id.into_owned(),
                                rating: r.rating,
                                text: r.review_text.map(Cow::into_owned),
                                date: r.review_date,
                            });
                        }
                    }
                }
                Source::Products | Source::Clickstream => {
                    for line in text.lines() {
                        let rec = Record::from_json(source, line)
                            .unwrap_or_else(|e| panic!("{line}: {e}"));
                        assert!(rec.extra.is_empty(), "{line}");
                        assert!(
                            rec.vals.iter().all(|v| !matches!(v, Val::Missing)),
                            "{line}"
                        );
                        if source == Source::Products {
                            let p = parse_product(&rec).unwrap_or_else(|e| panic!("{line}: {e}"));
                            assert!(
                                matches!(rec.vals[4], Val::Num(n) if n.split_once('.').is_some_and(|(_, f)| f.len() == 2)),
                                "{line}"
                            );
                            assert!(p.brand.is_some());
                            data.products.push(Prod {
                                day,
                                id: p.product_id.into_owned(),
                                category: p.category.into_owned(),
                                price: p.price,
                            });
                        } else {
                            let c = parse_click(&rec).unwrap_or_else(|e| panic!("{line}: {e}"));
                            assert_eq!(
                                c.timestamp.div_euclid(MICROS_PER_DAY) as i32,
                                day,
                                "{line}"
                            );
                            assert!(
                                matches!(rec.vals[1], Val::Str(_)),
                                "customer_id is a string, \"\" when anonymous"
                            );
                            data.clicks.push(Click {
                                session: c.session_id.into_owned(),
                                customer: c.customer_id.map(Cow::into_owned),
                                kind: c.event_type.into_owned(),
                                page: c.page.expect("page").into_owned(),
                                ts: c.timestamp,
                                device: c.device.expect("device").into_owned(),
                            });
                        }
                    }
                }
            }
        }
    }
    // ids are zero-padded: text order is number order
    data.tx.sort_by(|a, b| a.id.cmp(&b.id));
    data.reviews.sort_by(|a, b| a.id.cmp(&b.id));
    data.products
        .sort_by(|a, b| (a.day, &a.id).cmp(&(b.day, &b.id)));
    data.clicks
        .sort_by(|a, b| (a.ts, &a.session).cmp(&(b.ts, &b.session)));
    data
}

fn run(cfg: &GenConfig) -> (GenSummary, Data) {
    let dir = tempfile::tempdir().unwrap();
    let summary = generate(cfg, dir.path(), &|_, _| {}).unwrap();
    let data = read_all(dir.path());
    (summary, data)
}

/// Enough clickstream to give every order its purchase session.
fn full_cfg() -> GenConfig {
    GenConfig {
        customers: 400,
        products: 150,
        transactions: 3_000,
        clickstream: 220_000,
        reviews: 400,
        days: 35,
        start_date: days_from_civil(2025, 1, 1),
        seed: 7,
    }
}

fn full() -> &'static (GenSummary, Data) {
    static DATA: OnceLock<(GenSummary, Data)> = OnceLock::new();
    DATA.get_or_init(|| run(&full_cfg()))
}

/// Default-like proportions: the clickstream cannot cover every order.
fn short_cfg() -> GenConfig {
    GenConfig {
        customers: 300,
        products: 100,
        transactions: 2_000,
        clickstream: 10_000,
        reviews: 300,
        days: 30,
        start_date: days_from_civil(2024, 3, 1),
        seed: 11,
    }
}

fn short() -> &'static (GenSummary, Data) {
    static DATA: OnceLock<(GenSummary, Data)> = OnceLock::new();
    DATA.get_or_init(|| run(&short_cfg()))
}

fn id_num(id: &str) -> usize {
    id[1..].parse::<usize>().unwrap() - 1
}

/// Orders: a purchase event's confirmation page names the order's first line.
fn order_starts(clicks: &[Click]) -> HashMap<String, &Click> {
    clicks
        .iter()
        .filter(|c| c.kind == "purchase")
        .map(|c| {
            let id = c
                .page
                .strip_prefix("/checkout/confirmation?order_id=")
                .expect("confirmation page");
            (id.to_string(), c)
        })
        .collect()
}

/// Splits lines into orders, using the confirmation pages (needs every order
/// covered).
fn orders(data: &Data) -> Vec<&[Tx]> {
    let starts = order_starts(&data.clicks);
    assert!(
        data.tx.windows(2).all(|w| w[0].date <= w[1].date),
        "ids grow with dates"
    );
    let mut out = Vec::new();
    let mut begin = 0;
    for i in 1..=data.tx.len() {
        if i == data.tx.len() || starts.contains_key(&data.tx[i].id) {
            out.push(&data.tx[begin..i]);
            begin = i;
        }
    }
    out
}

// ---------------------------------------------------------------------------
// tests

#[test]
fn config_validation() {
    assert_eq!(GenConfig::default().validate(), Ok(()));
    assert_eq!(GenConfig::default().start_date, days_from_civil(2025, 1, 1));
    let bad = [
        GenConfig {
            products: 0,
            ..GenConfig::default()
        },
        GenConfig {
            customers: 0,
            ..GenConfig::default()
        },
        GenConfig {
            days: 0,
            ..GenConfig::default()
        },
        GenConfig {
            days: 3_661,
            ..GenConfig::default()
        },
        GenConfig {
            start_date: days_from_civil(1980, 1, 1),
            ..GenConfig::default()
        },
        GenConfig {
            start_date: days_from_civil(2100, 12, 1),
            ..GenConfig::default()
        },
    ];
    for cfg in bad {
        assert!(cfg.validate().is_err(), "{cfg:?}");
        let dir = tempfile::tempdir().unwrap();
        let err = generate(&cfg, dir.path(), &|_, _| {}).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    }
}

#[test]
fn same_config_same_bytes_other_seed_other_bytes() {
    let cfg = GenConfig {
        customers: 150,
        products: 60,
        transactions: 1_200,
        clickstream: 6_000,
        reviews: 150,
        days: 15,
        ..GenConfig::default()
    };
    let (s1, a) = run(&cfg);
    let (s2, b) = run(&cfg);
    assert_eq!(s1, s2);
    assert_eq!(
        a.files.keys().collect::<Vec<_>>(),
        b.files.keys().collect::<Vec<_>>()
    );
    for (name, bytes) in &a.files {
        assert!(bytes == &b.files[name], "{name} differs between two runs");
    }
    // the thread count changes nothing
    for threads in [1, 3] {
        let dir = tempfile::tempdir().unwrap();
        let s3 = crate::generate_with(&cfg, dir.path(), &|_, _| {}, threads).unwrap();
        assert_eq!(s3, s1);
        let d = read_all(dir.path());
        assert!(d.files == a.files, "{threads} threads give other bytes");
    }
    // pinned: any change to the model or the formats changes this hash (update
    // it deliberately, and say so: the sample data then changes for everyone)
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (name, bytes) in &a.files {
        for b in name.as_bytes().iter().chain(bytes) {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    assert_eq!(h, 0x502e_5566_5792_67a5, "the generated bytes changed");
    let (_, c) = run(&GenConfig { seed: 43, ..cfg });
    let differing = a
        .files
        .iter()
        .filter(|(k, v)| c.files.get(*k) != Some(v))
        .count();
    assert!(
        differing >= a.files.len() / 2,
        "another seed must give other data"
    );
}

#[test]
fn rows_are_valid_counted_and_uniquely_identified() {
    let cfg = full_cfg();
    let (summary, data) = full();
    assert_eq!(
        data.tx.len(),
        cfg.transactions,
        "exactly the lines asked for"
    );
    assert_eq!(
        data.clicks.len(),
        cfg.clickstream,
        "exactly the events asked for"
    );
    assert_eq!(data.reviews.len(), cfg.reviews);
    assert_eq!(summary.rows[&Source::Transactions], cfg.transactions as u64);
    assert_eq!(summary.rows[&Source::Clickstream], cfg.clickstream as u64);
    assert_eq!(summary.rows[&Source::Reviews], cfg.reviews as u64);
    assert_eq!(summary.rows[&Source::Products], data.products.len() as u64);
    assert_eq!(summary.files, data.files.len() as u64);
    assert_eq!(
        summary.bytes,
        data.files.values().map(|b| b.len() as u64).sum::<u64>()
    );
    assert_eq!(
        (summary.first_date, summary.last_date),
        (cfg.start_date, cfg.start_date + cfg.days as i32 - 1)
    );
    let window = cfg.start_date..cfg.start_date + cfg.days as i32;

    // transactions
    let ids: HashSet<&str> = data.tx.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids.len(), data.tx.len(), "transaction ids unique");
    assert!(
        data.tx
            .iter()
            .all(|t| t.id.len() == 10 && t.id.starts_with('T'))
    );
    for t in &data.tx {
        assert_eq!(t.total, t.price * i128::from(t.qty), "{t:?}");
        assert!(window.contains(&t.date));
        assert!(id_num(&t.customer) < cfg.customers && t.customer.len() == 6);
        assert!(id_num(&t.product) < cfg.products && t.product.len() == 6);
    }

    // products: the full catalogue on day one, updates later
    let first: Vec<&Prod> = data
        .products
        .iter()
        .filter(|p| p.day == cfg.start_date)
        .collect();
    assert_eq!(first.len(), cfg.products);
    let pids: BTreeSet<&str> = first.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(
        pids.len(),
        cfg.products,
        "product ids unique in the catalogue"
    );
    let mut per_day: HashMap<i32, HashSet<&str>> = HashMap::new();
    for p in &data.products {
        assert!(window.contains(&p.day));
        assert!(pids.contains(p.id.as_str()));
        assert!(
            per_day.entry(p.day).or_default().insert(&p.id),
            "one row per product and file"
        );
    }
    let categories: HashSet<&str> = first.iter().map(|p| p.category.as_str()).collect();
    assert_eq!(categories.len(), 10);
    assert!(per_day.len() > 1, "repricing files after the first day");
    assert!(summary.notes.iter().any(|n| n.starts_with("products:")));

    // clickstream: sessions unique across days, each session on one day and
    // of one customer and device
    let mut sessions: HashMap<&str, (i64, Option<&str>, &str)> = HashMap::new();
    for c in &data.clicks {
        let day = c.ts.div_euclid(MICROS_PER_DAY);
        let e = sessions
            .entry(&c.session)
            .or_insert((day, c.customer.as_deref(), &c.device));
        assert_eq!(*e, (day, c.customer.as_deref(), c.device.as_str()), "{c:?}");
        assert!(c.session.starts_with('S') && c.session.len() == 11);
        if let Some(cu) = &c.customer {
            assert!(id_num(cu) < cfg.customers);
        }
    }

    // reviews
    let rids: HashSet<&str> = data.reviews.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(rids.len(), data.reviews.len());
    assert!(
        data.reviews
            .iter()
            .all(|r| r.id.len() == 8 && window.contains(&r.date))
    );
}

#[test]
fn every_order_has_its_purchase_session() {
    let (summary, data) = full();
    assert!(
        !summary.notes.iter().any(|n| n.starts_with("clickstream:")),
        "{:?}",
        summary.notes
    );
    let orders = orders(data);
    let starts = order_starts(&data.clicks);
    assert_eq!(starts.len(), orders.len());
    let mut by_session: HashMap<&str, Vec<&Click>> = HashMap::new();
    for c in &data.clicks {
        by_session.entry(&c.session).or_default().push(c);
    }
    for order in &orders {
        // lines of an order: consecutive, same customer and date, 1–5 lines
        assert!((1..=5).contains(&order.len()));
        assert!(
            order
                .iter()
                .all(|t| t.customer == order[0].customer && t.date == order[0].date)
        );
        let products: HashSet<&str> = order.iter().map(|t| t.product.as_str()).collect();
        assert_eq!(products.len(), order.len(), "no product twice in an order");
        let purchase = starts[&order[0].id];
        assert_eq!(
            purchase.customer.as_deref(),
            Some(order[0].customer.as_str())
        );
        assert_eq!(purchase.ts.div_euclid(MICROS_PER_DAY) as i32, order[0].date);
        let mut events = by_session[purchase.session.as_str()].clone();
        events.sort_by_key(|c| c.ts);
        assert_eq!(events.last().unwrap().kind, "purchase");
        assert_eq!(events[events.len() - 2].kind, "checkout");
        assert_eq!(events[0].kind, "page_view");
        for p in &products {
            let view = events
                .iter()
                .position(|c| c.kind == "product_view" && c.page == format!("/product/{p}"))
                .unwrap_or_else(|| panic!("order product {p} viewed"));
            let cart = events
                .iter()
                .position(|c| c.kind == "add_to_cart" && c.page == format!("/cart?product_id={p}"))
                .unwrap_or_else(|| panic!("order product {p} carted"));
            assert!(view < cart);
        }
    }
}

#[test]
fn return_share_and_statuses() {
    for (_, data) in [full(), short()] {
        let n = data.tx.len() as f64;
        let returned = data
            .tx
            .iter()
            .filter(|t| t.status == Status::Returned)
            .count() as f64;
        let refunded = data
            .tx
            .iter()
            .filter(|t| t.status == Status::Refunded)
            .count() as f64;
        let share = (returned + refunded) / n;
        assert!((0.05..=0.10).contains(&share), "return share {share}");
        let ratio = returned / refunded;
        assert!((1.3..=3.2).contains(&ratio), "returned:refunded {ratio}");
        // fashion is returned more than books
        let cat: HashMap<&str, &str> = data
            .products
            .iter()
            .map(|p| (p.id.as_str(), p.category.as_str()))
            .collect();
        let rate = |c: &str| {
            let lines: Vec<&Tx> = data
                .tx
                .iter()
                .filter(|t| cat[t.product.as_str()] == c)
                .collect();
            lines
                .iter()
                .filter(|t| t.status != Status::Completed)
                .count() as f64
                / lines.len().max(1) as f64
        };
        assert!(
            rate("Fashion") > rate("Books"),
            "fashion {} books {}",
            rate("Fashion"),
            rate("Books")
        );
    }
}

#[test]
fn popularity_is_concentrated() {
    let cfg = full_cfg();
    let (_, data) = full();
    let mut units: HashMap<&str, i64> = HashMap::new();
    for t in &data.tx {
        *units.entry(&t.product).or_default() += i64::from(t.qty);
    }
    let mut v: Vec<i64> = units.values().copied().collect();
    v.sort_unstable_by(|a, b| b.cmp(a));
    let total: i64 = v.iter().sum();
    let top: i64 = v.iter().take(cfg.products / 10).sum();
    assert!(
        top as f64 / total as f64 > 0.4,
        "top 10% hold {:.2}",
        top as f64 / total as f64
    );
    // but the long tail still sells
    assert!(units.len() as f64 > 0.6 * cfg.products as f64);
    // quantities mostly 1
    let ones = data.tx.iter().filter(|t| t.qty == 1).count() as f64 / data.tx.len() as f64;
    assert!((0.65..0.9).contains(&ones), "{ones}");
    assert!(data.tx.iter().all(|t| (1..=4).contains(&t.qty)));
}

#[test]
fn baskets_are_correlated() {
    let cfg = full_cfg();
    let (_, data) = full();
    let orders = orders(data);
    let sizes: Vec<usize> = orders.iter().map(|o| o.len()).collect();
    let small = sizes.iter().filter(|&&s| s <= 2).count() as f64 / sizes.len() as f64;
    assert!(small > 0.65, "mostly 1–2 lines: {small}");
    assert!(sizes.iter().any(|&s| s >= 4));

    // planted complements: bought with their product far more than by chance
    let cat = catalog::Catalog::new(cfg.seed, cfg.products, cfg.days);
    let mut with_p = 0usize;
    let mut with_comp = 0usize;
    let mut product_orders: HashMap<usize, usize> = HashMap::new();
    for o in &orders {
        let ps: HashSet<usize> = o.iter().map(|t| id_num(&t.product)).collect();
        for &p in &ps {
            *product_orders.entry(p).or_default() += 1;
        }
        for &p in &ps {
            with_p += 1;
            if cat.products[p]
                .complements
                .iter()
                .any(|c| ps.contains(&(*c as usize)))
            {
                with_comp += 1;
            }
        }
    }
    let observed = with_comp as f64 / with_p as f64;
    // chance: how often a complement would be in the order if picked by popularity alone
    let n_orders = orders.len() as f64;
    let mut chance = 0.0;
    for (&p, &n) in &product_orders {
        let pc: f64 = cat.products[p]
            .complements
            .iter()
            .map(|c| *product_orders.get(&(*c as usize)).unwrap_or(&0) as f64 / n_orders)
            .sum();
        chance += n as f64 * pc;
    }
    chance /= with_p as f64;
    assert!(observed > 0.12, "complement co-purchase {observed}");
    assert!(
        observed > 4.0 * chance,
        "lift: observed {observed} vs chance {chance}"
    );

    // same category more often than chance
    let category: HashMap<&str, &str> = data
        .products
        .iter()
        .map(|p| (p.id.as_str(), p.category.as_str()))
        .collect();
    let mut cat_lines: HashMap<&str, f64> = HashMap::new();
    for t in &data.tx {
        *cat_lines.entry(category[t.product.as_str()]).or_default() += 1.0;
    }
    let chance_same: f64 = cat_lines
        .values()
        .map(|n| (n / data.tx.len() as f64).powi(2))
        .sum();
    let (mut pairs, mut same) = (0.0, 0.0);
    for o in &orders {
        for i in 0..o.len() {
            for j in i + 1..o.len() {
                pairs += 1.0;
                if category[o[i].product.as_str()] == category[o[j].product.as_str()] {
                    same += 1.0;
                }
            }
        }
    }
    assert!(
        same / pairs > 1.5 * chance_same,
        "same-category pairs {} vs chance {chance_same}",
        same / pairs
    );
}

#[test]
fn churners_stop_buying_and_visiting() {
    let cfg = full_cfg();
    let (_, data) = full();
    let customers = people::customers(cfg.seed, cfg.customers, cfg.days);
    let churners = customers
        .iter()
        .filter(|c| c.churn != people::NEVER)
        .count() as f64;
    assert!(
        (0.28..0.42).contains(&(churners / cfg.customers as f64)),
        "{churners}"
    );
    let mut bought_before = 0;
    for t in &data.tx {
        let c = &customers[id_num(&t.customer)];
        let d = t.date - cfg.start_date;
        assert!(
            c.active(d),
            "{t:?} bought outside signup..churn ({}..{})",
            c.signup,
            c.churn
        );
        if c.churn != people::NEVER {
            bought_before += 1;
        }
    }
    assert!(bought_before > 0);
    for k in &data.clicks {
        if let Some(cu) = &k.customer {
            let d = (k.ts.div_euclid(MICROS_PER_DAY) as i32) - cfg.start_date;
            assert!(customers[id_num(cu)].active(d), "{k:?}");
        }
    }
    // the signal is learnable: at a cutoff, customers who will not buy in the
    // next 14 days have been silent longer than those who will
    let cutoff = cfg.start_date + 18;
    let mut last: HashMap<&str, i32> = HashMap::new();
    let mut future: HashSet<&str> = HashSet::new();
    for t in &data.tx {
        if t.date < cutoff {
            let e = last.entry(&t.customer).or_insert(t.date);
            *e = (*e).max(t.date);
        } else if t.date < cutoff + 14 {
            future.insert(&t.customer);
        }
    }
    let mean = |buy: bool| {
        let v: Vec<f64> = last
            .iter()
            .filter(|(c, _)| future.contains(*c) == buy)
            .map(|(_, d)| f64::from(cutoff - d))
            .collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    assert!(
        mean(false) > 1.3 * mean(true),
        "recency: lapsed {} vs buying {}",
        mean(false),
        mean(true)
    );
}

#[test]
fn most_revenue_comes_from_repeat_customers() {
    let (_, data) = short();
    let mut orders: HashMap<&str, HashSet<i32>> = HashMap::new();
    let mut revenue: HashMap<&str, i128> = HashMap::new();
    for t in &data.tx {
        orders.entry(&t.customer).or_default().insert(t.date);
        *revenue.entry(&t.customer).or_default() += t.total;
    }
    let total: i128 = revenue.values().sum();
    let repeat: i128 = revenue
        .iter()
        .filter(|(c, _)| orders[*c].len() >= 2)
        .map(|(_, r)| r)
        .sum();
    assert!(
        repeat as f64 / total as f64 > 0.6,
        "{}",
        repeat as f64 / total as f64
    );
    // and a heavy tail: the top 10% of customers bring a big share
    let mut v: Vec<i128> = revenue.values().copied().collect();
    v.sort_unstable_by(|a, b| b.cmp(a));
    let top: i128 = v.iter().take(v.len() / 10).sum();
    assert!(top as f64 / total as f64 > 0.3);
}

#[test]
fn reviews_follow_purchases_and_returns() {
    for (summary, data) in [full(), short()] {
        assert!(
            !summary.notes.iter().any(|n| n.starts_with("reviews:")),
            "{:?}",
            summary.notes
        );
        let mut first_buy: HashMap<(&str, &str), &Tx> = HashMap::new();
        for t in &data.tx {
            let e = first_buy.entry((&t.customer, &t.product)).or_insert(t);
            if t.id < e.id {
                *e = t;
            }
        }
        let mut seen = HashSet::new();
        let (mut ret, mut kept) = (Vec::new(), Vec::new());
        for r in &data.reviews {
            let t = first_buy
                .get(&(r.customer.as_str(), r.product.as_str()))
                .expect("reviewer bought the product");
            assert!(r.date >= t.date, "review on or after the purchase");
            assert!(
                seen.insert((&r.customer, &r.product)),
                "one review per customer and product"
            );
            if t.status == Status::Completed {
                kept.push(f64::from(r.rating));
            } else {
                ret.push(f64::from(r.rating));
            }
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        assert!(!ret.is_empty() && !kept.is_empty());
        assert!(
            mean(&ret) + 1.0 < mean(&kept),
            "returned {} kept {}",
            mean(&ret),
            mean(&kept)
        );
        assert!(mean(&ret) < 2.5);
        // every rating used, texts quoted properly (some have commas and quotes)
        let ratings: HashSet<i32> = data.reviews.iter().map(|r| r.rating).collect();
        assert_eq!(ratings.len(), 5);
        assert!(
            data.reviews
                .iter()
                .any(|r| r.text.as_deref().is_some_and(|t| t.contains(',')))
        );
        // text matches rating
        for r in &data.reviews {
            if let Some(t) = &r.text {
                if r.rating == 5 {
                    assert!(!t.contains("waste") && !t.contains("Disappointed"), "{t}");
                }
                if r.rating == 1 {
                    assert!(!t.contains("love") && !t.contains("Five stars"), "{t}");
                }
            }
        }
    }
}

#[test]
fn too_small_budgets_are_reported() {
    let (summary, data) = short();
    let note = summary
        .notes
        .iter()
        .find(|n| n.starts_with("clickstream:"))
        .expect("coverage note");
    assert!(note.contains("orders"), "{note}");
    // some orders still have their session, at a plausible conversion rate
    let sessions: HashSet<&str> = data.clicks.iter().map(|c| c.session.as_str()).collect();
    let purchases = data.clicks.iter().filter(|c| c.kind == "purchase").count();
    let conv = purchases as f64 / sessions.len() as f64;
    assert!((0.01..=0.06).contains(&conv), "conversion {conv}");
    assert_eq!(data.clicks.len(), short_cfg().clickstream);

    let cfg = GenConfig {
        customers: 50,
        products: 20,
        transactions: 100,
        clickstream: 0,
        reviews: 500,
        days: 5,
        ..GenConfig::default()
    };
    let (summary, data) = run(&cfg);
    assert!(data.clicks.is_empty() && summary.rows[&Source::Clickstream] == 0);
    assert!(data.reviews.len() < 100);
    assert_eq!(summary.rows[&Source::Reviews], data.reviews.len() as u64);
    let note = summary
        .notes
        .iter()
        .find(|n| n.starts_with("reviews:"))
        .expect("reviews note");
    assert!(note.contains("of 500"), "{note}");
}

/// Sessions of a data set: events in time order.
fn sessions(data: &Data) -> Vec<Vec<&Click>> {
    let mut by: HashMap<&str, Vec<&Click>> = HashMap::new();
    for c in &data.clicks {
        by.entry(&c.session).or_default().push(c);
    }
    let mut v: Vec<Vec<&Click>> = by.into_values().collect();
    for s in &mut v {
        s.sort_by_key(|c| c.ts);
    }
    v.sort_by(|a, b| a[0].session.cmp(&b[0].session));
    v
}

#[test]
fn funnel_narrows_and_desktop_converts_best() {
    for (_, data) in [full(), short()] {
        let sessions = sessions(data);
        let steps = [
            "page_view",
            "product_view",
            "add_to_cart",
            "checkout",
            "purchase",
        ];
        let reach = |dev: Option<&str>| -> Vec<usize> {
            steps
                .iter()
                .map(|k| {
                    sessions
                        .iter()
                        .filter(|s| {
                            dev.is_none_or(|d| s[0].device == d) && s.iter().any(|c| c.kind == *k)
                        })
                        .count()
                })
                .collect()
        };
        let all = reach(None);
        assert!(
            all.windows(2).all(|w| w[0] >= w[1]) && all[4] > 0,
            "funnel {all:?}"
        );
        assert_eq!(
            all[0],
            sessions.len(),
            "every session starts with a page view"
        );
        let conv = |dev: &str| {
            let r = reach(Some(dev));
            r[4] as f64 / r[0] as f64
        };
        assert!(
            conv("desktop") > 1.3 * conv("mobile"),
            "desktop {} mobile {}",
            conv("desktop"),
            conv("mobile")
        );
        let mobile = sessions.iter().filter(|s| s[0].device == "mobile").count() as f64
            / sessions.len() as f64;
        assert!(mobile > 0.5, "mobile share {mobile}");
        // ~40% anonymous among sessions that do not buy
        let browsing: Vec<&Vec<&Click>> = sessions
            .iter()
            .filter(|s| s.last().unwrap().kind != "purchase")
            .collect();
        let anon = browsing.iter().filter(|s| s[0].customer.is_none()).count() as f64
            / browsing.len() as f64;
        assert!((0.33..0.47).contains(&anon), "anonymous {anon}");
        // removals only of carted products, search and category pages exist
        assert!(data.clicks.iter().any(|c| c.kind == "remove_from_cart"));
        assert!(data.clicks.iter().any(|c| c.page.starts_with("/search?q=")));
        assert!(data.clicks.iter().any(|c| c.page.starts_with("/category/")));
        for s in &sessions {
            for (i, c) in s.iter().enumerate() {
                if c.kind == "remove_from_cart" {
                    assert!(
                        s[..i]
                            .iter()
                            .any(|x| x.kind == "add_to_cart" && x.page == c.page)
                    );
                }
                if c.kind == "checkout" {
                    assert!(s[..i].iter().any(|x| x.kind == "add_to_cart"));
                }
            }
        }
    }
}

#[test]
fn sessions_are_timed_like_people() {
    let (_, data) = full();
    let sessions = sessions(data);
    let mut channels = HashSet::new();
    for s in &sessions {
        // in order, seconds to minutes apart, one day
        for w in s.windows(2) {
            let gap = w[1].ts - w[0].ts;
            assert!(
                (1_000_000..=900_000_000).contains(&gap),
                "gap {gap}µs in {}",
                s[0].session
            );
        }
        // landing page carries UTM parameters unless direct
        let landing = &s[0].page;
        match landing.split_once('?') {
            Some((path, q)) => {
                assert!(
                    path == "/" || path.starts_with("/product/") || path.starts_with("/category/"),
                    "{landing}"
                );
                let kv: Vec<&str> = q.split('&').collect();
                assert_eq!(kv.len(), 3, "{landing}");
                assert!(
                    kv[0].starts_with("utm_source=")
                        && kv[1].starts_with("utm_medium=")
                        && kv[2].starts_with("utm_campaign=")
                );
                channels.insert(format!("{}/{}", &kv[0][11..], &kv[1][11..]));
            }
            None => {
                channels.insert("direct".to_string());
            }
        }
    }
    for c in [
        "direct",
        "google/cpc",
        "google/organic",
        "facebook/social",
        "newsletter/email",
        "affiliate/referral",
    ] {
        assert!(channels.contains(c), "{c} in {channels:?}");
    }
    // diurnal: evenings busy, nights quiet
    let mut hours = [0usize; 24];
    for c in &data.clicks {
        hours[(c.ts.rem_euclid(MICROS_PER_DAY) / 3_600_000_000) as usize] += 1;
    }
    let evening: usize = hours[18..22].iter().sum();
    let night: usize = hours[2..6].iter().sum();
    assert!(evening > 4 * night, "evening {evening} night {night}");
}

#[test]
fn weekly_season_and_growth() {
    let cfg = GenConfig {
        customers: 800,
        products: 80,
        transactions: 20_000,
        clickstream: 0,
        reviews: 0,
        days: 84,
        ..GenConfig::default()
    };
    let (_, data) = run(&cfg);
    let mut per_day = vec![0f64; cfg.days as usize];
    for t in &data.tx {
        per_day[(t.date - cfg.start_date) as usize] += 1.0;
    }
    let (mut weekend, mut weekday) = (0.0, 0.0);
    for (d, n) in per_day.iter().enumerate() {
        if crate::day::weekday(cfg.start_date + d as i32) >= 5 {
            weekend += n / 24.0;
        } else {
            weekday += n / 60.0;
        }
    }
    assert!(
        weekend > 1.08 * weekday,
        "weekend {weekend} weekday {weekday}"
    );
    let first: f64 = per_day[..28].iter().sum();
    let last: f64 = per_day[56..].iter().sum();
    assert!(last > 1.1 * first, "growth: {first} → {last}");
    assert!(data.reviews.is_empty() && data.clicks.is_empty());
}

#[test]
fn transactions_use_the_price_of_the_day() {
    let cfg = full_cfg();
    let (_, data) = full();
    let mut history: HashMap<&str, Vec<(i32, i128)>> = HashMap::new();
    for p in &data.products {
        history.entry(&p.id).or_default().push((p.day, p.price));
    }
    for h in history.values_mut() {
        h.sort_unstable();
    }
    let mut repriced_sales = 0;
    for t in &data.tx {
        let h = &history[t.product.as_str()];
        let price = h.iter().rev().find(|(d, _)| *d <= t.date).unwrap().1;
        assert_eq!(t.price, price, "{t:?}");
        if h.len() > 1 && t.date >= h[1].0 {
            repriced_sales += 1;
        }
    }
    assert!(repriced_sales > 0);
    // books cheap, electronics dear
    let median = |c: &str| {
        let mut v: Vec<i128> = data
            .products
            .iter()
            .filter(|p| p.day == cfg.start_date && p.category == c)
            .map(|p| p.price)
            .collect();
        v.sort_unstable();
        v[v.len() / 2]
    };
    assert!(median("Electronics") > median("Books"));
}

#[test]
fn progress_is_reported_sparingly_and_files_are_replaced() {
    let cfg = GenConfig {
        customers: 100,
        products: 30,
        transactions: 1_500,
        clickstream: 3_000,
        reviews: 100,
        days: 150,
        ..GenConfig::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let calls = std::cell::RefCell::new(Vec::new());
    let summary = generate(&cfg, dir.path(), &|s, n| calls.borrow_mut().push((s, n))).unwrap();
    let calls = calls.into_inner();
    assert!(
        !calls.is_empty() && calls.len() < 1_000,
        "{} progress calls",
        calls.len()
    );
    for s in Source::ALL {
        let last = calls
            .iter()
            .rev()
            .find(|c| c.0 == s)
            .expect("progress for every source")
            .1;
        assert_eq!(last, summary.rows[&s]);
        let values: Vec<u64> = calls.iter().filter(|c| c.0 == s).map(|c| c.1).collect();
        assert!(values.windows(2).all(|w| w[0] <= w[1]));
    }
    // a second run over the same folder replaces the files
    let part = std::fs::read_dir(dir.path().join("transactions"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let stray = part.path().join("transactions.csv");
    std::fs::write(&stray, "garbage").unwrap();
    let again = generate(&cfg, dir.path(), &|_, _| {}).unwrap();
    assert_eq!(again, summary);
    let data = read_all(dir.path());
    assert_eq!(data.tx.len(), cfg.transactions);
}

#[test]
fn tiny_and_extreme_configs_still_give_valid_files() {
    let cases = [
        GenConfig {
            customers: 1,
            products: 1,
            transactions: 10,
            clickstream: 50,
            reviews: 5,
            days: 1,
            ..GenConfig::default()
        },
        GenConfig {
            customers: 3,
            products: 2,
            transactions: 0,
            clickstream: 100,
            reviews: 10,
            days: 3,
            ..GenConfig::default()
        },
        GenConfig {
            customers: 1,
            products: 1,
            transactions: 0,
            clickstream: 0,
            reviews: 0,
            days: 1,
            ..GenConfig::default()
        },
        GenConfig {
            customers: 10,
            products: 5,
            transactions: 30,
            clickstream: 80,
            reviews: 10,
            days: 3_660,
            ..GenConfig::default()
        },
    ];
    for cfg in cases {
        let dir = tempfile::tempdir().unwrap();
        let calls = std::cell::Cell::new(0u32);
        let summary = generate(&cfg, dir.path(), &|_, _| calls.set(calls.get() + 1)).unwrap();
        assert!(calls.get() < 3_000, "{} progress calls", calls.get());
        let data = read_all(dir.path());
        assert_eq!(data.tx.len(), cfg.transactions, "{cfg:?}");
        assert_eq!(data.clicks.len(), cfg.clickstream, "{cfg:?}");
        assert!(data.reviews.len() <= cfg.reviews);
        assert_eq!(
            data.products
                .iter()
                .filter(|p| p.day == cfg.start_date)
                .count(),
            cfg.products
        );
        assert_eq!(summary.files, data.files.len() as u64);
        for s in Source::ALL {
            assert!(summary.rows.contains_key(&s));
        }
    }
}
