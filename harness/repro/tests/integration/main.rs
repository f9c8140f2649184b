//! repro's integration tests: one binary, a helper module, tests named after
//! what they guard. The e2e and fault tests boot real kernels under QEMU
//! (TCG); they need qemu-system-x86_64 and apt access to Debian's kernels,
//! which `ci/setup.sh` provides.

mod helpers;

mod act;
mod bisect;
mod build;
mod check;
mod checkpoint;
mod cli;
mod e2e;
mod eras;
mod faults;
mod fetch;
mod fuzz_corpus;
mod hostile;
mod layout;
mod props;
mod runner;
mod scenarios;
mod watch;
mod workflows;
