//! Segment HTTP Tracking API (and shoplake's own tracker, which speaks it).
//!
//! `POST /v1/{track,page,identify,screen,group,alias}` carry one call,
//! `POST /v1/batch` (and `/v1/import`) carry `{"batch":[…], "context":…,
//! "writeKey":…, "sentAt":…}` whose `context` is merged into each item's
//! (item fields win), `GET /v1/pixel/{method}?data=<base64 JSON>` carries one
//! call from an image pixel. The write key is the HTTP Basic user or the
//! body's `writeKey`. The E-commerce Events Spec v2 properties map through
//! [`crate::ecommerce`].

use std::borrow::Cow;

use base64::Engine;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::ecommerce::{Ecom, event_type};
use crate::enrich::{device_hint, os_family};
use crate::json::{self, Obj, PropsOut, Str, own, split};
use crate::{Credential, DecodeError, Draft, Req, client_time};

#[derive(Deserialize, Default, Clone)]
struct Page<'a> {
    #[serde(borrow)]
    url: Option<Str<'a>>,
    #[serde(borrow)]
    path: Option<Str<'a>>,
    #[serde(borrow)]
    referrer: Option<Str<'a>>,
    #[serde(borrow)]
    search: Option<Str<'a>>,
}

#[derive(Deserialize, Default, Clone)]
struct Campaign<'a> {
    #[serde(borrow)]
    name: Option<Str<'a>>,
    #[serde(borrow)]
    source: Option<Str<'a>>,
    #[serde(borrow)]
    medium: Option<Str<'a>>,
}

#[derive(Deserialize, Default, Clone)]
struct Named<'a> {
    #[serde(borrow)]
    name: Option<Str<'a>>,
}

#[derive(Deserialize, Default, Clone)]
struct Device<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Str<'a>>,
}

#[derive(Deserialize, Default, Clone)]
struct Context<'a> {
    #[serde(borrow)]
    page: Option<Page<'a>>,
    #[serde(rename = "userAgent", borrow)]
    user_agent: Option<Str<'a>>,
    #[serde(borrow)]
    ip: Option<Str<'a>>,
    #[serde(borrow)]
    campaign: Option<Campaign<'a>>,
    #[serde(borrow)]
    library: Option<Named<'a>>,
    #[serde(borrow)]
    device: Option<Device<'a>>,
    #[serde(borrow)]
    os: Option<Named<'a>>,
    #[serde(rename = "sessionId", alias = "session_id", borrow)]
    session_id: Option<Str<'a>>,
}

fn or<T: Clone>(a: Option<T>, b: Option<&T>) -> Option<T> {
    a.or_else(|| b.cloned())
}

impl<'a> Context<'a> {
    /// This context with the batch's filled in where this one has nothing.
    fn merged(self, batch: Option<&Context<'a>>) -> Context<'a> {
        let Some(b) = batch else { return self };
        let page = match (self.page, &b.page) {
            (Some(p), Some(bp)) => Some(Page {
                url: or(p.url, bp.url.as_ref()),
                path: or(p.path, bp.path.as_ref()),
                referrer: or(p.referrer, bp.referrer.as_ref()),
                search: or(p.search, bp.search.as_ref()),
            }),
            (p, bp) => or(p, bp.as_ref()),
        };
        let campaign = match (self.campaign, &b.campaign) {
            (Some(c), Some(bc)) => Some(Campaign {
                name: or(c.name, bc.name.as_ref()),
                source: or(c.source, bc.source.as_ref()),
                medium: or(c.medium, bc.medium.as_ref()),
            }),
            (c, bc) => or(c, bc.as_ref()),
        };
        Context {
            page,
            user_agent: or(self.user_agent, b.user_agent.as_ref()),
            ip: or(self.ip, b.ip.as_ref()),
            campaign,
            library: or(self.library, b.library.as_ref()),
            device: or(self.device, b.device.as_ref()),
            os: or(self.os, b.os.as_ref()),
            session_id: or(self.session_id, b.session_id.as_ref()),
        }
    }
}

#[derive(Deserialize)]
struct Call<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Str<'a>>,
    #[serde(borrow)]
    event: Option<Str<'a>>,
    #[serde(borrow)]
    name: Option<Str<'a>>,
    #[serde(rename = "messageId", borrow)]
    message_id: Option<Str<'a>>,
    #[serde(rename = "anonymousId", borrow)]
    anonymous_id: Option<Str<'a>>,
    #[serde(rename = "userId", borrow)]
    user_id: Option<Str<'a>>,
    #[serde(borrow)]
    timestamp: Option<Str<'a>>,
    #[serde(rename = "originalTimestamp", borrow)]
    original_timestamp: Option<Str<'a>>,
    #[serde(rename = "sentAt", borrow)]
    sent_at: Option<Str<'a>>,
    #[serde(borrow)]
    context: Option<Context<'a>>,
    #[serde(borrow)]
    properties: Option<Obj<'a>>,
    #[serde(borrow)]
    traits: Option<Obj<'a>>,
    #[serde(rename = "groupId", borrow)]
    group_id: Option<&'a RawValue>,
    #[serde(rename = "previousId", borrow)]
    previous_id: Option<&'a RawValue>,
    #[serde(borrow)]
    category: Option<&'a RawValue>,
    #[serde(rename = "writeKey", borrow)]
    write_key: Option<Str<'a>>,
}

/// Decodes base64 in either alphabet, padded or not.
pub(crate) fn base64_any(s: &str) -> Result<Vec<u8>, String> {
    use base64::alphabet::URL_SAFE;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const ENGINE: GeneralPurpose = GeneralPurpose::new(
        &URL_SAFE,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let s = s.trim();
    let norm: Cow<'_, str> = if s.contains(['+', '/', ' ', '\n', '\r']) {
        Cow::Owned(
            s.chars()
                .filter(|c| !matches!(c, '\n' | '\r'))
                .map(|c| match c {
                    '+' | ' ' => '-',
                    '/' => '_',
                    c => c,
                })
                .collect(),
        )
    } else {
        Cow::Borrowed(s)
    };
    ENGINE.decode(norm.as_bytes()).map_err(|e| e.to_string())
}

/// A query parameter with `%XX` escapes decoded but `+` kept (base64 text).
fn raw_param(query: &str, key: &str) -> Option<String> {
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == key && !v.is_empty() {
            let b = v.as_bytes();
            let mut out = Vec::with_capacity(b.len());
            let mut i = 0;
            while i < b.len() {
                if b[i] == b'%'
                    && i + 2 < b.len()
                    && let (Some(h), Some(l)) = (
                        (b[i + 1] as char).to_digit(16),
                        (b[i + 2] as char).to_digit(16),
                    )
                {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                out.push(b[i]);
                i += 1;
            }
            return String::from_utf8(out).ok();
        }
    }
    None
}

pub(crate) fn decode(req: &mut Req<'_, '_>) -> Result<(), DecodeError> {
    let input = req.input;
    let path = input.path.trim_end_matches('/');
    let mut segs = path.rsplit('/');
    let last = segs.next().unwrap_or("");
    let pixel = segs.next() == Some("pixel");
    if let Some(u) = input
        .basic_auth_user
        .map(str::trim)
        .filter(|u| !u.is_empty())
    {
        req.credential(Credential::Secret(u.to_owned()));
    }
    let pixel_body: Vec<u8>;
    let body: &[u8] = if pixel {
        req.browser = true;
        let data = input
            .query
            .and_then(|q| raw_param(q, "data"))
            .ok_or_else(|| DecodeError::Shape("pixel request without a data parameter".into()))?;
        pixel_body = base64_any(&data).map_err(|reason| DecodeError::Base64 {
            field: "data",
            reason,
        })?;
        &pixel_body
    } else {
        input.body
    };
    let body = std::str::from_utf8(body).map_err(|_| DecodeError::NotUtf8)?;
    let path_kind = match last {
        "track" | "page" | "identify" | "screen" | "group" | "alias" => Some(last),
        _ => None,
    };
    if last == "batch" || last == "import" {
        return batch(req, body);
    }
    if !body.trim_start().starts_with('{') {
        return match serde_json::from_str::<serde::de::IgnoredAny>(body) {
            Err(e) => Err(DecodeError::json(e)),
            Ok(_) => Err(DecodeError::Shape("expected a JSON object".into())),
        };
    }
    if !req.admit(body) {
        return Ok(());
    }
    match serde_json::from_str::<Call<'_>>(body) {
        Ok(call) => item(req, call, body, path_kind, None, None, 0),
        Err(e) if e.is_syntax() || e.is_eof() => return Err(DecodeError::json(e)),
        Err(e) => req.reject(format!("invalid event: {e}"), body),
    }
    Ok(())
}

type Parsed<'a> = (usize, &'a str, Option<Result<Call<'a>, serde_json::Error>>);

/// `{"batch": [...], "context": ..., "writeKey": ..., "sentAt": ...}`: each
/// item is parsed in the same pass that finds its end.
fn batch(req: &mut Req<'_, '_>, body: &str) -> Result<(), DecodeError> {
    let b = body.as_bytes();
    let mut items: Option<Vec<Parsed<'_>>> = None;
    let (mut ctx, mut sent, mut key) = (None, None, None);
    let mut shape: Option<DecodeError> = None;
    let mut fail = |field: &str, e: serde_json::Error| {
        shape.get_or_insert(DecodeError::Shape(format!("{field}: {e}")));
    };
    split::object(body, |k, at| {
        if split::key_is(k, "batch") && items.is_none() {
            if b.get(at) != Some(&b'[') {
                return Ok(None);
            }
            let mut v = Vec::with_capacity(64);
            let end = split::elements(body, at, |i, raw, r| v.push((i, raw, r)))?;
            items = Some(v);
            return Ok(Some(end));
        }
        let field = ["context", "writeKey", "sentAt"]
            .into_iter()
            .find(|f| split::key_is(k, f));
        let Some(field) = field else { return Ok(None) };
        let end = split::value(b, at)?;
        let v = &body[at..end];
        match field {
            "context" => match serde_json::from_str::<Option<Context<'_>>>(v) {
                Ok(c) => {
                    if ctx.is_none() {
                        ctx = c;
                    }
                }
                Err(e) => fail(field, e),
            },
            "writeKey" => match serde_json::from_str::<Option<Str<'_>>>(v) {
                Ok(w) => {
                    if key.is_none() {
                        key = w.and_then(Str::nonempty);
                    }
                }
                Err(e) => fail(field, e),
            },
            _ => match serde_json::from_str::<Option<Str<'_>>>(v) {
                Ok(t) => {
                    if sent.is_none() {
                        sent = t;
                    }
                }
                Err(e) => fail(field, e),
            },
        }
        Ok(Some(end))
    })
    .map_err(DecodeError::split)?;
    if let Some(e) = shape {
        return Err(e);
    }
    let items = items.ok_or_else(|| DecodeError::Shape("expected {\"batch\": [...]}".into()))?;
    if let Some(k) = key {
        req.credential(Credential::Secret(k.trim().to_owned()));
    }
    req.out.events.reserve(items.len());
    for (i, raw, r) in items {
        if let Some(call) = req.parsed(raw, r) {
            item(req, call, raw, None, ctx.as_ref(), sent.as_ref(), i);
        }
    }
    Ok(())
}

fn item(
    req: &mut Req<'_, '_>,
    call: Call<'_>,
    raw: &str,
    path_kind: Option<&str>,
    batch_ctx: Option<&Context<'_>>,
    batch_sent: Option<&Str<'_>>,
    index: usize,
) {
    if let Some(k) = call.write_key.and_then(Str::nonempty) {
        match req.secret() {
            None => req.credential(Credential::Secret(k.into_owned())),
            Some(s) if s != k.trim() => {
                return req.reject("writeKey differs from the request's write key", raw);
            }
            Some(_) => {}
        }
    }
    let kind: &str = match (path_kind, call.kind.as_ref()) {
        (Some(p), _) => p,
        (None, Some(k)) => {
            let k = k.0.trim();
            match ["track", "page", "identify", "screen", "group", "alias"]
                .into_iter()
                .find(|t| t.eq_ignore_ascii_case(k))
            {
                Some(t) => t,
                None => {
                    let msg = format!("unknown type {:?}", json::truncate(k, 40));
                    return req.reject(msg, raw);
                }
            }
        }
        (None, None) if call.event.is_some() => "track",
        (None, None) => return req.reject("missing type", raw),
    };
    let ctx = call.context.unwrap_or_default().merged(batch_ctx);
    let native = ctx
        .library
        .as_ref()
        .and_then(|l| l.name.as_ref())
        .is_some_and(|n| n.0 == "shoplake.js");
    let mut d = Draft::new(
        Cow::Borrowed(raw),
        if native { "native" } else { "segment" },
    );
    let ev = &mut d.ev;
    ev.event_id = call
        .message_id
        .and_then(Str::nonempty)
        .map(|c| Cow::Owned(c.into_owned()))
        .unwrap_or_default();
    ev.anonymous_id = own(call.anonymous_id.and_then(Str::nonempty));
    ev.user_id = own(call.user_id.and_then(Str::nonempty));
    ev.session_id = own(ctx.session_id.and_then(Str::nonempty));
    let mut page_search = None;
    if let Some(p) = ctx.page {
        ev.page_url = own(p.url.and_then(Str::nonempty));
        ev.page_path = own(p.path.and_then(Str::nonempty));
        ev.referrer = own(p.referrer.and_then(Str::nonempty));
        page_search = p.search.and_then(Str::nonempty);
    }
    if let Some(c) = ctx.campaign {
        ev.utm_source = own(c.source.and_then(Str::nonempty));
        ev.utm_medium = own(c.medium.and_then(Str::nonempty));
        ev.utm_campaign = own(c.name.and_then(Str::nonempty));
    }
    d.ua = ctx.user_agent.and_then(Str::nonempty);
    d.ip = ctx.ip.and_then(Str::nonempty);
    d.hints.device = ctx
        .device
        .and_then(|x| x.kind)
        .and_then(|k| device_hint(&k.0));
    d.hints.os = ctx.os.and_then(|o| o.name).and_then(|n| os_family(&n.0));

    let times = (|| -> Result<_, String> {
        let client = match call.original_timestamp.as_ref() {
            Some(t) => client_time("originalTimestamp", Some(&t.0))?,
            None => None,
        };
        let ts = client_time("timestamp", call.timestamp.as_ref().map(|t| &*t.0))?;
        let sent = client_time(
            "sentAt",
            call.sent_at.as_ref().or(batch_sent).map(|t| &*t.0),
        )?;
        Ok((client.or(ts), sent))
    })();
    match times {
        Ok((c, s)) => {
            d.client_ts = c;
            d.sent_at = s;
        }
        Err(e) => return req.reject(e, raw),
    }

    let mut out = PropsOut::default();
    let ev = &mut d.ev;
    let page_like = matches!(kind, "page" | "screen");
    match kind {
        "track" => {
            let Some(name) = call.event.and_then(Str::nonempty) else {
                return req.reject("missing event name", raw);
            };
            ev.event_type = event_type(&name);
            ev.event_name = Cow::Owned(name.into_owned());
        }
        "page" | "screen" => ev.event_type = "page_view",
        "identify" => {
            ev.event_type = "identify";
            ev.event_name = Cow::Borrowed("identify");
        }
        "group" | "alias" => {
            ev.event_type = "custom";
            ev.event_name = Cow::Owned(kind.to_owned());
        }
        other => {
            let msg = format!("unknown type {:?}", json::truncate(other, 40));
            return req.reject(msg, raw);
        }
    }
    if let Some(v) = call.group_id {
        out.raw("groupId", v);
    }
    if let Some(v) = call.previous_id {
        out.raw("previousId", v);
    }
    if let Some(v) = call.category {
        out.raw("category", v);
    }
    if let Some(t) = call.traits {
        for (k, v) in &t.0 {
            out.raw(k, v);
        }
    }
    let mut ecom = Ecom::default();
    let commerce = !matches!(kind, "identify" | "group" | "alias");
    let mut page_name = None;
    if let Some(p) = &call.properties {
        for (k, v) in &p.0 {
            let used = match &**k {
                "url" if page_like => {
                    if ev.page_url.is_none() {
                        ev.page_url = json::owned(Some(v));
                    }
                    true
                }
                "path" if page_like => {
                    if ev.page_path.is_none() {
                        ev.page_path = json::owned(Some(v));
                    }
                    true
                }
                "referrer" if page_like => {
                    if ev.referrer.is_none() {
                        ev.referrer = json::owned(Some(v));
                    }
                    true
                }
                "search" if page_like => {
                    if page_search.is_none() {
                        page_search = json::text(v);
                    }
                    true
                }
                "name" if page_like => {
                    page_name = json::text(v);
                    true
                }
                "session_id" | "sessionId" if ev.session_id.is_none() => {
                    ev.session_id = json::owned(Some(v));
                    true
                }
                _ => commerce && ecom.take(k, v),
            };
            if !used {
                out.raw(k, v);
            }
        }
    }
    if page_like {
        let name = call
            .name
            .and_then(Str::nonempty)
            .or(page_name)
            .unwrap_or(Cow::Borrowed(kind));
        ev.event_name = Cow::Owned(name.into_owned());
    }
    // `?utm_source=…` of context.page.search when the URL has no query
    if let Some(s) = page_search
        && !ev.page_url.as_deref().is_some_and(|u| u.contains('?'))
    {
        let p = shoplake_core::event::PageParams::parse(s.trim_start_matches('?'));
        ev.utm_source = ev.utm_source.take().or(own(p.utm_source));
        ev.utm_medium = ev.utm_medium.take().or(own(p.utm_medium));
        ev.utm_campaign = ev.utm_campaign.take().or(own(p.utm_campaign));
        ev.search_query = ev.search_query.take().or(own(p.search));
    }
    if let Err(e) = ecom.apply(ev, &mut out) {
        return req.reject(e, raw);
    }
    ev.properties = out.finish();
    req.finish(d, index);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{collect, input};
    use crate::{Credential, Protocol};

    const UA: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";

    /// The Segment docs' track example.
    const TRACK: &str = r#"{
      "anonymousId": "23adfd82-aa0f-45a7-a756-24f2a7a4c895",
      "context": {
        "library": {"name": "analytics.js", "version": "2.11.1"},
        "page": {
          "path": "/academy/",
          "referrer": "",
          "search": "",
          "title": "Analytics Academy",
          "url": "https://segment.com/academy/"
        },
        "userAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_12_2) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/55.0.2883.95 Safari/537.36",
        "ip": "108.0.78.21"
      },
      "event": "Course Clicked",
      "integrations": {},
      "messageId": "ajs-f8ca1e4de5024d9430b3928bd8ac6b96",
      "properties": {"title": "Intro to Analytics"},
      "receivedAt": "2015-12-12T19:11:01.266Z",
      "sentAt": "2015-12-12T19:11:01.169Z",
      "timestamp": "2015-12-12T19:11:01.249Z",
      "type": "track",
      "userId": "AiUGstSDIg",
      "originalTimestamp": "2015-12-12T19:11:01.152Z"
    }"#;

    #[test]
    fn track_example() {
        let d = collect(input(Protocol::Segment, "/v1/track", TRACK.as_bytes()));
        assert_eq!(d.rejected, vec![]);
        let e = &d.events[0].event;
        assert_eq!(e.event_id, "ajs-f8ca1e4de5024d9430b3928bd8ac6b96");
        assert_eq!(e.event_type, "custom");
        assert_eq!(e.event_name, "Course Clicked");
        assert_eq!(e.protocol, "segment");
        assert_eq!(e.user_id.as_deref(), Some("AiUGstSDIg"));
        assert_eq!(e.page_path.as_deref(), Some("/academy/"));
        assert_eq!(e.referrer, None);
        assert_eq!(e.ip_anon.as_deref(), Some("108.0.78.0"));
        assert_eq!(
            (e.device_type, e.browser.as_deref(), e.os.as_deref()),
            ("desktop", Some("Chrome"), Some("macOS"))
        );
        assert_eq!(
            e.properties.as_deref(),
            Some(r#"{"title":"Intro to Analytics"}"#)
        );
        // originalTimestamp + (received_at − sentAt)
        let recv = crate::tests::RECEIVED;
        let orig = shoplake_core::time::parse_ts("2015-12-12T19:11:01.152Z").unwrap();
        let sent = shoplake_core::time::parse_ts("2015-12-12T19:11:01.169Z").unwrap();
        assert_eq!(e.event_ts, orig + (recv - sent));
        assert!(!d.events[0].raw.contains("108.0.78.21"));
        assert!(d.events[0].raw.contains("\"108.0.78.0\""));
    }

    #[test]
    fn page_identify_and_credentials() {
        let page = r#"{"type":"page","name":"Home","anonymousId":"a1","writeKey":"WK",
            "properties":{"title":"Welcome","url":"https://shop.example/p/P00012?utm_source=google&utm_medium=cpc&q=red+shoes","path":"/p/P00012","referrer":"https://google.com/"},
            "context":{"library":{"name":"shoplake.js"},"sessionId":"s-9","campaign":{"name":"spring"}}}"#;
        let d = collect(input(Protocol::Segment, "/v1/page", page.as_bytes()));
        assert_eq!(d.credential, Some(Credential::Secret("WK".into())));
        let e = &d.events[0].event;
        assert_eq!(
            (e.event_type, &*e.event_name, e.protocol),
            ("page_view", "Home", "native")
        );
        assert_eq!(e.session_id.as_deref(), Some("s-9"));
        assert_eq!(e.page_path.as_deref(), Some("/p/P00012"));
        assert_eq!(e.product_id.as_deref(), Some("P00012"));
        assert_eq!(e.referrer.as_deref(), Some("https://google.com/"));
        assert_eq!(
            (
                e.utm_source.as_deref(),
                e.utm_medium.as_deref(),
                e.utm_campaign.as_deref()
            ),
            (Some("google"), Some("cpc"), Some("spring"))
        );
        assert_eq!(e.search_query.as_deref(), Some("red shoes"));
        assert_eq!(e.properties.as_deref(), Some(r#"{"title":"Welcome"}"#));
        // server-to-server, no user agent anywhere: unknown device, not a bot
        assert_eq!((e.device_type, e.is_bot), ("unknown", false));

        let identify = r#"{"type":"identify","traits":{"name":"Peter Gibbons","email":"peter@example.com","plan":"premium","logins":5},"userId":"97980cfea0067"}"#;
        let mut i = input(Protocol::Segment, "/v1/identify", identify.as_bytes());
        i.basic_auth_user = Some("BASIC");
        let d = collect(i);
        assert_eq!(d.credential, Some(Credential::Secret("BASIC".into())));
        let e = &d.events[0].event;
        assert_eq!((e.event_type, &*e.event_name), ("identify", "identify"));
        let p: serde_json::Value = serde_json::from_str(e.properties.as_deref().unwrap()).unwrap();
        assert_eq!(p["email"], "peter@example.com");
        assert_eq!(p["logins"], 5);
        assert_eq!(e.event_ts, crate::tests::RECEIVED);
        assert_eq!(e.event_id.len(), 36, "derived id");
    }

    #[test]
    fn batch_with_order_completed() {
        let body = r#"{
          "writeKey": "WK",
          "sentAt": "2024-05-01T10:00:10.000Z",
          "context": {"userAgent": "UA_HERE", "page": {"url": "https://shop.example/checkout?utm_campaign=may"}, "campaign": {"source": "newsletter"}},
          "batch": [
            {"type": "track", "event": "Order Completed", "messageId": "m1", "anonymousId": "a1", "userId": "u1",
             "timestamp": "2024-05-01T10:00:00.000Z",
             "context": {"campaign": {"medium": "email"}},
             "properties": {"checkout_id": "fksdjfsdjfisjf9sdfjsd9f", "order_id": "50314b8e9bcf000000000000",
               "affiliation": "Google Store", "total": 27.50, "subtotal": 22.50, "revenue": 25.00, "shipping": 3,
               "tax": 2, "discount": 2.5, "coupon": "hasbros", "currency": "USD",
               "products": [
                 {"product_id": "507f1f77bcf86cd799439011", "sku": "45790-32", "name": "Monopoly: 3rd Edition", "price": 19, "quantity": 1, "category": "Games", "url": "https://www.example.com/product/path", "image_url": "https:///www.example.com/product/path.jpg"},
                 {"product_id": "505bd76785ebb509fc183733", "sku": "46493-32", "name": "Uno Card Game", "price": 3, "quantity": 2, "category": "Games"}
               ]}},
            {"type": "track", "event": "Products Searched", "messageId": "m2", "anonymousId": "a1", "properties": {"query": "blue hotpants"}},
            {"type": "track", "event": "Product Added", "messageId": "m3", "anonymousId": "a1",
             "properties": {"cart_id": "skdjsidjsdkdj29j", "product_id": "507f1f77bcf86cd799439011", "sku": "G-32", "category": "Games", "name": "Monopoly: 3rd Edition", "brand": "Hasbro", "variant": "200 pieces", "price": 18.99, "quantity": 1, "coupon": "MAYDEALS", "position": 3}},
            {"type": "track", "messageId": "m4", "anonymousId": "a1"},
            {"type": "track", "event": "x", "messageId": "m5"},
            [1, 2],
            {"type": "track", "event": "Order Completed", "messageId": "m6", "anonymousId": "a1", "properties": {"revenue": "lots"}},
            {"type": "track", "event": "Order Completed", "messageId": "m7", "anonymousId": "a1", "properties": {"products": [{"product_id": "p", "quantity": -2}]}},
            {"type": "track", "event": "x", "messageId": "m8", "anonymousId": "a1", "timestamp": "last tuesday"},
            {"type": "track", "event": "x", "writeKey": "OTHER", "anonymousId": "a1"}
          ]
        }"#
        .replace("UA_HERE", UA);
        let d = collect(input(Protocol::Segment, "/v1/batch", body.as_bytes()));
        assert_eq!(d.credential, Some(Credential::Secret("WK".into())));
        assert_eq!(d.events.len(), 3, "{:?}", d.rejected);
        let o = &d.events[0].event;
        assert_eq!(o.event_type, "purchase");
        assert_eq!(o.order_id.as_deref(), Some("50314b8e9bcf000000000000"));
        assert_eq!(o.revenue, Some(2500));
        assert_eq!(o.currency.as_deref(), Some("USD"));
        assert_eq!(o.products.len(), 2);
        assert_eq!(o.products[0].price, Some(1900));
        assert_eq!(o.products[1].quantity, Some(2));
        assert_eq!(o.products[1].sku.as_deref(), Some("46493-32"));
        assert_eq!(o.product_id.as_deref(), Some("507f1f77bcf86cd799439011"));
        assert_eq!(o.device_type, "desktop", "batch context merged");
        assert_eq!(
            (
                o.utm_source.as_deref(),
                o.utm_medium.as_deref(),
                o.utm_campaign.as_deref()
            ),
            (Some("newsletter"), Some("email"), Some("may"))
        );
        let p: serde_json::Value = serde_json::from_str(o.properties.as_deref().unwrap()).unwrap();
        assert_eq!(p["total"], 27.5);
        assert_eq!(p["coupon"], "hasbros");
        assert!(p.get("products").is_none() && p.get("order_id").is_none());
        let t0 = shoplake_core::time::parse_ts("2024-05-01T10:00:00Z").unwrap();
        let sent = shoplake_core::time::parse_ts("2024-05-01T10:00:10Z").unwrap();
        assert_eq!(o.event_ts, t0 + crate::tests::RECEIVED - sent);

        let s = &d.events[1].event;
        assert_eq!(
            (s.event_type, s.search_query.as_deref()),
            ("search", Some("blue hotpants"))
        );
        let a = &d.events[2].event;
        assert_eq!(a.event_type, "add_to_cart");
        assert_eq!(a.products[0].brand.as_deref(), Some("Hasbro"));
        assert_eq!(a.products[0].price, Some(1899));
        assert_eq!(a.revenue, None);

        let reasons: Vec<&str> = d.rejected.iter().map(|r| r.reason.as_str()).collect();
        assert_eq!(reasons.len(), 7, "{reasons:?}");
        assert_eq!(reasons[0], "missing event name");
        assert!(reasons[1].starts_with("no identity"), "{}", reasons[1]);
        assert_eq!(reasons[2], "event is not a JSON object");
        assert!(
            reasons[3].starts_with("revenue: not a number"),
            "{}",
            reasons[3]
        );
        assert!(reasons[4].contains("quantity: negative"), "{}", reasons[4]);
        assert!(
            reasons[5].starts_with("timestamp: unparsable"),
            "{}",
            reasons[5]
        );
        assert!(reasons[6].contains("writeKey differs"), "{}", reasons[6]);
        assert_eq!(d.rejected[2].raw, "[1, 2]");
    }

    #[test]
    fn pixel_is_browser_type() {
        let call = r#"{"writeKey":"WK","anonymousId":"a","event":"Product Viewed","properties":{"product_id":"P7"}}"#;
        let data = base64::engine::general_purpose::STANDARD.encode(call);
        let q = format!("data={}", data.replace('=', "%3D"));
        let mut i = input(Protocol::Segment, "/v1/pixel/track", b"");
        i.query = Some(&q);
        let d = collect(i);
        assert_eq!(d.credential, Some(Credential::Secret("WK".into())));
        let e = &d.events[0].event;
        assert_eq!(
            (e.event_type, e.product_id.as_deref()),
            ("product_view", Some("P7"))
        );
        assert_eq!(
            (e.is_bot, e.device_type),
            (true, "bot"),
            "pixel without a user agent"
        );

        let mut i = input(Protocol::Segment, "/v1/pixel/track", b"");
        i.query = Some("data=!!!");
        assert!(matches!(
            crate::tests::collector().collect(&i),
            Err(DecodeError::Base64 { .. })
        ));
    }

    #[test]
    fn whole_request_errors() {
        let c = crate::tests::collector();
        let err = |path: &str, body: &str| {
            c.collect(&input(Protocol::Segment, path, body.as_bytes()))
                .unwrap_err()
        };
        assert!(matches!(err("/v1/track", "{nope"), DecodeError::Json(_)));
        assert!(matches!(err("/v1/track", "[1]"), DecodeError::Shape(_)));
        assert!(matches!(err("/v1/batch", "{}"), DecodeError::Shape(_)));
        assert!(matches!(
            err("/v1/batch", r#"{"batch":{}}"#),
            DecodeError::Shape(_)
        ));
        assert!(matches!(
            c.collect(&input(Protocol::Segment, "/v1/track", &[0xff, 0xfe])),
            Err(DecodeError::NotUtf8)
        ));
        // a malformed item is rejected alone; a broken envelope fails the request
        let d = c
            .collect(&input(
                Protocol::Segment,
                "/v1/batch",
                br#"{"batch":[{"type":"track","event":tru,"anonymousId":"a"},{"type":"track","event":"ok","anonymousId":"a"}]}"#,
            ))
            .unwrap();
        assert_eq!((d.events.len(), d.rejected.len()), (1, 1));
        assert!(d.rejected[0].reason.starts_with("invalid event"));
        assert!(matches!(
            err("/v1/batch", r#"{"batch":[{"type":"track"}"#),
            DecodeError::Json(_)
        ));
        assert!(matches!(
            err("/v1/batch", r#"{"batch":[],"context":"x"}"#),
            DecodeError::Shape(_)
        ));
        // a single call of the wrong shape inside is an item rejection
        let d = c
            .collect(&input(
                Protocol::Segment,
                "/v1/track",
                br#"{"event":{"a":1},"anonymousId":"a"}"#,
            ))
            .unwrap();
        assert_eq!(d.rejected.len(), 1);
        assert!(d.rejected[0].reason.starts_with("invalid event"));
    }
}
