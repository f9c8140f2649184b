//! `repro matrix`.

use anyhow::Result;
use repro_proto::exit_codes;

use crate::cli::args::MatrixArgs;
use crate::judge::matrix::MatrixEnd;

/// 0 every pair agrees, 1 a contradiction, 125 a failed or inconclusive
/// pair, 130 interrupted.
pub(super) fn matrix(args: &MatrixArgs, quiet: bool) -> Result<i32> {
    Ok(match crate::judge::matrix::matrix(&args.request()?, quiet)? {
        MatrixEnd::Interrupted => exit_codes::INTERRUPTED,
        MatrixEnd::Contradicts => exit_codes::REGRESSED,
        MatrixEnd::Inconclusive => exit_codes::INCONCLUSIVE,
        MatrixEnd::Agrees => exit_codes::OK,
    })
}
