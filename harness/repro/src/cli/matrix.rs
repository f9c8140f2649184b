//! `repro matrix`.

use anyhow::Result;

use crate::cli::args::MatrixArgs;

pub fn matrix(args: &MatrixArgs, quiet: bool) -> Result<i32> {
    crate::judge::matrix::matrix(args, quiet)
}
