//! [`Wal`]: opening and recovery, appends (handed to the writer thread),
//! reads, commits and retention.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::{Semaphore, oneshot, watch};
use tracing::{debug, error, info, warn};

use crate::format::{
    FRAME_LEN, Frame, HEADER_LEN, HeaderState, encode_header, encode_record,
    parse_segment_file_name, scan_segment, segment_file_name,
};
use crate::stats::{Counters, WalStats};
use crate::writer::{Msg, Request, Writer};
use crate::{Error, EventLog, Offset, Result};

const COMMITTED: &str = "committed";
const COMMITTED_TMP: &str = "committed.tmp";
const LOCK: &str = "LOCK";

/// When `append` is acknowledged relative to fsync (see the crate docs for
/// what each choice survives and when readers see the records).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FsyncPolicy {
    /// Acknowledge after the group's fsync (the default).
    #[default]
    Always,
    /// Acknowledge after the write; fsync at most every this long (and when
    /// the log is idle, once the interval has passed).
    Interval(Duration),
    /// Acknowledge after the write; leave flushing to the operating system
    /// (segments are still fsynced when they roll and when the log closes).
    Never,
}

/// How to open a [`Wal`]. Start from [`WalOptions::new`] and change fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalOptions {
    /// The directory of the log's files (created if missing).
    pub dir: PathBuf,
    /// A segment rolls when the next batch would take it past this size
    /// (default 64 MiB; capped at half of `max_disk_bytes`, so retention can
    /// always bring the log back under its budget).
    pub segment_bytes: u64,
    /// When appends are acknowledged (default [`FsyncPolicy::Always`]).
    pub fsync: FsyncPolicy,
    /// Backpressure: appends fail with [`Error::Full`] rather than take the
    /// log past this many bytes on disk (default 1 GiB).
    pub max_disk_bytes: u64,
    /// The writer gathers queued appends into one write and one fsync until
    /// it has this many bytes (default 4 MiB; one append is never split).
    pub max_batch_bytes: usize,
    /// Largest record accepted (default 16 MiB, at most 4 GiB − 1).
    pub max_record_bytes: usize,
    /// Appends that may wait in the writer's queue; more wait for a slot
    /// (default 1024).
    pub queue_capacity: usize,
}

impl WalOptions {
    /// The defaults, for a log in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        WalOptions {
            dir: dir.into(),
            segment_bytes: 64 << 20,
            fsync: FsyncPolicy::Always,
            max_disk_bytes: 1 << 30,
            max_batch_bytes: 4 << 20,
            max_record_bytes: 16 << 20,
            queue_capacity: 1024,
        }
    }

    fn validate(&self) -> Result<()> {
        let fail = |msg: &str| Err(Error::Config(msg.into()));
        if self.segment_bytes < 1024 {
            return fail("segment_bytes must be at least 1 KiB");
        }
        if self.max_disk_bytes < 2048 {
            return fail("max_disk_bytes must be at least 2 KiB");
        }
        if self.max_batch_bytes == 0 || self.queue_capacity == 0 {
            return fail("max_batch_bytes and queue_capacity must be positive");
        }
        if self.max_record_bytes == 0 || u32::try_from(self.max_record_bytes).is_err() {
            return fail("max_record_bytes must be between 1 and 4 GiB − 1");
        }
        if self.fsync == FsyncPolicy::Interval(Duration::ZERO) {
            return fail("the fsync interval must be positive");
        }
        Ok(())
    }
}

/// One segment file as readers and retention see it.
#[derive(Debug)]
pub(crate) struct Segment {
    pub path: PathBuf,
    /// Bytes on disk that belong to the log (header and published records).
    pub bytes: u64,
    /// Sparse index: (offset, byte position) pairs in order, the first at
    /// the segment's first offset.
    pub index: Vec<(Offset, u64)>,
}

/// Where the last read stopped, so the sink's next sequential read starts
/// there instead of scanning from an index entry.
#[derive(Debug, Clone, Copy)]
struct Cursor {
    segment: Offset,
    offset: Offset,
    pos: u64,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    /// Segments by first offset; the last is the active one.
    pub segments: BTreeMap<Offset, Segment>,
    cursor: Option<Cursor>,
}

/// What the [`Wal`] handle, its readers and the writer thread share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub dir: PathBuf,
    pub state: Mutex<State>,
    /// Offset after the last acknowledged record.
    pub acked_end: AtomicU64,
    /// Offset after the last readable record.
    pub visible_end: AtomicU64,
    /// Wakes `wait_for` when `visible_end` moves (or the log closes).
    pub visible_tx: watch::Sender<Offset>,
    pub disk_bytes: AtomicU64,
    /// Bytes accepted by `append` and not yet written.
    pub pending_bytes: AtomicU64,
    pub committed: AtomicU64,
    pub closed: AtomicBool,
    /// Set while the writer is stopped after an I/O error.
    pub failure: Mutex<Option<Failure>>,
    pub counters: Counters,
}

/// Why the writer stopped taking appends (see [`Wal::failure`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The I/O error.
    pub reason: String,
    /// A failed write (a full disk): the writer cuts what the write left,
    /// checks every second whether space came back and then resumes by
    /// itself. A failed fsync is not recoverable in process (the kernel may
    /// have dropped the unsynced pages): reopen the log, whose recovery
    /// reads back what is really on disk.
    pub recoverable: bool,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Makes a directory entry (a created, renamed or deleted file) durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Creates the segment starting at `first` (replacing a torn one when
/// `replace`), with its header and directory entry durable.
pub(crate) fn create_segment(dir: &Path, first: Offset, replace: bool) -> io::Result<File> {
    let path = dir.join(segment_file_name(first));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(!replace)
        .create(replace)
        .truncate(replace)
        .open(&path)?;
    file.write_all(&encode_header(first))?;
    file.sync_all()?;
    sync_dir(dir)?;
    Ok(file)
}

/// The embedded event log: segmented files with CRC32C-framed records, a
/// writer thread that group-commits concurrent appends, recovery on open,
/// retention on commit and a disk budget. See the crate docs for the
/// contract and the format.
///
/// Dropping it closes it (see [`Wal::close`]).
#[derive(Debug)]
pub struct Wal {
    shared: Arc<Shared>,
    tx: SyncSender<Msg>,
    /// One permit per queue slot; held by a request until the writer takes it.
    slots: Arc<Semaphore>,
    writer: Mutex<Option<JoinHandle<()>>>,
    lock_file: Mutex<Option<File>>,
    commit_lock: Mutex<()>,
    max_disk_bytes: u64,
    max_record_bytes: usize,
}

/// Gives back a cancelled or refused append's share of `pending_bytes`.
struct PendingGuard<'a> {
    shared: &'a Shared,
    bytes: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.shared
            .pending_bytes
            .fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

impl Wal {
    /// Opens (creating if needed) the log in `opts.dir` and recovers it:
    /// checks every segment, cuts off a torn tail of the last one, deletes
    /// segments the persisted commit covers, then starts the writer thread.
    ///
    /// Fails with [`Error::Corrupt`] when a segment other than the last is
    /// damaged or one is missing, and with [`Error::Locked`] when another
    /// `Wal` has the directory.
    pub fn open(opts: WalOptions) -> Result<Wal> {
        opts.validate()?;
        let dir = opts.dir.clone();
        fs::create_dir_all(&dir)?;
        let lock_file = lock_dir(&dir)?;
        match fs::remove_file(dir.join(COMMITTED_TMP)) {
            Ok(()) => debug!(dir = %dir.display(), "event log: removed a stale committed.tmp"),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        let mut committed = read_committed(&dir);
        let segments = recover_segments(&dir, committed)?;
        let (segments, end) = match segments {
            Some(found) => found,
            None => {
                // A new log, or one whose segments are all gone: never
                // reuse an offset the committed file vouches for.
                create_segment(&dir, committed, false)?;
                let seg = Segment {
                    path: dir.join(segment_file_name(committed)),
                    bytes: HEADER_LEN,
                    index: vec![(committed, HEADER_LEN)],
                };
                (BTreeMap::from([(committed, seg)]), committed)
            }
        };
        if committed > end {
            error!(
                dir = %dir.display(), committed, end,
                "event log: the committed offset is past the recovered end; records written \
                 without fsync were lost in a crash (fsync = never?)"
            );
            committed = end;
        }
        let disk_bytes: u64 = segments.values().map(|s| s.bytes).sum();
        let (&active_first, active) = segments.last_key_value().expect("one segment at least");
        let mut file = OpenOptions::new().write(true).open(&active.path)?;
        file.seek(SeekFrom::Start(active.bytes))?;
        let active_len = active.bytes;
        let last_indexed = active.index.last().map_or(HEADER_LEN, |&(_, pos)| pos);
        let start = *segments.keys().next().expect("one segment at least");
        let segment_count = segments.len();

        let (visible_tx, _) = watch::channel(end);
        let shared = Arc::new(Shared {
            dir: dir.clone(),
            state: Mutex::new(State {
                segments,
                cursor: None,
            }),
            acked_end: AtomicU64::new(end),
            visible_end: AtomicU64::new(end),
            visible_tx,
            disk_bytes: AtomicU64::new(disk_bytes),
            pending_bytes: AtomicU64::new(0),
            committed: AtomicU64::new(committed),
            closed: AtomicBool::new(false),
            failure: Mutex::new(None),
            counters: Counters::default(),
        });
        let (tx, rx) = mpsc::sync_channel(opts.queue_capacity + 1);
        let segment_bytes = opts.segment_bytes.min(opts.max_disk_bytes / 2);
        let writer = Writer::new(
            shared.clone(),
            rx,
            opts.fsync,
            segment_bytes,
            opts.max_batch_bytes,
            file,
            active_first,
            active_len,
            last_indexed,
            end,
        );
        let handle = std::thread::Builder::new()
            .name("shoplake-wal-writer".into())
            .spawn(move || writer.run())?;
        info!(
            dir = %dir.display(), segments = segment_count, start, end, committed, disk_bytes,
            "event log opened"
        );
        Ok(Wal {
            shared,
            tx,
            slots: Arc::new(Semaphore::new(opts.queue_capacity)),
            writer: Mutex::new(Some(handle)),
            lock_file: Mutex::new(Some(lock_file)),
            commit_lock: Mutex::new(()),
            max_disk_bytes: opts.max_disk_bytes,
            max_record_bytes: opts.max_record_bytes,
        })
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The oldest offset still on disk.
    pub fn start_offset(&self) -> Offset {
        let st = lock(&self.shared.state);
        *st.segments.keys().next().expect("one segment at least")
    }

    /// Records below this offset are readable. Equal to
    /// [`end_offset`](EventLog::end_offset) except with
    /// [`FsyncPolicy::Interval`], where it may trail until the next fsync.
    pub fn visible_end(&self) -> Offset {
        self.shared.visible_end.load(Ordering::Acquire)
    }

    /// Why the writer stopped, if an I/O error (a full disk, a failing
    /// device) stopped it: appends fail until it resumes by itself (a
    /// recoverable failure, once space is back) or the log is opened again.
    pub fn failure(&self) -> Option<Failure> {
        lock(&self.shared.failure).clone()
    }

    /// The committed offset: records below it are safe downstream.
    pub fn committed(&self) -> Offset {
        self.shared.committed.load(Ordering::Acquire)
    }

    /// The log's counters and positions.
    pub fn stats(&self) -> WalStats {
        let mut s = WalStats::default();
        self.shared.counters.fill(&mut s);
        {
            let st = lock(&self.shared.state);
            s.segments = st.segments.len();
            s.start_offset = *st.segments.keys().next().expect("one segment at least");
        }
        s.disk_bytes = self.disk_bytes();
        s.end_offset = self.end_offset();
        s.visible_end = self.visible_end();
        s.committed = self.committed();
        s
    }

    /// Writes what is queued, fsyncs, stops the writer and releases the
    /// directory. Later appends fail with [`Error::Closed`]; reads still
    /// work. Blocks for the final fsync; calling it again does nothing.
    pub fn close(&self) {
        let Some(handle) = lock(&self.writer).take() else {
            return;
        };
        self.shared.closed.store(true, Ordering::Release);
        self.slots.close();
        // Never blocks: the queue holds at most `queue_capacity` appends
        // (one per slot permit) and has room for one more message.
        let _ = self.tx.send(Msg::Close);
        if handle.join().is_err() {
            error!(dir = %self.shared.dir.display(), "event log writer thread panicked");
        }
        self.shared.visible_tx.send_modify(|_| {});
        if let Some(f) = lock(&self.lock_file).take() {
            // Explicitly: a forked child may briefly share the descriptor,
            // and closing ours alone would leave the lock held.
            let _ = f.unlock();
        }
        info!(dir = %self.shared.dir.display(), end = self.end_offset(), "event log closed");
    }

    fn check_open(&self) -> Result<()> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        // a recoverable failure is the writer's to judge: it may have resumed
        if let Some(f) = lock(&self.shared.failure).as_ref()
            && !f.recoverable
        {
            return Err(Error::Stopped(f.reason.clone()));
        }
        Ok(())
    }

    /// Deletes the segments whose every record is below `upto`, except the
    /// active one.
    fn retain(&self, upto: Offset) {
        let doomed: Vec<(Offset, Segment)> = {
            let mut st = lock(&self.shared.state);
            let firsts: Vec<Offset> = st.segments.keys().copied().collect();
            let n = firsts.windows(2).take_while(|w| w[1] <= upto).count();
            if st.cursor.is_some_and(|c| c.segment < firsts[n]) {
                st.cursor = None;
            }
            firsts[..n]
                .iter()
                .map(|f| (*f, st.segments.remove(f).expect("listed")))
                .collect()
        };
        for (first, seg) in doomed {
            match fs::remove_file(&seg.path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    // Out of the index already; the next open deletes it.
                    warn!(path = %seg.path.display(), error = %e, "event log: cannot delete a committed segment");
                    continue;
                }
            }
            self.shared
                .disk_bytes
                .fetch_sub(seg.bytes, Ordering::AcqRel);
            debug!(
                first,
                bytes = seg.bytes,
                "event log: deleted a committed segment"
            );
        }
    }

    fn read_records(
        &self,
        from: Offset,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<(Offset, Vec<u8>)>> {
        let mut out = Vec::new();
        let visible = self.visible_end();
        let mut next = from;
        let mut bytes = 0usize;
        let mut room = true;
        while room && next < visible && out.len() < max_records {
            // Find the segment and the nearest known position, and open the
            // file while holding the lock so retention cannot unlink it first.
            let (file, path, first, seg_end, mut at, mut pos) = {
                let st = lock(&self.shared.state);
                let oldest = *st.segments.keys().next().expect("one segment at least");
                if next < oldest {
                    return Err(Error::Deleted { from: next, oldest });
                }
                let (&first, seg) = st
                    .segments
                    .range(..=next)
                    .next_back()
                    .expect("next ≥ oldest");
                let seg_end = st
                    .segments
                    .range(first + 1..)
                    .next()
                    .map_or(visible, |(&f, _)| f.min(visible));
                let i = seg.index.partition_point(|&(o, _)| o <= next);
                let (mut at, mut pos) = seg.index[i - 1];
                if let Some(c) = st.cursor
                    && c.segment == first
                    && c.offset <= next
                    && c.offset > at
                {
                    (at, pos) = (c.offset, c.pos);
                }
                (
                    File::open(&seg.path)?,
                    seg.path.clone(),
                    first,
                    seg_end,
                    at,
                    pos,
                )
            };
            let file_len = file.metadata()?.len();
            let corrupt = |pos: u64, reason: &str| Error::Corrupt {
                path: path.clone(),
                position: pos,
                reason: reason.into(),
            };
            let mut r = BufReader::with_capacity(256 << 10, file);
            r.seek(SeekFrom::Start(pos))?;
            while at < seg_end && out.len() < max_records {
                let mut fb = [0u8; FRAME_LEN];
                r.read_exact(&mut fb)
                    .map_err(|_| corrupt(pos, "record frame missing"))?;
                let frame = Frame::decode(&fb);
                let len = frame.len as usize;
                let record_end = pos + (FRAME_LEN + len) as u64;
                if record_end > file_len {
                    return Err(corrupt(pos, "record runs past the end of the file"));
                }
                if at < next {
                    r.seek_relative(i64::from(frame.len))?;
                } else {
                    if !out.is_empty() && bytes + len > max_bytes {
                        room = false;
                        break;
                    }
                    let mut payload = vec![0u8; len];
                    r.read_exact(&mut payload)?;
                    if !frame.check(&payload) {
                        return Err(corrupt(pos, "record checksum mismatch"));
                    }
                    bytes += len;
                    out.push((at, payload));
                }
                at += 1;
                pos = record_end;
            }
            next = at;
            lock(&self.shared.state).cursor = Some(Cursor {
                segment: first,
                offset: at,
                pos,
            });
        }
        Ok(out)
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.close();
    }
}

#[async_trait::async_trait]
impl EventLog for Wal {
    async fn append(&self, records: Vec<Vec<u8>>) -> Result<Offset> {
        if records.is_empty() {
            return Ok(self.end_offset());
        }
        self.check_open()?;
        let mut size = 0usize;
        for r in &records {
            if r.len() > self.max_record_bytes {
                return Err(Error::TooLarge {
                    len: r.len(),
                    max: self.max_record_bytes,
                });
            }
            size += FRAME_LEN + r.len();
        }
        let mut pending = PendingGuard {
            shared: &self.shared,
            bytes: size as u64,
        };
        let queued = self
            .shared
            .pending_bytes
            .fetch_add(pending.bytes, Ordering::AcqRel)
            + pending.bytes;
        if self.disk_bytes() + queued > self.max_disk_bytes {
            return Err(Error::Full);
        }
        let mut frames = Vec::with_capacity(size);
        for r in &records {
            encode_record(&mut frames, r);
        }
        let count = records.len() as u64;
        drop(records);
        let permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::Closed)?;
        let (done, answer) = oneshot::channel();
        let request = Request {
            frames,
            count,
            done,
            permit,
        };
        self.tx
            .send(Msg::Append(request))
            .map_err(|_| Error::Closed)?;
        // The writer gives the bytes back once written.
        pending.bytes = 0;
        answer.await.unwrap_or(Err(Error::Closed))
    }

    fn read(
        &self,
        from: Offset,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<(Offset, Vec<u8>)>> {
        self.read_records(from, max_records, max_bytes)
    }

    fn end_offset(&self) -> Offset {
        self.shared.acked_end.load(Ordering::Acquire)
    }

    fn commit(&self, upto: Offset) -> Result<()> {
        let _serial = lock(&self.commit_lock);
        let end = self.end_offset();
        if upto > end {
            return Err(Error::CommitPastEnd { upto, end });
        }
        if upto <= self.committed() {
            return Ok(());
        }
        write_committed(&self.shared.dir, upto)?;
        self.shared.committed.store(upto, Ordering::Release);
        self.retain(upto);
        Ok(())
    }

    fn disk_bytes(&self) -> u64 {
        self.shared.disk_bytes.load(Ordering::Acquire)
    }

    async fn wait_for(&self, from: Offset, timeout: Duration) {
        let mut rx = self.shared.visible_tx.subscribe();
        let shared = &self.shared;
        let _ = tokio::time::timeout(
            timeout,
            rx.wait_for(|&v| v > from || shared.closed.load(Ordering::Acquire)),
        )
        .await;
    }
}

/// Takes the directory's exclusive lock.
fn lock_dir(dir: &Path) -> Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join(LOCK))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(Error::Locked(dir.to_path_buf())),
        Err(fs::TryLockError::Error(e)) => Err(e.into()),
    }
}

/// The persisted committed offset; 0 when missing or unreadable (it only
/// drives retention, so a bad file keeps more, never less).
fn read_committed(dir: &Path) -> Offset {
    let path = dir.join(COMMITTED);
    match fs::read_to_string(&path) {
        Ok(s) => s.trim().parse().unwrap_or_else(|_| {
            warn!(path = %path.display(), "event log: unreadable committed offset, keeping every segment");
            0
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
        Err(e) => {
            warn!(path = %path.display(), error = %e, "event log: cannot read the committed offset, keeping every segment");
            0
        }
    }
}

/// Replaces `<dir>/committed` atomically and durably.
fn write_committed(dir: &Path, upto: Offset) -> io::Result<()> {
    let tmp = dir.join(COMMITTED_TMP);
    let mut f = File::create(&tmp)?;
    f.write_all(format!("{upto}\n").as_bytes())?;
    f.sync_all()?;
    fs::rename(&tmp, dir.join(COMMITTED))?;
    sync_dir(dir)
}

/// The segment files in `dir`, by first offset.
fn list_segments(dir: &Path) -> io::Result<Vec<(Offset, PathBuf)>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(first) = entry.file_name().to_str().and_then(parse_segment_file_name) {
            found.push((first, entry.path()));
        }
    }
    found.sort_unstable();
    Ok(found)
}

/// Deletes the segments `committed` covers, checks the rest and cuts off a
/// torn tail of the last. Returns the segments and the end offset, or
/// `None` when there are no segments.
fn recover_segments(
    dir: &Path,
    committed: Offset,
) -> Result<Option<(BTreeMap<Offset, Segment>, Offset)>> {
    let mut found = list_segments(dir)?;
    // Retention first, by names alone: a segment is covered when the next
    // one starts at or below `committed`. This also clears segments whose
    // deletion a crash undid.
    let covered = found.windows(2).take_while(|w| w[1].0 <= committed).count();
    for (first, path) in found.drain(..covered) {
        fs::remove_file(&path)?;
        debug!(first, "event log: deleted a committed segment on open");
    }
    if covered > 0 {
        sync_dir(dir)?;
    }
    let mut segments = BTreeMap::new();
    let mut end: Option<Offset> = None;
    let n = found.len();
    for (i, (first, path)) in found.into_iter().enumerate() {
        let last = i + 1 == n;
        if let Some(end) = end
            && end != first
        {
            return Err(Error::Corrupt {
                path,
                position: 0,
                reason: format!(
                    "segment starts at offset {first} but the previous one ends at {end}: \
                     a segment is missing or damaged"
                ),
            });
        }
        let mut scan = scan_segment(&path, first)?;
        match &scan.header {
            HeaderState::Valid(_) => {}
            HeaderState::Torn | HeaderState::Bad(_) if last && scan.file_len <= HEADER_LEN => {
                // Created but never written to: the crash came before its
                // header was durable. Nothing in it was acknowledged.
                warn!(path = %path.display(), bytes = scan.file_len, "event log: rewriting the torn header of the last segment");
                create_segment(dir, first, true)?;
                scan.records = 0;
                scan.valid_len = HEADER_LEN;
                scan.index = vec![(first, HEADER_LEN)];
                scan.problem = None;
            }
            HeaderState::Torn => {
                return Err(Error::Corrupt {
                    path,
                    position: 0,
                    reason: format!("{} bytes, shorter than a segment header", scan.file_len),
                });
            }
            HeaderState::Bad(reason) => {
                return Err(Error::Corrupt {
                    path,
                    position: 0,
                    reason: reason.clone(),
                });
            }
        }
        if let Some((position, reason)) = scan.problem {
            if !last {
                return Err(Error::Corrupt {
                    path,
                    position,
                    reason,
                });
            }
            let cut = scan.file_len - scan.valid_len;
            warn!(
                path = %path.display(), position, bytes = cut, reason = %reason,
                kept_records = scan.records,
                "event log: cutting off the torn tail of the last segment (an unacknowledged write)"
            );
            let f = OpenOptions::new().write(true).open(&path)?;
            f.set_len(scan.valid_len)?;
            f.sync_all()?;
        }
        end = Some(first + scan.records);
        segments.insert(
            first,
            Segment {
                path,
                bytes: scan.valid_len,
                index: scan.index,
            },
        );
    }
    Ok(end.map(|end| (segments, end)))
}
