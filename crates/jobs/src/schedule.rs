//! The scheduler of `shoplake serve`: runs the pipeline on a cron schedule
//! (`pipeline.schedule`, hourly by default), when files arrive in the raw
//! zone (polled every `pipeline.watch_secs`), and at start when the last
//! run was cut short by a crash.
//!
//! Time comes from a [`Clock`], so tests drive the scheduler with a
//! [`ManualClock`] instead of waiting. One run at a time: the scheduler waits
//! for each run, and the pipeline's own lock keeps a CLI run and a scheduled
//! one from overlapping.

use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
#[cfg(test)]
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Datelike, Duration as Span, TimeZone, Timelike, Utc};
use tokio::sync::watch;

use crate::error::{JobError, Result};

/// Where the scheduler gets the time from.
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> DateTime<Utc>;
    /// Resolves once it is `t` (at once if that has passed).
    fn sleep_until(&self, t: DateTime<Utc>) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep_until(&self, t: DateTime<Utc>) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            // wall-clock time: re-check after each wait (the machine may sleep)
            loop {
                let left = t - Utc::now();
                if left <= Span::zero() {
                    return;
                }
                let wait = left.to_std().unwrap_or(Duration::ZERO);
                tokio::time::sleep(wait.min(Duration::from_secs(60))).await;
            }
        })
    }
}

/// A clock that moves only when told to (tests).
#[derive(Debug)]
pub struct ManualClock {
    now: watch::Sender<DateTime<Utc>>,
}

impl ManualClock {
    /// A clock stopped at `t`.
    pub fn new(t: DateTime<Utc>) -> ManualClock {
        ManualClock {
            now: watch::channel(t).0,
        }
    }

    /// Moves the clock on by `d`, waking what waits for the times passed.
    pub fn advance(&self, d: Span) {
        self.now.send_modify(|t| *t += d);
    }

    /// Sets the clock to `t`.
    pub fn set(&self, t: DateTime<Utc>) {
        self.now.send_replace(t);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.borrow()
    }

    fn sleep_until(&self, t: DateTime<Utc>) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let mut rx = self.now.subscribe();
        Box::pin(async move {
            while *rx.borrow_and_update() < t {
                if rx.changed().await.is_err() {
                    return;
                }
            }
        })
    }
}

/// A cron schedule: `minute hour day-of-month month day-of-week`, each `*`,
/// `*/N`, `A`, `A-B`, `A-B/N` or a comma list of those (day of week 0–7,
/// Sunday 0 or 7); or `@hourly`, `@daily`, `@weekly`. Times are UTC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    weekdays: u8,
    any_day: bool,
    any_weekday: bool,
    text: String,
}

fn field(s: &str, lo: u32, hi: u32, what: &str) -> Result<u64> {
    let bad = || {
        JobError::Invalid(format!(
            "cron {what} field {s:?}: expected {lo}–{hi}, *, */N, A-B or a list"
        ))
    };
    let mut bits = 0u64;
    for part in s.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, n)) => (r, n.parse::<u32>().map_err(|_| bad())?),
            None => (part, 1),
        };
        if step == 0 {
            return Err(bad());
        }
        let (a, b) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?)
        } else {
            let a: u32 = range.parse().map_err(|_| bad())?;
            // `A/N` means from A to the end
            (a, if part.contains('/') { hi } else { a })
        };
        if a < lo || b > hi || a > b {
            return Err(bad());
        }
        let mut v = a;
        while v <= b {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok(bits)
}

impl FromStr for Cron {
    type Err = JobError;

    fn from_str(s: &str) -> Result<Cron> {
        let text = s.trim();
        let expanded = match text {
            "@hourly" => "0 * * * *",
            "@daily" | "@midnight" => "0 0 * * *",
            "@weekly" => "0 0 * * 0",
            other => other,
        };
        let f: Vec<&str> = expanded.split_whitespace().collect();
        if f.len() != 5 {
            return Err(JobError::Invalid(format!(
                "cron schedule {text:?}: five fields (minute hour day month weekday) or @hourly/@daily/@weekly"
            )));
        }
        let mut weekdays = field(f[4], 0, 7, "day-of-week")?;
        if weekdays & (1 << 7) != 0 {
            weekdays |= 1;
        }
        Ok(Cron {
            minutes: field(f[0], 0, 59, "minute")?,
            hours: field(f[1], 0, 23, "hour")? as u32,
            days: field(f[2], 1, 31, "day-of-month")? as u32,
            months: field(f[3], 1, 12, "month")? as u16,
            weekdays: (weekdays & 0x7f) as u8,
            any_day: f[2] == "*",
            any_weekday: f[4] == "*",
            text: text.to_string(),
        })
    }
}

impl std::fmt::Display for Cron {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl Cron {
    fn day_matches(&self, t: &DateTime<Utc>) -> bool {
        let dom = self.days & (1 << t.day()) != 0;
        let dow = self.weekdays & (1 << t.weekday().num_days_from_sunday()) != 0;
        // cron's rule: with both restricted, either may match
        match (self.any_day, self.any_weekday) {
            (true, true) => true,
            (false, true) => dom,
            (true, false) => dow,
            (false, false) => dom || dow,
        }
    }

    /// The first matching minute strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut c = t.with_second(0)?.with_nanosecond(0)? + Span::minutes(1);
        // five years covers every satisfiable schedule (Feb 29 included)
        let limit = t + Span::days(366 * 5);
        while c <= limit {
            if self.months & (1 << c.month()) == 0 {
                let (y, m) = if c.month() == 12 {
                    (c.year() + 1, 1)
                } else {
                    (c.year(), c.month() + 1)
                };
                c = Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0).single()?;
                continue;
            }
            if !self.day_matches(&c) {
                c = (c + Span::days(1)).with_hour(0)?.with_minute(0)?;
                continue;
            }
            if self.hours & (1 << c.hour()) == 0 {
                c = (c + Span::hours(1)).with_minute(0)?;
                continue;
            }
            if self.minutes & (1 << c.minute()) == 0 {
                c += Span::minutes(1);
                continue;
            }
            return Some(c);
        }
        None
    }
}

/// Runs the pipeline for the scheduler (the real one in `serve`, a
/// recorder in tests of the schedule alone).
pub trait PipelineRunner: Send + Sync {
    /// Runs the pipeline once; `trigger` says why.
    fn run<'a>(&'a self, trigger: &'a str)
    -> Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>>;
}

/// What the scheduler watches.
#[derive(Debug, Clone)]
pub struct ScheduleOptions {
    /// The cron schedule; None: no timed runs.
    pub cron: Option<Cron>,
    /// How often the raw zone is looked at for new files; None: never.
    pub watch: Option<Span>,
    /// The raw zone's folders of batch files (not `raw.events`, which the
    /// collector writes every second).
    pub raw_dirs: Vec<std::path::PathBuf>,
    /// The state folder (run history: an interrupted run is resumed at start).
    pub state_dir: std::path::PathBuf,
    /// Whether a run the last process left unfinished is redone at start.
    pub resume: bool,
}

/// The scheduler's progress, for tests and `/metrics`: the last time it
/// looked, and the runs it started.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    /// The clock's time when it last decided.
    pub looked_at: Option<DateTime<Utc>>,
    /// Triggers of the runs started, in order.
    pub runs: Vec<String>,
}

/// A fingerprint of every file under `dirs` (names, sizes, times).
pub fn raw_fingerprint(dirs: &[std::path::PathBuf]) -> String {
    fn walk(dir: &std::path::Path, h: &mut blake3::Hasher) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        let mut entries: Vec<_> = rd.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name();
            // writers' temporary files are not arrivals
            if name.to_string_lossy().starts_with('.') {
                continue;
            }
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                walk(&e.path(), h);
            } else {
                h.update(e.path().as_os_str().as_encoded_bytes());
                h.update(&meta.len().to_le_bytes());
                let mtime = meta
                    .modified()
                    .ok()
                    .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos());
                h.update(&mtime.to_le_bytes());
            }
        }
    }
    let mut h = blake3::Hasher::new();
    for d in dirs {
        walk(d, &mut h);
    }
    h.finalize().to_hex()[..32].to_string()
}

/// Runs the schedule until `stop` turns true. `progress` reports each
/// decision. A failed run is logged (and alerted by the pipeline); the
/// schedule goes on.
pub async fn run_schedule(
    opts: ScheduleOptions,
    clock: Arc<dyn Clock>,
    runner: Arc<dyn PipelineRunner>,
    mut stop: watch::Receiver<bool>,
    progress: Arc<watch::Sender<Progress>>,
) {
    let mut seen: Option<String> = None;
    // a run the last process did not finish: resume it now
    let interrupted = opts.resume
        && crate::store::Store::open(&opts.state_dir)
            .and_then(|s| s.runs(1))
            .map(|r| {
                r.first()
                    .is_some_and(|r| r.status == crate::store::status::RUNNING)
            })
            .unwrap_or(false);
    let mut pending: Option<&str> = interrupted.then_some("resume");
    let mut next_cron = opts.cron.as_ref().and_then(|c| c.next_after(clock.now()));
    tracing::info!(
        schedule = opts
            .cron
            .as_ref()
            .map(|c| c.to_string())
            .unwrap_or_else(|| "off".into()),
        next = next_cron.map(|t| t.to_rfc3339()).unwrap_or_default(),
        "pipeline scheduler started"
    );
    loop {
        if *stop.borrow() {
            return;
        }
        let now = clock.now();
        if pending.is_none() && next_cron.is_some_and(|t| now >= t) {
            pending = Some("schedule");
        }
        if next_cron.is_some_and(|t| now >= t) {
            next_cron = opts.cron.as_ref().and_then(|c| c.next_after(now));
        }
        if opts.watch.is_some() {
            let dirs = opts.raw_dirs.clone();
            let fp = tokio::task::spawn_blocking(move || raw_fingerprint(&dirs))
                .await
                .unwrap_or_default();
            if seen.as_ref() != Some(&fp) {
                // the first look after start counts: files may have
                // arrived while the server was down
                pending = pending.or(Some("files"));
                seen = Some(fp);
            }
        }
        if let Some(trigger) = pending.take() {
            progress.send_modify(|p| p.runs.push(trigger.to_string()));
            tracing::info!(trigger, "scheduled pipeline run");
            if let Err(e) = runner.run(trigger).await {
                tracing::error!(trigger, error = %e, "scheduled pipeline run failed");
            }
            if opts.watch.is_some() {
                // what the run itself saw is not new
                let dirs = opts.raw_dirs.clone();
                seen = tokio::task::spawn_blocking(move || raw_fingerprint(&dirs))
                    .await
                    .ok();
            }
        }
        progress.send_modify(|p| p.looked_at = Some(now));
        // from the time it looked, not the time now: if the clock moved
        // meanwhile (a long run), the next look comes at once
        let mut wake = next_cron.unwrap_or(now + Span::days(1));
        if let Some(w) = opts.watch {
            wake = wake.min(now + w);
        }
        tokio::select! {
            _ = clock.sleep_until(wake) => {}
            _ = stop.changed() => {}
        }
    }
}

/// The real pipeline as a [`PipelineRunner`].
pub struct LakeRunner {
    /// The lake.
    pub lake: shoplake_lake::Lake,
    /// The configuration.
    pub config: shoplake_core::config::Config,
}

impl PipelineRunner for LakeRunner {
    fn run<'a>(
        &'a self,
        trigger: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>> {
        Box::pin(async move {
            let opts = crate::pipeline::PipelineOptions {
                trigger: trigger.to_string(),
                ..Default::default()
            };
            let s = crate::pipeline::run(&self.lake, &self.config, &opts, &crate::pipeline::Quiet)
                .await?;
            tracing::info!(run = %s.run_id, trigger, dates = s.dates.len(), seconds = s.seconds, "pipeline run finished");
            Ok(())
        })
    }
}

/// Lake maintenance as a [`PipelineRunner`] (its own schedule in `serve`).
pub struct MaintainRunner {
    /// The lake.
    pub lake: shoplake_lake::Lake,
    /// The configuration.
    pub config: shoplake_core::config::Config,
}

impl PipelineRunner for MaintainRunner {
    fn run<'a>(
        &'a self,
        _trigger: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>> {
        Box::pin(async move {
            let m = crate::maintain::MaintainRun {
                tables: Vec::new(),
                compact_above: None,
                vacuum: true,
                vacuum_retain: None,
                raw_retention_days: None,
                today: Utc::now().timestamp().div_euclid(86_400) as i32,
                dry_run: false,
            };
            let r = crate::maintain::run(&self.lake, &self.config, &m).await?;
            tracing::info!(
                seconds = r.seconds,
                compacted = r.tables.iter().map(|t| t.compacted).sum::<u64>(),
                vacuumed = r.tables.iter().map(|t| t.vacuumed).sum::<u64>(),
                log_entries_removed = r.tables.iter().map(|t| t.log_entries_removed).sum::<u64>(),
                raw_partitions_removed = r.raw_partitions_removed.len(),
                "lake maintenance finished"
            );
            Ok(())
        })
    }
}

/// Retraining every model as a [`PipelineRunner`] (`ml.schedule` in
/// `serve`). A lake with no purchases yet is not an error here: the run is
/// skipped with a log line and tried again at the next time.
pub struct MlRunner {
    /// The lake.
    pub lake: shoplake_lake::Lake,
    /// The configuration.
    pub config: shoplake_core::config::Config,
}

impl PipelineRunner for MlRunner {
    fn run<'a>(
        &'a self,
        trigger: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>> {
        Box::pin(async move {
            match crate::ml::train(&self.lake, &self.config, &[]).await {
                Ok(done) => {
                    for t in &done {
                        tracing::info!(
                            model = t.meta.kind.name(),
                            version = t.meta.version,
                            trigger,
                            "model retrained: {}",
                            t.summary
                        );
                    }
                    Ok(())
                }
                Err(JobError::Invalid(why)) => {
                    tracing::warn!(trigger, "models not retrained: {why}");
                    Ok(())
                }
                Err(e) => Err(e),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn cron_finds_the_next_minute() {
        let hourly: Cron = "@hourly".parse().unwrap();
        assert_eq!(
            hourly.next_after(at("2026-01-01T10:00:00Z")),
            Some(at("2026-01-01T11:00:00Z"))
        );
        assert_eq!(
            hourly.next_after(at("2026-01-01T10:59:59Z")),
            Some(at("2026-01-01T11:00:00Z"))
        );
        let c: Cron = "*/15 9-17 * * 1-5".parse().unwrap();
        // Friday 17:50 → Monday 09:00
        assert_eq!(
            c.next_after(at("2026-01-02T17:50:00Z")),
            Some(at("2026-01-05T09:00:00Z"))
        );
        assert_eq!(
            c.next_after(at("2026-01-05T09:00:00Z")),
            Some(at("2026-01-05T09:15:00Z"))
        );
        let c: Cron = "30 2 29 2 *".parse().unwrap();
        assert_eq!(
            c.next_after(at("2026-03-01T00:00:00Z")),
            Some(at("2028-02-29T02:30:00Z"))
        );
        // day of month or day of week, as cron does; Sunday as 7
        let c: Cron = "0 0 1 * 7".parse().unwrap();
        assert_eq!(
            c.next_after(at("2026-01-01T00:00:00Z")),
            Some(at("2026-01-04T00:00:00Z"))
        );
        for bad in [
            "",
            "* * * *",
            "60 * * * *",
            "*/0 * * * *",
            "a * * * *",
            "5-1 * * * *",
        ] {
            assert!(bad.parse::<Cron>().is_err(), "{bad:?}");
        }
    }

    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    impl PipelineRunner for Recorder {
        fn run<'a>(
            &'a self,
            trigger: &'a str,
        ) -> Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>> {
            self.0.lock().unwrap().push(trigger.to_string());
            Box::pin(async { Ok(()) })
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runs_at_start_on_schedule_and_on_new_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("raw");
        let part = raw.join("transactions").join("date=2026-01-01");
        std::fs::create_dir_all(&part).unwrap();
        let clock = Arc::new(ManualClock::new(at("2026-01-01T10:59:00Z")));
        let runner = Arc::new(Recorder::default());
        let (stop_tx, stop_rx) = watch::channel(false);
        let progress = Arc::new(watch::channel(Progress::default()).0);
        let opts = ScheduleOptions {
            cron: Some("@hourly".parse().unwrap()),
            watch: Some(Span::seconds(30)),
            raw_dirs: vec![raw.join("transactions")],
            state_dir: dir.path().join("state"),
            resume: true,
        };
        let task = tokio::spawn(run_schedule(
            opts,
            clock.clone(),
            runner.clone(),
            stop_rx,
            progress.clone(),
        ));
        // waits until the scheduler has decided at `t`, then says what ran
        let mut rx = progress.subscribe();
        let mut step = async |t: &str| -> Vec<String> {
            clock.set(at(t));
            let waited = tokio::time::timeout(
                Duration::from_secs(30),
                rx.wait_for(|p| p.looked_at == Some(at(t))),
            )
            .await
            .map(|r| r.map(|p| p.runs.clone()));
            match waited {
                Ok(Ok(runs)) => runs,
                _ => panic!(
                    "the scheduler never looked at {t}: {:?}",
                    *progress.borrow()
                ),
            }
        };
        assert_eq!(
            step("2026-01-01T10:59:00Z").await,
            ["files"],
            "a catch-up run at start"
        );
        assert_eq!(step("2026-01-01T10:59:30Z").await, ["files"], "nothing new");
        std::fs::write(part.join("a.csv"), "x").unwrap();
        assert_eq!(
            step("2026-01-01T11:00:00Z").await,
            ["files", "schedule"],
            "the hour and the file: one run"
        );
        assert_eq!(step("2026-01-01T11:00:30Z").await, ["files", "schedule"]);
        std::fs::write(part.join(".b.csv.tmp"), "partial").unwrap();
        // the collector's commits to raw.events are not batch files
        std::fs::create_dir_all(raw.join("events")).unwrap();
        std::fs::write(raw.join("events").join("part-0.parquet"), "x").unwrap();
        assert_eq!(
            step("2026-01-01T11:01:00Z").await,
            ["files", "schedule"],
            "neither a temporary file nor raw.events is an arrival"
        );
        std::fs::write(part.join("b.csv"), "y").unwrap();
        assert_eq!(
            step("2026-01-01T11:01:30Z").await,
            ["files", "schedule", "files"]
        );
        assert_eq!(
            step("2026-01-01T12:00:00Z").await,
            ["files", "schedule", "files", "schedule"]
        );
        assert_eq!(
            runner.0.lock().unwrap().len(),
            4,
            "every trigger ran the pipeline"
        );
        stop_tx.send(true).unwrap();
        task.await.unwrap();
    }
}
