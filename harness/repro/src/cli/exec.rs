//! `repro exec`.

use anyhow::Result;

use crate::cli::args::ExecArgs;

pub fn exec(args: &ExecArgs) -> Result<i32> {
    crate::run::exec::exec(args)
}
