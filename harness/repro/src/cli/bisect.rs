//! `repro bisect`.

use anyhow::Result;

use crate::cli::args::BisectArgs;

pub fn bisect(args: &BisectArgs, quiet: bool) -> Result<i32> {
    crate::judge::bisect::bisect(args, quiet)
}
