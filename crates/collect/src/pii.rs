//! Personal fields in payloads (`[privacy]`): found by a byte scan that
//! costs about as much as reading the payload once, and only when one is
//! found (or an `@`) is the payload parsed, rewritten and serialized again
//! (its keys then come out in sorted order). A string that is an e-mail
//! address is hashed wherever it is (`userId`, `distinct_id`, a custom
//! property), under `hash` and `drop` alike.
//!
//! A field is personal when its name (ignoring case and `_ - . $`) is in
//! the policy's `anywhere` list, or in its `person` list inside an object
//! whose name is in `person_objects` (Segment `traits`, PostHog `$set`, GA4
//! `user_properties`): `name` there is a person's, in `products` a product's.
//! JSON held in a string (Snowplow `ue_pr`, `co`) and base64url JSON
//! (Snowplow `ue_px`, `cx`) are searched too.

use base64::Engine;
use serde_json::Value;
use shoplake_core::config::{PiiAction, PrivacyConfig};
use shoplake_core::privacy::{PREFIX, PiiKey, SEPARATORS, field_key, field_words, is_email};

/// How deep JSON-in-a-string may nest before it is left alone.
const MAX_NEST: u8 = 2;

/// The rules and the key that apply them.
#[derive(Debug, Clone)]
pub struct PiiRules {
    action: PiiAction,
    anywhere: Names,
    person: Names,
    person_objects: Names,
    /// Every spelling (lower case) of the names that can start a match: a
    /// payload with none of them and no e-mail address is passed by one
    /// search, without the scan.
    prefilter: aho_corasick::AhoCorasick,
    key: PiiKey,
}

impl PiiRules {
    /// The rules of a `[privacy]` section; `None` when personal fields are
    /// kept.
    pub fn new(cfg: &PrivacyConfig, key: PiiKey) -> Option<PiiRules> {
        let set = |v: &[String]| Names::new(v.iter().map(|s| field_key(s)));
        let mut spellings: Vec<String> = vec!["ue_px".into(), "\"cx\"".into()];
        for name in cfg.pii_fields.iter().chain(&cfg.person_objects) {
            spellings.extend(needles(&field_words(name)));
        }
        for s in &mut spellings {
            s.make_ascii_lowercase();
        }
        // a spelling holding another one adds nothing ("email_address")
        let all = spellings.clone();
        spellings.retain(|s| !all.iter().any(|o| o != s && s.contains(o.as_str())));
        spellings.sort();
        spellings.dedup();
        let prefilter = aho_corasick::AhoCorasick::builder()
            .kind(Some(aho_corasick::AhoCorasickKind::DFA))
            .match_kind(aho_corasick::MatchKind::LeftmostFirst)
            .build(&spellings)
            .expect("plain strings make an automaton");
        (cfg.pii != PiiAction::Keep).then(|| PiiRules {
            prefilter,
            action: cfg.pii,
            anywhere: set(&cfg.pii_fields),
            person: set(&cfg.person_fields),
            person_objects: set(&cfg.person_objects),
            key,
        })
    }

    /// An identifier as stored: e-mail addresses become pseudonyms (they
    /// are identifiers, so they are hashed even when the policy drops).
    pub fn id(&self, id: &str) -> Option<String> {
        is_email(id).then(|| self.key.pseudonym(id))
    }

    /// `text` (JSON) with its personal fields hashed or dropped; `None` when
    /// it has none. JSON that does not parse but names a personal field
    /// gives a placeholder instead of the text: it cannot be rewritten, so
    /// it is not kept.
    pub fn redact(&self, text: &str) -> Option<String> {
        self.redact_in(text, false)
    }

    /// [`PiiRules::redact`] of a person's own fields (an identify event's
    /// properties, which are its traits).
    pub fn redact_person(&self, text: &str) -> Option<String> {
        self.redact_in(text, true)
    }

    fn redact_in(&self, text: &str, person: bool) -> Option<String> {
        // an e-mail address is personal wherever it is, whatever its key
        let b = text.as_bytes();
        let emails = has_email(b);
        if !(emails || person || self.prefilter_matches(b)) {
            return None;
        }
        if !emails && !self.scan(b, 0, person) {
            return None;
        }
        match serde_json::from_str::<Value>(text) {
            Ok(mut v) => self.value(&mut v, person, 0).then(|| v.to_string()),
            Err(_) => Some(WITHHELD.to_owned()),
        }
    }

    /// Whether `b`, lower-cased, holds a spelling of a name (the patterns
    /// are lower case; lower-casing a copy lets the search use its SIMD
    /// prefilter, which a case-insensitive search could not).
    fn prefilter_matches(&self, b: &[u8]) -> bool {
        thread_local! {
            static LOWER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        LOWER.with_borrow_mut(|lower| {
            lower.clear();
            lower.extend(b.iter().map(u8::to_ascii_lowercase));
            self.prefilter.is_match(lower.as_slice())
        })
    }

    fn is_pii(&self, key: &str, in_person: bool) -> bool {
        self.anywhere.contains(key) || (in_person && self.person.contains(key))
    }

    /// Whether `b` (JSON text) names a personal field. Malformed input is
    /// scanned as far as it goes.
    fn scan(&self, b: &[u8], nest: u8, person: bool) -> bool {
        let mut stack: Vec<bool> = Vec::with_capacity(8);
        stack.push(person);
        let mut pending = false;
        let mut base64_key = false;
        let mut buf = [0u8; 64];
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'"' => {
                    let end = string_end(b, i);
                    let body = &b[i + 1..end.saturating_sub(1).max(i + 1)];
                    let j = crate::json::split::ws(b, end);
                    let in_person = stack.last().copied().unwrap_or(false);
                    if j < b.len() && b[j] == b':' {
                        // keys are compared without allocating, unless escaped
                        let escaped;
                        let key: &str = match normal_key(body, &mut buf) {
                            Some(k) => k,
                            None => {
                                escaped = field_key(&unescape(body));
                                &escaped
                            }
                        };
                        if self.is_pii(key, in_person) {
                            return true;
                        }
                        pending = self.person_objects.contains(key);
                        base64_key = is_base64_key(key);
                        i = j + 1;
                        continue;
                    }
                    if nest < MAX_NEST && self.scan_nested(body, base64_key, nest) {
                        return true;
                    }
                    i = end;
                    continue;
                }
                b'{' => {
                    let parent = stack.last().copied().unwrap_or(false);
                    stack.push(parent || pending);
                    pending = false;
                }
                b'}' => {
                    stack.pop();
                }
                _ => {}
            }
            i += 1;
        }
        false
    }

    /// A string value that may hold JSON (as text or base64url).
    fn scan_nested(&self, body: &[u8], base64_key: bool, nest: u8) -> bool {
        match body.first() {
            Some(b'{' | b'[') | Some(b'\\') => {
                let text = unescape(body);
                text.starts_with(['{', '[']) && self.scan(text.as_bytes(), nest + 1, false)
            }
            Some(_) if base64_key => match b64(&unescape(body)) {
                Some(bytes) => has_email(&bytes) || self.scan(&bytes, nest + 1, false),
                None => false,
            },
            _ => false,
        }
    }

    /// Rewrites `v`; whether anything changed.
    fn value(&self, v: &mut Value, in_person: bool, nest: u8) -> bool {
        match v {
            Value::Object(map) => {
                let mut changed = false;
                let keys: Vec<String> = map.keys().cloned().collect();
                for k in keys {
                    let fk = field_key(&k);
                    if self.is_pii(&fk, in_person) {
                        match self.action {
                            PiiAction::Drop => {
                                map.remove(&k);
                                changed = true;
                            }
                            _ => {
                                let slot = map.get_mut(&k).expect("key from the map");
                                let new = match &*slot {
                                    Value::Null => continue,
                                    Value::String(s) if is_pseudonym(s) => continue,
                                    Value::String(s) => self.key.pseudonym(s),
                                    other => self.key.pseudonym(&other.to_string()),
                                };
                                *slot = Value::String(new);
                                changed = true;
                            }
                        }
                        continue;
                    }
                    let child = in_person || self.person_objects.contains(&fk);
                    let slot = map.get_mut(&k).expect("key from the map");
                    changed |= match slot {
                        Value::String(s) if nest < MAX_NEST && is_base64_key(&fk) => {
                            self.base64_string(s, child, nest)
                        }
                        other => self.value(other, child, nest),
                    };
                }
                changed
            }
            Value::Array(items) => {
                let mut changed = false;
                for item in items {
                    changed |= self.value(item, in_person, nest);
                }
                changed
            }
            Value::String(s) if is_email(s) => {
                *s = self.key.pseudonym(s);
                true
            }
            Value::String(s) if nest < MAX_NEST && s.starts_with(['{', '[']) => {
                let Ok(mut inner) = serde_json::from_str::<Value>(s) else {
                    return false;
                };
                if !self.value(&mut inner, in_person, nest + 1) {
                    return false;
                }
                *s = inner.to_string();
                true
            }
            _ => false,
        }
    }

    fn base64_string(&self, s: &mut String, in_person: bool, nest: u8) -> bool {
        let Some(bytes) = b64(s) else { return false };
        let Ok(mut inner) = serde_json::from_slice::<Value>(&bytes) else {
            return false;
        };
        if !self.value(&mut inner, in_person, nest + 1) {
            return false;
        }
        *s = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(inner.to_string());
        true
    }
}

/// A small set of normalised field names, checked without hashing: most
/// keys are ruled out by their first letter and length alone (payloads have
/// dozens of keys and the check runs on every event).
#[derive(Debug, Clone)]
struct Names {
    /// Per first byte, the lengths (below 64) of names starting with it.
    lens: Box<[u64; 256]>,
    names: Vec<String>,
}

impl Names {
    fn new(names: impl Iterator<Item = String>) -> Names {
        let mut lens = Box::new([0u64; 256]);
        let mut out: Vec<String> = Vec::new();
        for n in names.filter(|n| !n.is_empty() && n.len() < 64) {
            lens[n.as_bytes()[0] as usize] |= 1 << n.len();
            if !out.contains(&n) {
                out.push(n);
            }
        }
        Names { lens, names: out }
    }

    fn contains(&self, key: &str) -> bool {
        let Some(&first) = key.as_bytes().first() else {
            return false;
        };
        key.len() < 64
            && self.lens[first as usize] & (1 << key.len()) != 0
            && self.names.iter().any(|n| n == key)
    }
}

/// What a payload that names personal fields but does not parse is stored as.
pub const WITHHELD: &str =
    r#"{"withheld":"the payload names personal fields and is not valid JSON, so it is not kept"}"#;

/// Whether `b` holds a word that is an e-mail address (the common case,
/// no `@` at all, costs one `memchr`).
fn has_email(b: &[u8]) -> bool {
    let word = |c: &u8| c.is_ascii_alphanumeric() || b"._%+-@".contains(c) || *c >= 0x80;
    let mut from = 0;
    while let Some(off) = memchr::memchr(b'@', &b[from..]) {
        let at = from + off;
        let start = b[..at].iter().rposition(|c| !word(c)).map_or(0, |i| i + 1);
        let end = b[at..]
            .iter()
            .position(|c| !word(c))
            .map_or(b.len(), |i| at + i);
        if is_email(&String::from_utf8_lossy(&b[start..end])) {
            return true;
        }
        from = at + 1;
    }
    false
}

fn is_pseudonym(s: &str) -> bool {
    s.len() == PREFIX.len() + 32
        && s.starts_with(PREFIX)
        && s[PREFIX.len()..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// [`field_key`] of an unescaped key, written into `buf`; `None` when the
/// key has escapes or is too long for `buf`.
fn normal_key<'b>(body: &[u8], buf: &'b mut [u8; 64]) -> Option<&'b str> {
    let mut n = 0;
    for &c in body {
        if c == b'\\' {
            return None;
        }
        if !SEPARATORS.contains(&c) {
            *buf.get_mut(n)? = c.to_ascii_lowercase();
            n += 1;
        }
    }
    std::str::from_utf8(&buf[..n]).ok()
}

/// Words too common in payloads to stand for a name alone.
const COMMON_WORDS: &[&str] = &[
    "name",
    "properties",
    "user",
    "id",
    "date",
    "type",
    "number",
    "of",
];

/// What the prefilter looks for to find a name of these words: its least
/// common word when one is distinctive (`first` for `first_name`, `birth`
/// for `date_of_birth`), else every spelling (`user_properties`). A word
/// found where it is no name only costs the full scan.
fn needles(words: &[String]) -> Vec<String> {
    let distinctive = words
        .iter()
        .filter(|w| w.len() >= 3 && !COMMON_WORDS.contains(&w.as_str()))
        .max_by_key(|w| w.len());
    match distinctive {
        Some(w) => vec![w.clone()],
        None => spellings_of(words),
    }
}

/// The ways a name of these words may be written in a payload, case aside:
/// joined by nothing or by one kind of separator (`firstname`,
/// `first_name`, `first-name`, `first.name`, `first name`), with a leading
/// `$` matched as part of the text before it. Names of more than four words
/// give their first four words' spellings.
fn spellings_of(words: &[String]) -> Vec<String> {
    let words = &words[..words.len().min(4)];
    let Some((first, rest)) = words.split_first() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for sep in ["", "_", "-", ".", " "] {
        let mut s = first.clone();
        for w in rest {
            s.push_str(sep);
            s.push_str(w);
        }
        out.push(s);
    }
    out.dedup();
    out
}

/// Snowplow's base64url fields: self-describing event and contexts.
fn is_base64_key(key: &str) -> bool {
    key == "uepx" || key == "cx"
}

fn b64(s: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    let t = s.trim().trim_end_matches('=');
    URL_SAFE_NO_PAD
        .decode(t)
        .ok()
        .or_else(|| STANDARD.decode(s.trim()).ok())
}

/// The index after the string starting at `i` (a `"`), or the end of `b`.
fn string_end(b: &[u8], i: usize) -> usize {
    let mut j = i + 1;
    while j < b.len() {
        match memchr::memchr2(b'"', b'\\', &b[j..]) {
            None => return b.len(),
            Some(off) => {
                j += off;
                if b[j] == b'"' {
                    return j + 1;
                }
                j += 2;
            }
        }
    }
    b.len()
}

/// A JSON string's body, unescaped (lossy on broken escapes).
fn unescape(body: &[u8]) -> std::borrow::Cow<'_, str> {
    if !body.contains(&b'\\') {
        return String::from_utf8_lossy(body);
    }
    let mut quoted = Vec::with_capacity(body.len() + 2);
    quoted.push(b'"');
    quoted.extend_from_slice(body);
    quoted.push(b'"');
    match serde_json::from_slice::<String>(&quoted) {
        Ok(s) => s.into(),
        Err(_) => String::from_utf8_lossy(body).into_owned().into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(action: PiiAction) -> PiiRules {
        let cfg = PrivacyConfig {
            pii: action,
            ..PrivacyConfig::default()
        };
        PiiRules::new(&cfg, PiiKey::from_secret(&[1u8; 32]).unwrap()).unwrap()
    }

    fn json(s: &str) -> Value {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn identify_traits_are_hashed_and_products_keep_their_names() {
        let r = rules(PiiAction::Hash);
        let raw = r#"{"type":"identify","userId":"u1","traits":{"name":"Peter Gibbons","email":"Peter@Example.com","plan":"premium","address":{"city":"Austin"}},"properties":{"products":[{"name":"Monopoly"}]}}"#;
        let out = json(&r.redact(raw).expect("has personal fields"));
        let k = PiiKey::from_secret(&[1u8; 32]).unwrap();
        assert_eq!(out["traits"]["email"], k.pseudonym("peter@example.com"));
        assert_eq!(out["traits"]["name"], k.pseudonym("Peter Gibbons"));
        assert!(
            out["traits"]["address"]
                .as_str()
                .unwrap()
                .starts_with(PREFIX)
        );
        assert_eq!(out["traits"]["plan"], "premium");
        assert_eq!(out["properties"]["products"][0]["name"], "Monopoly");
        assert_eq!(out["userId"], "u1");
        // hashing twice changes nothing
        assert_eq!(r.redact(&out.to_string()), None);
    }

    #[test]
    fn drop_removes_the_fields() {
        let r = rules(PiiAction::Drop);
        let raw = r#"{"distinct_id":"d","properties":{"$set":{"email":"a@b.co","name":"Ann","plan":"x"},"phone_number":"+1 555 0100"}}"#;
        let out = json(&r.redact(raw).unwrap());
        assert_eq!(
            out,
            json(r#"{"distinct_id":"d","properties":{"$set":{"plan":"x"}}}"#)
        );
    }

    #[test]
    fn no_personal_field_costs_no_rewrite() {
        let r = rules(PiiAction::Hash);
        for raw in [
            r#"{"type":"track","event":"Product Viewed","properties":{"name":"Email Course","product_id":"P1"}}"#,
            r#"{"name":"page_view","params":{"page_title":"email"}}"#,
            r#"{"e":"pv","url":"https://shop.example/?utm_medium=email"}"#,
        ] {
            assert_eq!(r.redact(raw), None, "{raw}");
        }
    }

    #[test]
    fn json_in_strings_and_base64_is_searched() {
        let r = rules(PiiAction::Hash);
        let inner = r#"{"schema":"iglu:com.acme/user/jsonschema/1-0-0","data":{"email":"ann@shop.example"}}"#;
        let ue_pr = serde_json::to_string(inner).unwrap();
        let raw = format!(r#"{{"e":"ue","ue_pr":{ue_pr},"aid":"web"}}"#);
        let out = json(&r.redact(&raw).unwrap());
        let inner_out = json(out["ue_pr"].as_str().unwrap());
        assert!(
            inner_out["data"]["email"]
                .as_str()
                .unwrap()
                .starts_with(PREFIX)
        );

        let px = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(inner);
        let raw = format!(r#"{{"e":"ue","ue_px":"{px}"}}"#);
        let out = json(&r.redact(&raw).unwrap());
        let decoded = b64(out["ue_px"].as_str().unwrap()).unwrap();
        let v: Value = serde_json::from_slice(&decoded).unwrap();
        assert!(
            v["data"]["email"].as_str().unwrap().starts_with(PREFIX),
            "{v}"
        );
        assert!(!out.to_string().contains("ann@"));
    }

    #[test]
    fn unparsable_payloads_naming_personal_fields_are_withheld() {
        let r = rules(PiiAction::Hash);
        assert_eq!(
            r.redact(r#"{"traits":{"email":"ann@shop.example""#)
                .as_deref(),
            Some(WITHHELD)
        );
        assert_eq!(r.redact(r#"{"event":"x","#), None);
        assert_eq!(
            r.redact(r#"{"event":"x","by":"ann@shop.example"#)
                .as_deref(),
            Some(WITHHELD)
        );
        assert_eq!(
            r.redact(r#"{"event":"@home","#),
            None,
            "an @ alone is not an address"
        );
    }

    #[test]
    fn email_addresses_are_hashed_under_any_key() {
        let r = rules(PiiAction::Drop);
        let out = json(
            &r.redact(
                r#"{"userId":"Ann@Shop.example","properties":{"ref":"bob@x.io","handle":"@ann"}}"#,
            )
            .unwrap(),
        );
        let k = PiiKey::from_secret(&[1u8; 32]).unwrap();
        assert_eq!(out["userId"], k.pseudonym("ann@shop.example"));
        assert_eq!(out["properties"]["ref"], k.pseudonym("bob@x.io"));
        assert_eq!(out["properties"]["handle"], "@ann");
    }

    #[test]
    fn email_ids_become_pseudonyms() {
        let r = rules(PiiAction::Drop);
        assert!(r.id("Ann@Shop.example").unwrap().starts_with(PREFIX));
        assert_eq!(r.id("C000042"), None);
    }

    #[test]
    fn keep_means_no_rules() {
        let cfg = PrivacyConfig {
            pii: PiiAction::Keep,
            ..PrivacyConfig::default()
        };
        assert!(PiiRules::new(&cfg, PiiKey::from_secret(&[1u8; 32]).unwrap()).is_none());
    }
}
