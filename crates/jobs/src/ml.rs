//! Machine learning from the curated tables: customer segments, churn
//! risk, product recommendations and lifetime value (`shoplake ml train`).
//!
//! Each model is fitted with [`shoplake_ml`], evaluated honestly on a time
//! split against a simple baseline, saved under
//! `<data>/models/<kind>/v<N>/` (`model.json`, `meta.json`: metrics,
//! features, training data range, parameters) with `current` naming the
//! version in use, and its scores are written as a curated table:
//!
//! | kind | evaluation | table |
//! | --- | --- | --- |
//! | `segments` | silhouette of the chosen k | `curated.customer_segments` |
//! | `churn` | AUC, top-decile precision/recall and calibration on the last window, vs recency alone | `curated.churn_scores` |
//! | `recs` | hit-rate@10 and NDCG@10 on the last 14 days' purchases, vs popularity | `curated.product_recommendations` |
//! | `ltv` | MAE of the spend in a held-out period, vs the customer's past rate | `curated.customer_ltv_forecast` |
//!
//! Fits run on blocking threads; the same data and `ml.seed` give the same
//! models.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayBuilder, ArrayRef, Date32Array, Date32Builder, Decimal128Builder, Float64Array,
    Float64Builder, Int32Builder, Int64Array, Int64Builder, RecordBatch, StringArray,
    StringBuilder,
};
use arrow::datatypes::DataType;
use serde::{Deserialize, Serialize};
use shoplake_core::config::Config;
use shoplake_core::{schema, time};
use shoplake_lake::{Lake, WriteMode};
use shoplake_ml as ml;
use shoplake_ml::BinaryClassifier;
use shoplake_query::QueryEngine;

use crate::error::{JobError, Result};

/// A kind of model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Customer segments (k-means on RFM).
    Segments,
    /// Churn risk (a classifier).
    Churn,
    /// Product recommendations (item-to-item).
    Recs,
    /// Lifetime value (BG/NBD + Gamma-Gamma).
    Ltv,
}

impl Kind {
    /// Every kind, in training order.
    pub const ALL: [Kind; 4] = [Kind::Segments, Kind::Churn, Kind::Recs, Kind::Ltv];

    /// The lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Segments => "segments",
            Kind::Churn => "churn",
            Kind::Recs => "recs",
            Kind::Ltv => "ltv",
        }
    }
}

/// What a trained model is, as `meta.json` records it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelMeta {
    /// Its kind.
    pub kind: Kind,
    /// 1, 2, … per kind.
    pub version: i64,
    /// When (RFC 3339).
    pub trained_at: String,
    /// The first and last day of the data it learnt from.
    pub data_from: String,
    /// The last day of the data (scores are as of this day).
    pub data_to: String,
    /// Rows (customers, baskets) it learnt from.
    pub rows: u64,
    /// Its input features, in order.
    pub features: Vec<String>,
    /// The evaluation: the model's figures beside the baseline's.
    pub metrics: serde_json::Value,
    /// Settings it was fitted with.
    pub params: serde_json::Value,
    /// Rows written to its curated table.
    pub scored: u64,
    /// Seconds the training took.
    pub seconds: f64,
}

/// `<data>/models`
pub fn models_dir(lake: &Lake) -> PathBuf {
    lake.data_dir().join("models")
}

/// The version folder (`v<N>`) of the model in use of `kind`, as
/// `models/<kind>/current` names it (None: never trained).
pub fn current_version(lake: &Lake, kind: Kind) -> Option<String> {
    let p = models_dir(lake).join(kind.name()).join("current");
    std::fs::read_to_string(p)
        .ok()
        .map(|v| v.trim().to_string())
}

/// The model in use of each kind that has one.
pub fn status(lake: &Lake) -> Result<Vec<ModelMeta>> {
    let mut out = Vec::new();
    for kind in Kind::ALL {
        let Some(v) = current_version(lake, kind) else {
            continue;
        };
        let path = models_dir(lake).join(kind.name()).join(v).join("meta.json");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| JobError::Internal(format!("{}: {e}", path.display())))?;
        out.push(
            serde_json::from_str(&text)
                .map_err(|e| JobError::Internal(format!("{}: {e}", path.display())))?,
        );
    }
    Ok(out)
}

/// Loads the model in use of `kind` (`None`: never trained).
pub fn load_current<T: serde::de::DeserializeOwned>(
    lake: &Lake,
    kind: Kind,
) -> Result<Option<(ModelMeta, T)>> {
    let Some(v) = current_version(lake, kind) else {
        return Ok(None);
    };
    let dir = models_dir(lake).join(kind.name()).join(v);
    let read = |name: &str| {
        let p = dir.join(name);
        std::fs::read_to_string(&p).map_err(|e| JobError::Internal(format!("{}: {e}", p.display())))
    };
    let meta: ModelMeta = serde_json::from_str(&read("meta.json")?)
        .map_err(|e| JobError::Internal(format!("meta.json: {e}")))?;
    let model = ml::from_json(&read("model.json")?)
        .map_err(|e| JobError::Internal(format!("model.json: {e}")))?;
    Ok(Some((meta, model)))
}

/// Saves a model as the next version of its kind and makes it current.
fn save(lake: &Lake, meta: &mut ModelMeta, model_json: &str) -> Result<()> {
    let dir = models_dir(lake).join(meta.kind.name());
    std::fs::create_dir_all(&dir)
        .map_err(|e| JobError::Internal(format!("{}: {e}", dir.display())))?;
    let last = std::fs::read_dir(&dir)
        .map_err(|e| JobError::Internal(format!("{}: {e}", dir.display())))?
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_prefix('v')?
                .parse::<i64>()
                .ok()
        })
        .max()
        .unwrap_or(0);
    meta.version = last + 1;
    let vdir = dir.join(format!("v{}", meta.version));
    std::fs::create_dir_all(&vdir)
        .map_err(|e| JobError::Internal(format!("{}: {e}", vdir.display())))?;
    let meta_json = serde_json::to_string_pretty(meta)
        .map_err(|e| JobError::Internal(format!("meta.json: {e}")))?;
    shoplake_lake::state::write_atomic(&vdir.join("model.json"), model_json.as_bytes())?;
    shoplake_lake::state::write_atomic(&vdir.join("meta.json"), meta_json.as_bytes())?;
    shoplake_lake::state::write_atomic(
        &dir.join("current"),
        format!("v{}\n", meta.version).as_bytes(),
    )?;
    Ok(())
}

fn ml_err(what: &str) -> impl Fn(ml::Error) -> JobError + '_ {
    move |e| JobError::Invalid(format!("{what}: {e}"))
}

// ---------------------------------------------------------------- data

/// A column of a query result, cast to `ty`.
fn column(batches: &[RecordBatch], name: &str, ty: &DataType) -> Result<Vec<ArrayRef>> {
    batches
        .iter()
        .map(|b| {
            let c = b
                .column_by_name(name)
                .ok_or_else(|| JobError::Internal(format!("ml: no column {name}")))?;
            Ok(arrow::compute::cast(c, ty)?)
        })
        .collect()
}

fn strings(batches: &[RecordBatch], name: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for a in column(batches, name, &DataType::Utf8)? {
        let a = a
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("cast to Utf8");
        out.extend((0..a.len()).map(|i| a.value(i).to_string()));
    }
    Ok(out)
}

fn floats(batches: &[RecordBatch], name: &str) -> Result<Vec<f64>> {
    let mut out = Vec::new();
    for a in column(batches, name, &DataType::Float64)? {
        let a = a
            .as_any()
            .downcast_ref::<Float64Array>()
            .expect("cast to Float64");
        out.extend((0..a.len()).map(|i| if a.is_null(i) { f64::NAN } else { a.value(i) }));
    }
    Ok(out)
}

fn ints(batches: &[RecordBatch], name: &str) -> Result<Vec<i64>> {
    let mut out = Vec::new();
    for a in column(batches, name, &DataType::Int64)? {
        let a = a
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("cast to Int64");
        out.extend((0..a.len()).map(|i| if a.is_null(i) { 0 } else { a.value(i) }));
    }
    Ok(out)
}

fn days(batches: &[RecordBatch], name: &str) -> Result<Vec<i32>> {
    let mut out = Vec::new();
    for a in column(batches, name, &DataType::Date32)? {
        let a = a
            .as_any()
            .downcast_ref::<Date32Array>()
            .expect("cast to Date32");
        out.extend((0..a.len()).map(|i| a.value(i)));
    }
    Ok(out)
}

/// One basket (an order, or a customer's lines of one day from files).
#[derive(Debug, Clone)]
struct Basket {
    customer: u32,
    day: i32,
    value: f64,
    lines: u32,
    returned: u32,
    products: Vec<u64>,
}

/// Everything the models learn from, with ids interned.
#[derive(Default)]
struct Data {
    customers: Vec<String>,
    products: Vec<String>,
    baskets: Vec<Basket>,
    /// (customer, day) → sessions.
    sessions: HashMap<(u32, i32), u32>,
    /// customer → (day, rating) of reviews.
    reviews: HashMap<u32, Vec<(i32, f64)>>,
    /// Products viewed together in a session, with the session's day.
    views: Vec<(i32, Vec<u64>)>,
    /// Category of each product (by product number), when known.
    categories: Vec<Option<u32>>,
    /// Category names by category number.
    category_names: Vec<String>,
    first_day: i32,
    last_day: i32,
}

fn intern(map: &mut HashMap<String, u32>, names: &mut Vec<String>, s: &str) -> u32 {
    if let Some(&i) = map.get(s) {
        return i;
    }
    let i = names.len() as u32;
    names.push(s.to_string());
    map.insert(s.to_string(), i);
    i
}

async fn load(engine: &QueryEngine, with_views: bool) -> Result<Data> {
    let mut d = Data::default();
    let lines = engine
        .run_internal(
            "SELECT customer_id, basket_id, product_id, date, CAST(net_amount AS DOUBLE) AS value, \
             CASE WHEN is_returned THEN 1 ELSE 0 END AS returned, \
             coalesce(category, '') AS category FROM curated.order_lines",
        )
        .await?;
    let (cust, basket, prod, day, value, ret) = (
        strings(&lines, "customer_id")?,
        strings(&lines, "basket_id")?,
        strings(&lines, "product_id")?,
        days(&lines, "date")?,
        floats(&lines, "value")?,
        ints(&lines, "returned")?,
    );
    let category = strings(&lines, "category")?;
    let (mut cmap, mut pmap) = (HashMap::new(), HashMap::new());
    // product number → category name, before renumbering
    let mut product_category: HashMap<u32, String> = HashMap::new();
    let mut bmap: HashMap<(u32, String), usize> = HashMap::new();
    for i in 0..cust.len() {
        let c = intern(&mut cmap, &mut d.customers, &cust[i]);
        let p = intern(&mut pmap, &mut d.products, &prod[i]);
        if !category[i].is_empty() {
            product_category
                .entry(p)
                .or_insert_with(|| category[i].clone());
        }
        let at = *bmap.entry((c, basket[i].clone())).or_insert_with(|| {
            d.baskets.push(Basket {
                customer: c,
                day: day[i],
                value: 0.0,
                lines: 0,
                returned: 0,
                products: Vec::new(),
            });
            d.baskets.len() - 1
        });
        let b = &mut d.baskets[at];
        b.day = b.day.min(day[i]);
        b.value += if value[i].is_finite() { value[i] } else { 0.0 };
        b.lines += 1;
        b.returned += u32::from(ret[i] != 0);
        if !b.products.contains(&u64::from(p)) {
            b.products.push(u64::from(p));
        }
    }
    if d.baskets.is_empty() {
        return Err(JobError::Invalid(
            "no purchases in curated.order_lines: run `shoplake pipeline run` first".into(),
        ));
    }
    // query results come in any order: number customers and products by
    // name, so the same data always gives the same models
    let cust_rank = renumber(&mut d.customers);
    for b in &mut d.baskets {
        b.customer = cust_rank[b.customer as usize];
    }
    d.baskets.sort_by(|a, b| {
        (a.day, a.customer, a.value.to_bits(), a.lines).cmp(&(
            b.day,
            b.customer,
            b.value.to_bits(),
            b.lines,
        ))
    });
    cmap = d
        .customers
        .iter()
        .enumerate()
        .map(|(i, c)| (c.clone(), i as u32))
        .collect();
    d.first_day = d.baskets[0].day;
    d.last_day = d.baskets[d.baskets.len() - 1].day;

    let s = engine
        .run_internal(
            "SELECT user_id, date, count(*) AS n FROM processed.sessions \
             WHERE user_id IS NOT NULL GROUP BY 1, 2",
        )
        .await?;
    let (user, sday, n) = (strings(&s, "user_id")?, days(&s, "date")?, ints(&s, "n")?);
    for i in 0..user.len() {
        if let Some(&c) = cmap.get(&user[i]) {
            *d.sessions.entry((c, sday[i])).or_default() += n[i] as u32;
        }
    }
    let r = engine
        .run_internal("SELECT customer_id, date, rating FROM processed.reviews")
        .await?;
    let (rc, rday, rating) = (
        strings(&r, "customer_id")?,
        days(&r, "date")?,
        floats(&r, "rating")?,
    );
    for i in 0..rc.len() {
        if let Some(&c) = cmap.get(&rc[i]) {
            d.reviews.entry(c).or_default().push((rday[i], rating[i]));
        }
    }
    if with_views {
        // co-views of the last 90 days of data
        let v = engine
            .run_internal(&format!(
                "SELECT session_id, min(date) AS date, array_agg(DISTINCT product_id) AS products \
                 FROM processed.events WHERE event_type = 'product_view' AND product_id IS NOT NULL \
                 AND session_id IS NOT NULL AND date >= DATE '{}' GROUP BY 1 HAVING count(DISTINCT product_id) > 1",
                time::format_date(d.last_day - 89)
            ))
            .await?;
        let vday = days(&v, "date")?;
        let mut k = 0;
        for b in &v {
            let list = b
                .column_by_name("products")
                .ok_or_else(|| JobError::Internal("ml: no products column".into()))?;
            let list = list
                .as_any()
                .downcast_ref::<arrow::array::ListArray>()
                .ok_or_else(|| JobError::Internal("ml: products is not a list".into()))?;
            for i in 0..list.len() {
                let items = arrow::compute::cast(&list.value(i), &DataType::Utf8)?;
                let items = items.as_any().downcast_ref::<StringArray>().expect("Utf8");
                let ps: Vec<u64> = (0..items.len())
                    .map(|j| u64::from(intern(&mut pmap, &mut d.products, items.value(j))))
                    .collect();
                d.views.push((vday[k], ps));
                k += 1;
            }
        }
    }
    let prod_rank = renumber(&mut d.products);
    let mut names: Vec<String> = product_category.values().cloned().collect();
    names.sort();
    names.dedup();
    d.categories = vec![None; d.products.len()];
    for (old, name) in &product_category {
        let c = names.binary_search(name).expect("collected above") as u32;
        d.categories[prod_rank[*old as usize] as usize] = Some(c);
    }
    d.category_names = names;
    let map = |ps: &mut Vec<u64>| {
        for p in ps.iter_mut() {
            *p = u64::from(prod_rank[*p as usize]);
        }
        ps.sort_unstable();
    };
    for b in &mut d.baskets {
        map(&mut b.products);
    }
    for (_, ps) in &mut d.views {
        map(ps);
    }
    d.views.sort();
    Ok(d)
}

/// Sorts `names` and returns each old index's new one.
fn renumber(names: &mut Vec<String>) -> Vec<u32> {
    let mut order: Vec<u32> = (0..names.len() as u32).collect();
    order.sort_by(|&a, &b| names[a as usize].cmp(&names[b as usize]));
    let mut rank = vec![0u32; names.len()];
    for (new, &old) in order.iter().enumerate() {
        rank[old as usize] = new as u32;
    }
    let sorted: Vec<String> = order.iter().map(|&i| names[i as usize].clone()).collect();
    *names = sorted;
    rank
}

// ---------------------------------------------------------------- training

/// What `train` did for one kind.
#[derive(Debug, Clone, Serialize)]
pub struct Trained {
    /// The model's record.
    pub meta: ModelMeta,
    /// One line for people.
    pub summary: String,
}

/// Trains `kinds` (all, if empty) from the curated tables, saves the
/// models and writes their scores.
pub async fn train(lake: &Lake, cfg: &Config, kinds: &[Kind]) -> Result<Vec<Trained>> {
    let kinds: Vec<Kind> = if kinds.is_empty() {
        Kind::ALL.to_vec()
    } else {
        kinds.to_vec()
    };
    lake.ensure_tables().await?;
    let engine = QueryEngine::new(lake, &cfg.query)?;
    let data = Arc::new(load(&engine, kinds.contains(&Kind::Recs)).await?);
    let mut out = Vec::new();
    for kind in kinds {
        let t0 = std::time::Instant::now();
        let d = data.clone();
        let c = cfg.ml.clone();
        let (mut meta, model_json, batch) = tokio::task::spawn_blocking(move || match kind {
            Kind::Segments => segments(&d, &c),
            Kind::Churn => churn(&d, &c),
            Kind::Recs => recs(&d, &c),
            Kind::Ltv => ltv(&d, &c),
        })
        .await
        .map_err(|e| JobError::Internal(format!("ml {}: {e}", kind.name())))??;
        meta.seconds = t0.elapsed().as_secs_f64();
        save(lake, &mut meta, &model_json)?;
        // the table carries the version just saved
        let batch = with_version(batch, meta.version)?;
        meta.scored = batch.num_rows() as u64;
        let table = match kind {
            Kind::Segments => &schema::CUSTOMER_SEGMENTS,
            Kind::Churn => &schema::CHURN_SCORES,
            Kind::Recs => &schema::RECOMMENDATIONS,
            Kind::Ltv => &schema::LTV_FORECAST,
        };
        lake.write(table, vec![batch], WriteMode::Overwrite).await?;
        let summary = summary(&meta);
        tracing::info!(model = kind.name(), version = meta.version, "{summary}");
        out.push(Trained { meta, summary });
    }
    Ok(out)
}

/// The evaluation of a model in one line.
pub fn summary(m: &ModelMeta) -> String {
    let f = |k: &str| {
        m.metrics
            .get(k)
            .and_then(|v| v.as_f64())
            .unwrap_or(f64::NAN)
    };
    match m.kind {
        Kind::Segments => format!(
            "{} customers in {} segments (silhouette {:.2})",
            m.rows,
            f("k"),
            f("silhouette")
        ),
        Kind::Churn => format!(
            "{}: AUC {:.3} vs recency alone {:.3}; top decile precision {:.2}",
            m.metrics["model"].as_str().unwrap_or("?"),
            f("auc"),
            f("baseline_auc"),
            f("top_decile_precision")
        ),
        Kind::Recs => format!(
            "hit-rate@10 {:.3} vs popularity {:.3} ({:.2}×); NDCG@10 {:.3} vs {:.3}; item-item alone {:.3}",
            f("hit_rate"),
            f("baseline_hit_rate"),
            f("hit_rate") / f("baseline_hit_rate"),
            f("ndcg"),
            f("baseline_ndcg"),
            f("item_item_hit_rate")
        ),
        Kind::Ltv => format!(
            "held-out spend MAE {:.2} vs past rate {:.2}",
            f("mae"),
            f("baseline_mae")
        ),
    }
}

/// Sets the `model_version` column (the last) of a score batch.
fn with_version(b: RecordBatch, version: i64) -> Result<RecordBatch> {
    let mut cols = b.columns().to_vec();
    let n = b.num_rows();
    cols.pop();
    cols.push(Arc::new(Int64Array::from(vec![version; n])));
    Ok(RecordBatch::try_new(b.schema(), cols)?)
}

fn meta(kind: Kind, d: &Data, rows: usize, features: &[&str]) -> ModelMeta {
    ModelMeta {
        kind,
        version: 0,
        trained_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        data_from: time::format_date(d.first_day),
        data_to: time::format_date(d.last_day),
        rows: rows as u64,
        features: features.iter().map(|s| s.to_string()).collect(),
        metrics: serde_json::Value::Null,
        params: serde_json::Value::Null,
        scored: 0,
        seconds: 0.0,
    }
}

type Fitted = Result<(ModelMeta, String, RecordBatch)>;

fn money_builder(n: usize) -> Decimal128Builder {
    Decimal128Builder::with_capacity(n).with_data_type(schema::ColType::Money.arrow())
}

fn cents(v: f64) -> i128 {
    (v * 100.0).round() as i128
}

/// Per-customer totals of the baskets before `until` (exclusive).
#[derive(Debug, Clone, Default)]
struct Totals {
    first: i32,
    last: i32,
    orders: u32,
    value: f64,
    lines: u32,
    returned: u32,
}

fn totals(d: &Data, until: i32) -> BTreeMap<u32, Totals> {
    let mut t: BTreeMap<u32, Totals> = BTreeMap::new();
    for b in d.baskets.iter().take_while(|b| b.day < until) {
        let e = t.entry(b.customer).or_insert(Totals {
            first: b.day,
            last: b.day,
            ..Default::default()
        });
        e.first = e.first.min(b.day);
        e.last = e.last.max(b.day);
        e.orders += 1;
        e.value += b.value;
        e.lines += b.lines;
        e.returned += b.returned;
    }
    t
}

// ---------------------------------------------------------------- segments

/// The numbers of segments tried; the best silhouette wins. Fewer than four
/// would merge groups a shop treats differently (new, loyal, at risk, gone).
const K_RANGE: std::ops::RangeInclusive<usize> = 4..=8;

fn segments(d: &Data, c: &shoplake_core::config::MlConfig) -> Fitted {
    let as_of = d.last_day + 1;
    let t = totals(d, as_of);
    let ids: Vec<u32> = t.keys().copied().collect();
    let rec: Vec<f64> = t.values().map(|x| f64::from(as_of - 1 - x.last)).collect();
    let freq: Vec<f64> = t.values().map(|x| f64::from(x.orders)).collect();
    let mon: Vec<f64> = t.values().map(|x| x.value.max(0.0)).collect();
    let rows: Vec<Vec<f64>> = (0..ids.len())
        .map(|i| vec![rec[i], freq[i].ln_1p(), mon[i].ln_1p()])
        .collect();
    let scaler = ml::Standardizer::fit(&rows).map_err(ml_err("segments"))?;
    let x = scaler.transform(&rows).map_err(ml_err("segments"))?;
    let base = ml::KMeansConfig {
        n_init: 4,
        seed: c.seed,
        ..ml::KMeansConfig::new(2)
    };
    let choice = ml::choose_k(&x, K_RANGE, &base).map_err(ml_err("segments"))?;
    let labels = choice.model.predict(&x).map_err(ml_err("segments"))?;
    let k = choice.model.k();
    let profiles =
        ml::cluster_profiles(&rec, &freq, &mon, &labels, k).map_err(ml_err("segments"))?;
    let names = ml::name_segments(&profiles).map_err(ml_err("segments"))?;
    let rfm = ml::rfm_scores(&rec, &freq, &mon).map_err(ml_err("segments"))?;
    let silhouette = choice
        .scores
        .iter()
        .find(|s| s.k == k)
        .map_or(f64::NAN, |s| s.silhouette);

    let n = ids.len();
    let mut cid = StringBuilder::new();
    let mut seg = StringBuilder::new();
    let mut cluster = Int32Builder::with_capacity(n);
    let mut recency = Int32Builder::with_capacity(n);
    let mut orders = Int64Builder::with_capacity(n);
    let mut ltv = money_builder(n);
    let mut code = StringBuilder::new();
    let mut asof = Date32Builder::with_capacity(n);
    let mut sizes: BTreeMap<&str, usize> = BTreeMap::new();
    for i in 0..n {
        cid.append_value(&d.customers[ids[i] as usize]);
        let name = names[labels[i]].as_str();
        *sizes.entry(name).or_default() += 1;
        seg.append_value(name);
        cluster.append_value(labels[i] as i32);
        recency.append_value(rec[i] as i32);
        orders.append_value(i64::from(freq[i] as u32));
        ltv.append_value(cents(t[&ids[i]].value));
        code.append_value(rfm[i].code());
        asof.append_value(d.last_day);
    }
    let batch = RecordBatch::try_new(
        schema::CUSTOMER_SEGMENTS.schema(),
        vec![
            Arc::new(cid.finish()),
            Arc::new(seg.finish()),
            Arc::new(cluster.finish()),
            Arc::new(recency.finish()),
            Arc::new(orders.finish()),
            Arc::new(ltv.finish()),
            Arc::new(code.finish()),
            Arc::new(asof.finish()),
            Arc::new(Int64Array::from(vec![0; n])),
        ],
    )?;
    let mut m = meta(
        Kind::Segments,
        d,
        n,
        &["recency_days", "ln(1 + orders)", "ln(1 + lifetime_value)"],
    );
    m.metrics = serde_json::json!({
        "k": k,
        "silhouette": silhouette,
        "silhouette_by_k": choice.scores.iter().map(|s| (s.k.to_string(), s.silhouette)).collect::<BTreeMap<_, _>>(),
        "segments": sizes,
        "profiles": profiles.iter().zip(&names).map(|(p, n)| serde_json::json!({
            "segment": n.as_str(), "customers": p.size, "recency_days": p.recency_days,
            "orders": p.frequency, "lifetime_value": p.monetary,
        })).collect::<Vec<_>>(),
    });
    m.params = serde_json::json!({"k_range": [K_RANGE.start(), K_RANGE.end()], "n_init": 4, "seed": c.seed});
    let model = serde_json::json!({"standardizer": scaler, "kmeans": choice.model, "names": names});
    Ok((m, model.to_string(), batch))
}

// ---------------------------------------------------------------- churn

const CHURN_FEATURES: &[&str] = &[
    "recency_days",
    "tenure_days",
    "orders",
    "ln(1 + spend)",
    "avg_order_value",
    "orders_last_30d",
    "orders_30_to_60d_ago",
    "sessions_last_14d",
    "sessions_14_to_28d_ago",
    "days_since_last_session",
    "return_rate",
    "reviews",
    "avg_rating",
    "avg_days_between_orders",
    "recency / avg_days_between_orders",
    "orders_last_30d / usual 30-day orders",
    "sessions_last_14d / usual 14-day sessions",
];

/// Features of every customer who bought before `cutoff`, from data before
/// it; with the label "bought nothing in [cutoff, cutoff + horizon)".
fn churn_rows(d: &Data, cutoff: i32, horizon: i32) -> (Vec<u32>, Vec<Vec<f64>>, Vec<bool>) {
    let t = totals(d, cutoff);
    let mut recent: HashMap<u32, [u32; 2]> = HashMap::new();
    let mut bought_after: HashSet<u32> = HashSet::new();
    for b in &d.baskets {
        if b.day < cutoff {
            let age = cutoff - b.day;
            let e = recent.entry(b.customer).or_default();
            if age <= 30 {
                e[0] += 1;
            } else if age <= 60 {
                e[1] += 1;
            }
        } else if b.day < cutoff + horizon {
            bought_after.insert(b.customer);
        }
    }
    let mut sess: HashMap<u32, ([u32; 2], i32)> = HashMap::new();
    let mut all_sessions: HashMap<u32, (u32, i32)> = HashMap::new();
    for (&(c, day), &n) in &d.sessions {
        if day >= cutoff {
            continue;
        }
        let a = all_sessions.entry(c).or_insert((0, i32::MAX));
        a.0 += n;
        a.1 = a.1.min(day);
        let e = sess.entry(c).or_insert(([0, 0], i32::MIN));
        let age = cutoff - day;
        if age <= 14 {
            e.0[0] += n;
        } else if age <= 28 {
            e.0[1] += n;
        }
        e.1 = e.1.max(day);
    }
    let mut ids = Vec::new();
    let mut x = Vec::new();
    let mut y = Vec::new();
    for (&c, s) in &t {
        let r = recent.get(&c).copied().unwrap_or_default();
        let (sn, last_session) = sess.get(&c).copied().unwrap_or(([0, 0], i32::MIN));
        let reviews: Vec<f64> = d
            .reviews
            .get(&c)
            .map(|v| {
                v.iter()
                    .filter(|(day, _)| *day < cutoff)
                    .map(|(_, r)| *r)
                    .collect()
            })
            .unwrap_or_default();
        let avg_rating = if reviews.is_empty() {
            0.0
        } else {
            reviews.iter().sum::<f64>() / reviews.len() as f64
        };
        // the customer's own rhythm: days between orders (tenure for one
        // order), and their usual orders per 30 days
        let tenure = f64::from(cutoff - s.first).max(1.0);
        let gap = if s.orders > 1 {
            f64::from(s.last - s.first).max(1.0) / f64::from(s.orders - 1)
        } else {
            tenure
        };
        let usual = (f64::from(s.orders) / tenure * 30.0).max(1e-3);
        let usual_sessions = all_sessions.get(&c).map_or(1e-3, |&(n, first)| {
            let days = f64::from(cutoff - first.min(s.first)).max(1.0);
            (f64::from(n) / days * 14.0).max(1e-3)
        });
        ids.push(c);
        x.push(vec![
            f64::from(cutoff - 1 - s.last),
            f64::from(cutoff - 1 - s.first),
            f64::from(s.orders),
            s.value.max(0.0).ln_1p(),
            s.value / f64::from(s.orders.max(1)),
            f64::from(r[0]),
            f64::from(r[1]),
            f64::from(sn[0]),
            f64::from(sn[1]),
            if last_session == i32::MIN {
                365.0
            } else {
                f64::from(cutoff - 1 - last_session).min(365.0)
            },
            f64::from(s.returned) / f64::from(s.lines.max(1)),
            reviews.len() as f64,
            avg_rating,
            gap,
            f64::from(cutoff - 1 - s.last) / gap,
            f64::from(r[0]) / usual,
            f64::from(sn[0]) / usual_sessions,
        ]);
        y.push(!bought_after.contains(&c));
    }
    (ids, x, y)
}

fn churn(d: &Data, c: &shoplake_core::config::MlConfig) -> Fitted {
    let h = c.churn_days as i32;
    let span = d.last_day - d.first_day + 1;
    if span < 3 * h {
        return Err(JobError::Invalid(format!(
            "churn: {span} days of purchases; a horizon of {h} days (ml.churn_days) needs at least {} \
             (history, a training window and a test window)",
            3 * h
        )));
    }
    // the last full window tests; the one before trains
    let test_cut = d.last_day + 1 - h;
    let train_cut = test_cut - h;
    let (_, x_train, y_train) = churn_rows(d, train_cut, h);
    let (_, x_test, y_test) = churn_rows(d, test_cut, h);
    // 5-fold cross-validation over the training customers picks the model
    let gbt_cfg = ml::GbtConfig {
        n_trees: 200,
        learning_rate: 0.05,
        max_depth: 3,
        min_leaf: 20,
        seed: c.seed,
        ..ml::GbtConfig::default()
    };
    let lr_cfg = ml::LogisticConfig::default();
    let mut fold: Vec<usize> = (0..x_train.len()).map(|i| i % 5).collect();
    ml::Rng::new(c.seed).shuffle(&mut fold);
    let mut val_aucs = [0.0f64; 2];
    for f in 0..5 {
        let pick = |held: bool| -> (Vec<Vec<f64>>, Vec<bool>) {
            x_train
                .iter()
                .zip(&y_train)
                .zip(&fold)
                .filter(|(_, k)| (**k == f) == held)
                .map(|((x, y), _)| (x.clone(), *y))
                .unzip()
        };
        let (fit_x, fit_y) = pick(false);
        let (val_x, val_y) = pick(true);
        let lr = ml::LogisticRegression::fit(&fit_x, &fit_y, &lr_cfg).map_err(ml_err("churn"))?;
        let gbt =
            ml::GradientBoostedTrees::fit(&fit_x, &fit_y, &gbt_cfg).map_err(ml_err("churn"))?;
        let (_, aucs) = ml::select_by_auc(&[&lr, &gbt], &val_x, &val_y).map_err(ml_err("churn"))?;
        val_aucs[0] += aucs[0] / 5.0;
        val_aucs[1] += aucs[1] / 5.0;
    }
    let use_gbt = val_aucs[1] > val_aucs[0];
    // evaluate the chosen kind, refitted on all training customers, on the test window
    let fit = |x: &[Vec<f64>], y: &[bool]| -> Result<ml::Classifier> {
        Ok(if use_gbt {
            ml::Classifier::Gbt(
                ml::GradientBoostedTrees::fit(x, y, &gbt_cfg).map_err(ml_err("churn"))?,
            )
        } else {
            ml::Classifier::Logistic(
                ml::LogisticRegression::fit(x, y, &lr_cfg).map_err(ml_err("churn"))?,
            )
        })
    };
    let model = fit(&x_train, &y_train)?;
    let p = model.predict_proba(&x_test).map_err(ml_err("churn"))?;
    let auc = ml::roc_auc(&p, &y_test).map_err(ml_err("churn"))?;
    let recency: Vec<f64> = x_test.iter().map(|r| r[0]).collect();
    let baseline_auc = ml::roc_auc(&recency, &y_test).map_err(ml_err("churn"))?;
    let top = ml::precision_recall_at_top(&p, &y_test, 0.1).map_err(ml_err("churn"))?;
    let calibration = ml::calibration_table(&p, &y_test, 10).map_err(ml_err("churn"))?;
    let brier = ml::brier_score(&p, &y_test).map_err(ml_err("churn"))?;

    // the model in use learns from the latest labelled window, then scores today
    let final_model = fit(&x_test, &y_test)?;
    let (ids, x_now, _) = churn_rows(d, d.last_day + 1, h);
    let scores = final_model.predict_proba(&x_now).map_err(ml_err("churn"))?;
    let mut order: Vec<usize> = (0..ids.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(ids[a].cmp(&ids[b])));
    let mut decile = vec![0i32; ids.len()];
    for (rank, &i) in order.iter().enumerate() {
        decile[i] = (rank * 10 / ids.len().max(1)) as i32 + 1;
    }
    let t = totals(d, d.last_day + 1);
    let n = ids.len();
    let mut cid = StringBuilder::new();
    let mut prob = Float64Builder::with_capacity(n);
    let mut dec = Int32Builder::with_capacity(n);
    let mut rec = Int32Builder::with_capacity(n);
    let mut ltv = money_builder(n);
    let mut hz = Int32Builder::with_capacity(n);
    let mut asof = Date32Builder::with_capacity(n);
    let mut kind = StringBuilder::new();
    for &i in &order {
        cid.append_value(&d.customers[ids[i] as usize]);
        prob.append_value(scores[i]);
        dec.append_value(decile[i]);
        rec.append_value(x_now[i][0] as i32);
        ltv.append_value(cents(t[&ids[i]].value));
        hz.append_value(h);
        asof.append_value(d.last_day);
        kind.append_value(final_model.name());
    }
    let batch = RecordBatch::try_new(
        schema::CHURN_SCORES.schema(),
        vec![
            Arc::new(cid.finish()),
            Arc::new(prob.finish()),
            Arc::new(dec.finish()),
            Arc::new(rec.finish()),
            Arc::new(ltv.finish()),
            Arc::new(hz.finish()),
            Arc::new(asof.finish()),
            Arc::new(kind.finish()),
            Arc::new(Int64Array::from(vec![0; n])),
        ],
    )?;
    let mut m = meta(Kind::Churn, d, x_train.len() + x_test.len(), CHURN_FEATURES);
    let importance = match &final_model {
        ml::Classifier::Gbt(g) => g.feature_importance(),
        ml::Classifier::Logistic(l) => l.coefficients.iter().map(|c| c.abs()).collect(),
    };
    m.metrics = serde_json::json!({
        "model": final_model.name(),
        "cross_validation_auc": {"logistic": val_aucs[0], "gbt": val_aucs[1]},
        "auc": auc,
        "baseline_auc": baseline_auc,
        "baseline": "recency_days alone",
        "top_decile_precision": top.precision,
        "top_decile_recall": top.recall,
        "top_decile_lift": top.lift,
        "churn_rate": top.base_rate,
        "brier": brier,
        "calibration": calibration,
        "train": {"cutoff": time::format_date(train_cut), "customers": x_train.len()},
        "test": {"cutoff": time::format_date(test_cut), "customers": x_test.len()},
        "importance": CHURN_FEATURES.iter().zip(importance).map(|(f, v)| (f.to_string(), v)).collect::<BTreeMap<_, _>>(),
    });
    m.params =
        serde_json::json!({"horizon_days": h, "gbt": gbt_cfg, "logistic": lr_cfg, "seed": c.seed});
    let json = ml::to_json(&final_model).map_err(ml_err("churn"))?;
    Ok((m, json, batch))
}

// ---------------------------------------------------------------- recs

/// Days at the end held out to evaluate recommendations; the window before
/// them chooses the blend.
const RECS_TEST_DAYS: i32 = 14;

/// Blends tried on the validation window: every β (affinity weight) ×
/// γ (sharpness) × μ (popular mix); γ and μ only matter when β > 0.
fn recs_blends() -> Vec<ml::Blend> {
    let mut out = vec![ml::Blend {
        affinity: 0.0,
        ..ml::Blend::default()
    }];
    for affinity in [0.25, 0.5, 0.75, 1.0] {
        for sharpness in [1.0, 3.0] {
            for popular in [0.0, 0.5] {
                out.push(ml::Blend {
                    affinity,
                    sharpness,
                    popular,
                });
            }
        }
    }
    out
}

/// Item-to-item settings: shrunk cosine (it beat lift and P(j | i) on the
/// generated data's next purchases).
fn recs_config() -> ml::ItemItemConfig {
    ml::ItemItemConfig::default()
}

/// The recommender as saved: a hybrid of item-to-item neighbours and
/// category affinity over product numbers, and each customer's purchase
/// history (the seeds of their recommendations).
#[derive(Debug, Serialize, Deserialize)]
pub struct RecsModel {
    /// Product ids by item number.
    pub products: Vec<String>,
    /// Category names by category number.
    #[serde(default)]
    pub categories: Vec<String>,
    /// The fitted model (items are indexes into `products`).
    pub model: ml::HybridModel,
    /// Each customer's products (item, weight by recency), for serving.
    #[serde(default)]
    pub customers: BTreeMap<String, Vec<(u64, f64)>>,
}

fn recs_fit(d: &Data, until: i32, blend: ml::Blend) -> Result<ml::HybridModel> {
    let mut baskets: Vec<Vec<u64>> = d
        .baskets
        .iter()
        .filter(|b| b.day < until)
        .map(|b| b.products.clone())
        .collect();
    baskets.extend(
        d.views
            .iter()
            .filter(|(day, _)| *day < until)
            .map(|(_, p)| p.clone()),
    );
    // a customer's purchases together: their taste, beyond one basket
    baskets.extend(
        histories(d, until)
            .into_values()
            .map(|h| h.into_iter().map(|(p, _)| p).collect::<Vec<u64>>())
            .filter(|h| h.len() > 1),
    );
    ml::HybridModel::fit(&baskets, &d.categories, &recs_config(), blend).map_err(ml_err("recs"))
}

/// Each customer's products before `until`, most recent first, weighted by
/// recency.
fn histories(d: &Data, until: i32) -> BTreeMap<u32, Vec<(u64, f64)>> {
    let mut h: BTreeMap<u32, BTreeMap<u64, i32>> = BTreeMap::new();
    for b in d.baskets.iter().filter(|b| b.day < until) {
        for &p in &b.products {
            let e = h.entry(b.customer).or_default().entry(p).or_insert(b.day);
            *e = (*e).max(b.day);
        }
    }
    h.into_iter()
        .map(|(c, items)| {
            let seeds = items
                .into_iter()
                .map(|(p, day)| (p, 0.5f64.powf(f64::from(until - 1 - day) / 30.0)))
                .collect();
            (c, seeds)
        })
        .collect()
}

/// The offline evaluation of recommendations made on day `from` for what
/// each customer bought first in `[from, to)` that they had not bought
/// before: (model at each blend, popularity), hit-rate@10 and NDCG@10.
fn recs_evaluate(
    d: &Data,
    model: &ml::HybridModel,
    from: i32,
    to: i32,
    blends: &[ml::Blend],
) -> Result<(Vec<ml::RankingMetrics>, ml::RankingMetrics)> {
    let past = histories(d, from);
    let mut future: BTreeMap<u32, BTreeSet<u64>> = BTreeMap::new();
    for b in d.baskets.iter().filter(|b| b.day >= from && b.day < to) {
        future
            .entry(b.customer)
            .or_insert_with(|| b.products.iter().copied().collect());
    }
    let mut got: Vec<Vec<Vec<u64>>> = vec![Vec::new(); blends.len()];
    let (mut got_pop, mut relevant) = (Vec::new(), Vec::new());
    for (cust, items) in &future {
        let seeds = past.get(cust).cloned().unwrap_or_default();
        let bought: HashSet<u64> = seeds.iter().map(|(p, _)| *p).collect();
        let new: Vec<u64> = items
            .iter()
            .copied()
            .filter(|p| !bought.contains(p))
            .collect();
        if new.is_empty() {
            continue;
        }
        for (i, blend) in blends.iter().enumerate() {
            let list = model.recommend_with(blend, &seeds, &bought, 10);
            got[i].push(list.into_iter().map(|r| r.item).collect());
        }
        let pop = model.item_item.popularity.recommend(&bought, 10);
        got_pop.push(pop.into_iter().map(|r| r.item).collect());
        relevant.push(new);
    }
    let metrics = got
        .iter()
        .map(|g| ml::ranking_metrics(g, &relevant, 10).map_err(ml_err("recs")))
        .collect::<Result<Vec<_>>>()?;
    let base = ml::ranking_metrics(&got_pop, &relevant, 10).map_err(ml_err("recs"))?;
    Ok((metrics, base))
}

fn recs(d: &Data, c: &shoplake_core::config::MlConfig) -> Fitted {
    let k = c.recommendations;
    let split = d.last_day + 1 - RECS_TEST_DAYS;
    if split <= d.first_day {
        return Err(JobError::Invalid(format!(
            "recs: {} days of purchases; the evaluation holds out the last {RECS_TEST_DAYS}",
            d.last_day - d.first_day + 1
        )));
    }
    // choose the blend on the window before the test days, never on them
    let validate = split - RECS_TEST_DAYS;
    let (blend, validation) = if validate - d.first_day >= RECS_TEST_DAYS {
        let blends = recs_blends();
        let model = recs_fit(d, validate, ml::Blend::default())?;
        let (m, _) = recs_evaluate(d, &model, validate, split, &blends)?;
        // the best hit rate + NDCG; ties go to the simpler (earlier) blend
        let best = (0..m.len())
            .max_by(|&a, &b| {
                (m[a].hit_rate + m[a].ndcg)
                    .total_cmp(&(m[b].hit_rate + m[b].ndcg))
                    .then(b.cmp(&a))
            })
            .expect("blends");
        let tried: Vec<serde_json::Value> = blends
            .iter()
            .zip(&m)
            .map(|(b, r)| {
                serde_json::json!({"affinity": b.affinity, "sharpness": b.sharpness,
                    "popular": b.popular, "hit_rate": r.hit_rate, "ndcg": r.ndcg})
            })
            .collect();
        (blends[best], serde_json::Value::Array(tried))
    } else {
        (ml::Blend::default(), serde_json::Value::Null)
    };
    let model = recs_fit(d, split, blend)?;
    let plain = ml::Blend {
        affinity: 0.0,
        ..blend
    };
    let (m, base) = recs_evaluate(d, &model, split, d.last_day + 1, &[blend, plain])?;
    let (eval, item_item) = (m[0], m[1]);

    // the model in use learns from everything
    let model = recs_fit(d, d.last_day + 1, blend)?;
    let mut kind = StringBuilder::new();
    let mut key = StringBuilder::new();
    let mut rank = Int32Builder::new();
    let mut pid = StringBuilder::new();
    let mut score = Float64Builder::new();
    let mut source = StringBuilder::new();
    let mut push = |k: &str, of: &str, list: Vec<ml::Recommendation>| {
        for (i, r) in list.into_iter().enumerate() {
            kind.append_value(k);
            key.append_value(of);
            rank.append_value(i as i32 + 1);
            pid.append_value(&d.products[r.item as usize]);
            score.append_value(r.score);
            source.append_value(match r.source {
                ml::Source::Similar => "similar",
                ml::Source::Popular => "popular",
            });
        }
    };
    let sold: BTreeSet<u64> = d
        .baskets
        .iter()
        .flat_map(|b| b.products.iter().copied())
        .collect();
    for &p in &sold {
        let list = model.recommend(&[(p, 1.0)], &HashSet::new(), k);
        push("product", &d.products[p as usize], list);
    }
    let mut customers = BTreeMap::new();
    for (cust, seeds) in histories(d, d.last_day + 1) {
        let bought: HashSet<u64> = seeds.iter().map(|(p, _)| *p).collect();
        push(
            "customer",
            &d.customers[cust as usize],
            model.recommend(&seeds, &bought, k),
        );
        customers.insert(d.customers[cust as usize].clone(), seeds);
    }
    let n = kind.len();
    let batch = RecordBatch::try_new(
        schema::RECOMMENDATIONS.schema(),
        vec![
            Arc::new(kind.finish()),
            Arc::new(key.finish()),
            Arc::new(rank.finish()),
            Arc::new(pid.finish()),
            Arc::new(score.finish()),
            Arc::new(source.finish()),
            Arc::new(Int64Array::from(vec![0; n])),
        ],
    )?;
    let mut m = meta(
        Kind::Recs,
        d,
        d.baskets.len() + d.views.len(),
        &[
            "baskets (products bought together)",
            "sessions (products viewed together)",
        ],
    );
    m.metrics = serde_json::json!({
        "hit_rate": eval.hit_rate,
        "ndcg": eval.ndcg,
        "baseline_hit_rate": base.hit_rate,
        "baseline_ndcg": base.ndcg,
        "baseline": "most bought products",
        "item_item_hit_rate": item_item.hit_rate,
        "item_item_ndcg": item_item.ndcg,
        "blend": blend,
        "validation_from": time::format_date(validate),
        "validation": validation,
        "k": 10,
        "test_customers": eval.cases,
        "test_from": time::format_date(split),
        "products": model.item_item.neighbours.len(),
    });
    m.params = serde_json::json!({
        "item_item": recs_config(),
        "test_days": RECS_TEST_DAYS,
        "blends_tried": recs_blends().len(),
    });
    let saved = RecsModel {
        products: d.products.clone(),
        categories: d.category_names.clone(),
        model,
        customers,
    };
    let json = ml::to_json(&saved).map_err(ml_err("recs"))?;
    Ok((m, json, batch))
}

// ---------------------------------------------------------------- ltv

/// BG/NBD inputs of every customer who bought before `until`: (customer,
/// history in days, mean order value).
fn ltv_rows(d: &Data, until: i32) -> Vec<(u32, ml::CustomerHistory, f64)> {
    let mut per: BTreeMap<u32, Vec<(i32, f64)>> = BTreeMap::new();
    for b in d.baskets.iter().take_while(|b| b.day < until) {
        per.entry(b.customer).or_default().push((b.day, b.value));
    }
    per.into_iter()
        .map(|(c, orders)| {
            let first = orders[0].0;
            let last = orders[orders.len() - 1].0;
            let mean = orders.iter().map(|o| o.1).sum::<f64>() / orders.len() as f64;
            let h = ml::CustomerHistory {
                x: orders.len() as u32 - 1,
                t_x: f64::from(last - first),
                t: f64::from(until - first),
            };
            (c, h, mean)
        })
        .collect()
}

fn ltv_fit(rows: &[(u32, ml::CustomerHistory, f64)]) -> Result<ml::LtvModel> {
    let hist: Vec<ml::CustomerHistory> = rows.iter().map(|r| r.1).collect();
    let purchases = ml::BgNbd::fit(&hist).map_err(ml_err("ltv"))?;
    let (freq, values): (Vec<u32>, Vec<f64>) = rows
        .iter()
        .filter(|r| r.1.x > 0 && r.2 > 0.0)
        .map(|r| (r.1.x, r.2))
        .unzip();
    let value = ml::GammaGamma::fit(&freq, &values).map_err(ml_err("ltv"))?;
    Ok(ml::LtvModel { purchases, value })
}

fn ltv(d: &Data, c: &shoplake_core::config::MlConfig) -> Fitted {
    let span = d.last_day - d.first_day + 1;
    let hold = (c.ltv_days as i32).min(span / 3);
    if hold < 7 {
        return Err(JobError::Invalid(format!(
            "ltv: {span} days of purchases is too little to hold a period out (at least 21 needed)"
        )));
    }
    let end = d.last_day + 1 - hold;
    let rows = ltv_rows(d, end);
    let model = ltv_fit(&rows)?;
    let mut actual: HashMap<u32, f64> = HashMap::new();
    for b in d.baskets.iter().filter(|b| b.day >= end) {
        *actual.entry(b.customer).or_default() += b.value;
    }
    let mut pred = Vec::new();
    let mut naive = Vec::new();
    let mut truth = Vec::new();
    for (cust, h, mean) in &rows {
        pred.push(
            model
                .predicted_spend(f64::from(hold), h, *mean)
                .map_err(ml_err("ltv"))?,
        );
        let past = mean * f64::from(h.x + 1);
        naive.push(ml::naive_forecast(f64::from(hold), past, h.t.max(1.0)).map_err(ml_err("ltv"))?);
        truth.push(actual.get(cust).copied().unwrap_or(0.0));
    }
    let mae = ml::mae(&pred, &truth).map_err(ml_err("ltv"))?;
    let baseline_mae = ml::mae(&naive, &truth).map_err(ml_err("ltv"))?;

    // the model in use learns from everything and looks ltv_days ahead
    let rows = ltv_rows(d, d.last_day + 1);
    let model = ltv_fit(&rows)?;
    let horizon = f64::from(c.ltv_days);
    let n = rows.len();
    let mut cid = StringBuilder::new();
    let (mut eo, mut ev, mut sp, mut pa) = (
        Float64Builder::with_capacity(n),
        Float64Builder::with_capacity(n),
        Float64Builder::with_capacity(n),
        Float64Builder::with_capacity(n),
    );
    let mut hz = Int32Builder::with_capacity(n);
    let mut asof = Date32Builder::with_capacity(n);
    for (cust, h, mean) in &rows {
        let orders = model
            .purchases
            .expected_purchases(horizon, h.x, h.t_x, h.t)
            .map_err(ml_err("ltv"))?;
        let value = model.value.expected_avg_value(h.x, *mean);
        cid.append_value(&d.customers[*cust as usize]);
        eo.append_value(orders);
        ev.append_value(value);
        sp.append_value(orders * value);
        pa.append_value(model.purchases.p_alive(h.x, h.t_x, h.t));
        hz.append_value(c.ltv_days as i32);
        asof.append_value(d.last_day);
    }
    let batch = RecordBatch::try_new(
        schema::LTV_FORECAST.schema(),
        vec![
            Arc::new(cid.finish()),
            Arc::new(eo.finish()),
            Arc::new(ev.finish()),
            Arc::new(sp.finish()),
            Arc::new(pa.finish()),
            Arc::new(hz.finish()),
            Arc::new(asof.finish()),
            Arc::new(Int64Array::from(vec![0; n])),
        ],
    )?;
    let mut m = meta(
        Kind::Ltv,
        d,
        n,
        &[
            "repeat orders (x)",
            "days from first to last order (t_x)",
            "days as a customer (T)",
            "mean order value",
        ],
    );
    m.metrics = serde_json::json!({
        "mae": mae,
        "baseline_mae": baseline_mae,
        "baseline": "each customer's past spend per day × the period",
        "holdout_days": hold,
        "holdout_from": time::format_date(end),
        "customers": truth.len(),
        "actual_spend": truth.iter().sum::<f64>(),
        "predicted_spend": pred.iter().sum::<f64>(),
        "bg_nbd": {"r": model.purchases.r, "alpha": model.purchases.alpha, "a": model.purchases.a, "b": model.purchases.b},
        "gamma_gamma": {"p": model.value.p, "q": model.value.q, "gamma": model.value.gamma},
    });
    m.params = serde_json::json!({"horizon_days": c.ltv_days, "time_unit": "day"});
    let json = ml::to_json(&model).map_err(ml_err("ltv"))?;
    Ok((m, json, batch))
}
