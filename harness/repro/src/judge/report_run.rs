//! `repro report`'s flow: the rows of every run given (report.rs), the
//! missing pairs of `--expect`, and the outputs (JUnit, the report
//! directory of report_files.rs, or the table printed). Apart from
//! report.rs so that junit.rs, which reads its rows, stays below it.

use std::path::PathBuf;

use anyhow::Result;

use crate::judge::report::{Document, Missing};
use crate::judge::verdict::Agreement;
use crate::kernel::catalog::Catalog;

/// What `repro report` is asked.
pub(crate) struct ReportRequest {
    pub dirs: Vec<PathBuf>,
    /// Write README.md, report.html and plots/ here; None prints the table.
    pub out: Option<PathBuf>,
    /// The matrix that was meant to run: its pairs with no run are missing rows.
    pub expect: Option<PathBuf>,
    pub logs: Option<String>,
    pub junit: Option<PathBuf>,
    /// What the rows' kernels are judged against (their expectations).
    pub catalog: std::sync::Arc<Catalog>,
}

/// What a report found: the pairs that never reported, and how many
/// verdicts contradict their expectation (cli/ decides what `--strict`
/// makes of them).
pub(crate) struct ReportEnd {
    pub missing: Vec<Missing>,
    pub contradicted: usize,
}

/// `repro report`: the rows of every run under `req.dirs`, the missing
/// pairs of `--expect`, written as JUnit, as a report directory, or printed.
pub(crate) fn report(req: &ReportRequest) -> Result<ReportEnd> {
    // With --expect, a directory with no runs at all is a report of
    // missing pairs, not an error: that is what a matrix whose jobs all
    // failed before running looks like.
    let dirs = match crate::judge::report::collect(&req.dirs) {
        Ok(d) => d,
        Err(e) if req.expect.is_some() => {
            tracing::warn!("{e:#}");
            Vec::new()
        }
        Err(e) => return Err(e),
    };
    let rows = crate::judge::report::rows(&dirs, &req.catalog)?;
    let missing = match &req.expect {
        Some(m) => crate::judge::report::missing(m, &rows)?,
        None => Vec::new(),
    };
    if let Some(path) = &req.junit {
        let cases = rows.iter().map(crate::judge::junit::case_of_row).chain(missing.iter().map(crate::judge::junit::case_of_missing));
        crate::judge::junit::write(path, "repro report", cases.collect())?;
    }
    if let Some(out) = &req.out {
        let dirs: Vec<String> = req.dirs.iter().map(|d| d.display().to_string()).collect();
        let doc = Document {
            rows: &rows,
            out,
            commands: vec![format!("repro report {} --out {}", dirs.join(" "), out.display())],
            missing: &missing,
            logs: req.logs.as_deref(),
        };
        crate::judge::report_files::write(&doc)?;
        crate::text::outln(&out.join("README.md").display().to_string());
    } else {
        let base = std::env::current_dir()?;
        crate::text::out(&crate::judge::report_md::markdown(&rows, &base).to_string());
        if !missing.is_empty() {
            crate::text::out(&format!(
                "\nRuns that never reported:\n\n{}",
                crate::judge::report_md::missing_section(&missing, req.logs.as_deref())
            ));
        }
        let x = crate::judge::report_md::extrapolation(&rows);
        if !x.is_empty() {
            crate::text::out(&format!("\nExtrapolation:\n\n{x}"));
        }
    }
    let contradicted = rows.iter().filter(|r| r.agreement() == Agreement::Contradicts).count();
    Ok(ReportEnd { missing, contradicted })
}
