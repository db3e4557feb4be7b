//! Arrow record batches in PostgreSQL's binary `COPY` format, for
//! `COPY ... FROM STDIN (FORMAT binary)` (see [`crate::warehouse`]).
//!
//! ## The format
//! ([PostgreSQL docs](https://www.postgresql.org/docs/current/sql-copy.html),
//! "Binary Format"): an 11-byte signature `PGCOPY\n\xff\r\n\0`, an `i32`
//! flags field (0) and an `i32` header-extension length (0); then per row an
//! `i16` field count and, per field, an `i32` byte length (-1: NULL) followed
//! by the value in the type's binary send format; then an `i16` -1. Every
//! integer is big-endian.
//!
//! ## Values
//! | Arrow | PostgreSQL | bytes |
//! | --- | --- | --- |
//! | Boolean | boolean | 1 byte, 0 or 1 |
//! | Int8, Int16 | smallint | `i16` |
//! | Int32, UInt8, UInt16 | integer | `i32` |
//! | Int64, UInt32, UInt64 | bigint | `i64` (a UInt64 above `i64::MAX` is an error) |
//! | Float16, Float32 | real | IEEE 754 `f32` |
//! | Float64 | double precision | IEEE 754 `f64` |
//! | Decimal32/64/128(p, s), 0 ≤ s ≤ p | numeric(p,s) | `i16` ndigits, `i16` weight, `u16` sign, `u16` dscale, ndigits base-10000 `i16` digits |
//! | Utf8, LargeUtf8, Utf8View | text | UTF-8 bytes (NUL characters, which text cannot hold, are dropped) |
//! | Binary, LargeBinary, BinaryView, FixedSizeBinary | bytea | the bytes |
//! | Date32, Date64 | date | `i32` days since 2000-01-01 |
//! | Timestamp(unit, tz) | timestamptz (tz) / timestamp (no tz) | `i64` µs since 2000-01-01 (ns truncated) |
//! | List, LargeList, FixedSizeList, Struct, Map | jsonb | version byte 1, then the JSON text |
//! | Dictionary(k, v) | as v | |
//! | anything else | text | Arrow's display text |

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Date32Array, Decimal128Array,
    Float32Array, Float64Array, Int16Array, Int32Array, Int64Array, LargeStringArray, RecordBatch,
    StringArray, StringViewArray, TimestampMicrosecondArray,
};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{DataType, Field, FieldRef, TimeUnit};
use arrow::json::writer::{EncoderOptions, NullableEncoder, make_encoder};
use arrow::util::display::{ArrayFormatter, FormatOptions};

use crate::{JobError, Result};

/// The signature, flags and header extension that open a binary COPY stream.
pub const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// The trailer that ends a binary COPY stream.
pub const TRAILER: &[u8] = &[0xff, 0xff];

/// Days from 1970-01-01 (Arrow's epoch) to 2000-01-01 (PostgreSQL's).
const PG_EPOCH_DAYS: i32 = 10_957;

/// Microseconds from 1970-01-01 to 2000-01-01.
const PG_EPOCH_MICROS: i64 = PG_EPOCH_DAYS as i64 * 86_400_000_000;

/// `numeric` sign words.
const NUMERIC_POS: u16 = 0x0000;
const NUMERIC_NEG: u16 = 0x4000;

/// The PostgreSQL type a column is loaded as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgType {
    /// `boolean`
    Bool,
    /// `smallint`
    Int2,
    /// `integer`
    Int4,
    /// `bigint`
    Int8,
    /// `real`
    Float4,
    /// `double precision`
    Float8,
    /// `numeric(precision, scale)`
    Numeric {
        /// Total digits.
        precision: u8,
        /// Digits after the point.
        scale: u8,
    },
    /// `text`
    Text,
    /// `bytea`
    Bytea,
    /// `date`
    Date,
    /// `timestamp` (without time zone)
    Timestamp,
    /// `timestamptz`
    Timestamptz,
    /// `jsonb`: nested values as JSON
    Jsonb,
    /// `text` holding Arrow's display of a type with no better match
    DisplayText,
}

impl PgType {
    /// The type an Arrow column is loaded as (see the module docs).
    pub fn for_arrow(dt: &DataType) -> PgType {
        use DataType as D;
        match dt {
            D::Boolean => PgType::Bool,
            D::Int8 | D::Int16 => PgType::Int2,
            D::Int32 | D::UInt8 | D::UInt16 => PgType::Int4,
            D::Int64 | D::UInt32 | D::UInt64 => PgType::Int8,
            D::Float16 | D::Float32 => PgType::Float4,
            D::Float64 => PgType::Float8,
            D::Decimal32(p, s) | D::Decimal64(p, s) | D::Decimal128(p, s)
                if *s >= 0 && (*s as u8) <= *p =>
            {
                PgType::Numeric {
                    precision: *p,
                    scale: *s as u8,
                }
            }
            D::Utf8 | D::LargeUtf8 | D::Utf8View => PgType::Text,
            D::Binary | D::LargeBinary | D::BinaryView | D::FixedSizeBinary(_) => PgType::Bytea,
            D::Date32 | D::Date64 => PgType::Date,
            D::Timestamp(_, Some(_)) => PgType::Timestamptz,
            D::Timestamp(_, None) => PgType::Timestamp,
            D::List(_) | D::LargeList(_) | D::FixedSizeList(..) | D::Struct(_) | D::Map(..) => {
                PgType::Jsonb
            }
            D::Dictionary(_, v) => PgType::for_arrow(v),
            _ => PgType::DisplayText,
        }
    }

    /// The type as written in `CREATE TABLE`.
    pub fn ddl(self) -> String {
        match self {
            PgType::Numeric { precision, scale } => format!("numeric({precision},{scale})"),
            other => other.format_type().to_string(),
        }
    }

    /// The type as PostgreSQL's `format_type()` prints it (to compare with
    /// an existing column).
    pub fn format_type(self) -> std::borrow::Cow<'static, str> {
        match self {
            PgType::Bool => "boolean".into(),
            PgType::Int2 => "smallint".into(),
            PgType::Int4 => "integer".into(),
            PgType::Int8 => "bigint".into(),
            PgType::Float4 => "real".into(),
            PgType::Float8 => "double precision".into(),
            PgType::Numeric { precision, scale } => format!("numeric({precision},{scale})").into(),
            PgType::Text | PgType::DisplayText => "text".into(),
            PgType::Bytea => "bytea".into(),
            PgType::Date => "date".into(),
            PgType::Timestamp => "timestamp without time zone".into(),
            PgType::Timestamptz => "timestamp with time zone".into(),
            PgType::Jsonb => "jsonb".into(),
        }
    }

    /// The Arrow type a column is cast to before it is encoded (`None`:
    /// encoded as it is).
    fn arrow_target(self, dt: &DataType) -> Option<DataType> {
        use DataType as D;
        let want = match self {
            PgType::Bool => D::Boolean,
            PgType::Int2 => D::Int16,
            PgType::Int4 => D::Int32,
            PgType::Int8 => D::Int64,
            PgType::Float4 => D::Float32,
            PgType::Float8 => D::Float64,
            PgType::Numeric { precision, scale } => D::Decimal128(precision, scale as i8),
            PgType::Text => match dt {
                D::Utf8 | D::LargeUtf8 | D::Utf8View => return None,
                _ => D::Utf8,
            },
            PgType::Bytea => D::Binary,
            PgType::Date => D::Date32,
            PgType::Timestamp => D::Timestamp(TimeUnit::Microsecond, None),
            PgType::Timestamptz => match dt {
                D::Timestamp(_, tz) => D::Timestamp(TimeUnit::Microsecond, tz.clone()),
                D::Dictionary(_, v) => return self.arrow_target(v),
                _ => return None,
            },
            PgType::Jsonb | PgType::DisplayText => match dt {
                D::Dictionary(_, v) => v.as_ref().clone(),
                _ => return None,
            },
        };
        (*dt != want).then_some(want)
    }
}

/// Encodes record batches of one schema as binary COPY rows.
#[derive(Debug)]
pub struct CopyEncoder {
    fields: Vec<FieldRef>,
    types: Vec<PgType>,
    nul_dropped: u64,
}

impl CopyEncoder {
    /// An encoder for batches with these fields (in this order).
    pub fn new(fields: &[FieldRef]) -> Result<CopyEncoder> {
        if fields.len() > i16::MAX as usize {
            return Err(JobError::Invalid(format!(
                "{} columns: a PostgreSQL row holds at most 1,600",
                fields.len()
            )));
        }
        Ok(CopyEncoder {
            fields: fields.to_vec(),
            types: fields
                .iter()
                .map(|f| PgType::for_arrow(f.data_type()))
                .collect(),
            nul_dropped: 0,
        })
    }

    /// The PostgreSQL type of each column.
    pub fn types(&self) -> &[PgType] {
        &self.types
    }

    /// NUL characters dropped from text values so far.
    pub fn nul_dropped(&self) -> u64 {
        self.nul_dropped
    }

    /// Appends every row of `batch` to `out` (columns matched by position).
    pub fn encode(&mut self, batch: &RecordBatch, out: &mut Vec<u8>) -> Result<()> {
        if batch.num_columns() != self.types.len() {
            return Err(JobError::Internal(format!(
                "binary COPY: a batch of {} columns for {} target columns",
                batch.num_columns(),
                self.types.len()
            )));
        }
        let safe = CastOptions {
            safe: false,
            ..Default::default()
        };
        let mut owned: Vec<ArrayRef> = Vec::with_capacity(self.types.len());
        for (i, ty) in self.types.iter().enumerate() {
            let a = batch.column(i);
            owned.push(match ty.arrow_target(a.data_type()) {
                Some(to) => cast_with_options(a, &to, &safe).map_err(|e| {
                    JobError::Invalid(format!(
                        "column {}: {} cannot be loaded as {}: {e}",
                        self.fields[i].name(),
                        a.data_type(),
                        ty.ddl()
                    ))
                })?,
                None => Arc::clone(a),
            });
        }
        let json = EncoderOptions::default();
        let display = FormatOptions::default();
        let json_fields: Vec<FieldRef> = owned
            .iter()
            .map(|a| Arc::new(Field::new("v", a.data_type().clone(), true)))
            .collect();
        let mut cols = Vec::with_capacity(owned.len());
        for (i, ty) in self.types.iter().enumerate() {
            cols.push(Col::new(*ty, &owned[i], &json_fields[i], &json, &display)?);
        }
        let n = batch.num_rows();
        let count = (cols.len() as i16).to_be_bytes();
        out.reserve(n * (2 + cols.len() * 12));
        for row in 0..n {
            out.extend_from_slice(&count);
            for c in &mut cols {
                c.put(row, out, &mut self.nul_dropped)?;
            }
        }
        Ok(())
    }
}

/// One column of a batch, ready to encode.
enum Col<'a> {
    Bool(&'a BooleanArray),
    I16(&'a Int16Array),
    I32(&'a Int32Array),
    I64(&'a Int64Array),
    F32(&'a Float32Array),
    F64(&'a Float64Array),
    Num(&'a Decimal128Array, u8),
    Str(&'a StringArray),
    LargeStr(&'a LargeStringArray),
    ViewStr(&'a StringViewArray),
    Bin(&'a BinaryArray),
    Date(&'a Date32Array),
    Ts(&'a TimestampMicrosecondArray),
    Json(&'a dyn Array, NullableEncoder<'a>),
    Display(&'a dyn Array, ArrayFormatter<'a>),
}

impl<'a> Col<'a> {
    fn new(
        ty: PgType,
        a: &'a ArrayRef,
        json_field: &'a FieldRef,
        json: &'a EncoderOptions,
        display: &'a FormatOptions<'a>,
    ) -> Result<Col<'a>> {
        let a: &'a dyn Array = a.as_ref();
        Ok(match ty {
            PgType::Bool => Col::Bool(a.as_boolean()),
            PgType::Int2 => Col::I16(a.as_primitive()),
            PgType::Int4 => Col::I32(a.as_primitive()),
            PgType::Int8 => Col::I64(a.as_primitive()),
            PgType::Float4 => Col::F32(a.as_primitive()),
            PgType::Float8 => Col::F64(a.as_primitive()),
            PgType::Numeric { scale, .. } => Col::Num(a.as_primitive(), scale),
            PgType::Text => match a.data_type() {
                DataType::LargeUtf8 => Col::LargeStr(a.as_string()),
                DataType::Utf8View => Col::ViewStr(a.as_string_view()),
                _ => Col::Str(a.as_string()),
            },
            PgType::Bytea => Col::Bin(a.as_binary()),
            PgType::Date => Col::Date(a.as_primitive()),
            PgType::Timestamp | PgType::Timestamptz => Col::Ts(a.as_primitive()),
            PgType::Jsonb => Col::Json(a, make_encoder(json_field, a, json)?),
            PgType::DisplayText => Col::Display(a, ArrayFormatter::try_new(a, display)?),
        })
    }

    #[inline]
    fn put(&mut self, i: usize, out: &mut Vec<u8>, nul_dropped: &mut u64) -> Result<()> {
        macro_rules! fixed {
            ($a:expr, $v:expr) => {{
                if $a.is_null(i) {
                    out.extend_from_slice(&(-1i32).to_be_bytes());
                } else {
                    let b = $v.to_be_bytes();
                    out.extend_from_slice(&(b.len() as i32).to_be_bytes());
                    out.extend_from_slice(&b);
                }
            }};
        }
        match self {
            Col::Bool(a) => {
                if a.is_null(i) {
                    out.extend_from_slice(&(-1i32).to_be_bytes());
                } else {
                    out.extend_from_slice(&[0, 0, 0, 1, u8::from(a.value(i))]);
                }
            }
            Col::I16(a) => fixed!(a, a.value(i)),
            Col::I32(a) => fixed!(a, a.value(i)),
            Col::I64(a) => fixed!(a, a.value(i)),
            Col::F32(a) => fixed!(a, a.value(i)),
            Col::F64(a) => fixed!(a, a.value(i)),
            Col::Date(a) => {
                if a.is_null(i) {
                    out.extend_from_slice(&(-1i32).to_be_bytes());
                } else {
                    let d = a.value(i).checked_sub(PG_EPOCH_DAYS).ok_or_else(|| {
                        JobError::Invalid(format!("date {} is out of range", a.value(i)))
                    })?;
                    fixed!(a, d)
                }
            }
            Col::Ts(a) => {
                if a.is_null(i) {
                    out.extend_from_slice(&(-1i32).to_be_bytes());
                } else {
                    let t = a.value(i).checked_sub(PG_EPOCH_MICROS).ok_or_else(|| {
                        JobError::Invalid(format!("timestamp {} µs is out of range", a.value(i)))
                    })?;
                    fixed!(a, t)
                }
            }
            Col::Num(a, scale) => {
                if a.is_null(i) {
                    out.extend_from_slice(&(-1i32).to_be_bytes());
                } else {
                    put_numeric(out, a.value(i), *scale);
                }
            }
            Col::Str(a) => {
                if a.is_null(i) {
                    out.extend_from_slice(&(-1i32).to_be_bytes());
                } else {
                    put_text(out, a.value(i).as_bytes(), nul_dropped);
                }
            }
            Col::LargeStr(a) => {
                if a.is_null(i) {
                    out.extend_from_slice(&(-1i32).to_be_bytes());
                } else {
                    put_text(out, a.value(i).as_bytes(), nul_dropped);
                }
            }
            Col::ViewStr(a) => {
                if a.is_null(i) {
                    out.extend_from_slice(&(-1i32).to_be_bytes());
                } else {
                    put_text(out, a.value(i).as_bytes(), nul_dropped);
                }
            }
            Col::Bin(a) => {
                if a.is_null(i) {
                    out.extend_from_slice(&(-1i32).to_be_bytes());
                } else {
                    put_bytes(out, a.value(i));
                }
            }
            Col::Json(a, enc) => {
                if a.is_null(i) {
                    out.extend_from_slice(&(-1i32).to_be_bytes());
                } else {
                    let at = out.len();
                    out.extend_from_slice(&[0, 0, 0, 0, 1]);
                    enc.encode(i, out);
                    patch_len(out, at)?;
                }
            }
            Col::Display(a, f) => {
                if a.is_null(i) {
                    out.extend_from_slice(&(-1i32).to_be_bytes());
                } else {
                    let text = f.value(i).to_string();
                    put_text(out, text.as_bytes(), nul_dropped);
                }
            }
        }
        Ok(())
    }
}

/// Writes the length of the value that starts 4 bytes after `at` into those 4 bytes.
fn patch_len(out: &mut [u8], at: usize) -> Result<()> {
    let len = i32::try_from(out.len() - at - 4)
        .map_err(|_| JobError::Invalid("a value of 2 GiB or more".into()))?;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as i32).to_be_bytes());
    out.extend_from_slice(b);
}

/// Text, without the NUL characters PostgreSQL's text cannot hold.
fn put_text(out: &mut Vec<u8>, b: &[u8], nul_dropped: &mut u64) {
    if !b.contains(&0) {
        return put_bytes(out, b);
    }
    let kept: Vec<u8> = b.iter().copied().filter(|c| *c != 0).collect();
    *nul_dropped += (b.len() - kept.len()) as u64;
    put_bytes(out, &kept);
}

/// A decimal (`unscaled` × 10^-`scale`) in `numeric`'s binary form: base-10000
/// digits, most significant first, `weight` the power of 10000 of the first,
/// no leading or trailing zero digits, `dscale` the decimal places shown.
pub fn put_numeric(out: &mut Vec<u8>, unscaled: i128, scale: u8) {
    let sign = if unscaled < 0 {
        NUMERIC_NEG
    } else {
        NUMERIC_POS
    };
    let abs = unscaled.unsigned_abs();
    let pow = 10u128.pow(u32::from(scale));
    let (int, frac) = (abs / pow, abs % pow);
    // at most 39 decimal digits: 10 integer and 10 fraction groups
    let mut digits = [0u16; 24];
    let mut n = 0;
    // integer part, least significant group first, then reversed
    let mut rest = int;
    while rest > 0 {
        digits[n] = (rest % 10_000) as u16;
        rest /= 10_000;
        n += 1;
    }
    digits[..n].reverse();
    let mut weight = n as i16 - 1;
    // fraction part, most significant group first
    let scale = u32::from(scale);
    let groups = scale.div_ceil(4);
    for g in 0..groups {
        let (lo, hi) = (4 * g, 4 * (g + 1));
        digits[n] = if scale >= hi {
            ((frac / 10u128.pow(scale - hi)) % 10_000) as u16
        } else {
            // the last, partial group: its digits then zeros
            ((frac % 10u128.pow(scale - lo)) * 10u128.pow(hi - scale)) as u16
        };
        n += 1;
    }
    let mut first = 0;
    while first < n && digits[first] == 0 {
        first += 1;
        weight -= 1;
    }
    while n > first && digits[n - 1] == 0 {
        n -= 1;
    }
    let ndigits = n - first;
    if ndigits == 0 {
        weight = 0;
    }
    let sign = if ndigits == 0 { NUMERIC_POS } else { sign };
    out.extend_from_slice(&(8 + 2 * ndigits as i32).to_be_bytes());
    out.extend_from_slice(&(ndigits as i16).to_be_bytes());
    out.extend_from_slice(&weight.to_be_bytes());
    out.extend_from_slice(&sign.to_be_bytes());
    out.extend_from_slice(&(scale as u16).to_be_bytes());
    for d in &digits[first..n] {
        out.extend_from_slice(&d.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric(v: i128, scale: u8) -> (i16, i16, u16, u16, Vec<u16>) {
        let mut out = Vec::new();
        put_numeric(&mut out, v, scale);
        let be = |i: usize| u16::from_be_bytes([out[i], out[i + 1]]);
        let len = i32::from_be_bytes(out[..4].try_into().unwrap()) as usize;
        assert_eq!(len, out.len() - 4);
        let n = be(4) as usize;
        (
            n as i16,
            be(6) as i16,
            be(8),
            be(10),
            (0..n).map(|k| be(12 + 2 * k)).collect(),
        )
    }

    #[test]
    fn numeric_digits_weight_sign_and_scale() {
        assert_eq!(numeric(1250, 2), (2, 0, 0, 2, vec![12, 5000]));
        assert_eq!(numeric(1200, 2), (1, 0, 0, 2, vec![12]));
        assert_eq!(numeric(5, 2), (1, -1, 0, 2, vec![500]));
        assert_eq!(numeric(0, 2), (0, 0, 0, 2, vec![]));
        assert_eq!(
            numeric(-123_456_789, 2),
            (3, 1, 0x4000, 2, vec![123, 4567, 8900])
        );
        assert_eq!(numeric(100_000_000, 0), (1, 2, 0, 0, vec![1]));
        assert_eq!(numeric(1, 6), (1, -2, 0, 6, vec![100]));
        let max = 10i128.pow(38) - 1;
        let (n, w, _, s, d) = numeric(max, 0);
        assert_eq!((n, w, s, d[0]), (10, 9, 0, 99));
        let (n, w, _, _, _) = numeric(-max, 38);
        assert_eq!((n, w), (10, -1));
    }
}
