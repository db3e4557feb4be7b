//! `shoplake`: parse → validate → run. The wiring only; the work is in the
//! crates under `crates/`.

mod cli;
mod commands;
mod progress;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use shoplake_core::config::{Config, LogFormat};

use crate::cli::{Cli, LogFormatArg};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Everything a command needs from the command line and the configuration.
pub struct Env {
    /// The data directory.
    pub data: PathBuf,
    /// The effective configuration.
    pub config: Config,
    /// Draw progress on stderr.
    pub progress: bool,
    /// Write notes for people on stderr (text logs and not --quiet).
    pub chatty: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            if is_broken_pipe(&e) {
                // `shoplake sql ... | head` is not an error
                return ExitCode::SUCCESS;
            }
            if JSON_LOGS.load(std::sync::atomic::Ordering::Relaxed) {
                tracing::error!(error = %format!("{e:#}"), "command failed");
            } else {
                let _ = writeln!(std::io::stderr(), "error: {e:#}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Whether logs are JSON (then the final error is a log record too).
static JSON_LOGS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || c.to_string().contains("Broken pipe")
    })
}

fn load_config(cli: &Cli) -> Result<Config> {
    let candidates: Vec<PathBuf> = match &cli.config {
        Some(p) => vec![p.clone()],
        None => {
            let mut v = vec![PathBuf::from("shoplake.toml")];
            if let Some(d) = &cli.data {
                v.push(d.join("shoplake.toml"));
            }
            v
        }
    };
    let mut text = String::new();
    for (i, p) in candidates.iter().enumerate() {
        match std::fs::read_to_string(p) {
            Ok(t) => {
                text = t;
                break;
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound && (cli.config.is_none() || i > 0) => {}
            Err(e) => return Err(e).with_context(|| format!("reading {}", p.display())),
        }
    }
    let mut config = Config::load(&text, cli.profile.as_deref(), std::env::vars())?;
    if let Some(f) = cli.log_format {
        config.log.format = match f {
            LogFormatArg::Text => LogFormat::Text,
            LogFormatArg::Json => LogFormat::Json,
        };
    }
    Ok(config)
}

fn init_logging(cli: &Cli, config: &Config) {
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => "error".to_string(),
        (false, 0) => std::env::var("RUST_LOG").unwrap_or_else(|_| config.log.level.clone()),
        (false, 1) => "debug".to_string(),
        (false, _) => "trace".to_string(),
    };
    // delta-rs and DataFusion are chatty at info; keep them at warn unless
    // asked. delta-rs warns of every commit that had to check a concurrent
    // one (routine beside the sink's upkeep: a compaction spans several sink
    // commits); a real conflict comes back to shoplake as an error and is
    // logged there.
    let filter = if level.contains('=') {
        level
    } else {
        format!(
            "warn,deltalake_core::kernel::transaction=error,shoplake={level},shoplake_core={level},shoplake_lake={level},shoplake_query={level},shoplake_jobs={level},shoplake_server={level},shoplake_log={level},shoplake_collect={level}"
        )
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Json => {
            JSON_LOGS.store(true, std::sync::atomic::Ordering::Relaxed);
            builder.json().init()
        }
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let config = load_config(&cli)?;
    init_logging(&cli, &config);
    let data = cli
        .data
        .clone()
        .or_else(|| config.data_dir.clone())
        .unwrap_or_else(|| PathBuf::from("shoplake-data"));
    let env = Env {
        data,
        progress: !cli.quiet && std::io::stderr().is_terminal() && std::env::var_os("CI").is_none(),
        chatty: !cli.quiet && config.log.format == LogFormat::Text,
        config,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("shoplake")
        // delta-rs and DataFusion futures are deep: 2 MiB (tokio's default)
        // overflowed under sustained order load (the orders → lake copy)
        .thread_stack_size(8 << 20)
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(commands::dispatch(cli.command, &env))
}
