//! `shoplake privacy erase`: the right to erasure. Removes one person from
//! every table of the lake and from the raw landing files, then proves it
//! by counting what is left.
//!
//! A person is named by user ids (the customer id the shop uses, or an
//! e-mail address) and optionally anonymous ids. From those it erases:
//!
//! * rows whose `customer_id` or `user_id` is one of the ids, or whose
//!   `anonymous_id` is one of them or belongs to a device the person used
//!   (found in `processed.events` and `processed.sessions`);
//! * raw payloads and quarantined rows (`payload`) that name an id as a
//!   CSV field or a JSON string;
//! * rows of the raw landing files (CSV and JSON lines) whose person
//!   columns hold an id; the next pipeline run re-processes those days.
//!
//! An e-mail address is also searched as the pseudonym the collector stores
//! in its place (`[privacy] pii = "hash"`), with the installation's key.
//! The history of those tables goes too: data files of older versions and
//! the Delta log entries that described them are deleted at once (see
//! [`Lake::erase_where`]). Aggregates (daily KPIs,
//! product figures) hold no person and are left alone.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use arrow::record_batch::RecordBatch;
use datafusion::functions::regex::expr_fn::regexp_like;
use datafusion::prelude::{Expr, SessionContext, col, lit};
use futures::StreamExt;
use shoplake_core::privacy::{PiiKey, is_email};
use shoplake_core::schema::{EVENTS, SESSIONS, Storage, TABLES, Table, Zone};
use shoplake_core::sources::Source;
use shoplake_lake::catalog::list_raw_files;
use shoplake_lake::{Erased, Lake, state};

use crate::error::{JobError, Result};

/// Columns that name a person.
const PERSON_COLUMNS: [&str; 2] = ["customer_id", "user_id"];

/// Who to erase.
#[derive(Debug, Clone, Default)]
pub struct Person {
    /// Customer ids / user ids / e-mail addresses.
    pub user_ids: Vec<String>,
    /// Device or browser ids, besides those found linked to the user ids.
    pub anonymous_ids: Vec<String>,
}

/// What [`erase`] did, table by table.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Erasure {
    /// Every id searched for (pseudonyms of e-mail addresses included).
    pub ids: Vec<String>,
    /// Every anonymous id searched for.
    pub anonymous_ids: Vec<String>,
    /// Every Delta table with a person column: rows erased, old files and
    /// log entries deleted.
    pub tables: Vec<Erased>,
    /// Raw landing files rewritten, and rows removed from each.
    pub raw_files: Vec<(PathBuf, u64)>,
    /// Rows still matching afterwards, per table (the proof: all zero).
    pub remaining: Vec<(String, u64)>,
    /// Nothing was changed: the counts are what would be erased.
    pub dry_run: bool,
}

impl Erasure {
    /// Rows erased (or that would be) in all.
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|t| t.rows).sum::<u64>()
            + self.raw_files.iter().map(|(_, n)| n).sum::<u64>()
    }

    /// Whether every table came out clean.
    pub fn proven(&self) -> bool {
        self.remaining.iter().all(|(_, n)| *n == 0)
    }
}

/// Erases `person` from the lake (see the module documentation). Holds the
/// pipeline lock, so no pipeline run rebuilds a table from half-erased
/// inputs; the collector may keep writing.
pub async fn erase(
    lake: &Lake,
    person: &Person,
    key: Option<&PiiKey>,
    dry_run: bool,
) -> Result<Erasure> {
    let mut ids: BTreeSet<String> = BTreeSet::new();
    for id in person
        .user_ids
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
    {
        ids.insert(id.to_owned());
        if let (Some(k), true) = (key, is_email(id)) {
            ids.insert(k.pseudonym(id));
        }
    }
    let mut anon: BTreeSet<String> = person
        .anonymous_ids
        .iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    if ids.is_empty() && anon.is_empty() {
        return Err(JobError::Invalid(
            "name the person: --user-id ID (a customer id or e-mail address) or --anonymous-id ID"
                .into(),
        ));
    }
    let _lock = crate::pipeline::lock(lake)?;

    // devices the person used; files' events carry the customer id as
    // their anonymous id
    if !ids.is_empty() {
        for t in [&EVENTS, &SESSIONS] {
            anon.extend(linked_anonymous_ids(lake, t, &ids).await?);
        }
    }
    anon.extend(ids.iter().cloned());

    let mut out = Erasure {
        ids: ids.iter().cloned().collect(),
        anonymous_ids: anon.iter().cloned().collect(),
        dry_run,
        ..Default::default()
    };
    for t in TABLES.iter().filter(|t| t.storage == Storage::Delta) {
        let Some(pred) = predicate(t, &ids, &anon) else {
            continue;
        };
        let found = lake.count_where(t, pred.clone()).await?;
        if dry_run {
            out.tables.push(Erased {
                table: t.qualified(),
                rows: found,
                ..Default::default()
            });
            out.remaining.push((t.qualified(), found));
            continue;
        }
        // the history goes even when the current version does not hold
        // them: an older one may
        let e = lake
            .erase_where(t, (found > 0).then(|| pred.clone()))
            .await?;
        out.tables.push(e);
        out.remaining
            .push((t.qualified(), lake.count_where(t, pred).await?));
    }
    for s in Source::ALL {
        for f in list_raw_files(&lake.raw_dir(s))? {
            let n = erase_raw_file(&f.path, &ids, dry_run)?;
            if n > 0 {
                out.raw_files.push((f.path, n));
            }
        }
    }
    tracing::info!(
        ids = out.ids.len(),
        rows = out.rows(),
        tables = out.tables.len(),
        raw_files = out.raw_files.len(),
        dry_run,
        "erased a person"
    );
    Ok(out)
}

/// What in `t` belongs to the person; `None` when `t` holds no person.
fn predicate(t: &Table, ids: &BTreeSet<String>, anon: &BTreeSet<String>) -> Option<Expr> {
    let list = |set: &BTreeSet<String>| set.iter().map(|s| lit(s.as_str())).collect::<Vec<_>>();
    let mut terms: Vec<Expr> = Vec::new();
    for c in t.columns {
        if PERSON_COLUMNS.contains(&c.name) && !ids.is_empty() {
            terms.push(col(c.name).in_list(list(ids), false));
        } else if c.name == "anonymous_id" && !anon.is_empty() {
            terms.push(col(c.name).in_list(list(anon), false));
        } else if c.name == "payload" {
            let all: BTreeSet<&str> = ids.iter().chain(anon).map(String::as_str).collect();
            let alternatives: Vec<String> = all.iter().map(|s| regex_escape(s)).collect();
            // a CSV field or a JSON string, not a substring of another id
            let pattern = format!(r#"(^|[,"\t])({})($|[,"\t\r])"#, alternatives.join("|"));
            terms.push(regexp_like(col(c.name), lit(pattern), None));
        }
    }
    terms.into_iter().reduce(Expr::or)
}

fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    for c in s.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Distinct anonymous ids of `t`'s rows whose `user_id` is one of `ids`.
async fn linked_anonymous_ids(
    lake: &Lake,
    t: &Table,
    ids: &BTreeSet<String>,
) -> Result<Vec<String>> {
    let Some(table) = lake.load(t).await? else {
        return Ok(Vec::new());
    };
    let df_err = |e: datafusion::error::DataFusionError| {
        JobError::Internal(format!("reading {}: {e}", t.qualified()))
    };
    let ctx = SessionContext::new();
    table
        .update_datafusion_session(&ctx.state())
        .map_err(|e| JobError::Lake(shoplake_lake::LakeError::delta(t.qualified(), e)))?;
    let provider = table.table_provider().await.map_err(df_err)?;
    let list: Vec<Expr> = ids.iter().map(|s| lit(s.as_str())).collect();
    let mut stream = ctx
        .read_table(provider)
        .map_err(df_err)?
        .filter(
            col("user_id")
                .in_list(list, false)
                .and(col("anonymous_id").is_not_null()),
        )
        .map_err(df_err)?
        .select(vec![col("anonymous_id")])
        .map_err(df_err)?
        .distinct()
        .map_err(df_err)?
        .execute_stream()
        .await
        .map_err(df_err)?;
    let mut out = Vec::new();
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(df_err)?;
        let a = arrow::compute::cast(batch.column(0), &arrow::datatypes::DataType::Utf8)?;
        let a = a
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .expect("cast to Utf8");
        out.extend(a.iter().flatten().map(str::to_owned));
    }
    Ok(out)
}

/// Removes the rows of a raw landing file (CSV with a header, or JSON
/// lines) whose person columns hold one of `ids`; rows removed. The file is
/// replaced atomically; its other rows keep their exact bytes.
fn erase_raw_file(path: &Path, ids: &BTreeSet<String>, dry_run: bool) -> Result<u64> {
    if ids.is_empty() {
        return Ok(0);
    }
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let bytes = std::fs::read(path).map_err(|e| JobError::Io(path.to_owned(), e))?;
    let (kept, removed) = match ext {
        "csv" => erase_csv(&bytes, ids).map_err(|e| {
            JobError::Invalid(format!("{}: not readable as CSV: {e}", path.display()))
        })?,
        "json" | "jsonl" | "ndjson" => erase_json_lines(&bytes, ids),
        _ => return Ok(0),
    };
    if removed > 0 && !dry_run {
        state::write_atomic(path, &kept)?;
    }
    Ok(removed)
}

fn erase_csv(
    bytes: &[u8],
    ids: &BTreeSet<String>,
) -> std::result::Result<(Vec<u8>, u64), csv::Error> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(bytes);
    let cols: Vec<usize> = rdr
        .byte_headers()?
        .iter()
        .enumerate()
        .filter(|(_, h)| {
            let h = String::from_utf8_lossy(h);
            let h = h.trim().trim_start_matches('\u{feff}');
            PERSON_COLUMNS.contains(&h) || h == "anonymous_id"
        })
        .map(|(i, _)| i)
        .collect();
    if cols.is_empty() {
        return Ok((bytes.to_vec(), 0));
    }
    let mut start = rdr.position().byte() as usize;
    let mut kept = bytes[..start].to_vec();
    let mut removed = 0u64;
    let mut rec = csv::ByteRecord::new();
    while rdr.read_byte_record(&mut rec)? {
        let mut end = rdr.position().byte() as usize;
        // the reader stops between the \r and \n of a CRLF
        if end > 0 && end < bytes.len() && bytes[end - 1] == b'\r' && bytes[end] == b'\n' {
            end += 1;
        }
        let hit = cols.iter().any(|&i| {
            rec.get(i)
                .and_then(|v| std::str::from_utf8(v).ok())
                .is_some_and(|v| ids.contains(v.trim()))
        });
        if hit {
            removed += 1;
        } else {
            kept.extend_from_slice(&bytes[start..end]);
        }
        start = end;
    }
    kept.extend_from_slice(&bytes[start.min(bytes.len())..]);
    Ok((kept, removed))
}

fn erase_json_lines(bytes: &[u8], ids: &BTreeSet<String>) -> (Vec<u8>, u64) {
    let mut kept = Vec::with_capacity(bytes.len());
    let mut removed = 0u64;
    for line in bytes.split_inclusive(|b| *b == b'\n') {
        let hit = serde_json::from_slice::<serde_json::Value>(line.trim_ascii())
            .ok()
            .and_then(|v| match v {
                serde_json::Value::Object(m) => Some(m),
                _ => None,
            })
            .is_some_and(|m| {
                PERSON_COLUMNS
                    .iter()
                    .chain(&["anonymous_id"])
                    .any(|c| match m.get(*c) {
                        Some(serde_json::Value::String(s)) => ids.contains(s.trim()),
                        Some(n @ serde_json::Value::Number(_)) => ids.contains(&n.to_string()),
                        _ => false,
                    })
            });
        if hit {
            removed += 1;
        } else {
            kept.extend_from_slice(line);
        }
    }
    (kept, removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn csv_rows_of_the_person_go_and_the_rest_keep_their_bytes() {
        let text = "transaction_id,customer_id,amount\nT1,C1,\"1,50\"\nT2,C10,2.00\r\nT3,C1,3\nT4,\"C2\",4";
        let (kept, n) = erase_csv(text.as_bytes(), &set(&["C1"])).unwrap();
        assert_eq!(n, 2);
        assert_eq!(
            String::from_utf8(kept).unwrap(),
            "transaction_id,customer_id,amount\nT2,C10,2.00\r\nT4,\"C2\",4"
        );
        let (kept, n) = erase_csv(b"a,b\n1,2\n", &set(&["1"])).unwrap();
        assert_eq!(
            (n, kept.as_slice()),
            (0, &b"a,b\n1,2\n"[..]),
            "no person column"
        );
    }

    #[test]
    fn json_lines_of_the_person_go() {
        let text = "{\"customer_id\":\"C1\",\"x\":1}\n{\"customer_id\":\"C2\"}\n{\"user_id\":42}\nnot json\n";
        let (kept, n) = erase_json_lines(text.as_bytes(), &set(&["C1", "42"]));
        assert_eq!(n, 2);
        assert_eq!(
            String::from_utf8(kept).unwrap(),
            "{\"customer_id\":\"C2\"}\nnot json\n"
        );
    }

    #[test]
    fn payload_patterns_match_whole_ids_only() {
        let re = |ids: &[&str]| {
            let alternatives: Vec<String> = ids.iter().map(|s| regex_escape(s)).collect();
            regex::Regex::new(&format!(
                r#"(^|[,"\t])({})($|[,"\t\r])"#,
                alternatives.join("|")
            ))
            .unwrap()
        };
        let r = re(&["C1", "a.b+c@x.io"]);
        assert!(r.is_match(r#"{"userId":"C1"}"#));
        assert!(r.is_match("C1,P2,3"));
        assert!(r.is_match("T1,P2,C1"));
        assert!(r.is_match(r#"{"email":"a.b+c@x.io"}"#));
        assert!(!r.is_match(r#"{"userId":"C10"}"#));
        assert!(!r.is_match("XC1,2"));
        assert!(!r.is_match(r#"{"email":"aXb+c@x.io"}"#), "dots are literal");
    }
}

/// Columns a masked copy replaces with pseudonyms (the same value gets the
/// same pseudonym in every table of one copy, so joins still match).
const MASKED_IDS: [&str; 4] = ["customer_id", "user_id", "anonymous_id", "session_id"];

/// Columns a masked copy empties (null, or `""` where the column may not be
/// null): raw payloads, event properties, free text and network addresses.
const EMPTIED: [&str; 4] = ["payload", "properties", "review_text", "ip_anon"];

/// URL columns whose query string and fragment a masked copy cuts off
/// (they may carry e-mail addresses, tokens or search terms).
const URLS: [&str; 2] = ["page_url", "referrer"];

/// What [`mask_copy`] made.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct MaskedCopy {
    /// The new data directory.
    pub to: PathBuf,
    /// Tables copied, with their rows.
    pub tables: Vec<(String, u64)>,
    /// Tables not copied: they hold payloads as received.
    pub left_behind: Vec<String>,
}

/// Copies the lake's processed and curated tables into a new data directory
/// `to`, with personal data masked, for development and test environments:
/// person ids become pseudonyms under a random key that is used once and
/// never stored (the copy cannot be linked back, but joins between its
/// tables still work), payloads, event properties, review texts and
/// addresses are emptied, and URLs lose their query strings. The raw zone
/// and quarantine (payloads as received), the operational store (accounts,
/// orders) and the event log are not copied. Holds the pipeline lock, so
/// the copy is of one moment.
pub async fn mask_copy(lake: &Lake, to: &Path) -> Result<MaskedCopy> {
    if std::fs::read_dir(to).is_ok_and(|mut d| d.next().is_some()) {
        return Err(JobError::Invalid(format!(
            "{} is not empty: a masked copy goes into a new directory",
            to.display()
        )));
    }
    let source = lake.data_dir().canonicalize().ok();
    std::fs::create_dir_all(to).map_err(|e| JobError::Io(to.to_path_buf(), e))?;
    if source.is_some() && to.canonicalize().ok() == source {
        return Err(JobError::Invalid(
            "the copy cannot be the lake itself".into(),
        ));
    }
    let key = once_key()?;
    let target = Lake::open(to, &Default::default())?;
    let _lock = crate::pipeline::lock(lake)?;
    let mut out = MaskedCopy {
        to: to.to_path_buf(),
        ..Default::default()
    };
    for t in TABLES.iter().filter(|t| t.storage == Storage::Delta) {
        if matches!(t.zone, Zone::Raw | Zone::Quarantine) {
            out.left_behind.push(t.qualified());
            continue;
        }
        let Some(table) = lake.load(t).await? else {
            continue;
        };
        let df_err = |e: datafusion::error::DataFusionError| {
            JobError::Internal(format!("reading {}: {e}", t.qualified()))
        };
        let evolved = lake.evolved_columns(t).await?;
        if !evolved.is_empty() {
            target.evolve(t, &evolved).await?;
        }
        let ctx = SessionContext::new();
        table
            .update_datafusion_session(&ctx.state())
            .map_err(|e| JobError::Lake(shoplake_lake::LakeError::delta(t.qualified(), e)))?;
        let provider = table.table_provider().await.map_err(df_err)?;
        let mut stream = ctx
            .read_table(provider)
            .map_err(df_err)?
            .execute_stream()
            .await
            .map_err(df_err)?;
        let mut appender = target
            .begin_append_once(t, "shoplake-mask", 1)
            .await?
            .ok_or_else(|| JobError::Internal(format!("{} already copied", t.qualified())))?;
        while let Some(batch) = stream.next().await {
            appender
                .write(mask_batch(&key, &batch.map_err(df_err)?)?)
                .await?;
        }
        let rows = appender.rows();
        appender.commit().await?;
        out.tables.push((t.qualified(), rows));
    }
    Ok(out)
}

/// A key for one masked copy: random, never written anywhere.
fn once_key() -> Result<PiiKey> {
    use std::io::Read;
    let mut secret = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut secret))
        .map_err(|e| JobError::Io("/dev/urandom".into(), e))?;
    Ok(PiiKey::from_secret(&secret).expect("32 bytes make a key"))
}

/// `batch` with its person ids pseudonymised, its payloads, properties, free
/// text and addresses emptied and its URLs cut at `?`/`#`.
fn mask_batch(key: &PiiKey, batch: &RecordBatch) -> Result<RecordBatch> {
    use arrow::array::{Array, ArrayRef, StringArray, new_null_array};
    use arrow::datatypes::DataType;
    let schema = batch.schema();
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        let name = field.name().as_str();
        let text = matches!(
            field.data_type(),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
        );
        let map = |f: &dyn Fn(&str) -> String| -> Result<ArrayRef> {
            let strings = arrow::compute::cast(column, &DataType::Utf8)?;
            let strings = strings
                .as_any()
                .downcast_ref::<StringArray>()
                .expect("cast to Utf8");
            let masked: StringArray = strings.iter().map(|v| v.map(f)).collect();
            Ok(arrow::compute::cast(&masked, field.data_type())?)
        };
        let new = if text && MASKED_IDS.contains(&name) {
            map(&|v| mask_id(key, v))?
        } else if text && URLS.contains(&name) {
            map(&|v| v.split(['?', '#']).next().unwrap_or_default().to_owned())?
        } else if EMPTIED.contains(&name) {
            if field.is_nullable() {
                new_null_array(field.data_type(), column.len())
            } else if text {
                map(&|_| String::new())?
            } else {
                column.clone()
            }
        } else {
            column.clone()
        };
        columns.push(new);
    }
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// The pseudonym of a person id in a masked copy: `m-` and 16 hex digits
/// of the keyed hash (the empty string stays empty).
fn mask_id(key: &PiiKey, v: &str) -> String {
    if v.is_empty() {
        return String::new();
    }
    let p = key.pseudonym(v);
    let hex = p.strip_prefix("pii:").unwrap_or(&p);
    format!("m-{}", &hex[..16.min(hex.len())])
}
