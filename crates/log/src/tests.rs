//! The WAL's behaviour: round trips, group commit, recovery from torn
//! tails, refusal of real corruption, retention, backpressure, and a
//! model-based test of random action sequences against a `Vec`.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::format::HEADER_LEN;
use crate::{Error, EventLog, FsyncPolicy, Offset, Wal, WalOptions};

fn small(dir: &Path) -> WalOptions {
    WalOptions {
        segment_bytes: 1024,
        ..WalOptions::new(dir)
    }
}

fn rec(i: u64) -> Vec<u8> {
    format!("record-{i:06};")
        .repeat(1 + (i % 7) as usize)
        .into_bytes()
}

/// Every readable record from `from`, in small reads.
fn read_all(wal: &Wal, from: Offset) -> Vec<(Offset, Vec<u8>)> {
    let mut out = Vec::new();
    let mut next = from;
    loop {
        let got = wal.read(next, 17, 1 << 20).unwrap();
        let Some(&(last, _)) = got.last() else {
            return out;
        };
        next = last + 1;
        out.extend(got);
    }
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    files.sort();
    files
}

fn file_bytes(dir: &Path) -> u64 {
    segment_files(dir)
        .iter()
        .map(|p| fs::metadata(p).unwrap().len())
        .sum()
}

/// Appends records `0..n` in batches of 1 to 9.
async fn fill(wal: &Wal, n: u64) {
    let mut i = 0;
    while i < n {
        let k = (1 + i % 9).min(n - i);
        let first = wal.append((i..i + k).map(rec).collect()).await.unwrap();
        assert_eq!(first, i, "offsets are dense");
        i += k;
    }
}

fn expect(range: std::ops::Range<u64>) -> Vec<(Offset, Vec<u8>)> {
    range.map(|i| (i, rec(i))).collect()
}

#[tokio::test]
async fn round_trip_across_segment_rolls() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(small(dir.path())).unwrap();
    assert_eq!(wal.end_offset(), 0);
    assert!(wal.read(0, 10, 1000).unwrap().is_empty());
    fill(&wal, 300).await;
    assert_eq!(wal.end_offset(), 300);
    let stats = wal.stats();
    assert!(stats.segments > 3, "segments rolled: {stats:?}");
    assert_eq!(stats.segments, segment_files(dir.path()).len());
    assert_eq!(wal.disk_bytes(), file_bytes(dir.path()));
    assert_eq!(read_all(&wal, 0), expect(0..300));

    // Random starts, including inside later segments, at and past the end.
    for from in [1, 57, 150, 211, 299] {
        assert_eq!(read_all(&wal, from), expect(from..300), "from {from}");
    }
    assert!(wal.read(300, 10, 1000).unwrap().is_empty());
    assert!(wal.read(1000, 10, 1000).unwrap().is_empty());
    // Limits: records, bytes, and at least one record however small max_bytes is.
    assert_eq!(wal.read(10, 3, 1 << 20).unwrap(), expect(10..13));
    assert_eq!(wal.read(10, 100, 1).unwrap(), expect(10..11));
    let got = wal.read(0, 1000, 500).unwrap();
    let bytes: usize = got.iter().map(|(_, r)| r.len()).sum();
    assert!(
        bytes <= 500 && got.len() > 1,
        "{} records, {bytes} bytes",
        got.len()
    );
    // A read may cross segments.
    assert_eq!(wal.read(0, 300, 1 << 20).unwrap(), expect(0..300));

    drop(wal);
    let wal = Wal::open(small(dir.path())).unwrap();
    assert_eq!(wal.end_offset(), 300);
    assert_eq!(read_all(&wal, 0), expect(0..300));
    assert_eq!(wal.append(vec![rec(300)]).await.unwrap(), 300);
    assert_eq!(read_all(&wal, 295), expect(295..301));
}

#[tokio::test]
async fn empty_and_oversized_appends() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(WalOptions {
        max_record_bytes: 100,
        ..small(dir.path())
    })
    .unwrap();
    assert_eq!(wal.append(vec![]).await.unwrap(), 0);
    assert!(matches!(
        wal.append(vec![vec![0; 101]]).await,
        Err(Error::TooLarge { len: 101, max: 100 })
    ));
    // Empty records are records.
    assert_eq!(wal.append(vec![vec![], vec![1]]).await.unwrap(), 0);
    assert_eq!(
        wal.read(0, 10, 10).unwrap(),
        vec![(0, vec![]), (1, vec![1])]
    );
    assert_eq!(wal.end_offset(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appenders_are_group_committed() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Arc::new(
        Wal::open(WalOptions {
            segment_bytes: 64 << 10,
            ..WalOptions::new(dir.path())
        })
        .unwrap(),
    );
    const TASKS: u64 = 32;
    const APPENDS: u64 = 40;
    const BATCH: u64 = 10;
    let mut handles = Vec::new();
    for t in 0..TASKS {
        let wal = wal.clone();
        handles.push(tokio::spawn(async move {
            let mut firsts = Vec::new();
            for a in 0..APPENDS {
                let batch: Vec<Vec<u8>> = (0..BATCH)
                    .map(|j| format!("{t}:{a}:{j}").into_bytes())
                    .collect();
                firsts.push((a, wal.append(batch).await.unwrap()));
            }
            firsts
        }));
    }
    let mut placed = Vec::new();
    for (t, h) in handles.into_iter().enumerate() {
        for (a, first) in h.await.unwrap() {
            placed.push((first, t as u64, a));
        }
    }
    let all = read_all(&wal, 0);
    assert_eq!(all.len() as u64, TASKS * APPENDS * BATCH);
    assert!(all.iter().enumerate().all(|(i, (o, _))| *o == i as u64));
    // Each append's records are where its returned offset says, in order.
    for &(first, t, a) in &placed {
        for j in 0..BATCH {
            assert_eq!(
                all[(first + j) as usize].1,
                format!("{t}:{a}:{j}").into_bytes()
            );
        }
    }
    // And a task's appends are in its order.
    placed.sort_unstable();
    for t in 0..TASKS {
        let mine: Vec<u64> = placed.iter().filter(|p| p.1 == t).map(|p| p.2).collect();
        assert_eq!(mine, (0..APPENDS).collect::<Vec<_>>());
    }
    let s = wal.stats();
    assert_eq!(s.appends, TASKS * APPENDS);
    assert_eq!(s.records, TASKS * APPENDS * BATCH);
    assert!(
        s.fsyncs < s.appends && s.groups < s.appends,
        "group commit should share fsyncs: {s:?}"
    );
    assert!(s.segments > 1, "rolled under load too");
}

/// Writes records 0..100 in single appends with small segments, closes, and
/// returns the last segment's path and length.
async fn write_hundred(dir: &Path) -> (PathBuf, u64) {
    let wal = Wal::open(small(dir)).unwrap();
    for i in 0..100 {
        wal.append(vec![rec(i)]).await.unwrap();
    }
    drop(wal);
    let last = segment_files(dir).pop().unwrap();
    let len = fs::metadata(&last).unwrap().len();
    (last, len)
}

/// Reopens after damage to the tail and checks records `0..keep` survive,
/// the last segment is `len` bytes again, and appends continue at `keep`.
async fn reopen_keeps(dir: &Path, keep: u64, last: &Path, len: u64) {
    let wal = Wal::open(small(dir)).unwrap();
    assert_eq!(wal.end_offset(), keep);
    assert_eq!(fs::metadata(last).unwrap().len(), len, "tail truncated");
    assert_eq!(read_all(&wal, 0), expect(0..keep));
    assert_eq!(wal.append(vec![rec(keep)]).await.unwrap(), keep);
    assert_eq!(read_all(&wal, 0), expect(0..keep + 1));
    drop(wal);
    let wal = Wal::open(small(dir)).unwrap();
    assert_eq!(read_all(&wal, 0), expect(0..keep + 1));
}

fn last_record_len() -> u64 {
    8 + rec(99).len() as u64
}

#[tokio::test]
async fn recovery_truncates_a_record_cut_in_the_middle() {
    let dir = tempfile::tempdir().unwrap();
    let (last, len) = write_hundred(dir.path()).await;
    let f = OpenOptions::new().write(true).open(&last).unwrap();
    f.set_len(len - 5).unwrap();
    reopen_keeps(dir.path(), 99, &last, len - last_record_len()).await;
}

#[tokio::test]
async fn recovery_truncates_garbage_after_the_last_record() {
    let dir = tempfile::tempdir().unwrap();
    let (last, len) = write_hundred(dir.path()).await;
    let mut f = OpenOptions::new().append(true).open(&last).unwrap();
    f.write_all(&[0xAB; 37]).unwrap();
    reopen_keeps(dir.path(), 100, &last, len).await;

    // A zero-filled tail (as after a preallocation or a lost metadata
    // update) is not mistaken for empty records.
    let dir = tempfile::tempdir().unwrap();
    let (last, len) = write_hundred(dir.path()).await;
    let mut f = OpenOptions::new().append(true).open(&last).unwrap();
    f.write_all(&[0; 64]).unwrap();
    reopen_keeps(dir.path(), 100, &last, len).await;
}

#[tokio::test]
async fn recovery_truncates_a_damaged_last_record() {
    let dir = tempfile::tempdir().unwrap();
    let (last, len) = write_hundred(dir.path()).await;
    let mut bytes = fs::read(&last).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0x10;
    fs::write(&last, &bytes).unwrap();
    reopen_keeps(dir.path(), 99, &last, len - last_record_len()).await;

    // A damaged length (claiming far more than the file holds) too.
    let dir = tempfile::tempdir().unwrap();
    let (last, len) = write_hundred(dir.path()).await;
    let mut bytes = fs::read(&last).unwrap();
    let at = (len - last_record_len()) as usize;
    bytes[at + 3] = 0x7F;
    fs::write(&last, &bytes).unwrap();
    reopen_keeps(dir.path(), 99, &last, len - last_record_len()).await;
}

#[tokio::test]
async fn recovery_rewrites_a_torn_header_of_a_new_last_segment() {
    let dir = tempfile::tempdir().unwrap();
    write_hundred(dir.path()).await;
    // The crash came right after the segment file was created.
    let torn = dir.path().join(crate::format::segment_file_name(100));
    fs::write(&torn, b"SHOPL").unwrap();
    let wal = Wal::open(small(dir.path())).unwrap();
    assert_eq!(wal.end_offset(), 100);
    assert_eq!(fs::metadata(&torn).unwrap().len(), HEADER_LEN);
    assert_eq!(wal.append(vec![rec(100)]).await.unwrap(), 100);
    assert_eq!(read_all(&wal, 0), expect(0..101));
}

#[tokio::test]
async fn corruption_in_an_earlier_segment_fails_open() {
    let dir = tempfile::tempdir().unwrap();
    write_hundred(dir.path()).await;
    let files = segment_files(dir.path());
    assert!(files.len() > 2);
    let mut bytes = fs::read(&files[0]).unwrap();
    bytes[HEADER_LEN as usize + 100] ^= 1;
    fs::write(&files[0], &bytes).unwrap();
    match Wal::open(small(dir.path())) {
        Err(Error::Corrupt { path, .. }) => assert_eq!(path, files[0]),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    // Nothing was truncated.
    assert_eq!(fs::read(&files[0]).unwrap(), bytes);

    // A torn tail is only forgiven in the last segment.
    let dir = tempfile::tempdir().unwrap();
    write_hundred(dir.path()).await;
    let files = segment_files(dir.path());
    let mut f = OpenOptions::new().append(true).open(&files[1]).unwrap();
    f.write_all(b"junk").unwrap();
    assert!(matches!(
        Wal::open(small(dir.path())),
        Err(Error::Corrupt { .. })
    ));
}

/// Corruption of every kind a disk or a crash makes (flipped bits,
/// zeroed length prefixes, zero-filled pages, truncation), injected at
/// random places of random segments: opening never panics and never yields
/// a record that was not written. Each corruption is either refused
/// (`Corrupt`: an earlier segment, which no crash can tear) or, in the last
/// segment, cut off with every record before it kept.
#[tokio::test]
async fn injected_corruptions_are_all_detected() {
    let pristine = tempfile::tempdir().unwrap();
    write_hundred(pristine.path()).await;
    let files: Vec<(String, Vec<u8>)> = segment_files(pristine.path())
        .iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_str().unwrap().to_owned();
            (name, fs::read(p).unwrap())
        })
        .collect();
    let mut rng = Rng(0x5EED_0FC0_FFEE | 1);
    let (mut refused, mut cut, mut trials) = (0, 0, 0);
    for trial in 0..400 {
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes) in &files {
            fs::write(dir.path().join(name), bytes).unwrap();
        }
        let which = rng.below(files.len() as u64) as usize;
        let last = which == files.len() - 1;
        let (name, original) = &files[which];
        let mut bytes = original.clone();
        let body = HEADER_LEN as usize..bytes.len();
        let at = body.start + rng.below((body.end - body.start) as u64) as usize;
        let kind = trial % 4;
        match kind {
            0 => bytes[at] ^= 1 << rng.below(8),
            1 => {
                for b in bytes.iter_mut().skip(at).take(4) {
                    *b = 0;
                }
            }
            2 => {
                let page = (at / 4096) * 4096;
                let page = page.max(HEADER_LEN as usize);
                for b in bytes.iter_mut().skip(page).take(4096) {
                    *b = 0;
                }
            }
            _ => bytes.truncate(at),
        }
        if bytes == *original {
            continue; // zeroing zeros changes nothing
        }
        trials += 1;
        let path = dir.path().join(name);
        fs::write(&path, &bytes).unwrap();
        let ctx = format!("trial {trial}: kind {kind} at byte {at} of {name} (last: {last})");
        let opened = std::panic::catch_unwind(|| Wal::open(small(dir.path())))
            .unwrap_or_else(|_| panic!("{ctx}: open panicked"));
        match opened {
            Err(Error::Corrupt { .. }) => refused += 1,
            Err(e) => panic!("{ctx}: unexpected error {e}"),
            Ok(wal) => {
                let end = wal.end_offset();
                assert!(last, "{ctx}: damage to an earlier segment was not refused");
                assert!(end < 100, "{ctx}: the damage went unnoticed");
                let mut next = 0;
                while next < end {
                    let got = wal
                        .read(next, 17, 1 << 20)
                        .unwrap_or_else(|e| panic!("{ctx}: {e}"));
                    assert!(!got.is_empty(), "{ctx}");
                    for (o, r) in got {
                        assert_eq!(
                            (o, r),
                            (next, rec(next)),
                            "{ctx}: a record that was not written"
                        );
                        next += 1;
                    }
                }
                cut += 1;
            }
        }
    }
    eprintln!(
        "{trials} corruptions injected: {refused} refused at open, {cut} cut off with the records before them kept"
    );
    assert_eq!(refused + cut, trials);
    assert!(
        refused > 0 && cut > 0,
        "both outcomes were exercised: {refused} refused, {cut} cut"
    );
}

#[tokio::test]
async fn a_missing_segment_fails_open() {
    let dir = tempfile::tempdir().unwrap();
    write_hundred(dir.path()).await;
    let files = segment_files(dir.path());
    fs::remove_file(&files[1]).unwrap();
    match Wal::open(small(dir.path())) {
        Err(Error::Corrupt { reason, .. }) => assert!(reason.contains("missing"), "{reason}"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[tokio::test]
async fn retention_deletes_only_committed_closed_segments() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(small(dir.path())).unwrap();
    fill(&wal, 300).await;
    let before = segment_files(dir.path());
    let firsts: Vec<u64> = before
        .iter()
        .map(|p| p.file_stem().unwrap().to_str().unwrap().parse().unwrap())
        .collect();
    wal.commit(150).unwrap();
    let kept: Vec<u64> = firsts
        .iter()
        .enumerate()
        .filter(|&(i, _)| firsts.get(i + 1).is_none_or(|&next| next > 150))
        .map(|(_, &f)| f)
        .collect();
    assert!(kept.len() < firsts.len(), "something was deleted");
    let start = kept[0];
    assert!(start > 0 && start <= 150);
    assert_eq!(wal.start_offset(), start);
    assert_eq!(segment_files(dir.path()).len(), kept.len());
    assert_eq!(wal.disk_bytes(), file_bytes(dir.path()));
    assert!(matches!(
        wal.read(0, 10, 1000),
        Err(Error::Deleted { from: 0, oldest }) if oldest == start
    ));
    assert_eq!(read_all(&wal, start), expect(start..300));
    assert_eq!(read_all(&wal, 150), expect(150..300));

    // Committing less, or the same, is a no-op; past the end is a bug.
    wal.commit(100).unwrap();
    assert_eq!(wal.committed(), 150);
    assert!(matches!(
        wal.commit(301),
        Err(Error::CommitPastEnd {
            upto: 301,
            end: 300
        })
    ));

    // Everything committed: only the active segment is left.
    wal.commit(300).unwrap();
    let files = segment_files(dir.path());
    assert_eq!(files.len(), 1);
    assert_eq!(files[0], *before.last().unwrap());
    assert_eq!(wal.disk_bytes(), file_bytes(dir.path()));
    let active = *firsts.last().unwrap();
    assert_eq!(read_all(&wal, active), expect(active..300));
    drop(wal);

    let wal = Wal::open(small(dir.path())).unwrap();
    assert_eq!(wal.committed(), 300);
    assert_eq!(wal.start_offset(), active);
    assert_eq!(wal.end_offset(), 300);
    assert_eq!(wal.append(vec![rec(300)]).await.unwrap(), 300);
}

#[tokio::test]
async fn open_finishes_retention_a_crash_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    write_hundred(dir.path()).await;
    let files = segment_files(dir.path());
    // As if `committed` was written and the process died before deleting.
    fs::write(dir.path().join("committed"), "100\n").unwrap();
    let wal = Wal::open(small(dir.path())).unwrap();
    assert_eq!(
        segment_files(dir.path()),
        vec![files.last().unwrap().clone()]
    );
    assert_eq!(wal.committed(), 100);
    assert_eq!(wal.end_offset(), 100);
}

#[tokio::test]
async fn a_log_without_segments_starts_at_the_committed_offset() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("committed"), "500\n").unwrap();
    let wal = Wal::open(small(dir.path())).unwrap();
    assert_eq!(wal.end_offset(), 500);
    assert_eq!(wal.append(vec![rec(500)]).await.unwrap(), 500);
    assert_eq!(read_all(&wal, 500), expect(500..501));
}

#[tokio::test]
async fn backpressure_fails_fast_with_full() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(WalOptions {
        segment_bytes: 4096,
        max_disk_bytes: 16384,
        ..WalOptions::new(dir.path())
    })
    .unwrap();
    let mut n = 0u64;
    let full = loop {
        match wal.append(vec![vec![7u8; 200]]).await {
            Ok(o) => {
                assert_eq!(o, n);
                n += 1;
            }
            Err(e) => break e,
        }
        assert!(n < 1000, "never full");
    };
    assert!(matches!(full, Error::Full), "{full:?}");
    assert!(wal.disk_bytes() <= 16384);
    assert!(matches!(
        wal.append(vec![vec![7u8; 200]]).await,
        Err(Error::Full)
    ));
    // The sink catches up: retention frees space and appends work again.
    wal.commit(n).unwrap();
    assert!(wal.disk_bytes() <= 4096 + 256);
    assert_eq!(wal.append(vec![vec![7u8; 200]]).await.unwrap(), n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_wakes_on_append_and_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Arc::new(Wal::open(small(dir.path())).unwrap());
    let started = Instant::now();
    wal.wait_for(0, Duration::from_millis(50)).await;
    assert!(started.elapsed() >= Duration::from_millis(50));

    let waiter = {
        let wal = wal.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            wal.wait_for(0, Duration::from_secs(10)).await;
            (started.elapsed(), wal.read(0, 10, 1000).unwrap().len())
        })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    wal.append(vec![rec(0)]).await.unwrap();
    let (took, readable) = waiter.await.unwrap();
    assert!(took < Duration::from_secs(5), "woken by the append");
    assert_eq!(readable, 1);

    // Already readable: returns at once.
    let started = Instant::now();
    wal.wait_for(0, Duration::from_secs(10)).await;
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn close_stops_appends_but_not_reads() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(small(dir.path())).unwrap();
    fill(&wal, 20).await;
    wal.close();
    wal.close();
    assert!(matches!(
        wal.append(vec![rec(20)]).await,
        Err(Error::Closed)
    ));
    assert_eq!(read_all(&wal, 0), expect(0..20));
    let started = Instant::now();
    wal.wait_for(20, Duration::from_secs(10)).await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "closed wakes waiters"
    );
    // Closing released the directory.
    let again = Wal::open(small(dir.path())).unwrap();
    assert_eq!(again.end_offset(), 20);
}

#[tokio::test]
async fn a_directory_has_one_owner() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(small(dir.path())).unwrap();
    assert!(matches!(
        Wal::open(small(dir.path())),
        Err(Error::Locked(_))
    ));
    drop(wal);
    Wal::open(small(dir.path())).unwrap();
}

#[tokio::test]
async fn interval_policy_acks_before_fsync_and_shows_records_after() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(WalOptions {
        fsync: FsyncPolicy::Interval(Duration::from_millis(30)),
        ..small(dir.path())
    })
    .unwrap();
    for i in 0..50 {
        assert_eq!(wal.append(vec![rec(i)]).await.unwrap(), i);
    }
    assert_eq!(wal.end_offset(), 50);
    // The idle writer fsyncs once the interval passes; then all is readable.
    let deadline = Instant::now() + Duration::from_secs(5);
    while wal.visible_end() < 50 {
        assert!(Instant::now() < deadline, "interval fsync never came");
        wal.wait_for(wal.visible_end(), Duration::from_millis(100))
            .await;
    }
    assert_eq!(read_all(&wal, 0), expect(0..50));
    let s = wal.stats();
    assert!(s.fsyncs < 50, "{s:?}");
    drop(wal);

    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(WalOptions {
        fsync: FsyncPolicy::Never,
        ..small(dir.path())
    })
    .unwrap();
    fill(&wal, 30).await;
    assert_eq!(read_all(&wal, 0), expect(0..30));
    let rolls = wal.stats().fsyncs;
    drop(wal);
    let wal = Wal::open(small(dir.path())).unwrap();
    assert_eq!(read_all(&wal, 0), expect(0..30));
    assert!(rolls < 30);
}

#[tokio::test]
async fn random_reads_in_a_large_segment_use_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let never = WalOptions {
        fsync: FsyncPolicy::Never,
        ..WalOptions::new(dir.path())
    };
    let wal = Wal::open(never.clone()).unwrap();
    fill(&wal, 20_000).await;
    assert_eq!(wal.stats().segments, 1);
    let mut rng = Rng(7);
    for _ in 0..200 {
        let from = rng.below(20_001);
        let n = 1 + rng.below(5) as usize;
        let end = (from + n as u64).min(20_000);
        assert_eq!(wal.read(from, n, 1 << 20).unwrap(), expect(from..end));
    }
    drop(wal);
    // The index rebuilt by recovery serves the same reads.
    let wal = Wal::open(never).unwrap();
    for from in [0, 1, 9_999, 19_999] {
        assert_eq!(wal.read(from, 1, 1 << 20).unwrap(), expect(from..from + 1));
    }
}

/// The child half of `kill_9_loses_no_acknowledged_record`: appends from
/// several tasks and prints each acknowledgement, until killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by kill_9_loses_no_acknowledged_record in a child process"]
async fn kill_9_child() {
    let Some(dir) = std::env::var_os("SHOPLAKE_WAL_KILL_DIR") else {
        return;
    };
    let policy = match std::env::var("SHOPLAKE_WAL_KILL_FSYNC").as_deref() {
        Ok("never") => FsyncPolicy::Never,
        _ => FsyncPolicy::Always,
    };
    let wal = Arc::new(
        Wal::open(WalOptions {
            segment_bytes: 32 << 10,
            fsync: policy,
            ..WalOptions::new(PathBuf::from(dir))
        })
        .unwrap(),
    );
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let wal = wal.clone();
        tasks.push(tokio::spawn(async move {
            for a in 0u64.. {
                let batch = (0..1 + a % 5)
                    .map(|j| format!("{t}:{a}:{j}").repeat(8).into_bytes())
                    .collect();
                let first = wal.append(batch).await.unwrap();
                println!("ack {t} {a} {first}");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// A process killed with SIGKILL mid-append loses no acknowledged record,
/// whatever the fsync policy (the page cache outlives the process), and
/// recovery cuts off only what was never acknowledged.
#[cfg(unix)]
#[test]
fn kill_9_loses_no_acknowledged_record() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};

    for policy in ["always", "never"] {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "tests::kill_9_child", "--ignored", "--nocapture"])
            .env("SHOPLAKE_WAL_KILL_DIR", dir.path())
            .env("SHOPLAKE_WAL_KILL_FSYNC", policy)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut acks = Vec::new();
        for line in std::io::BufReader::new(child.stdout.take().unwrap()).lines() {
            let line = line.unwrap();
            let Some(rest) = line.strip_prefix("ack ") else {
                continue;
            };
            let v: Vec<u64> = rest.split(' ').map(|x| x.parse().unwrap()).collect();
            acks.push((v[0], v[1], v[2]));
            if acks.len() == 3000 {
                child.kill().unwrap();
            }
        }
        child.wait().unwrap();
        assert!(acks.len() >= 3000, "{policy}: the child stopped early");

        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let wal = Wal::open(WalOptions {
            segment_bytes: 32 << 10,
            ..WalOptions::new(dir.path())
        })
        .unwrap();
        let all = read_all(&wal, 0);
        assert_eq!(all.len() as u64, wal.end_offset(), "{policy}");
        for &(t, a, first) in &acks {
            for j in 0..1 + a % 5 {
                assert_eq!(
                    all[(first + j) as usize].1,
                    format!("{t}:{a}:{j}").repeat(8).into_bytes(),
                    "{policy}: acknowledged record {t}:{a}:{j} at {}",
                    first + j
                );
            }
        }
        let end = wal.end_offset();
        assert_eq!(rt.block_on(wal.append(vec![rec(0)])).unwrap(), end);
    }
}

/// xorshift64*: deterministic randomness for the model test.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Random sequences of appends, reads, commits, reopens and torn tails,
/// checked against a `Vec` after every step.
#[tokio::test]
async fn model_random_actions() {
    for seed in 1..=12u64 {
        let dir = tempfile::tempdir().unwrap();
        let opts = WalOptions {
            segment_bytes: 4096 << (seed % 3),
            max_disk_bytes: 1 << 20,
            // fsync costs time, not coverage: most seeds skip it.
            fsync: if seed % 4 == 0 {
                FsyncPolicy::Always
            } else {
                FsyncPolicy::Never
            },
            ..WalOptions::new(dir.path())
        };
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut model: Vec<Vec<u8>> = Vec::new();
        let mut committed = 0u64;
        let mut wal = Wal::open(opts.clone()).unwrap();
        for step in 0..200 {
            let ctx = format!("seed {seed} step {step}");
            let end = model.len() as u64;
            match rng.below(20) {
                0..=9 => {
                    let k = 1 + rng.below(6);
                    let batch: Vec<Vec<u8>> = (0..k)
                        .map(|_| {
                            let len = rng.below(300) as usize;
                            let b = rng.next() as u8;
                            (0..len).map(|i| b.wrapping_add(i as u8)).collect()
                        })
                        .collect();
                    assert_eq!(wal.append(batch.clone()).await.unwrap(), end, "{ctx}");
                    model.extend(batch);
                }
                10..=14 => {
                    let from = rng.below(end + 3);
                    let max_records = 1 + rng.below(40) as usize;
                    let max_bytes = rng.below(4000) as usize;
                    let start = wal.start_offset();
                    match wal.read(from, max_records, max_bytes) {
                        Ok(got) => {
                            assert!(from >= start, "{ctx}");
                            if from < end {
                                assert!(!got.is_empty(), "{ctx}");
                            }
                            let bytes: usize = got.iter().map(|(_, r)| r.len()).sum();
                            assert!(got.len() <= max_records, "{ctx}");
                            assert!(got.len() == 1 || bytes <= max_bytes, "{ctx}");
                            for (i, (o, r)) in got.iter().enumerate() {
                                assert_eq!(*o, from + i as u64, "{ctx}");
                                assert_eq!(r, &model[*o as usize], "{ctx}");
                            }
                        }
                        Err(Error::Deleted { oldest, .. }) => {
                            assert!(from < start && oldest == start, "{ctx}")
                        }
                        Err(e) => panic!("{ctx}: {e}"),
                    }
                }
                15..=17 => {
                    let upto = rng.below(end + 1);
                    wal.commit(upto).unwrap();
                    committed = committed.max(upto);
                }
                18 => {
                    drop(wal);
                    wal = Wal::open(opts.clone()).unwrap();
                }
                _ => {
                    // A crash mid-write: junk after the last record.
                    drop(wal);
                    let last = segment_files(dir.path()).pop().unwrap();
                    let junk: Vec<u8> = (0..1 + rng.below(40)).map(|_| rng.next() as u8).collect();
                    OpenOptions::new()
                        .append(true)
                        .open(&last)
                        .unwrap()
                        .write_all(&junk)
                        .unwrap();
                    wal = Wal::open(opts.clone()).unwrap();
                }
            }
            let end = model.len() as u64;
            assert_eq!(wal.end_offset(), end, "{ctx}");
            assert_eq!(wal.committed(), committed, "{ctx}");
            assert_eq!(wal.disk_bytes(), file_bytes(dir.path()), "{ctx}");
            let start = wal.start_offset();
            assert!(
                start <= committed || start == 0,
                "{ctx}: nothing uncommitted deleted"
            );
        }
        let start = wal.start_offset();
        let all = read_all(&wal, start);
        assert_eq!(all.len() as u64, model.len() as u64 - start, "seed {seed}");
        for (o, r) in all {
            assert_eq!(r, model[o as usize], "seed {seed}");
        }
    }
}

/// Throughput and latency under dozens of concurrent appenders (fsync per
/// group), with a sink reading and committing alongside. Run with
/// `cargo test --release -p shoplake-log -- --ignored --nocapture wal_throughput`
/// (`SHOPLAKE_WAL_BENCH_DIR` picks the disk, `SHOPLAKE_WAL_BENCH_RECORDS` the size).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark; run in release mode"]
async fn wal_throughput() {
    const APPENDERS: u64 = 64;
    const BATCH: u64 = 50;
    const RECORD: usize = 500;
    let total: u64 = std::env::var("SHOPLAKE_WAL_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000);
    let dir = match std::env::var_os("SHOPLAKE_WAL_BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    let wal = Arc::new(Wal::open(WalOptions::new(dir.path())).unwrap());
    let per_task = total / APPENDERS / BATCH;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..APPENDERS {
        let wal = wal.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_task as usize);
            for a in 0..per_task {
                let batch: Vec<Vec<u8>> = (0..BATCH)
                    .map(|j| {
                        let mut r = vec![b'x'; RECORD];
                        r[..24].copy_from_slice(format!("{t:08}{a:08}{j:08}").as_bytes());
                        r
                    })
                    .collect();
                let t0 = Instant::now();
                loop {
                    match wal.append(batch.clone()).await {
                        Ok(_) => break,
                        Err(Error::Full) => tokio::time::sleep(Duration::from_millis(1)).await,
                        Err(e) => panic!("{e}"),
                    }
                }
                latencies.push(t0.elapsed());
            }
            latencies
        }));
    }
    let sink = {
        let wal = wal.clone();
        let want = per_task * APPENDERS * BATCH;
        tokio::spawn(async move {
            let mut next = 0;
            while next < want {
                wal.wait_for(next, Duration::from_millis(100)).await;
                let got = wal.read(next, 20_000, 16 << 20).unwrap();
                if let Some(&(last, _)) = got.last() {
                    next = last + 1;
                    wal.commit(next).unwrap();
                }
            }
        })
    };
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed();
    sink.await.unwrap();
    let drained = started.elapsed();
    latencies.sort_unstable();
    let q = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize];
    let s = wal.stats();
    let records = s.records as f64;
    println!(
        "wal_throughput: {} records of {RECORD} B from {APPENDERS} appenders × {BATCH}/append in {:.2?}: \
         {:.0} records/s, {:.0} MB/s; sink drained in {:.2?}",
        s.records,
        elapsed,
        records / elapsed.as_secs_f64(),
        s.bytes as f64 / elapsed.as_secs_f64() / 1e6,
        drained,
    );
    println!(
        "append latency: p50 {:?}, p99 {:?}, max {:?}",
        q(0.5),
        q(0.99),
        latencies.last().unwrap()
    );
    println!(
        "groups {} ({:.1} appends/group), fsyncs {}, fsync avg {} µs, p50 ≤ {} µs, p99 ≤ {} µs, max {} µs, disk now {} B",
        s.groups,
        s.appends as f64 / s.groups as f64,
        s.fsyncs,
        s.fsync_avg_micros,
        s.fsync_quantile_micros(0.5),
        s.fsync_quantile_micros(0.99),
        s.fsync_max_micros,
        s.disk_bytes,
    );
}

/// The fuzz corpus of the recovery scan (`fuzz/corpus/wal_scan`), replayed
/// through the same checks as the fuzzer, and the checks themselves shown
/// to hold on a real log's segment.
#[tokio::test]
async fn the_kept_wal_fuzz_corpus_replays_cleanly() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/wal_scan");
    let mut n = 0;
    for e in fs::read_dir(&root).expect("the corpus is in the repository") {
        let data = fs::read(e.unwrap().path()).unwrap();
        match data.split_first() {
            Some((&b, rest)) if b & 1 == 1 => {
                let mut seg = crate::fuzz_header();
                seg.extend_from_slice(rest);
                crate::fuzz_scan(&seg);
            }
            _ => crate::fuzz_scan(&data),
        }
        n += 1;
    }
    assert!(n >= 3);
    let dir = tempfile::tempdir().unwrap();
    write_hundred(dir.path()).await;
    for f in segment_files(dir.path()) {
        let mut bytes = fs::read(&f).unwrap();
        // the scan checks the header names offset 0
        bytes[..HEADER_LEN as usize].copy_from_slice(&crate::fuzz_header());
        crate::fuzz_scan(&bytes);
    }
    let mut seg = crate::fuzz_header();
    seg.extend(crate::fuzz_record(b"x"));
    crate::fuzz_scan(&seg);
}

/// A tmpfs of `size` mounted on a new directory, unmounted on drop. `None`
/// where mounting is not allowed (not root), except in CI, which must run it.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("run mount");
        if !out.status.success() {
            let why = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(
                std::env::var_os("CI").is_none(),
                "this test mounts a tmpfs (needs root): {why}"
            );
            eprintln!("skipped: cannot mount a tmpfs here: {why}");
            return None;
        }
        Some(Tmpfs(dir))
    }

    fn resize(&self, size: &str) {
        let ok = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.0.path())
            .status()
            .unwrap();
        assert!(ok.success(), "remount");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.0.path())
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_appends_until_space_comes_back() {
    let Some(fs) = Tmpfs::mount("3m") else {
        return;
    };
    let opts = WalOptions {
        segment_bytes: 256 * 1024,
        ..WalOptions::new(fs.0.path())
    };
    let wal = Wal::open(opts.clone()).unwrap();
    // appends of ~40 KiB (some big enough to be written without the copy)
    // until the file system refuses one
    let batch =
        |i: u64| -> Vec<Vec<u8>> { (0..(1 + i % 5) * 20).map(|j| rec(i * 1000 + j)).collect() };
    let mut acked: Vec<(Offset, Vec<u8>)> = Vec::new();
    let mut i = 0;
    let err = loop {
        let records = batch(i);
        i += 1;
        match wal.append(records.clone()).await {
            Ok(first) => {
                assert_eq!(first, acked.len() as u64, "offsets are dense");
                acked.extend((first..).zip(records));
            }
            Err(e) => break e,
        }
        assert!(i < 10_000, "the disk never filled");
    };
    assert!(
        matches!(err, Error::Io(_)),
        "the failed group's error: {err}"
    );
    let failure = wal.failure().expect("a failure is reported");
    assert!(
        failure.recoverable,
        "a failed write is recoverable: {failure:?}"
    );
    assert!(
        matches!(wal.append(batch(1)).await, Err(Error::Stopped(_))),
        "later appends are refused"
    );
    assert_eq!(read_all(&wal, 0), acked, "what was acknowledged reads back");

    // still full a few seconds later: still refused, nothing changed
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(wal.failure().is_some());
    assert!(wal.append(batch(2)).await.is_err());

    // space comes back: appends resume within a couple of seconds, at the
    // offset after the last acknowledged record
    fs.resize("64m");
    let t0 = Instant::now();
    loop {
        let records = batch(i);
        i += 1;
        match wal.append(records.clone()).await {
            Ok(first) => {
                assert_eq!(first, acked.len() as u64, "no offset skipped or reused");
                acked.extend((first..).zip(records));
                break;
            }
            Err(e) => assert!(t0.elapsed() < Duration::from_secs(5), "never resumed: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(wal.failure().is_none());
    for _ in 0..40 {
        let records = batch(i);
        i += 1;
        let first = wal.append(records.clone()).await.unwrap();
        acked.extend((first..).zip(records));
    }
    assert_eq!(read_all(&wal, 0), acked, "one dense run of records");
    wal.close();
    drop(wal);
    // recovery finds exactly those records: nothing torn, nothing extra
    let wal = Wal::open(opts).unwrap();
    assert_eq!(wal.end_offset(), acked.len() as u64);
    assert_eq!(read_all(&wal, 0), acked, "the same after reopening");
}
