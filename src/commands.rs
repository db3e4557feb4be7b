//! One function per command: build the real objects from the arguments, run,
//! print.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use shoplake_core::schema;
use shoplake_core::sources::Source;
use shoplake_core::time;
use shoplake_jobs::accounts::Role;
use shoplake_jobs::alerts::Alerter;
use shoplake_jobs::pipeline::{self, PipelineOptions, fmt_secs};
use shoplake_jobs::quality;
use shoplake_jobs::store::Store;
use shoplake_lake::import::{ImportOptions, Outcome};
use shoplake_lake::{Lake, catalog};
use shoplake_query::output::{OutputFormat, write_batches};
use shoplake_query::{QueryEngine, reports};

use crate::Env;
use crate::cli::{
    CatalogCommand, Command, ExportArgs, ExportFormatArg, FormatArg, GenerateArgs, KeysCommand,
    LakeCommand, LoadCommand, LoadPostgresArgs, MlCommand, MlModelArg, PasswordArgs,
    PipelineCommand, PrivacyCommand, QualityCommand, ReportArgs, RoleArg, ServeArgs, SourceArg,
    TokensCommand, UsersCommand,
};
use crate::progress::{StepSpinner, counter};

/// Runs one command.
pub async fn dispatch(cmd: Command, env: &Env) -> Result<ExitCode> {
    match cmd {
        Command::Demo(a) => demo(env, a).await,
        Command::Generate(a) => generate(env, &a).map(|_| ExitCode::SUCCESS),
        Command::Import(a) => import(env, a.source, &a.files, a.format).await,
        Command::Pipeline(PipelineCommand::Run(a)) => {
            let opts = PipelineOptions {
                from: parse_opt_date(a.date.as_deref().or(a.from.as_deref()), "--from")?,
                to: parse_opt_date(a.date.as_deref().or(a.to.as_deref()), "--to")?,
                force: a.force,
                trigger: if a.date.is_some() || a.from.is_some() || a.to.is_some() {
                    "backfill".into()
                } else {
                    "cli".into()
                },
                faults: None,
            };
            pipeline_run(env, &opts, a.format)
                .await
                .map(|_| ExitCode::SUCCESS)
        }
        Command::Pipeline(PipelineCommand::Runs { limit, format }) => {
            pipeline_runs(env, limit, format)
        }
        Command::Pipeline(PipelineCommand::Show { run, format }) => {
            pipeline_show(env, &run, format)
        }
        Command::Quality(QualityCommand::Check {
            tables,
            from,
            to,
            format,
        }) => {
            let from = parse_opt_date(from.as_deref(), "--from")?;
            let to = parse_opt_date(to.as_deref(), "--to")?;
            quality_check(env, tables, from, to, format).await
        }
        Command::Quality(QualityCommand::List { format }) => quality_list(env, format),
        Command::Ml(MlCommand::Train { model, format }) => ml_train(env, model, format).await,
        Command::Ml(MlCommand::Status { format }) => ml_status(env, format),
        Command::Alerts { all, format } => alerts_list(env, all, format),
        Command::Lake(LakeCommand::Maintain {
            tables,
            retain_hours,
            raw_retention_days,
            dry_run,
            format,
        }) => {
            let m = shoplake_jobs::maintain::MaintainRun {
                tables: find_tables(&tables)?,
                compact_above: None,
                vacuum: true,
                vacuum_retain: retain_hours.map(|h| std::time::Duration::from_secs(h * 3600)),
                raw_retention_days,
                today: chrono::Utc::now().timestamp().div_euclid(86_400) as i32,
                dry_run,
            };
            lake_maintain(env, &m, format).await
        }
        Command::Lake(LakeCommand::Optimize { tables, format }) => {
            let m = shoplake_jobs::maintain::MaintainRun {
                tables: find_tables(&tables)?,
                compact_above: Some(1),
                vacuum: false,
                vacuum_retain: None,
                raw_retention_days: Some(0),
                today: 0,
                dry_run: false,
            };
            lake_maintain(env, &m, format).await
        }
        Command::Privacy(PrivacyCommand::Erase {
            user_ids,
            anonymous_ids,
            dry_run,
            format,
        }) => {
            let person = shoplake_jobs::privacy::Person {
                user_ids,
                anonymous_ids,
            };
            privacy_erase(env, &person, dry_run, format).await
        }
        Command::Privacy(PrivacyCommand::Mask { to, format }) => {
            let lake = open_lake(env)?;
            let r = shoplake_jobs::privacy::mask_copy(&lake, &to).await?;
            if matches!(format, FormatArg::Json) {
                print_json(&r)?;
            } else {
                let rows: Vec<Vec<String>> = r
                    .tables
                    .iter()
                    .map(|(t, n)| vec![t.clone(), n.to_string()])
                    .collect();
                print_batches(&[strings_batch(&["table", "rows"], &rows)?], format)?;
                say(
                    env,
                    &format!(
                        "masked copy in {} (left behind: {})",
                        r.to.display(),
                        r.left_behind.join(", ")
                    ),
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Sql(a) => sql(env, &a.query, a.format, a.timing).await,
        Command::Report(a) => report(env, a).await,
        Command::Export(a) => export(env, a).await,
        Command::Catalog(c) => catalog_cmd(env, c).await,
        Command::Serve(a) => serve(env, a).await,
        Command::Keys(k) => keys_cmd(env, k),
        Command::Users(u) => users_cmd(env, u),
        Command::Tokens(t) => tokens_cmd(env, t),
        Command::Load(LoadCommand::Postgres(a)) => load_postgres(env, a).await,
        Command::Config => {
            out(env.config.to_toml().as_bytes())?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A message for the person at the terminal: on stderr with text logs, a log
/// record with JSON logs, nothing with --quiet.
fn say(env: &Env, msg: &str) {
    if env.chatty {
        eprintln!("{msg}");
    } else {
        tracing::info!("{msg}");
    }
}

fn fmt(f: FormatArg) -> OutputFormat {
    match f {
        FormatArg::Table => OutputFormat::Table,
        FormatArg::Csv => OutputFormat::Csv,
        FormatArg::Json => OutputFormat::Json,
    }
}

/// Writes to stdout; a closed pipe surfaces as an io error main() treats as success.
fn out(bytes: &[u8]) -> Result<()> {
    let mut o = std::io::stdout().lock();
    o.write_all(bytes)?;
    o.flush()?;
    Ok(())
}

fn print_batches(batches: &[RecordBatch], f: FormatArg) -> Result<()> {
    let mut buf = Vec::new();
    write_batches(&mut buf, batches, fmt(f))?;
    out(&buf)
}

fn strings_batch(headers: &[&str], rows: &[Vec<String>]) -> Result<RecordBatch> {
    let schema = Arc::new(Schema::new(
        headers
            .iter()
            .map(|h| Field::new(*h, DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ));
    let cols: Vec<ArrayRef> = (0..headers.len())
        .map(|i| {
            Arc::new(StringArray::from(
                rows.iter().map(|r| r[i].as_str()).collect::<Vec<_>>(),
            )) as ArrayRef
        })
        .collect();
    Ok(RecordBatch::try_new(schema, cols)?)
}

fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    let mut s = serde_json::to_string_pretty(v)?;
    s.push('\n');
    out(s.as_bytes())
}

fn parse_opt_date(s: Option<&str>, flag: &str) -> Result<Option<i32>> {
    s.map(|d| time::parse_date(d).map_err(|e| anyhow::anyhow!("{flag}: {e}")))
        .transpose()
}

fn open_lake(env: &Env) -> Result<Lake> {
    Lake::open(&env.data, &env.config.lake)
        .with_context(|| format!("opening the lake in {}", env.data.display()))
}

// ---------------------------------------------------------------------------

fn generate(env: &Env, a: &GenerateArgs) -> Result<shoplake_gen::GenSummary> {
    let cfg = shoplake_gen::GenConfig {
        customers: a.customers,
        products: a.products,
        transactions: a.transactions,
        clickstream: a.clickstream,
        reviews: a.reviews,
        days: a.days,
        start_date: time::parse_date(&a.start_date)
            .map_err(|e| anyhow::anyhow!("--start-date: {e}"))?,
        seed: a.seed,
    };
    cfg.validate()
        .map_err(|e| anyhow::anyhow!("invalid sizes: {e}"))?;
    let lake = open_lake(env)?;
    let raw = lake.root().join("raw");
    let t0 = Instant::now();
    let bar = counter(
        env.progress,
        (a.transactions + a.clickstream) as u64,
        "generating",
    );
    let seen = std::sync::Mutex::new(BTreeMap::<Source, u64>::new());
    let summary = shoplake_gen::generate(&cfg, &raw, &|s, n| {
        let mut m = seen.lock().expect("unpoisoned");
        m.insert(s, n);
        let done = m.get(&Source::Transactions).copied().unwrap_or(0)
            + m.get(&Source::Clickstream).copied().unwrap_or(0);
        bar.set_position(done);
    })
    .with_context(|| format!("writing sample data under {}", raw.display()))?;
    bar.finish_and_clear();
    let secs = t0.elapsed().as_secs_f64();
    let mut text = format!(
        "generated {} files ({:.1} MiB) for {} … {} in {} under {}\n",
        summary.files,
        summary.bytes as f64 / (1 << 20) as f64,
        time::format_date(summary.first_date),
        time::format_date(summary.last_date),
        fmt_secs(secs),
        raw.display()
    );
    for (s, n) in &summary.rows {
        text.push_str(&format!("  {:<13} {n:>10} rows\n", s.name()));
    }
    for note in &summary.notes {
        text.push_str(&format!("  note: {note}\n"));
    }
    say(env, text.trim_end());
    Ok(summary)
}

async fn import(
    env: &Env,
    source: SourceArg,
    files: &[std::path::PathBuf],
    f: FormatArg,
) -> Result<ExitCode> {
    let source = match source {
        SourceArg::Transactions => Source::Transactions,
        SourceArg::Products => Source::Products,
        SourceArg::Clickstream => Source::Clickstream,
        SourceArg::Reviews => Source::Reviews,
    };
    let lake = open_lake(env)?;
    let opts = ImportOptions {
        max_file_bytes: env.config.import.max_file_size_mb << 20,
        max_bad_ratio: env.config.import.max_bad_row_ratio,
        now_micros: chrono::Utc::now().timestamp_micros(),
    };
    let mut rows = Vec::new();
    let mut json = Vec::new();
    let mut refused = 0;
    for path in files {
        let r = shoplake_lake::import::import_file(&lake, source, path, &opts)
            .await
            .with_context(|| format!("importing {}", path.display()))?;
        let (status, note) = match &r.outcome {
            Outcome::Imported => (
                "imported",
                format!(
                    "{} rows: {} to raw in {} partition(s), {} quarantined",
                    r.rows,
                    r.good,
                    r.partitions.len(),
                    r.quarantined
                ),
            ),
            Outcome::AlreadyImported { at, file } => (
                "unchanged",
                format!("same content imported at {at} from {file}; nothing changed"),
            ),
            Outcome::Refused(why) => {
                refused += 1;
                ("refused", why.clone())
            }
        };
        if matches!(r.outcome, Outcome::Imported) {
            for (line, e) in &r.sample_errors {
                say(env, &format!("  {}:{line}: {e}", path.display()));
            }
        }
        json.push(serde_json::json!({
            "file": path.display().to_string(),
            "source": source.name(),
            "status": status,
            "rows": r.rows,
            "good": r.good,
            "quarantined": r.quarantined,
            "partitions": r.partitions.iter().map(|(d, n)| (time::format_date(*d), *n)).collect::<BTreeMap<_, _>>(),
            "hash": r.hash,
            "message": note,
            "sample_errors": r.sample_errors.iter().map(|(l, e)| format!("line {l}: {e}")).collect::<Vec<_>>(),
        }));
        if !env.progress {
            tracing::info!(file = %path.display(), source = source.name(), status, rows = r.rows, good = r.good, quarantined = r.quarantined, hash = %r.hash, "{note}");
        }
        rows.push(vec![path.display().to_string(), status.to_string(), note]);
    }
    match f {
        FormatArg::Json => print_json(&json)?,
        other => print_batches(
            &[strings_batch(&["file", "status", "details"], &rows)?],
            other,
        )?,
    }
    if refused > 0 {
        anyhow::bail!("{refused} file(s) refused; nothing of them was imported");
    }
    say(
        env,
        "run `shoplake pipeline run` to process the new partitions",
    );
    Ok(ExitCode::SUCCESS)
}

async fn pipeline_run(
    env: &Env,
    opts: &PipelineOptions,
    f: FormatArg,
) -> Result<pipeline::RunSummary> {
    let lake = open_lake(env)?;
    let spinner = StepSpinner::new(env.progress);
    let summary = pipeline::run(&lake, &env.config, opts, &spinner).await?;
    match f {
        FormatArg::Json => print_json(&summary)?,
        other => {
            let rows: Vec<Vec<String>> = summary
                .steps
                .iter()
                .map(|s| {
                    vec![
                        s.name.clone(),
                        s.rows_in.to_string(),
                        s.rows_out.to_string(),
                        s.rejected.to_string(),
                        fmt_secs(s.seconds),
                        s.detail.clone(),
                    ]
                })
                .collect();
            print_batches(
                &[strings_batch(
                    &[
                        "step",
                        "rows_in",
                        "rows_out",
                        "quarantined",
                        "time",
                        "detail",
                    ],
                    &rows,
                )?],
                other,
            )?;
            if matches!(other, FormatArg::Table) {
                let mut text = String::new();
                if summary.nothing_to_do() {
                    text.push_str("nothing new in the raw zone (use --force to reprocess)\n");
                } else {
                    text.push_str(&format!(
                        "{} date(s) processed in {}",
                        summary.dates.len(),
                        fmt_secs(summary.seconds)
                    ));
                    if summary.events > 0 {
                        text.push_str(&format!(
                            "; {} clickstream events ({:.0} events/s end to end)",
                            summary.events,
                            summary.events as f64 / summary.seconds
                        ));
                    }
                    text.push('\n');
                }
                out(text.as_bytes())?;
            }
        }
    }
    Ok(summary)
}

fn open_store(env: &Env) -> Result<Store> {
    let dir = env.data.join("state");
    Store::open(&dir).with_context(|| format!("opening the run history in {}", dir.display()))
}

fn opt_secs(s: Option<f64>) -> String {
    s.map(fmt_secs).unwrap_or_default()
}

fn pipeline_runs(env: &Env, limit: usize, f: FormatArg) -> Result<ExitCode> {
    let runs = open_store(env)?.runs(limit)?;
    if matches!(f, FormatArg::Json) {
        print_json(&runs)?;
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            let days = r.dates.split(',').filter(|d| !d.is_empty()).count();
            vec![
                r.run_id.clone(),
                r.trigger.clone(),
                r.status.clone(),
                r.started_at.clone(),
                opt_secs(r.seconds),
                days.to_string(),
                r.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    print_batches(
        &[strings_batch(
            &[
                "run",
                "trigger",
                "status",
                "started_at",
                "time",
                "dates",
                "error",
            ],
            &rows,
        )?],
        f,
    )?;
    if runs.is_empty() && matches!(f, FormatArg::Table) {
        say(
            env,
            "no pipeline run yet: `shoplake pipeline run` starts one",
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn pipeline_show(env: &Env, run: &str, f: FormatArg) -> Result<ExitCode> {
    let Some((run, steps)) = open_store(env)?.run(run)? else {
        bail!("no run {run:?} (see `shoplake pipeline runs`)");
    };
    if matches!(f, FormatArg::Json) {
        print_json(&serde_json::json!({ "run": run, "steps": steps }))?;
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = steps
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                s.status.clone(),
                s.rows_in.to_string(),
                s.rows_out.to_string(),
                s.rejected.to_string(),
                opt_secs(s.seconds),
                s.error.clone().unwrap_or_else(|| s.detail.clone()),
            ]
        })
        .collect();
    if matches!(f, FormatArg::Table) {
        let mut head = format!(
            "{}  {}  trigger {}  started {}{}\n",
            run.run_id,
            run.status,
            run.trigger,
            run.started_at,
            run.seconds
                .map(|s| format!("  took {}", fmt_secs(s)))
                .unwrap_or_default()
        );
        if !run.dates.is_empty() {
            head.push_str(&format!("dates: {}\n", run.dates));
        }
        if let Some(e) = &run.error {
            head.push_str(&format!("error: {e}\n"));
        }
        out(head.as_bytes())?;
    }
    print_batches(
        &[strings_batch(
            &[
                "step",
                "status",
                "rows_in",
                "rows_out",
                "quarantined",
                "time",
                "detail",
            ],
            &rows,
        )?],
        f,
    )?;
    Ok(ExitCode::SUCCESS)
}

async fn quality_check(
    env: &Env,
    tables: Vec<String>,
    from: Option<i32>,
    to: Option<i32>,
    f: FormatArg,
) -> Result<ExitCode> {
    let lake = open_lake(env)?;
    let mut names = Vec::new();
    for t in &tables {
        let table = schema::find(t).with_context(|| {
            format!("--table {t:?}: no such table (see `shoplake catalog list`)")
        })?;
        names.push(table.qualified());
    }
    let checks = quality::checks(&env.config.quality)?;
    let now = chrono::Utc::now().timestamp_micros();
    // --from/--to narrow partitioned tables to those dates
    let dates = match (from, to) {
        (None, None) => None,
        (Some(a), Some(b)) if a <= b => Some((a..=b).collect()),
        (Some(_), Some(_)) => bail!("--from is after --to"),
        _ => bail!("--from and --to go together (or neither, for whole tables)"),
    };

    let scope = quality::Scope {
        dates,
        tables: names,
        now_micros: now,
    };
    let engine = QueryEngine::new(&lake, &env.config.query)?;
    let results = quality::run_checks(&lake, &engine, &env.config.quality, &checks, &scope).await?;
    let run_id = format!("check-{}", chrono::Utc::now().format("%Y%m%dT%H%M%S%.3f"));
    quality::record(&lake, &run_id, now, &results).await?;
    let alerter = Alerter::new(open_store(env)?, &env.config.alerts);
    quality::alert(&alerter, &run_id, &results).await?;
    let blocking = results.iter().filter(|r| r.blocks()).count();
    let failed = results.iter().filter(|r| r.failed()).count();
    if matches!(f, FormatArg::Json) {
        print_json(&serde_json::json!({
            "run_id": run_id,
            "checks": results.len(),
            "failed": failed,
            "errors": blocking,
            "results": results,
        }))?;
    } else {
        let rows: Vec<Vec<String>> = results
            .iter()
            .map(|r| {
                vec![
                    r.table.clone(),
                    r.check.clone(),
                    r.severity.name().to_string(),
                    r.status.clone(),
                    r.failing.to_string(),
                    match &r.sample {
                        Some(s) => format!("{} [{s}]", r.message),
                        None => r.message.clone(),
                    },
                ]
            })
            .collect();
        print_batches(
            &[strings_batch(
                &["table", "check", "severity", "status", "failing", "message"],
                &rows,
            )?],
            f,
        )?;
        if matches!(f, FormatArg::Table) {
            out(format!(
                "{} checks: {} passed, {failed} failed ({blocking} of severity error); recorded in ops.quality as {run_id}\n",
                results.len(),
                results.iter().filter(|r| r.status == "pass").count(),
            )
            .as_bytes())?;
        }
    }
    Ok(if blocking > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

async fn ml_train(env: &Env, model: MlModelArg, f: FormatArg) -> Result<ExitCode> {
    use shoplake_jobs::ml::{self, Kind};
    let lake = open_lake(env)?;
    let kinds: Vec<Kind> = match model {
        MlModelArg::All => Vec::new(),
        MlModelArg::Segments => vec![Kind::Segments],
        MlModelArg::Churn => vec![Kind::Churn],
        MlModelArg::Recs => vec![Kind::Recs],
        MlModelArg::Ltv => vec![Kind::Ltv],
    };
    say(env, "training from the curated tables…");
    let trained = ml::train(&lake, &env.config, &kinds).await?;
    let metas: Vec<&ml::ModelMeta> = trained.iter().map(|t| &t.meta).collect();
    if matches!(f, FormatArg::Json) {
        print_json(&metas)?;
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = trained
        .iter()
        .map(|t| {
            vec![
                t.meta.kind.name().to_string(),
                format!("v{}", t.meta.version),
                t.meta.scored.to_string(),
                format!("{:.1}s", t.meta.seconds),
                t.summary.clone(),
            ]
        })
        .collect();
    print_batches(
        &[strings_batch(
            &["model", "version", "rows scored", "took", "evaluation"],
            &rows,
        )?],
        f,
    )?;
    say(
        env,
        &format!("models saved under {}", ml::models_dir(&lake).display()),
    );
    Ok(ExitCode::SUCCESS)
}

fn ml_status(env: &Env, f: FormatArg) -> Result<ExitCode> {
    use shoplake_jobs::ml;
    let lake = open_lake(env)?;
    let models = ml::status(&lake)?;
    if matches!(f, FormatArg::Json) {
        print_json(&models)?;
        return Ok(ExitCode::SUCCESS);
    }
    if models.is_empty() {
        say(env, "no models yet: run `shoplake ml train`");
    }
    let rows: Vec<Vec<String>> = models
        .iter()
        .map(|m| {
            vec![
                m.kind.name().to_string(),
                format!("v{}", m.version),
                m.trained_at.clone(),
                format!("{} … {}", m.data_from, m.data_to),
                m.rows.to_string(),
                ml::summary(m),
            ]
        })
        .collect();
    print_batches(
        &[strings_batch(
            &[
                "model",
                "version",
                "trained_at",
                "data",
                "rows",
                "evaluation",
            ],
            &rows,
        )?],
        f,
    )?;
    Ok(ExitCode::SUCCESS)
}

fn quality_list(env: &Env, f: FormatArg) -> Result<ExitCode> {
    let checks = quality::checks(&env.config.quality)?;
    if matches!(f, FormatArg::Json) {
        print_json(&checks)?;
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = checks
        .iter()
        .map(|c| {
            vec![
                c.table.clone(),
                c.name.clone(),
                c.severity.name().to_string(),
                if c.builtin { "built-in" } else { "config" }.to_string(),
                match &c.filter {
                    Some(w) => format!("{} where {w}", c.describe()),
                    None => c.describe(),
                },
            ]
        })
        .collect();
    print_batches(
        &[strings_batch(
            &["table", "check", "severity", "origin", "asserts"],
            &rows,
        )?],
        f,
    )?;
    Ok(ExitCode::SUCCESS)
}

fn find_tables(names: &[String]) -> Result<Vec<&'static schema::Table>> {
    names
        .iter()
        .map(|t| {
            schema::find(t)
                .filter(|t| t.storage == schema::Storage::Delta)
                .with_context(|| {
                    format!("--table {t:?}: no such Delta table (see `shoplake catalog list`)")
                })
        })
        .collect()
}

async fn privacy_erase(
    env: &Env,
    person: &shoplake_jobs::privacy::Person,
    dry_run: bool,
    f: FormatArg,
) -> Result<ExitCode> {
    let lake = open_lake(env)?;
    // the pseudonym key exists only where the collector hashed something
    let key_file = env.config.privacy.key_file.clone();
    let env_key = std::env::var("SHOPLAKE_PII_KEY").ok();
    let key =
        if env_key.is_some() || key_file.is_some() || lake.state_dir().join("pii.key").exists() {
            Some(shoplake_lake::state::pii_key(
                &lake.state_dir(),
                key_file.as_deref(),
                env_key.as_deref(),
            )?)
        } else {
            None
        };
    let r = shoplake_jobs::privacy::erase(&lake, person, key.as_ref(), dry_run).await?;
    let code = if r.proven() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    };
    if matches!(f, FormatArg::Json) {
        print_json(&r)?;
        return Ok(code);
    }
    let rows: Vec<Vec<String>> = r
        .remaining
        .iter()
        .map(|(table, left)| {
            let e = r.tables.iter().find(|t| &t.table == table);
            vec![
                table.clone(),
                e.map_or(0, |e| e.rows).to_string(),
                e.map_or(0, |e| e.files_deleted).to_string(),
                e.map_or(0, |e| e.log_entries_removed).to_string(),
                left.to_string(),
            ]
        })
        .collect();
    let erased = if dry_run {
        "would_erase"
    } else {
        "rows_erased"
    };
    let left = if dry_run { "rows_now" } else { "rows_left" };
    print_batches(
        &[strings_batch(
            &[
                "table",
                erased,
                "files_deleted",
                "log_entries_removed",
                left,
            ],
            &rows,
        )?],
        f,
    )?;
    if matches!(f, FormatArg::Table) {
        let mut text = String::new();
        for (path, n) in &r.raw_files {
            text.push_str(&format!(
                "{}{n} row(s) removed from {}\n",
                if dry_run { "would have " } else { "" },
                path.display()
            ));
        }
        text.push_str(&format!(
            "{}{} row(s) of {} id(s) and {} device id(s); {}\n",
            if dry_run { "dry run: " } else { "erased " },
            r.rows(),
            r.ids.len(),
            r.anonymous_ids.len().saturating_sub(r.ids.len()),
            if dry_run {
                "nothing changed".to_owned()
            } else if r.proven() {
                "every table counted again: nothing of them is left".to_owned()
            } else {
                "ROWS ARE LEFT (see rows_left): run it again".to_owned()
            }
        ));
        out(text.as_bytes())?;
    }
    Ok(code)
}

async fn lake_maintain(
    env: &Env,
    m: &shoplake_jobs::maintain::MaintainRun,
    f: FormatArg,
) -> Result<ExitCode> {
    let lake = open_lake(env)?;
    let r = shoplake_jobs::maintain::run(&lake, &env.config, m).await?;
    if matches!(f, FormatArg::Json) {
        print_json(&r)?;
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = r
        .tables
        .iter()
        .filter(|t| t.files_before > 0)
        .map(|t| {
            vec![
                t.table.clone(),
                t.files_before.to_string(),
                t.compacted.to_string(),
                t.written.to_string(),
                t.vacuumed.to_string(),
                t.log_entries_removed.to_string(),
            ]
        })
        .collect();
    print_batches(
        &[strings_batch(
            &[
                "table",
                "files",
                "compacted",
                "written",
                "vacuumed",
                "log_entries_removed",
            ],
            &rows,
        )?],
        f,
    )?;
    if matches!(f, FormatArg::Table) {
        out(format!(
            "{}{} raw partition(s) ({} bytes) past retention removed, in {}\n",
            if r.dry_run { "dry run: " } else { "" },
            r.raw_partitions_removed.len(),
            r.raw_bytes_removed,
            fmt_secs(r.seconds)
        )
        .as_bytes())?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn load_postgres(env: &Env, a: LoadPostgresArgs) -> Result<ExitCode> {
    use shoplake_jobs::warehouse::{self, LoadOptions};
    let tables = a
        .tables
        .iter()
        .filter(|t| !t.trim().is_empty())
        .map(|t| {
            schema::find(t)
                .filter(|t| t.storage == schema::Storage::Delta)
                .with_context(|| {
                    let named: Vec<String> = schema::TABLES
                        .iter()
                        .filter(|d| d.storage == schema::Storage::Delta && d.name == t.trim())
                        .map(schema::Table::qualified)
                        .collect();
                    if named.is_empty() {
                        format!(
                            "--tables: {t:?} is not a Delta table of the lake (see `shoplake catalog list`)"
                        )
                    } else {
                        format!("--tables: {t:?} is ambiguous: say {}", named.join(" or "))
                    }
                })
        })
        .collect::<Result<Vec<_>>>()?;
    let lake = open_lake(env)?;
    let opts = LoadOptions {
        url: a.url,
        schema: a.schema,
        tables,
        full: a.full,
        ..Default::default()
    };
    let r = warehouse::load_postgres(&lake, &opts, &StepSpinner::new(env.progress)).await?;
    if matches!(a.format, FormatArg::Json) {
        print_json(&r)?;
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = r
        .tables
        .iter()
        .map(|t| {
            vec![
                t.table.clone(),
                t.target.clone(),
                t.describe(),
                t.version.map(|v| v.to_string()).unwrap_or_default(),
                t.rows.to_string(),
                t.deleted.to_string(),
                fmt_secs(t.seconds),
            ]
        })
        .collect();
    print_batches(
        &[strings_batch(
            &[
                "table", "target", "action", "version", "rows", "deleted", "time",
            ],
            &rows,
        )?],
        a.format,
    )?;
    if matches!(a.format, FormatArg::Table) {
        out(format!(
            "{} rows copied into schema {} in {} ({:.0} rows/s)\n",
            r.rows,
            r.schema,
            fmt_secs(r.seconds),
            r.rows as f64 / r.seconds.max(1e-9)
        )
        .as_bytes())?;
    }
    Ok(ExitCode::SUCCESS)
}

fn alerts_list(env: &Env, all: bool, f: FormatArg) -> Result<ExitCode> {
    let store = open_store(env)?;
    let alerts = if all {
        store.alerts(200)?
    } else {
        store.open_alerts("")?
    };
    if matches!(f, FormatArg::Json) {
        print_json(&alerts)?;
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = alerts
        .iter()
        .map(|a| {
            vec![
                a.raised_at.clone(),
                a.kind.clone(),
                a.severity.clone(),
                a.cleared_at
                    .clone()
                    .map_or("open".into(), |c| format!("cleared {c}")),
                a.repeats.to_string(),
                a.message.clone(),
            ]
        })
        .collect();
    print_batches(
        &[strings_batch(
            &[
                "raised_at",
                "kind",
                "severity",
                "state",
                "repeats",
                "message",
            ],
            &rows,
        )?],
        f,
    )?;
    Ok(ExitCode::SUCCESS)
}

fn print_timing(on: bool, batches: &[RecordBatch], t0: Instant) {
    if on {
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        eprintln!(
            "{rows} rows in {:.1} ms",
            t0.elapsed().as_secs_f64() * 1000.0
        );
    }
}

async fn sql(env: &Env, query: &str, f: FormatArg, timing: bool) -> Result<ExitCode> {
    let query = if query == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        s
    } else {
        query.to_string()
    };
    let lake = open_lake(env)?;
    let t0 = Instant::now();
    let engine = QueryEngine::new(&lake, &env.config.query)?;
    let batches = engine.query(&query).await?;
    print_timing(timing, &batches, t0);
    print_batches(&batches, f)?;
    Ok(ExitCode::SUCCESS)
}

async fn export(env: &Env, a: ExportArgs) -> Result<ExitCode> {
    use shoplake_query::export::{ExportFormat, ExportRequest};
    if let (Some(from), Some(until)) = (a.from, a.until)
        && from > until
    {
        anyhow::bail!("--from {from} is after --until {until}");
    }
    let lake = open_lake(env)?;
    let engine = QueryEngine::new(&lake, &env.config.query)?;
    let t0 = Instant::now();
    let done = engine
        .export(&ExportRequest {
            table: a.table,
            dest: a.dest,
            format: match a.format {
                ExportFormatArg::Parquet => ExportFormat::Parquet,
                ExportFormatArg::Csv => ExportFormat::Csv,
                ExportFormatArg::Jsonl => ExportFormat::Jsonl,
            },
            from: a.from,
            until: a.until,
        })
        .await?;
    out(format!(
        "{}: {} rows written to {} in {:.1} s\n",
        done.table,
        done.rows,
        done.location,
        t0.elapsed().as_secs_f64()
    )
    .as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

async fn report(env: &Env, a: ReportArgs) -> Result<ExitCode> {
    let dir = env.config.query.reports_dir.as_deref();
    if a.list {
        let all = reports::all(dir)?;
        let rows: Vec<Vec<String>> = all
            .iter()
            .map(|r| {
                let params: Vec<String> = r
                    .params
                    .iter()
                    .map(|(p, d)| match d {
                        Some(d) => format!("{p}={d}"),
                        None => p.clone(),
                    })
                    .collect();
                vec![r.name.clone(), params.join(", "), r.description.clone()]
            })
            .collect();
        print_batches(
            &[strings_batch(&["report", "params", "description"], &rows)?],
            a.format,
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let name = a.name.expect("clap requires a name without --list");
    let mut params = BTreeMap::new();
    if let Some(v) = a.from {
        params.insert("from".to_string(), v);
    }
    if let Some(v) = a.to {
        params.insert("to".to_string(), v);
    }
    for p in &a.params {
        let Some((k, v)) = p.split_once('=') else {
            bail!("--param {p:?}: expected KEY=VALUE");
        };
        params.insert(k.trim().to_string(), v.trim().to_string());
    }
    let lake = open_lake(env)?;
    let t0 = Instant::now();
    let batches = run_report(env, &lake, &name, &params).await?;
    print_timing(a.timing, &batches, t0);
    print_batches(&batches, a.format)?;
    Ok(ExitCode::SUCCESS)
}

async fn run_report(
    env: &Env,
    lake: &Lake,
    name: &str,
    params: &BTreeMap<String, String>,
) -> Result<Vec<RecordBatch>> {
    let r = reports::find(env.config.query.reports_dir.as_deref(), name)?;
    let sql = r.render(params)?;
    let engine = QueryEngine::new(lake, &env.config.query)?;
    engine
        .query(&sql)
        .await
        .with_context(|| format!("report {name}"))
}

async fn catalog_cmd(env: &Env, c: CatalogCommand) -> Result<ExitCode> {
    match c {
        CatalogCommand::Dictionary => {
            out(schema::data_dictionary_markdown().as_bytes())?;
        }
        CatalogCommand::Glue {
            location,
            database_prefix,
            zones,
            region,
        } => {
            let opts = shoplake_jobs::glue::GlueOptions {
                database_prefix,
                location,
                zones: zones
                    .iter()
                    .filter_map(|z| shoplake_core::schema::Zone::parse(z))
                    .collect(),
                region,
            };
            let done = shoplake_jobs::glue::register(&opts).await?;
            let mut text = String::new();
            for r in &done {
                text.push_str(&format!(
                    "{} {} -> {}\n",
                    if r.created { "created" } else { "updated" },
                    r.name,
                    r.location
                ));
            }
            text.push_str(&format!("{} tables registered in AWS Glue\n", done.len()));
            out(text.as_bytes())?;
        }
        CatalogCommand::List { format } => {
            let lake = open_lake(env)?;
            let infos = catalog::list(&lake).await?;
            if let FormatArg::Json = format {
                print_json(&infos)?;
            } else {
                let rows: Vec<Vec<String>> = infos.iter().map(info_row).collect();
                print_batches(&[strings_batch(INFO_HEADERS, &rows)?], format)?;
            }
        }
        CatalogCommand::Describe { table, format } => {
            let Some(t) = schema::find(&table) else {
                let names: Vec<String> = schema::TABLES.iter().map(|t| t.qualified()).collect();
                bail!("no table {table:?}; tables: {}", names.join(", "));
            };
            let lake = open_lake(env)?;
            let info = catalog::describe(&lake, t).await?;
            let cols: Vec<Vec<String>> = t
                .columns
                .iter()
                .map(|c| {
                    vec![
                        c.name.to_string(),
                        c.ty.sql().to_string(),
                        if c.nullable { "yes" } else { "no" }.to_string(),
                        if Some(c.name) == t.partition {
                            "partition"
                        } else {
                            ""
                        }
                        .to_string(),
                        c.doc.to_string(),
                    ]
                })
                .collect();
            if let FormatArg::Json = format {
                print_json(&serde_json::json!({
                    "table": info,
                    "doc": t.doc,
                    "columns": t.columns.iter().map(|c| serde_json::json!({
                        "name": c.name, "type": c.ty.sql(), "nullable": c.nullable, "doc": c.doc
                    })).collect::<Vec<_>>(),
                }))?;
            } else {
                if let FormatArg::Table = format {
                    out(format!("{}\n{}\n\n", info.name, t.doc).as_bytes())?;
                    print_batches(&[strings_batch(INFO_HEADERS, &[info_row(&info)])?], format)?;
                    out(b"\n")?;
                }
                print_batches(
                    &[strings_batch(
                        &["column", "type", "nullable", "key", "meaning"],
                        &cols,
                    )?],
                    format,
                )?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

const INFO_HEADERS: &[&str] = &[
    "table",
    "storage",
    "rows",
    "files",
    "size",
    "partitions",
    "first",
    "last",
    "version",
    "updated",
];

fn info_row(i: &catalog::TableInfo) -> Vec<String> {
    let size = if i.bytes >= 1 << 20 {
        format!("{:.1} MiB", i.bytes as f64 / (1 << 20) as f64)
    } else {
        format!("{:.1} KiB", i.bytes as f64 / 1024.0)
    };
    vec![
        i.name.clone(),
        i.storage.to_string(),
        i.rows.map_or("-".into(), |r| r.to_string()),
        i.files.to_string(),
        size,
        i.partitions.to_string(),
        i.first_partition.clone().unwrap_or_default(),
        i.last_partition.clone().unwrap_or_default(),
        i.version.map_or("-".into(), |v| v.to_string()),
        i.last_update.clone().unwrap_or_default(),
    ]
}

// ---------------------------------------------------------------------------

async fn demo(env: &Env, a: crate::cli::DemoArgs) -> Result<ExitCode> {
    let lake = open_lake(env)?;
    let has_data = Source::ALL.iter().any(|s| {
        catalog::list_raw_files(&lake.raw_dir(*s))
            .map(|f| !f.is_empty())
            .unwrap_or(false)
    });
    if has_data && !a.regenerate {
        say(
            env,
            &format!(
                "{} already holds raw data; using it (pass --regenerate to write fresh sample data)",
                lake.root().display()
            ),
        );
    } else {
        generate(env, &a.sizes)?;
    }
    let summary = pipeline_run(
        env,
        &PipelineOptions {
            trigger: "demo".into(),
            ..Default::default()
        },
        FormatArg::Table,
    )
    .await?;
    let _ = summary;
    // the models behind the Customers page and /api/recommendations
    say(
        env,
        "training the models (segments, churn, recommendations, lifetime value)…",
    );
    match shoplake_jobs::ml::train(&lake, &env.config, &[]).await {
        Ok(trained) => {
            if let FormatArg::Table = a.format {
                let mut buf = Vec::new();
                writeln!(buf, "\n== Models  (shoplake ml status)")?;
                for t in &trained {
                    writeln!(buf, "{:<9} {}", t.meta.kind.name(), t.summary)?;
                }
                out(&buf)?;
            }
        }
        // too little data for a model is not a reason to stop the demo
        Err(shoplake_jobs::JobError::Invalid(why)) => {
            say(env, &format!("models not trained: {why}"))
        }
        Err(e) => return Err(e.into()),
    }
    type Headline = (
        &'static str,
        &'static str,
        &'static [(&'static str, &'static str)],
    );
    let headline: &[Headline] = &[
        ("Revenue by week", "revenue_trends", &[("grain", "week")]),
        ("Top products", "top_products", &[("limit", "10")]),
        ("Revenue by category", "revenue_by_category", &[]),
        ("Conversion funnel", "conversion_funnel", &[]),
        ("Customer segments (RFM)", "customer_segments", &[]),
        (
            "Frequently bought together",
            "product_affinity",
            &[("limit", "10")],
        ),
    ];
    for (title, name, params) in headline {
        let params: BTreeMap<String, String> = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let batches = run_report(env, &lake, name, &params).await?;
        let mut buf = Vec::new();
        if let FormatArg::Table = a.format {
            writeln!(buf, "\n== {title}  (shoplake report {name})")?;
        }
        write_batches(&mut buf, &batches, fmt(a.format))?;
        out(&buf)?;
    }
    let serve_on = match (a.serve, a.no_serve) {
        (Some(addr), _) => Some(addr),
        (None, false) if std::io::stdout().is_terminal() && std::io::stdin().is_terminal() => {
            Some("127.0.0.1:8080".to_string())
        }
        _ => None,
    };
    if let Some(addr) = serve_on {
        let args = ServeArgs {
            addr: Some(addr.clone()),
            pg_addr: None,
            write_keys: vec![format!("demo={DEMO_KEY}")],
            orders_db: None,
        };
        let login = match demo_admin(env)? {
            Some(pw) => format!(
                "Log in as admin with the password {pw} (shown only now; change it with `shoplake users passwd admin`)."
            ),
            None => "Log in with one of your users (`shoplake users list`).".to_string(),
        };
        out(format!(
            "\nThe dashboard: http://{addr}/  {login}\n\
             The demo store: http://{addr}/demo/store?key={DEMO_KEY} (its purchases show on the Live page within seconds).\n\
             Ctrl-C stops.\n"
        )
        .as_bytes())?;
        return serve(env, args).await;
    }
    if std::io::stdout().is_terminal() {
        out(format!(
            "\nThe lake is in {}. Next: `shoplake report --list`, `shoplake sql \"SELECT ...\"`, `shoplake catalog list`.\n",
            lake.root().display()
        ).as_bytes())?;
    }
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------

/// Creates the user `admin` with a random password when there are no users
/// yet; returns the password (to print once).
fn demo_admin(env: &Env) -> Result<Option<String>> {
    let store = open_store(env)?;
    if !store.users()?.is_empty() {
        return Ok(None);
    }
    let pw = shoplake_server::auth::new_secret("")?[..16].to_string();
    store.add_user(
        "admin",
        Role::Admin,
        &shoplake_server::auth::hash_password(&pw)?,
    )?;
    Ok(Some(pw))
}

/// The write key `demo --serve` accepts (a demo, not a secret).
const DEMO_KEY: &str = "demo-write-key";

async fn serve(env: &Env, a: ServeArgs) -> Result<ExitCode> {
    let mut write_keys = Vec::new();
    for k in &a.write_keys {
        write_keys.push(shoplake_server::keys::parse_write_key(k)?);
    }
    if let Ok(list) = std::env::var("SHOPLAKE_WRITE_KEYS") {
        for k in list.split(',').filter(|k| !k.trim().is_empty()) {
            write_keys
                .push(shoplake_server::keys::parse_write_key(k).context("SHOPLAKE_WRITE_KEYS")?);
        }
    }
    let addr = a.addr.unwrap_or_else(|| env.config.server.addr.clone());
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    let pg_addr = a
        .pg_addr
        .unwrap_or_else(|| env.config.server.pg_addr.clone());
    let postgres = if pg_addr.trim().is_empty() {
        None
    } else {
        let l = tokio::net::TcpListener::bind(pg_addr.trim())
            .await
            .with_context(|| format!("listening for PostgreSQL clients on {pg_addr}"))?;
        Some(l)
    };
    let mut config = env.config.clone();
    if let Some(db) = &a.orders_db {
        config.orders.db = db.clone();
    }
    let opts = shoplake_server::ServeOptions {
        data_dir: env.data.clone(),
        config,
        write_keys,
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let scheduler = spawn_scheduler(env, stop_rx)?;
    let listeners = shoplake_server::Listeners {
        http: listener,
        postgres,
    };
    let served = shoplake_server::serve_on(opts, listeners, shutdown_signal()).await;
    let _ = stop_tx.send(true);
    if let Some(s) = scheduler {
        // a run under way finishes first: its commits are atomic, but an
        // unfinished run would be redone at the next start
        say(env, "waiting for the pipeline run under way to finish");
        let _ = tokio::task::spawn_blocking(move || s.join()).await;
    }
    served?;
    Ok(ExitCode::SUCCESS)
}

/// Starts the pipeline scheduler on a thread and runtime of its own, so a
/// run never delays the collector; None when neither a schedule nor the raw
/// zone watch is on.
fn spawn_scheduler(
    env: &Env,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<Option<std::thread::JoinHandle<()>>> {
    use shoplake_jobs::schedule::{
        self, Cron, LakeRunner, MaintainRunner, MlRunner, ScheduleOptions, SystemClock,
    };
    let p = &env.config.pipeline;
    let cron = match p.schedule.trim() {
        "" => None,
        s => Some(s.parse::<Cron>().context("pipeline.schedule")?),
    };
    let maintenance = match env.config.lake.maintenance_schedule.trim() {
        "" => None,
        s => Some(s.parse::<Cron>().context("lake.maintenance_schedule")?),
    };
    let retrain = match env.config.ml.schedule.trim() {
        "" => None,
        s => Some(s.parse::<Cron>().context("ml.schedule")?),
    };
    let watch = (p.watch_secs > 0).then(|| chrono::Duration::seconds(p.watch_secs as i64));
    if cron.is_none() && watch.is_none() && maintenance.is_none() && retrain.is_none() {
        return Ok(None);
    }
    let lake = open_lake(env)?;
    let opts = ScheduleOptions {
        cron,
        watch,
        raw_dirs: shoplake_core::sources::Source::ALL
            .iter()
            .map(|s| lake.raw_dir(*s))
            .collect(),
        state_dir: lake.state_dir(),
        resume: true,
    };
    let maintain_opts = ScheduleOptions {
        cron: maintenance,
        watch: None,
        resume: false,
        ..opts.clone()
    };
    let ml_opts = ScheduleOptions {
        cron: retrain,
        watch: None,
        resume: false,
        ..opts.clone()
    };
    let ml = std::sync::Arc::new(MlRunner {
        lake: lake.clone(),
        config: env.config.clone(),
    });
    let maintain = std::sync::Arc::new(MaintainRunner {
        lake: lake.clone(),
        config: env.config.clone(),
    });
    let runner = std::sync::Arc::new(LakeRunner {
        lake,
        config: env.config.clone(),
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("shoplake-pipeline")
        .thread_stack_size(8 << 20)
        .enable_all()
        .build()?;
    let progress =
        std::sync::Arc::new(tokio::sync::watch::channel(schedule::Progress::default()).0);
    let handle = std::thread::Builder::new()
        .name("shoplake-scheduler".into())
        .spawn(move || {
            let clock = std::sync::Arc::new(SystemClock);
            let upkeep =
                std::sync::Arc::new(tokio::sync::watch::channel(schedule::Progress::default()).0);
            rt.block_on(async {
                let mut tasks = Vec::new();
                if opts.cron.is_some() || opts.watch.is_some() {
                    tasks.push(tokio::spawn(schedule::run_schedule(
                        opts,
                        clock.clone(),
                        runner,
                        stop.clone(),
                        progress,
                    )));
                }
                if ml_opts.cron.is_some() {
                    let retrained = std::sync::Arc::new(
                        tokio::sync::watch::channel(schedule::Progress::default()).0,
                    );
                    tasks.push(tokio::spawn(schedule::run_schedule(
                        ml_opts,
                        clock.clone(),
                        ml,
                        stop.clone(),
                        retrained,
                    )));
                }
                if maintain_opts.cron.is_some() {
                    tasks.push(tokio::spawn(schedule::run_schedule(
                        maintain_opts,
                        clock,
                        maintain,
                        stop,
                        upkeep,
                    )));
                }
                for t in tasks {
                    let _ = t.await;
                }
            })
        })?;
    Ok(Some(handle))
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let int = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = int => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = int.await;
    }
    tracing::info!("shutdown requested");
}

fn keys_cmd(env: &Env, k: KeysCommand) -> Result<ExitCode> {
    use shoplake_server::keys::KeyFile;
    std::fs::create_dir_all(env.data.join("state"))
        .with_context(|| format!("creating {}", env.data.display()))?;
    let mut file = KeyFile::read(&env.data)?;
    match k {
        KeysCommand::Create {
            name,
            origins,
            rate_limit,
        } => {
            if !(rate_limit >= 0.0 && rate_limit.is_finite()) {
                bail!("--rate-limit must be a number ≥ 0");
            }
            let key = file.create(&name, origins, rate_limit)?;
            file.write(&env.data)?;
            out(format!("{key}\n").as_bytes())?;
            say(
                env,
                &format!(
                    "created a write key for source {name:?}; it is shown only now (stored as a hash). \
                     Use it as the Segment writeKey, PostHog api_key or GA4 api_secret."
                ),
            );
        }
        KeysCommand::List { format } => {
            let rows: Vec<Vec<String>> = file.keys.iter().map(|k| k.listing_row()).collect();
            let batch = strings_batch(
                &[
                    "source",
                    "key",
                    "created_at",
                    "revoked_at",
                    "origins",
                    "rate_limit",
                ],
                &rows,
            )?;
            print_batches(&[batch], format)?;
        }
        KeysCommand::Revoke { name } => {
            let n = file.revoke(&name);
            if n == 0 {
                bail!(
                    "no live key of a source or with a prefix {name:?} (see `shoplake keys list`)"
                );
            }
            file.write(&env.data)?;
            say(env, &format!("revoked {n} key(s) of {name:?}"));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn role(r: RoleArg) -> Role {
    match r {
        RoleArg::Viewer => Role::Viewer,
        RoleArg::Analyst => Role::Analyst,
        RoleArg::Admin => Role::Admin,
        RoleArg::Orders => Role::Orders,
        RoleArg::Metrics => Role::Metrics,
    }
}

/// The password from the flags, standard input, or a prompt (twice).
fn read_password(p: &PasswordArgs, name: &str) -> Result<String> {
    if let Some(pw) = &p.password {
        return Ok(pw.clone());
    }
    if p.password_stdin {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_string());
    }
    if !std::io::stdin().is_terminal() {
        bail!("no terminal to ask for the password: pass --password-stdin (or --password)");
    }
    let first = rpassword::prompt_password(format!("password for {name}: "))?;
    let again = rpassword::prompt_password("again: ")?;
    if first != again {
        bail!("the two passwords differ");
    }
    Ok(first)
}

fn users_cmd(env: &Env, u: UsersCommand) -> Result<ExitCode> {
    let store = open_store(env)?;
    match u {
        UsersCommand::Add {
            name,
            role: r,
            password,
        } => {
            if name.trim().is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
                bail!("a user name needs at least one character and no spaces");
            }
            let hash = shoplake_server::auth::hash_password(&read_password(&password, &name)?)?;
            store.add_user(&name, role(r), &hash)?;
            say(env, &format!("added {name} ({})", role(r)));
        }
        UsersCommand::List { format } => {
            let rows: Vec<Vec<String>> = store
                .users()?
                .into_iter()
                .map(|u| vec![u.name, u.role.to_string(), u.created_at, u.changed_at])
                .collect();
            let batch = strings_batch(
                &["name", "role", "created_at", "password_changed_at"],
                &rows,
            )?;
            print_batches(&[batch], format)?;
        }
        UsersCommand::Remove { name } => {
            if !store.remove_user(&name)? {
                bail!("no user {name:?} (see `shoplake users list`)");
            }
            say(env, &format!("removed {name}; their sessions ended"));
        }
        UsersCommand::Passwd {
            name,
            role: r,
            password,
        } => {
            if store.user(&name)?.is_none() {
                bail!("no user {name:?} (see `shoplake users list`)");
            }
            let hash = if r.is_some() && password.password.is_none() && !password.password_stdin {
                None // a role change alone
            } else {
                Some(shoplake_server::auth::hash_password(&read_password(
                    &password, &name,
                )?)?)
            };
            store.update_user(&name, hash.as_deref(), r.map(role))?;
            say(env, &format!("updated {name}; their sessions ended"));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn tokens_cmd(env: &Env, t: TokensCommand) -> Result<ExitCode> {
    let store = open_store(env)?;
    match t {
        TokensCommand::Create {
            name,
            role: r,
            expires_days,
        } => {
            let expires = expires_days.map(|d| {
                (chrono::Utc::now() + chrono::Duration::days(i64::from(d)))
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            });
            let (token, id) =
                shoplake_server::auth::create_token(&store, &name, role(r), expires.as_deref())?;
            out(format!("{token}\n").as_bytes())?;
            say(
                env,
                &format!(
                    "created API token {id} {name:?} ({}); it is shown only now (stored as a hash). \
                     Send it as `Authorization: Bearer <token>`.",
                    role(r)
                ),
            );
        }
        TokensCommand::List { format } => {
            let rows: Vec<Vec<String>> = store
                .tokens()?
                .into_iter()
                .map(|t| {
                    vec![
                        t.id.to_string(),
                        t.name,
                        t.role.to_string(),
                        format!("{}…", t.prefix),
                        t.created_at,
                        t.expires_at.unwrap_or_default(),
                        t.revoked_at.unwrap_or_default(),
                        t.last_used_at.unwrap_or_default(),
                    ]
                })
                .collect();
            let batch = strings_batch(
                &[
                    "id",
                    "name",
                    "role",
                    "token",
                    "created_at",
                    "expires_at",
                    "revoked_at",
                    "last_used_at",
                ],
                &rows,
            )?;
            print_batches(&[batch], format)?;
        }
        TokensCommand::Revoke { name } => {
            let n = store.revoke_token(&name)?;
            if n == 0 {
                bail!("no live token named {name:?} or with that id (see `shoplake tokens list`)");
            }
            say(env, &format!("revoked {n} token(s) {name:?}"));
        }
    }
    Ok(ExitCode::SUCCESS)
}
