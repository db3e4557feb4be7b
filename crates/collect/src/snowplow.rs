//! Snowplow tracker protocol: `POST /com.snowplowanalytics.snowplow/tp2`
//! (`{"schema":"iglu:…/payload_data/…","data":[{…}]}`, every value a
//! string), `GET /i?…` (one event in the query string, a browser-type
//! request) and form-encoded POSTs.
//!
//! Events: `pv` page view, `pp` page ping, `se` structured (named by its
//! action), `ue` self-describing (named by its schema; the
//! `snowplow_ecommerce_action` and `site_search` schemas are mapped), and the
//! legacy `tr` transaction and `ti` transaction item. Contexts (`co`/`cx`)
//! contribute the ecommerce product, transaction, refund, cart and user
//! entities and the client session. Time: `ttm` when sent, else
//! `dtm + (received − stm)`.

use std::borrow::Cow;

use serde_json::value::RawValue;
use shoplake_core::event::percent_decode;

use crate::ecommerce::{currency, event_type, line_item};
use crate::enrich::device_hint;
use crate::json::{self, PropsOut, Str, owned, text};
use crate::segment::base64_any;
use crate::{Credential, DecodeError, Draft, Req, epoch_time};

/// The query or form parameters as a JSON object of strings.
fn params_json(q: &str) -> String {
    let mut s = String::with_capacity(q.len() + 64);
    s.push('{');
    for pair in q.split('&') {
        if pair.is_empty() {
            continue;
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if s.len() > 1 {
            s.push(',');
        }
        json::push_json_str(&mut s, &percent_decode(k));
        s.push(':');
        json::push_json_str(&mut s, &percent_decode(v));
    }
    s.push('}');
    s
}

pub(crate) fn decode(req: &mut Req<'_, '_>) -> Result<(), DecodeError> {
    let input = req.input;
    let form = input
        .content_type
        .is_some_and(|c| c.contains("x-www-form-urlencoded"));
    if input.body.is_empty() || form {
        let params = if input.body.is_empty() {
            req.browser = true;
            input.query.unwrap_or("")
        } else {
            std::str::from_utf8(input.body).map_err(|_| DecodeError::NotUtf8)?
        };
        if params.trim().is_empty() {
            return Err(DecodeError::Shape("no tracker parameters".into()));
        }
        let raw = params_json(params.trim());
        if req.admit(&raw) {
            match json::obj(&raw) {
                Ok(o) => item(req, o, &raw, 0),
                Err(e) => req.reject(format!("invalid event: {e}"), &raw),
            }
        }
        return Ok(());
    }
    let body = std::str::from_utf8(input.body).map_err(|_| DecodeError::NotUtf8)?;
    let b = body.as_bytes();
    let mut items: Option<Vec<Parsed<'_>>> = None;
    json::split::object(body, |k, at| {
        if json::split::key_is(k, "data") && items.is_none() && b.get(at) == Some(&b'[') {
            let mut v = Vec::with_capacity(64);
            let end = json::split::elements(body, at, |i, raw, r| v.push((i, raw, r)))?;
            items = Some(v);
            return Ok(Some(end));
        }
        Ok(None)
    })
    .map_err(|e| match body.trim_start().starts_with('{') {
        true => DecodeError::split(e),
        false => match serde_json::from_str::<serde::de::IgnoredAny>(body) {
            Err(e) => DecodeError::json(e),
            Ok(_) => DecodeError::Shape("expected a payload_data object".into()),
        },
    })?;
    let items =
        items.ok_or_else(|| DecodeError::Shape("payload_data without a data array".into()))?;
    req.out.events.reserve(items.len());
    for (i, raw, r) in items {
        if let Some(o) = req.parsed(raw, r) {
            item(req, o, raw, i);
        }
    }
    Ok(())
}

type Parsed<'a> = (
    usize,
    &'a str,
    Option<Result<json::Obj<'a>, serde_json::Error>>,
);

fn item<'a>(req: &mut Req<'_, '_>, o: json::Obj<'a>, raw: &'a str, index: usize) {
    match decode_item(req, o, raw) {
        Ok(d) => req.finish(d, index),
        Err(e) => req.reject(e, raw),
    }
}

#[derive(Default)]
struct Slots<'a> {
    e: Option<Cow<'a, str>>,
    ue_pr: Option<&'a RawValue>,
    ue_px: Option<&'a RawValue>,
    co: Option<&'a RawValue>,
    cx: Option<&'a RawValue>,
    dtm: Option<Cow<'a, str>>,
    stm: Option<Cow<'a, str>>,
    ttm: Option<Cow<'a, str>>,
    nuid: Option<Cow<'a, str>>,
    se_ac: Option<Cow<'a, str>>,
    order_total: Option<&'a RawValue>,
    ti: [Option<&'a RawValue>; 5], // sku, name, category, price, quantity
}

fn decode_item<'a>(
    req: &mut Req<'_, '_>,
    o: json::Obj<'a>,
    raw: &'a str,
) -> Result<Draft<'a>, String> {
    let mut d = Draft::new(Cow::Borrowed(raw), "snowplow");
    let mut out = PropsOut::default();
    let mut s = Slots::default();
    let ev = &mut d.ev;
    for (k, v) in &o.0 {
        let v: &'a RawValue = v;
        match &**k {
            "e" => s.e = text(v),
            "eid" => ev.event_id = owned(Some(v)).unwrap_or_default(),
            "aid" => {
                if let Some(a) = text(v) {
                    req.credential(Credential::AppId(a.trim().to_owned()));
                }
                out.raw("aid", v);
            }
            "p" => {
                d.hints.device = text(v).and_then(|p| match &*p {
                    "mob" => Some("mobile"),
                    "pc" => Some("desktop"),
                    other => device_hint(other).filter(|d| *d != "desktop"),
                });
                out.raw("p", v);
            }
            "uid" => ev.user_id = owned(Some(v)),
            "duid" => ev.anonymous_id = owned(Some(v)),
            "nuid" | "tnuid" => s.nuid = text(v),
            "sid" => ev.session_id = owned(Some(v)),
            "dtm" => s.dtm = text(v),
            "stm" => s.stm = text(v),
            "ttm" => s.ttm = text(v),
            "url" => ev.page_url = owned(Some(v)),
            "refr" => ev.referrer = owned(Some(v)),
            "ua" => d.ua = text(v),
            "ip" => d.ip = text(v),
            "ue_pr" => s.ue_pr = Some(v),
            "ue_px" => s.ue_px = Some(v),
            "co" => s.co = Some(v),
            "cx" => s.cx = Some(v),
            "tr_id" | "ti_id" => ev.order_id = owned(Some(v)),
            "tr_tt" => s.order_total = Some(v),
            "tr_cu" | "ti_cu" => ev.currency = currency(text(v)),
            "ti_sk" => s.ti[0] = Some(v),
            "ti_nm" => s.ti[1] = Some(v),
            "ti_ca" => s.ti[2] = Some(v),
            "ti_pr" => s.ti[3] = Some(v),
            "ti_qu" => s.ti[4] = Some(v),
            "se_ac" => {
                s.se_ac = text(v);
                out.raw("se_ac", v);
            }
            _ => out.raw(k, v),
        }
    }
    if ev.anonymous_id.is_none() {
        ev.anonymous_id = json::own(s.nuid.take());
    }
    d.fixed_ts = epoch_time("ttm", s.ttm.as_deref(), 1000)?;
    d.client_ts = epoch_time("dtm", s.dtm.as_deref(), 1000)?;
    d.sent_at = epoch_time("stm", s.stm.as_deref(), 1000)?;

    let e = s.e.as_deref().map(str::trim).unwrap_or("");
    match e {
        "pv" => named(ev, "page_view", "page_view"),
        "pp" => named(ev, "custom", "page_ping"),
        "se" => {
            let name = s.se_ac.take().unwrap_or(Cow::Borrowed("structured_event"));
            ev.event_type = event_type(&name);
            ev.event_name = Cow::Owned(name.into_owned());
        }
        "tr" => {
            named(ev, "purchase", "transaction");
            ev.revenue = json::money(s.order_total).map_err(|e| format!("tr_tt: {e}"))?;
        }
        "ti" => {
            named(ev, "custom", "transaction_item");
            let [sku, name, cat, price, qty] = s.ti;
            let li = shoplake_core::event::LineItem {
                product_id: owned(sku),
                sku: owned(sku),
                name: owned(name),
                category: owned(cat),
                brand: None,
                price: json::money(price).map_err(|e| format!("ti_pr: {e}"))?,
                quantity: json::quantity(qty).map_err(|e| format!("ti_qu: {e}"))?,
            };
            ev.product_id = li.product_id.clone();
            ev.products.push(li);
        }
        "ue" => {}
        "" => return Err("missing event type (e)".into()),
        other => named(ev, "custom", other),
    }
    if e != "tr"
        && let Some(v) = s.order_total
    {
        out.raw("tr_tt", v);
    }

    // contexts first: the event's own fields win over entity fallbacks
    let mut ctx = Entities::default();
    if let Some(co) = blob(s.co, s.cx, "cx")? {
        contexts(&co, &mut ctx, &mut out)?;
    }
    if e == "ue" {
        let Some(ue) = blob(s.ue_pr, s.ue_px, "ue_px")? else {
            return Err("self-describing event without ue_pr or ue_px".into());
        };
        self_describing(&ue, ev, &mut out)?;
    }
    let ev = &mut d.ev;
    if !ctx.products.is_empty() {
        if ev.product_id.is_none() {
            ev.product_id = ctx.products[0]
                .product_id
                .clone()
                .or_else(|| ctx.products[0].sku.clone());
        }
        ev.products.append(&mut ctx.products);
    }
    if ev.order_id.is_none() {
        ev.order_id = ctx.order_id;
    }
    if ev.currency.is_none() {
        ev.currency = ctx.currency;
    }
    if ev.revenue.is_none() {
        ev.revenue = match ev.event_type {
            "purchase" => ctx.revenue,
            "refund" => ctx.refund.or(ctx.revenue),
            _ => None,
        };
    }
    if ev.session_id.is_none() {
        ev.session_id = ctx.session_id;
    }
    if ev.anonymous_id.is_none() {
        ev.anonymous_id = ctx.session_user;
    }
    if ev.user_id.is_none() {
        ev.user_id = ctx.user_id;
    }
    ev.properties = out.finish();
    Ok(d)
}

fn named(ev: &mut shoplake_core::event::Event<'static>, ty: &'static str, name: &str) {
    ev.event_type = ty;
    ev.event_name = Cow::Owned(name.to_owned());
}

/// A JSON blob sent either plain (`ue_pr`, `co`) or base64url (`ue_px`, `cx`).
fn blob(
    plain: Option<&RawValue>,
    b64: Option<&RawValue>,
    field: &str,
) -> Result<Option<String>, String> {
    if let Some(t) = plain.and_then(text) {
        return Ok(Some(t.into_owned()));
    }
    let Some(t) = b64.and_then(text) else {
        return Ok(None);
    };
    let bytes = base64_any(&t).map_err(|e| format!("{field}: bad base64: {e}"))?;
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| format!("{field}: not UTF-8 text"))
}

/// `(vendor, name)` of an Iglu URI: `iglu:com.acme/add_to_basket/jsonschema/1-0-0`.
fn schema_name(uri: &str) -> (&str, &str) {
    let rest = uri.strip_prefix("iglu:").unwrap_or(uri);
    let mut it = rest.split('/');
    (it.next().unwrap_or(""), it.next().unwrap_or(""))
}

/// `{"schema": …, "data": …}` of a self-describing JSON.
fn sdj(v: &RawValue) -> Result<(Cow<'_, str>, &RawValue), String> {
    let o = json::obj(v.get()).map_err(|e| format!("self-describing JSON: {e}"))?;
    let mut schema = None;
    let mut data = None;
    for (k, v) in o.0 {
        match &*k {
            "schema" => schema = text(v),
            "data" => data = Some(v),
            _ => {}
        }
    }
    match (schema, data) {
        (Some(s), Some(d)) => Ok((s, d)),
        _ => Err("self-describing JSON without schema and data".into()),
    }
}

fn self_describing(
    ue: &str,
    ev: &mut shoplake_core::event::Event<'static>,
    out: &mut PropsOut,
) -> Result<(), String> {
    let outer: &RawValue = serde_json::from_str(ue).map_err(|e| format!("ue: {e}"))?;
    let (_, inner) = sdj(outer).map_err(|e| format!("ue: {e}"))?;
    let (schema, data) = sdj(inner).map_err(|e| format!("ue: {e}"))?;
    let (vendor, name) = schema_name(&schema);
    if json::kind(data) != b'{' {
        return Err("ue: event data is not an object".into());
    }
    let fields = json::obj(data.get()).map_err(|e| format!("ue: {e}"))?;
    match (vendor, name) {
        ("com.snowplowanalytics.snowplow.ecommerce", "snowplow_ecommerce_action") => {
            let mut ty = None;
            for (k, v) in &fields.0 {
                match &**k {
                    "type" => ty = text(v),
                    "name" => out.raw("list_name", v),
                    _ => out.raw(k, v),
                }
            }
            let ty = ty.ok_or("ue: ecommerce action without a type")?;
            ev.event_type = event_type(&ty);
            ev.event_name = Cow::Owned(ty.into_owned());
        }
        ("com.snowplowanalytics.snowplow", "site_search") => {
            for (k, v) in &fields.0 {
                if &**k == "terms" && json::kind(v) == b'[' {
                    let terms: Vec<Str<'_>> = serde_json::from_str(v.get()).unwrap_or_default();
                    let q: Vec<&str> = terms.iter().map(|t| &*t.0).collect();
                    if !q.is_empty() {
                        ev.search_query = Some(Cow::Owned(q.join(" ")));
                    }
                } else {
                    out.raw(k, v);
                }
            }
            named(ev, "search", "site_search");
        }
        _ => {
            if name.is_empty() {
                return Err("ue: schema without a name".into());
            }
            for (k, v) in &fields.0 {
                out.raw(k, v);
            }
            out.string("event_schema", &schema);
            ev.event_type = event_type(name);
            ev.event_name = Cow::Owned(name.to_owned());
        }
    }
    Ok(())
}

#[derive(Default)]
struct Entities {
    products: Vec<shoplake_core::event::LineItem<'static>>,
    order_id: Option<Cow<'static, str>>,
    revenue: Option<i128>,
    refund: Option<i128>,
    currency: Option<Cow<'static, str>>,
    session_id: Option<Cow<'static, str>>,
    session_user: Option<Cow<'static, str>>,
    user_id: Option<Cow<'static, str>>,
}

fn contexts(co: &str, ctx: &mut Entities, out: &mut PropsOut) -> Result<(), String> {
    let outer: &RawValue = serde_json::from_str(co).map_err(|e| format!("contexts: {e}"))?;
    let (_, list) = sdj(outer).map_err(|e| format!("contexts: {e}"))?;
    if json::kind(list) != b'[' {
        return Err("contexts: data is not an array".into());
    }
    let list = json::arr(list.get()).map_err(|e| format!("contexts: {e}"))?;
    for ent in &list.0 {
        let Ok((schema, data)) = sdj(ent) else {
            continue;
        };
        let (vendor, name) = schema_name(&schema);
        let field = |key: &str| -> Option<&RawValue> {
            json::obj(data.get())
                .ok()?
                .0
                .into_iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v)
        };
        match (vendor, name) {
            ("com.snowplowanalytics.snowplow.ecommerce", "product") => {
                let (li, cur) = line_item(data).map_err(|e| format!("product entity: {e}"))?;
                ctx.products.push(li);
                if ctx.currency.is_none() {
                    ctx.currency = cur;
                }
            }
            ("com.snowplowanalytics.snowplow.ecommerce", "transaction") => {
                ctx.order_id = owned(field("transaction_id"));
                ctx.revenue = json::money(field("revenue"))
                    .map_err(|e| format!("transaction entity revenue: {e}"))?;
                ctx.currency = currency(field("currency").and_then(text)).or(ctx.currency.take());
                out.raw("transaction", data);
            }
            ("com.snowplowanalytics.snowplow.ecommerce", "refund") => {
                ctx.order_id = owned(field("transaction_id"));
                ctx.refund = json::money(field("refund_amount"))
                    .map_err(|e| format!("refund entity refund_amount: {e}"))?;
                ctx.currency = currency(field("currency").and_then(text)).or(ctx.currency.take());
                out.raw("refund", data);
            }
            (
                "com.snowplowanalytics.snowplow.ecommerce",
                n @ ("cart" | "checkout_step" | "promotion"),
            ) => {
                if n == "cart" && ctx.currency.is_none() {
                    ctx.currency = currency(field("currency").and_then(text));
                }
                out.raw(n, data);
            }
            ("com.snowplowanalytics.snowplow.ecommerce", "user") => {
                ctx.user_id = owned(field("id"));
            }
            ("com.snowplowanalytics.snowplow", "client_session") => {
                ctx.session_id = owned(field("sessionId"));
                ctx.session_user = owned(field("userId"));
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{RECEIVED, collect, input};
    use crate::{Credential, Protocol};
    use base64::Engine;

    fn b64url(s: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    }

    #[test]
    fn tp2_ecommerce_action_with_product_contexts() {
        let ue = r#"{"schema":"iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0","data":{"schema":"iglu:com.snowplowanalytics.snowplow.ecommerce/snowplow_ecommerce_action/jsonschema/1-0-2","data":{"type":"add_to_cart"}}}"#;
        let cx = r#"{"schema":"iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0","data":[
            {"schema":"iglu:com.snowplowanalytics.snowplow.ecommerce/product/jsonschema/1-0-0","data":{"id":"P123","name":"Red Shoes","category":"shoes/running","price":89.99,"quantity":2,"currency":"eur","brand":"Acme"}},
            {"schema":"iglu:com.snowplowanalytics.snowplow.ecommerce/cart/jsonschema/1-0-0","data":{"cart_id":"c1","total_value":179.98,"currency":"EUR"}},
            {"schema":"iglu:com.snowplowanalytics.snowplow/client_session/jsonschema/1-0-2","data":{"userId":"dev-1","sessionId":"sess-1","sessionIndex":3,"previousSessionId":null,"storageMechanism":"COOKIE_1","firstEventId":"x"}},
            {"schema":"iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0","data":{"id":"wp"}}]}"#;
        let purchase_ue = r#"{"schema":"iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0","data":{"schema":"iglu:com.snowplowanalytics.snowplow.ecommerce/snowplow_ecommerce_action/jsonschema/1-0-2","data":{"type":"transaction"}}}"#;
        let purchase_cx = r#"{"schema":"iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0","data":[
            {"schema":"iglu:com.snowplowanalytics.snowplow.ecommerce/transaction/jsonschema/1-0-0","data":{"transaction_id":"T-1","revenue":45.5,"currency":"USD","payment_method":"card","total_quantity":1}},
            {"schema":"iglu:com.snowplowanalytics.snowplow.ecommerce/product/jsonschema/1-0-0","data":{"id":"P9","category":"x","price":45.5,"currency":"USD"}}]}"#;
        let body = serde_json::json!({
            "schema": "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4",
            "data": [
                {"e": "ue", "eid": "e-1", "aid": "shop-web", "p": "web", "tv": "js-3.17.0", "duid": "d-1",
                 "uid": "cust-7", "dtm": "1714557600000", "stm": "1714557605000",
                 "url": "https://shop.example/product/P123?utm_source=ig", "refr": "https://instagram.com/",
                 "ue_px": b64url(ue), "cx": b64url(cx), "ip": "203.0.113.77"},
                {"e": "ue", "eid": "e-2", "aid": "shop-web", "duid": "d-1", "ttm": "1714557000000",
                 "ue_pr": purchase_ue, "co": purchase_cx},
                {"e": "ue", "eid": "e-3", "aid": "shop-web", "duid": "d-1", "ue_px": "%%%"},
                {"eid": "e-4", "duid": "d-1"},
                {"e": "pv", "eid": "e-5"}
            ]
        })
        .to_string();
        let d = collect(input(
            Protocol::Snowplow,
            "/com.snowplowanalytics.snowplow/tp2",
            body.as_bytes(),
        ));
        assert_eq!(d.credential, Some(Credential::AppId("shop-web".into())));
        assert_eq!(d.events.len(), 2, "{:?}", d.rejected);
        let e = &d.events[0].event;
        assert_eq!(
            (e.event_type, &*e.event_name, &*e.event_id),
            ("add_to_cart", "add_to_cart", "e-1")
        );
        assert_eq!(
            (e.anonymous_id.as_deref(), e.user_id.as_deref()),
            (Some("d-1"), Some("cust-7"))
        );
        assert_eq!(e.session_id.as_deref(), Some("sess-1"));
        assert_eq!(e.products.len(), 1);
        assert_eq!(e.products[0].product_id.as_deref(), Some("P123"));
        assert_eq!(e.products[0].price, Some(8999));
        assert_eq!(e.products[0].quantity, Some(2));
        assert_eq!(e.currency.as_deref(), Some("EUR"));
        assert_eq!(e.revenue, None);
        assert_eq!(e.product_id.as_deref(), Some("P123"));
        assert_eq!(e.utm_source.as_deref(), Some("ig"));
        assert_eq!(e.ip_anon.as_deref(), Some("203.0.113.0"));
        assert!(!d.events[0].raw.contains("203.0.113.77"));
        // dtm + (received − stm)
        assert_eq!(
            e.event_ts,
            1_714_557_600_000_000 + RECEIVED - 1_714_557_605_000_000
        );
        let p: serde_json::Value = serde_json::from_str(e.properties.as_deref().unwrap()).unwrap();
        assert_eq!(p["cart"]["cart_id"], "c1");
        assert_eq!(p["tv"], "js-3.17.0");

        let t = &d.events[1].event;
        assert_eq!(t.event_type, "purchase");
        assert_eq!(
            (t.order_id.as_deref(), t.revenue, t.currency.as_deref()),
            (Some("T-1"), Some(4550), Some("USD"))
        );
        assert_eq!(t.event_ts, 1_714_557_000_000_000, "ttm is taken as is");

        let reasons: Vec<&str> = d.rejected.iter().map(|r| r.reason.as_str()).collect();
        assert!(reasons[0].starts_with("ue_px: bad base64"), "{reasons:?}");
        assert_eq!(reasons[1], "missing event type (e)");
        assert!(reasons[2].starts_with("no identity"));
    }

    #[test]
    fn get_pageview_is_browser_type() {
        let q = "e=pv&url=https%3A%2F%2Fshop.example%2Fsearch%3Fq%3Dred%2Bshoes&page=Search&tv=js-2.0&aid=shop&p=web&duid=abc&sid=s1&eid=ev1&dtm=1714557600000&tz=Europe%2FLondon&res=1920x1080";
        let mut i = input(Protocol::Snowplow, "/i", b"");
        i.query = Some(q);
        let d = collect(i);
        assert_eq!(d.credential, Some(Credential::AppId("shop".into())));
        let c = &d.events[0];
        let e = &c.event;
        assert_eq!((e.event_type, &*e.event_name), ("page_view", "page_view"));
        assert_eq!(e.page_path.as_deref(), Some("/search"));
        assert_eq!(e.search_query.as_deref(), Some("red shoes"));
        assert_eq!(e.session_id.as_deref(), Some("s1"));
        assert_eq!(
            (e.is_bot, e.device_type),
            (true, "bot"),
            "GET pixel without a user agent"
        );
        let raw: serde_json::Value = serde_json::from_str(&c.raw).unwrap();
        assert_eq!(raw["tz"], "Europe/London");
        assert_eq!(raw["url"], "https://shop.example/search?q=red+shoes");

        let mut i = input(Protocol::Snowplow, "/i", b"");
        i.query = Some(q);
        i.user_agent = Some(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
        );
        let e = &collect(i).events[0].event;
        assert_eq!(
            (e.is_bot, e.device_type, e.os.as_deref()),
            (false, "mobile", Some("iOS"))
        );

        let mut i = input(Protocol::Snowplow, "/i", b"");
        i.query = Some(q);
        i.user_agent = Some("curl/8.4.0");
        assert!(
            collect(i).events[0].event.is_bot,
            "a library on a browser-type request is a bot"
        );
    }

    #[test]
    fn legacy_transaction_and_item() {
        let body = r#"{"schema":"iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4","data":[
            {"e":"tr","tr_id":"order-1","tr_af":"web","tr_tt":"8000","tr_tx":"0","tr_sh":"0","tr_cu":"GBP","duid":"d","eid":"t1","aid":"a"},
            {"e":"ti","ti_id":"order-1","ti_sk":"sku-1","ti_nm":"Lamp","ti_ca":"home","ti_pr":"2000.5","ti_qu":"4","ti_cu":"GBP","duid":"d","eid":"t2"},
            {"e":"ti","ti_id":"order-1","ti_sk":"sku-2","ti_pr":"1","ti_qu":"-4","duid":"d","eid":"t3"},
            {"e":"se","se_ca":"shop","se_ac":"add-to-cart","se_la":"P1","duid":"d","eid":"t4"}]}"#;
        let d = collect(input(
            Protocol::Snowplow,
            "/com.snowplowanalytics.snowplow/tp2",
            body.as_bytes(),
        ));
        assert_eq!(d.events.len(), 3, "{:?}", d.rejected);
        let tr = &d.events[0].event;
        assert_eq!(
            (tr.event_type, &*tr.event_name),
            ("purchase", "transaction")
        );
        assert_eq!(
            (tr.order_id.as_deref(), tr.revenue, tr.currency.as_deref()),
            (Some("order-1"), Some(800_000), Some("GBP"))
        );
        let p: serde_json::Value = serde_json::from_str(tr.properties.as_deref().unwrap()).unwrap();
        assert_eq!(p["tr_af"], "web");
        let ti = &d.events[1].event;
        assert_eq!(
            (ti.event_type, &*ti.event_name),
            ("custom", "transaction_item")
        );
        assert_eq!(ti.order_id.as_deref(), Some("order-1"));
        assert_eq!(ti.products[0].sku.as_deref(), Some("sku-1"));
        assert_eq!(ti.products[0].price, Some(200_050));
        assert_eq!(ti.products[0].quantity, Some(4));
        assert!(d.rejected[0].reason.starts_with("ti_qu: negative"));
        let se = &d.events[2].event;
        assert_eq!(
            (se.event_type, &*se.event_name),
            ("add_to_cart", "add-to-cart")
        );
    }

    #[test]
    fn site_search_and_custom_schema() {
        let body = serde_json::json!({"schema":"iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4","data":[
            {"e":"ue","duid":"d","ue_pr": r#"{"schema":"iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0","data":{"schema":"iglu:com.snowplowanalytics.snowplow/site_search/jsonschema/1-0-0","data":{"terms":["red","shoes"],"filters":{},"totalResults":12}}}"#},
            {"e":"ue","duid":"d","ue_pr": r#"{"schema":"iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0","data":{"schema":"iglu:com.acme/newsletter_signup/jsonschema/1-0-0","data":{"list":"weekly"}}}"#}
        ]}).to_string();
        let d = collect(input(
            Protocol::Snowplow,
            "/com.snowplowanalytics.snowplow/tp2",
            body.as_bytes(),
        ));
        assert_eq!(d.events.len(), 2, "{:?}", d.rejected);
        let s = &d.events[0].event;
        assert_eq!(
            (s.event_type, s.search_query.as_deref()),
            ("search", Some("red shoes"))
        );
        let c = &d.events[1].event;
        assert_eq!(
            (c.event_type, &*c.event_name),
            ("custom", "newsletter_signup")
        );
        let p: serde_json::Value = serde_json::from_str(c.properties.as_deref().unwrap()).unwrap();
        assert_eq!(p["list"], "weekly");
        assert_eq!(
            p["event_schema"],
            "iglu:com.acme/newsletter_signup/jsonschema/1-0-0"
        );
    }

    #[test]
    fn request_errors() {
        let c = crate::tests::collector();
        let e = |body: &str| {
            c.collect(&input(
                Protocol::Snowplow,
                "/com.snowplowanalytics.snowplow/tp2",
                body.as_bytes(),
            ))
            .unwrap_err()
        };
        assert!(matches!(e("{"), DecodeError::Json(_)));
        assert!(matches!(e("{}"), DecodeError::Shape(_)));
        assert!(matches!(e(r#"{"data":"x"}"#), DecodeError::Shape(_)));
        assert!(matches!(
            c.collect(&input(Protocol::Snowplow, "/i", b"")),
            Err(DecodeError::Shape(_))
        ));
    }
}
