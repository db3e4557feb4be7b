//! Sources and their write keys.
//!
//! A source is a name (recorded with every event it sends) and a write key.
//! Keys come from four places, merged: `[[sources]]` in the configuration,
//! `--write-key NAME=KEY` flags, `SHOPLAKE_WRITE_KEYS=NAME=KEY,...`, and the
//! key file `<data>/state/keys.json` that `shoplake keys create|list|revoke`
//! manages. The key file stores only BLAKE3 hashes of keys, never the keys;
//! a running server re-reads it when it changes, so a revoked key stops
//! working within seconds without a restart.
//!
//! Snowplow and AWS Clickstream carry no secret: their events are accepted
//! when their app id (`aid`, `appId`) names a source that is not revoked.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use shoplake_core::config::SourceConfig;

use crate::error::{Result, ServerError};

/// One key in the key file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredKey {
    /// Source name.
    pub name: String,
    /// BLAKE3 of the key, hex.
    pub hash: String,
    /// The key's first characters, to tell keys apart in listings.
    pub prefix: String,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// When it was revoked, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    /// Browser origins allowed to send (empty: any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub origins: Vec<String>,
    /// Events per second (0: no limit).
    #[serde(default)]
    pub rate_limit: f64,
}

impl StoredKey {
    /// The key as listings show it: source, prefix…, created, revoked,
    /// origins, events per second (empty: no limit).
    pub fn listing_row(&self) -> Vec<String> {
        vec![
            self.name.clone(),
            format!("{}…", self.prefix),
            self.created_at.clone(),
            self.revoked_at.clone().unwrap_or_default(),
            self.origins.join(" "),
            if self.rate_limit > 0.0 {
                self.rate_limit.to_string()
            } else {
                String::new()
            },
        ]
    }
}

/// The key file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct KeyFile {
    /// Every key ever created, revoked ones included.
    pub keys: Vec<StoredKey>,
}

/// `<data>/state/keys.json`
pub fn key_file_path(data_dir: &Path) -> PathBuf {
    data_dir.join("state").join("keys.json")
}

/// Hex BLAKE3 of a key.
pub fn hash_key(key: &str) -> String {
    blake3::hash(key.as_bytes()).to_hex().to_string()
}

/// A new random key: `sk_` and 32 characters from the OS's random source.
pub fn new_key() -> Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 24];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| ServerError::Io(format!("reading /dev/urandom: {e}")))?;
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyz23456789ABCDEFGHJKLMNPQRSTUVWXYZ";
    let mut key = String::from("sk_");
    for b in bytes.iter().chain(bytes.iter().rev()).take(32) {
        key.push(ALPHABET[usize::from(*b) % ALPHABET.len()] as char);
    }
    Ok(key)
}

impl KeyFile {
    /// Reads the key file (missing: empty).
    pub fn read(data_dir: &Path) -> Result<KeyFile> {
        shoplake_lake::state::read_json(&key_file_path(data_dir))
            .map_err(|e| ServerError::Io(e.to_string()))
    }

    /// Writes the key file atomically.
    pub fn write(&self, data_dir: &Path) -> Result<()> {
        shoplake_lake::state::write_json(&key_file_path(data_dir), self)
            .map_err(|e| ServerError::Io(e.to_string()))
    }

    /// Creates a key for `name`; returns the key (shown once, never stored).
    pub fn create(&mut self, name: &str, origins: Vec<String>, rate_limit: f64) -> Result<String> {
        if name.is_empty()
            || name.len() > 64
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        {
            return Err(ServerError::Invalid(format!(
                "source name {name:?}: use 1–64 letters, digits, '-', '_' or '.'"
            )));
        }
        let key = new_key()?;
        self.keys.push(StoredKey {
            name: name.to_string(),
            hash: hash_key(&key),
            prefix: key[..7].to_string(),
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            revoked_at: None,
            origins,
            rate_limit,
        });
        Ok(key)
    }

    /// Revokes every live key of `name`, or the one key whose prefix is
    /// `name`; returns how many were revoked.
    pub fn revoke(&mut self, name_or_prefix: &str) -> usize {
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let mut n = 0;
        for k in &mut self.keys {
            if k.revoked_at.is_none() && (k.name == name_or_prefix || k.prefix == name_or_prefix) {
                k.revoked_at = Some(now.clone());
                n += 1;
            }
        }
        n
    }
}

/// A source that may send events.
#[derive(Debug)]
pub struct Source {
    /// Name.
    pub name: String,
    /// Allowed browser origins (empty: any).
    pub origins: Vec<String>,
    limiter: Option<Mutex<Bucket>>,
}

/// A token bucket: `rate` events per second, bursts up to two seconds' worth.
#[derive(Debug)]
struct Bucket {
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl Source {
    fn new(name: &str, origins: &[String], rate: f64) -> Source {
        Source {
            name: name.to_string(),
            origins: origins.to_vec(),
            limiter: (rate > 0.0).then(|| {
                Mutex::new(Bucket {
                    rate,
                    tokens: rate * 2.0,
                    at: Instant::now(),
                })
            }),
        }
    }

    /// Takes `n` events from the rate limit; `Err(seconds)` to wait when over it.
    pub fn admit(&self, n: usize) -> std::result::Result<(), u64> {
        let Some(l) = &self.limiter else {
            return Ok(());
        };
        let mut b = l.lock().expect("unpoisoned");
        let now = Instant::now();
        let burst = b.rate * 2.0;
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * b.rate).min(burst);
        b.at = now;
        let n = n as f64;
        if b.tokens >= n || (b.tokens >= burst && n > burst) {
            b.tokens -= n;
            Ok(())
        } else {
            Err(((n - b.tokens) / b.rate).ceil().max(1.0) as u64)
        }
    }

    /// Whether a browser at `origin` may send for this source.
    pub fn allows_origin(&self, origin: &str) -> bool {
        self.origins.is_empty() || self.origins.iter().any(|o| o == "*" || o == origin)
    }
}

/// Every source, by key hash and by name.
#[derive(Debug, Default)]
pub struct Keys {
    by_hash: HashMap<String, Arc<Source>>,
    by_name: HashMap<String, Arc<Source>>,
}

impl Keys {
    /// Builds the key set from fixed keys (configuration, flags, environment)
    /// and the key file.
    pub fn build(fixed: &[SourceConfig], file: &KeyFile) -> Keys {
        let mut k = Keys::default();
        for s in fixed {
            let src = Arc::new(Source::new(&s.name, &s.origins, s.rate_limit));
            k.by_name
                .entry(s.name.clone())
                .or_insert_with(|| src.clone());
            k.by_hash.insert(hash_key(&s.key), src);
        }
        for s in file.keys.iter().filter(|s| s.revoked_at.is_none()) {
            let src = Arc::new(Source::new(&s.name, &s.origins, s.rate_limit));
            k.by_name
                .entry(s.name.clone())
                .or_insert_with(|| src.clone());
            k.by_hash.insert(s.hash.clone(), src);
        }
        k
    }

    /// The source of a write key.
    pub fn by_key(&self, key: &str) -> Option<&Arc<Source>> {
        self.by_hash.get(&hash_key(key))
    }

    /// The source named `name` (Snowplow / AWS Clickstream app ids).
    pub fn by_name(&self, name: &str) -> Option<&Arc<Source>> {
        self.by_name.get(name)
    }

    /// Whether any source lets a browser at `origin` send (CORS preflight,
    /// which carries no key).
    pub fn any_allows_origin(&self, origin: &str) -> bool {
        self.by_name.values().any(|s| s.allows_origin(origin))
    }

    /// How many sources there are.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

/// Parses `NAME=KEY` (a flag or an item of `SHOPLAKE_WRITE_KEYS`).
pub fn parse_write_key(s: &str) -> Result<SourceConfig> {
    let (name, key) = s.split_once('=').ok_or_else(|| {
        ServerError::Invalid(format!(
            "write key {s:?}: expected NAME=KEY, e.g. web=sk_live_1234"
        ))
    })?;
    let (name, key) = (name.trim(), key.trim());
    if name.is_empty() || key.len() < 8 {
        return Err(ServerError::Invalid(format!(
            "write key for {name:?}: needs a name and a key of at least 8 characters"
        )));
    }
    Ok(SourceConfig {
        name: name.to_string(),
        key: key.to_string(),
        origins: Vec::new(),
        rate_limit: 0.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_resolve_and_revoked_keys_do_not() {
        let mut file = KeyFile::default();
        let k1 = file.create("web", vec![], 0.0).unwrap();
        let k2 = file
            .create("app", vec!["https://shop.example".into()], 0.0)
            .unwrap();
        assert_ne!(k1, k2);
        assert!(k1.starts_with("sk_") && k1.len() == 35);
        let fixed = [parse_write_key("cli=secret-key-1").unwrap()];
        let keys = Keys::build(&fixed, &file);
        assert_eq!(keys.by_key(&k1).unwrap().name, "web");
        assert_eq!(keys.by_key("secret-key-1").unwrap().name, "cli");
        assert!(keys.by_key("nope").is_none());
        assert!(
            keys.by_name("app")
                .unwrap()
                .allows_origin("https://shop.example")
        );
        assert!(
            !keys
                .by_name("app")
                .unwrap()
                .allows_origin("https://evil.example")
        );
        assert_eq!(file.revoke("web"), 1);
        let keys = Keys::build(&fixed, &file);
        assert!(keys.by_key(&k1).is_none());
        assert!(keys.by_name("web").is_none());
        assert!(file.keys.iter().all(|k| !k.hash.contains(&k1)));
        assert!(parse_write_key("nokey").is_err());
        assert!(parse_write_key("a=short").is_err());
        assert!(file.create("bad name", vec![], 0.0).is_err());
    }

    #[test]
    fn rate_limit_admits_a_burst_then_refuses() {
        let s = Source::new("s", &[], 10.0);
        assert!(s.admit(20).is_ok());
        let wait = s.admit(5).unwrap_err();
        assert!(wait >= 1);
        let unlimited = Source::new("u", &[], 0.0);
        assert!(unlimited.admit(1_000_000).is_ok());
    }
}
