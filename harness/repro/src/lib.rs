//! repro: reproduce the /proc/sys/net dcache hash-chain regression on any
//! kernel under QEMU, and record the latency curve.
//!
//! The folders are the pipeline, and each depends only on those before it:
//! [`kernel`] gets an image (catalog, apt, downloads, builds, the cache),
//! [`run`] is a run's record (its scenario, samples, summary, progress),
//! [`guest`] boots the image and drives the agent into that record,
//! [`judge`] turns runs into verdicts, reports and bisections, and [`cli`]
//! parses the command line, dispatches and chooses exit codes. `error`,
//! `interrupt`, `child`, `atomic`, `git`, `lockfile`, `input` and `text`
//! serve them all. ARCHITECTURE.md draws it.

#![warn(unreachable_pub)]

pub(crate) mod cli;
pub(crate) mod error;
pub(crate) mod guest;
pub(crate) mod judge;
pub(crate) mod kernel;
pub(crate) mod run;

mod atomic;
mod child;
mod fastset;
mod git;
mod input;
mod interrupt;
mod lockfile;
mod text;
mod workdir;

/// The fuzz targets' entry points (harness/fuzz/): not an API.
#[doc(hidden)]
pub mod fuzzing;

pub use cli::{from_argv, main};

/// What the integration tests reach beyond the command line: the parsers
/// of outside data, which the property tests (tests/integration/props.rs)
/// feed arbitrary input, and the fixtures they build (feature `fixtures`,
/// which only the tests turn on). Everything else is crate-private.
pub mod testing {
    pub use crate::judge::bisect_git::parse_git_bisect;
    pub use crate::judge::verdict::theil_sen;
    pub use crate::kernel::apt::{derive_sources, parse_deb822, parse_one_line};
    pub use crate::kernel::catalog::Catalog;
    pub use crate::kernel::config::Fragment;
    pub use crate::kernel::deb::{unpack_stripped, EscapingLinks};
    pub use crate::kernel::era::{Eras, KernelVersion};
    pub use crate::kernel::rpm::extract_vmlinuz;
    #[cfg(feature = "fixtures")]
    pub use crate::kernel::rpm::fixture as rpm_fixture;
    pub use crate::run::scenario::parse as parse_scenario;
}
