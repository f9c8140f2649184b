//! `repro exec`.

use anyhow::Result;

use crate::cli::args::ExecArgs;

/// The guest command's own exit code.
pub(super) fn exec(args: &ExecArgs) -> Result<i32> {
    crate::guest::execute::exec(&args.request()?)
}
