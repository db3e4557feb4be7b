//! The on-disk format (see the crate docs): segment names, the segment
//! header, record framing, and the scans recovery and reads make.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use crate::Offset;

pub(crate) const MAGIC: [u8; 8] = *b"SHOPLWAL";
pub(crate) const VERSION: u32 = 1;
/// Size of the segment header.
pub(crate) const HEADER_LEN: u64 = 32;
/// Size of a record's frame (length + CRC) before its payload.
pub(crate) const FRAME_LEN: usize = 8;
/// The sparse index holds a (offset, position) entry at least this many
/// bytes apart, so a random read scans at most about this much.
pub(crate) const INDEX_EVERY: u64 = 64 * 1024;

/// `00000000000000001234.wal`.
pub(crate) fn segment_file_name(first: Offset) -> String {
    format!("{first:020}.wal")
}

/// The first offset a segment's file name stands for, if it is one.
pub(crate) fn parse_segment_file_name(name: &str) -> Option<Offset> {
    let digits = name.strip_suffix(".wal")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

pub(crate) fn encode_header(first: Offset) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[0..8].copy_from_slice(&MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[16..24].copy_from_slice(&first.to_le_bytes());
    let crc = crc32c::crc32c(&h[0..24]);
    h[24..28].copy_from_slice(&crc.to_le_bytes());
    h
}

/// The first offset a header names, or why it is not a valid header.
pub(crate) fn decode_header(h: &[u8; HEADER_LEN as usize]) -> Result<Offset, String> {
    if h[0..8] != MAGIC {
        return Err("not a shoplake WAL segment (bad magic)".into());
    }
    let crc = u32::from_le_bytes(h[24..28].try_into().expect("4 bytes"));
    if crc != crc32c::crc32c(&h[0..24]) {
        return Err("segment header checksum mismatch".into());
    }
    let version = u32::from_le_bytes(h[8..12].try_into().expect("4 bytes"));
    if version != VERSION {
        return Err(format!("unsupported segment version {version}"));
    }
    Ok(u64::from_le_bytes(h[16..24].try_into().expect("8 bytes")))
}

fn record_crc(len: [u8; 4], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&len), payload)
}

/// Appends one framed record to `out`. The caller checked the length fits.
pub(crate) fn encode_record(out: &mut Vec<u8>, payload: &[u8]) {
    let len = u32::try_from(payload.len())
        .expect("record length checked against max_record_bytes")
        .to_le_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&record_crc(len, payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// A record frame's header, read but not yet checked against its payload.
pub(crate) struct Frame {
    pub len: u32,
    crc: u32,
}

impl Frame {
    pub(crate) fn decode(b: &[u8; FRAME_LEN]) -> Frame {
        Frame {
            len: u32::from_le_bytes(b[0..4].try_into().expect("4 bytes")),
            crc: u32::from_le_bytes(b[4..8].try_into().expect("4 bytes")),
        }
    }

    /// Whether `payload` is what this frame was written with.
    pub(crate) fn check(&self, payload: &[u8]) -> bool {
        self.crc == record_crc(self.len.to_le_bytes(), payload)
    }
}

/// How a segment's header looked to the recovery scan.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum HeaderState {
    /// Valid, naming this first offset.
    Valid(Offset),
    /// Shorter than a header: the segment was being created.
    Torn,
    /// Present but wrong.
    Bad(String),
}

/// What the recovery scan found in one segment.
#[derive(Debug)]
pub(crate) struct Scan {
    pub header: HeaderState,
    /// The file's size.
    pub file_len: u64,
    /// Complete, valid records from the start.
    pub records: u64,
    /// Byte length of the header and those records.
    pub valid_len: u64,
    /// Sparse index: (offset, position) at the first record and then every
    /// [`INDEX_EVERY`] bytes or so.
    pub index: Vec<(Offset, u64)>,
    /// Where the valid records stop before the end of the file, and why.
    pub problem: Option<(u64, String)>,
}

/// Reads a whole segment (whose name says it starts at `first`), checking
/// every record's CRC; stops at the first torn or damaged record.
pub(crate) fn scan_segment(path: &Path, first: Offset) -> io::Result<Scan> {
    let file = File::open(path)?;
    let file_len = file.metadata()?.len();
    scan_reader(BufReader::with_capacity(1 << 20, file), file_len, first)
}

/// [`scan_segment`] over any reader of `file_len` bytes.
pub(crate) fn scan_reader(mut r: impl Read, file_len: u64, first: Offset) -> io::Result<Scan> {
    let mut scan = Scan {
        header: HeaderState::Torn,
        file_len,
        records: 0,
        valid_len: 0,
        index: Vec::new(),
        problem: None,
    };
    if file_len < HEADER_LEN {
        return Ok(scan);
    }
    let mut h = [0u8; HEADER_LEN as usize];
    r.read_exact(&mut h)?;
    match decode_header(&h) {
        Ok(named) if named == first => scan.header = HeaderState::Valid(named),
        Ok(named) => {
            scan.header = HeaderState::Bad(format!(
                "header names first offset {named}, file name says {first}"
            ));
            return Ok(scan);
        }
        Err(reason) => {
            scan.header = HeaderState::Bad(reason);
            return Ok(scan);
        }
    }
    let mut pos = HEADER_LEN;
    let mut last_indexed: Option<u64> = None;
    let mut payload = Vec::new();
    loop {
        let remaining = file_len - pos;
        if remaining == 0 {
            break;
        }
        if remaining < FRAME_LEN as u64 {
            scan.problem = Some((pos, format!("torn record frame ({remaining} bytes)")));
            break;
        }
        let mut fb = [0u8; FRAME_LEN];
        r.read_exact(&mut fb)?;
        let frame = Frame::decode(&fb);
        let body = remaining - FRAME_LEN as u64;
        if u64::from(frame.len) > body {
            scan.problem = Some((
                pos,
                format!(
                    "record of {} bytes but only {body} bytes left (torn write or bad length)",
                    frame.len
                ),
            ));
            break;
        }
        payload.resize(frame.len as usize, 0);
        r.read_exact(&mut payload)?;
        if !frame.check(&payload) {
            scan.problem = Some((pos, "record checksum mismatch".into()));
            break;
        }
        if last_indexed.is_none_or(|p| pos - p >= INDEX_EVERY) {
            scan.index.push((first + scan.records, pos));
            last_indexed = Some(pos);
        }
        scan.records += 1;
        pos += FRAME_LEN as u64 + u64::from(frame.len);
    }
    scan.valid_len = pos;
    if scan.index.is_empty() {
        scan.index.push((first, HEADER_LEN));
    }
    Ok(scan)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_round_trip() {
        assert_eq!(segment_file_name(42), "00000000000000000042.wal");
        assert_eq!(
            parse_segment_file_name("00000000000000000042.wal"),
            Some(42)
        );
        assert_eq!(parse_segment_file_name("42.wal"), None);
        assert_eq!(parse_segment_file_name("0000000000000000004x.wal"), None);
        assert_eq!(parse_segment_file_name("committed"), None);
    }

    #[test]
    fn header_round_trip_and_damage() {
        let h = encode_header(7);
        assert_eq!(decode_header(&h), Ok(7));
        let mut bad = h;
        bad[17] ^= 1;
        assert!(decode_header(&bad).unwrap_err().contains("checksum"));
        let mut bad = h;
        bad[0] = b'X';
        assert!(decode_header(&bad).unwrap_err().contains("magic"));
    }

    #[test]
    fn zero_bytes_are_not_a_record() {
        let frame = Frame::decode(&[0; FRAME_LEN]);
        assert!(!frame.check(&[]), "a zero-filled tail must fail the CRC");
        let mut out = Vec::new();
        encode_record(&mut out, b"");
        let frame = Frame::decode(out[..FRAME_LEN].try_into().unwrap());
        assert!(frame.check(&[]));
    }
}
