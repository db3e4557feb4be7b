//! Saved reports: the business questions, each a `.sql` file under
//! `sql/reports/` (built into the binary) or in `query.reports_dir`.
//!
//! A report file starts with a header of `-- key: value` comments:
//!
//! ```sql
//! -- name: top_products
//! -- title: Top-selling products
//! -- description: Products ranked by net revenue ...
//! -- params: from, to, limit=20
//! SELECT ... WHERE date BETWEEN DATE '{{from}}' AND DATE '{{to}}' LIMIT {{limit}}
//! ```
//!
//! Parameters are typed by name and checked before they are substituted, so
//! no value reaches the SQL unvalidated: `from`/`to` are dates (default: all
//! data), `grain` is one of day, week, month, quarter, year, and anything else
//! is a non-negative integer.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{QueryError, Result};

/// One saved report.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Name (`top_products`).
    pub name: String,
    /// Title for people.
    pub title: String,
    /// What it answers.
    pub description: String,
    /// Parameters with their defaults (`None` for from/to: all data).
    pub params: Vec<(String, Option<String>)>,
    /// The SQL with `{{param}}` placeholders.
    pub sql: String,
    /// Where it came from: `built-in` or a file path.
    pub origin: String,
}

macro_rules! builtin {
    ($($name:literal),* $(,)?) => {
        /// The built-in report files: (name, text).
        pub const BUILTIN: &[(&str, &str)] = &[
            $(($name, include_str!(concat!("../../../sql/reports/", $name, ".sql")))),*
        ];
    };
}

builtin!(
    "daily_kpis",
    "revenue_trends",
    "top_products",
    "revenue_by_category",
    "conversion_funnel",
    "customer_ltv",
    "top_customers",
    "customer_segments",
    "return_rate",
    "product_affinity",
    "traffic_sources",
    "order_reconciliation",
);

impl Report {
    /// Parses a report file.
    pub fn parse(text: &str, origin: &str) -> Result<Report> {
        let mut meta = BTreeMap::new();
        for line in text.lines() {
            let Some(rest) = line.trim().strip_prefix("--") else {
                break;
            };
            if let Some((k, v)) = rest.split_once(':') {
                meta.insert(k.trim().to_string(), v.trim().to_string());
            }
        }
        let get = |k: &str| {
            meta.get(k)
                .cloned()
                .ok_or_else(|| QueryError::Report(format!("{origin}: the header lacks `-- {k}:`")))
        };
        let name = get("name")?;
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(QueryError::Report(format!(
                "{origin}: report name {name:?} must be lower_snake_case"
            )));
        }
        let params = get("params")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((k, v)) => (k.trim().to_string(), Some(v.trim().to_string())),
                None => (p.to_string(), None),
            })
            .collect::<Vec<_>>();
        let report = Report {
            title: meta.get("title").cloned().unwrap_or_else(|| name.clone()),
            description: meta.get("description").cloned().unwrap_or_default(),
            name,
            params,
            sql: text.to_string(),
            origin: origin.to_string(),
        };
        // every placeholder must be a declared parameter
        for ph in placeholders(&report.sql) {
            if !report.params.iter().any(|(p, _)| *p == ph) {
                return Err(QueryError::Report(format!(
                    "{origin}: placeholder {{{{{ph}}}}} is not declared in `-- params:`"
                )));
            }
        }
        for (p, default) in &report.params {
            if let Some(d) = default {
                check_param(p, d)
                    .map_err(|e| QueryError::Report(format!("{origin}: default of {p}: {e}")))?;
            }
        }
        Ok(report)
    }

    /// The SQL with parameters substituted: `given` values win over defaults;
    /// an unknown or invalid parameter is an error naming the valid ones.
    pub fn render(&self, given: &BTreeMap<String, String>) -> Result<String> {
        for k in given.keys() {
            if !self.params.iter().any(|(p, _)| p == k) {
                let names: Vec<&str> = self.params.iter().map(|(p, _)| p.as_str()).collect();
                return Err(QueryError::Report(format!(
                    "report {} has no parameter {k:?} (it takes: {})",
                    self.name,
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                )));
            }
        }
        let mut sql = self.sql.clone();
        for (p, default) in &self.params {
            let value = match (given.get(p), default, p.as_str()) {
                (Some(v), _, _) => v.clone(),
                (None, Some(d), _) => d.clone(),
                (None, None, "from") => "0001-01-01".to_string(),
                (None, None, "to") => "9999-12-31".to_string(),
                (None, None, _) => {
                    return Err(QueryError::Report(format!(
                        "report {} needs parameter {p}",
                        self.name
                    )));
                }
            };
            check_param(p, &value).map_err(|e| QueryError::Report(format!("{p}: {e}")))?;
            sql = sql.replace(&format!("{{{{{p}}}}}"), &value);
        }
        if let (Some(f), Some(t)) = (given.get("from"), given.get("to"))
            && f > t
        {
            return Err(QueryError::Report(format!("from {f} is after to {t}")));
        }
        Ok(sql)
    }
}

fn placeholders(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = sql;
    while let Some(i) = rest.find("{{") {
        let after = &rest[i + 2..];
        match after.find("}}") {
            Some(j) => {
                out.push(after[..j].trim().to_string());
                rest = &after[j + 2..];
            }
            None => break,
        }
    }
    out
}

fn check_param(name: &str, value: &str) -> std::result::Result<(), String> {
    match name {
        "from" | "to" => {
            if value.len() != 10 || shoplake_core::time::parse_date(value).is_err() {
                return Err(format!("{value:?} is not a date (YYYY-MM-DD)"));
            }
        }
        "grain" => {
            if !["day", "week", "month", "quarter", "year"].contains(&value) {
                return Err(format!(
                    "{value:?} is not one of day, week, month, quarter, year"
                ));
            }
        }
        _ => {
            value
                .parse::<u32>()
                .map_err(|_| format!("{value:?} is not a non-negative integer"))?;
        }
    }
    Ok(())
}

/// Every report: the built-in ones, then those in `dir` (a file with a
/// built-in's name replaces it). Sorted by name.
pub fn all(dir: Option<&Path>) -> Result<Vec<Report>> {
    let mut by_name = BTreeMap::new();
    for (name, text) in BUILTIN {
        let r = Report::parse(text, "built-in")?;
        debug_assert_eq!(&r.name, name);
        by_name.insert(r.name.clone(), r);
    }
    if let Some(dir) = dir {
        let entries = std::fs::read_dir(dir)
            .map_err(|e| QueryError::Report(format!("query.reports_dir {}: {e}", dir.display())))?;
        let mut paths: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "sql"))
            .collect();
        paths.sort();
        for p in paths {
            let text = std::fs::read_to_string(&p)
                .map_err(|e| QueryError::Report(format!("{}: {e}", p.display())))?;
            let r = Report::parse(&text, &p.display().to_string())?;
            by_name.insert(r.name.clone(), r);
        }
    }
    Ok(by_name.into_values().collect())
}

/// Finds a report by name; the error lists the available ones.
pub fn find(dir: Option<&Path>, name: &str) -> Result<Report> {
    let all = all(dir)?;
    let names: Vec<String> = all.iter().map(|r| r.name.clone()).collect();
    all.into_iter().find(|r| r.name == name).ok_or_else(|| {
        QueryError::Report(format!(
            "no report named {name:?}; available: {}",
            names.join(", ")
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_in_sql_reports_is_built_in_and_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sql/reports");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                e.unwrap()
                    .path()
                    .file_stem()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        files.sort();
        let mut builtin: Vec<String> = BUILTIN.iter().map(|(n, _)| n.to_string()).collect();
        builtin.sort();
        assert_eq!(files, builtin);
        for (name, text) in BUILTIN {
            let r = Report::parse(text, name).unwrap();
            assert_eq!(&r.name, name);
            assert!(!r.description.is_empty(), "{name}");
            r.render(&BTreeMap::new()).unwrap();
        }
    }

    #[test]
    fn parameters_are_validated_before_substitution() {
        let r = find(None, "revenue_trends").unwrap();
        let mut p = BTreeMap::new();
        p.insert("grain".to_string(), "month".to_string());
        p.insert("from".to_string(), "2025-01-01".to_string());
        let sql = r.render(&p).unwrap();
        assert!(sql.contains("date_trunc('month'"));
        assert!(sql.contains("DATE '2025-01-01'"));
        assert!(sql.contains("DATE '9999-12-31'"));
        p.insert("grain".to_string(), "week'); DROP TABLE x; --".to_string());
        assert!(r.render(&p).unwrap_err().to_string().contains("not one of"));
        let mut p = BTreeMap::new();
        p.insert("limit".to_string(), "5".to_string());
        assert!(
            r.render(&p)
                .unwrap_err()
                .to_string()
                .contains("it takes: from, to, grain")
        );
        assert!(
            find(None, "nope")
                .unwrap_err()
                .to_string()
                .contains("available: conversion_funnel")
        );
    }

    #[test]
    fn undeclared_placeholders_are_rejected() {
        let e = Report::parse("-- name: x\n-- params: from\nSELECT {{to}}", "t").unwrap_err();
        assert!(e.to_string().contains("{{to}} is not declared"), "{e}");
    }
}
