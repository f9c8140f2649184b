//! `repro watch`.

use anyhow::Result;
use repro_proto::exit_codes;

use crate::cli::args::WatchArgs;
use crate::run::watch::WatchEnd;

/// 1 on an alarm no --hook took, else 0.
pub(super) fn watch(args: &WatchArgs) -> Result<i32> {
    Ok(match crate::run::watch::watch(&args.request())? {
        WatchEnd::Alarm => exit_codes::REGRESSED,
        WatchEnd::Done => exit_codes::OK,
    })
}
