//! Progress on a terminal (indicatif); nothing in pipes and CI.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use shoplake_jobs::pipeline::{Observer, StepReport, fmt_secs};

/// Draws a spinner per pipeline step under way (independent steps run side
/// by side) and a line per finished step.
pub struct StepSpinner {
    enabled: bool,
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl StepSpinner {
    /// A spinner drawn only when `enabled`.
    pub fn new(enabled: bool) -> Self {
        StepSpinner {
            enabled,
            multi: MultiProgress::new(),
            bars: Mutex::new(HashMap::new()),
        }
    }
}

impl Observer for StepSpinner {
    fn step_started(&self, name: &str) {
        tracing::debug!(step = name, "step started");
        if !self.enabled {
            return;
        }
        let bar = self.multi.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} {elapsed}").expect("valid template"),
        );
        bar.set_message(name.to_string());
        bar.enable_steady_tick(Duration::from_millis(100));
        self.bars
            .lock()
            .expect("unpoisoned")
            .insert(name.to_string(), bar);
    }

    fn step_finished(&self, r: &StepReport) {
        if let Some(bar) = self.bars.lock().expect("unpoisoned").remove(&r.name) {
            bar.finish_and_clear();
            self.multi.remove(&bar);
            let line = format!("✓ {:<22} {:>8}  {}", r.name, fmt_secs(r.seconds), r.detail);
            if self.multi.println(&line).is_err() {
                eprintln!("{line}");
            }
        } else {
            // no terminal: the step goes to the log (JSON with --log-format json)
            tracing::info!(step = %r.name, rows_in = r.rows_in, rows_out = r.rows_out, quarantined = r.rejected, seconds = r.seconds, detail = %r.detail, "step finished");
        }
    }
}

/// A byte/row counter bar for long loops; hidden when not enabled.
pub fn counter(enabled: bool, total: u64, what: &str) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:30}] {pos}/{len} ({per_sec}, {eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}
