//! The report as Markdown: the comparison table, the extrapolation to the
//! write-up's chain, the upstream figures, agreement notes, provenance and
//! the whole README.md. The rows it renders are report.rs's.

use std::path::Path;

use crate::judge::extrapolate;
use crate::judge::plot::Chart;
use crate::judge::report::{Document, Missing, Row, PLOTS};
use crate::judge::verdict::{Agreement, Outcome};
use crate::kernel::catalog::Expect;

fn num(x: Option<f64>, decimals: usize) -> String {
    x.map_or("-".into(), |v| format!("{v:.decimals$}"))
}

fn expect_str(x: Option<Expect>) -> &'static str {
    x.map_or("-", Expect::as_str)
}

pub(crate) const COLUMNS: [&str; 13] = [
    "kernel",
    "release",
    "accel",
    "scenario",
    "iterations",
    "residual per namespace",
    "probe p50 first → last (us)",
    "slope (us per 1k)",
    "chain walked, settled",
    "verdict",
    "expected",
    "agrees",
    "run",
];

/// One row's cells, in [`COLUMNS`] order; shared by the markdown and HTML tables.
pub(crate) fn cells(r: &Row, base: &Path) -> [String; 13] {
    let s = &r.summary;
    let e = &r.verdict.evidence;
    [
        s.kernel.name.clone(),
        s.kernel.release.clone().unwrap_or_else(|| "?".into()),
        s.ran_on().to_string(),
        s.scenario.clone(),
        s.iterations_done.to_string(),
        num(e.residual_per_iteration, 2),
        format!("{} {} → {}", e.probe.as_deref().unwrap_or("probe"), num(e.p50_first_us, 1), num(e.p50_last_us, 1)),
        num(e.slope_us_per_1k, 1),
        s.settled.as_ref().and_then(|st| st.window.chain_walk).map_or("-".into(), |c| c.to_string()),
        r.verdict.outcome.as_str().to_string(),
        expect_str(r.expected).to_string(),
        r.agreement().as_str().to_string(),
        relative(&r.dir, base),
    ]
}

/// `dir` relative to `base` where it lies below it (both made absolute).
fn relative(dir: &Path, base: &Path) -> String {
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let (d, b) = (abs(dir), abs(base));
    d.strip_prefix(&b).unwrap_or(&d).display().to_string()
}

/// The comparison table, one row per run.
pub(crate) fn markdown(rows: &[Row], base: &Path) -> String {
    let mut out = format!("| {} |\n|{}\n", COLUMNS.join(" | "), "---|".repeat(COLUMNS.len()));
    for r in rows {
        out.push_str(&format!("| {} |\n", cells(r, base).iter().map(|c| md_cell(c)).collect::<Vec<_>>().join(" | ")));
    }
    out
}

/// For runs judged regressed: the probe's cost fitted against chain length
/// so that it can bend ([`extrapolate`]) and what that predicts at the
/// write-up's 799,259 entries, with an interval and the straight line
/// beside it; and, for runs long enough, the fit on their first 2,000
/// namespaces checked against what they measured at the end.
pub(crate) fn extrapolation(rows: &[Row]) -> String {
    let mut out = String::new();
    for r in rows.iter().filter(|r| r.verdict.outcome == Outcome::Regressed) {
        let Some(line) = extrapolate::line(&r.summary, r.verdict.evidence.slope_us_per_1k) else { continue };
        out.push_str(&format!("- {} on {} ({}): {line}\n", r.summary.kernel.name, r.summary.scenario, r.summary.ran_on()));
        if let Some(v) = extrapolate::validate(&r.summary, VALIDATION_FIT_UPTO) {
            out.push_str(&format!(
                "  - checked: fitted on its first {:.0} namespaces ({} windows, exponent {:.2}), it predicts {:.0} us at {:.0}{}; \
                 measured {:.0} us (median of the last three windows): error {:+.0}%; a straight line through the same range: {}\n",
                v.fit.x_max,
                v.fit.points,
                v.fit.c,
                v.predicted_us,
                v.at,
                v.interval_us.map_or(String::new(), |(lo, hi)| format!(" (5-95%: {lo:.0}-{hi:.0})")),
                v.measured_us,
                v.error * 100.0,
                v.straight_error.map_or("-".into(), |e| format!("{:+.0}%", e * 100.0)),
            ));
        }
        // A soak: what its first hour predicted, what the end measured, and the write-up.
        if let Some(v) = extrapolate::first_hour_chain(&r.summary).and_then(|x| extrapolate::validate(&r.summary, x)) {
            out.push_str(&format!(
                "  - at full length: measured {:.3} s per open at {:.0} entries ({:.3} us per entry); its first hour (up to {:.0} \
                 entries) predicted {:.3} s there: error {:+.0}%. Write-up: {:.3} s at {:.0} entries ({:.3} us per entry)\n",
                v.measured_us / 1e6,
                v.at,
                v.measured_us / v.at,
                v.fit.x_max,
                v.predicted_us / 1e6,
                v.error * 100.0,
                extrapolate::WRITEUP_OPEN_S,
                extrapolate::WRITEUP_CHAIN,
                extrapolate::WRITEUP_OPEN_S * 1e6 / extrapolate::WRITEUP_CHAIN,
            ));
        }
    }
    out
}

/// How much of a long run the validated fit sees.
pub(crate) const VALIDATION_FIT_UPTO: f64 = 2000.0;

/// The fix's own figures (d6cffbbe9a7e's message, reproducer
/// `for i in {1..100000}; do unshare -n -- sysctl -a; done`): dentry-state
/// after 100,000 iterations without and with the prune.
pub(crate) const UPSTREAM_ITERATIONS: f64 = 100_000.0;
pub(crate) const UPSTREAM_DENTRIES_WITHOUT: u64 = 25_812_579;
pub(crate) const UPSTREAM_DENTRIES_WITH: u64 = 92_712;

/// sysctl-all runs scaled to the upstream reproducer's 100,000 iterations,
/// beside the commit message's dentry-state figures.
pub(crate) fn upstream_comparison(rows: &[Row]) -> String {
    let mut out = String::new();
    for r in rows.iter().filter(|r| r.summary.scenario == "sysctl-all") {
        let (Some(res), Some(base)) = (&r.summary.residual, &r.summary.baseline) else { continue };
        let predicted = base.nr_dentry as f64 + res.per_iteration.max(0.0) * UPSTREAM_ITERATIONS;
        out.push_str(&format!(
            "- {} ({}): {:.1} dentries left per namespace over a baseline of {}: {:.0} in dentry-state at 100,000 iterations \
             (d6cffbbe9a7e's message: {} without the prune, {} with it)\n",
            r.summary.kernel.name,
            r.summary.ran_on(),
            res.per_iteration,
            base.nr_dentry,
            predicted,
            UPSTREAM_DENTRIES_WITHOUT,
            UPSTREAM_DENTRIES_WITH,
        ));
    }
    out
}

/// Where the report's verdicts and the catalog's expectations part, and why.
pub(crate) fn agreement_notes(rows: &[Row], base: &Path) -> String {
    let mut out = String::new();
    let mut agree = 0;
    for r in rows {
        match r.agreement() {
            Agreement::Agrees => agree += 1,
            Agreement::NoExpectation => out.push_str(&format!(
                "- {} on {}: neither the catalog nor the kernel's source gives an expectation for this scenario; measured {} ({})\n",
                r.summary.kernel.name,
                r.summary.scenario,
                r.verdict.outcome.as_str(),
                r.verdict.rule
            )),
            other => out.push_str(&format!(
                "- {} on {} ({}): expected {} (from {}), measured {}{}: {}{}\n",
                r.summary.kernel.name,
                r.summary.scenario,
                relative(&r.dir, base),
                expect_str(r.expected),
                r.expected_from.as_deref().unwrap_or("-"),
                r.verdict.outcome.as_str(),
                if other == Agreement::Contradicts { " (CONTRADICTION)" } else { "" },
                r.verdict.rule,
                r.known_issue.as_deref().map_or(String::new(), |k| format!(". Known issue (catalog): {k}")),
            )),
        }
    }
    format!(
        "{agree} of {} runs agree with the expected verdict (the catalog's, or for a kernel built from a tree, the fix its source has).\n{}",
        rows.len(),
        if out.is_empty() { String::new() } else { format!("\n{out}") }
    )
}

/// Provenance of every run, one line each.
pub(crate) fn provenance(rows: &[Row], base: &Path) -> String {
    let mut out = String::from(
        "| run | kernel release | image sha256 | accel | guest | QEMU | host CPU / kernel | repro | date | duration |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let s = &r.summary;
        let p = &s.provenance;
        out.push_str(&format!(
            "| {} | {} | {} | {}{} | {} | {} | {} / {} | {} | {} | {:.0} s |\n",
            relative(&r.dir, base),
            s.kernel.release.as_deref().unwrap_or("?"),
            s.kernel.image_sha256.as_deref().map_or("-".to_string(), |h| h[..h.len().min(16)].to_string()),
            s.ran_on(),
            s.accel_fallback_reason.as_deref().map_or(String::new(), |w| format!(" (fallback: {})", w.replace('|', "/"))),
            match (s.guest_cpus, s.guest_memory_mib) {
                (Some(c), Some(m)) => format!("{c} cpus, {m} MiB"),
                _ => "-".into(),
            },
            p.qemu_version.as_deref().map_or("-", |q| q.trim_start_matches("QEMU emulator version ")),
            p.host_cpu,
            p.host_kernel,
            p.repro_version,
            p.date,
            s.duration_s,
        ));
    }
    out
}

/// The markdown section for pairs that never reported.
pub(crate) fn missing_section(missing: &[Missing], logs: Option<&str>) -> String {
    if missing.is_empty() {
        return String::new();
    }
    let mut md = String::from("| kernel | scenario | verdict |\n|---|---|---|\n");
    for m in missing {
        md.push_str(&format!("| {} | {} | **failed: no run** |\n", md_cell(&m.kernel), md_cell(&m.scenario)));
    }
    md.push_str(&format!(
        "\nEach of these was in the matrix and left no run directory: its job failed before the run started \
         (fetch, build, boot), or its artifact was not uploaded.{}\n",
        logs.map(|l| format!(" The jobs' logs: {l}")).unwrap_or_default()
    ));
    md
}

/// A table cell: no pipe, newline or control character from outside data
/// (a summary's kernel or scenario name) breaks the table or the terminal.
pub(crate) fn md_cell(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect::<String>().replace('|', "\\|")
}

/// A section per sibling bug with runs here: what each run's settled
/// probe cost against its control, beside the scenario's thresholds.
pub(crate) fn bug_sections(rows: &[Row], base: &Path) -> String {
    let mut md = String::new();
    for bug in repro_proto::Bug::ALL.into_iter().filter(|b| !b.is_default()) {
        let of_bug: Vec<&Row> = rows.iter().filter(|r| r.summary.scenario_definition.bug == bug).collect();
        if of_bug.is_empty() {
            continue;
        }
        md.push_str(&format!("\n## {}: {}\n\n", bug.name(), bug.title()));
        md.push_str(
            "| kernel | release | scenario | judged figure | regressed at, clean at | verdict | expected | from | agrees | run |\n",
        );
        md.push_str("|---|---|---|---|---|---|---|---|---|---|\n");
        for r in of_bug {
            let t = &r.summary.scenario_definition.verdict;
            md.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                md_cell(&r.summary.kernel.name),
                md_cell(r.summary.kernel.release.as_deref().unwrap_or("-")),
                md_cell(&r.summary.scenario),
                r.verdict.evidence.judged_figure(t.basis),
                t.thresholds(),
                r.verdict.outcome.as_str(),
                expect_str(r.expected),
                md_cell(r.expected_from.as_deref().unwrap_or("-")),
                r.agreement().as_str(),
                relative(&r.dir, base)
            ));
        }
    }
    md
}

pub(crate) const INTRO: &str = "Every number here comes from a real run of repro; nothing is written or edited by hand. \
Each run directory holds its `summary.json` (with provenance: repro version, date, host CPU and kernel, QEMU \
version, the guest's `uname -r`, the image's sha256 and where it came from, the accelerator and why), the raw \
`samples.jsonl` and the guest's `console.log`. This page, the plots and `report.html` (the same, self-contained) \
are written by `repro report`; edit the runs, never this page.";

/// The report as markdown: table, agreement, extrapolation, plots, provenance.
pub(crate) fn document_markdown(doc: &Document, charts: &[(String, Chart)]) -> String {
    let mut md = format!("# Recorded runs\n\n{INTRO}\n\nMade with:\n\n");
    for c in doc.all_commands() {
        md.push_str(&format!("    {c}\n"));
    }
    md.push_str(&format!("\n## Verdicts\n\n{}\n", markdown(doc.rows, doc.out)));
    if !doc.missing.is_empty() {
        md.push_str(&format!("\n## Runs that never reported\n\n{}", missing_section(doc.missing, doc.logs)));
    }
    md.push_str(&format!("\n{}", agreement_notes(doc.rows, doc.out)));
    md.push_str(&bug_sections(doc.rows, doc.out));
    let x = extrapolation(doc.rows);
    if !x.is_empty() {
        md.push_str(&format!("\n## Extrapolation to 800,000 namespaces\n\n{x}"));
    }
    let up = upstream_comparison(doc.rows);
    if !up.is_empty() {
        md.push_str(&format!("\n## sysctl-all beside the fix's own figures\n\n{up}"));
    }
    if !charts.is_empty() {
        md.push_str("\n## Plots\n\nOne line per run; PNG beside each SVG. Text in both is drawn from the font compiled into repro.\n\n");
        for (name, chart) in charts {
            md.push_str(&format!("![{}]({PLOTS}/{name}.svg)\n\n", chart.title));
        }
    }
    md.push_str(&format!("## Provenance\n\n{}", provenance(doc.rows, doc.out)));
    md
}
