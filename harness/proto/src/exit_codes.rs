//! Process exit codes of `repro`. Stable: scripts and `git bisect run` rely
//! on them. `git bisect run` treats 125 as "skip", 1..=127 otherwise as
//! "bad", and aborts the bisection on 128 and above.

/// The command did what was asked (for `check`: the kernel is clean).
pub const OK: i32 = 0;
/// `check`: the regression is present.
pub const REGRESSED: i32 = 1;
/// Bad command-line usage (clap's own code).
pub const USAGE: i32 = 2;
/// The kernel name is not in the catalog, or could not be fetched.
pub const KERNEL_UNAVAILABLE: i32 = 3;
/// The kernel image is missing, unreadable or not a bzImage.
pub const IMAGE_INVALID: i32 = 4;
/// qemu-system-x86_64 (or another required host tool) is not installed.
pub const QEMU_MISSING: i32 = 5;
/// The scenario file does not parse or does not validate.
pub const SCENARIO_INVALID: i32 = 6;
/// The guest kernel panicked.
pub const GUEST_PANIC: i32 = 7;
/// The guest stopped answering, or the run exceeded --timeout.
pub const GUEST_HUNG: i32 = 8;
/// The agent reported an error, or QEMU/the agent exited unexpectedly.
pub const GUEST_FAILED: i32 = 9;
/// Writing results failed because the disk is full.
pub const DISK_FULL: i32 = 10;
/// The host backend needs root.
pub const PERMISSION: i32 = 11;
/// Any other failure of repro itself.
pub const INTERNAL: i32 = 12;
/// A kernel build failed: compile error, a patch that no longer applies, or
/// a config fragment that did not survive olddefconfig.
pub const BUILD_FAILED: i32 = 13;
/// The guest failed because the host gave it too little CPU time (the
/// kernel's IO-APIC timer check failing under a starved TCG vCPU): the
/// environment, not the kernel. Run it again on a less busy host.
pub const HOST_STARVED: i32 = 14;
/// `run`/`resume`: the run saved the guest's state and stopped, as asked (a
/// signal, or --stop-after): `repro resume DIR` continues it. A job chain
/// (the soak workflow) hands the run directory on when it sees this code.
pub const CHECKPOINTED: i32 = 75;
/// `check`: the run cannot decide (`git bisect run`'s "skip").
pub const INCONCLUSIVE: i32 = 125;
/// `check`: repro itself cannot run here (QEMU missing, bad scenario, no
/// permission, disk full), whatever the kernel: `git bisect run` stops
/// rather than blame the commit.
pub const CANNOT_RUN: i32 = 128;
/// Interrupted by SIGINT (Ctrl-C) or SIGTERM, 128 + SIGINT by convention.
pub const INTERRUPTED: i32 = 130;
/// stdout's reader went away (`repro watch | head -1`): the command stopped
/// quietly, keeping what it recorded; 128 + SIGPIPE, as a shell reports a
/// program SIGPIPE ended.
pub const STDOUT_CLOSED: i32 = 141;
