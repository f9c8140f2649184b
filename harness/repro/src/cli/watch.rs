//! `repro watch`.

use anyhow::Result;

use crate::cli::args::WatchArgs;

pub fn watch(args: &WatchArgs) -> Result<i32> {
    crate::run::watch::watch(args)
}
