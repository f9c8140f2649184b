//! `repro resume`.

use anyhow::Result;
use repro_proto::exit_codes;

use crate::cli::args::ResumeArgs;
use crate::guest::resume::resume;

/// `repro resume`: as `repro run`: 0 when the run completed, else the
/// error's code (75 when it saved and stopped again).
pub(super) fn run(args: &ResumeArgs, quiet: bool) -> Result<i32> {
    let done = resume(&args.request()?, quiet)?;
    match done.error {
        Some(e) => Err(e),
        None => Ok(exit_codes::OK),
    }
}
