//! `repro report`.

use anyhow::Result;

use crate::cli::args::ReportArgs;
use repro_proto::exit_codes;

use crate::judge::verdict::Agreement;
use crate::kernel::catalog::Catalog;

pub(super) fn report(args: &ReportArgs) -> Result<i32> {
    if let Some(path) = &args.junit {
        crate::atomic::check_target(path)?;
    }
    // With --expect, a directory with no runs at all is a report of
    // missing pairs, not an error: that is what a matrix whose jobs all
    // failed before running looks like.
    let dirs = match crate::judge::report::collect(&args.dirs) {
        Ok(d) => d,
        Err(e) if args.expect.is_some() => {
            tracing::warn!("{e:#}");
            Vec::new()
        }
        Err(e) => return Err(e),
    };
    let rows = crate::judge::report::rows(&dirs, &Catalog::builtin()?)?;
    let missing = match &args.expect {
        Some(m) => crate::judge::report::missing(m, &rows)?,
        None => Vec::new(),
    };
    if let Some(path) = &args.junit {
        let cases = rows.iter().map(crate::judge::junit::case_of_row).chain(missing.iter().map(crate::judge::junit::case_of_missing));
        crate::judge::junit::write(path, "repro report", cases.collect())?;
    }
    if let Some(out) = &args.out {
        let dirs: Vec<String> = args.dirs.iter().map(|d| d.display().to_string()).collect();
        let doc = crate::judge::report::Document {
            rows: &rows,
            out,
            commands: vec![format!("repro report {} --out {}", dirs.join(" "), out.display())],
            missing: &missing,
            logs: args.logs.as_deref(),
        };
        crate::judge::report_files::write(&doc)?;
        crate::text::outln(&out.join("README.md").display().to_string());
    } else {
        let base = std::env::current_dir()?;
        crate::text::out(&crate::judge::report_md::markdown(&rows, &base).to_string());
        if !missing.is_empty() {
            crate::text::out(&format!(
                "\nRuns that never reported:\n\n{}",
                crate::judge::report_md::missing_section(&missing, args.logs.as_deref())
            ));
        }
        let x = crate::judge::report_md::extrapolation(&rows);
        if !x.is_empty() {
            crate::text::out(&format!("\nExtrapolation:\n\n{x}"));
        }
    }
    if !missing.is_empty() {
        crate::text::errln(&format!(
            "{} expected run(s) never reported: {}",
            missing.len(),
            missing.iter().map(|m| format!("{}/{}", m.kernel, m.scenario)).collect::<Vec<_>>().join(", ")
        ));
        if args.strict {
            return Ok(exit_codes::REGRESSED);
        }
    }
    let contradicted = rows.iter().filter(|r| r.agreement() == Agreement::Contradicts);
    let n = contradicted.count();
    if n > 0 {
        crate::text::errln(&format!("{n} verdict(s) contradict the catalog's expectation"));
        if args.strict {
            return Ok(exit_codes::REGRESSED);
        }
    }
    Ok(exit_codes::OK)
}
