//! Pseudonyms for personal data: the keyed hash the collector stores in
//! place of an e-mail address or phone number (`[privacy] pii = "hash"`),
//! and that `shoplake privacy erase` computes to find a person's hashed ids.
//!
//! A pseudonym is `pii:` and 32 hex digits of BLAKE3 keyed with the
//! installation's secret key, over the value normalised so that one person's
//! spellings agree: surrounding space trimmed, e-mail addresses lower-cased,
//! phone numbers without spaces, dots, dashes and brackets. Without the key
//! a pseudonym cannot be checked against a guessed address.

use std::fmt;

/// The prefix of every pseudonym.
pub const PREFIX: &str = "pii:";

/// The secret key of pseudonyms.
#[derive(Clone, PartialEq, Eq)]
pub struct PiiKey([u8; 32]);

impl fmt::Debug for PiiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PiiKey(..)")
    }
}

impl PiiKey {
    /// A key derived from secret material of any length (a key file's bytes,
    /// `SHOPLAKE_PII_KEY`); `None` when it is shorter than 32 bytes.
    pub fn from_secret(secret: &[u8]) -> Option<PiiKey> {
        // a key file written by an editor or `echo` ends with a newline
        let secret = secret
            .strip_suffix(b"\n")
            .map_or(secret, |s| s.strip_suffix(b"\r").unwrap_or(s));
        (secret.len() >= 32)
            .then(|| PiiKey(blake3::derive_key("shoplake pii pseudonym v1", secret)))
    }

    /// The pseudonym of `value`.
    pub fn pseudonym(&self, value: &str) -> String {
        let v = value.trim();
        let normal: std::borrow::Cow<'_, str> = if v.contains('@') {
            v.to_lowercase().into()
        } else if is_phone(v) {
            v.chars()
                .filter(|c| !matches!(c, ' ' | '.' | '-' | '(' | ')'))
                .collect::<String>()
                .into()
        } else {
            v.into()
        };
        let h = blake3::keyed_hash(&self.0, normal.as_bytes());
        let mut out = String::with_capacity(PREFIX.len() + 32);
        out.push_str(PREFIX);
        out.push_str(&h.to_hex()[..32]);
        out
    }
}

fn is_phone(v: &str) -> bool {
    let digits = v.bytes().filter(u8::is_ascii_digit).count();
    digits >= 6
        && v.bytes().enumerate().all(|(i, b)| {
            b.is_ascii_digit()
                || matches!(b, b' ' | b'.' | b'-' | b'(' | b')')
                || (b == b'+' && i == 0)
        })
}

/// Whether an id looks like an e-mail address (`user_id = "ann@shop.example"`),
/// which the collector treats as personal data too.
pub fn is_email(v: &str) -> bool {
    let Some((local, domain)) = v.trim().split_once('@') else {
        return false;
    };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._%+-'".contains(&b));
    let domain_ok = domain.len() >= 3
        && domain.len() <= 255
        && domain.contains('.')
        && !domain.starts_with(['.', '-'])
        && !domain.ends_with(['.', '-'])
        && domain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    local_ok && domain_ok
}

/// Characters a field name comparison ignores.
pub const SEPARATORS: &[u8] = b"_-. $";

/// A field name as the policy compares it: lower-cased, without
/// [`SEPARATORS`] (`firstName`, `first_name` and `$first-name` all give
/// `firstname`).
pub fn field_key(name: &str) -> String {
    name.chars()
        .filter(|c| !c.is_ascii() || !SEPARATORS.contains(&(*c as u8)))
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// The words of a field name (`first_name`, `firstName` → `first`, `name`).
pub fn field_words(name: &str) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if c.is_ascii() && SEPARATORS.contains(&(c as u8)) {
            if !cur.is_empty() {
                words.push(std::mem::take(&mut cur));
            }
            prev_lower = false;
            continue;
        }
        if c.is_ascii_uppercase() && prev_lower && !cur.is_empty() {
            words.push(std::mem::take(&mut cur));
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        cur.push(c.to_ascii_lowercase());
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> PiiKey {
        PiiKey::from_secret(&[7u8; 32]).unwrap()
    }

    #[test]
    fn one_person_one_pseudonym() {
        let k = key();
        let a = k.pseudonym("Ann.Lee@Shop.Example ");
        assert_eq!(a, k.pseudonym("ann.lee@shop.example"));
        assert!(a.starts_with(PREFIX) && a.len() == PREFIX.len() + 32, "{a}");
        assert_eq!(
            k.pseudonym("+44 (20) 7946-0958"),
            k.pseudonym("+442079460958")
        );
        assert_ne!(
            k.pseudonym("ann@shop.example"),
            k.pseudonym("bob@shop.example")
        );
        // names are not case-folded: "Ann" and "ann" may be different people
        assert_ne!(k.pseudonym("Ann"), k.pseudonym("ann"));
    }

    #[test]
    fn the_key_matters_and_must_be_long() {
        let other = PiiKey::from_secret(&[8u8; 32]).unwrap();
        assert_ne!(
            key().pseudonym("ann@shop.example"),
            other.pseudonym("ann@shop.example")
        );
        assert!(PiiKey::from_secret(b"short").is_none());
        assert!(
            !format!("{:?}", key()).contains('7'),
            "the key is not printed"
        );
    }

    #[test]
    fn emails_and_field_keys() {
        assert!(is_email("ann@shop.example"));
        for v in [
            "C000123",
            "@x.y",
            "ann@",
            "ann@localhost",
            "a b@c.de",
            "ann@.com",
        ] {
            assert!(!is_email(v), "{v}");
        }
        assert_eq!(field_key("firstName"), "firstname");
        assert_eq!(field_key("$first_name"), "firstname");
        assert_eq!(field_key("E-Mail"), "email");
        assert_eq!(field_key("first+name"), "first+name");
        assert_eq!(field_words("firstName"), ["first", "name"]);
        assert_eq!(field_words("$date_of-birth"), ["date", "of", "birth"]);
        assert_eq!(field_words("email"), ["email"]);
    }
}
