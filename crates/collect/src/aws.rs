//! AWS Clickstream Analytics HTTP API: `POST /collect?appId=…&platform=…
//! &compression=gzip&upload_timestamp=…` with a JSON array of events
//! `{event_type, event_id, timestamp (ms), app_id, unique_id, device_id,
//! platform, make, model, os_version, …, user: {_user_id: {value}}, attributes:
//! {_session_id, _page_url, _page_referrer, …}, items: [{id, name, price, …}]}`.
//!
//! The app id is the `appId` query parameter (else the first event's
//! `app_id`). With `compression=gzip` the collector gunzips the body itself.
//! Identity: `unique_id` (else `device_id`) is the anonymous id,
//! `user._user_id.value` the user id. `upload_timestamp` corrects the clock.

use std::borrow::Cow;

use serde_json::value::RawValue;
use shoplake_core::event::query_param;

use crate::decompress::{decompress, is_gzip};
use crate::ecommerce::{Ecom, event_type};
use crate::enrich::os_family;
use crate::json::{self, PropsOut, owned, text};
use crate::{Credential, DecodeError, Draft, Req, epoch_time};

pub(crate) fn decode(req: &mut Req<'_, '_>) -> Result<(), DecodeError> {
    let input = req.input;
    let q = input.query.unwrap_or("");
    if let Some(a) = query_param(q, "appId").or_else(|| query_param(q, "app_id")) {
        req.credential(Credential::AppId(a.trim().to_owned()));
    }
    let platform = query_param(q, "platform");
    let sent_at = epoch_time(
        "upload_timestamp",
        query_param(q, "upload_timestamp").as_deref(),
        1000,
    )
    .ok()
    .flatten();
    let gz = query_param(q, "compression").is_some_and(|c| c.eq_ignore_ascii_case("gzip"));
    let body: Cow<'_, [u8]> = if is_gzip(input.body) {
        Cow::Owned(decompress(
            Some("gzip"),
            input.body,
            req.c.opts.max_decompressed_bytes,
        )?)
    } else {
        let t = input.body.trim_ascii_start();
        if gz && !(t.starts_with(b"[") || t.starts_with(b"{")) {
            return Err(DecodeError::Corrupt {
                encoding: "gzip",
                reason: "compression=gzip but the body is not gzip".into(),
            });
        }
        Cow::Borrowed(input.body)
    };
    let body = std::str::from_utf8(&body).map_err(|_| DecodeError::NotUtf8)?;
    let mut items = Vec::with_capacity(64);
    match body.trim_start().as_bytes().first() {
        Some(b'[') => json::split::array(body, |i, raw, r| items.push((i, raw, r)))
            .map_err(DecodeError::split)?,
        Some(b'{') => {
            serde_json::from_str::<serde::de::IgnoredAny>(body).map_err(DecodeError::json)?;
            items.push((0, body, Some(json::obj(body))));
        }
        _ => {
            return Err(match serde_json::from_str::<serde::de::IgnoredAny>(body) {
                Err(e) => DecodeError::json(e),
                Ok(_) => DecodeError::Shape("expected a JSON array of events".into()),
            });
        }
    }
    req.out.events.reserve(items.len());
    for (i, raw, r) in items {
        let Some(o) = req.parsed(raw, r) else {
            continue;
        };
        match event(req, o, raw, platform.as_deref(), sent_at) {
            Ok(d) => req.finish(d, i),
            Err(e) => req.reject(e, raw),
        }
    }
    Ok(())
}

fn event<'a>(
    req: &mut Req<'_, '_>,
    o: json::Obj<'a>,
    raw: &'a str,
    query_platform: Option<&str>,
    sent_at: Option<i64>,
) -> Result<Draft<'a>, String> {
    let mut d = Draft::new(Cow::Borrowed(raw), "aws_clickstream");
    d.sent_at = sent_at;
    let mut out = PropsOut::default();
    let mut ecom = Ecom::default();
    let (mut name, mut ts, mut device_id, mut platform, mut model) = (None, None, None, None, None);
    let ev = &mut d.ev;
    for (k, v) in &o.0 {
        let v: &'a RawValue = v;
        match &**k {
            "event_type" => name = text(v),
            "event_id" => ev.event_id = owned(Some(v)).unwrap_or_default(),
            "timestamp" => ts = text(v),
            "unique_id" => ev.anonymous_id = owned(Some(v)),
            "device_id" => {
                device_id = text(v);
                out.raw(k, v);
            }
            "app_id" => {
                if let Some(a) = text(v) {
                    req.credential(Credential::AppId(a.trim().to_owned()));
                }
                out.raw(k, v);
            }
            "platform" => {
                platform = text(v);
                out.raw(k, v);
            }
            "model" => {
                model = text(v);
                out.raw(k, v);
            }
            "user" => {
                if json::kind(v) == b'{' {
                    let u = json::obj(v.get()).map_err(|e| format!("user: {e}"))?;
                    if let Some((_, uid)) = u.0.iter().find(|(k, _)| k == "_user_id") {
                        ev.user_id = match json::kind(uid) {
                            b'{' => json::obj(uid.get())
                                .ok()
                                .and_then(|o| o.0.into_iter().find(|(k, _)| k == "value"))
                                .and_then(|(_, v)| owned(Some(v))),
                            _ => owned(Some(uid)),
                        };
                    }
                }
                out.raw(k, v);
            }
            "attributes" => {
                if json::kind(v) == b'n' {
                    continue;
                }
                if json::kind(v) != b'{' {
                    return Err("attributes is not an object".into());
                }
                let a = json::obj(v.get()).map_err(|e| format!("attributes: {e}"))?;
                for (k, v) in &a.0 {
                    let v: &'a RawValue = v;
                    let slot = match &**k {
                        "_session_id" => &mut ev.session_id,
                        "_page_url" => &mut ev.page_url,
                        "_page_referrer" => &mut ev.referrer,
                        "_traffic_source_source" | "utm_source" => &mut ev.utm_source,
                        "_traffic_source_medium" | "utm_medium" => &mut ev.utm_medium,
                        "_traffic_source_campaign" | "utm_campaign" => &mut ev.utm_campaign,
                        _ => {
                            if !ecom.take(k, v) {
                                out.raw(k, v);
                            }
                            continue;
                        }
                    };
                    if slot.is_none() {
                        *slot = owned(Some(v));
                    } else {
                        out.raw(k, v);
                    }
                }
            }
            "items" => {
                if !ecom.take(k, v) {
                    out.raw(k, v);
                }
            }
            _ => out.raw(k, v),
        }
    }
    let name = name.ok_or("missing event name (event_type)")?;
    ev.event_type = event_type(&name);
    ev.event_name = Cow::Owned(name.into_owned());
    if ev.anonymous_id.is_none() {
        ev.anonymous_id = json::own(device_id);
    }
    ecom.apply(ev, &mut out)?;
    ev.properties = out.finish();
    d.client_ts = epoch_time("timestamp", ts.as_deref(), 1000)?;
    let platform = platform.as_deref().or(query_platform).unwrap_or("");
    let tablet = model
        .as_deref()
        .is_some_and(|m| m.contains("iPad") || m.contains("Tab"));
    if platform.eq_ignore_ascii_case("android") || platform.eq_ignore_ascii_case("ios") {
        d.hints.device = Some(if tablet { "tablet" } else { "mobile" });
        d.hints.os = os_family(platform);
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

    /// The AWS docs' sample event, plus a page view, a purchase and bad ones.
    const EVENTS: &str = r#"[
      {"unique_id": "c84ad28d-16a8-4af4-a331-f34cdc7a7a18", "event_type": "add_to_cart",
       "event_id": "460daa08-0717-4385-8f2e-acb5bd019ee7", "timestamp": 1667877566697,
       "device_id": "f24bec657ea8eff7", "platform": "Web", "make": "Google Inc.", "locale": "zh_CN",
       "screen_height": 1080, "screen_width": 1920, "zone_offset": 28800000, "system_language": "zh",
       "country_code": "CN", "sdk_version": "0.2.0", "sdk_name": "aws-solution-clickstream-sdk",
       "host_name": "https://example.com", "app_id": "appId",
       "items": [{"id": "123", "name": "Nike", "category": "shoes", "price": 279.9}],
       "user": {"_user_id": {"value": "312121", "set_timestamp": 1667877566697},
                "_user_name": {"value": "carl", "set_timestamp": 1667877566697}},
       "attributes": {"event_category": "recommended", "currency": "CNY",
                      "_session_id": "dc7a7a18-20221108-031926703", "_session_start_timestamp": 1667877566703,
                      "_latest_referrer": "https://amazon.com/s?k=nike", "_page_title": "index",
                      "_page_url": "https://example.com/index.html?utm_source=amazon"}},
      {"unique_id": "u2", "event_type": "_screen_view", "event_id": "e2", "timestamp": 1667877566000,
       "platform": "iOS", "model": "iPad13,4", "app_id": "appId", "attributes": {"_screen_name": "Home", "_session_id": "s2"}},
      {"unique_id": "u3", "event_type": "purchase", "event_id": "e3", "timestamp": 1667877567000, "platform": "Android",
       "attributes": {"transaction_id": "T9", "value": 55.5, "currency": "USD"},
       "items": [{"id": "P1", "price": 55.5, "quantity": 1}]},
      {"unique_id": "u4", "event_id": "e4", "timestamp": 1},
      {"event_type": "x", "event_id": "e5", "timestamp": 1},
      {"unique_id": "u6", "event_type": "x", "event_id": "e6", "timestamp": "yesterday"}
    ]"#;

    fn gz(s: &str) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::fast());
        e.write_all(s.as_bytes()).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn gzipped_array() {
        let body = gz(EVENTS);
        let mut i = input(Protocol::AwsClickstream, "/collect", &body);
        let q = format!(
            "appId=shop_app&platform=Web&event_bundle_sequence_id=1&compression=gzip&upload_timestamp={}",
            1667877570000i64
        );
        i.query = Some(&q);
        i.user_agent = Some("okhttp/4.12.0");
        let d = collect(i);
        assert_eq!(d.credential, Some(Credential::AppId("shop_app".into())));
        assert_eq!(d.events.len(), 3, "{:?}", d.rejected);
        let a = &d.events[0].event;
        assert_eq!(
            (a.event_type, &*a.event_name),
            ("add_to_cart", "add_to_cart")
        );
        assert_eq!(&*a.event_id, "460daa08-0717-4385-8f2e-acb5bd019ee7");
        assert_eq!(
            (a.anonymous_id.as_deref(), a.user_id.as_deref()),
            (Some("c84ad28d-16a8-4af4-a331-f34cdc7a7a18"), Some("312121"))
        );
        assert_eq!(a.session_id.as_deref(), Some("dc7a7a18-20221108-031926703"));
        assert_eq!(a.products[0].price, Some(27990));
        assert_eq!(a.products[0].product_id.as_deref(), Some("123"));
        assert_eq!(a.currency.as_deref(), Some("CNY"));
        assert_eq!(a.utm_source.as_deref(), Some("amazon"));
        assert_eq!(a.page_path.as_deref(), Some("/index.html"));
        // timestamp + (received − upload_timestamp)
        assert_eq!(
            a.event_ts,
            1_667_877_566_697_000 + RECEIVED - 1_667_877_570_000_000
        );
        assert_eq!((a.is_bot, a.device_type), (false, "unknown"));
        let p: serde_json::Value = serde_json::from_str(a.properties.as_deref().unwrap()).unwrap();
        assert_eq!(p["event_category"], "recommended");
        assert_eq!(p["make"], "Google Inc.");

        let s = &d.events[1].event;
        assert_eq!(
            (s.event_type, s.device_type, s.os.as_deref()),
            ("page_view", "tablet", Some("iOS"))
        );
        let o = &d.events[2].event;
        assert_eq!(
            (o.event_type, o.order_id.as_deref(), o.revenue),
            ("purchase", Some("T9"), Some(5550))
        );
        assert_eq!(o.device_type, "mobile");

        let reasons: Vec<&str> = d.rejected.iter().map(|r| r.reason.as_str()).collect();
        assert_eq!(reasons[0], "missing event name (event_type)");
        assert!(reasons[1].starts_with("no identity"));
        assert!(reasons[2].starts_with("timestamp: unparsable"));
    }

    #[test]
    fn body_errors() {
        let c = crate::tests::collector();
        let mut i = input(Protocol::AwsClickstream, "/collect", b"plain garbage");
        i.query = Some("appId=a&compression=gzip");
        assert!(matches!(c.collect(&i), Err(DecodeError::Corrupt { .. })));
        assert!(matches!(
            c.collect(&input(Protocol::AwsClickstream, "/collect", b"[1,")),
            Err(DecodeError::Json(_))
        ));
        assert!(matches!(
            c.collect(&input(Protocol::AwsClickstream, "/collect", b"1")),
            Err(DecodeError::Shape(_))
        ));
        let d = c
            .collect(&input(
                Protocol::AwsClickstream,
                "/collect",
                br#"[1, {"event_type":"a","unique_id":"u","app_id":"from-body"}]"#,
            ))
            .unwrap();
        assert_eq!(d.credential, Some(Credential::AppId("from-body".into())));
        assert_eq!((d.events.len(), d.rejected.len()), (1, 1));
    }
}
