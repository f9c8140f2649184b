//! `repro report`.

use anyhow::Result;

use crate::cli::args::ReportArgs;
use repro_proto::exit_codes;

/// `repro report` ([`crate::judge::report_run::report`]): exit 0, or with
/// `--strict` 1 when a pair never reported or a verdict contradicts its
/// expectation.
pub(super) fn report(args: &ReportArgs) -> Result<i32> {
    if let Some(path) = &args.junit {
        crate::atomic::check_target(path)?;
    }
    let end = crate::judge::report_run::report(&args.request()?)?;
    if !end.missing.is_empty() {
        crate::text::errln(&format!(
            "{} expected run(s) never reported: {}",
            end.missing.len(),
            end.missing.iter().map(|m| format!("{}/{}", m.kernel, m.scenario)).collect::<Vec<_>>().join(", ")
        ));
    }
    if end.contradicted > 0 {
        crate::text::errln(&format!("{} verdict(s) contradict the catalog's expectation", end.contradicted));
    }
    let failed = !end.missing.is_empty() || end.contradicted > 0;
    Ok(if failed && args.strict { exit_codes::REGRESSED } else { exit_codes::OK })
}
