//! Google Analytics 4 Measurement Protocol: `POST /mp/collect?
//! measurement_id=…&api_secret=…` (or `firebase_app_id=…`) with
//! `{client_id | app_instance_id, user_id, timestamp_micros,
//! user_properties, device, events: [{name, params}]}`, at most 25 events.
//!
//! Each event's raw payload is the request with only that event in
//! `events`, so it stands alone in the raw zone. Retail params map through
//! [`crate::ecommerce`] (`items`, `transaction_id`, `value`, `currency`,
//! `search_term`); `page_location`, `page_referrer`, `session_id`,
//! `source`/`medium`/`campaign` and `params.event_id` map to their columns.

use std::borrow::Cow;

use serde_json::value::RawValue;
use shoplake_core::event::query_param;

use crate::ecommerce::{Ecom, event_type};
use crate::enrich::{device_hint, os_family};
use crate::json::{self, PropsOut, owned, text};
use crate::{Credential, DecodeError, Draft, Hints, Req, epoch_time};

/// GA4's limit of events per request.
pub(crate) const MAX_EVENTS: usize = 25;

/// Request-level fields every event shares.
#[derive(Default)]
struct Common<'a> {
    client_id: Option<&'a RawValue>,
    app_instance_id: Option<&'a RawValue>,
    user_id: Option<&'a RawValue>,
    timestamp_micros: Option<Cow<'a, str>>,
    user_properties: Option<&'a RawValue>,
    device: Option<&'a RawValue>,
    user_agent: Option<Cow<'a, str>>,
    ip: Option<Cow<'a, str>>,
}

pub(crate) fn decode(req: &mut Req<'_, '_>) -> Result<(), DecodeError> {
    let input = req.input;
    let mut stream = None;
    if let Some(q) = input.query {
        if let Some(s) = query_param(q, "api_secret") {
            req.credential(Credential::Secret(s.trim().to_owned()));
        }
        stream = query_param(q, "measurement_id").or_else(|| query_param(q, "firebase_app_id"));
    }
    let body = std::str::from_utf8(input.body).map_err(|_| DecodeError::NotUtf8)?;
    let top = json::obj(body).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            DecodeError::json(e)
        } else {
            DecodeError::Shape(format!("expected a JSON object: {e}"))
        }
    })?;
    let mut common = Common::default();
    let mut events = None;
    // the request without its events, to rebuild each event's raw payload
    let mut prefix = String::with_capacity(256);
    prefix.push('{');
    for (k, v) in &top.0 {
        match &**k {
            "events" => {
                events = Some(*v);
                continue;
            }
            "client_id" => common.client_id = Some(v),
            "app_instance_id" => common.app_instance_id = Some(v),
            "user_id" => common.user_id = Some(v),
            "timestamp_micros" => common.timestamp_micros = text(v),
            "user_properties" => common.user_properties = Some(v),
            "device" => common.device = Some(v),
            "user_agent" => common.user_agent = text(v),
            "ip_override" => common.ip = text(v),
            _ => {}
        }
        json::push_json_str(&mut prefix, k);
        prefix.push(':');
        prefix.push_str(v.get());
        prefix.push(',');
    }
    prefix.push_str("\"events\":[");
    let events = events.ok_or_else(|| DecodeError::Shape("events is required".into()))?;
    if json::kind(events) != b'[' {
        return Err(DecodeError::Shape("events must be an array".into()));
    }
    let events = json::arr(events.get()).map_err(DecodeError::json)?;
    if events.0.is_empty() {
        return Err(DecodeError::Shape("events is empty".into()));
    }
    if events.0.len() > MAX_EVENTS {
        return Err(DecodeError::TooManyEvents {
            got: events.0.len(),
            max: MAX_EVENTS,
        });
    }
    let mut hints = Hints::default();
    if let Some(dev) = common.device.filter(|d| json::kind(d) == b'{')
        && let Ok(o) = json::obj(dev.get())
    {
        for (k, v) in &o.0 {
            match &**k {
                "category" => hints.device = text(v).and_then(|c| device_hint(&c)),
                "browser" => hints.browser = owned(Some(v)),
                "operating_system" => hints.os = text(v).and_then(|o| os_family(&o)),
                _ => {}
            }
        }
    }
    for (i, ev) in events.0.iter().enumerate() {
        let mut raw = String::with_capacity(prefix.len() + ev.get().len() + 2);
        raw.push_str(&prefix);
        raw.push_str(ev.get());
        raw.push_str("]}");
        if !req.admit(&raw) {
            continue;
        }
        if json::kind(ev) != b'{' {
            req.reject("event is not a JSON object", &raw);
            continue;
        }
        match event(ev, &raw, &common, &hints, stream.as_deref()) {
            Ok(d) => req.finish(d, i),
            Err(e) => req.reject(e, &raw),
        }
    }
    Ok(())
}

fn event<'a>(
    ev_raw: &RawValue,
    raw: &'a str,
    common: &Common<'a>,
    hints: &Hints,
    stream: Option<&str>,
) -> Result<Draft<'a>, String> {
    let o = json::obj(ev_raw.get()).map_err(|e| format!("invalid event: {e}"))?;
    let mut d = Draft::new(Cow::Borrowed(raw), "ga4");
    d.ua = common.user_agent.clone();
    d.ip = common.ip.clone();
    d.hints = Hints {
        device: hints.device,
        browser: hints.browser.clone(),
        os: hints.os.clone(),
    };
    let ev = &mut d.ev;
    ev.anonymous_id = owned(common.client_id).or_else(|| owned(common.app_instance_id));
    ev.user_id = owned(common.user_id);
    let mut name = None;
    let mut params = None;
    let mut ts = common.timestamp_micros.clone();
    for (k, v) in &o.0 {
        match &**k {
            "name" => name = text(v),
            "params" => params = Some(*v),
            "timestamp_micros" => ts = text(v).or(ts),
            _ => {}
        }
    }
    let name = name.ok_or("missing event name")?;
    ev.event_type = event_type(&name);
    ev.event_name = Cow::Owned(name.into_owned());
    d.client_ts = epoch_time("timestamp_micros", ts.as_deref(), 1)?;

    let mut out = PropsOut::default();
    if let Some(s) = stream {
        out.string("measurement_id", s);
    }
    let mut ecom = Ecom::default();
    if let Some(p) = params.filter(|p| json::kind(p) != b'n') {
        if json::kind(p) != b'{' {
            return Err("params is not an object".into());
        }
        let p = json::obj(p.get()).map_err(|e| format!("params: {e}"))?;
        for (k, v) in &p.0 {
            let slot = match &**k {
                "page_location" => &mut ev.page_url,
                "page_referrer" => &mut ev.referrer,
                "page_path" => &mut ev.page_path,
                "session_id" | "ga_session_id" => &mut ev.session_id,
                "source" | "campaign_source" | "utm_source" => &mut ev.utm_source,
                "medium" | "campaign_medium" | "utm_medium" => &mut ev.utm_medium,
                "campaign" | "campaign_name" | "utm_campaign" => &mut ev.utm_campaign,
                "event_id" if ev.event_id.is_empty() => {
                    ev.event_id = owned(Some(v)).unwrap_or_default();
                    continue;
                }
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
    if let Some(up) = common.user_properties {
        out.raw("user_properties", up);
    }
    ecom.apply(ev, &mut out)?;
    ev.properties = out.finish();
    Ok(d)
}

#[cfg(test)]
mod tests {
    use crate::tests::{collect, input};
    use crate::{Credential, DecodeError, Protocol};

    /// Google's purchase example (Measurement Protocol reference).
    const PURCHASE: &str = r#"{
      "client_id": "123456.7654321",
      "user_id": "cust-42",
      "timestamp_micros": "1714557600000000",
      "user_properties": {"customer_tier": {"value": "premium"}},
      "events": [{
        "name": "purchase",
        "params": {
          "currency": "USD",
          "value": 30.03,
          "coupon": "SUMMER_FUN",
          "payment_type": "Credit Card",
          "shipping_tier": "Ground",
          "transaction_id": "T_12345",
          "session_id": "1714557000",
          "engagement_time_msec": 100,
          "items": [
            {"item_id": "SKU_12345", "item_name": "Stan and Friends Tee", "affiliation": "Google Merchandise Store",
             "coupon": "SUMMER_FUN", "discount": 2.22, "index": 0, "item_brand": "Google", "item_category": "Apparel",
             "item_variant": "green", "price": 10.01, "quantity": 3}
          ]
        }
      },
      {"name": "page_view", "params": {"page_location": "https://shop.example/product/SKU_9?utm_source=news&utm_medium=email", "page_referrer": "https://mail.example/", "session_id": 1714557000}},
      {"name": "search", "params": {"search_term": "t-shirts", "event_id": "client-dedup-1"}},
      {"params": {}},
      {"name": "purchase", "params": {"value": "thirty"}},
      "nope"
      ]
    }"#;

    #[test]
    fn purchase_example() {
        let mut i = input(Protocol::Ga4, "/mp/collect", PURCHASE.as_bytes());
        i.query = Some("measurement_id=G-ABC123&api_secret=s3cr3t");
        i.user_agent = Some("python-requests/2.31.0");
        let d = collect(i);
        assert_eq!(d.credential, Some(Credential::Secret("s3cr3t".into())));
        assert_eq!(d.events.len(), 3, "{:?}", d.rejected);
        let p = &d.events[0].event;
        assert_eq!((p.event_type, &*p.event_name), ("purchase", "purchase"));
        assert_eq!(
            (p.anonymous_id.as_deref(), p.user_id.as_deref()),
            (Some("123456.7654321"), Some("cust-42"))
        );
        assert_eq!(
            (p.order_id.as_deref(), p.revenue, p.currency.as_deref()),
            (Some("T_12345"), Some(3003), Some("USD"))
        );
        assert_eq!(p.session_id.as_deref(), Some("1714557000"));
        assert_eq!(p.products.len(), 1);
        let li = &p.products[0];
        assert_eq!(
            (
                li.product_id.as_deref(),
                li.name.as_deref(),
                li.brand.as_deref(),
                li.category.as_deref(),
                li.price,
                li.quantity
            ),
            (
                Some("SKU_12345"),
                Some("Stan and Friends Tee"),
                Some("Google"),
                Some("Apparel"),
                Some(1001),
                Some(3)
            )
        );
        assert_eq!(p.event_ts, 1_714_557_600_000_000);
        // a server SDK's HTTP library header: unknown device, not a bot
        assert_eq!((p.is_bot, p.device_type), (false, "unknown"));
        let props: serde_json::Value =
            serde_json::from_str(p.properties.as_deref().unwrap()).unwrap();
        assert_eq!(props["measurement_id"], "G-ABC123");
        assert_eq!(props["coupon"], "SUMMER_FUN");
        assert_eq!(
            props["user_properties"]["customer_tier"]["value"],
            "premium"
        );
        // each raw stands alone: the request with this one event
        let raw: serde_json::Value = serde_json::from_str(&d.events[0].raw).unwrap();
        assert_eq!(raw["client_id"], "123456.7654321");
        assert_eq!(raw["events"].as_array().unwrap().len(), 1);
        assert_eq!(raw["events"][0]["name"], "purchase");

        let pv = &d.events[1].event;
        assert_eq!(pv.event_type, "page_view");
        assert_eq!(
            (pv.page_path.as_deref(), pv.product_id.as_deref()),
            (Some("/product/SKU_9"), Some("SKU_9"))
        );
        assert_eq!(
            (pv.utm_source.as_deref(), pv.utm_medium.as_deref()),
            (Some("news"), Some("email"))
        );
        assert_eq!(pv.referrer.as_deref(), Some("https://mail.example/"));
        let s = &d.events[2].event;
        assert_eq!(
            (s.event_type, s.search_query.as_deref(), &*s.event_id),
            ("search", Some("t-shirts"), "client-dedup-1")
        );
        // derived ids are deterministic
        assert_eq!(d.events[0].event.event_id.len(), 36);
        let mut i = input(Protocol::Ga4, "/mp/collect", PURCHASE.as_bytes());
        i.query = Some("measurement_id=G-ABC123&api_secret=s3cr3t");
        assert_eq!(
            collect(i).events[0].event.event_id,
            d.events[0].event.event_id
        );

        let reasons: Vec<&str> = d.rejected.iter().map(|r| r.reason.as_str()).collect();
        assert_eq!(reasons[0], "missing event name");
        assert!(reasons[1].starts_with("value: not a number"), "{reasons:?}");
        assert_eq!(reasons[2], "event is not a JSON object");
    }

    #[test]
    fn limits_and_shapes() {
        let c = crate::tests::collector();
        let many = format!(
            r#"{{"client_id":"c","events":[{}]}}"#,
            vec![r#"{"name":"x"}"#; 26].join(",")
        );
        assert_eq!(
            c.collect(&input(Protocol::Ga4, "/mp/collect", many.as_bytes()))
                .unwrap_err(),
            DecodeError::TooManyEvents { got: 26, max: 25 }
        );
        for bad in [
            r#"{"client_id":"c"}"#,
            r#"{"client_id":"c","events":[]}"#,
            r#"{"events":{}}"#,
            "[]",
        ] {
            assert!(
                matches!(
                    c.collect(&input(Protocol::Ga4, "/mp/collect", bad.as_bytes())),
                    Err(DecodeError::Shape(_))
                ),
                "{bad}"
            );
        }
        let d = c
            .collect(&input(
                Protocol::Ga4,
                "/mp/collect",
                br#"{"events":[{"name":"x"}]}"#,
            ))
            .unwrap();
        assert!(d.rejected[0].reason.starts_with("no identity"));
        let d = c
            .collect(&input(
                Protocol::Ga4,
                "/mp/collect",
                br#"{"client_id":"c","device":{"category":"mobile","operating_system":"iOS","browser":"Safari"},"events":[{"name":"view_item"}]}"#,
            ))
            .unwrap();
        let e = &d.events[0].event;
        assert_eq!(
            (e.device_type, e.os.as_deref(), e.browser.as_deref()),
            ("mobile", Some("iOS"), Some("Safari"))
        );
    }
}
