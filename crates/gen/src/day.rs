//! One day of activity: orders (lines), the purchase session behind each
//! covered order, non-converting sessions filling the rest of the day's event
//! budget, and review candidates. A day only reads the shared plan and its own
//! random stream, so days can be simulated in any order, in parallel.

use crate::catalog::{CATEGORIES, Catalog};
use crate::people::Customer;
use crate::rng::{Cdf, Rng, Stream, ln};

/// Milliseconds in a day.
pub(crate) const DAY_MS: u32 = 86_400_000;
/// "No customer" (anonymous session) / "no session".
pub(crate) const NONE: u32 = u32::MAX;

/// Line status codes.
pub(crate) const COMPLETED: u8 = 0;
pub(crate) const RETURNED: u8 = 1;
pub(crate) const REFUNDED: u8 = 2;

/// Event kinds.
pub(crate) const EV_PAGE_VIEW: u8 = 0;
pub(crate) const EV_PRODUCT_VIEW: u8 = 1;
pub(crate) const EV_ADD_TO_CART: u8 = 2;
pub(crate) const EV_REMOVE_FROM_CART: u8 = 3;
pub(crate) const EV_CHECKOUT: u8 = 4;
pub(crate) const EV_PURCHASE: u8 = 5;
/// Event type names, indexed by kind.
pub(crate) const EVENT_NAMES: [&str; 6] = [
    "page_view",
    "product_view",
    "add_to_cart",
    "remove_from_cart",
    "checkout",
    "purchase",
];

/// Page kinds (the event's `arg` says which product, category or order).
pub(crate) const PAGE_HOME: u8 = 0;
pub(crate) const PAGE_PRODUCT: u8 = 1;
pub(crate) const PAGE_CATEGORY: u8 = 2;
pub(crate) const PAGE_SEARCH: u8 = 3;
pub(crate) const PAGE_CART: u8 = 4;
pub(crate) const PAGE_CHECKOUT: u8 = 5;
pub(crate) const PAGE_CONFIRMATION: u8 = 6;
/// Flag on the landing page: the URL carries the session's UTM parameters.
pub(crate) const LANDING: u8 = 0x80;

/// Traffic channels: `(utm_source, utm_medium, campaigns)`; the first is
/// direct traffic, without a query.
pub(crate) const CHANNELS: [(&str, &str, &[&str]); 6] = [
    ("", "", &[]),
    ("google", "organic", &["seo"]),
    (
        "google",
        "cpc",
        &["brand_search", "generic_search", "shopping_feed"],
    ),
    (
        "facebook",
        "social",
        &["spring_promo", "retargeting", "lookalike_audience"],
    ),
    (
        "newsletter",
        "email",
        &["weekly_digest", "abandoned_cart", "new_arrivals"],
    ),
    (
        "affiliate",
        "referral",
        &["partner_blog", "coupon_site", "price_comparison"],
    ),
];
/// Channel mix of sessions that do not buy.
const BROWSE_CHANNELS: [f64; 6] = [0.28, 0.26, 0.17, 0.16, 0.06, 0.07];
/// Channel mix of sessions that buy (email and search convert better).
const BUY_CHANNELS: [f64; 6] = [0.31, 0.22, 0.19, 0.06, 0.14, 0.08];

/// Device mix of sessions that do not buy (mobile heavy).
const BROWSE_DEVICES: [f64; 3] = [0.25, 0.68, 0.07];
/// Device mix of sessions that buy, besides the customer's own device
/// (desktop converts best).
const BUY_DEVICES: [f64; 3] = [0.55, 0.35, 0.10];
/// Per device (desktop, mobile, tablet): chance a browsing session bounces.
const BOUNCE: [f64; 3] = [0.38, 0.52, 0.45];
/// Per device: mean number of extra browsing steps.
const STEPS: [f64; 3] = [2.6, 1.8, 2.2];
/// Per device: chance a browsing session with a product view adds to cart.
const CART: [f64; 3] = [0.22, 0.12, 0.17];
/// Per device: chance a browsing session with a cart starts checkout.
const CHECKOUT: [f64; 3] = [0.38, 0.25, 0.30];

/// Share of browsing sessions by anonymous visitors.
pub(crate) const ANONYMOUS_SHARE: f64 = 0.4;

/// Relative traffic per hour of day (UTC), weekdays: trough at night, peak
/// in the evening.
const WEEKDAY_HOURS: [f64; 24] = [
    0.30, 0.18, 0.12, 0.09, 0.08, 0.12, 0.25, 0.45, 0.60, 0.70, 0.78, 0.85, 0.95, 0.90, 0.85, 0.85,
    0.90, 1.00, 1.15, 1.35, 1.50, 1.40, 1.05, 0.60,
];
/// Weekends: later mornings, fuller middays.
const WEEKEND_HOURS: [f64; 24] = [
    0.40, 0.25, 0.15, 0.10, 0.08, 0.10, 0.18, 0.30, 0.50, 0.75, 0.95, 1.05, 1.10, 1.05, 1.00, 1.00,
    1.00, 1.05, 1.15, 1.30, 1.40, 1.30, 1.00, 0.65,
];
/// Relative orders per weekday, Monday first.
pub(crate) const WEEKDAYS: [f64; 7] = [1.0, 0.96, 0.97, 1.0, 1.06, 1.22, 1.16];

/// Weekday of an epoch day, 0 = Monday.
pub(crate) fn weekday(epoch_day: i32) -> usize {
    (epoch_day + 3).rem_euclid(7) as usize
}

/// One order line.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Line {
    pub customer: u32,
    pub product: u32,
    pub cents: i64,
    pub qty: u8,
    pub status: u8,
}

/// One session.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Session {
    pub customer: u32,
    pub device: u8,
    pub channel: u8,
    pub campaign: u8,
    start: u32,
}

/// One clickstream event.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Event {
    pub t_ms: u32,
    pub session: u32,
    /// Product, category or line index, depending on the page.
    pub arg: u32,
    pub kind: u8,
    /// Page kind, possibly with [`LANDING`].
    pub page: u8,
}

/// A line that will be reviewed if selected.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Candidate {
    /// Day offset of the review.
    pub review_day: u32,
    /// Line index within its day (made global later).
    pub line: u64,
    pub customer: u32,
    pub product: u32,
    pub returned: bool,
    /// Selection key: smaller is chosen first.
    pub key: f64,
}

/// Everything one day produced.
pub(crate) struct DayOut {
    /// Lines in file order (orders consecutive, by time).
    pub lines: Vec<Line>,
    /// Sessions, by start time.
    pub sessions: Vec<Session>,
    /// Events, by time.
    pub events: Vec<Event>,
    pub candidates: Vec<Candidate>,
    pub orders: u64,
    pub covered: u64,
}

/// What every day shares.
pub(crate) struct Plan<'a> {
    pub seed: u64,
    pub start_date: i32,
    pub days: u32,
    pub catalog: &'a Catalog,
    pub customers: &'a [Customer],
    pub lines: Vec<u64>,
    pub events: Vec<u64>,
    /// Probability an order gets a purchase session.
    pub coverage: f64,
    /// Probability a line becomes a review candidate.
    pub review_p: f64,
    weekday_hours: Cdf,
    weekend_hours: Cdf,
    category_weights: Vec<f64>,
}

impl<'a> Plan<'a> {
    pub(crate) fn new(
        seed: u64,
        start_date: i32,
        days: u32,
        catalog: &'a Catalog,
        customers: &'a [Customer],
    ) -> Plan<'a> {
        let category_weights = catalog.by_cat.iter().map(|(_, cdf)| cdf.total()).collect();
        Plan {
            seed,
            start_date,
            days,
            catalog,
            customers,
            lines: Vec::new(),
            events: Vec::new(),
            coverage: 1.0,
            review_p: 0.0,
            weekday_hours: Cdf::new(WEEKDAY_HOURS),
            weekend_hours: Cdf::new(WEEKEND_HOURS),
            category_weights,
        }
    }

    fn hours(&self, d: u32) -> &Cdf {
        if weekday(self.start_date + d as i32) >= 5 {
            &self.weekend_hours
        } else {
            &self.weekday_hours
        }
    }
}

/// A gap in milliseconds: log-normal around `median_s` seconds.
#[inline]
fn gap(rng: &mut Rng, median_s: f64, sigma: f64) -> u32 {
    (rng.lognormal(median_s * 1000.0, sigma)).clamp(1_000.0, 900_000.0) as u32
}

/// Number of extra steps, geometric with the given mean.
#[inline]
fn geometric(rng: &mut Rng, mean: f64) -> u32 {
    let p = 1.0 / (1.0 + mean);
    let k = ln(rng.f64_open()) / ln(1.0 - p);
    (k.floor() as u32).min(20)
}

/// A scratch event before placement: gap since the previous event.
#[derive(Debug, Clone, Copy)]
struct Step {
    gap: u32,
    kind: u8,
    page: u8,
    arg: u32,
}

/// Builds sessions' steps.
struct Builder<'p> {
    catalog: &'p Catalog,
    category_weights: &'p [f64],
    steps: Vec<Step>,
    viewed: Vec<u32>,
    carted: Vec<u32>,
}

impl<'p> Builder<'p> {
    fn new(catalog: &'p Catalog, category_weights: &'p [f64]) -> Self {
        Builder {
            catalog,
            category_weights,
            steps: Vec::with_capacity(64),
            viewed: Vec::with_capacity(16),
            carted: Vec::with_capacity(8),
        }
    }

    fn reset(&mut self) {
        self.steps.clear();
        self.viewed.clear();
        self.carted.clear();
    }

    fn push(&mut self, gap: u32, kind: u8, page: u8, arg: u32) {
        self.steps.push(Step {
            gap,
            kind,
            page,
            arg,
        });
    }

    fn view(&mut self, rng: &mut Rng, p: u32) {
        let g = gap(rng, 30.0, 0.8);
        self.push(g, EV_PRODUCT_VIEW, PAGE_PRODUCT, p);
        self.viewed.push(p);
    }

    fn cart(&mut self, rng: &mut Rng, p: u32) {
        let g = gap(rng, 25.0, 0.7);
        self.push(g, EV_ADD_TO_CART, PAGE_CART, p);
        self.carted.push(p);
    }

    fn cat_of(&self, p: u32) -> u8 {
        self.catalog.products[p as usize].cat
    }

    fn landing(&mut self, rng: &mut Rng, home: f64, product: f64, p: u32) -> Option<u8> {
        let r = rng.f64();
        if r < home {
            self.push(0, EV_PAGE_VIEW, PAGE_HOME | LANDING, 0);
            None
        } else if r < home + product {
            self.push(0, EV_PAGE_VIEW, PAGE_PRODUCT | LANDING, p);
            let g = 1_000 + rng.below(3_000) as u32;
            self.push(g, EV_PRODUCT_VIEW, PAGE_PRODUCT, p);
            self.viewed.push(p);
            Some(self.cat_of(p))
        } else {
            let c = self.cat_of(p);
            self.push(0, EV_PAGE_VIEW, PAGE_CATEGORY | LANDING, u32::from(c));
            Some(c)
        }
    }

    /// A session that ends in the purchase of `products` (order `order`).
    fn purchase(&mut self, rng: &mut Rng, products: &[u32], order: u32) {
        self.reset();
        let first = products[0];
        let landed = self.landing(rng, 0.40, 0.35, first);
        if rng.chance(0.3) {
            let g = gap(rng, 15.0, 0.7);
            self.push(g, EV_PAGE_VIEW, PAGE_SEARCH, first);
        }
        if landed.is_none() && rng.chance(0.3) {
            let g = gap(rng, 15.0, 0.7);
            let c = self.cat_of(first);
            self.push(g, EV_PAGE_VIEW, PAGE_CATEGORY, u32::from(c));
        }
        for _ in 0..geometric(rng, 1.2) {
            let p = if rng.chance(0.5) {
                self.catalog.product_in(rng, self.cat_of(first))
            } else {
                self.catalog.popular_product(rng)
            };
            self.view(rng, p);
        }
        for &p in products {
            if !self.viewed.contains(&p) || rng.chance(0.3) {
                self.view(rng, p);
            }
            self.cart(rng, p);
        }
        if rng.chance(0.12)
            && let Some(&extra) = self.viewed.iter().find(|p| !products.contains(p))
        {
            self.cart(rng, extra);
            let g = gap(rng, 40.0, 0.8);
            self.push(g, EV_REMOVE_FROM_CART, PAGE_CART, extra);
        }
        let g = gap(rng, 30.0, 0.7);
        self.push(g, EV_CHECKOUT, PAGE_CHECKOUT, 0);
        let g = gap(rng, 100.0, 0.6);
        self.push(g, EV_PURCHASE, PAGE_CONFIRMATION, order);
    }

    /// A session that does not buy, with device-dependent drop-off.
    fn browse(&mut self, rng: &mut Rng, device: u8) {
        self.reset();
        let dev = usize::from(device);
        let p = self.catalog.popular_product(rng);
        let mut last_cat = self.landing(rng, 0.45, 0.30, p);
        if rng.chance(BOUNCE[dev]) {
            return;
        }
        for _ in 0..=geometric(rng, STEPS[dev]) {
            let r = rng.f64();
            if r < 0.12 {
                let target = self.catalog.popular_product(rng);
                let g = gap(rng, 12.0, 0.7);
                self.push(g, EV_PAGE_VIEW, PAGE_SEARCH, target);
                if rng.chance(0.7) {
                    let q = self.catalog.product_in(rng, self.cat_of(target));
                    self.view(rng, q);
                    last_cat = Some(self.cat_of(q));
                }
            } else if r < 0.30 {
                let c = match last_cat {
                    Some(c) if rng.chance(0.5) => c,
                    _ => rng.weighted(self.category_weights) as u8,
                };
                let g = gap(rng, 15.0, 0.7);
                self.push(g, EV_PAGE_VIEW, PAGE_CATEGORY, u32::from(c));
                last_cat = Some(c);
                if rng.chance(0.75) {
                    let q = self.catalog.product_in(rng, c);
                    self.view(rng, q);
                }
            } else {
                let q = match last_cat {
                    Some(c) if rng.chance(0.5) => self.catalog.product_in(rng, c),
                    _ => self.catalog.popular_product(rng),
                };
                self.view(rng, q);
                last_cat = Some(self.cat_of(q));
            }
        }
        if self.viewed.is_empty() || !rng.chance(CART[dev]) {
            return;
        }
        let p = *self.viewed.last().expect("viewed");
        self.cart(rng, p);
        if self.viewed.len() > 1 && rng.chance(0.25) {
            let q = *rng.pick(&self.viewed);
            if q != p {
                self.cart(rng, q);
            }
        }
        if rng.chance(0.2) {
            let q = *rng.pick(&self.carted);
            let g = gap(rng, 40.0, 0.8);
            self.push(g, EV_REMOVE_FROM_CART, PAGE_CART, q);
            self.carted.retain(|&x| x != q);
        }
        if !self.carted.is_empty() && rng.chance(CHECKOUT[dev]) {
            let g = gap(rng, 30.0, 0.7);
            self.push(g, EV_CHECKOUT, PAGE_CHECKOUT, 0);
        }
    }

    fn duration(&self) -> u32 {
        self.steps.iter().map(|s| s.gap).sum()
    }
}

/// Lines-per-order law before complements: mostly 1–2.
const ORDER_SIZES: [f64; 5] = [0.64, 0.21, 0.09, 0.04, 0.02];
/// Chance each product in an order brings one of its complements.
pub(crate) const COMPLEMENT_P: f64 = 0.2;
/// Chance a further pick stays in the first product's category.
const SAME_CATEGORY_P: f64 = 0.4;

/// Chance an order's first product comes from its customer's favourite
/// category (the taste a recommender can learn).
pub(crate) const FAVOURITE_P: f64 = 0.8;

/// A customer's favourite category: fixed per seed and customer, derived
/// without drawing from any random stream.
pub(crate) fn favourite(seed: u64, customer: u32, categories: usize) -> u8 {
    let mut s = seed ^ (u64::from(customer) * 2 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (crate::rng::splitmix64(&mut s) % categories.max(1) as u64) as u8
}

/// Picks the products of one order (at most `max`, at least 1); the first
/// is often from the customer's `favourite` category.
fn order_products(
    rng: &mut Rng,
    catalog: &Catalog,
    max: usize,
    favourite: Option<u8>,
    out: &mut Vec<u32>,
) {
    out.clear();
    let target = (1 + rng.weighted(&ORDER_SIZES)).min(max);
    out.push(match favourite {
        Some(cat) if rng.chance(FAVOURITE_P) => catalog.product_in(rng, cat),
        _ => catalog.popular_product(rng),
    });
    let first_cat = catalog.products[out[0] as usize].cat;
    let mut i = 0;
    while i < out.len() {
        let p = &catalog.products[out[i] as usize];
        if out.len() < max && !p.complements.is_empty() && rng.chance(COMPLEMENT_P) {
            let c = *rng.pick(&p.complements);
            if !out.contains(&c) {
                out.push(c);
            }
        }
        i += 1;
        if i == out.len() && out.len() < target {
            for _attempt in 0..4 {
                let q = if rng.chance(SAME_CATEGORY_P) {
                    catalog.product_in(rng, first_cat)
                } else {
                    catalog.popular_product(rng)
                };
                if !out.contains(&q) {
                    out.push(q);
                    break;
                }
            }
        }
    }
}

fn quantity(rng: &mut Rng, multi_unit: bool) -> u8 {
    let r = rng.below(100);
    if multi_unit {
        match r {
            0..=64 => 1,
            65..=86 => 2,
            87..=94 => 3,
            _ => 4,
        }
    } else {
        match r {
            0..=81 => 1,
            82..=93 => 2,
            94..=97 => 3,
            _ => 4,
        }
    }
}

fn line(rng: &mut Rng, catalog: &Catalog, d: u32, customer: u32, product: u32) -> Line {
    let p = &catalog.products[product as usize];
    let multi = CATEGORIES[p.cat as usize].multi_unit;
    let qty = quantity(rng, multi);
    let status = if rng.chance(p.return_p) {
        if rng.below(3) < 2 { RETURNED } else { REFUNDED }
    } else {
        COMPLETED
    };
    Line {
        customer,
        product,
        cents: p.price_on(d),
        qty,
        status,
    }
}

/// Mean sizes measured on a sample, to size the clickstream plan.
pub(crate) struct Calibration {
    pub lines_per_order: f64,
    pub purchase_events: f64,
    pub browse_events: f64,
}

/// Simulates a sample of orders and sessions (own stream, nothing written).
pub(crate) fn calibrate(plan: &Plan<'_>) -> Calibration {
    let mut rng = Rng::new(plan.seed, Stream::Calibrate, 0);
    let mut b = Builder::new(plan.catalog, &plan.category_weights);
    let mut products = Vec::new();
    let n = 3_000;
    let (mut lines, mut pe, mut be) = (0usize, 0usize, 0usize);
    for _ in 0..n {
        order_products(&mut rng, plan.catalog, 5, None, &mut products);
        lines += products.len();
        b.purchase(&mut rng, &products, 0);
        pe += b.steps.len();
        let device = rng.weighted(&BROWSE_DEVICES) as u8;
        b.browse(&mut rng, device);
        be += b.steps.len();
    }
    Calibration {
        lines_per_order: lines as f64 / n as f64,
        purchase_events: pe as f64 / n as f64,
        browse_events: be as f64 / n as f64,
    }
}

struct OrderTmp {
    customer: u32,
    first: u32,
    n: u32,
    t_ms: u32,
}

fn place(start: u32, duration: u32) -> u32 {
    // sessions never cross midnight
    start.min(DAY_MS - 1 - duration.min(DAY_MS - 1))
}

/// Simulates day offset `d`.
pub(crate) fn simulate(plan: &Plan<'_>, d: u32) -> DayOut {
    let catalog = plan.catalog;
    let customers = plan.customers;
    let mut rng = Rng::new(plan.seed, Stream::Day, u64::from(d));
    let mut srng = Rng::new(plan.seed, Stream::Sessions, u64::from(d));
    let di = d as i32;
    let hours = plan.hours(d);
    let time_of_day = |rng: &mut Rng| -> u32 {
        let h = hours.sample(rng) as u32;
        h * 3_600_000 + rng.below(3_600_000) as u32
    };

    // -- orders
    let target = plan.lines[d as usize] as usize;
    let mut raw_lines: Vec<Line> = Vec::with_capacity(target);
    let mut orders: Vec<OrderTmp> = Vec::new();
    let mut products = Vec::with_capacity(8);
    if target > 0 {
        let buyers = Cdf::new(customers.iter().map(|c| c.order_weight(di)));
        while raw_lines.len() < target {
            let c = buyers.sample(&mut rng) as u32;
            order_products(
                &mut rng,
                catalog,
                (target - raw_lines.len()).min(5),
                Some(favourite(plan.seed, c, catalog.by_cat.len())),
                &mut products,
            );
            let first = raw_lines.len() as u32;
            for &p in &products {
                raw_lines.push(line(&mut rng, catalog, d, c, p));
            }
            let t_ms = time_of_day(&mut rng);
            orders.push(OrderTmp {
                customer: c,
                first,
                n: products.len() as u32,
                t_ms,
            });
        }
    }

    // -- purchase sessions for covered orders
    let budget = plan.events[d as usize] as usize;
    let mut sessions: Vec<Session> = Vec::new();
    let mut events: Vec<Event> = Vec::with_capacity(budget);
    let mut b = Builder::new(catalog, &plan.category_weights);
    let mut covered = 0u64;
    for (oi, o) in orders.iter_mut().enumerate() {
        if plan.coverage < 1.0 && !srng.chance(plan.coverage) {
            continue;
        }
        products.clear();
        products.extend(
            raw_lines[o.first as usize..(o.first + o.n) as usize]
                .iter()
                .map(|l| l.product),
        );
        b.purchase(&mut srng, &products, oi as u32);
        if events.len() + b.steps.len() > budget {
            continue;
        }
        let cust = &customers[o.customer as usize];
        let device = if srng.chance(0.5) {
            cust.device
        } else {
            srng.weighted(&BUY_DEVICES) as u8
        };
        let channel = srng.weighted(&BUY_CHANNELS) as u8;
        let campaign = campaign(&mut srng, channel);
        let dur = b.duration();
        let start = place(o.t_ms.saturating_sub(dur), dur);
        let end = emit(
            &b,
            &mut sessions,
            &mut events,
            Session {
                customer: o.customer,
                device,
                channel,
                campaign,
                start,
            },
            b.steps.len(),
        );
        o.t_ms = end;
        covered += 1;
    }

    // -- browsing sessions fill the rest of the budget
    if events.len() < budget {
        let visitors = Cdf::new(customers.iter().map(|c| c.visit_weight(di)));
        while events.len() < budget {
            let anonymous = visitors.is_empty() || srng.chance(ANONYMOUS_SHARE);
            let (customer, device) = if anonymous {
                (NONE, srng.weighted(&BROWSE_DEVICES) as u8)
            } else {
                let c = visitors.sample(&mut srng);
                let dev = if srng.chance(0.3) {
                    customers[c].device
                } else {
                    srng.weighted(&BROWSE_DEVICES) as u8
                };
                (c as u32, dev)
            };
            b.browse(&mut srng, device);
            let take = b.steps.len().min(budget - events.len());
            let channel = srng.weighted(&BROWSE_CHANNELS) as u8;
            let campaign = campaign(&mut srng, channel);
            let dur: u32 = b.steps[..take].iter().map(|s| s.gap).sum();
            let start = place(time_of_day(&mut srng), dur);
            emit(
                &b,
                &mut sessions,
                &mut events,
                Session {
                    customer,
                    device,
                    channel,
                    campaign,
                    start,
                },
                take,
            );
        }
    }

    // -- sessions by start time; events by time
    let mut order: Vec<u32> = (0..sessions.len() as u32).collect();
    order.sort_unstable_by_key(|&i| (sessions[i as usize].start, i));
    let mut rank = vec![0u32; sessions.len()];
    for (r, &i) in order.iter().enumerate() {
        rank[i as usize] = r as u32;
    }
    let sessions: Vec<Session> = order.iter().map(|&i| sessions[i as usize]).collect();
    for e in &mut events {
        e.session = rank[e.session as usize];
    }
    events.sort_unstable_by_key(|e| (u64::from(e.t_ms) << 32) | u64::from(e.session));

    // -- orders by time; lines follow
    let mut by_time: Vec<u32> = (0..orders.len() as u32).collect();
    by_time.sort_unstable_by_key(|&i| (orders[i as usize].t_ms, i));
    let mut first_line = vec![0u32; orders.len()];
    let mut lines = Vec::with_capacity(raw_lines.len());
    for &oi in &by_time {
        let o = &orders[oi as usize];
        first_line[oi as usize] = lines.len() as u32;
        lines.extend_from_slice(&raw_lines[o.first as usize..(o.first + o.n) as usize]);
    }
    for e in &mut events {
        if e.page == PAGE_CONFIRMATION {
            e.arg = first_line[e.arg as usize];
        }
    }

    // -- review candidates
    let mut candidates = Vec::new();
    if plan.review_p > 0.0 {
        for (i, l) in lines.iter().enumerate() {
            if !rng.chance(plan.review_p) {
                continue;
            }
            let delay = rng.exponential(6.0).floor().min(60.0) as u32;
            let review_day = d + delay;
            let returned = l.status != COMPLETED;
            // unhappy buyers write reviews more often
            let weight = if returned { 2.0 } else { 1.0 };
            let key = rng.exponential(1.0) / weight;
            if review_day < plan.days {
                candidates.push(Candidate {
                    review_day,
                    line: i as u64,
                    customer: l.customer,
                    product: l.product,
                    returned,
                    key,
                });
            }
        }
    }

    DayOut {
        lines,
        sessions,
        events,
        candidates,
        orders: orders.len() as u64,
        covered,
    }
}

/// Appends the first `take` steps of `b` as a session starting at `s.start`;
/// returns the time of its last event.
fn emit(
    b: &Builder<'_>,
    sessions: &mut Vec<Session>,
    events: &mut Vec<Event>,
    s: Session,
    take: usize,
) -> u32 {
    let sid = sessions.len() as u32;
    let mut t = s.start;
    for step in &b.steps[..take] {
        t += step.gap;
        events.push(Event {
            t_ms: t,
            session: sid,
            arg: step.arg,
            kind: step.kind,
            page: step.page,
        });
    }
    sessions.push(s);
    t
}

fn campaign(rng: &mut Rng, channel: u8) -> u8 {
    let list = CHANNELS[channel as usize].2;
    if list.is_empty() {
        0
    } else {
        rng.below(list.len() as u64) as u8
    }
}
