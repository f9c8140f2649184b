//! The report's files: README.md, plots/*.svg|png, and report.html, one
//! self-contained page with the same sections and the plots inline.

use std::path::Path;

use anyhow::{Context, Result};

use crate::judge::report::{charts, Document, PLOTS};
use crate::judge::report_md::{agreement_notes, cells, document_markdown, extrapolation, provenance, upstream_comparison, COLUMNS, INTRO};

/// Write README.md, report.html and plots/*.svg|png into `doc.out`.
pub(crate) fn write(doc: &Document) -> Result<()> {
    let plots = doc.out.join(PLOTS);
    std::fs::create_dir_all(&plots).with_context(|| format!("creating {}", plots.display()))?;
    // The report's own subdirectory: a link planted there would send every plot elsewhere.
    if std::fs::symlink_metadata(&plots)?.file_type().is_symlink() {
        crate::atomic::check_target(&plots)?;
    }
    let charts = charts(doc.rows);
    let mut svgs = Vec::new();
    for (name, chart) in &charts {
        let svg = crate::judge::plot::svg(chart)?;
        let path = plots.join(format!("{name}.svg"));
        crate::atomic::write_bytes(&path, svg.as_bytes())?;
        crate::judge::plot::png(chart, &plots.join(format!("{name}.png")))?;
        svgs.push((name.clone(), chart.title.clone(), svg));
    }
    let md = document_markdown(doc, &charts);
    write_file(&doc.out.join("README.md"), &md)?;
    write_file(&doc.out.join("report.html"), &document_html(doc, &svgs))?;
    Ok(())
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    crate::atomic::write_bytes(path, text.as_bytes())
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// One page with everything inline: no scripts, fonts or images to fetch.
pub(crate) fn document_html(doc: &Document, svgs: &[(String, String, String)]) -> String {
    let mut h = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>repro report</title>\n<style>\n\
         body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}\n\
         table{border-collapse:collapse;font-size:13px;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}\n\
         th{background:#f3f3f3}tr.NO td{background:#fdd}pre{background:#f6f6f6;padding:.6em;overflow-x:auto}\n\
         figure{margin:1em 0}svg{max-width:100%;height:auto}\n</style></head><body>\n<h1>Recorded runs</h1>\n",
    );
    h.push_str(&format!(
        "<p>{}</p>\n<pre>{}</pre>\n<h2>Verdicts</h2>\n<table>\n<tr>",
        html_escape(INTRO),
        html_escape(&doc.all_commands().join("\n"))
    ));
    for c in COLUMNS {
        h.push_str(&format!("<th>{}</th>", html_escape(c)));
    }
    h.push_str("</tr>\n");
    for r in doc.rows {
        h.push_str(&format!("<tr class=\"{}\">", r.agreement().as_str()));
        for c in cells(r, doc.out) {
            h.push_str(&format!("<td>{}</td>", html_escape(&c)));
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n");
    let list = |text: &str| -> String {
        text.lines()
            .map(|l| match l.strip_prefix("- ") {
                Some(item) => format!("<li>{}</li>\n", html_escape(item)),
                None if l.is_empty() => String::new(),
                None => format!("<p>{}</p>\n", html_escape(l)),
            })
            .collect()
    };
    h.push_str(&format!("<ul>{}</ul>\n", list(&agreement_notes(doc.rows, doc.out))));
    let x = extrapolation(doc.rows);
    if !x.is_empty() {
        h.push_str(&format!("<h2>Extrapolation to 800,000 namespaces</h2>\n<ul>{}</ul>\n", list(&x)));
    }
    let up = upstream_comparison(doc.rows);
    if !up.is_empty() {
        h.push_str(&format!("<h2>sysctl-all beside the fix's own figures</h2>\n<ul>{}</ul>\n", list(&up)));
    }
    h.push_str("<h2>Plots</h2>\n");
    for (_, title, svg) in svgs {
        h.push_str(&format!("<figure aria-label=\"{}\">\n{svg}\n</figure>\n", html_escape(title)));
    }
    h.push_str("<h2>Provenance</h2>\n<table>\n");
    for (i, line) in provenance(doc.rows, doc.out).lines().enumerate() {
        if i == 1 {
            continue; // the markdown separator row
        }
        let tag = if i == 0 { "th" } else { "td" };
        let cells: Vec<&str> = line.trim_matches('|').split(" | ").collect();
        h.push_str("<tr>");
        for c in cells {
            h.push_str(&format!("<{tag}>{}</{tag}>", html_escape(c.trim())));
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n</body></html>\n");
    h
}
