//! # shoplake-collect
//!
//! One decoder per wire format, each turning a request into canonical
//! [`Event`]s, then one shared step that validates and enriches them:
//!
//! ```text
//!  request ──► decompress ──► decoder (segment | snowplow | ga4 | posthog | aws)
//!                                 │  per item: raw text, mapped fields, payload UA/IP/times
//!                                 ▼
//!                         validate ──► Rejected { reason, raw }   (rest of the request goes on)
//!                                 │
//!                                 ▼
//!                         enrich: event id, clock skew, URL → path/UTM/search/product,
//!                                 user agent → browser/OS/device/bot, IP → country, anonymised
//!                                 ▼
//!                         Collected { event, raw }  (raw has the full IP scrubbed)
//! ```
//!
//! The server authenticates the [`Credential`] a decoder finds, fills each
//! event's `source` and writes the events to its log; nothing here does I/O
//! except opening the optional GeoIP database once.
//!
//! ## Rules
//!
//! * **Identity.** Every event needs an anonymous id or a user id (Segment
//!   `anonymousId`/`userId`, Snowplow `duid`/`nuid`/`uid`/client session,
//!   GA4 `client_id`/`app_instance_id`/`user_id`, PostHog `distinct_id`, AWS
//!   `unique_id`/`device_id`/`_user_id`); otherwise it is rejected.
//! * **Event id.** The client's id (`messageId`, `eid`, `uuid`, `event_id`, GA4
//!   `params.event_id`) when sent, else one derived from the item's bytes, its
//!   position and the protocol, so a retried request gets the same ids. At
//!   most 256 bytes.
//! * **Time.** `event_ts` is the client's time corrected for its clock:
//!   `client time + (received_at − sent time)` when the client says when it
//!   sent (Segment `sentAt`, Snowplow `stm`, PostHog `sent_at`/`offset`, AWS
//!   `upload_timestamp`); Snowplow's `ttm` (true timestamp) is taken as is. No
//!   client time → `received_at`. Never more than
//!   [`CollectorOptions::max_clock_skew`] ahead of `received_at`.
//! * **User agent.** The payload's user agent (Segment `context.userAgent`,
//!   Snowplow `ua`, PostHog `$raw_user_agent`/`$user_agent`, GA4 `user_agent`)
//!   wins over the request header. Crawlers, monitors and headless/automated
//!   browsers are bots. HTTP libraries and tools (curl, python-requests,
//!   Go-http-client, Java, okhttp, …) are bots when they are the payload's
//!   user agent or the header of a *browser-type* request (Snowplow `GET /i`,
//!   Segment pixel). A request without any user agent is a bot only when it
//!   is browser-type. On the server-to-server JSON APIs (Segment, Snowplow
//!   POST, GA4, PostHog, AWS Clickstream) a missing user agent, or a header
//!   naming an HTTP library (a server or mobile SDK's transport), means
//!   "unknown device, not a bot"; the payload's device hints (GA4 `device`,
//!   PostHog `$device_type`/`$browser`/`$os`, AWS `platform`/`model`, Segment
//!   `context.device.type`/`context.os`, Snowplow `p`) fill in what they can.
//! * **IP.** The payload's IP (Segment `context.ip`, Snowplow `ip`, PostHog
//!   `$ip`, GA4 `ip_override`) wins over the connection's. The country is
//!   looked up with the full address, then only the anonymised address
//!   (IPv4 /24, IPv6 /48) is kept, and every whole occurrence of the full
//!   address in the raw payload is replaced with the anonymised one.
//! * **Money** is read from the JSON text, never through a float, and
//!   rounded to the cent; not a number, or beyond 10^12, is rejected.
//!   `revenue` is set for purchase and refund events only (`revenue`, else
//!   `total`, else `value`); on other events those amounts stay in
//!   `properties`. Quantities must be non-negative integers.
//! * **Properties.** Whatever no column takes is kept, as JSON, in
//!   `properties`; line items keep only their mapped fields (the raw payload
//!   keeps everything).
//! * **Credentials.** Segment: the HTTP Basic user, else the body's
//!   `writeKey`; PostHog: `api_key`/`token`, else the first event's
//!   `properties.token`; GA4: `api_secret`; Snowplow: the first event's
//!   `aid`; AWS: `appId`, else the first event's `app_id`. An item carrying a
//!   *different* secret than its request is rejected (app ids are labels,
//!   not checked per item).
//! * **Envelopes and raw payloads.** Batches are split structurally and
//!   each item is validated as it is parsed, so one malformed item is
//!   rejected alone; a broken envelope fails the whole request. An item's
//!   `raw` is its own text as sent (a Segment batch's shared `context` is
//!   merged into the event but not copied into each raw item; a GA4 event's
//!   raw is the request with only that event in `events`).
#![deny(missing_docs)]

use std::borrow::Cow;
use std::cell::OnceCell;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use shoplake_core::event::{Event, PageParams, product_from_path, query_param, split_url};

mod aws;
mod decompress;
mod ecommerce;
mod enrich;
#[doc(hidden)]
pub mod fuzz;
mod ga4;
mod json;
mod pii;
mod posthog;
mod segment;
mod snowplow;
#[cfg(test)]
mod tests;

// the shoplake binary's allocator, so tests measure what runs
#[cfg(test)]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub use decompress::decompress;
pub use pii::{PiiRules, WITHHELD};
pub use shoplake_core::config::IpPolicy;

/// A wire format the collector speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// Segment HTTP Tracking API (also shoplake's own tracker, `native`).
    Segment,
    /// Snowplow tracker protocol (`tp2` POST, `GET /i`).
    Snowplow,
    /// Google Analytics 4 Measurement Protocol.
    Ga4,
    /// PostHog capture API.
    PostHog,
    /// AWS Clickstream Analytics HTTP API.
    AwsClickstream,
}

impl Protocol {
    /// The protocol's name as stored in the `protocol` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Segment => "segment",
            Protocol::Snowplow => "snowplow",
            Protocol::Ga4 => "ga4",
            Protocol::PostHog => "posthog",
            Protocol::AwsClickstream => "aws_clickstream",
        }
    }
}

/// One request as the server received it.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    /// Which decoder to use.
    pub protocol: Protocol,
    /// Request path, e.g. `/v1/batch`, `/com.snowplowanalytics.snowplow/tp2`, `/i`.
    pub path: &'a str,
    /// Raw query string, without `?`.
    pub query: Option<&'a str>,
    /// Request body, already decoded per `Content-Encoding` (see [`decompress`]).
    pub body: &'a [u8],
    /// `Content-Type` header.
    pub content_type: Option<&'a str>,
    /// HTTP Basic user (Segment sends the write key there).
    pub basic_auth_user: Option<&'a str>,
    /// `User-Agent` header.
    pub user_agent: Option<&'a str>,
    /// Client address (after the server's `X-Forwarded-For` handling).
    pub ip: Option<IpAddr>,
    /// Server clock, µs since the epoch.
    pub received_at: i64,
}

/// The credential a request carries, for the server to authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A secret key: Segment write key, PostHog API key, GA4 API secret.
    Secret(String),
    /// A public application id: Snowplow `aid`, AWS Clickstream `appId`.
    AppId(String),
}

/// An accepted event with its payload as received.
#[derive(Debug, Clone, PartialEq)]
pub struct Collected {
    /// The canonical event (`source` is left for the server to fill).
    pub event: Event<'static>,
    /// This item's payload as received, JSON text, with the full IP scrubbed
    /// (Snowplow query or form parameters: a JSON object of them).
    pub raw: String,
}

/// A rejected item: why, and its payload as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// A sentence a person can act on.
    pub reason: String,
    /// The item's payload as received (full IP scrubbed).
    pub raw: String,
    /// The item's 0-based position in the request.
    pub index: usize,
}

/// What one request decoded to.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Decoded {
    /// The credential found in the request, if any.
    pub credential: Option<Credential>,
    /// Accepted events, in request order.
    pub events: Vec<Collected>,
    /// Rejected items, in request order.
    pub rejected: Vec<Rejected>,
}

/// A whole-request failure (the server answers 400, or 413 for
/// [`DecodeError::TooLarge`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The body is not UTF-8 text.
    #[error("body is not valid UTF-8")]
    NotUtf8,
    /// The body is not JSON.
    #[error("body is not valid JSON: {0}")]
    Json(String),
    /// The body is JSON of the wrong shape.
    #[error("{0}")]
    Shape(String),
    /// A base64 field does not decode.
    #[error("bad base64 in {field}: {reason}")]
    Base64 {
        /// The field.
        field: &'static str,
        /// The decoder's complaint.
        reason: String,
    },
    /// More events than the protocol allows in one request.
    #[error("too many events in one request: {got} (at most {max})")]
    TooManyEvents {
        /// Events sent.
        got: usize,
        /// The protocol's limit.
        max: usize,
    },
    /// The decompressed body exceeds the limit (answer 413).
    #[error("decompressed body exceeds {limit} bytes")]
    TooLarge {
        /// The limit, bytes.
        limit: usize,
    },
    /// The compressed body is corrupt.
    #[error("corrupt {encoding} body: {reason}")]
    Corrupt {
        /// The encoding.
        encoding: &'static str,
        /// The decoder's complaint.
        reason: String,
    },
    /// A `Content-Encoding` or compression parameter this collector does not speak.
    #[error("unsupported content encoding {0:?}")]
    UnsupportedEncoding(String),
}

impl DecodeError {
    /// Whether the server should answer 413 rather than 400.
    pub fn is_too_large(&self) -> bool {
        matches!(self, DecodeError::TooLarge { .. })
    }

    fn json(e: serde_json::Error) -> Self {
        DecodeError::Json(e.to_string())
    }

    fn split((msg, at): json::split::Error) -> Self {
        DecodeError::Json(format!("{msg} at byte {at}"))
    }
}

/// Collector settings.
#[derive(Debug, Clone)]
pub struct CollectorOptions {
    /// Items larger than this (bytes of JSON) are rejected. Default 32 KiB.
    pub max_event_bytes: usize,
    /// Limit for bodies the collector decompresses itself (AWS Clickstream
    /// `compression=gzip`, PostHog `compression=gzip-js`). Default 8 MiB.
    pub max_decompressed_bytes: usize,
    /// A MaxMind-format country or city database (`.mmdb`), optional.
    pub geo_db: Option<PathBuf>,
    /// How far ahead of the server clock an event time may be; later times
    /// are clamped. Default one day.
    pub max_clock_skew: Duration,
    /// What is kept of a client's IP address. Default: the anonymised address.
    pub ip: IpPolicy,
    /// Personal fields to hash or drop from payloads, properties and e-mail
    /// ids before anything is stored (`None`: keep them). Default `None`;
    /// `shoplake serve` applies `[privacy]`, which hashes by default.
    pub pii: Option<PiiRules>,
}

impl Default for CollectorOptions {
    fn default() -> Self {
        CollectorOptions {
            max_event_bytes: 32 * 1024,
            max_decompressed_bytes: 8 * 1024 * 1024,
            geo_db: None,
            max_clock_skew: Duration::from_secs(86_400),
            ip: IpPolicy::Anonymise,
            pii: None,
        }
    }
}

/// Why a collector could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The GeoIP database could not be opened.
    #[error("cannot open GeoIP database {path}: {reason}")]
    GeoDb {
        /// The configured path.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

/// Decodes, validates and enriches requests of every supported protocol.
/// Shared by all server tasks (`Send + Sync`).
pub struct Collector {
    opts: CollectorOptions,
    skew_us: i64,
    geo: Option<enrich::Geo>,
    ua: enrich::UaCache,
}

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collector")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl Collector {
    /// A collector; opens the GeoIP database when one is configured.
    pub fn new(opts: CollectorOptions) -> Result<Self, SetupError> {
        let geo = match &opts.geo_db {
            Some(p) => Some(enrich::Geo::open(p).map_err(|e| SetupError::GeoDb {
                path: p.clone(),
                reason: e.to_string(),
            })?),
            None => None,
        };
        let skew_us = i64::try_from(opts.max_clock_skew.as_micros()).unwrap_or(i64::MAX);
        Ok(Collector {
            opts,
            skew_us,
            geo,
            ua: enrich::UaCache::new(),
        })
    }

    /// What is kept of `ip`: its anonymised text, or nothing.
    fn anon(&self, ip: IpAddr) -> String {
        match self.opts.ip {
            IpPolicy::Anonymise => enrich::anonymise(ip).to_string(),
            IpPolicy::Drop => String::new(),
        }
    }

    /// A rejected item's payload with its personal fields hashed or dropped.
    fn redact(&self, raw: String) -> String {
        match &self.opts.pii {
            Some(rules) => rules.redact(&raw).unwrap_or(raw),
            None => raw,
        }
    }

    /// The options this collector was built with.
    pub fn options(&self) -> &CollectorOptions {
        &self.opts
    }

    /// Decodes, validates and enriches one request.
    pub fn collect(&self, input: &Input<'_>) -> Result<Decoded, DecodeError> {
        if let Some(at) = json::split::too_deep(input.body) {
            return Err(DecodeError::Shape(format!(
                "JSON nested deeper than {} levels (at byte {at})",
                json::split::MAX_DEPTH
            )));
        }
        let mut req = Req::new(self, input);
        match input.protocol {
            Protocol::Segment => segment::decode(&mut req)?,
            Protocol::Snowplow => snowplow::decode(&mut req)?,
            Protocol::Ga4 => ga4::decode(&mut req)?,
            Protocol::PostHog => posthog::decode(&mut req)?,
            Protocol::AwsClickstream => aws::decode(&mut req)?,
        }
        Ok(req.out)
    }
}

/// 2000-01-01T00:00:00Z in µs: an earlier event time is a client bug (an
/// unset clock, seconds read as milliseconds), quarantined with its reason.
const EARLIEST_EVENT_US: i64 = 946_684_800_000_000;

/// Device facts a payload states (used when no user agent says better).
#[derive(Debug, Default)]
pub(crate) struct Hints {
    pub device: Option<&'static str>,
    pub browser: Option<Cow<'static, str>>,
    pub os: Option<Cow<'static, str>>,
}

/// One decoded item, before validation and enrichment.
pub(crate) struct Draft<'a> {
    /// Mapped fields; `event_id` empty means "derive one".
    pub ev: Event<'static>,
    /// The item's payload as received.
    pub raw: Cow<'a, str>,
    /// The payload's user agent.
    pub ua: Option<Cow<'a, str>>,
    /// The payload's IP.
    pub ip: Option<Cow<'a, str>>,
    /// Client clock time of the event, µs.
    pub client_ts: Option<i64>,
    /// Client clock time of sending, µs.
    pub sent_at: Option<i64>,
    /// An already corrected event time, µs (Snowplow `ttm`, PostHog `offset`).
    pub fixed_ts: Option<i64>,
    /// Payload device facts.
    pub hints: Hints,
}

impl<'a> Draft<'a> {
    pub fn new(raw: Cow<'a, str>, protocol: &'static str) -> Self {
        Draft {
            ev: Event {
                protocol,
                device_type: "unknown",
                ..Default::default()
            },
            raw,
            ua: None,
            ip: None,
            client_ts: None,
            sent_at: None,
            fixed_ts: None,
            hints: Hints::default(),
        }
    }
}

/// The connection address, resolved once per request.
struct ConnIp {
    full: String,
    anon: String,
    country: Option<Cow<'static, str>>,
}

/// Per-request state shared by a decoder and the enrichment step.
pub(crate) struct Req<'c, 'i> {
    pub c: &'c Collector,
    pub input: &'c Input<'i>,
    /// Browser-type request: a missing user agent means a bot.
    pub browser: bool,
    header_ua: OnceCell<Option<enrich::UaInfo>>,
    conn: OnceCell<Option<ConnIp>>,
    pub out: Decoded,
}

impl<'c, 'i> Req<'c, 'i> {
    fn new(c: &'c Collector, input: &'c Input<'i>) -> Self {
        Req {
            c,
            input,
            browser: false,
            header_ua: OnceCell::new(),
            conn: OnceCell::new(),
            out: Decoded::default(),
        }
    }

    /// Sets the request's credential unless one is set already.
    pub fn credential(&mut self, c: Credential) {
        if self.out.credential.is_none() {
            self.out.credential = Some(c);
        }
    }

    /// The request's secret, if it has one.
    pub fn secret(&self) -> Option<&str> {
        match &self.out.credential {
            Some(Credential::Secret(s)) => Some(s),
            _ => None,
        }
    }

    /// Rejects an item.
    pub fn reject(&mut self, reason: impl Into<String>, raw: &str) {
        // the item was not understood, so its IP fields are unknown: scrub
        // every address-looking token
        let raw = enrich::scrub_any_ip(raw).unwrap_or_else(|| raw.to_owned());
        let raw = self.c.redact(raw);
        let index = self.out.events.len() + self.out.rejected.len();
        self.out.rejected.push(Rejected {
            reason: reason.into(),
            raw,
            index,
        });
    }

    /// Checks an item's size and that it is an object; rejects it when not.
    pub fn admit(&mut self, raw: &str) -> bool {
        if raw.len() > self.c.opts.max_event_bytes {
            let reason = format!(
                "event is {} bytes, more than the limit of {}",
                raw.len(),
                self.c.opts.max_event_bytes
            );
            // keep the quarantine small: only the start of an oversized item
            let mut end = 4096.min(raw.len());
            while !raw.is_char_boundary(end) {
                end -= 1;
            }
            self.reject(reason, &raw[..end]);
            return false;
        }
        if !raw.trim_start().starts_with('{') {
            self.reject("event is not a JSON object", raw);
            return false;
        }
        true
    }

    /// A batch item, parsed, if it is within the size limit, an object and
    /// well formed; otherwise it is rejected with the reason and `None` returned.
    pub fn parsed<T, E: std::fmt::Display>(
        &mut self,
        raw: &str,
        parsed: Option<Result<T, E>>,
    ) -> Option<T> {
        if !self.admit(raw) {
            return None;
        }
        match parsed {
            Some(Ok(v)) => Some(v),
            Some(Err(e)) => {
                self.reject(format!("invalid event: {e}"), raw);
                None
            }
            None => {
                self.reject("event is not a JSON object", raw);
                None
            }
        }
    }

    fn scrub_conn(&self, raw: &str) -> Option<String> {
        let conn = self.conn_ip()?;
        enrich::scrub(raw, &conn.full, &conn.anon)
    }

    fn conn_ip(&self) -> Option<&ConnIp> {
        self.conn
            .get_or_init(|| {
                let ip = self.input.ip?;
                Some(ConnIp {
                    full: ip.to_string(),
                    anon: self.c.anon(ip),
                    country: self.c.geo.as_ref().and_then(|g| g.country(ip)),
                })
            })
            .as_ref()
    }

    fn header_ua(&self) -> Option<&enrich::UaInfo> {
        self.header_ua
            .get_or_init(|| {
                let ua = self
                    .input
                    .user_agent
                    .map(str::trim)
                    .filter(|u| !u.is_empty())?;
                Some(self.c.ua.get(ua))
            })
            .as_ref()
    }

    /// Validates and enriches a decoded item; accepted or rejected.
    pub fn finish(&mut self, d: Draft<'_>, index: usize) {
        match self.enrich(d, index) {
            Ok(c) => self.out.events.push(c),
            Err((reason, raw)) => {
                let raw = enrich::scrub_any_ip(&raw).unwrap_or(raw);
                let raw = self.c.redact(raw);
                let index = self.out.events.len() + self.out.rejected.len();
                self.out.rejected.push(Rejected { reason, raw, index })
            }
        }
    }

    fn enrich(&self, d: Draft<'_>, index: usize) -> Result<Collected, (String, String)> {
        let Draft {
            mut ev,
            raw,
            ua,
            ip,
            client_ts,
            sent_at,
            fixed_ts,
            hints,
        } = d;
        let received = self.input.received_at;
        ev.received_at = received;

        // IP first: every rejection must carry a scrubbed raw too
        let payload_ip = ip.as_deref().and_then(enrich::parse_ip);
        let mut raw: Cow<'_, str> = raw;
        if let (Some(text), Some(pip)) = (ip.as_deref(), payload_ip) {
            let anon = self.c.anon(pip);
            if let Some(s) = enrich::scrub(&raw, text.trim(), &anon) {
                raw = Cow::Owned(s);
            }
            let canonical = pip.to_string();
            if canonical != text.trim()
                && let Some(s) = enrich::scrub(&raw, &canonical, &anon)
            {
                raw = Cow::Owned(s);
            }
            ev.country = self.c.geo.as_ref().and_then(|g| g.country(pip));
            ev.ip_anon = (!anon.is_empty()).then_some(Cow::Owned(anon));
        } else if let Some(conn) = self.conn_ip() {
            ev.country = conn.country.clone();
            ev.ip_anon = (!conn.anon.is_empty()).then(|| Cow::Owned(conn.anon.clone()));
        }
        if let Some(s) = self.scrub_conn(&raw) {
            raw = Cow::Owned(s);
        }
        let fail = |reason: String, raw: &str| Err((reason, raw.to_owned()));

        if ev.event_id.is_empty() {
            let idx = (index as u64).to_le_bytes();
            ev.event_id = Cow::Owned(json::derive_id(&[
                ev.protocol.as_bytes(),
                &idx,
                raw.as_bytes(),
            ]));
        } else if ev.event_id.len() > 256 {
            return fail(
                format!("event id is {} bytes, more than 256", ev.event_id.len()),
                &raw,
            );
        }
        if ev.anonymous_id.is_none() && ev.user_id.is_none() {
            return fail(
                "no identity: the event has neither an anonymous id nor a user id".into(),
                &raw,
            );
        }
        if ev.event_name.trim().is_empty() {
            return fail("missing event name".into(), &raw);
        }
        if ev.event_type.is_empty() {
            ev.event_type = "custom";
        }

        // time
        let ts = match (fixed_ts, client_ts, sent_at) {
            (Some(t), _, _) => t,
            (None, Some(c), Some(s)) => c.saturating_add(received.saturating_sub(s)),
            (None, Some(c), None) => c,
            (None, None, _) => received,
        };
        ev.event_ts = ts.min(received.saturating_add(self.c.skew_us));
        if ev.event_ts < EARLIEST_EVENT_US {
            return fail(
                "event time is before 2000-01-01: a client clock that was never set, or a timestamp in the wrong unit".into(),
                &raw,
            );
        }

        // page URL → path, UTM, search terms, product
        if let Some(url) = ev.page_url.as_deref() {
            let (path, query) = split_url(url);
            if ev.page_path.is_none() {
                ev.page_path = Some(Cow::Owned(path.to_owned()));
            }
            if let Some(q) = query {
                let p = PageParams::parse(q);
                if ev.utm_source.is_none() {
                    ev.utm_source = json::own(p.utm_source);
                }
                if ev.utm_medium.is_none() {
                    ev.utm_medium = json::own(p.utm_medium);
                }
                if ev.utm_campaign.is_none() {
                    ev.utm_campaign = json::own(p.utm_campaign);
                }
                if ev.search_query.is_none() {
                    ev.search_query = json::own(p.search.or_else(|| query_param(q, "search")));
                }
                if ev.product_id.is_none() {
                    ev.product_id = json::own(p.product_id);
                }
            }
        }
        if ev.product_id.is_none()
            && let Some(p) = ev.page_path.as_deref().and_then(product_from_path)
        {
            ev.product_id = Some(Cow::Owned(p.to_owned()));
        }

        // user agent
        let payload_ua = ua.as_deref().map(str::trim).filter(|u| !u.is_empty());
        let info = match payload_ua {
            Some(u) => Some(self.c.ua.get(u)),
            None => match self.header_ua() {
                Some(h) if h.kind == enrich::UaKind::Library && !self.browser => None,
                Some(h) => Some(h.clone()),
                None => None,
            },
        };
        match info {
            Some(i) if i.kind != enrich::UaKind::Client => {
                ev.is_bot = true;
                ev.device_type = "bot";
                ev.browser = i.browser;
                ev.os = i.os;
            }
            Some(i) => {
                ev.device_type = if i.device == "unknown" {
                    hints.device.unwrap_or("unknown")
                } else {
                    i.device
                };
                ev.browser = i.browser.or(hints.browser);
                ev.os = i.os.or(hints.os);
            }
            None if self.browser && payload_ua.is_none() && self.header_ua().is_none() => {
                ev.is_bot = true;
                ev.device_type = "bot";
            }
            None => {
                ev.device_type = hints.device.unwrap_or("unknown");
                ev.browser = hints.browser;
                ev.os = hints.os;
            }
        }
        // personal data, last: every field is where it will be stored
        // (properties and ids come from the payload: when it holds nothing
        // personal, neither do they)
        if let Some(rules) = &self.c.opts.pii
            && let Some(s) = rules.redact(&raw)
        {
            raw = Cow::Owned(s);
            let person = ev.event_type == "identify";
            if let Some(p) = ev.properties.as_deref().and_then(|p| {
                if person {
                    rules.redact_person(p)
                } else {
                    rules.redact(p)
                }
            }) {
                ev.properties = Some(p);
            }
            if let Some(id) = ev.user_id.as_deref().and_then(|u| rules.id(u)) {
                ev.user_id = Some(Cow::Owned(id));
            }
            if let Some(id) = ev.anonymous_id.as_deref().and_then(|u| rules.id(u)) {
                ev.anonymous_id = Some(Cow::Owned(id));
            }
        }
        Ok(Collected {
            event: ev,
            raw: raw.into_owned(),
        })
    }
}

/// A client timestamp field (ISO 8601, or epoch seconds/milliseconds as
/// digits) in µs; errors name the field.
pub(crate) fn client_time(field: &str, text: Option<&str>) -> Result<Option<i64>, String> {
    match text.map(str::trim).filter(|t| !t.is_empty()) {
        None => Ok(None),
        Some(t) => shoplake_core::time::parse_ts(t)
            .map(Some)
            .map_err(|_| format!("{field}: unparsable timestamp {:?}", json::truncate(t, 64))),
    }
}

/// An epoch time in `unit_us` µs units written as digits (`"1700000000000"`).
pub(crate) fn epoch_time(
    field: &str,
    text: Option<&str>,
    unit_us: i64,
) -> Result<Option<i64>, String> {
    let Some(t) = text.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let bad = || format!("{field}: unparsable timestamp {:?}", json::truncate(t, 64));
    // numbers written as floats ("1.7e12") are accepted, fractions of the unit dropped
    let n: i64 = match t.parse::<i64>() {
        Ok(n) => n,
        Err(_) => match t.parse::<f64>() {
            Ok(f) if f.is_finite() && f.abs() < 9.0e18 => f as i64,
            _ => return Err(bad()),
        },
    };
    n.checked_mul(unit_us).map(Some).ok_or_else(bad)
}
