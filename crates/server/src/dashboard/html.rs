//! The page frame: navigation, the date-range picker, tables and KPI
//! tiles. Plain HTML and one stylesheet, no script but the pages' own.

use std::fmt::Write as _;

use shoplake_jobs::accounts::Role;

use crate::auth::{Principal, Via};

/// HTML-escapes text for element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The pages, in navigation order: (path, title, role needed).
pub const PAGES: &[(&str, &str, Role)] = &[
    ("/", "Overview", Role::Viewer),
    ("/funnel", "Funnel", Role::Viewer),
    ("/products", "Products", Role::Viewer),
    ("/customers", "Customers", Role::Viewer),
    ("/traffic", "Traffic", Role::Viewer),
    ("/live", "Live", Role::Viewer),
    ("/pipeline", "Pipeline & quality", Role::Viewer),
    ("/sql", "SQL", Role::Analyst),
    ("/admin", "Admin", Role::Admin),
];

/// A chosen date range (inclusive), as YYYY-MM-DD.
#[derive(Debug, Clone)]
pub struct Range {
    /// First day.
    pub from: String,
    /// Last day.
    pub to: String,
    /// The newest day with data (presets end there).
    pub last: String,
}

const STYLE: &str = r#"
:root{color-scheme:light dark;--bg:#f7f7f5;--fg:#1d1d1f;--muted:#6b6b70;--card:#fff;--line:#e3e3e0;
--accent:#2f6fde;--accent2:#8fb3f0;--good:#1a7f37;--bad:#c0392b}
@media (prefers-color-scheme:dark){:root{--bg:#141416;--fg:#e8e8ea;--muted:#9a9aa2;--card:#1e1e22;--line:#33333a;
--accent:#6d9ef5;--accent2:#33507f;--good:#4cc36a;--bad:#ff6b5b}}
*{box-sizing:border-box}body{margin:0;font:15px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;background:var(--bg);color:var(--fg)}
header{display:flex;flex-wrap:wrap;gap:.4rem 1rem;align-items:center;padding:.6rem 1rem;background:var(--card);border-bottom:1px solid var(--line)}
header .brand{font-weight:700;margin-right:.5rem}nav{display:flex;flex-wrap:wrap;gap:.2rem}
nav a{padding:.3rem .6rem;border-radius:6px;color:var(--fg);text-decoration:none}nav a.on{background:var(--accent);color:#fff}
header .who{margin-left:auto;color:var(--muted);display:flex;gap:.5rem;align-items:center}
main{padding:1rem;max-width:1200px;margin:0 auto}h1{font-size:1.35rem;margin:.2rem 0 1rem}
form.range{display:flex;flex-wrap:wrap;gap:.4rem;align-items:end;margin-bottom:1rem}
form.range label{display:flex;flex-direction:column;font-size:.8rem;color:var(--muted)}
input,button,select,textarea{font:inherit;padding:.35rem .5rem;border:1px solid var(--line);border-radius:6px;background:var(--card);color:var(--fg)}
button{background:var(--accent);color:#fff;border:0;cursor:pointer}a{color:var(--accent)}
.presets a{margin-right:.5rem}
.tiles{display:grid;grid-template-columns:repeat(auto-fit,minmax(160px,1fr));gap:.7rem;margin-bottom:1rem}
.tile{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:.7rem .9rem}
.tile .k{font-size:.8rem;color:var(--muted)}.tile .v{font-size:1.5rem;font-weight:650}
.up{color:var(--good)}.down{color:var(--bad)}.muted{color:var(--muted);fill:var(--muted)}
.grid2{display:grid;grid-template-columns:repeat(auto-fit,minmax(340px,1fr));gap:1rem}
figure.chart{margin:0 0 1rem;background:var(--card);border:1px solid var(--line);border-radius:10px;padding:.6rem}
figure.chart figcaption{font-weight:600;margin-bottom:.3rem}svg{width:100%;height:auto;display:block}
.grid{stroke:var(--line)}.axis{font-size:11px;fill:var(--muted)}.value{font-size:11px;fill:var(--fg)}
.line{fill:none;stroke:var(--accent);stroke-width:2}.dot{fill:var(--accent)}.bar{fill:var(--accent2)}
.cell{fill:var(--accent)}.cell-text{font-size:10px;fill:var(--fg)}
.legend{font-size:.8rem;color:var(--muted)}.key{display:inline-block;width:.8rem;height:.8rem;margin:0 .3rem 0 .6rem;vertical-align:middle}
.line-key{background:var(--accent)}.bar-key{background:var(--accent2)}
.tablewrap{overflow-x:auto;background:var(--card);border:1px solid var(--line);border-radius:10px;margin-bottom:1rem}
table{border-collapse:collapse;width:100%;font-size:.9rem}th,td{padding:.35rem .6rem;border-bottom:1px solid var(--line);text-align:left;white-space:nowrap}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:var(--good)}.fail{color:var(--bad)}
textarea{width:100%;min-height:8rem;font-family:ui-monospace,monospace}
@media (max-width:600px){main{padding:.6rem}.tile .v{font-size:1.2rem}}
"#;

/// The whole page around `body`.
pub fn page(
    title: &str,
    active: &str,
    who: &Principal,
    range: Option<&Range>,
    body: &str,
) -> String {
    let mut nav = String::new();
    for (path, name, role) in PAGES {
        if who.role < *role {
            continue;
        }
        let _ = write!(
            nav,
            r#"<a href="{path}"{}>{}</a>"#,
            if *path == active {
                r#" class="on" aria-current="page""#
            } else {
                ""
            },
            esc(name)
        );
    }
    let logout = match &who.via {
        Via::Session { csrf, .. } => format!(
            r#"<form method="post" action="/logout"><input type="hidden" name="csrf" value="{}"><button type="submit">Log out</button></form>"#,
            esc(csrf)
        ),
        Via::Token => String::new(),
    };
    let picker = range.map_or(String::new(), |r| range_form(active, r));
    format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>{} · shoplake</title><style>{STYLE}</style></head><body><header><span class="brand">shoplake</span><nav>{nav}</nav><span class="who">{} ({}){logout}</span></header><main><h1>{}</h1>{picker}{body}</main></body></html>"#,
        esc(title),
        esc(&who.name),
        who.role,
        esc(title)
    )
}

fn range_form(path: &str, r: &Range) -> String {
    let last = shoplake_core::time::parse_date(&r.last).unwrap_or(0);
    let preset = |days: i32, name: &str| {
        format!(
            r#"<a href="{path}?from={}&amp;to={}">{name}</a>"#,
            shoplake_core::time::format_date(last - days + 1),
            r.last
        )
    };
    format!(
        r#"<form class="range" method="get" action="{path}"><label>From<input type="date" name="from" value="{}"></label><label>To<input type="date" name="to" value="{}"></label><button type="submit">Show</button><span class="presets">{}{}{}<a href="{path}?from=0001-01-01&amp;to={}">All</a></span></form>"#,
        esc(&r.from),
        esc(&r.to),
        preset(7, "7 days"),
        preset(30, "30 days"),
        preset(90, "90 days"),
        r.last
    )
}

/// A KPI tile: name, value, and the change against the previous period
/// (None: no previous data).
pub fn tile(name: &str, value: &str, change: Option<f64>) -> String {
    let change = match change {
        Some(c) if c.is_finite() => format!(
            r#"<div class="{}">{}{:.1}% vs previous period</div>"#,
            if c >= 0.0 { "up" } else { "down" },
            if c >= 0.0 { "▲ +" } else { "▼ " },
            c * 100.0
        ),
        _ => r#"<div class="muted">no previous period</div>"#.to_string(),
    };
    format!(
        r#"<div class="tile" data-kpi="{}"><div class="k">{}</div><div class="v">{}</div>{change}</div>"#,
        esc(name),
        esc(name),
        esc(value)
    )
}

/// A tile without a comparison (live figures).
pub fn stat(name: &str, value: &str) -> String {
    format!(
        r#"<div class="tile" data-kpi="{}"><div class="k">{}</div><div class="v">{}</div></div>"#,
        esc(name),
        esc(name),
        esc(value)
    )
}

/// A table: headers (a leading `#` marks a numeric column) and rows.
pub fn table(id: &str, headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut s = format!(
        r#"<div class="tablewrap"><table id="{}"><thead><tr>"#,
        esc(id)
    );
    let numeric: Vec<bool> = headers.iter().map(|h| h.starts_with('#')).collect();
    for h in headers {
        let (cls, name) = match h.strip_prefix('#') {
            Some(n) => (r#" class="n""#, n),
            None => ("", *h),
        };
        let _ = write!(s, "<th{cls}>{}</th>", esc(name));
    }
    s.push_str("</tr></thead><tbody>");
    if rows.is_empty() {
        let _ = write!(
            s,
            r#"<tr><td colspan="{}" class="muted">no rows</td></tr>"#,
            headers.len()
        );
    }
    for r in rows {
        s.push_str("<tr>");
        for (i, v) in r.iter().enumerate() {
            let cls = if numeric.get(i).copied().unwrap_or(false) {
                r#" class="n""#
            } else {
                ""
            };
            let _ = write!(s, "<td{cls}>{}</td>", esc(v));
        }
        s.push_str("</tr>");
    }
    s.push_str("</tbody></table></div>");
    s
}
