//! Real-time recommendations: `GET /api/recommendations`, served from the
//! model `shoplake ml train recs` saved and the latest product events the
//! collector has just accepted (the job of Personalize's event tracker).
//!
//! | route | role |
//! | --- | --- |
//! | `GET /api/recommendations?customer_id=&session_id=&product_id=&k=` | any account or API token |
//!
//! ```text
//!  collector (2xx) ──► Activity: per session and per user, the last
//!                      LIVE_EVENTS product views / cart adds / purchases
//!  models/recs/current ──► Loaded (reloaded within 2 s of a retrain)
//!  request ──► seeds = customer's purchase history (model)
//!                    + live events of the session and the customer
//!                    + the product on the page
//!          ──► HybridModel::recommend(seeds, exclude bought, k)
//! ```
//!
//! Everything a request needs is in memory: no query, no disk. Errors are
//! JSON `{"error": ...}`: 400 (no context, bad `k`), 401, 503 (no model
//! trained yet).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use shoplake_collect::Collected;
use shoplake_jobs::accounts::Role;
use shoplake_jobs::ml::{Kind, RecsModel};

use crate::api::{Api, ApiError};
use crate::auth;
use crate::metrics::Metrics;

/// Product events kept per session or user, newest last.
pub const LIVE_EVENTS: usize = 10;

/// Most recommendations one request may ask for.
pub const MAX_K: usize = 100;

/// What a visitor did with a product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Touch {
    View,
    Cart,
    Bought,
}

impl Touch {
    fn of(event_type: &str) -> Option<Touch> {
        match event_type {
            "product_view" => Some(Touch::View),
            "add_to_cart" => Some(Touch::Cart),
            "purchase" => Some(Touch::Bought),
            _ => None,
        }
    }
}

/// The latest product events of sessions and users, bounded: two
/// generations of at most `capacity / 2` keys each; when the young one is
/// full it becomes the old one and the old one is forgotten, so memory stays
/// under `capacity` trails of [`LIVE_EVENTS`] events while recently active
/// visitors are kept.
#[derive(Debug)]
pub(crate) struct Activity {
    capacity: usize,
    inner: Mutex<Generations>,
}

type Trail = VecDeque<(Box<str>, Touch)>;

#[derive(Debug, Default)]
struct Generations {
    young: HashMap<Box<str>, Trail>,
    old: HashMap<Box<str>, Trail>,
}

fn session_key(s: &str) -> String {
    format!("s:{s}")
}

fn user_key(u: &str) -> String {
    format!("u:{u}")
}

impl Activity {
    /// Keeps at most `capacity` trails (0: keeps nothing).
    pub(crate) fn new(capacity: usize) -> Activity {
        Activity {
            capacity,
            inner: Mutex::new(Generations::default()),
        }
    }

    /// Records the product events among `events` (called after they are
    /// durably accepted).
    pub(crate) fn record(&self, events: &[Collected]) {
        if self.capacity == 0 {
            return;
        }
        let mut touches: Vec<(String, Box<str>, Touch)> = Vec::new();
        for c in events {
            let e = &c.event;
            let Some(touch) = Touch::of(e.event_type) else {
                continue;
            };
            if e.is_bot {
                continue;
            }
            let mut products: Vec<&str> = e
                .products
                .iter()
                .filter_map(|l| l.product_id.as_deref())
                .collect();
            if products.is_empty()
                && let Some(p) = e.product_id.as_deref()
            {
                products.push(p);
            }
            for p in products.into_iter().filter(|p| !p.is_empty()) {
                if let Some(s) = e.session_id.as_deref() {
                    touches.push((session_key(s), p.into(), touch));
                }
                if let Some(u) = e.user_id.as_deref() {
                    touches.push((user_key(u), p.into(), touch));
                }
            }
        }
        if touches.is_empty() {
            return;
        }
        let half = (self.capacity / 2).max(1);
        let mut guard = self.inner.lock().expect("unpoisoned");
        let g = &mut *guard;
        for (key, product, touch) in touches {
            if !g.young.contains_key(key.as_str()) {
                if g.young.len() >= half {
                    g.old = std::mem::take(&mut g.young);
                }
                let moved = g.old.remove(key.as_str()).unwrap_or_default();
                g.young.insert(key.clone().into_boxed_str(), moved);
            }
            let trail = g.young.get_mut(key.as_str()).expect("inserted above");
            trail.retain(|(p, t)| !(p.as_ref() == product.as_ref() && *t == touch));
            trail.push_back((product, touch));
            while trail.len() > LIVE_EVENTS {
                trail.pop_front();
            }
        }
    }

    /// The trail of `key`, oldest first.
    fn trail(&self, key: &str) -> Vec<(String, Touch)> {
        let g = self.inner.lock().expect("unpoisoned");
        g.young
            .get(key)
            .or_else(|| g.old.get(key))
            .map(|t| t.iter().map(|(p, k)| (p.to_string(), *k)).collect())
            .unwrap_or_default()
    }

    /// Trails held now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        let g = self.inner.lock().expect("unpoisoned");
        g.young.len() + g.old.len()
    }
}

/// The model in use, with its product index.
pub(crate) struct Loaded {
    version: i64,
    trained_at: String,
    index: HashMap<String, u64>,
    model: RecsModel,
}

/// State of the recommendation route.
pub(crate) struct Recs {
    pub(crate) api: Arc<Api>,
    pub(crate) activity: Arc<Activity>,
    pub(crate) model: RwLock<Option<Arc<Loaded>>>,
    pub(crate) metrics: Arc<Metrics>,
}

pub(crate) fn router(state: Arc<Recs>) -> Router {
    Router::new()
        .route("/api/recommendations", get(recommend))
        .with_state(state)
}

/// Loads the model in use (None if never trained).
fn load(lake: &shoplake_lake::Lake) -> shoplake_jobs::Result<Option<Loaded>> {
    Ok(
        shoplake_jobs::ml::load_current::<RecsModel>(lake, Kind::Recs)?.map(|(meta, model)| {
            let index = model
                .products
                .iter()
                .enumerate()
                .map(|(i, p)| (p.clone(), i as u64))
                .collect();
            Loaded {
                version: meta.version,
                trained_at: meta.trained_at.clone(),
                index,
                model,
            }
        }),
    )
}

impl Recs {
    /// Loads the model in use now, then keeps it current: a retrain (CLI or
    /// scheduler) is picked up within two seconds.
    pub(crate) async fn keep_loaded(self: Arc<Self>) {
        let mut seen: Option<String> = None;
        loop {
            let now = shoplake_jobs::ml::current_version(&self.api.lake, Kind::Recs);
            if now != seen {
                let lake = self.api.lake.clone();
                match tokio::task::spawn_blocking(move || load(&lake)).await {
                    Ok(Ok(m)) => {
                        if let Some(m) = &m {
                            tracing::info!(
                                version = m.version,
                                products = m.model.products.len(),
                                customers = m.model.customers.len(),
                                "recommendation model loaded"
                            );
                        }
                        *self.model.write().expect("unpoisoned") = m.map(Arc::new);
                        seen = now;
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "cannot load the recommendation model; retrying")
                    }
                    Err(e) => tracing::warn!(error = %e, "loading the recommendation model"),
                }
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
}

#[derive(Debug, Deserialize)]
struct Params {
    customer_id: Option<String>,
    session_id: Option<String>,
    product_id: Option<String>,
    k: Option<String>,
}

/// One recommended product.
#[derive(Debug, Serialize)]
struct Item {
    product_id: String,
    score: f64,
    source: &'static str,
}

/// What the answer was based on.
#[derive(Debug, Default, Serialize)]
struct Context {
    /// The customer has purchases in the model.
    customer_known: bool,
    /// Their distinct products in the model.
    history_items: usize,
    /// Live product events of the session and the customer used.
    live_events: usize,
    /// The product is in the model.
    product_known: bool,
}

#[derive(Debug, Serialize)]
struct Answer {
    items: Vec<Item>,
    model_version: i64,
    trained_at: String,
    context: Context,
}

/// Weight of the product on the page, and of the newest live event; older
/// live events decay by `LIVE_DECAY` per step. Purchase history weighs at
/// most 1 (recency-weighted when trained), so what the visitor does now
/// counts most.
const PAGE_WEIGHT: f64 = 4.0;
const LIVE_WEIGHT: f64 = 2.0;
const LIVE_DECAY: f64 = 0.7;

async fn recommend(
    State(r): State<Arc<Recs>>,
    headers: HeaderMap,
    Query(q): Query<Params>,
) -> Response {
    let t0 = Instant::now();
    let answer = answer(&r, &headers, q);
    r.metrics
        .recs_seconds
        .observe_micros(t0.elapsed().as_micros() as u64);
    match answer {
        Ok(a) => axum::Json(a).into_response(),
        Err(e) => e.into_response(),
    }
}

fn answer(r: &Recs, headers: &HeaderMap, q: Params) -> Result<Answer, ApiError> {
    // any account or token but a scraper's (`metrics`)
    auth::authenticate(&r.api.store, r.api.oidc.as_deref(), headers)?.require(Role::Orders)?;
    let k = match q.k.as_deref() {
        None | Some("") => r.api.config.ml.recommendations.clamp(1, MAX_K),
        Some(s) => match s.parse::<usize>() {
            Ok(k) if (1..=MAX_K).contains(&k) => k,
            _ => {
                return Err(ApiError(
                    StatusCode::BAD_REQUEST,
                    format!("k: {s:?} is not a whole number from 1 to {MAX_K}"),
                ));
            }
        },
    };
    let nonempty = |s: Option<String>| s.filter(|s| !s.trim().is_empty());
    let (customer, session, product) = (
        nonempty(q.customer_id),
        nonempty(q.session_id),
        nonempty(q.product_id),
    );
    if customer.is_none() && session.is_none() && product.is_none() {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "give customer_id, session_id or product_id (any combination)".into(),
        ));
    }
    let Some(m) = r.model.read().expect("unpoisoned").clone() else {
        return Err(ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "no recommendation model yet: run `shoplake ml train recs` (the server also retrains on ml.schedule)".into(),
        ));
    };
    let mut ctx = Context::default();
    let mut seeds: HashMap<u64, f64> = HashMap::new();
    let mut exclude: HashSet<u64> = HashSet::new();
    if let Some(c) = &customer
        && let Some(history) = m.model.customers.get(c)
    {
        ctx.customer_known = true;
        ctx.history_items = history.len();
        for &(item, w) in history {
            *seeds.entry(item).or_insert(0.0) += w;
            exclude.insert(item);
        }
    }
    let mut live = Vec::new();
    if let Some(s) = &session {
        live.extend(r.activity.trail(&session_key(s)));
    }
    if let Some(c) = &customer {
        live.extend(r.activity.trail(&user_key(c)));
    }
    ctx.live_events = live.len();
    // newest last in each trail: weigh by position from the end
    for (age, (p, touch)) in live.iter().rev().enumerate() {
        let Some(&item) = m.index.get(p) else {
            continue;
        };
        if *touch == Touch::Bought {
            exclude.insert(item);
        }
        let w = LIVE_WEIGHT * LIVE_DECAY.powi(age as i32);
        let w = if *touch == Touch::Cart { w * 1.5 } else { w };
        *seeds.entry(item).or_insert(0.0) += w;
    }
    if let Some(p) = &product
        && let Some(&item) = m.index.get(p)
    {
        ctx.product_known = true;
        *seeds.entry(item).or_insert(0.0) += PAGE_WEIGHT;
    }
    let mut seeds: Vec<(u64, f64)> = seeds.into_iter().collect();
    seeds.sort_by_key(|s| s.0);
    let items = m
        .model
        .model
        .recommend(&seeds, &exclude, k)
        .into_iter()
        .filter_map(|rec| {
            Some(Item {
                product_id: m.model.products.get(rec.item as usize)?.clone(),
                score: rec.score,
                source: match rec.source {
                    shoplake_ml::Source::Similar => "similar",
                    shoplake_ml::Source::Popular => "popular",
                },
            })
        })
        .collect();
    Ok(Answer {
        items,
        model_version: m.version,
        trained_at: m.trained_at.clone(),
        context: ctx,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoplake_core::event::{Event, LineItem};
    use std::borrow::Cow;

    fn ev(t: &'static str, session: &str, user: Option<&str>, product: &str) -> Collected {
        Collected {
            event: Event {
                event_type: t,
                session_id: Some(Cow::Owned(session.into())),
                user_id: user.map(|u| Cow::Owned(u.into())),
                products: vec![LineItem {
                    product_id: Some(Cow::Owned(product.into())),
                    ..Default::default()
                }],
                ..Default::default()
            },
            raw: String::new(),
        }
    }

    #[test]
    fn activity_keeps_the_latest_product_events_within_its_bound() {
        let a = Activity::new(4);
        a.record(&[
            ev("product_view", "s1", None, "p1"),
            ev("page_view", "s1", None, "p9"),
            ev("add_to_cart", "s1", Some("u1"), "p2"),
            ev("product_view", "s1", None, "p1"),
        ]);
        // page views are not product events; a repeat moves to the end
        let t = a.trail("s:s1");
        assert_eq!(
            t,
            vec![
                ("p2".to_string(), Touch::Cart),
                ("p1".to_string(), Touch::View)
            ]
        );
        assert_eq!(a.trail("u:u1"), vec![("p2".to_string(), Touch::Cart)]);
        for i in 0..(LIVE_EVENTS + 5) {
            a.record(&[ev("product_view", "s1", None, &format!("q{i}"))]);
        }
        let t = a.trail("s:s1");
        assert_eq!(t.len(), LIVE_EVENTS);
        assert_eq!(t[LIVE_EVENTS - 1].0, format!("q{}", LIVE_EVENTS + 4));
        // many sessions: never more than the capacity, recent ones kept
        for i in 0..50 {
            a.record(&[ev("product_view", &format!("x{i}"), None, "p1")]);
            assert!(a.len() <= 4, "{} trails", a.len());
        }
        assert_eq!(a.trail("s:x49").len(), 1);
        assert_eq!(a.trail("s:x48").len(), 1);
        assert!(a.trail("s:x0").is_empty());
        // capacity 0 keeps nothing
        let none = Activity::new(0);
        none.record(&[ev("product_view", "s1", None, "p1")]);
        assert_eq!(none.len(), 0);
    }
}
