//! Borrowing JSON helpers every decoder shares: scalars read as text, objects
//! read as ordered `(key, raw value)` pairs (so unmapped values are copied
//! through as written, never re-serialised), a writer for the leftover
//! `properties`, exact money and quantity parsing, and deterministic ids.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// A JSON scalar read as text: a string (borrowed when it has no escapes), a
/// number or a boolean. Objects and arrays are a type error.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Str<'a>(pub Cow<'a, str>);

impl<'a> Str<'a> {
    /// The text, `None` when empty or blank.
    pub fn nonempty(self) -> Option<Cow<'a, str>> {
        if self.0.trim().is_empty() {
            None
        } else {
            Some(self.0)
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Str<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a number")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Str<'a>, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Str<'a>, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Str<'a>, E> {
                Ok(Str(Cow::Owned(v)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Str<'a>, E> {
                Ok(Str(Cow::Owned(v.to_string())))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Str<'a>, E> {
                Ok(Str(Cow::Owned(v.to_string())))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Str<'a>, E> {
                Ok(Str(Cow::Owned(v.to_string())))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Str<'a>, E> {
                Ok(Str(Cow::Borrowed(if v { "true" } else { "false" })))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// A JSON object as ordered `(key, raw value)` pairs, borrowed from the input.
#[derive(Debug, Default)]
pub(crate) struct Obj<'a>(pub Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for Obj<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Obj<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Obj<'a>, A::Error> {
                let mut v = Vec::with_capacity(map.size_hint().unwrap_or(16).min(64));
                while let Some(Str(k)) = map.next_key::<Str<'a>>()? {
                    let val: &'a RawValue = map.next_value()?;
                    v.push((k, val));
                }
                Ok(Obj(v))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// A JSON array of raw values, borrowed from the input.
pub(crate) struct Arr<'a>(pub Vec<&'a RawValue>);

impl<'de: 'a, 'a> Deserialize<'de> for Arr<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Arr<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON array")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Arr<'a>, A::Error> {
                let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(64).min(1024));
                while let Some(x) = seq.next_element::<&'a RawValue>()? {
                    v.push(x);
                }
                Ok(Arr(v))
            }
        }
        d.deserialize_seq(V(std::marker::PhantomData))
    }
}

/// Structural splitting of request envelopes (`{"batch":[…]}`, `[…]`)
/// without validating the values: each item is validated when it is parsed,
/// so one malformed item is rejected on its own and each item's bytes are
/// scanned once by the validating parser, not twice.
pub(crate) mod split {
    /// Why an envelope does not split: a message and the byte offset.
    pub(crate) type Error = (String, usize);

    pub(crate) fn ws(b: &[u8], mut i: usize) -> usize {
        while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
            i += 1;
        }
        i
    }

    fn err<T>(what: &str, at: usize) -> Result<T, Error> {
        Err((what.to_owned(), at))
    }

    /// The index after the string starting at `i` (a `"`).
    fn string(b: &[u8], mut i: usize) -> Result<usize, Error> {
        let start = i;
        i += 1;
        loop {
            match memchr::memchr2(b'"', b'\\', &b[i.min(b.len())..]) {
                None => return err("unterminated string", start),
                Some(off) => {
                    i += off;
                    if b[i] == b'"' {
                        return Ok(i + 1);
                    }
                    i += 2; // backslash and the escaped byte
                    if i > b.len() {
                        return err("unterminated string", start);
                    }
                }
            }
        }
    }

    /// Objects and arrays may nest this deep: no event needs more, and a
    /// deeper one (an attack or a bug) would make every later reader of the
    /// payload (recursive JSON parsers among them) pay for it.
    pub(crate) const MAX_DEPTH: usize = 64;

    /// The byte offset where `b` nests deeper than [`MAX_DEPTH`], if it does.
    /// Strings are skipped; malformed input is left to the parsers.
    pub(crate) fn too_deep(b: &[u8]) -> Option<usize> {
        let mut depth = 0usize;
        let mut i = 0;
        while i < b.len() {
            match memchr::memchr3(b'"', b'{', b'[', &b[i..]).map(|o| i + o) {
                None => return None,
                Some(j) if b[j] == b'"' => {
                    // closers between i and j
                    depth = depth.saturating_sub(closers(&b[i..j]));
                    i = string(b, j).ok()?;
                }
                Some(j) => {
                    depth = depth.saturating_sub(closers(&b[i..j])) + 1;
                    if depth > MAX_DEPTH {
                        return Some(j);
                    }
                    i = j + 1;
                }
            }
        }
        None
    }

    fn closers(b: &[u8]) -> usize {
        memchr::memchr2_iter(b'}', b']', b).count()
    }

    /// The index after the value starting at `i` (not whitespace).
    pub(crate) fn value(b: &[u8], i: usize) -> Result<usize, Error> {
        match b.get(i) {
            None => err("expected a value", i),
            Some(b'"') => string(b, i),
            Some(b'{' | b'[') => {
                let mut depth = 0usize;
                let mut j = i;
                while j < b.len() {
                    match b[j] {
                        b'"' => {
                            j = string(b, j)?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                return Ok(j + 1);
                            }
                        }
                        _ => {}
                    }
                    j += 1;
                }
                err("unbalanced brackets", i)
            }
            Some(b'}' | b']' | b',' | b':') => err("expected a value", i),
            Some(_) => {
                let mut j = i;
                while j < b.len()
                    && !matches!(
                        b[j],
                        b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r' | b':' | b'"'
                    )
                {
                    j += 1;
                }
                Ok(j)
            }
        }
    }

    /// Parses each element of the array starting at `at` (a `[`) as `T` in
    /// a single pass, handing `f` its index, its text as written and the
    /// result (`None`: not an object). Returns the index after the `]`.
    pub(crate) fn elements<'a, T: serde::Deserialize<'a>>(
        s: &'a str,
        at: usize,
        mut f: impl FnMut(usize, &'a str, Option<Result<T, serde_json::Error>>),
    ) -> Result<usize, Error> {
        let b = s.as_bytes();
        if b.get(at) != Some(&b'[') {
            return err("expected an array", at);
        }
        let mut i = ws(b, at + 1);
        if b.get(i) == Some(&b']') {
            return Ok(i + 1);
        }
        let mut n = 0;
        loop {
            let e = if b.get(i) == Some(&b'{') {
                let mut it = serde_json::Deserializer::from_str(&s[i..]).into_iter::<T>();
                match it.next() {
                    Some(Ok(v)) => {
                        let e = i + it.byte_offset();
                        f(n, &s[i..e], Some(Ok(v)));
                        e
                    }
                    Some(Err(er)) => {
                        let e = value(b, i)?;
                        f(n, &s[i..e], Some(Err(er)));
                        e
                    }
                    None => return err("expected a value", i),
                }
            } else {
                let e = value(b, i)?;
                f(n, &s[i..e], None);
                e
            };
            n += 1;
            i = ws(b, e);
            match b.get(i) {
                Some(b',') => i = ws(b, i + 1),
                Some(b']') => return Ok(i + 1),
                _ => return err("expected , or ] after an array element", i),
            }
        }
    }

    /// [`elements`] of a whole document that is one array.
    pub(crate) fn array<'a, T: serde::Deserialize<'a>>(
        s: &'a str,
        f: impl FnMut(usize, &'a str, Option<Result<T, serde_json::Error>>),
    ) -> Result<(), Error> {
        let e = elements(s, ws(s.as_bytes(), 0), f)?;
        end(s.as_bytes(), e)
    }

    /// Walks the members of the object that is the whole of `s`: `f` gets
    /// each key as written (with its quotes) and the index where its value
    /// starts, and returns the index after the value when it consumed it, or
    /// `None` to have it skipped.
    pub(crate) fn object<'a>(
        s: &'a str,
        mut f: impl FnMut(&'a str, usize) -> Result<Option<usize>, Error>,
    ) -> Result<(), Error> {
        let b = s.as_bytes();
        let mut i = ws(b, 0);
        if b.get(i) != Some(&b'{') {
            return err("expected an object", i);
        }
        i = ws(b, i + 1);
        if b.get(i) == Some(&b'}') {
            return end(b, i + 1);
        }
        loop {
            if b.get(i) != Some(&b'"') {
                return err("expected a key", i);
            }
            let k = string(b, i)?;
            let key = &s[i..k];
            i = ws(b, k);
            if b.get(i) != Some(&b':') {
                return err("expected : after a key", i);
            }
            i = ws(b, i + 1);
            let e = match f(key, i)? {
                Some(e) => e,
                None => value(b, i)?,
            };
            i = ws(b, e);
            match b.get(i) {
                Some(b',') => i = ws(b, i + 1),
                Some(b'}') => return end(b, i + 1),
                _ => return err("expected , or } after an object member", i),
            }
        }
    }

    fn end(b: &[u8], i: usize) -> Result<(), Error> {
        let i = ws(b, i);
        if i == b.len() {
            Ok(())
        } else {
            err("trailing characters", i)
        }
    }

    /// Whether a key as written (quoted) is `name`.
    pub(crate) fn key_is(key: &str, name: &str) -> bool {
        key.len() == name.len() + 2 && &key[1..key.len() - 1] == name
    }
}

/// Parses `text` as a JSON object of raw values.
pub(crate) fn obj(text: &str) -> Result<Obj<'_>, serde_json::Error> {
    serde_json::from_str(text)
}

/// Parses `text` as a JSON array of raw values.
pub(crate) fn arr(text: &str) -> Result<Arr<'_>, serde_json::Error> {
    serde_json::from_str(text)
}

/// The first byte of a raw value's text (`{`, `[`, `"`, a digit, `t`, `f`, `n`).
pub(crate) fn kind(v: &RawValue) -> u8 {
    v.get()
        .trim_start()
        .as_bytes()
        .first()
        .copied()
        .unwrap_or(b'n')
}

/// A scalar raw value as text: strings unquoted (borrowed unless escaped),
/// numbers and booleans as written; `null`, objects, arrays and empty or blank
/// strings are `None`.
pub(crate) fn text(v: &RawValue) -> Option<Cow<'_, str>> {
    let s = v.get().trim();
    let b = s.as_bytes();
    match b.first()? {
        b'"' => {
            let inner = s.get(1..s.len().saturating_sub(1))?;
            let t = if inner.contains('\\') {
                Cow::Owned(serde_json::from_str::<String>(s).ok()?)
            } else {
                Cow::Borrowed(inner)
            };
            if t.trim().is_empty() { None } else { Some(t) }
        }
        b'n' | b'{' | b'[' => None,
        _ => Some(Cow::Borrowed(s)),
    }
}

/// [`text`], made owned.
pub(crate) fn owned(v: Option<&RawValue>) -> Option<Cow<'static, str>> {
    v.and_then(text).map(|c| Cow::Owned(c.into_owned()))
}

/// Makes a borrowed text owned.
pub(crate) fn own(c: Option<Cow<'_, str>>) -> Option<Cow<'static, str>> {
    c.map(|c| Cow::Owned(c.into_owned()))
}

/// Appends `s` as a JSON string literal.
pub(crate) fn push_json_str(buf: &mut String, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        buf.push('"');
        buf.push_str(s);
        buf.push('"');
    } else {
        buf.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into()));
    }
}

/// Builds the `properties` JSON object of what no column took.
#[derive(Default)]
pub(crate) struct PropsOut {
    buf: String,
}

impl PropsOut {
    fn sep(&mut self) {
        if self.buf.is_empty() {
            self.buf.reserve(256);
            self.buf.push('{');
        } else {
            self.buf.push(',');
        }
    }

    /// Adds `key: value` with the value's JSON text as written.
    pub fn raw(&mut self, key: &str, v: &RawValue) {
        self.raw_text(key, v.get());
    }

    /// Adds `key: value` where `value` is JSON text.
    pub fn raw_text(&mut self, key: &str, json: &str) {
        self.sep();
        push_json_str(&mut self.buf, key);
        self.buf.push(':');
        self.buf.push_str(json);
    }

    /// Adds `key: "value"`.
    pub fn string(&mut self, key: &str, value: &str) {
        self.sep();
        push_json_str(&mut self.buf, key);
        self.buf.push(':');
        push_json_str(&mut self.buf, value);
    }

    /// The object, `None` when nothing was added.
    pub fn finish(mut self) -> Option<String> {
        if self.buf.is_empty() {
            None
        } else {
            self.buf.push('}');
            Some(self.buf)
        }
    }
}

/// The largest money amount accepted, in hundredths (10^12 units).
pub(crate) const MAX_MONEY_CENTS: i128 = 100_000_000_000_000;

/// Parses a decimal amount (`19.99`, `-5`, `1.5e2`, `0.30000000000000004`) into
/// hundredths without a float: the digits are read exactly and rounded half
/// away from zero to the cent (browsers compute prices in floating point, so
/// sub-cent noise is rounded, not rejected). Rejects anything that is not a
/// finite decimal number and amounts beyond 10^12.
pub(crate) fn parse_money(text: &str) -> Result<i128, String> {
    let s = text.trim();
    let b = s.as_bytes();
    let bad = || format!("not a number: {:?}", truncate(text, 40));
    let (neg, mut i) = match b.first() {
        Some(b'-') => (true, 1),
        Some(b'+') => (false, 1),
        Some(_) => (false, 0),
        None => return Err(bad()),
    };
    let mut mant: i128 = 0;
    let mut sig = 0u32; // significant digits kept in `mant`
    let mut exp: i64 = 0; // decimal exponent of `mant`
    let mut seen_digit = false;
    let mut seen_point = false;
    while i < b.len() {
        match b[i] {
            c @ b'0'..=b'9' => {
                seen_digit = true;
                if sig < 30 {
                    mant = mant * 10 + i128::from(c - b'0');
                    if mant != 0 {
                        sig += 1;
                    }
                    if seen_point {
                        exp -= 1;
                    }
                } else if !seen_point {
                    exp += 1;
                }
            }
            b'.' if !seen_point => seen_point = true,
            b'e' | b'E' => break,
            _ => return Err(bad()),
        }
        i += 1;
    }
    if !seen_digit {
        return Err(bad());
    }
    if i < b.len() {
        // exponent
        i += 1;
        let (eneg, start) = match b.get(i) {
            Some(b'-') => (true, i + 1),
            Some(b'+') => (false, i + 1),
            _ => (false, i),
        };
        let digits = b.get(start..).unwrap_or(&[]);
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return Err(bad());
        }
        let mut e: i64 = 0;
        for &c in digits {
            e = (e * 10 + i64::from(c - b'0')).min(1_000_000);
        }
        exp += if eneg { -e } else { e };
    }
    let too_big = || {
        format!(
            "amount out of range (more than 10^12): {:?}",
            truncate(text, 40)
        )
    };
    // cents = mant * 10^(exp + 2)
    let p = exp + 2;
    let cents = if mant == 0 {
        0
    } else if p >= 0 {
        if p > 20 {
            return Err(too_big());
        }
        mant.checked_mul(10i128.pow(p as u32)).ok_or_else(too_big)?
    } else if p < -38 {
        0
    } else {
        let div = 10i128.pow((-p) as u32);
        let q = mant / div;
        let r = mant % div;
        if r * 2 >= div { q + 1 } else { q }
    };
    if cents > MAX_MONEY_CENTS {
        return Err(too_big());
    }
    Ok(if neg { -cents } else { cents })
}

/// A money raw value (JSON number or numeric string) in hundredths; `null`
/// and empty strings are `None`.
pub(crate) fn money(v: Option<&RawValue>) -> Result<Option<i128>, String> {
    let Some(v) = v else { return Ok(None) };
    match kind(v) {
        b'n' => Ok(None),
        b'"' => match text(v) {
            None => Ok(None),
            Some(t) => parse_money(&t).map(Some),
        },
        b'{' | b'[' | b't' | b'f' => Err(format!("not a number: {}", truncate(v.get(), 40))),
        _ => parse_money(v.get()).map(Some),
    }
}

/// A quantity: a non-negative integer (JSON number or numeric string; `2.0`
/// is accepted as 2).
pub(crate) fn quantity(v: Option<&RawValue>) -> Result<Option<i32>, String> {
    let Some(v) = v else { return Ok(None) };
    let t = match kind(v) {
        b'n' => return Ok(None),
        b'{' | b'[' | b't' | b'f' => {
            return Err(format!("not an integer: {}", truncate(v.get(), 40)));
        }
        _ => match text(v) {
            None => return Ok(None),
            Some(t) => t,
        },
    };
    parse_quantity(&t).map(Some)
}

/// Parses a quantity text (see [`quantity`]).
pub(crate) fn parse_quantity(t: &str) -> Result<i32, String> {
    let t = t.trim();
    let n: i64 = if t
        .bytes()
        .all(|b| b.is_ascii_digit() || b == b'-' || b == b'+')
    {
        t.parse()
            .map_err(|_| format!("not an integer: {:?}", truncate(t, 40)))?
    } else {
        let cents = parse_money(t).map_err(|_| format!("not an integer: {:?}", truncate(t, 40)))?;
        if cents % 100 != 0 {
            return Err(format!("not an integer: {:?}", truncate(t, 40)));
        }
        i64::try_from(cents / 100).map_err(|_| format!("out of range: {:?}", truncate(t, 40)))?
    };
    if n < 0 {
        return Err(format!("negative: {n}"));
    }
    i32::try_from(n).map_err(|_| format!("out of range: {n}"))
}

/// At most `n` bytes of `s` (on a character boundary), for messages.
pub(crate) fn truncate(s: &str, n: usize) -> &str {
    if s.len() <= n {
        return s;
    }
    let mut end = n;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A 128-bit hash, stable across builds and platforms (ids derived from it
/// are stored, so it must never change).
pub(crate) fn hash128(parts: &[&[u8]]) -> (u64, u64) {
    const K1: u64 = 0x9E37_79B9_7F4A_7C15;
    const K2: u64 = 0xC2B2_AE3D_27D4_EB4F;
    let mut a: u64 = 0x243F_6A88_85A3_08D3;
    let mut b: u64 = 0x1319_8A2E_0370_7344;
    for p in parts {
        let mut chunks = p.chunks_exact(8);
        for c in &mut chunks {
            let x = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            a = (a ^ x).wrapping_mul(K1).rotate_left(29);
            b = (b ^ x.rotate_left(17)).wrapping_mul(K2).rotate_left(31);
        }
        let rest = chunks.remainder();
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        let x = u64::from_le_bytes(w) ^ ((p.len() as u64) << 3);
        a = (a ^ x).wrapping_mul(K1).rotate_left(29);
        b = (b ^ x.rotate_left(17) ^ 0xFF)
            .wrapping_mul(K2)
            .rotate_left(31);
    }
    (fmix(a ^ b.rotate_left(7)), fmix(b ^ a.rotate_left(13)))
}

fn fmix(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    k ^= k >> 33;
    k = k.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    k ^ (k >> 33)
}

/// A UUID-formatted id (RFC 9562 version 8, "custom") derived from `parts`:
/// the same parts always give the same id, so client retries dedup.
pub(crate) fn derive_id(parts: &[&[u8]]) -> String {
    let (hi, lo) = hash128(parts);
    let hi = (hi & !0xF000) | 0x8000; // version 8
    let lo = (lo & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000; // variant 10
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        hi >> 32,
        (hi >> 16) & 0xFFFF,
        hi & 0xFFFF,
        lo >> 48,
        lo & 0xFFFF_FFFF_FFFF
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_exact_and_rounds_float_noise() {
        assert_eq!(parse_money("19.99"), Ok(1999));
        assert_eq!(parse_money("0.30000000000000004"), Ok(30));
        assert_eq!(parse_money("-5.105"), Ok(-511));
        assert_eq!(parse_money("1.5e2"), Ok(15000));
        assert_eq!(parse_money("15E-1"), Ok(150));
        assert_eq!(parse_money("1e-50"), Ok(0));
        assert_eq!(parse_money("0"), Ok(0));
        assert_eq!(parse_money(".5"), Ok(50));
        assert!(parse_money("1e13").is_err());
        assert!(parse_money("1e400").is_err());
        assert!(parse_money("NaN").is_err());
        assert!(parse_money("Infinity").is_err());
        assert!(parse_money("1,5").is_err());
        assert!(parse_money("").is_err());
        assert!(parse_money("-").is_err());
        assert!(parse_money("1e").is_err());
        assert!(parse_money(&"9".repeat(80)).is_err());
        assert_eq!(parse_money("1000000000000"), Ok(100_000_000_000_000));
        assert!(parse_money("1000000000000.01").is_err());
    }

    #[test]
    fn quantities_are_non_negative_integers() {
        let q = |s: &str| quantity(Some(&RawValue::from_string(s.into()).unwrap()));
        assert_eq!(q("2"), Ok(Some(2)));
        assert_eq!(q("2.0"), Ok(Some(2)));
        assert_eq!(q("\"3\""), Ok(Some(3)));
        assert_eq!(q("null"), Ok(None));
        assert!(q("-1").is_err());
        assert!(q("1.5").is_err());
        assert!(q("\"x\"").is_err());
        assert!(q("99999999999").is_err());
        assert!(q("{}").is_err());
    }

    #[test]
    fn text_reads_scalars() {
        let o = obj(r#"{"a":"x","b":"q\"uote","c":12.5,"d":null,"e":{"f":1},"g":"  ","h":true}"#)
            .unwrap();
        let t: Vec<Option<String>> =
            o.0.iter()
                .map(|(_, v)| text(v).map(|c| c.into_owned()))
                .collect();
        assert_eq!(
            t,
            vec![
                Some("x".into()),
                Some("q\"uote".into()),
                Some("12.5".into()),
                None,
                None,
                None,
                Some("true".into())
            ]
        );
        assert!(matches!(text(o.0[0].1), Some(Cow::Borrowed("x"))));
    }

    #[test]
    fn props_out_escapes_keys() {
        let mut p = PropsOut::default();
        p.string("a\"b", "c");
        p.raw_text("n", "1");
        let s = p.finish().unwrap();
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["a\"b"], "c");
        assert_eq!(v["n"], 1);
        assert_eq!(PropsOut::default().finish(), None);
    }

    #[test]
    fn envelopes_split_in_one_pass() {
        let body = r#" [ {"a":"x,]}\"y"} , {"b":[1,{"c":2}]},7,"s", {"bad": tru} ] "#;
        let mut got = Vec::new();
        split::array::<Obj<'_>>(body, |i, raw, r| {
            got.push((i, raw, r.map(|r| r.map(|o| o.0.len()).map_err(|_| ()))))
        })
        .unwrap();
        assert_eq!(
            got,
            vec![
                (0, r#"{"a":"x,]}\"y"}"#, Some(Ok(1))),
                (1, r#"{"b":[1,{"c":2}]}"#, Some(Ok(1))),
                (2, "7", None),
                (3, "\"s\"", None),
                (4, r#"{"bad": tru}"#, Some(Err(()))),
            ]
        );
        for bad in [
            "", "[", "[1", "[1,", "[{]", "[1 2]", "[1] x", "{}", r#"["\"]"#, "[\"\\",
        ] {
            assert!(
                split::array::<Obj<'_>>(bad, |_, _, _| {}).is_err(),
                "{bad:?}"
            );
        }
        let mut keys = Vec::new();
        split::object(r#"{"a":1, "b" : {"x":[]}, "c":"}"}"#, |k, _| {
            keys.push(k);
            Ok(None)
        })
        .unwrap();
        assert_eq!(keys, vec!["\"a\"", "\"b\"", "\"c\""]);
        for bad in [
            "{",
            "{\"a\"}",
            "{\"a\":}",
            "{\"a\":1,}",
            "{a:1}",
            "{} {}",
            "[]",
        ] {
            assert!(split::object(bad, |_, _| Ok(None)).is_err(), "{bad:?}");
        }
        assert!(split::key_is("\"batch\"", "batch"));
        assert!(!split::key_is("\"batc\"", "batch"));
    }

    #[test]
    fn derived_ids_are_stable_uuids() {
        let a = derive_id(&[b"segment", b"{\"x\":1}"]);
        assert_eq!(a, derive_id(&[b"segment", b"{\"x\":1}"]));
        assert_ne!(a, derive_id(&[b"segment", b"{\"x\":2}"]));
        assert_ne!(a, derive_id(&[b"segmen", b"t{\"x\":1}"]));
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "8");
        // pinned: stored ids must never change
        assert_eq!(derive_id(&[b"abc"]), "a59cc02c-1a91-8b95-953b-02826ebf0f48");
    }
}

#[cfg(test)]
mod depth_tests {
    use super::split::{MAX_DEPTH, too_deep};

    #[test]
    fn nesting_is_counted_outside_strings_only() {
        let ok = format!("{}1{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert_eq!(too_deep(ok.as_bytes()), None);
        let deep = format!(
            "{}1{}",
            "[".repeat(MAX_DEPTH + 1),
            "]".repeat(MAX_DEPTH + 1)
        );
        assert_eq!(too_deep(deep.as_bytes()), Some(MAX_DEPTH));
        // brackets inside strings do not count; siblings do not add up
        let strings = format!(r#"{{"a":"{}","b":[1],"c":[2]}}"#, "[{".repeat(500));
        assert_eq!(too_deep(strings.as_bytes()), None);
        let siblings = format!("[{}]", "[1],".repeat(1000) + "[1]");
        assert_eq!(too_deep(siblings.as_bytes()), None);
        assert_eq!(too_deep(br#"{"a":"\"[[[[","#), None);
    }
}
