//! The clap arguments of the commands that run a guest: `run` (and when it
//! saves its guest), `resume`, `exec`. `check`, `bisect` and `matrix` take
//! [`RunArgs`] too (args.rs).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::cli::args_vm::{backend, duration, nonzero_duration, Backend, VmArgs};
use crate::run::scenario::ScenarioSpec;

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub vm: VmArgs,
    /// Workload: a built-in scenario name or the path of a scenario file (see scenarios/).
    #[arg(short, long, default_value = "seed", value_name = "NAME|PATH")]
    pub scenario: ScenarioSpec,
    /// Network namespaces to create and destroy.
    #[arg(short = 'n', long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub iterations: u64,
    /// Parallel churn loops.
    #[arg(short, long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub workers: u32,
    /// Iterations between probe windows [default: iterations / 20].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub window: Option<u64>,
    /// Timed opens per probe path per window (1 to 100000) [default: from the scenario].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub probe_samples: Option<u32>,
    /// Where to run: qemu (a guest on --kernel), or host (this machine's running kernel, no VM;
    /// needs root and churns the host's own namespaces).
    #[arg(long, default_value = "qemu", value_parser = backend())]
    pub backend: Backend,
    /// Give up on the whole run after this long, e.g. 2h (windows so far are kept).
    #[arg(long, value_parser = duration)]
    pub timeout: Option<Duration>,
    /// A guest silent for this long is declared hung.
    #[arg(long, default_value = "2m", value_parser = duration)]
    pub stall_timeout: Duration,
    /// Run directory [default: results/runs/<date>-<kernel>-<scenario>-<iterations>].
    #[arg(short, long)]
    pub out: Option<PathBuf>,
    /// Also print summary.json on stdout.
    #[arg(long)]
    pub json: bool,
    /// check, bisect and matrix stop churning at the first round (after the scenario's min_iterations,
    /// then each doubling) whose settled residual decides the verdict with margin; --full churns all
    /// --iterations anyway. `repro run` always churns them all.
    #[arg(long)]
    pub full: bool,
    /// Count the hash chain entries each window's probe lookup walks (proc_sys_compare calls, with a
    /// kprobe event); needs CONFIG_KPROBE_EVENTS (Debian's kernels and repro's builds have it).
    #[arg(long)]
    pub chain_walk: bool,
}

/// `repro run`: a run's arguments, and when to save its guest.
#[derive(Debug, Clone, Args)]
#[command(after_help = "A churn too long for one process, host or CI job (800,000 namespaces on a kernel with the \
bug) saves its guest at rounds: the churn pauses at every window, and a save stops the guest and writes its whole \
state (QEMU's migration, gzip) under DIR/checkpoint/. SIGTERM or Ctrl-C with checkpoints on saves at the next \
round and stops (exit 75); `repro resume DIR` goes on from the last save, on a machine with the same QEMU, \
kernel image and accelerator.\n\n\
Examples:\n  repro run --kernel 3.10 --iterations 800000 --accel kvm --checkpoint-every 30m\n  \
repro run --kernel 6.1-noprune -n 20000 --stop-after 5h30m -o soak    exits 75 at the first window after 5h30m\n  \
repro resume soak --stop-after 5h30m")]
pub struct RunCommandArgs {
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub checkpoint: CheckpointArgs,
}

/// When a run saves its guest.
#[derive(Debug, Clone, Args)]
pub struct CheckpointArgs {
    /// Save the guest at the first window this long after the last save, e.g. 30m (the run goes on).
    #[arg(long, value_parser = nonzero_duration, value_name = "DURATION")]
    pub checkpoint_every: Option<Duration>,
    /// Save the guest at the first window this long after the start and stop (exit 75), e.g. 5h30m.
    #[arg(long, value_parser = duration, value_name = "DURATION")]
    pub stop_after: Option<Duration>,
}

#[derive(Debug, Clone, Args)]
#[command(after_help = "Exit status: as `repro run` (0 complete; 75 saved and stopped again, as asked).\n\n\
Example:\n  repro resume results/runs/2026-11-27-6.1-noprune-seed-20000 --stop-after 5h30m")]
pub struct ResumeArgs {
    /// The run directory of a run that saved at least once.
    pub dir: PathBuf,
    /// The QEMU to load the saved guest into: it must be the version that saved it [default: as
    /// `repro run` picks one: $REPRO_QEMU, else qemu-system-x86_64 on PATH, or the newer QEMU
    /// the catalog fetches for the run's kernel].
    #[arg(long, value_name = "PATH")]
    pub qemu: Option<PathBuf>,
    #[command(flatten)]
    pub checkpoint: CheckpointArgs,
    /// Give up on this part of the run after this long (windows so far are kept).
    #[arg(long, value_parser = duration)]
    pub timeout: Option<Duration>,
    /// A guest silent for this long is declared hung [default: the run's own].
    #[arg(long, value_parser = duration)]
    pub stall_timeout: Option<Duration>,
    /// Also print summary.json on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
#[command(after_help = "Example:\n  gcc -O2 -static -o churn-ref churn-ref.c\n  \
repro exec --kernel 6.1 --include churn-ref -- /bin/churn-ref 2000")]
pub struct ExecArgs {
    #[command(flatten)]
    pub vm: VmArgs,
    /// Copy a static executable or file into the guest's /bin (HOST[:GUEST_PATH]); repeatable.
    #[arg(long, value_name = "HOST[:GUEST]")]
    pub include: Vec<String>,
    /// Give up after this long.
    #[arg(long, default_value = "1h", value_parser = duration)]
    pub timeout: Duration,
    /// Keep the console log and messages here [default: a temporary directory].
    #[arg(short, long)]
    pub out: Option<PathBuf>,
    /// The command to run in the guest, after `--`; its exit code becomes repro's.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}
