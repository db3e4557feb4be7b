//! The four sources' files: one per source and day, rows formatted into a
//! reused buffer.

use std::io;
use std::path::Path;

use shoplake_core::money::format_cents;
use shoplake_core::sources::{Source, push_json_str};
use shoplake_core::time::format_date;

use crate::catalog::{CATEGORIES, Catalog, PriceUpdate, Product};
use crate::day::{
    CHANNELS, Candidate, DayOut, EVENT_NAMES, LANDING, Line, NONE, PAGE_CART, PAGE_CATEGORY,
    PAGE_CHECKOUT, PAGE_CONFIRMATION, PAGE_HOME, PAGE_PRODUCT, PAGE_SEARCH, Session,
};
use crate::people::DEVICE_NAMES;
use crate::reviews::write_review;
use crate::write::{AtomicFile, partition, push_cents, push_csv_field, push_id, push_ts, push_u64};

/// Id widths (digits after the prefix).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ids {
    pub customer: usize,
    pub product: usize,
    pub transaction: usize,
    pub session: usize,
    pub review: usize,
}

/// Rows and bytes of one written file.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Written {
    pub rows: u64,
    pub bytes: u64,
}

fn product_row(
    out: &mut String,
    id_width: usize,
    index: usize,
    p: &Product,
    cents: i64,
    stock: u32,
) {
    out.push_str("{\"product_id\":\"P");
    let n = (index + 1).to_string();
    for _ in n.len()..id_width {
        out.push('0');
    }
    out.push_str(&n);
    out.push_str("\",\"name\":");
    push_json_str(out, &p.name);
    out.push_str(",\"category\":");
    push_json_str(out, CATEGORIES[p.cat as usize].name);
    out.push_str(",\"brand\":");
    push_json_str(out, p.brand);
    out.push_str(",\"price\":");
    out.push_str(&format_cents(i128::from(cents)));
    out.push_str(",\"stock\":");
    out.push_str(&stock.to_string());
    out.push_str("}\n");
}

/// The full catalogue, on the first day.
pub(crate) fn write_catalogue(
    root: &Path,
    epoch_day: i32,
    catalog: &Catalog,
) -> io::Result<Written> {
    let (name, _) = Source::Products.default_file();
    let mut f = AtomicFile::create(&partition(root, Source::Products, epoch_day), name)?;
    let mut line = String::with_capacity(256);
    for (i, p) in catalog.products.iter().enumerate() {
        line.clear();
        product_row(&mut line, catalog.id_width, i, p, p.base_cents, p.stock);
        f.write(line.as_bytes())?;
    }
    Ok(Written {
        rows: catalog.products.len() as u64,
        bytes: f.finish()?,
    })
}

/// A repricing round: full rows of the repriced products.
pub(crate) fn write_price_update(
    root: &Path,
    epoch_day: i32,
    catalog: &Catalog,
    update: &PriceUpdate,
) -> io::Result<Written> {
    let (name, _) = Source::Products.default_file();
    let mut f = AtomicFile::create(&partition(root, Source::Products, epoch_day), name)?;
    let mut line = String::with_capacity(256);
    for (&i, &stock) in update.products.iter().zip(&update.stock) {
        let p = &catalog.products[i as usize];
        line.clear();
        product_row(
            &mut line,
            catalog.id_width,
            i as usize,
            p,
            p.price_on(update.day),
            stock,
        );
        f.write(line.as_bytes())?;
    }
    Ok(Written {
        rows: update.products.len() as u64,
        bytes: f.finish()?,
    })
}

/// One day of order lines; `first_id` is the 1-based id of the first line.
pub(crate) fn write_transactions(
    root: &Path,
    epoch_day: i32,
    lines: &[Line],
    first_id: u64,
    ids: &Ids,
) -> io::Result<Written> {
    const STATUS: [&[u8]; 3] = [b"completed", b"returned", b"refunded"];
    let (name, _) = Source::Transactions.default_file();
    let mut f = AtomicFile::create(&partition(root, Source::Transactions, epoch_day), name)?;
    let date = format_date(epoch_day);
    let mut buf = Vec::with_capacity(1 << 16);
    buf.extend_from_slice(Source::Transactions.columns().join(",").as_bytes());
    buf.push(b'\n');
    for (i, l) in lines.iter().enumerate() {
        push_id(&mut buf, b'T', first_id + i as u64, ids.transaction);
        buf.push(b',');
        push_id(&mut buf, b'C', u64::from(l.customer) + 1, ids.customer);
        buf.push(b',');
        push_id(&mut buf, b'P', u64::from(l.product) + 1, ids.product);
        buf.push(b',');
        push_u64(&mut buf, u64::from(l.qty));
        buf.push(b',');
        push_cents(&mut buf, l.cents);
        buf.push(b',');
        push_cents(&mut buf, l.cents * i64::from(l.qty));
        buf.push(b',');
        buf.extend_from_slice(date.as_bytes());
        buf.push(b',');
        buf.extend_from_slice(STATUS[l.status as usize]);
        buf.push(b'\n');
        if buf.len() > 60_000 {
            f.write(&buf)?;
            buf.clear();
        }
    }
    f.write(&buf)?;
    Ok(Written {
        rows: lines.len() as u64,
        bytes: f.finish()?,
    })
}

fn push_utm(buf: &mut Vec<u8>, s: &Session, sep: u8) {
    let (source, medium, campaigns) = CHANNELS[s.channel as usize];
    if source.is_empty() {
        return;
    }
    buf.push(sep);
    buf.extend_from_slice(b"utm_source=");
    buf.extend_from_slice(source.as_bytes());
    buf.extend_from_slice(b"&utm_medium=");
    buf.extend_from_slice(medium.as_bytes());
    buf.extend_from_slice(b"&utm_campaign=");
    buf.extend_from_slice(campaigns[s.campaign as usize].as_bytes());
}

/// One day of clickstream events. Session ids start at `first_session`,
/// transaction ids (for the confirmation page) at `first_line`.
pub(crate) fn write_clickstream(
    root: &Path,
    epoch_day: i32,
    day: &DayOut,
    first_session: u64,
    first_line: u64,
    catalog: &Catalog,
    ids: &Ids,
) -> io::Result<Written> {
    let (name, _) = Source::Clickstream.default_file();
    let mut f = AtomicFile::create(&partition(root, Source::Clickstream, epoch_day), name)?;
    let date = format_date(epoch_day);
    let date = date.as_bytes();
    let mut buf = Vec::with_capacity(1 << 16);
    for e in &day.events {
        let s = &day.sessions[e.session as usize];
        buf.extend_from_slice(b"{\"session_id\":\"");
        push_id(
            &mut buf,
            b'S',
            first_session + u64::from(e.session),
            ids.session,
        );
        buf.extend_from_slice(b"\",\"customer_id\":\"");
        if s.customer != NONE {
            push_id(&mut buf, b'C', u64::from(s.customer) + 1, ids.customer);
        }
        buf.extend_from_slice(b"\",\"event_type\":\"");
        buf.extend_from_slice(EVENT_NAMES[e.kind as usize].as_bytes());
        buf.extend_from_slice(b"\",\"page\":\"");
        let mut sep = b'?';
        match e.page & !LANDING {
            PAGE_HOME => buf.push(b'/'),
            PAGE_PRODUCT => {
                buf.extend_from_slice(b"/product/");
                push_id(&mut buf, b'P', u64::from(e.arg) + 1, ids.product);
            }
            PAGE_CATEGORY => {
                buf.extend_from_slice(b"/category/");
                buf.extend_from_slice(CATEGORIES[e.arg as usize].slug.as_bytes());
            }
            PAGE_SEARCH => {
                buf.extend_from_slice(b"/search?q=");
                buf.extend_from_slice(catalog.products[e.arg as usize].query.as_bytes());
                sep = b'&';
            }
            PAGE_CART => {
                buf.extend_from_slice(b"/cart?product_id=");
                push_id(&mut buf, b'P', u64::from(e.arg) + 1, ids.product);
                sep = b'&';
            }
            PAGE_CHECKOUT => buf.extend_from_slice(b"/checkout"),
            PAGE_CONFIRMATION => {
                buf.extend_from_slice(b"/checkout/confirmation?order_id=");
                push_id(
                    &mut buf,
                    b'T',
                    first_line + u64::from(e.arg),
                    ids.transaction,
                );
                sep = b'&';
            }
            _ => unreachable!("page kind"),
        }
        if e.page & LANDING != 0 {
            push_utm(&mut buf, s, sep);
        }
        buf.extend_from_slice(b"\",\"timestamp\":\"");
        push_ts(&mut buf, date, e.t_ms);
        buf.extend_from_slice(b"\",\"device\":\"");
        buf.extend_from_slice(DEVICE_NAMES[s.device as usize].as_bytes());
        buf.extend_from_slice(b"\"}\n");
        if buf.len() > 60_000 {
            f.write(&buf)?;
            buf.clear();
        }
    }
    f.write(&buf)?;
    Ok(Written {
        rows: day.events.len() as u64,
        bytes: f.finish()?,
    })
}

/// One day of reviews; `first_id` is the 1-based id of the first review.
pub(crate) fn write_reviews(
    root: &Path,
    epoch_day: i32,
    reviews: &[Candidate],
    first_id: u64,
    seed: u64,
    catalog: &Catalog,
    ids: &Ids,
) -> io::Result<Written> {
    let (name, _) = Source::Reviews.default_file();
    let mut f = AtomicFile::create(&partition(root, Source::Reviews, epoch_day), name)?;
    let date = format_date(epoch_day);
    let mut buf = Vec::with_capacity(1 << 16);
    buf.extend_from_slice(Source::Reviews.columns().join(",").as_bytes());
    buf.push(b'\n');
    for (i, c) in reviews.iter().enumerate() {
        let product = &catalog.products[c.product as usize];
        let (rating, text) = write_review(seed, c, product);
        push_id(&mut buf, b'R', first_id + i as u64, ids.review);
        buf.push(b',');
        push_id(&mut buf, b'P', u64::from(c.product) + 1, ids.product);
        buf.push(b',');
        push_id(&mut buf, b'C', u64::from(c.customer) + 1, ids.customer);
        buf.push(b',');
        push_u64(&mut buf, u64::from(rating));
        buf.push(b',');
        if let Some(t) = &text {
            push_csv_field(&mut buf, t);
        }
        buf.push(b',');
        buf.extend_from_slice(date.as_bytes());
        buf.push(b'\n');
        if buf.len() > 60_000 {
            f.write(&buf)?;
            buf.clear();
        }
    }
    f.write(&buf)?;
    Ok(Written {
        rows: reviews.len() as u64,
        bytes: f.finish()?,
    })
}
