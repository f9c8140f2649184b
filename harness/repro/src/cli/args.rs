//! The command line as types: every subcommand's clap arguments, and the
//! conversions into the domain requests the layers below take (`request()`
//! methods). Nothing below cli/ sees these types.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::kernel::spec::KernelSpec;
use crate::run::scenario::ScenarioSpec;

pub(crate) use crate::cli::args_run::{CheckpointArgs, ExecArgs, ResumeArgs, RunArgs, RunCommandArgs};
pub(crate) use crate::cli::args_vm::{duration, kernel_spec, positive, source_dir, CacheArgs, VmArgs};

#[derive(Debug, Parser)]
#[command(
    name = "repro",
    version,
    about = "Reproduce the /proc/sys/net dcache hash-chain regression on any kernel under QEMU",
    long_about = "Reproduce the /proc/sys/net dcache hash-chain regression on any kernel under QEMU.\n\n\
On kernels before v4.11, every network namespace that is created and destroyed leaves its \
/proc/sys/net dentries cached on one dcache hash chain, and each lookup of /proc/sys/net/ipv6 from \
the host walks that chain under a global lock. repro boots a kernel in QEMU with an initramfs it \
writes itself, churns namespaces inside it while timing opens from the initial namespace, and records \
the latency curve and the dentries left behind.",
    after_help = "Examples:\n  \
repro run --kernel 6.1 --iterations 1000        Debian 6.1 under QEMU (fetched with apt)\n  \
repro run --kernel ./bzImage -n 5000 --json     any bzImage you built\n  \
repro run --backend host -n 500                 this machine's own kernel (as root)\n  \
repro run --kernel 6.1-noprune -n 3000          build a variant with the bug and show it\n  \
repro kernels                                   what --kernel accepts by name"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// More log output (-v debug: includes the full QEMU command line; -vv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only warnings and errors; no progress bar.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Boot a kernel, churn network namespaces, probe /proc/sys/net opens, record the curve.
    Run(RunCommandArgs),
    /// Continue a checkpointed run (`run --checkpoint-every` / `--stop-after`) from its last save.
    Resume(ResumeArgs),
    /// Compare run directories: table, verdicts against expectations, plots, HTML page.
    Report(ReportArgs),
    /// Run every kernel x scenario pair, one after another, then write the report.
    Matrix(MatrixArgs),
    /// Find the commit (or packaged kernel) where the verdict changes, driving git bisect.
    Bisect(BisectArgs),
    /// Watch this host (no VM): ipv6 vs ipv4 sysctl open latency, dentry-state, an alarm.
    Watch(WatchArgs),
    /// List the kernels --kernel accepts by name.
    Kernels(KernelsArgs),
    /// Run and judge: exit 0 clean, 1 regressed, 125 inconclusive (git bisect run's contract).
    Check(CheckArgs),
    /// Boot a kernel and run one command in it (e.g. a static benchmark), printing its output.
    Exec(ExecArgs),
    /// Fetch (or build) a catalog kernel into the cache, no boot, and print its path.
    Fetch(FetchArgs),
    /// Kernel images: `repro image build NAME` builds a catalog entry or a --src tree.
    #[command(subcommand)]
    Image(ImageCommand),
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Build a kernel (catalog `build` entry, or --src DIR) into the cache and print its path.
    Build(ImageBuildArgs),
    /// Print the cache entry a build would make, without building: CI's cache key.
    Key(ImageKeyArgs),
}

#[derive(Debug, Clone, Args)]
#[command(after_help = "Prints one line per kernel: its name and the entry under images/ in the cache that \
`repro image build` makes or reuses for it on this machine (the source package version apt offers now, the \
host compiler, the era rules, the patches). Nothing is downloaded or built.\n\n\
Examples:\n  repro image key 6.1-src 6.1-noprune\n  repro image key 6.1-noprune | sha256sum      a CI cache key")]
pub struct ImageKeyArgs {
    /// Catalog names of `build` entries (see `repro kernels`), or one comma-separated list.
    #[arg(required = true, value_delimiter = ',')]
    pub kernels: Vec<String>,
    #[command(flatten)]
    pub cache: CacheArgs,
}

#[derive(Debug, Clone, Args)]
#[command(after_help = "Examples:\n  repro image build 6.1-noprune\n  repro image build --src ~/linux --cc gcc-12")]
pub struct ImageBuildArgs {
    /// Catalog name of a `build` entry (see `repro kernels`).
    #[arg(required_unless_present = "src")]
    pub kernel: Option<String>,
    /// A kernel source tree to build instead.
    #[arg(long, value_name = "DIR", conflicts_with = "kernel", value_parser = source_dir())]
    pub src: Option<PathBuf>,
    /// C compiler for the kernel build [default: by the tree's era, see vm-images/eras.toml]:
    /// a name on PATH, a path, or one repro fetches (gcc-12).
    #[arg(long, value_name = "CC")]
    pub cc: Option<String>,
    #[command(flatten)]
    pub cache: CacheArgs,
}

#[derive(Debug, Clone, Args)]
#[command(after_help = "Exit status: 0 clean, 1 regressed, 125 inconclusive or cannot test (build failure, boot failure, \
panic, hang), so that `git bisect run repro check ...` skips what it cannot judge; 128 when repro cannot run whatever \
the kernel (QEMU missing, bad scenario, disk full), which stops git bisect run; 130 on Ctrl-C.\n\n\
Examples:\n  repro check --kernel 6.1-noprune -n 3000            exits 1\n  \
repro check --kernel 6.1 -n 1000 --repeat 3         decides by agreement of three runs\n  \
git bisect run repro check --build . -n 300         judge each revision of the kernel tree in .")]
pub struct CheckArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Run this many times and decide by agreement (any disagreement is inconclusive).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub repeat: u32,
    /// Swap 0 and 1 (0 regressed, 1 clean), for `git bisect run` hunting a fix with
    /// --term-old=unfixed --term-new=fixed, where the old state must exit 0.
    #[arg(long)]
    pub reverse: bool,
    /// Also write the verdict as JUnit XML to FILE, for CI dashboards (one test case; with
    /// --repeat one per run): passed when it agrees with the expectation (or is clean where there
    /// is none), failed when it contradicts it or regressed unexpectedly, error when inconclusive.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Which known namespace-churn regressions does this kernel have? Run every bug's scenario
    /// (seed for the /proc/sys/net dentries, ipc-teardown, netns-lock) against it, one after
    /// another, and print one table: bug, verdict, evidence, expected, agrees. Exit 1 if any bug is
    /// regressed, else 125 if any verdict is inconclusive, else 0; --junit has one case per bug;
    /// --out DIR puts each run in DIR/SCENARIO.
    #[arg(long, conflicts_with_all = ["scenario", "repeat", "reverse"])]
    pub suite: bool,
}

#[derive(Debug, Clone, Args)]
#[command(
    mut_arg("kernel", |a| a.hide(true)),
    mut_arg("json", |a| a.hide(true)),
    mut_arg("src", |a| a.help("Kernel git tree to bisect (a clean working tree: git bisect checks revisions out in it)")),
    mut_arg("out", |a| a.help("Directory for the state (bisect.json), each step's run and the report (bisect.md); \
rerunning the same command with the same --out resumes [default: results/runs/bisect-<date>]")),
    after_help = "Git mode builds every revision git bisect picks from --src (minimal config fragment, incremental: \
one O= directory per tree in the cache, and every built revision is kept, so resuming or re-checking costs no build). \
A revision that does not build, boot or decide is skipped. At the end the first new-term commit and its parent are \
judged again. The tree is given back on its branch (git bisect reset) however the bisection ends.\n\n\
Exit status: 0 when one revision was named and the re-check held; 125 when skips leave several candidates, the ends \
do not bracket a change, or the re-check disagreed; 128 when repro cannot run at all; 130 on Ctrl-C (resume with \
the same command).\n\n\
Examples:\n  \
repro bisect --src ~/linux --good v4.10 --bad v4.11 -n 2000            where did it regress?\n  \
repro bisect --src ~/linux --unfixed v4.10 --fixed v4.11 -n 2000       where was it fixed?\n  \
repro bisect --kernels 3.10,4.4.178,4.9.119,4.9.123,5.10 --fix         which packaged kernel fixed it?"
)]
pub struct BisectArgs {
    /// Hunting a regression: a revision without it (git bisect's old term "good").
    #[arg(long, value_name = "REV", requires = "bad", conflicts_with_all = ["fixed", "unfixed"])]
    pub good: Option<String>,
    /// Hunting a regression: a revision with it (git bisect's new term "bad").
    #[arg(long, value_name = "REV", requires = "good")]
    pub bad: Option<String>,
    /// Hunting a fix: an old revision with the regression (old term "unfixed").
    #[arg(long, value_name = "REV", requires = "fixed")]
    pub unfixed: Option<String>,
    /// Hunting a fix: a new revision without it (new term "fixed").
    #[arg(long, value_name = "REV", requires = "unfixed")]
    pub fixed: Option<String>,
    /// Binary search over these kernels instead of git: catalog names or bzImage paths, oldest first.
    #[arg(long, value_delimiter = ',', value_name = "A,B,...", value_parser = kernel_spec())]
    pub kernels: Vec<KernelSpec>,
    /// With --kernels: hunt the fix (first clean kernel) instead of the regression.
    #[arg(long, requires = "kernels")]
    pub fix: bool,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Clone, Args)]
#[command(after_help = "Examples:\n  \
repro report results/seed                  the table for every run directory under results/seed\n  \
repro report results/seed --out results    regenerate results/README.md, results/report.html, results/plots/")]
pub struct ReportArgs {
    /// Run directories, or directories of run directories.
    #[arg(required = true, value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
    /// Write README.md (table, agreement, extrapolation, plots, provenance), report.html
    /// (the same, self-contained) and plots/*.svg|png into DIR instead of printing the table.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Exit 1 when a verdict contradicts the catalog's expectation, or a pair of --expect has no
    /// run (for CI).
    #[arg(long)]
    pub strict: bool,
    /// The matrix that was meant to run (`repro kernels --matrix` JSON): every pair in it without
    /// a run directory becomes a failed row, so a job that produced nothing cannot go unseen.
    #[arg(long, value_name = "MATRIX.json")]
    pub expect: Option<PathBuf>,
    /// Where the jobs' logs are (the workflow run's URL), shown beside a pair that has no run.
    #[arg(long, value_name = "URL", requires = "expect")]
    pub logs: Option<String>,
    /// Also write the verdicts as JUnit XML to FILE: one test case per run, and with --expect
    /// one error case per pair that never reported.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
#[command(
    mut_arg("kernel", |a| a.hide(true)),
    mut_arg("scenario", |a| a.hide(true)),
    mut_arg("out", |a| a.help("Directory for the pairs' run directories and the report [default: results/runs/matrix-<date>]")),
    mut_arg("json", |a| a.hide(true)),
    after_help = "Each pair's run directory is OUT/<scenario>/<kernel>-<iterations>; a pair that fails \
(kernel unavailable, guest panic, hang) is recorded there with its error and the rest still run. \
Then OUT gets README.md, report.html and plots/ as `repro report --out` writes them.\n\n\
Exit status: 0 when every pair ran and agrees with the catalog's expectation, 1 when a verdict contradicts it, \
125 when a pair failed or was inconclusive, 130 on Ctrl-C (pairs done so far are kept and reported).\n\n\
Example:\n  repro matrix --kernels 5.10,6.1,6.12,6.1-noprune -n 3000 --out results"
)]
pub struct MatrixArgs {
    /// Kernels: catalog names or bzImage paths, comma-separated.
    #[arg(long, required = true, value_delimiter = ',', value_name = "A,B,...", value_parser = kernel_spec())]
    pub kernels: Vec<KernelSpec>,
    /// Scenarios: names or files, comma-separated.
    #[arg(long, default_value = "seed", value_delimiter = ',', value_name = "X,Y,...")]
    pub scenarios: Vec<ScenarioSpec>,
    /// Also write the verdicts as JUnit XML to FILE (one test case per pair).
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Everything else as for `repro run`; --kernels and --scenarios replace --kernel and --scenario.
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Clone, Args)]
#[command(after_help = "Examples:\n  repro kernels\n  \
repro kernels --matrix --scenarios seed      the GitHub Actions matrix (ci/workflows/repro.yml uses it)")]
pub struct KernelsArgs {
    /// Print the catalog as JSON.
    #[arg(long, conflicts_with = "matrix")]
    pub json: bool,
    /// Print a GitHub Actions matrix: {"include": [{kernel, scenario, expect, host, build}]},
    /// one entry per catalog kernel with an expectation for each scenario; host is "debian" where
    /// the kernel needs Debian's apt sources (or is built), else "any"; build names the tree built
    /// (`repro image key` gives its images' cache key on the machine that builds them).
    #[arg(long)]
    pub matrix: bool,
    /// With --matrix: the scenarios, comma-separated.
    #[arg(long, default_value = "seed", value_delimiter = ',', requires = "matrix")]
    pub scenarios: Vec<String>,
    /// With --matrix: only this kernel (a catalog name or alias, resolved to its name).
    #[arg(long, value_name = "NAME", requires = "matrix")]
    pub kernel: Option<String>,
}

#[derive(Debug, Clone, Args)]
#[command(after_help = "Prints one JSON line per interval: probe and control p50 (us), their ratio, nr_dentry, nr_unused, \
the estimated chain length, the watch's own CPU time (us) and whether the alarm is raised.\n\n\
Exit status: 1 when the alarm is raised and no --hook is given; 0 after --count intervals, or when the command \
after -- has ended (and --linger passed); the command's own failure is reported, not passed on.\n\n\
Examples:\n  repro watch                                   every second, until the alarm\n  \
repro watch --interval 10s --hook 'logger -t repro \"$REPRO_WATCH_JSON\"'\n  \
repro watch --count 60 > watch.jsonl              a minute of samples\n  \
repro watch --interval 500ms --linger 20s -- repro run --backend host -n 2000    beside a churn")]
pub struct WatchArgs {
    /// Time between samples.
    #[arg(long, default_value = "1s", value_parser = duration)]
    pub interval: Duration,
    /// Timed opens per path per interval (1 to 100000).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub samples: u32,
    /// The sysctl on the hot hash chain.
    #[arg(long, default_value = "/proc/sys/net/ipv6/neigh/lo/retrans_time_ms")]
    pub probe: PathBuf,
    /// A sysctl off it.
    #[arg(long, default_value = "/proc/sys/net/ipv4/neigh/lo/retrans_time_ms")]
    pub control: PathBuf,
    /// Alarm when the probe costs at least this many times the control...
    #[arg(long, default_value_t = 5.0, value_parser = positive)]
    pub ratio_alarm: f64,
    /// ...or when the estimated chain reaches this many entries.
    #[arg(long)]
    pub chain_alarm: Option<u64>,
    /// ...for this many intervals in a row.
    #[arg(long, default_value_t = 3)]
    pub consecutive: u32,
    /// Microseconds one stale chain entry costs a lookup (the write-up: 0.57; TCG here: ~0.7-1.0).
    #[arg(long, default_value_t = 0.57, value_parser = positive)]
    pub per_entry_us: f64,
    /// Run this shell command on alarm (with REPRO_WATCH_RATIO, REPRO_WATCH_CHAIN, REPRO_WATCH_JSON) and keep watching.
    #[arg(long, value_name = "CMD")]
    pub hook: Option<String>,
    /// Stop after this many intervals.
    #[arg(long)]
    pub count: Option<u64>,
    /// With a command after --: keep watching this long after it ends (to see cleanup settle).
    #[arg(long, default_value = "0s", value_parser = duration)]
    pub linger: Duration,
    /// After --: watch while this command runs (its output goes to stderr), then stop: e.g. a churn,
    /// `-- repro run --backend host -n 2000`. The alarm without --hook kills it.
    #[arg(num_args = 1.., allow_hyphen_values = true, value_name = "COMMAND", last = true)]
    pub while_cmd: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct FetchArgs {
    /// Catalog name.
    pub kernel: String,
    #[command(flatten)]
    pub cache: CacheArgs,
    /// C compiler for a `build` entry [default: the entry's, else its tree's era's].
    #[arg(long, value_name = "CC")]
    pub cc: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        <Cli as clap::CommandFactory>::command().debug_assert();
    }
}
