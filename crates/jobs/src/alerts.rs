//! Alerts: pipeline failures, failed quality checks, stale data, anomalies
//! and schema drift, sent to the log and to configured webhooks.
//!
//! An alert is about a *condition*, named by a key
//! (`quality:processed.transactions:unique(transaction_id)`). It is sent once
//! when the condition appears; while it holds, later sightings are only
//! counted ([`crate::store::Store::repeat_alert`]); when it clears, a
//! "resolved" message is sent and the next occurrence alerts again. Every
//! alert, and how its delivery went, is recorded in the operational store.

use std::time::Duration;

use serde::Serialize;
use shoplake_core::config::{AlertsConfig, Severity, WebhookFormat};

use crate::error::Result;
use crate::store::Store;

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A pipeline run failed.
    PipelineFailure,
    /// A data-quality check failed.
    Quality,
    /// Data is older than allowed.
    Freshness,
    /// A daily metric is far off its recent history.
    Anomaly,
    /// A table's columns changed.
    SchemaDrift,
}

impl Kind {
    /// The snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::PipelineFailure => "pipeline_failure",
            Kind::Quality => "quality",
            Kind::Freshness => "freshness",
            Kind::Anomaly => "anomaly",
            Kind::SchemaDrift => "schema_drift",
        }
    }
}

/// One alert to raise.
#[derive(Debug, Clone)]
pub struct Alert {
    /// The condition's key: one open alert per key.
    pub key: String,
    /// What it is about.
    pub kind: Kind,
    /// warn or error.
    pub severity: Severity,
    /// One or two sentences an operator can act on.
    pub message: String,
    /// The run that found it.
    pub run_id: Option<String>,
}

/// The body a `json` webhook receives.
#[derive(Debug, Serialize)]
struct JsonBody<'a> {
    source: &'static str,
    /// `firing` or `resolved`.
    state: &'a str,
    key: &'a str,
    kind: &'a str,
    severity: &'a str,
    message: &'a str,
    run_id: Option<&'a str>,
    at: String,
}

/// Sends alerts to the log and the configured webhooks, de-duplicated
/// through the store.
#[derive(Debug, Clone)]
pub struct Alerter {
    store: Store,
    cfg: AlertsConfig,
    http: reqwest::Client,
}

impl Alerter {
    /// An alerter for `cfg`, recording in `store`.
    pub fn new(store: Store, cfg: &AlertsConfig) -> Alerter {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .user_agent(concat!("shoplake/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Alerter {
            store,
            cfg: cfg.clone(),
            http,
        }
    }

    /// The store alerts are recorded in.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Raises `a`: sent if its condition was not already open, counted if
    /// it was. Returns whether it was sent.
    pub async fn raise(&self, a: &Alert) -> Result<bool> {
        if let Some(open) = self.store.open_alert(&a.key)? {
            self.store.repeat_alert(open.id, &a.message)?;
            tracing::debug!(key = %a.key, repeats = open.repeats + 1, "alert still open; not sent again");
            return Ok(false);
        }
        let id = self.store.insert_alert(
            &a.key,
            a.kind.name(),
            a.severity.name(),
            &a.message,
            a.run_id.as_deref(),
        )?;
        match a.severity {
            Severity::Error => {
                tracing::error!(alert = %a.key, kind = a.kind.name(), "ALERT: {}", a.message)
            }
            Severity::Warn => {
                tracing::warn!(alert = %a.key, kind = a.kind.name(), "ALERT: {}", a.message)
            }
        }
        let delivery = self
            .deliver(
                "firing",
                &a.key,
                a.kind.name(),
                a.severity,
                &a.message,
                a.run_id.as_deref(),
            )
            .await;
        self.store.set_delivery(id, &delivery)?;
        Ok(true)
    }

    /// Clears the condition `key`; sends "resolved" if it was open.
    /// Returns whether it was.
    pub async fn clear(&self, key: &str) -> Result<bool> {
        let Some(open) = self.store.clear_alert(key)? else {
            return Ok(false);
        };
        tracing::info!(alert = %key, "resolved: {}", open.message);
        let severity = if open.severity == "error" {
            Severity::Error
        } else {
            Severity::Warn
        };
        let message = format!("resolved: {}", open.message);
        self.deliver("resolved", key, &open.kind, severity, &message, None)
            .await;
        Ok(true)
    }

    /// Clears every open alert whose key starts with `prefix` and is not in
    /// `still`: the conditions a complete check found gone.
    pub async fn clear_others(&self, prefix: &str, still: &[String]) -> Result<usize> {
        let mut n = 0;
        for open in self.store.open_alerts(prefix)? {
            if !still.contains(&open.key) && self.clear(&open.key).await? {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Posts to every webhook that takes `severity`; returns a line per
    /// webhook saying how it went (never fails: an unreachable webhook must
    /// not fail the run that found the problem).
    async fn deliver(
        &self,
        state: &str,
        key: &str,
        kind: &str,
        severity: Severity,
        message: &str,
        run_id: Option<&str>,
    ) -> String {
        let mut out = vec!["log: ok".to_string()];
        for w in self
            .cfg
            .webhooks
            .iter()
            .filter(|w| severity >= w.min_severity)
        {
            let body = match w.format {
                WebhookFormat::Json => serde_json::to_vec(&JsonBody {
                    source: "shoplake",
                    state,
                    key,
                    kind,
                    severity: severity.name(),
                    message,
                    run_id,
                    at: crate::store::now_rfc3339(),
                }),
                WebhookFormat::Slack => {
                    let icon = match (state, severity) {
                        ("resolved", _) => ":white_check_mark:",
                        (_, Severity::Error) => ":rotating_light:",
                        (_, Severity::Warn) => ":warning:",
                    };
                    serde_json::to_vec(&serde_json::json!({
                        "text": format!("{icon} *shoplake {kind}* ({}): {message}", severity.name()),
                    }))
                }
            }
            .expect("serialisable");
            let host = w
                .url
                .split('/')
                .nth(2)
                .unwrap_or(w.url.as_str())
                .to_string();
            let sent = self
                .http
                .post(&w.url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await;
            let line = match sent {
                Ok(r) if r.status().is_success() => format!("{host}: {}", r.status().as_u16()),
                Ok(r) => {
                    tracing::warn!(webhook = %host, status = r.status().as_u16(), "alert webhook refused the alert");
                    format!("{host}: HTTP {}", r.status().as_u16())
                }
                Err(e) => {
                    tracing::warn!(webhook = %host, error = %e, "alert webhook unreachable");
                    format!("{host}: {e}")
                }
            };
            out.push(line);
        }
        out.join("; ")
    }
}
