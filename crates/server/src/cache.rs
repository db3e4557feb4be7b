//! The answer cache of `/api/reports/...` and `/api/sql`: in the process, or
//! in Redis (shared by every shoplake process over the same lake).
//!
//! An answer is keyed by the query and the Delta version of every table the
//! query names, so it can only be served while those tables are unchanged: a
//! pipeline run or a sink commit that changes a table changes the key, and
//! the old answer is never read again (it ages out). Versions are read from
//! the tables' `_delta_log` folders, which costs a directory listing, not a
//! log replay. A query that names a table with no Delta log (the `raw.*`
//! file tables) is not cached. The cache is an accelerator only: when Redis
//! is down the query runs and the answer is served, with a warning logged.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use shoplake_core::config::{CacheBackend, CacheConfig};
use shoplake_core::schema::{Storage, TABLES, Table, Zone};
use shoplake_lake::Lake;

/// Cached answers.
pub(crate) struct Cache {
    store: Store,
    lake: Lake,
    prefix: String,
    max_entry: usize,
    ttl: Duration,
}

enum Store {
    Off,
    Memory(Mutex<Memory>),
    Redis(Redis),
}

/// What a lookup found: the answer, or the key to store it under.
pub(crate) enum Lookup {
    Hit(Vec<RecordBatch>, bool),
    Miss(Option<String>),
}

impl Cache {
    pub(crate) fn new(cfg: &CacheConfig, lake: &Lake) -> Cache {
        let store = match cfg.backend {
            CacheBackend::Off => Store::Off,
            CacheBackend::Memory => Store::Memory(Mutex::new(Memory {
                entries: VecDeque::new(),
                bytes: 0,
                max_bytes: cfg.max_mb << 20,
            })),
            CacheBackend::Redis => Store::Redis(Redis {
                url: cfg.redis_url.clone(),
                conn: tokio::sync::Mutex::new(None),
                down_since: Mutex::new(None),
            }),
        };
        Cache {
            store,
            lake: lake.clone(),
            prefix: cfg.key_prefix.clone(),
            max_entry: cfg.max_entry_kb << 10,
            ttl: Duration::from_secs(cfg.ttl_secs.max(1)),
        }
    }

    /// `memory`, `redis` or `off`.
    pub(crate) fn backend(&self) -> &'static str {
        match self.store {
            Store::Off => "off",
            Store::Memory(_) => "memory",
            Store::Redis(_) => "redis",
        }
    }

    /// The key of `sql` (run with `max_rows`) over the tables' current
    /// versions; None when it must not be cached.
    pub(crate) fn key(&self, sql: &str, max_rows: Option<usize>) -> Option<String> {
        if matches!(self.store, Store::Off) {
            return None;
        }
        let mut h = blake3::Hasher::new();
        h.update(self.lake.root().to_string_lossy().as_bytes());
        h.update(b"\0");
        h.update(sql.as_bytes());
        h.update(format!("\0{max_rows:?}").as_bytes());
        for t in referenced_tables(sql) {
            if t.storage != Storage::Delta {
                return None;
            }
            let v = latest_version(&self.lake, t)?;
            h.update(format!("\0{}={v}", t.qualified()).as_bytes());
        }
        Some(format!("{}:answer:{}", self.prefix, h.finalize().to_hex()))
    }

    /// The answer of `sql`, if cached.
    pub(crate) async fn get(&self, sql: &str, max_rows: Option<usize>) -> Lookup {
        let Some(key) = self.key(sql, max_rows) else {
            return Lookup::Miss(None);
        };
        let bytes = match &self.store {
            Store::Off => None,
            Store::Memory(m) => m.lock().unwrap_or_else(|e| e.into_inner()).get(&key),
            Store::Redis(r) => r.get(&key).await,
        };
        match bytes.and_then(|b| decode(&b)) {
            Some((batches, truncated)) => Lookup::Hit(batches, truncated),
            None => Lookup::Miss(Some(key)),
        }
    }

    /// Keeps an answer under `key` (from a [`Lookup::Miss`]).
    pub(crate) async fn put(&self, key: String, batches: &[RecordBatch], truncated: bool) {
        let Some(bytes) = encode(batches, truncated) else {
            return;
        };
        if bytes.len() > self.max_entry {
            return;
        }
        match &self.store {
            Store::Off => {}
            Store::Memory(m) => m
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .put(key, bytes, self.ttl),
            Store::Redis(r) => r.put(&key, bytes, self.ttl).await,
        }
    }
}

/// The tables `sql` names: `zone.table` (also `shoplake.zone.table`), and a
/// bare curated table name (the default schema). A word that happens to be
/// a table's name only makes the key stricter.
pub(crate) fn referenced_tables(sql: &str) -> Vec<&'static Table> {
    let lower = sql.to_ascii_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '"'))
        .filter(|w| !w.is_empty())
        .collect();
    let mut found: Vec<&'static Table> = Vec::new();
    for w in words {
        let w = w.replace('"', "");
        let parts: Vec<&str> = w.split('.').filter(|p| !p.is_empty()).collect();
        let hit = match parts.as_slice() {
            [.., zone, name] => TABLES
                .iter()
                .find(|t| t.zone.name() == *zone && t.name == *name),
            [name] => TABLES
                .iter()
                .find(|t| t.zone == Zone::Curated && t.name == *name),
            [] => None,
        };
        if let Some(t) = hit
            && !found.iter().any(|f| std::ptr::eq(*f, t))
        {
            found.push(t);
        }
    }
    found.sort_by_key(|t| t.qualified());
    found
}

/// The newest commit of `t` (`-1`: no table yet), from its `_delta_log`.
fn latest_version(lake: &Lake, t: &Table) -> Option<i64> {
    let dir = lake.table_dir(t).join("_delta_log");
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Some(-1),
        Err(_) => return None,
    };
    let mut newest = -1;
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if let Some(n) = name.strip_suffix(".json")
            && n.len() == 20
            && let Ok(v) = n.parse::<i64>()
        {
            newest = newest.max(v);
        }
    }
    Some(newest)
}

fn encode(batches: &[RecordBatch], truncated: bool) -> Option<Vec<u8>> {
    let schema = batches.first()?.schema();
    let mut out = vec![u8::from(truncated)];
    let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut out, &schema).ok()?;
    for b in batches {
        w.write(b).ok()?;
    }
    w.finish().ok()?;
    drop(w);
    Some(out)
}

fn decode(bytes: &[u8]) -> Option<(Vec<RecordBatch>, bool)> {
    let (flag, rest) = bytes.split_first()?;
    let r = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(rest), None).ok()?;
    let batches = r.collect::<Result<Vec<_>, _>>().ok()?;
    (!batches.is_empty()).then_some((batches, *flag == 1))
}

/// Answers in the process: the oldest go first past `max_bytes`.
struct Memory {
    entries: VecDeque<(String, Vec<u8>, Instant)>,
    bytes: usize,
    max_bytes: usize,
}

impl Memory {
    fn get(&mut self, key: &str) -> Option<Vec<u8>> {
        let now = Instant::now();
        let i = self.entries.iter().position(|(k, _, _)| k == key)?;
        if self.entries[i].2 <= now {
            let (_, v, _) = self.entries.remove(i)?;
            self.bytes -= v.len();
            return None;
        }
        // most recently used last
        let e = self.entries.remove(i)?;
        let v = e.1.clone();
        self.entries.push_back(e);
        Some(v)
    }

    fn put(&mut self, key: String, value: Vec<u8>, ttl: Duration) {
        if let Some(i) = self.entries.iter().position(|(k, _, _)| *k == key)
            && let Some((_, old, _)) = self.entries.remove(i)
        {
            self.bytes -= old.len();
        }
        self.bytes += value.len();
        self.entries.push_back((key, value, Instant::now() + ttl));
        while self.bytes > self.max_bytes {
            let Some((_, v, _)) = self.entries.pop_front() else {
                break;
            };
            self.bytes -= v.len();
        }
    }
}

/// Answers in Redis, through one auto-reconnecting connection.
struct Redis {
    url: String,
    conn: tokio::sync::Mutex<Option<redis::aio::ConnectionManager>>,
    /// When Redis was last found unreachable: it is not retried for a while,
    /// so a dead Redis costs one timeout per 10 s, not one per request.
    down_since: Mutex<Option<Instant>>,
}

const REDIS_TIMEOUT: Duration = Duration::from_millis(500);

impl Redis {
    async fn conn(&self) -> Option<redis::aio::ConnectionManager> {
        if let Some(t) = *self.down_since.lock().unwrap_or_else(|e| e.into_inner())
            && t.elapsed() < Duration::from_secs(10)
        {
            return None;
        }
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Some(c.clone());
        }
        let made = async {
            let client = redis::Client::open(self.url.as_str()).map_err(|e| e.to_string())?;
            let cfg = redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Some(REDIS_TIMEOUT))
                .set_response_timeout(Some(REDIS_TIMEOUT));
            redis::aio::ConnectionManager::new_with_config(client, cfg)
                .await
                .map_err(|e| e.to_string())
        };
        match tokio::time::timeout(REDIS_TIMEOUT * 2, made).await {
            Ok(Ok(c)) => {
                *slot = Some(c.clone());
                Some(c)
            }
            Ok(Err(e)) => {
                self.down(&e);
                None
            }
            Err(_) => {
                self.down("connection timed out");
                None
            }
        }
    }

    fn down(&self, why: &str) {
        tracing::warn!(url = %redact(&self.url), error = %why, "the Redis cache is unreachable: answering without it");
        *self.down_since.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }

    async fn get(&self, key: &str) -> Option<Vec<u8>> {
        let mut c = self.conn().await?;
        let got: Result<Option<Vec<u8>>, _> = tokio::time::timeout(
            REDIS_TIMEOUT,
            redis::cmd("GET").arg(key).query_async(&mut c),
        )
        .await
        .unwrap_or_else(|_| {
            Err(redis::RedisError::from(std::io::Error::from(
                std::io::ErrorKind::TimedOut,
            )))
        });
        match got {
            Ok(v) => v,
            Err(e) => {
                self.down(&e.to_string());
                None
            }
        }
    }

    async fn put(&self, key: &str, value: Vec<u8>, ttl: Duration) {
        let Some(mut c) = self.conn().await else {
            return;
        };
        let set: Result<(), _> = tokio::time::timeout(
            REDIS_TIMEOUT,
            redis::cmd("SET")
                .arg(key)
                .arg(value)
                .arg("PX")
                .arg(ttl.as_millis() as u64)
                .query_async(&mut c),
        )
        .await
        .unwrap_or_else(|_| {
            Err(redis::RedisError::from(std::io::Error::from(
                std::io::ErrorKind::TimedOut,
            )))
        });
        if let Err(e) = set {
            self.down(&e.to_string());
        }
    }
}

/// A Redis URL without its password, for logs.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tables_a_query_names_are_found_qualified_or_bare() {
        let names = |sql: &str| {
            referenced_tables(sql)
                .iter()
                .map(|t| t.qualified())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names("SELECT * FROM curated.daily_kpis k JOIN processed.events e ON true"),
            ["curated.daily_kpis", "processed.events"]
        );
        assert_eq!(names("select * from daily_kpis"), ["curated.daily_kpis"]);
        assert_eq!(
            names("SELECT * FROM shoplake.\"processed\".\"orders\""),
            ["processed.orders"]
        );
        // a bare non-curated name resolves to curated (the default schema):
        // processed.events is not named
        assert!(names("SELECT 1 AS events").is_empty());
        assert_eq!(names("SELECT * FROM raw.events"), ["raw.events"]);
    }

    #[test]
    fn answers_round_trip_and_the_memory_cache_evicts_the_oldest() {
        use arrow::array::Int64Array;
        let b = RecordBatch::try_from_iter([(
            "n",
            std::sync::Arc::new(Int64Array::from(vec![1, 2, 3])) as _,
        )])
        .unwrap();
        let bytes = encode(std::slice::from_ref(&b), true).unwrap();
        let (back, truncated) = decode(&bytes).unwrap();
        assert_eq!(back, vec![b]);
        assert!(truncated);
        let mut m = Memory {
            entries: VecDeque::new(),
            bytes: 0,
            max_bytes: 2 * bytes.len(),
        };
        let ttl = Duration::from_secs(60);
        m.put("a".into(), bytes.clone(), ttl);
        m.put("b".into(), bytes.clone(), ttl);
        assert!(m.get("a").is_some()); // a is now the most recent
        m.put("c".into(), bytes.clone(), ttl);
        assert!(m.get("b").is_none(), "the least recently used went first");
        assert!(m.get("a").is_some() && m.get("c").is_some());
        m.put("d".into(), bytes, Duration::ZERO);
        assert!(m.get("d").is_none(), "expired");
    }
}
