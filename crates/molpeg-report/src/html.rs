//! The page's HTML: escaping, tables, figures (inline SVG) and the one inline style sheet. No
//! scripts, no external resources, so the page renders the same from any disk, offline.

use std::fmt::Write;

/// Escapes text for HTML element content and attribute values.
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

/// A number for a table cell: 4 significant decimals, "–" for none.
pub fn num(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => {
            if v.abs() >= 1000.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.4}")
            }
        }
        _ => "–".into(),
    }
}

pub fn pct(v: Option<f64>) -> String {
    v.filter(|v| v.is_finite()).map_or("–".into(), |v| format!("{:.1}%", 100.0 * v))
}

/// A table; `rows` hold already-escaped HTML cells.
pub fn table(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = String::from("<div class=\"scroll\"><table><thead><tr>");
    for h in head {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr></thead><tbody>");
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            let _ = write!(out, "<td>{cell}</td>");
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></div>");
    out
}

pub fn note(text: &str) -> String {
    format!("<p class=\"note\">{}</p>", esc(text))
}

pub fn not_run(what: &str) -> String {
    format!("<p class=\"notrun\"><span class=\"chip off\">not run</span> {}</p>", esc(what))
}

/// A figure: the SVG inline (its XML prolog dropped) and links to the PNG/SVG files beside the page.
pub fn figure(id: &str, svg: &str, caption: &str, files_rel: &str) -> String {
    let start = svg.find("<svg").unwrap_or(0);
    format!(
        "<figure class=\"plot\" id=\"{id}\">{}<figcaption>{} <a href=\"{files}.png\">PNG</a> · <a href=\"{files}.svg\">SVG</a></figcaption></figure>",
        &svg[start..],
        esc(caption),
        id = esc(id),
        files = esc(files_rel)
    )
}

pub const STYLE: &str = r#"
body { font-family: system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; margin: 0; color: #1b1f24; background: #fafbfc; }
header { background: #24292f; color: #fff; padding: 18px 32px; }
header h1 { margin: 0 0 4px 0; font-size: 24px; }
header p { margin: 0; color: #c9d1d9; font-size: 14px; }
nav { padding: 8px 32px; background: #eaeef2; font-size: 14px; position: sticky; top: 0; z-index: 1; }
nav a { margin-right: 18px; color: #0550ae; text-decoration: none; }
main { padding: 8px 32px 40px 32px; max-width: 1500px; }
section { margin-top: 28px; }
h2 { border-bottom: 1px solid #d0d7de; padding-bottom: 4px; }
h3 { margin-bottom: 6px; }
table { border-collapse: collapse; font-size: 13px; background: #fff; }
th, td { border: 1px solid #d0d7de; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f3f5f7; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
.scroll { overflow-x: auto; }
figure.plot { display: inline-block; margin: 10px 16px 10px 0; background: #fff; border: 1px solid #d0d7de; padding: 6px; max-width: 100%; vertical-align: top; }
figure.plot svg { display: block; max-width: 100%; height: auto; }
figcaption { font-size: 13px; color: #57606a; margin-top: 4px; }
.chip { display: inline-block; border-radius: 10px; padding: 0 8px; font-size: 12px; color: #fff; background: #1a7f37; }
.chip.off { background: #8c959f; }
.chip.warn { background: #bf8700; }
.note { color: #57606a; font-size: 14px; }
.notrun { color: #57606a; }
pre { background: #f6f8fa; padding: 8px; font-size: 12px; overflow-x: auto; max-width: 1100px; }
details summary { cursor: pointer; color: #0550ae; }
code { font-size: 12px; }
"#;
