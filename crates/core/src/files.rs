//! Reading batch files: decompression, format detection, whole-file checks and
//! row iteration for CSV and JSON (lines or one array), shared by the file
//! validator and the ETL.

use std::borrow::Cow;
use std::io::Read;
use std::path::Path;

use crate::Rejection;
use crate::sources::{Format, Record, Source, Val};
use serde_json::value::RawValue;

/// How a file is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Plain.
    None,
    /// gzip.
    Gzip,
    /// Zstandard.
    Zstd,
}

/// Detects compression from the magic bytes.
pub fn detect_compression(bytes: &[u8]) -> Compression {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// Decompresses `bytes` (if compressed) refusing output beyond `max_bytes`.
pub fn decompress(bytes: Vec<u8>, max_bytes: u64) -> Result<Vec<u8>, String> {
    let too_big = || {
        format!(
            "larger than the {} MiB limit once decompressed",
            max_bytes >> 20
        )
    };
    let mut out = Vec::new();
    match detect_compression(&bytes) {
        Compression::None => {
            if bytes.len() as u64 > max_bytes {
                return Err(too_big());
            }
            return Ok(bytes);
        }
        Compression::Gzip => flate2::read::MultiGzDecoder::new(&bytes[..])
            .take(max_bytes.saturating_add(1))
            .read_to_end(&mut out)
            .map_err(|e| format!("corrupt gzip data: {e}"))?,
        Compression::Zstd => zstd::stream::read::Decoder::new(&bytes[..])
            .map_err(|e| format!("corrupt zstd data: {e}"))?
            .take(max_bytes.saturating_add(1))
            .read_to_end(&mut out)
            .map_err(|e| format!("corrupt zstd data: {e}"))?,
    };
    if out.len() as u64 > max_bytes {
        return Err(too_big());
    }
    Ok(out)
}

/// The format a file name claims (`.csv`, `.json`, `.jsonl`, `.ndjson`, with
/// an optional `.gz`/`.zst`), if it claims one.
pub fn claimed_format(path: &Path) -> Option<Format> {
    let name = path.file_name()?.to_str()?.to_ascii_lowercase();
    let name = name
        .strip_suffix(".gz")
        .or_else(|| name.strip_suffix(".zst"))
        .or_else(|| name.strip_suffix(".zstd"))
        .unwrap_or(&name);
    let ext = name.rsplit_once('.')?.1;
    match ext {
        "csv" => Some(Format::Csv),
        "json" | "jsonl" | "ndjson" => Some(Format::Json),
        _ => None,
    }
}

/// Checks a decompressed file as a whole and returns its format: UTF-8, not
/// binary, not empty, and really the format its name claims (sniffed from
/// the content when the name claims none).
pub fn check_text(path: &Path, bytes: &[u8]) -> Result<Format, String> {
    not_binary(bytes)?;
    let text = std::str::from_utf8(bytes).map_err(|e| not_utf8(e.valid_up_to()))?;
    check_format(path, text)
}

/// [`check_text`] that keeps the text: the bytes are validated as UTF-8 once.
pub fn into_text(path: &Path, bytes: Vec<u8>) -> Result<(String, Format), String> {
    not_binary(&bytes)?;
    let text = String::from_utf8(bytes).map_err(|e| not_utf8(e.utf8_error().valid_up_to()))?;
    let format = check_format(path, &text)?;
    Ok((text, format))
}

fn not_binary(bytes: &[u8]) -> Result<(), String> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if bytes[..bytes.len().min(8192)].contains(&0) {
        return Err("binary data, not a CSV or JSON text file".into());
    }
    Ok(())
}

fn not_utf8(offset: usize) -> String {
    format!("not UTF-8 text (invalid byte at offset {offset})")
}

fn check_format(path: &Path, text: &str) -> Result<Format, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let Some(first) = text.bytes().find(|b| !b.is_ascii_whitespace()) else {
        return Err("empty file".into());
    };
    let looks_json = first == b'{' || first == b'[';
    match claimed_format(path) {
        Some(Format::Csv) if looks_json => Err("named .csv but the content is JSON".into()),
        Some(Format::Json) if !looks_json => Err(format!(
            "named .json but the content is not JSON (starts with {:?})",
            first as char
        )),
        Some(f) => Ok(f),
        None if looks_json => Ok(Format::Json),
        None => Ok(Format::Csv),
    }
}

/// One row as read from a file.
pub struct Row<'a> {
    /// 1-based line of the row's start.
    pub line: u64,
    /// The row's text as received (a CSV record or one JSON object).
    pub raw: &'a str,
}

/// Summary of one pass over a file.
#[derive(Debug, Clone, Default)]
pub struct FileShape {
    /// For CSV: the header line as received.
    pub header: Option<String>,
    /// Rows seen.
    pub rows: u64,
}

/// Reads every row of `text` (a whole file, or for JSON lines a chunk of one
/// starting at line `first_line`) as `source` records and calls `f` for each.
/// Returns `Err` when the file must be refused whole (bad CSV header, broken
/// JSON array).
pub fn for_each_row<'t, F>(
    source: Source,
    format: Format,
    text: &'t str,
    first_line: u64,
    mut f: F,
) -> Result<FileShape, String>
where
    F: FnMut(Row<'t>, Result<Record<'_>, Rejection>),
{
    // a byte-order mark can only start the file (a later chunk of JSON
    // lines keeps one at its start, as one pass over the file would); the
    // first chunk of a file is the one starting at line 1
    let text = match first_line {
        1 => text.strip_prefix('\u{feff}').unwrap_or(text),
        _ => text,
    };
    match format {
        Format::Csv => csv_rows(source, text, &mut f),
        Format::Json => {
            // only a whole file can be one array: a later chunk of JSON
            // lines that starts with `[` holds a bad line, not an array
            if first_line == 1 && is_json_array(text) {
                json_array_rows(source, text, &mut f)
            } else {
                Ok(json_line_rows(source, text, first_line, &mut f))
            }
        }
    }
}

/// Whether a JSON file's text is one array (else it is JSON lines).
pub fn is_json_array(text: &str) -> bool {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    text.trim_start().starts_with('[')
}

fn json_line_rows<'t, F>(source: Source, text: &'t str, first_line: u64, f: &mut F) -> FileShape
where
    F: FnMut(Row<'t>, Result<Record<'_>, Rejection>),
{
    let mut shape = FileShape::default();
    let mut start = 0usize;
    let bytes = text.as_bytes();
    let ends = memchr::memchr_iter(b'\n', bytes).chain(std::iter::once(bytes.len()));
    for (line_no, end) in (first_line..).zip(ends) {
        let line = &text[start..end];
        let raw = line.strip_suffix('\r').unwrap_or(line);
        if !raw.trim().is_empty() {
            shape.rows += 1;
            f(Row { line: line_no, raw }, Record::from_json(source, raw));
        }
        start = (end + 1).min(bytes.len());
    }
    shape
}

fn json_array_rows<'t, F>(source: Source, text: &'t str, f: &mut F) -> Result<FileShape, String>
where
    F: FnMut(Row<'t>, Result<Record<'_>, Rejection>),
{
    let items: Vec<&RawValue> = serde_json::from_str(text)
        .map_err(|e| format!("not a valid JSON array of objects: {e}"))?;
    let mut shape = FileShape::default();
    let base = text.as_ptr() as usize;
    let mut line = 1u64;
    let mut pos = 0usize;
    for raw in items {
        let off = raw.get().as_ptr() as usize - base;
        line += memchr::memchr_iter(b'\n', &text.as_bytes()[pos..off]).count() as u64;
        pos = off;
        shape.rows += 1;
        f(
            Row {
                line,
                raw: raw.get(),
            },
            Record::from_json(source, raw.get()),
        );
    }
    Ok(shape)
}

fn csv_rows<'t, F>(source: Source, text: &'t str, f: &mut F) -> Result<FileShape, String>
where
    F: FnMut(Row<'t>, Result<Record<'_>, Rejection>),
{
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut header = csv::StringRecord::new();
    if !rdr
        .read_record(&mut header)
        .map_err(|e| format!("unreadable CSV header: {e}"))?
    {
        return Err("empty file".into());
    }
    let header_end = rdr.position().byte() as usize;
    let header_line = text[..header_end]
        .trim_end_matches(['\r', '\n'])
        .to_string();
    let cols = source.columns();
    let mut map: Vec<Option<usize>> = Vec::with_capacity(header.len());
    let mut names: Vec<String> = Vec::with_capacity(header.len());
    let mut seen = vec![false; cols.len()];
    for h in header.iter() {
        let name = h.trim().to_ascii_lowercase();
        if names.contains(&name) {
            return Err(format!("column {name:?} appears twice in the header"));
        }
        let idx = source.column_index(&name);
        if let Some(i) = idx {
            seen[i] = true;
        }
        map.push(idx);
        names.push(name);
    }
    let missing: Vec<&str> = source
        .required_columns()
        .iter()
        .copied()
        .filter(|c| !seen[source.column_index(c).expect("required is a column")])
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "the header lacks required column{} {} (found: {}; a {} file has: {})",
            if missing.len() == 1 { "" } else { "s" },
            missing.join(", "),
            names.join(", "),
            source.name(),
            cols.join(", ")
        ));
    }
    let mut shape = FileShape {
        header: Some(header_line),
        rows: 0,
    };
    let mut rec = csv::ByteRecord::new();
    let mut lines = LineCounter::default();
    loop {
        let start = rdr.position().byte() as usize;
        match rdr.read_byte_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                // An unterminated quote swallows the rest of the file: refuse
                // only that row, with what csv says.
                let (line, raw) = lines.locate(text, start, text.len());
                shape.rows += 1;
                f(
                    Row { line, raw },
                    Err(Rejection::row(format!("malformed CSV: {e}"))),
                );
                break;
            }
        }
        let end = rdr.position().byte() as usize;
        let (line, raw) = lines.locate(text, start, end);
        if rec.len() == 1 && rec[0].is_empty() {
            continue; // blank line
        }
        shape.rows += 1;
        let result = if rec.len() != map.len() {
            Err(Rejection::row(format!(
                "{} fields where the header has {}",
                rec.len(),
                map.len()
            )))
        } else {
            let mut r = Record::missing(cols.len());
            let mut bad = None;
            for (i, field) in rec.iter().enumerate() {
                let Ok(s) = std::str::from_utf8(field) else {
                    bad = Some(Rejection::row("not UTF-8"));
                    break;
                };
                let v = if s.is_empty() {
                    Val::Null
                } else {
                    Val::Str(Cow::Borrowed(s))
                };
                match map[i] {
                    Some(c) => r.vals[c] = v,
                    None => r.extra.push((Cow::Owned(names[i].clone()), v)),
                }
            }
            match bad {
                Some(b) => Err(b),
                None => Ok(r),
            }
        };
        f(Row { line, raw }, result);
    }
    Ok(shape)
}

/// Line numbers from byte offsets (the csv crate miscounts lines ending in
/// `\r\n`), counted incrementally as the reader moves forward.
#[derive(Default)]
struct LineCounter {
    pos: usize,
    line: u64,
}

impl LineCounter {
    /// The 1-based line where the record in `text[start..end]` begins (after
    /// any blank lines) and the record's text without line terminators.
    fn locate<'t>(&mut self, text: &'t str, start: usize, end: usize) -> (u64, &'t str) {
        let raw = &text[start..end];
        let trimmed = raw.trim_start_matches(['\r', '\n']);
        let begin = start + (raw.len() - trimmed.len());
        if self.line == 0 {
            self.line = 1;
        }
        self.line += memchr::memchr_iter(b'\n', &text.as_bytes()[self.pos..begin]).count() as u64;
        self.pos = begin;
        (self.line, trimmed.trim_end_matches(['\r', '\n']))
    }
}

/// Splits JSON-lines text into at most `n` chunks at line boundaries, each
/// with the 1-based line number of its first line, for parallel parsing.
pub fn split_lines(text: &str, n: usize) -> Vec<(u64, &str)> {
    let n = n.max(1);
    let target = text.len() / n + 1;
    let mut out = Vec::with_capacity(n);
    let mut start = 0usize;
    let mut line = 1u64;
    let bytes = text.as_bytes();
    while start < text.len() {
        let mut end = (start + target).min(text.len());
        if end < text.len() {
            end = match memchr::memchr(b'\n', &bytes[end..]) {
                Some(i) => end + i + 1,
                None => text.len(),
            };
        }
        out.push((line, &text[start..end]));
        line += memchr::memchr_iter(b'\n', &bytes[start..end]).count() as u64;
        start = end;
    }
    out
}

/// For the fuzzer (`fuzz/`): reads `data` as an imported file the way
/// `shoplake import` and the ETL do (decompression, whole-file checks, rows,
/// each row's validation), and checks what they rely on: decompression keeps
/// its limit, [`into_text`] and [`check_text`] agree, every row's text is a
/// piece of the file on a line that exists, the row count is right, and
/// JSON lines read in chunks ([`split_lines`], as the ETL does on several
/// threads) give the rows a single pass gives. The first byte picks the
/// source and the name's claimed format. Panics when one does not hold.
#[doc(hidden)]
pub fn fuzz_import(data: &[u8]) {
    const LIMIT: u64 = 256 * 1024;
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    let source = Source::ALL[pick as usize % Source::ALL.len()];
    let name = ["f.csv", "f.json", "f.jsonl.gz", "f"][(pick as usize / 4) % 4];
    let path = Path::new(name);
    let Ok(bytes) = decompress(bytes.to_vec(), LIMIT) else {
        return;
    };
    assert!(
        bytes.len() as u64 <= LIMIT,
        "decompression passed its limit"
    );
    let checked = check_text(path, &bytes);
    let Ok((text, format)) = into_text(path, bytes) else {
        assert!(checked.is_err(), "into_text refused what check_text took");
        return;
    };
    assert_eq!(checked, Ok(format), "check_text and into_text disagree");
    let lines = memchr::memchr_iter(b'\n', text.as_bytes()).count() as u64 + 1;
    let span = text.as_ptr() as usize..=text.as_ptr() as usize + text.len();
    let mut rows: Vec<(u64, (usize, usize))> = Vec::new();
    let shape = for_each_row(source, format, &text, 1, |row, rec| {
        let at = row.raw.as_ptr() as usize;
        assert!(
            span.contains(&at) && span.contains(&(at + row.raw.len())),
            "a row's text is not a piece of the file"
        );
        assert!(
            (1..=lines).contains(&row.line),
            "line {} of {lines}",
            row.line
        );
        if let Ok(r) = rec {
            let _ = crate::sources::validate(source, &r);
        }
        rows.push((row.line, (at - text.as_ptr() as usize, row.raw.len())));
    });
    let Ok(shape) = shape else {
        return;
    };
    assert_eq!(shape.rows, rows.len() as u64, "rows counted and rows seen");
    let json_lines = format == Format::Json && !is_json_array(&text);
    if json_lines {
        for n in [2, 3, 7] {
            let mut chunked = Vec::new();
            let mut joined = 0;
            for (first_line, chunk) in split_lines(&text, n) {
                assert_eq!(chunk.as_ptr() as usize, text.as_ptr() as usize + joined);
                joined += chunk.len();
                let base = text.as_ptr() as usize;
                let _ = for_each_row(source, format, chunk, first_line, |row, _| {
                    chunked.push((row.line, (row.raw.as_ptr() as usize - base, row.raw.len())));
                });
            }
            assert_eq!(joined, text.len(), "the chunks cover the text");
            assert_eq!(chunked, rows, "{n} chunks read other rows than one pass");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Collected = (
        Result<FileShape, String>,
        Vec<(u64, String, Result<(), String>)>,
    );

    fn collect(source: Source, format: Format, text: &str) -> Collected {
        let mut rows = Vec::new();
        let shape = for_each_row(source, format, text, 1, |row, rec| {
            let res = rec
                .and_then(|r| crate::sources::validate(source, &r))
                .map_err(|e| e.to_string());
            rows.push((row.line, row.raw.to_string(), res));
        });
        (shape, rows)
    }

    /// The importer's fuzz corpus (`fuzz/corpus/import`), through the
    /// fuzzer's checks: inputs that once mattered stay covered without
    /// libFuzzer.
    #[test]
    fn the_kept_import_fuzz_corpus_replays_cleanly() {
        let root =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/import");
        let mut n = 0;
        for e in std::fs::read_dir(root).expect("the corpus is in the repository") {
            fuzz_import(&std::fs::read(e.unwrap().path()).unwrap());
            n += 1;
        }
        assert!(n >= 7, "{n} inputs");
    }

    /// A JSON-lines file read in chunks (as the ETL does on several threads)
    /// gives the rows one pass gives, also when a chunk starts with a line
    /// that is `[`... or a byte-order mark (found writing the fuzzer's
    /// checks: such a chunk was read as a JSON array, or its mark dropped).
    #[test]
    fn chunks_of_json_lines_read_as_one_pass() {
        let text = "{\"a\":1}\n[1,2]\n{\"b\":2}\n\u{feff}{\"c\":3}\n{\"d\":4}\n";
        let rows = |t: &str, first: u64| {
            let mut out = Vec::new();
            for_each_row(Source::Clickstream, Format::Json, t, first, |row, rec| {
                out.push((row.line, row.raw.to_string(), rec.is_ok()));
            })
            .unwrap();
            out
        };
        let whole = rows(text, 1);
        assert_eq!(whole.len(), 5);
        assert!(!whole[1].2 && !whole[3].2, "{whole:?}");
        // split after every line: the rest starts at that line's number
        let mut at = 0;
        for (i, line) in text.split_inclusive('\n').enumerate() {
            at += line.len();
            let mut both = rows(&text[..at], 1);
            both.extend(rows(&text[at..], i as u64 + 2));
            assert_eq!(both, whole, "split after line {}", i + 1);
        }
    }

    #[test]
    fn csv_rows_have_lines_raw_text_and_reasons() {
        let text = "transaction_id,customer_id,product_id,quantity,price,total_amount,transaction_date,status\r\n\
T1,C1,P1,1,9.99,9.99,2025-01-15,completed\r\n\
T2,C1,P1,1,abc,9.99,2025-01-15,completed\r\n\
\"T3\",C1,P1,1,1.00,\"1.00\",2025-01-15,returned\n\
T4,C1\n";
        let (shape, rows) = collect(Source::Transactions, Format::Csv, text);
        assert_eq!(shape.unwrap().rows, 4);
        assert_eq!(rows[0].0, 2);
        assert_eq!(rows[0].1, "T1,C1,P1,1,9.99,9.99,2025-01-15,completed");
        assert!(rows[0].2.is_ok());
        assert_eq!(
            rows[1].2,
            Err("price: not a decimal number: \"abc\"".into())
        );
        assert_eq!(
            rows[2].1,
            "\"T3\",C1,P1,1,1.00,\"1.00\",2025-01-15,returned"
        );
        assert!(rows[2].2.is_ok());
        assert_eq!(rows[3].0, 5);
        assert_eq!(rows[3].2, Err("2 fields where the header has 8".into()));
    }

    #[test]
    fn csv_header_problems_refuse_the_file() {
        let (shape, _) = collect(
            Source::Transactions,
            Format::Csv,
            "transaction_id,customer_id\nT1,C1\n",
        );
        let e = shape.unwrap_err();
        assert!(
            e.contains("lacks required columns product_id, quantity"),
            "{e}"
        );
        let (shape, _) = collect(Source::Reviews, Format::Csv, "review_id,review_id\n");
        assert!(shape.unwrap_err().contains("appears twice"));
    }

    #[test]
    fn json_arrays_and_lines() {
        let arr = "[\n {\"product_id\":\"P1\",\"name\":\"A\",\"category\":\"c\",\"price\":1.5},\n {\"product_id\":\"P2\",\"name\":\"B\",\"category\":\"c\",\"price\":-1}\n]";
        let (shape, rows) = collect(Source::Products, Format::Json, arr);
        assert_eq!(shape.unwrap().rows, 2);
        assert_eq!((rows[0].0, rows[1].0), (2, 3));
        assert_eq!(rows[1].2, Err("price: must be > 0, got -1.00".into()));
        let lines =
            "{\"product_id\":\"P1\",\"name\":\"A\",\"category\":\"c\",\"price\":1.5}\n\nnot json\n";
        let (_, rows) = collect(Source::Products, Format::Json, lines);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].0, 3);
        assert!(rows[1].2.as_ref().unwrap_err().starts_with("invalid JSON"));
        let (shape, _) = collect(Source::Products, Format::Json, "[{\"a\":1},");
        assert!(shape.is_err());
    }

    #[test]
    fn whole_file_checks() {
        let p = Path::new("x.csv");
        assert_eq!(check_text(p, b"a,b\n").unwrap(), Format::Csv);
        assert!(
            check_text(p, b"{\"a\":1}")
                .unwrap_err()
                .contains("content is JSON")
        );
        assert!(
            check_text(Path::new("x.json"), b"a,b")
                .unwrap_err()
                .contains("not JSON")
        );
        assert!(check_text(p, b"  \n").unwrap_err().contains("empty"));
        assert!(
            check_text(p, b"PK\x03\x04\x00\x00")
                .unwrap_err()
                .contains("binary")
        );
        assert!(check_text(p, b"a,\xff\n").unwrap_err().contains("UTF-8"));
        assert_eq!(
            check_text(Path::new("x.data"), b"[{}]").unwrap(),
            Format::Json
        );
        assert_eq!(
            claimed_format(Path::new("a/b.JSONL.gz")),
            Some(Format::Json)
        );
    }

    #[test]
    fn compressed_files_round_trip_and_respect_limits() {
        let data = b"hello,world\n".repeat(100);
        let gz = {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut e, &data).unwrap();
            e.finish().unwrap()
        };
        assert_eq!(decompress(gz.clone(), 1 << 20).unwrap(), data);
        assert!(decompress(gz, 100).unwrap_err().contains("limit"));
        let zs = zstd::encode_all(&data[..], 1).unwrap();
        assert_eq!(decompress(zs, 1 << 20).unwrap(), data);
        assert!(
            decompress(vec![0x1f, 0x8b, 1, 2, 3], 1 << 20)
                .unwrap_err()
                .contains("gzip")
        );
    }

    #[test]
    fn split_lines_covers_text_with_line_numbers() {
        let text = "a\nb\nc\nd\ne\n";
        let parts = split_lines(text, 3);
        assert_eq!(parts.iter().map(|p| p.1).collect::<String>(), text);
        for (line, chunk) in &parts {
            let first = chunk.split('\n').next().unwrap();
            assert_eq!(text.split('\n').nth(*line as usize - 1).unwrap(), first);
        }
    }
}
