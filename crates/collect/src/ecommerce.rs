//! Shared e-commerce mapping: event names of every dialect to canonical
//! types, line items of every shape (Segment `products`, GA4 `items`, AWS
//! Clickstream `items`, Snowplow product entities) and the order fields.

use std::borrow::Cow;

use serde_json::value::RawValue;
use shoplake_core::event::{Event, LineItem, canonical_event_type};

use crate::json::{self, PropsOut, money, owned, quantity, text};

/// The canonical type of an event name as sent. Consults this crate's table
/// of spec names that `canonical_event_type` does not know (PostHog `$`
/// events, AWS Clickstream `_` presets, Segment v2 and Snowplow names), then
/// `canonical_event_type`.
pub(crate) fn event_type(name: &str) -> &'static str {
    let mut buf = [0u8; 64];
    let mut n = 0;
    let t = name.trim();
    let t = t
        .strip_prefix('$')
        .or_else(|| t.strip_prefix('_'))
        .unwrap_or(t);
    for &b in t.as_bytes() {
        if n == buf.len() {
            return "custom";
        }
        buf[n] = match b {
            b' ' | b'-' | b'.' => b'_',
            b => b.to_ascii_lowercase(),
        };
        n += 1;
    }
    match &buf[..n] {
        b"product_list_filtered" | b"list_view" => "product_list_view",
        b"payment_info_entered" | b"shipping_info_entered" => "checkout_step",
        b"view_search_results" | b"product_searched" => "search",
        b"identify" | b"set" | b"profile_set" => "identify",
        b"transaction_item"
        | b"order_cancelled"
        | b"order_canceled"
        | b"order_updated"
        | b"product_clicked"
        | b"select_item"
        | b"list_click"
        | b"promo_view"
        | b"promo_click"
        | b"add_to_wishlist"
        | b"product_added_to_wishlist" => "custom",
        _ => canonical_event_type(t),
    }
}

/// E-commerce fields picked out of a property map in one pass; whatever no
/// column takes goes back into `properties`.
#[derive(Default)]
pub(crate) struct Ecom<'a> {
    order_id: Option<&'a RawValue>,
    revenue: Option<&'a RawValue>,
    total: Option<&'a RawValue>,
    value: Option<&'a RawValue>,
    currency: Option<&'a RawValue>,
    products: Option<(&'static str, &'a RawValue)>,
    product_id: Option<(&'static str, &'a RawValue)>,
    sku: Option<&'a RawValue>,
    name: Option<&'a RawValue>,
    category: Option<&'a RawValue>,
    brand: Option<&'a RawValue>,
    price: Option<&'a RawValue>,
    quantity: Option<&'a RawValue>,
    query: Option<(&'static str, &'a RawValue)>,
}

impl<'a> Ecom<'a> {
    /// Takes `key` if it is an e-commerce field (the first of a repeated key
    /// wins); `false` leaves it to the caller.
    pub fn take(&mut self, key: &str, v: &'a RawValue) -> bool {
        fn set<'a>(slot: &mut Option<&'a RawValue>, v: &'a RawValue) -> bool {
            if slot.is_some() {
                return false;
            }
            *slot = Some(v);
            true
        }
        fn set_named<'a>(
            slot: &mut Option<(&'static str, &'a RawValue)>,
            k: &'static str,
            v: &'a RawValue,
        ) -> bool {
            if slot.is_some() {
                return false;
            }
            *slot = Some((k, v));
            true
        }
        match key {
            "order_id" | "orderId" | "transaction_id" => set(&mut self.order_id, v),
            "revenue" => set(&mut self.revenue, v),
            "total" => set(&mut self.total, v),
            "value" => set(&mut self.value, v),
            "currency" => set(&mut self.currency, v),
            "products" => set_named(&mut self.products, "products", v),
            "items" => set_named(&mut self.products, "items", v),
            "product_id" => set_named(&mut self.product_id, "product_id", v),
            "productId" => set_named(&mut self.product_id, "productId", v),
            "item_id" => set_named(&mut self.product_id, "item_id", v),
            "sku" => set(&mut self.sku, v),
            "name" => set(&mut self.name, v),
            "category" => set(&mut self.category, v),
            "brand" => set(&mut self.brand, v),
            "price" => set(&mut self.price, v),
            "quantity" => set(&mut self.quantity, v),
            "query" => set_named(&mut self.query, "query", v),
            "search_term" => set_named(&mut self.query, "search_term", v),
            "search_query" => set_named(&mut self.query, "search_query", v),
            "_search_term" => set_named(&mut self.query, "_search_term", v),
            _ => false,
        }
    }

    /// Writes the fields into `ev` (whose `event_type` is already set) and
    /// returns the rest to `out`. Errors name the field at fault.
    pub fn apply(self, ev: &mut Event<'static>, out: &mut PropsOut) -> Result<(), String> {
        let revenue = money(self.revenue).map_err(|e| format!("revenue: {e}"))?;
        let total = money(self.total).map_err(|e| format!("total: {e}"))?;
        let order = matches!(ev.event_type, "purchase" | "refund");
        if order {
            ev.revenue = match (revenue, total) {
                (Some(r), _) => {
                    if let Some(t) = self.total {
                        out.raw("total", t);
                    }
                    Some(r)
                }
                (None, Some(t)) => Some(t),
                (None, None) => money(self.value).map_err(|e| format!("value: {e}"))?,
            };
            if (revenue.is_some() || total.is_some())
                && let Some(v) = self.value
            {
                out.raw("value", v);
            }
        } else {
            for (k, v) in [
                ("revenue", self.revenue),
                ("total", self.total),
                ("value", self.value),
            ] {
                if let Some(v) = v {
                    out.raw(k, v);
                }
            }
        }
        if let Some(v) = self.order_id {
            match text(v) {
                Some(t) => ev.order_id = Some(Cow::Owned(t.into_owned())),
                None => out.raw("order_id", v),
            }
        }
        if let Some(v) = self.currency {
            ev.currency = currency(text(v));
        }
        if let Some((k, v)) = self.query {
            if ev.event_type == "search" && ev.search_query.is_none() {
                ev.search_query = owned(Some(v));
            } else {
                out.raw(k, v);
            }
        }
        if let Some((k, v)) = self.products {
            match json::kind(v) {
                b'[' => {
                    let items = json::arr(v.get()).map_err(|e| format!("{k}: {e}"))?;
                    ev.products.reserve(items.0.len());
                    for (i, item) in items.0.iter().enumerate() {
                        let (li, cur) = line_item(item).map_err(|e| format!("{k}[{i}].{e}"))?;
                        if ev.currency.is_none() {
                            ev.currency = cur;
                        }
                        ev.products.push(li);
                    }
                }
                b'n' => {}
                _ => return Err(format!("{k}: not an array")),
            }
        }
        let single = self.product_id.is_some() || self.sku.is_some();
        if ev.products.is_empty() && single {
            let price = money(self.price).map_err(|e| format!("price: {e}"))?;
            let quantity = quantity(self.quantity).map_err(|e| format!("quantity: {e}"))?;
            ev.products.push(LineItem {
                product_id: owned(self.product_id.map(|p| p.1)),
                sku: owned(self.sku),
                name: owned(self.name),
                category: owned(self.category),
                brand: owned(self.brand),
                price,
                quantity,
            });
        } else {
            if let Some((k, v)) = self.product_id {
                out.raw(k, v);
            }
            for (k, v) in [
                ("sku", self.sku),
                ("name", self.name),
                ("category", self.category),
                ("brand", self.brand),
                ("price", self.price),
                ("quantity", self.quantity),
            ] {
                if let Some(v) = v {
                    out.raw(k, v);
                }
            }
        }
        if ev.product_id.is_none()
            && let Some(first) = ev.products.first()
        {
            ev.product_id = first.product_id.clone().or_else(|| first.sku.clone());
        }
        Ok(())
    }
}

/// An ISO 4217 code as sent, upper-cased.
pub(crate) fn currency(c: Option<Cow<'_, str>>) -> Option<Cow<'static, str>> {
    let c = c?;
    let t = c.trim();
    if t.is_empty() {
        return None;
    }
    Some(Cow::Owned(t.to_ascii_uppercase()))
}

/// One line item of any dialect: `product_id`/`item_id`/`id`, `sku`,
/// `name`/`item_name`, `category`/`item_category`, `brand`/`item_brand`,
/// `price`, `quantity`; also its `currency`, if it has one.
pub(crate) fn line_item(
    v: &RawValue,
) -> Result<(LineItem<'static>, Option<Cow<'static, str>>), String> {
    if json::kind(v) != b'{' {
        return Err("item: not an object".into());
    }
    let o = json::obj(v.get()).map_err(|e| format!("item: {e}"))?;
    let mut id = None;
    let mut id_fallback = None;
    let (mut sku, mut name, mut category, mut brand, mut price, mut qty, mut cur) =
        (None, None, None, None, None, None, None);
    for (k, val) in &o.0 {
        let slot = match &**k {
            "product_id" | "item_id" | "productId" => &mut id,
            "id" => &mut id_fallback,
            "sku" => &mut sku,
            "name" | "item_name" => &mut name,
            "category" | "item_category" => &mut category,
            "brand" | "item_brand" => &mut brand,
            "price" => &mut price,
            "quantity" => &mut qty,
            "currency" => &mut cur,
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(*val);
        }
    }
    let li = LineItem {
        product_id: owned(id.or(id_fallback)),
        sku: owned(sku),
        name: owned(name),
        category: owned(category),
        brand: owned(brand),
        price: money(price).map_err(|e| format!("price: {e}"))?,
        quantity: quantity(qty).map_err(|e| format!("quantity: {e}"))?,
    };
    Ok((li, currency(cur.and_then(text))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_every_dialect() {
        for (name, want) in [
            ("Order Completed", "purchase"),
            ("Products Searched", "search"),
            ("Product List Filtered", "product_list_view"),
            ("Payment Info Entered", "checkout_step"),
            ("Order Cancelled", "custom"),
            ("Product Clicked", "custom"),
            ("$pageview", "page_view"),
            ("$screen", "page_view"),
            ("$identify", "identify"),
            ("_page_view", "page_view"),
            ("_screen_view", "page_view"),
            ("_search", "search"),
            ("_profile_set", "identify"),
            ("view_search_results", "search"),
            ("list_view", "product_list_view"),
            ("transaction", "purchase"),
            ("view_item", "product_view"),
            ("begin_checkout", "checkout_started"),
            ("add_shipping_info", "checkout_step"),
            ("Product Reviewed", "review"),
            ("Signed Up", "custom"),
            ("", "custom"),
        ] {
            assert_eq!(event_type(name), want, "{name}");
        }
    }

    fn apply(event_type: &'static str, props: &str) -> (Event<'static>, Option<String>) {
        let o = json::obj(props).unwrap();
        let mut ec = Ecom::default();
        let mut out = PropsOut::default();
        for (k, v) in &o.0 {
            if !ec.take(k, v) {
                out.raw(k, v);
            }
        }
        let mut ev = Event {
            event_type,
            ..Default::default()
        };
        ec.apply(&mut ev, &mut out).unwrap();
        (ev, out.finish())
    }

    #[test]
    fn order_with_products() {
        let (ev, rest) = apply(
            "purchase",
            r#"{"order_id":"50314b8e","total":27.50,"revenue":25.00,"currency":"usd","coupon":"x",
                "products":[{"product_id":"507f","sku":"45790-32","name":"Monopoly","price":19,"quantity":1,"category":"Games"},
                            {"item_id":"505b","item_name":"Uno","price":"3.45","quantity":2}]}"#,
        );
        assert_eq!(ev.order_id.as_deref(), Some("50314b8e"));
        assert_eq!(ev.revenue, Some(2500));
        assert_eq!(ev.currency.as_deref(), Some("USD"));
        assert_eq!(ev.products.len(), 2);
        assert_eq!(ev.products[1].price, Some(345));
        assert_eq!(ev.products[1].quantity, Some(2));
        assert_eq!(ev.product_id.as_deref(), Some("507f"));
        let rest: serde_json::Value = serde_json::from_str(&rest.unwrap()).unwrap();
        assert_eq!(rest, serde_json::json!({"coupon":"x","total":27.50}));
    }

    #[test]
    fn single_product_and_leftovers() {
        let (ev, rest) = apply(
            "add_to_cart",
            r#"{"product_id":"P1","name":"Shoe","price":9.99,"quantity":3,"revenue":29.97}"#,
        );
        assert_eq!(ev.products.len(), 1);
        assert_eq!(ev.products[0].name.as_deref(), Some("Shoe"));
        assert_eq!(ev.revenue, None);
        assert_eq!(ev.product_id.as_deref(), Some("P1"));
        assert_eq!(rest.as_deref(), Some(r#"{"revenue":29.97}"#));
        let (ev, rest) = apply("page_view", r#"{"name":"Home","price":"n/a"}"#);
        assert!(ev.products.is_empty());
        assert_eq!(rest.as_deref(), Some(r#"{"name":"Home","price":"n/a"}"#));
    }

    #[test]
    fn invalid_amounts_are_errors() {
        let bad = |p: &str| {
            let o = json::obj(p).unwrap();
            let mut ec = Ecom::default();
            for (k, v) in &o.0 {
                ec.take(k, v);
            }
            let mut ev = Event {
                event_type: "purchase",
                ..Default::default()
            };
            ec.apply(&mut ev, &mut PropsOut::default()).unwrap_err()
        };
        assert!(bad(r#"{"revenue":"abc"}"#).starts_with("revenue"));
        assert!(bad(r#"{"revenue":1e15}"#).contains("out of range"));
        assert!(bad(r#"{"products":[{"price":"x"}]}"#).starts_with("products[0].price"));
        assert!(bad(r#"{"products":[{"quantity":-1}]}"#).contains("negative"));
        assert!(bad(r#"{"products":[{"quantity":1.5}]}"#).contains("integer"));
        assert!(bad(r#"{"products":{}}"#).contains("not an array"));
        assert!(bad(r#"{"products":[1]}"#).contains("not an object"));
        assert!(bad(r#"{"product_id":"p","price":true}"#).starts_with("price"));
    }
}
