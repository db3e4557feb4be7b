//! Per-day derivations of the events: sessions (`processed.sessions`) and
//! product activity (`processed.product_activity`).
//!
//! A session is the client's session id when the event has one; otherwise a
//! device's (anonymous id's) run of events with no gap longer than the
//! timeout. Sessions are cut at midnight UTC (each day is processed alone).

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanBuilder, Date32Array, Date32Builder, Int32Builder, Int64Builder,
    RecordBatch, StringArray, StringBuilder, TimestampMicrosecondArray,
    TimestampMicrosecondBuilder,
};
use shoplake_core::schema;

use crate::error::{JobError, Result};

/// The columns sessionisation reads from `processed.events`.
pub const EVENT_COLUMNS: &str = "session_id, anonymous_id, user_id, event_id, event_ts, event_type, \
     device_type, browser, page_url, page_path, referrer, utm_source, utm_medium, utm_campaign, country, \
     product_id, date";

/// Builds `processed.product_activity` rows (per day and product) from the
/// events of whole days.
pub fn product_activity(events: &[RecordBatch]) -> Result<Option<RecordBatch>> {
    let mut counts = ProductCounts::default();
    counts.add(events)?;
    counts.finish()
}

/// Product activity counted over several sets of events (the buckets of a
/// day sessionised a piece at a time), per day and product.
#[derive(Debug, Default)]
pub struct ProductCounts {
    counts: HashMap<(i32, String), [i64; 4]>,
}

impl ProductCounts {
    /// Counts `events` in.
    pub fn add(&mut self, events: &[RecordBatch]) -> Result<()> {
        let events: Vec<RecordBatch> = events.iter().map(plain_strings).collect::<Result<_>>()?;
        let mut counts: HashMap<(i32, &str), [i64; 4]> = HashMap::new();
        for b in &events {
            let product: &StringArray = col(b, "product_id")?;
            let event_type: &StringArray = col(b, "event_type")?;
            let date: &Date32Array = col(b, "date")?;
            for r in 0..b.num_rows() {
                let Some(p) = opt(product, r) else { continue };
                let c = counts.entry((date.value(r), p)).or_default();
                match event_type.value(r) {
                    "product_view" => c[0] += 1,
                    "add_to_cart" => c[1] += 1,
                    "remove_from_cart" => c[2] += 1,
                    _ => {}
                }
                c[3] += 1;
            }
        }
        for ((d, p), c) in counts {
            let total = self.counts.entry((d, p.to_string())).or_default();
            for (t, v) in total.iter_mut().zip(c) {
                *t += v;
            }
        }
        Ok(())
    }

    /// The `processed.product_activity` rows; `None` if no event named a
    /// product.
    pub fn finish(self) -> Result<Option<RecordBatch>> {
        if self.counts.is_empty() {
            return Ok(None);
        }
        let mut rows: Vec<_> = self.counts.into_iter().collect();
        rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut product = StringBuilder::new();
        let mut cols: [Int64Builder; 4] = Default::default();
        let mut date = Date32Builder::new();
        for ((d, p), c) in &rows {
            product.append_value(p);
            for (b, v) in cols.iter_mut().zip(c) {
                b.append_value(*v);
            }
            date.append_value(*d);
        }
        let [mut views, mut carts, mut removals, mut all] = cols;
        let arrays: Vec<ArrayRef> = vec![
            Arc::new(product.finish()),
            Arc::new(views.finish()),
            Arc::new(carts.finish()),
            Arc::new(removals.finish()),
            Arc::new(all.finish()),
            Arc::new(date.finish()),
        ];
        Ok(Some(RecordBatch::try_new(
            schema::PRODUCT_ACTIVITY.schema(),
            arrays,
        )?))
    }
}

struct Cols<'a> {
    session_id: &'a StringArray,
    anonymous_id: &'a StringArray,
    user_id: &'a StringArray,
    event_id: &'a StringArray,
    ts: &'a TimestampMicrosecondArray,
    event_type: &'a StringArray,
    device: &'a StringArray,
    browser: &'a StringArray,
    page_url: &'a StringArray,
    page: &'a StringArray,
    referrer: &'a StringArray,
    utm_source: &'a StringArray,
    utm_medium: &'a StringArray,
    utm_campaign: &'a StringArray,
    country: &'a StringArray,
    date: &'a Date32Array,
}

fn col<'a, T: 'static>(b: &'a RecordBatch, name: &str) -> Result<&'a T> {
    b.column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| {
            JobError::Internal(format!(
                "sessions: events batch lacks {name} of the right type"
            ))
        })
}

impl<'a> Cols<'a> {
    fn new(b: &'a RecordBatch) -> Result<Self> {
        Ok(Cols {
            session_id: col(b, "session_id")?,
            anonymous_id: col(b, "anonymous_id")?,
            user_id: col(b, "user_id")?,
            event_id: col(b, "event_id")?,
            ts: col(b, "event_ts")?,
            event_type: col(b, "event_type")?,
            device: col(b, "device_type")?,
            browser: col(b, "browser")?,
            page_url: col(b, "page_url")?,
            page: col(b, "page_path")?,
            referrer: col(b, "referrer")?,
            utm_source: col(b, "utm_source")?,
            utm_medium: col(b, "utm_medium")?,
            utm_campaign: col(b, "utm_campaign")?,
            country: col(b, "country")?,
            date: col(b, "date")?,
        })
    }
}

fn opt(a: &StringArray, i: usize) -> Option<&str> {
    if a.is_null(i) { None } else { Some(a.value(i)) }
}

fn plain_strings(b: &RecordBatch) -> Result<RecordBatch> {
    use arrow::datatypes::{DataType, Field, Schema};
    if !b
        .schema()
        .fields()
        .iter()
        .any(|f| f.data_type() == &DataType::Utf8View)
    {
        return Ok(b.clone());
    }
    let mut fields = Vec::with_capacity(b.num_columns());
    let mut cols = Vec::with_capacity(b.num_columns());
    for (f, c) in b.schema().fields().iter().zip(b.columns()) {
        if f.data_type() == &DataType::Utf8View {
            fields.push(Field::new(f.name(), DataType::Utf8, f.is_nullable()));
            cols.push(arrow::compute::cast(c, &DataType::Utf8)?);
        } else {
            fields.push(f.as_ref().clone());
            cols.push(c.clone());
        }
    }
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)?)
}

struct Ev<'a> {
    group: u32,
    date: i32,
    derived: bool,
    key: &'a str,
    ts: i64,
    eid: &'a str,
    b: u32,
    r: u32,
}

/// Funnel stage of an event type: 1 page view … 5 purchase (0: none).
pub fn funnel_stage(event_type: &str) -> i32 {
    match event_type {
        "page_view" => 1,
        "product_view" | "product_list_view" | "search" => 2,
        "add_to_cart" | "cart_view" => 3,
        "checkout_started" | "checkout_step" => 4,
        "purchase" => 5,
        _ => 0,
    }
}

/// The session an event belongs to: its client's session id, or else
/// (derived: cut by inactivity) its visitor, its user, or the event alone.
/// [`SESSION_ORDER`] sorts by the same key.
fn session_key<'a>(c: &Cols<'a>, r: usize) -> (bool, &'a str) {
    match opt(c.session_id, r) {
        Some(s) => (false, s),
        None => (
            true,
            opt(c.anonymous_id, r)
                .or_else(|| opt(c.user_id, r))
                .unwrap_or_else(|| c.event_id.value(r)),
        ),
    }
}

/// Builds `processed.sessions` rows from the events of whole days.
pub fn sessionise(events: &[RecordBatch], timeout_minutes: u32) -> Result<Option<RecordBatch>> {
    // DataFusion may hand strings over as Utf8View; the code below reads Utf8.
    let events: Vec<RecordBatch> = events.iter().map(plain_strings).collect::<Result<_>>()?;
    let events = &events[..];
    let cols: Vec<Cols<'_>> = events.iter().map(Cols::new).collect::<Result<_>>()?;
    let n: usize = events.iter().map(|b| b.num_rows()).sum();
    let mut evs: Vec<Ev<'_>> = Vec::with_capacity(n);
    // a small integer per (date, key) so the sort compares integers, not strings
    let mut groups: HashMap<(i32, bool, &str), u32> = HashMap::with_capacity(n / 3 + 16);
    for (bi, c) in cols.iter().enumerate() {
        for r in 0..c.ts.len() {
            let (derived, key) = session_key(c, r);
            let date = c.date.value(r);
            let next = groups.len() as u32;
            let group = *groups.entry((date, derived, key)).or_insert(next);
            evs.push(Ev {
                group,
                date,
                derived,
                key,
                ts: c.ts.value(r),
                eid: c.event_id.value(r),
                b: bi as u32,
                r: r as u32,
            });
        }
    }
    if evs.is_empty() {
        return Ok(None);
    }
    evs.sort_unstable_by(|a, b| (a.group, a.ts, a.eid).cmp(&(b.group, b.ts, b.eid)));
    let mut out = Sessioniser::new(timeout_minutes);
    for e in &evs {
        out.event(
            &cols[e.b as usize],
            e.r as usize,
            e.date,
            e.derived,
            e.key,
            e.ts,
        );
    }
    out.finish()
}

/// Builds sessions from events that arrive in session order (by date,
/// whether the session is derived, session key, time and event id: what
/// [`SESSION_ORDER`] sorts by), a batch at a time: memory holds one open
/// session and the finished ones not yet taken, however long a session or
/// a day is.
pub struct Sessioniser {
    timeout: i64,
    open: Option<Open>,
    out: Builders,
    ready: usize,
}

/// The `ORDER BY` that hands `processed.events` to a [`Sessioniser`].
pub const SESSION_ORDER: &str = "date, session_id IS NULL, \
     coalesce(session_id, anonymous_id, user_id, event_id), event_ts, event_id";

impl Sessioniser {
    /// A sessioniser cutting sessions without a client id at
    /// `timeout_minutes` of inactivity.
    pub fn new(timeout_minutes: u32) -> Sessioniser {
        Sessioniser {
            timeout: i64::from(timeout_minutes) * 60 * 1_000_000,
            open: None,
            out: Builders::default(),
            ready: 0,
        }
    }

    /// Takes in the next events, which must follow the ones before in
    /// [`SESSION_ORDER`] (an event out of order starts a session of its own).
    pub fn push_sorted(&mut self, batch: &RecordBatch) -> Result<()> {
        let batch = plain_strings(batch)?;
        let c = Cols::new(&batch)?;
        for r in 0..c.ts.len() {
            let (derived, key) = session_key(&c, r);
            self.event(&c, r, c.date.value(r), derived, key, c.ts.value(r));
        }
        Ok(())
    }

    /// Sessions finished so far and not yet taken.
    pub fn ready(&self) -> usize {
        self.ready
    }

    /// The sessions finished so far (None if none): the one still open may
    /// go on in the next events.
    pub fn take(&mut self) -> Result<Option<RecordBatch>> {
        if self.ready == 0 {
            return Ok(None);
        }
        self.ready = 0;
        Ok(Some(self.out.finish()?))
    }

    /// The sessions not taken yet, the open one included.
    pub fn finish(mut self) -> Result<Option<RecordBatch>> {
        if let Some(o) = self.open.take() {
            self.out.push(&o);
            self.ready += 1;
        }
        self.take()
    }

    fn event(&mut self, c: &Cols<'_>, r: usize, date: i32, derived: bool, key: &str, ts: i64) {
        if let Some(o) = &mut self.open
            && o.date == date
            && o.derived == derived
            && o.key == key
            && !(derived && ts - o.last_ts > self.timeout)
        {
            o.add(c, r, ts);
            return;
        }
        let next = Open::start(c, r, date, derived, key, ts);
        if let Some(o) = self.open.replace(next) {
            self.out.push(&o);
            self.ready += 1;
        }
    }
}

/// A session whose last event may not have come yet.
struct Open {
    date: i32,
    derived: bool,
    key: String,
    first_ts: i64,
    last_ts: i64,
    events: i64,
    /// page views, product views, add-to-carts, checkouts, purchases
    counts: [i64; 5],
    stage: i32,
    anonymous_id: Option<String>,
    user_id: Option<String>,
    device: String,
    browser: Option<String>,
    landing: Option<String>,
    exit: Option<String>,
    utm_source: Option<String>,
    utm_medium: Option<String>,
    utm_campaign: Option<String>,
    page_url: Option<String>,
    referrer: Option<String>,
    country: Option<String>,
}

fn owned(a: &StringArray, r: usize) -> Option<String> {
    opt(a, r).map(str::to_string)
}

impl Open {
    fn start(c: &Cols<'_>, r: usize, date: i32, derived: bool, key: &str, ts: i64) -> Open {
        let mut o = Open {
            date,
            derived,
            key: key.to_string(),
            first_ts: ts,
            last_ts: ts,
            events: 0,
            counts: [0; 5],
            stage: 0,
            anonymous_id: owned(c.anonymous_id, r),
            user_id: None,
            device: c.device.value(r).to_string(),
            browser: owned(c.browser, r),
            landing: owned(c.page, r),
            exit: None,
            utm_source: owned(c.utm_source, r),
            utm_medium: owned(c.utm_medium, r),
            utm_campaign: owned(c.utm_campaign, r),
            page_url: owned(c.page_url, r),
            referrer: owned(c.referrer, r),
            country: owned(c.country, r),
        };
        o.add(c, r, ts);
        o
    }

    fn add(&mut self, c: &Cols<'_>, r: usize, ts: i64) {
        let t = c.event_type.value(r);
        let slot = match t {
            "page_view" => Some(0),
            "product_view" => Some(1),
            "add_to_cart" => Some(2),
            "checkout_started" | "checkout_step" => Some(3),
            "purchase" => Some(4),
            _ => None,
        };
        if let Some(i) = slot {
            self.counts[i] += 1;
        }
        self.stage = self.stage.max(funnel_stage(t));
        if self.user_id.is_none() {
            self.user_id = owned(c.user_id, r);
        }
        // the exit page is the last event's: keep its buffer
        match opt(c.page, r) {
            Some(p) => {
                let s = self.exit.get_or_insert_with(String::new);
                s.clear();
                s.push_str(p);
            }
            None => self.exit = None,
        }
        self.last_ts = ts;
        self.events += 1;
    }
}

/// The host of an absolute URL, lowercase and without `www.` or a port
/// (`https://www.Google.com/search?q=x` → `google.com`); None for a path
/// or anything else without a host.
pub fn url_host(url: &str) -> Option<String> {
    let (_, rest) = url.trim().split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit('@').next()?;
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => host.split(':').next()?,
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let host = host
        .strip_prefix("www.")
        .map(str::to_string)
        .unwrap_or(host);
    (!host.is_empty()).then_some(host)
}

#[derive(Default)]
struct Builders {
    session_id: StringBuilder,
    anonymous_id: StringBuilder,
    user_id: StringBuilder,
    start: TimestampMicrosecondBuilder,
    end: TimestampMicrosecondBuilder,
    duration: Int64Builder,
    events: Int64Builder,
    page_views: Int64Builder,
    product_views: Int64Builder,
    carts: Int64Builder,
    checkouts: Int64Builder,
    purchases: Int64Builder,
    stage: Int32Builder,
    bounce: BooleanBuilder,
    converted: BooleanBuilder,
    device: StringBuilder,
    browser: StringBuilder,
    landing: StringBuilder,
    exit: StringBuilder,
    source: StringBuilder,
    medium: StringBuilder,
    campaign: StringBuilder,
    referrer: StringBuilder,
    country: StringBuilder,
    date: Date32Builder,
}

impl Builders {
    fn push(&mut self, s: &Open) {
        let [pv, prv, ac, co, pu] = s.counts;
        if s.derived {
            self.session_id
                .append_value(format!("{}-{}", s.key, s.first_ts / 1_000_000));
        } else {
            self.session_id.append_value(&s.key);
        }
        self.anonymous_id.append_option(s.anonymous_id.as_deref());
        self.user_id.append_option(s.user_id.as_deref());
        self.start.append_value(s.first_ts);
        self.end.append_value(s.last_ts);
        self.duration
            .append_value((s.last_ts - s.first_ts) / 1_000_000);
        self.events.append_value(s.events);
        self.page_views.append_value(pv);
        self.product_views.append_value(prv);
        self.carts.append_value(ac);
        self.checkouts.append_value(co);
        self.purchases.append_value(pu);
        self.stage.append_value(s.stage);
        self.bounce.append_value(s.events == 1);
        self.converted.append_value(pu > 0);
        self.device.append_value(&s.device);
        self.browser.append_option(s.browser.as_deref());
        self.landing.append_option(s.landing.as_deref());
        self.exit.append_option(s.exit.as_deref());
        let src = s.utm_source.as_deref();
        self.source.append_value(src.unwrap_or("direct"));
        self.medium
            .append_value(match (src, s.utm_medium.as_deref()) {
                (_, Some(m)) => m,
                (Some(_), None) => "unknown",
                (None, None) => "none",
            });
        self.campaign.append_option(s.utm_campaign.as_deref());
        let own = s.page_url.as_deref().and_then(url_host);
        self.referrer.append_option(
            s.referrer
                .as_deref()
                .and_then(url_host)
                .filter(|h| Some(h) != own.as_ref()),
        );
        self.country.append_option(s.country.as_deref());
        self.date.append_value(s.date);
    }

    fn finish(&mut self) -> Result<RecordBatch> {
        let cols: Vec<ArrayRef> = vec![
            Arc::new(self.session_id.finish()),
            Arc::new(self.anonymous_id.finish()),
            Arc::new(self.user_id.finish()),
            Arc::new(self.start.finish().with_timezone("UTC")),
            Arc::new(self.end.finish().with_timezone("UTC")),
            Arc::new(self.duration.finish()),
            Arc::new(self.events.finish()),
            Arc::new(self.page_views.finish()),
            Arc::new(self.product_views.finish()),
            Arc::new(self.carts.finish()),
            Arc::new(self.checkouts.finish()),
            Arc::new(self.purchases.finish()),
            Arc::new(self.stage.finish()),
            Arc::new(self.bounce.finish()),
            Arc::new(self.converted.finish()),
            Arc::new(self.device.finish()),
            Arc::new(self.browser.finish()),
            Arc::new(self.landing.finish()),
            Arc::new(self.exit.finish()),
            Arc::new(self.source.finish()),
            Arc::new(self.medium.finish()),
            Arc::new(self.campaign.finish()),
            Arc::new(self.referrer.finish()),
            Arc::new(self.country.finish()),
            Arc::new(self.date.finish()),
        ];
        Ok(RecordBatch::try_new(schema::SESSIONS.schema(), cols)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoplake_core::event::{Event, EventBatchBuilder};

    fn ev(
        id: &str,
        sid: Option<&str>,
        anon: &str,
        ts_s: i64,
        t: &'static str,
        page: &str,
    ) -> Event<'static> {
        Event {
            event_id: id.to_string().into(),
            event_type: t,
            event_name: t.into(),
            event_ts: 1_736_899_200_000_000 + ts_s * 1_000_000, // 2025-01-15T00:00:00Z
            session_id: sid.map(|s| s.to_string().into()),
            anonymous_id: Some(anon.to_string().into()),
            page_path: Some(page.to_string().into()),
            device_type: "mobile",
            source: "t".into(),
            protocol: "file",
            ..Default::default()
        }
    }

    #[test]
    fn client_sessions_and_inactivity_sessions() {
        let mut b = EventBatchBuilder::new(8);
        for e in [
            ev("1", Some("S1"), "A", 100, "page_view", "/"),
            ev("2", Some("S1"), "A", 160, "product_view", "/product/P1"),
            ev(
                "3",
                Some("S1"),
                "A",
                220,
                "purchase",
                "/checkout/confirmation",
            ),
            ev("4", None, "B", 1000, "page_view", "/"),
            ev("5", None, "B", 1000 + 29 * 60, "add_to_cart", "/cart"),
            ev("6", None, "B", 1000 + 29 * 60 + 31 * 60, "page_view", "/x"),
        ] {
            b.push(&e);
        }
        let batch = b.finish().unwrap();
        let s = sessionise(&[batch], 30).unwrap().unwrap();
        assert_eq!(s.num_rows(), 3);
        let ids = s
            .column_by_name("session_id")
            .unwrap()
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        let stage = s
            .column_by_name("funnel_stage")
            .unwrap()
            .as_any()
            .downcast_ref::<arrow::array::Int32Array>()
            .unwrap();
        let events = s
            .column_by_name("events")
            .unwrap()
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .unwrap();
        assert_eq!(ids.value(0), "S1");
        assert_eq!((stage.value(0), events.value(0)), (5, 3));
        assert_eq!(ids.value(1), "B-1736900200");
        assert_eq!((stage.value(1), events.value(1)), (3, 2));
        assert_eq!(
            events.value(2),
            1,
            "a gap over 30 minutes starts a new session"
        );
        let exit = s
            .column_by_name("exit_page")
            .unwrap()
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(exit.value(0), "/checkout/confirmation");
        let src = s
            .column_by_name("traffic_source")
            .unwrap()
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(src.value(0), "direct");
    }

    #[test]
    fn referrer_hosts() {
        for (url, host) in [
            ("https://www.Google.com/search?q=x", Some("google.com")),
            ("http://news.example:8080/a", Some("news.example")),
            ("https://user:pw@shop.example.", Some("shop.example")),
            ("https://[::1]:443/x", Some("::1")),
            (
                "android-app://com.google.android.gm/",
                Some("com.google.android.gm"),
            ),
            ("/relative/path", None),
            ("https://", None),
            ("", None),
        ] {
            assert_eq!(url_host(url).as_deref(), host, "{url}");
        }
    }

    #[test]
    fn a_session_keeps_its_first_browser_and_outside_referrer() {
        let mut b = EventBatchBuilder::new(8);
        let mut first = ev("1", Some("S1"), "A", 100, "page_view", "/");
        first.page_url = Some("https://shop.example/?utm_source=x".into());
        first.referrer = Some("https://www.google.com/search?q=shoes".into());
        first.browser = Some("Firefox".into());
        let mut second = ev("2", Some("S1"), "A", 160, "product_view", "/p/1");
        second.referrer = Some("https://other.example/".into());
        second.browser = Some("Chrome".into());
        // a session whose referrer is the shop itself has none
        let mut own = ev("3", Some("S2"), "B", 200, "page_view", "/x");
        own.page_url = Some("https://www.shop.example/x".into());
        own.referrer = Some("https://shop.example/".into());
        for e in [first, second, own] {
            b.push(&e);
        }
        let s = sessionise(&[b.finish().unwrap()], 30).unwrap().unwrap();
        let text = |c: &str| {
            let a = s
                .column_by_name(c)
                .unwrap()
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap();
            (0..a.len())
                .map(|i| opt(a, i).map(str::to_string))
                .collect::<Vec<_>>()
        };
        assert_eq!(text("browser"), [Some("Firefox".to_string()), None]);
        assert_eq!(
            text("referrer_host"),
            [Some("google.com".to_string()), None]
        );
    }
}
