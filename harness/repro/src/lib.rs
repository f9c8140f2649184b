//! repro: reproduce the /proc/sys/net dcache hash-chain regression on any
//! kernel under QEMU, and record the latency curve.
//!
//! The folders are the pipeline, and each depends only on those before it:
//! [`kernel`] gets an image (catalog, apt, downloads, builds, the cache),
//! [`guest`] boots it and talks to the agent, [`run`] records a run,
//! [`judge`] turns runs into verdicts, reports and bisections, and [`cli`]
//! parses the command line and dispatches. `error`, `interrupt`, `child`,
//! `atomic`, `git`, `lockfile` and `text` serve them all. ARCHITECTURE.md draws it.

pub mod cli;
pub mod error;
pub mod guest;
pub mod judge;
pub mod kernel;
pub mod run;

mod atomic;
mod child;
mod git;
mod input;
mod interrupt;
mod lockfile;
mod text;

pub use cli::args::Cli;
pub use cli::run;
