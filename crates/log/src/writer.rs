//! The writer thread: takes appends off the queue, writes each group with one
//! `write_all` and (per policy) one fsync, rolls segments, publishes what
//! readers may see, and then answers every caller in the group.

use std::fs::{self, File};
use std::io::{self, Seek, SeekFrom, Write};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, oneshot};
use tracing::{debug, error, info, warn};

use crate::format::{HEADER_LEN, INDEX_EVERY, segment_file_name};
use crate::wal::{Failure, FsyncPolicy, Segment, Shared, create_segment, lock};
use crate::{Error, Offset, Result};

/// How often a writer stopped by a failed write checks whether it can resume.
const HEAL_EVERY: Duration = Duration::from_secs(1);

/// What must be allocatable on the log's file system before it resumes.
const HEAL_PROBE_BYTES: u64 = 1 << 20;

/// A message to the writer.
pub(crate) enum Msg {
    /// Write these records.
    Append(Request),
    /// Write what is queued, fsync and stop.
    Close,
}

/// One `append` call: its records already framed, and where to answer.
pub(crate) struct Request {
    pub frames: Vec<u8>,
    pub count: u64,
    pub done: oneshot::Sender<Result<Offset>>,
    /// The caller's queue slot, given back when the writer takes the request.
    pub permit: OwnedSemaphorePermit,
}

pub(crate) struct Writer {
    shared: Arc<Shared>,
    rx: Receiver<Msg>,
    policy: FsyncPolicy,
    segment_bytes: u64,
    max_batch_bytes: usize,
    /// The active segment, positioned at its end.
    file: File,
    active_first: Offset,
    active_len: u64,
    /// Index entries of the active segment not yet published.
    index_pending: Vec<(Offset, u64)>,
    last_indexed: u64,
    /// Offset after the last record taken (buffered or written).
    next: Offset,
    /// Offset after the last record wholly written (at `active_len`).
    written_next: Offset,
    /// Offset after the last record fsynced.
    synced: Offset,
    last_sync: Instant,
    failed: bool,
    /// The failure came from an fsync: only reopening recovers.
    sync_failed: bool,
    last_heal: Instant,
    buf: Vec<u8>,
}

impl Writer {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        shared: Arc<Shared>,
        rx: Receiver<Msg>,
        policy: FsyncPolicy,
        segment_bytes: u64,
        max_batch_bytes: usize,
        file: File,
        active_first: Offset,
        active_len: u64,
        last_indexed: u64,
        end: Offset,
    ) -> Writer {
        Writer {
            shared,
            rx,
            policy,
            segment_bytes,
            max_batch_bytes,
            file,
            active_first,
            active_len,
            index_pending: Vec::new(),
            last_indexed,
            next: end,
            written_next: end,
            synced: end,
            last_sync: Instant::now(),
            failed: false,
            sync_failed: false,
            last_heal: Instant::now(),
            buf: Vec::new(),
        }
    }

    pub(crate) fn run(mut self) {
        while let Some(msg) = self.next_message() {
            let mut closing = false;
            let mut group = Vec::new();
            let mut bytes = 0;
            match msg {
                Msg::Append(r) => {
                    bytes += r.frames.len();
                    group.push(r);
                }
                Msg::Close => closing = true,
            }
            while !closing && bytes < self.max_batch_bytes {
                match self.rx.try_recv() {
                    Ok(Msg::Append(r)) => {
                        bytes += r.frames.len();
                        group.push(r);
                    }
                    Ok(Msg::Close) => closing = true,
                    Err(_) => break,
                }
            }
            if closing {
                // Whatever got in before the close is written too.
                while let Ok(msg) = self.rx.try_recv() {
                    if let Msg::Append(r) = msg {
                        group.push(r);
                    }
                }
            }
            if !group.is_empty() {
                self.commit_group(group);
            }
            if closing {
                break;
            }
        }
        if !self.failed && self.synced != self.next {
            match self.sync() {
                Ok(()) => self.publish(),
                Err(e) => error!(error = %e, "event log: final fsync failed"),
            }
        }
    }

    /// The next message; with [`FsyncPolicy::Interval`], fsyncs written data
    /// when the interval passes while waiting.
    fn next_message(&mut self) -> Option<Msg> {
        loop {
            if self.failed {
                if self.sync_failed {
                    return self.rx.recv().ok();
                }
                let due = self.last_heal + HEAL_EVERY;
                let now = Instant::now();
                if now < due {
                    match self.rx.recv_timeout(due - now) {
                        Ok(msg) => return Some(msg),
                        Err(RecvTimeoutError::Disconnected) => return None,
                        Err(RecvTimeoutError::Timeout) => {}
                    }
                }
                self.heal();
                continue;
            }
            let FsyncPolicy::Interval(every) = self.policy else {
                return self.rx.recv().ok();
            };
            if self.failed || self.synced == self.next {
                return self.rx.recv().ok();
            }
            let deadline = self.last_sync + every;
            let now = Instant::now();
            if now < deadline {
                match self.rx.recv_timeout(deadline - now) {
                    Ok(msg) => return Some(msg),
                    Err(RecvTimeoutError::Disconnected) => return None,
                    Err(RecvTimeoutError::Timeout) => {}
                }
            }
            match self.sync() {
                Ok(()) => self.publish(),
                Err(e) => self.fail(&e),
            }
        }
    }

    fn commit_group(&mut self, group: Vec<Request>) {
        let bytes: usize = group.iter().map(|r| r.frames.len()).sum();
        let records: u64 = group.iter().map(|r| r.count).sum();
        let appends = group.len() as u64;
        if self.failed {
            let reason = lock(&self.shared.failure)
                .as_ref()
                .map(|f| f.reason.clone())
                .unwrap_or_default();
            for r in group {
                let _ = r.done.send(Err(Error::Stopped(reason.clone())));
            }
            self.shared
                .pending_bytes
                .fetch_sub(bytes as u64, Ordering::AcqRel);
            return;
        }
        let mut answers = Vec::with_capacity(group.len());
        let result = self.write_group(group, &mut answers);
        match result {
            Ok(()) => {
                self.publish();
                self.shared
                    .pending_bytes
                    .fetch_sub(bytes as u64, Ordering::AcqRel);
                let c = &self.shared.counters;
                c.groups.fetch_add(1, Ordering::Relaxed);
                c.appends.fetch_add(appends, Ordering::Relaxed);
                c.records.fetch_add(records, Ordering::Relaxed);
                c.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
                for (done, offset) in answers {
                    let _ = done.send(Ok(offset));
                }
            }
            Err(e) => {
                self.shared
                    .pending_bytes
                    .fetch_sub(bytes as u64, Ordering::AcqRel);
                self.fail(&e);
                for (done, _) in answers {
                    let _ = done.send(Err(Error::io_copy(&e)));
                }
            }
        }
    }

    /// Writes a group, rolling segments between requests as needed, and
    /// fsyncs per policy. Every caller is in `answers` before any I/O, so a
    /// failure reaches them all.
    fn write_group(
        &mut self,
        group: Vec<Request>,
        answers: &mut Vec<(oneshot::Sender<Result<Offset>>, Offset)>,
    ) -> io::Result<()> {
        let mut batches = Vec::with_capacity(group.len());
        for Request {
            frames,
            count,
            done,
            permit,
        } in group
        {
            drop(permit);
            answers.push((done, 0));
            batches.push((frames, count));
        }
        self.buf.clear();
        for (i, (frames, count)) in batches.into_iter().enumerate() {
            let len = self.active_len + self.buf.len() as u64;
            if len > HEADER_LEN && len + frames.len() as u64 > self.segment_bytes {
                self.flush_buf()?;
                self.roll()?;
            }
            let pos = self.active_len + self.buf.len() as u64;
            if pos - self.last_indexed >= INDEX_EVERY {
                self.index_pending.push((self.next, pos));
                self.last_indexed = pos;
            }
            answers[i].1 = self.next;
            self.next += count;
            if self.buf.is_empty() && frames.len() >= self.max_batch_bytes {
                // A big batch: write it as it is rather than copy it.
                self.file.write_all(&frames)?;
                self.active_len += frames.len() as u64;
                self.written_next = self.next;
            } else {
                self.buf.extend_from_slice(&frames);
            }
        }
        self.flush_buf()?;
        let due = match self.policy {
            FsyncPolicy::Always => true,
            FsyncPolicy::Interval(every) => self.last_sync.elapsed() >= every,
            FsyncPolicy::Never => false,
        };
        if due {
            self.sync()?;
        }
        Ok(())
    }

    fn flush_buf(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.file.write_all(&self.buf)?;
            self.active_len += self.buf.len() as u64;
            self.buf.clear();
        }
        self.written_next = self.next;
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        let started = Instant::now();
        if let Err(e) = self.file.sync_data() {
            self.sync_failed = true;
            return Err(e);
        }
        self.shared.counters.record_fsync(started.elapsed());
        self.last_sync = Instant::now();
        self.synced = self.next;
        Ok(())
    }

    /// Closes the active segment (fsynced, whatever the policy, so every
    /// segment but the last is complete on disk) and starts a new one.
    fn roll(&mut self) -> io::Result<()> {
        self.sync()?;
        self.publish_segment();
        let first = self.next;
        let file = create_segment(&self.shared.dir, first, false).inspect_err(|e| {
            // a half-made segment would stop the next roll (and the next
            // open would have to cut it): the active one stays active
            if e.kind() != io::ErrorKind::AlreadyExists {
                let _ = fs::remove_file(self.shared.dir.join(segment_file_name(first)));
            }
        })?;
        {
            let mut st = lock(&self.shared.state);
            st.segments.insert(
                first,
                Segment {
                    path: self.shared.dir.join(segment_file_name(first)),
                    bytes: HEADER_LEN,
                    index: vec![(first, HEADER_LEN)],
                },
            );
        }
        self.shared
            .disk_bytes
            .fetch_add(HEADER_LEN, Ordering::AcqRel);
        self.file = file;
        self.active_first = first;
        self.active_len = HEADER_LEN;
        self.last_indexed = HEADER_LEN;
        Ok(())
    }

    /// Records the active segment's size and new index entries.
    fn publish_segment(&mut self) {
        let grown = {
            let mut st = lock(&self.shared.state);
            let Some(seg) = st.segments.get_mut(&self.active_first) else {
                return;
            };
            let grown = self.active_len - seg.bytes;
            seg.bytes = self.active_len;
            seg.index.append(&mut self.index_pending);
            grown
        };
        self.shared.disk_bytes.fetch_add(grown, Ordering::AcqRel);
    }

    /// Makes what was written (and, per policy, fsynced) count: the size on
    /// disk, the end offset, and what readers may see.
    fn publish(&mut self) {
        self.publish_segment();
        self.shared.acked_end.store(self.next, Ordering::Release);
        let visible = match self.policy {
            FsyncPolicy::Never => self.next,
            FsyncPolicy::Always | FsyncPolicy::Interval(_) => self.synced,
        };
        if visible > self.shared.visible_end.load(Ordering::Acquire) {
            self.shared.visible_end.store(visible, Ordering::Release);
            self.shared.visible_tx.send_replace(visible);
        }
    }

    /// Stops taking appends after an I/O error. After a failed write the
    /// writer tries to resume every [`HEAL_EVERY`]; after a failed fsync
    /// what is on disk is unknown until the next open recovers it.
    fn fail(&mut self, e: &io::Error) {
        let recoverable = !self.sync_failed;
        if recoverable {
            warn!(error = %e, "event log: a write failed; appends are refused until it can write again (checked every second)");
        } else {
            error!(error = %e, "event log: an fsync failed; appends are refused until the log is reopened (restart shoplake)");
        }
        self.failed = true;
        self.last_heal = Instant::now();
        *lock(&self.shared.failure) = Some(Failure {
            reason: e.to_string(),
            recoverable,
        });
    }

    /// After a failed write: cuts the active segment back to its last whole
    /// group, and resumes if the file system can allocate again.
    fn heal(&mut self) {
        self.last_heal = Instant::now();
        match self.try_heal() {
            Ok(()) => {
                self.failed = false;
                *lock(&self.shared.failure) = None;
                self.publish();
                info!(
                    end = self.next,
                    "event log: writes succeed again; taking appends"
                );
            }
            Err(e) if self.sync_failed => self.fail(&e),
            Err(e) => debug!(error = %e, "event log: still cannot write"),
        }
    }

    fn try_heal(&mut self) -> io::Result<()> {
        self.file.set_len(self.active_len)?;
        let probed = probe(&mut self.file, self.active_len, HEAL_PROBE_BYTES);
        self.file.set_len(self.active_len)?;
        self.file.seek(SeekFrom::Start(self.active_len))?;
        probed?;
        // the failed group's offsets were never acknowledged nor visible
        self.buf.clear();
        self.next = self.written_next;
        let next = self.next;
        self.index_pending.retain(|&(offset, _)| offset < next);
        self.last_indexed = match self.index_pending.last() {
            Some(&(_, pos)) => pos,
            None => lock(&self.shared.state)
                .segments
                .get(&self.active_first)
                .and_then(|s| s.index.last())
                .map_or(HEADER_LEN, |&(_, pos)| pos),
        };
        // what earlier groups wrote must be durable before anything is
        // acknowledged after them
        self.sync()
    }
}

/// Checks that `len` bytes can be written to `file` at `offset` (a write
/// of zeros, left for the caller to cut off): fails with the file system's
/// error when there is no room.
fn probe(file: &mut File, offset: u64, len: u64) -> io::Result<()> {
    static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
    file.seek(SeekFrom::Start(offset))?;
    let mut left = len;
    while left > 0 {
        let n = left.min(ZEROS.len() as u64) as usize;
        file.write_all(&ZEROS[..n])?;
        left -= n as u64;
    }
    Ok(())
}
