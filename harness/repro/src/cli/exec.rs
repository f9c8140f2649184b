//! `repro exec`.

use anyhow::Result;

use crate::cli::args::ExecArgs;

pub fn exec(args: &ExecArgs) -> Result<i32> {
    crate::guest::exec::exec(args)
}
