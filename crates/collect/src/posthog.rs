//! PostHog capture API: `POST /i/v0/e/`, `/e/`, `/capture/`, `/batch/`.
//!
//! Bodies: one event `{api_key, event, distinct_id, properties, timestamp,
//! uuid}`, a batch `{api_key, batch: […], sent_at}` or a bare array; as JSON,
//! gzip (`?compression=gzip-js`, as posthog-js sends) or a form field
//! `data=<base64 JSON>`. The API key is `api_key`/`token` or
//! `properties.token`. `$pageview` is a page view, `$identify`/`$set`
//! identify; Segment-spec names (`Order Completed`, …) map like everywhere.
//! Identity: `distinct_id` (or `properties.distinct_id`); the anonymous id is
//! `$anon_distinct_id`, else `$device_id`, else the distinct id, and the
//! distinct id is the user id when it differs from that or the person is
//! identified. Time: `now − offset`, else `timestamp + (now − sent_at)`.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;
use shoplake_core::event::{percent_decode, query_param};

use crate::decompress::{decompress, is_gzip};
use crate::ecommerce::{Ecom, event_type};
use crate::enrich::{device_hint, os_family};
use crate::json::{self, Obj, PropsOut, Str, owned, split, text};
use crate::segment::base64_any;
use crate::{Credential, DecodeError, Draft, Req, client_time, epoch_time};

type Parsed<'a> = (usize, &'a str, Option<Result<Item<'a>, serde_json::Error>>);

#[derive(Deserialize)]
struct Item<'a> {
    #[serde(borrow)]
    event: Option<Str<'a>>,
    #[serde(borrow)]
    distinct_id: Option<Str<'a>>,
    #[serde(borrow)]
    properties: Option<Obj<'a>>,
    #[serde(borrow)]
    timestamp: Option<Str<'a>>,
    #[serde(borrow)]
    uuid: Option<Str<'a>>,
    #[serde(borrow)]
    offset: Option<Str<'a>>,
    #[serde(borrow)]
    sent_at: Option<Str<'a>>,
    #[serde(borrow)]
    api_key: Option<Str<'a>>,
    #[serde(borrow)]
    token: Option<Str<'a>>,
    #[serde(rename = "$set", borrow)]
    set: Option<&'a RawValue>,
    #[serde(rename = "$set_once", borrow)]
    set_once: Option<&'a RawValue>,
}

pub(crate) fn decode(req: &mut Req<'_, '_>) -> Result<(), DecodeError> {
    let input = req.input;
    let q = input.query.unwrap_or("");
    let compression = query_param(q, "compression");
    let mut body: Cow<'_, [u8]> = Cow::Borrowed(input.body);
    let form = input
        .content_type
        .is_some_and(|c| c.contains("x-www-form-urlencoded"))
        || body.starts_with(b"data=");
    if form {
        let s = std::str::from_utf8(&body).map_err(|_| DecodeError::NotUtf8)?;
        let data = query_param(s, "data")
            .ok_or_else(|| DecodeError::Shape("form body without a data field".into()))?;
        let t = data.trim_start();
        body = if compression.as_deref() == Some("base64")
            || !(t.starts_with('{') || t.starts_with('['))
        {
            Cow::Owned(base64_any(t).map_err(|reason| DecodeError::Base64 {
                field: "data",
                reason,
            })?)
        } else {
            Cow::Owned(t.as_bytes().to_vec())
        };
    }
    if is_gzip(&body) {
        body = Cow::Owned(decompress(
            Some("gzip"),
            &body,
            req.c.opts.max_decompressed_bytes,
        )?);
    } else if matches!(compression.as_deref(), Some("gzip" | "gzip-js")) && !body.is_empty() {
        let t = body.trim_ascii_start();
        if !(t.starts_with(b"{") || t.starts_with(b"[")) {
            return Err(DecodeError::Corrupt {
                encoding: "gzip",
                reason: "compression=gzip but the body is not gzip".into(),
            });
        }
    }
    let body = std::str::from_utf8(&body).map_err(|_| DecodeError::NotUtf8)?;
    // posthog-js sends its clock as `_` (ms) on the query string
    let query_sent = percent_decode(
        q.split('&')
            .find_map(|p| p.strip_prefix("_="))
            .unwrap_or(""),
    );
    let query_sent = epoch_time("_", Some(&query_sent), 1000).ok().flatten();
    let b = body.as_bytes();
    let mut items: Option<Vec<Parsed<'_>>> = None;
    let (mut key, mut top_sent) = (None, None);
    match body.trim_start().as_bytes().first() {
        Some(b'[') => {
            let mut v = Vec::with_capacity(64);
            json::split::array(body, |i, raw, r| v.push((i, raw, r)))
                .map_err(DecodeError::split)?;
            items = Some(v);
        }
        Some(b'{') => {
            json::split::object(body, |k, at| {
                if split::key_is(k, "batch") && items.is_none() && b.get(at) == Some(&b'[') {
                    let mut v = Vec::with_capacity(64);
                    let end = split::elements(body, at, |i, raw, r| v.push((i, raw, r)))?;
                    items = Some(v);
                    return Ok(Some(end));
                }
                let field = ["api_key", "token", "sent_at"]
                    .into_iter()
                    .find(|f| split::key_is(k, f));
                let Some(field) = field else { return Ok(None) };
                let end = split::value(b, at)?;
                if let Ok(Some(t)) = serde_json::from_str::<Option<Str<'_>>>(&body[at..end]) {
                    match field {
                        "sent_at" if top_sent.is_none() => top_sent = Some(t),
                        "api_key" | "token" if key.is_none() => key = t.nonempty(),
                        _ => {}
                    }
                }
                Ok(Some(end))
            })
            .map_err(DecodeError::split)?;
            if let Some(k) = key {
                req.credential(Credential::Secret(k.trim().to_owned()));
            }
            if items.is_none() {
                // a single event
                let r = serde_json::from_str::<Item<'_>>(body);
                items = Some(vec![(0, body, Some(r))]);
            }
        }
        _ => {
            return Err(match serde_json::from_str::<serde::de::IgnoredAny>(body) {
                Err(e) => DecodeError::json(e),
                Ok(_) => DecodeError::Shape("expected an event, a batch or an array".into()),
            });
        }
    }
    let top_sent = match top_sent.as_ref().map(|s| &*s.0) {
        Some(t) => client_time("sent_at", Some(t)).ok().flatten(),
        None => None,
    }
    .or(query_sent);
    let items = items.unwrap_or_default();
    req.out.events.reserve(items.len());
    for (i, raw, r) in items {
        let Some(item) = req.parsed(raw, r) else {
            continue;
        };
        match event(req, item, raw, top_sent) {
            Ok(d) => req.finish(d, i),
            Err(e) => req.reject(e, raw),
        }
    }
    Ok(())
}

fn check_key(req: &mut Req<'_, '_>, key: Option<Cow<'_, str>>) -> Result<(), String> {
    let Some(k) = key else { return Ok(()) };
    let k = k.trim();
    match req.secret() {
        None => {
            req.credential(Credential::Secret(k.to_owned()));
            Ok(())
        }
        Some(s) if s != k => Err("api key differs from the request's api key".into()),
        Some(_) => Ok(()),
    }
}

fn event<'a>(
    req: &mut Req<'_, '_>,
    item: Item<'a>,
    raw: &'a str,
    top_sent: Option<i64>,
) -> Result<Draft<'a>, String> {
    check_key(req, item.api_key.or(item.token).and_then(Str::nonempty))?;
    let mut d = Draft::new(Cow::Borrowed(raw), "posthog");
    let mut out = PropsOut::default();
    let mut ecom = Ecom::default();
    let mut distinct = item.distinct_id.and_then(Str::nonempty);
    let (mut anon, mut device_id, mut identified) = (None, None, false);
    let ev = &mut d.ev;
    if let Some(p) = &item.properties {
        for (k, v) in &p.0 {
            let v: &'a RawValue = v;
            match &**k {
                "distinct_id" => {
                    if distinct.is_none() {
                        distinct = text(v);
                    }
                }
                "token" | "api_key" => check_key(req, text(v))?,
                "$current_url" => ev.page_url = owned(Some(v)),
                "$pathname" => ev.page_path = owned(Some(v)),
                "$referrer" => {
                    ev.referrer = text(v)
                        .filter(|r| r != "$direct")
                        .map(|c| Cow::Owned(c.into_owned()))
                }
                "$session_id" => ev.session_id = owned(Some(v)),
                "$device_id" => device_id = text(v),
                "$anon_distinct_id" => anon = text(v),
                "$is_identified" => identified = v.get() == "true",
                "$user_id" => ev.user_id = owned(Some(v)),
                "$ip" => d.ip = text(v),
                "$raw_user_agent" => d.ua = text(v),
                "$user_agent" => {
                    if d.ua.is_none() {
                        d.ua = text(v);
                    }
                }
                "$device_type" => d.hints.device = text(v).and_then(|t| device_hint(&t)),
                "$browser" => d.hints.browser = owned(Some(v)),
                "$os" => d.hints.os = text(v).and_then(|t| os_family(&t)),
                "utm_source" => ev.utm_source = owned(Some(v)),
                "utm_medium" => ev.utm_medium = owned(Some(v)),
                "utm_campaign" => ev.utm_campaign = owned(Some(v)),
                _ => {
                    if !ecom.take(k, v) {
                        out.raw(k, v);
                    }
                }
            }
        }
    }
    let name = item
        .event
        .and_then(Str::nonempty)
        .ok_or("missing event name")?;
    ev.event_type = event_type(&name);
    ev.event_name = Cow::Owned(name.into_owned());
    ev.event_id = json::own(item.uuid.and_then(Str::nonempty)).unwrap_or_default();
    let anon = anon.or(device_id).or_else(|| distinct.clone());
    if ev.user_id.is_none()
        && let Some(dist) = &distinct
        && (identified || ev.event_type == "identify" || anon.as_deref() != Some(&**dist))
    {
        ev.user_id = Some(Cow::Owned(dist.to_string()));
    }
    ev.anonymous_id = json::own(anon);
    if let Some(v) = item.set {
        out.raw("$set", v);
    }
    if let Some(v) = item.set_once {
        out.raw("$set_once", v);
    }
    ecom.apply(ev, &mut out)?;
    ev.properties = out.finish();

    let offset = epoch_time("offset", item.offset.as_ref().map(|o| &*o.0), 1000)?;
    if let Some(off) = offset {
        d.fixed_ts = Some(req.input.received_at.saturating_sub(off));
    } else {
        d.client_ts = client_time("timestamp", item.timestamp.as_ref().map(|t| &*t.0))?;
        d.sent_at = match item.sent_at.as_ref() {
            Some(s) => client_time("sent_at", Some(&s.0))?,
            None => top_sent,
        };
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use crate::tests::{RECEIVED, collect, input};
    use crate::{Credential, DecodeError, Protocol};
    use flate2::Compression;
    use flate2::write::GzEncoder;
    use std::io::Write;

    #[test]
    fn capture_single_event() {
        let body = r#"{
          "api_key": "phc_key",
          "event": "$pageview",
          "distinct_id": "user-123",
          "uuid": "0190e6a4-1a2b-7c3d-8e4f-a1b2c3d4e5f6",
          "properties": {
            "$current_url": "https://shop.example/product/P55?utm_source=twitter",
            "$referrer": "$direct",
            "$session_id": "sess-abc",
            "$device_id": "dev-9",
            "$ip": "2001:db8:85a3:8d3:1319:8a2e:370:7348",
            "$raw_user_agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.0.0 Safari/537.36",
            "$browser": "Chrome",
            "$lib": "web",
            "$set": {"email": "a@b.c"}
          },
          "timestamp": "2024-05-01T10:00:00Z"
        }"#;
        let d = collect(input(Protocol::PostHog, "/i/v0/e/", body.as_bytes()));
        assert_eq!(d.credential, Some(Credential::Secret("phc_key".into())));
        let c = &d.events[0];
        let e = &c.event;
        assert_eq!((e.event_type, &*e.event_name), ("page_view", "$pageview"));
        assert_eq!(&*e.event_id, "0190e6a4-1a2b-7c3d-8e4f-a1b2c3d4e5f6");
        assert_eq!(
            (e.anonymous_id.as_deref(), e.user_id.as_deref()),
            (Some("dev-9"), Some("user-123"))
        );
        assert_eq!(e.session_id.as_deref(), Some("sess-abc"));
        assert_eq!(e.referrer, None);
        assert_eq!(
            (e.product_id.as_deref(), e.utm_source.as_deref()),
            (Some("P55"), Some("twitter"))
        );
        assert_eq!(e.ip_anon.as_deref(), Some("2001:db8:85a3::"));
        assert!(
            !c.raw.contains("2001:db8:85a3:8d3:1319:8a2e:370:7348"),
            "{}",
            c.raw
        );
        assert_eq!((e.is_bot, e.device_type), (true, "bot"), "headless browser");
        assert_eq!(
            e.event_ts,
            shoplake_core::time::parse_ts("2024-05-01T10:00:00Z").unwrap()
        );
        let p: serde_json::Value = serde_json::from_str(e.properties.as_deref().unwrap()).unwrap();
        assert_eq!(p["$lib"], "web");
        assert!(p.get("$ip").is_none() && p.get("$browser").is_none());
    }

    #[test]
    fn batch_with_offsets_and_commerce() {
        let body = r#"{"api_key":"phc_key","sent_at":"2024-05-01T10:00:10Z","batch":[
            {"event":"Order Completed","distinct_id":"u1","timestamp":"2024-05-01T10:00:00Z",
             "properties":{"$is_identified":true,"order_id":"o-1","revenue":"99.95","currency":"eur",
                "products":[{"product_id":"P1","price":99.95,"quantity":1}]}},
            {"event":"$identify","distinct_id":"u1","properties":{"$anon_distinct_id":"anon-1"},"$set":{"plan":"pro"}},
            {"event":"clicked","properties":{"distinct_id":"anon-2","token":"phc_key"},"offset":1500},
            {"event":"clicked","distinct_id":"x","properties":{"token":"phc_other"}},
            {"distinct_id":"x"},
            {"event":"clicked"}
        ]}"#;
        let d = collect(input(Protocol::PostHog, "/batch/", body.as_bytes()));
        assert_eq!(d.events.len(), 3, "{:?}", d.rejected);
        let o = &d.events[0].event;
        assert_eq!(
            (
                o.event_type,
                o.order_id.as_deref(),
                o.revenue,
                o.currency.as_deref()
            ),
            ("purchase", Some("o-1"), Some(9995), Some("EUR"))
        );
        assert_eq!(
            (o.anonymous_id.as_deref(), o.user_id.as_deref()),
            (Some("u1"), Some("u1"))
        );
        let t0 = shoplake_core::time::parse_ts("2024-05-01T10:00:00Z").unwrap();
        let sent = shoplake_core::time::parse_ts("2024-05-01T10:00:10Z").unwrap();
        assert_eq!(o.event_ts, t0 + RECEIVED - sent);
        let i = &d.events[1].event;
        assert_eq!(
            (
                i.event_type,
                i.anonymous_id.as_deref(),
                i.user_id.as_deref()
            ),
            ("identify", Some("anon-1"), Some("u1"))
        );
        assert!(
            i.properties
                .as_deref()
                .unwrap()
                .contains("\"$set\":{\"plan\":\"pro\"}")
        );
        let c = &d.events[2].event;
        assert_eq!(
            (c.anonymous_id.as_deref(), c.user_id.as_deref()),
            (Some("anon-2"), None)
        );
        assert_eq!(c.event_ts, RECEIVED - 1_500_000);
        let reasons: Vec<&str> = d.rejected.iter().map(|r| r.reason.as_str()).collect();
        assert_eq!(reasons.len(), 3);
        assert_eq!(reasons[0], "api key differs from the request's api key");
        assert_eq!(reasons[1], "missing event name");
        assert!(reasons[2].starts_with("no identity"));
    }

    #[test]
    fn posthog_js_encodings() {
        let events =
            r#"[{"event":"$autocapture","properties":{"distinct_id":"d1","token":"phc_js"}}]"#;
        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        gz.write_all(events.as_bytes()).unwrap();
        let gz = gz.finish().unwrap();
        let mut i = input(Protocol::PostHog, "/e/", &gz);
        i.query = Some("compression=gzip-js&ver=1.130.0&_=1714557600000");
        i.content_type = Some("text/plain");
        let d = collect(i);
        assert_eq!(d.credential, Some(Credential::Secret("phc_js".into())));
        assert_eq!(d.events[0].event.event_type, "custom");

        use base64::Engine;
        let form = format!(
            "data={}",
            base64::engine::general_purpose::STANDARD
                .encode(events)
                .replace('+', "%2B")
                .replace('=', "%3D")
        );
        let mut i = input(Protocol::PostHog, "/e/", form.as_bytes());
        i.query = Some("compression=base64");
        i.content_type = Some("application/x-www-form-urlencoded");
        assert_eq!(collect(i).events.len(), 1);

        let c = crate::tests::collector();
        assert!(matches!(
            c.collect(&input(Protocol::PostHog, "/e/", b"\"x\"")),
            Err(DecodeError::Shape(_))
        ));
        assert!(matches!(
            c.collect(&input(Protocol::PostHog, "/e/", b"{oops")),
            Err(DecodeError::Json(_))
        ));
        let mut i = input(Protocol::PostHog, "/e/", b"\x00\x01garbage");
        i.query = Some("compression=gzip-js");
        assert!(c.collect(&i).is_err());
    }
}
