//! `repro run`.

use anyhow::Result;
use repro_proto::exit_codes;

use crate::cli::args::RunCommandArgs;
use crate::guest::execute::execute;

/// `repro run`: exit 0 when the run completed, else the error's code (75
/// when it saved its guest and stopped, as asked).
pub(super) fn run(args: &RunCommandArgs, quiet: bool) -> Result<i32> {
    let done = execute(&args.request()?, quiet, None)?;
    match done.error {
        Some(e) => Err(e),
        None => Ok(exit_codes::OK),
    }
}
