//! `repro bisect`.

use anyhow::Result;
use repro_proto::exit_codes;

use crate::cli::args::BisectArgs;

/// 0 when one revision was named and its re-check held, else 125.
pub(super) fn bisect(args: &BisectArgs, quiet: bool) -> Result<i32> {
    let finding = crate::judge::bisect::bisect(&args.request()?, quiet)?;
    Ok(if finding.named() { exit_codes::OK } else { exit_codes::INCONCLUSIVE })
}
