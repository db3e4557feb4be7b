//! SVG charts drawn on the server: a line (with optional bars behind it),
//! horizontal bars, a funnel and a heatmap. Every mark carries a `<title>`,
//! the value a pointer's hover shows; colours come from CSS variables, so
//! dark mode restyles them; the `viewBox` scales to any width.

use std::fmt::Write as _;

use super::html::esc;

/// One series of a line chart: (label on the x axis, value).
pub struct Series<'a> {
    /// Legend name.
    pub name: &'a str,
    /// Points in x order.
    pub points: &'a [(String, f64)],
    /// Formats a value for labels and hover.
    pub fmt: &'a dyn Fn(f64) -> String,
}

const W: f64 = 720.0;
const H: f64 = 240.0;
const PAD_L: f64 = 64.0;
const PAD_R: f64 = 56.0;
const PAD_T: f64 = 16.0;
const PAD_B: f64 = 28.0;

/// A nice upper bound for an axis: 1, 2, 2.5 or 5 × a power of ten.
fn nice_max(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if v <= m * p {
            return m * p;
        }
    }
    10.0 * p
}

/// A line chart of `line` over bars of `bars` (same x labels; their own
/// axis on the right), or just the line.
pub fn line_bars(title: &str, line: &Series<'_>, bars: Option<&Series<'_>>) -> String {
    let n = line.points.len();
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<figure class="chart"><figcaption>{}</figcaption><svg viewBox="0 0 {W} {H}" role="img" aria-label="{}">"#,
        esc(title),
        esc(title)
    );
    if n == 0 {
        s.push_str(r#"<text x="360" y="120" text-anchor="middle" class="muted">no data in this range</text></svg></figure>"#);
        return s;
    }
    let pw = W - PAD_L - PAD_R;
    let ph = H - PAD_T - PAD_B;
    let step = pw / n as f64;
    let x = |i: usize| PAD_L + step * (i as f64 + 0.5);
    let lmax = nice_max(line.points.iter().map(|p| p.1).fold(0.0, f64::max));
    let y = |v: f64, max: f64| PAD_T + ph - (v / max) * ph;
    // grid and left axis
    for k in 0..=4 {
        let v = lmax * k as f64 / 4.0;
        let yy = y(v, lmax);
        let _ = write!(
            s,
            r#"<line class="grid" x1="{PAD_L}" x2="{}" y1="{yy:.1}" y2="{yy:.1}"/><text class="axis" x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
            W - PAD_R,
            PAD_L - 6.0,
            yy + 4.0,
            esc(&(line.fmt)(v))
        );
    }
    if let Some(b) = bars {
        let bmax = nice_max(b.points.iter().map(|p| p.1).fold(0.0, f64::max));
        let _ = write!(
            s,
            r#"<text class="axis" x="{}" y="{}" text-anchor="start">{}</text>"#,
            W - PAD_R + 6.0,
            PAD_T + 4.0,
            esc(&(b.fmt)(bmax))
        );
        for (i, (label, v)) in b.points.iter().enumerate() {
            let top = y(*v, bmax);
            let _ = write!(
                s,
                r#"<rect class="bar" x="{:.1}" y="{top:.1}" width="{:.1}" height="{:.1}"><title>{}: {} {}</title></rect>"#,
                x(i) - step * 0.35,
                step * 0.7,
                (PAD_T + ph - top).max(0.0),
                esc(label),
                esc(&(b.fmt)(*v)),
                esc(b.name)
            );
        }
    }
    let mut d = String::new();
    for (i, (_, v)) in line.points.iter().enumerate() {
        let _ = write!(
            d,
            "{}{:.1},{:.1}",
            if i == 0 { "M" } else { " L" },
            x(i),
            y(*v, lmax)
        );
    }
    let _ = write!(s, r#"<path class="line" d="{d}"/>"#);
    for (i, (label, v)) in line.points.iter().enumerate() {
        let _ = write!(
            s,
            r#"<circle class="dot" cx="{:.1}" cy="{:.1}" r="{}"><title>{}: {} {}</title></circle>"#,
            x(i),
            y(*v, lmax),
            if n > 60 { 2 } else { 3 },
            esc(label),
            esc(&(line.fmt)(*v)),
            esc(line.name)
        );
    }
    // x labels: about 8
    let every = n.div_ceil(8).max(1);
    for (i, (label, _)) in line.points.iter().enumerate().step_by(every) {
        let _ = write!(
            s,
            r#"<text class="axis" x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
            x(i),
            H - 8.0,
            esc(label)
        );
    }
    let _ = write!(
        s,
        r#"</svg><div class="legend"><span class="key line-key"></span>{}{}</div></figure>"#,
        esc(line.name),
        bars.map_or(String::new(), |b| format!(
            r#" <span class="key bar-key"></span>{}"#,
            esc(b.name)
        ))
    );
    s
}

/// Horizontal bars: (label, value, value as text).
pub fn hbars(title: &str, rows: &[(String, f64, String)]) -> String {
    let row_h = 26.0;
    let h = (rows.len() as f64 * row_h).max(row_h) + 8.0;
    let label_w = 190.0;
    let max = rows
        .iter()
        .map(|r| r.1)
        .fold(0.0, f64::max)
        .max(f64::MIN_POSITIVE);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<figure class="chart"><figcaption>{}</figcaption><svg viewBox="0 0 {W} {h}" role="img" aria-label="{}">"#,
        esc(title),
        esc(title)
    );
    if rows.is_empty() {
        s.push_str(r#"<text x="360" y="20" text-anchor="middle" class="muted">no data in this range</text>"#);
    }
    for (i, (label, v, text)) in rows.iter().enumerate() {
        let y = 4.0 + i as f64 * row_h;
        let w = (W - label_w - 110.0) * (v / max).max(0.0);
        let short: String = label.chars().take(28).collect();
        let _ = write!(
            s,
            r#"<text class="axis" x="{}" y="{:.1}" text-anchor="end">{}</text><rect class="bar" x="{label_w}" y="{y:.1}" width="{w:.1}" height="{:.1}"><title>{}: {}</title></rect><text class="value" x="{:.1}" y="{:.1}">{}</text>"#,
            label_w - 8.0,
            y + row_h * 0.62,
            esc(&short),
            row_h * 0.7,
            esc(label),
            esc(text),
            label_w + w + 6.0,
            y + row_h * 0.62,
            esc(text)
        );
    }
    s.push_str("</svg></figure>");
    s
}

/// A funnel: (step, count); each step's bar is centred, with its
/// conversion from the step before and the drop-off.
pub fn funnel(title: &str, steps: &[(&str, f64)]) -> String {
    let row_h = 44.0;
    let h = steps.len() as f64 * row_h + 8.0;
    let top = steps.first().map_or(0.0, |s| s.1).max(f64::MIN_POSITIVE);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<figure class="chart"><figcaption>{}</figcaption><svg viewBox="0 0 {W} {h}" role="img" aria-label="{}">"#,
        esc(title),
        esc(title)
    );
    let full = W - 300.0;
    for (i, (name, v)) in steps.iter().enumerate() {
        let w = full * (v / top).max(0.0);
        let x = 150.0 + (full - w) / 2.0;
        let y = 4.0 + i as f64 * row_h;
        let conv = if i == 0 {
            "100%".to_string()
        } else {
            let prev = steps[i - 1].1;
            if prev > 0.0 {
                format!("{:.1}% of previous", 100.0 * v / prev)
            } else {
                "–".into()
            }
        };
        let drop = if i == 0 {
            String::new()
        } else {
            format!(", {} dropped", fmt_count(steps[i - 1].1 - v))
        };
        let _ = write!(
            s,
            r#"<text class="axis" x="140" y="{:.1}" text-anchor="end">{}</text><rect class="bar funnel-{i}" x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{:.1}" rx="3"><title>{}: {} sessions ({conv}{drop})</title></rect><text class="value" x="{:.1}" y="{:.1}">{} · {conv}</text>"#,
            y + row_h * 0.5,
            esc(name),
            row_h * 0.72,
            esc(name),
            fmt_count(*v),
            150.0 + full + 8.0,
            y + row_h * 0.5,
            fmt_count(*v)
        );
    }
    s.push_str("</svg></figure>");
    s
}

/// A heatmap: row labels, column labels and cells (None: empty), each
/// shaded by its value in 0..=1 and showing `text`.
pub fn heatmap(
    title: &str,
    rows: &[String],
    cols: &[String],
    cells: &[Vec<Option<(f64, String)>>],
) -> String {
    let cw = 46.0;
    let rh = 24.0;
    let lw = 130.0;
    let w = lw + cw * cols.len() as f64 + 8.0;
    let h = rh * (rows.len() as f64 + 1.0) + 8.0;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<figure class="chart"><figcaption>{}</figcaption><svg viewBox="0 0 {w:.0} {h:.0}" style="max-width:{:.0}px" role="img" aria-label="{}">"#,
        esc(title),
        w * 1.4,
        esc(title)
    );
    for (j, c) in cols.iter().enumerate() {
        let _ = write!(
            s,
            r#"<text class="axis" x="{:.1}" y="16" text-anchor="middle">{}</text>"#,
            lw + cw * (j as f64 + 0.5),
            esc(c)
        );
    }
    for (i, r) in rows.iter().enumerate() {
        let y = rh * (i as f64 + 1.0);
        let _ = write!(
            s,
            r#"<text class="axis" x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
            lw - 6.0,
            y + rh * 0.65,
            esc(r)
        );
        for (j, cell) in cells.get(i).into_iter().flatten().enumerate() {
            let Some((v, text)) = cell else { continue };
            let _ = write!(
                s,
                r#"<rect class="cell" x="{:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" style="fill-opacity:{:.2}"><title>{} · {}: {}</title></rect><text class="cell-text" x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                lw + cw * j as f64 + 1.0,
                cw - 2.0,
                rh - 2.0,
                0.08 + 0.92 * v.clamp(0.0, 1.0),
                esc(r),
                esc(&cols[j]),
                esc(text),
                lw + cw * (j as f64 + 0.5),
                y + rh * 0.65,
                esc(text)
            );
        }
    }
    s.push_str("</svg></figure>");
    s
}

/// 1234567 → "1,234,567".
pub fn fmt_count(v: f64) -> String {
    let n = v.round() as i64;
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// Money with two decimals and thousands separators.
pub fn fmt_money(v: f64) -> String {
    let cents = (v * 100.0).round() as i64;
    format!(
        "{}.{:02}",
        fmt_count((cents / 100) as f64),
        (cents % 100).unsigned_abs()
    )
}

/// Axis money: 12.5k, 1.2M.
pub fn fmt_short(v: f64) -> String {
    match v.abs() {
        a if a >= 1e6 => format!("{:.1}M", v / 1e6),
        a if a >= 1e4 => format!("{:.0}k", v / 1e3),
        a if a >= 1e3 => format!("{:.1}k", v / 1e3),
        _ => format!("{v:.0}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_like_numbers() {
        assert_eq!(fmt_count(1234567.0), "1,234,567");
        assert_eq!(fmt_count(999.0), "999");
        assert_eq!(fmt_count(-1000.0), "-1,000");
        assert_eq!(fmt_money(1234.5), "1,234.50");
        assert_eq!(fmt_short(12_600.0), "13k");
        assert_eq!(nice_max(730.0), 1000.0);
        assert_eq!(nice_max(180.0), 200.0);
    }

    #[test]
    fn every_mark_has_a_hover_value_and_labels_are_escaped() {
        let pts = vec![("a<b".to_string(), 3.0), ("c".to_string(), 5.0)];
        let f = |v: f64| format!("{v:.0}");
        let svg = line_bars(
            "t",
            &Series {
                name: "revenue",
                points: &pts,
                fmt: &f,
            },
            Some(&Series {
                name: "orders",
                points: &pts,
                fmt: &f,
            }),
        );
        assert_eq!(svg.matches("<circle").count(), 2);
        assert_eq!(svg.matches("<rect class=\"bar\"").count(), 2);
        assert!(svg.contains("<title>a&lt;b: 3 revenue</title>"), "{svg}");
        assert!(!svg.contains("a<b"));
        let f = funnel("f", &[("views", 100.0), ("carts", 25.0)]);
        assert!(f.contains("25.0% of previous, 75 dropped"), "{f}");
    }
}
