//! Types shared by the host CLI (`repro`) and the guest agent (`repro-agent`):
//! the job the host hands to the agent, the messages the agent streams back,
//! the run summary written to disk, and the process exit codes.
//!
//! Everything that crosses a process or a file boundary carries
//! [`FORMAT_VERSION`]; bump it whenever a field changes meaning or is removed.

mod checkpoint;
pub mod exit_codes;
mod kinds;
mod procfs;
mod provenance;
mod settle;
mod source;
mod stats;
mod verdict;

pub use checkpoint::Checkpoint;
pub use kinds::{Accel, Backend, ErrorKind};
pub use procfs::{meminfo_kib, DentryState};
pub use provenance::{BuildProvenance, Verification};
pub use settle::{Phases, Residual, SettleEnd, SettlePoint, Settled};
pub use source::{Expect, SourceFix};
pub use stats::{percentile_nearest_rank, ProbeStats};
pub use verdict::{Agreement, Evidence, Outcome, Rule, Verdict};

use serde::{Deserialize, Serialize};

/// Version of the message and summary formats.
pub const FORMAT_VERSION: u32 = 1;

/// Version of the job format (host to agent). 2: the job's [`Task`].
pub const JOB_FORMAT_VERSION: u32 = 2;

/// Where the agent reads its job inside the initramfs.
pub const GUEST_JOB_PATH: &str = "/repro/job.json";
/// The serial device the agent streams messages on (the console is ttyS0).
pub const GUEST_PROTO_TTY: &str = "/dev/ttyS1";
/// What a kernel prints on the console when it panics; a console that shows
/// it turns a guest that went silent into a guest panic.
pub const PANIC_MARKER: &str = "Kernel panic";

/// A workload: what each churned namespace touches, what the probe opens from
/// the initial namespace, and how the settle phase decides cleanup is over.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Files under /proc/sys opened and read inside every new namespace,
    /// as absolute paths.
    pub touch: Vec<String>,
    /// Inside each namespace, also read every readable file under this
    /// directory (absolute, under /proc/sys): `sysctl -a`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_all: Option<String>,
    /// Directories opened inside each namespace and kept open by the churn
    /// worker (outside it) after the namespace's last process exits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<Hold>,
    /// `echo 2 > /proc/sys/vm/drop_caches` every this many iterations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop_caches_every: Option<u64>,
    /// Create a veth pair (veth0, veth1) in each namespace with rtnetlink,
    /// before touching, as a container runtime gives a container its interface.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub veth: bool,
    /// Kernel modules the scenario needs where they are not built in
    /// (`veth`): repro ships them from the kernel's package and loads them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub modules: Vec<String>,
    pub probes: Vec<ProbePath>,
    pub probe: ProbeSettings,
    pub settle: SettleSettings,
    /// How a run of this scenario is judged (`repro check`).
    #[serde(default)]
    pub verdict: VerdictSettings,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hold {
    /// Absolute paths of directories under /proc/sys.
    pub paths: Vec<String>,
    /// Close them this long after the namespace exited; None: keep them
    /// until the run has settled and been probed.
    #[serde(default)]
    pub release_after_ms: Option<u64>,
}

/// What a verdict rests on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerdictBasis {
    /// Stale dentries per namespace after settling (the plain churn).
    #[default]
    Residual,
    /// The probe's settled p50 over the control's: for workloads that keep
    /// dentries allocated on purpose (held fds), where only whether they
    /// stay on the probed hash chain tells the kernels apart.
    SettledRatio,
}

/// Thresholds of the verdict: stale dentries per churned namespace left
/// once cleanup has settled, and how much run is enough to judge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerdictSettings {
    /// At or above: regressed.
    pub residual_regressed: f64,
    /// At or below (with cleanup settled): clean. Between: see below.
    pub residual_clean: f64,
    pub min_iterations: u64,
    pub min_windows: u32,
    /// Between the residual thresholds: clean when, after settling, the
    /// probe's p50 is at most this many times the control's (the leftover
    /// dentries are elsewhere, not on the probed hash chain); else
    /// inconclusive.
    #[serde(default = "default_settled_ratio_clean")]
    pub settled_ratio_clean: f64,
    #[serde(default)]
    pub basis: VerdictBasis,
    /// With basis settled_ratio: at or above, regressed.
    #[serde(default = "default_settled_ratio_regressed")]
    pub settled_ratio_regressed: f64,
    /// Sequential verdicts: dentries of nr_dentry a round's residual must
    /// clear its threshold by (as noise) before the churn may stop early.
    #[serde(default = "default_early_margin_dentries")]
    pub early_margin_dentries: f64,
}

/// What a fixed kernel leaves, in dentries, at the rounds that decide: -1
/// to +7 at 200 namespaces (the recorded `check` runs and the agreement
/// study's), 1 to 73 over 2,000 to 3,000 namespaces of `seed`. 50 is seven
/// times the most seen at 200, and leaves the clean rule room there (seed's
/// 0.5 per namespace is 100 dentries at 200): at 100 it left none, and every
/// positive count, even +2, sent a fixed kernel to a second round.
fn default_early_margin_dentries() -> f64 {
    50.0
}

fn default_settled_ratio_regressed() -> f64 {
    5.0
}

fn default_settled_ratio_clean() -> f64 {
    2.0
}

impl Default for VerdictSettings {
    fn default() -> Self {
        VerdictSettings {
            residual_regressed: 1.0,
            residual_clean: 0.5,
            min_iterations: 200,
            min_windows: 5,
            settled_ratio_clean: default_settled_ratio_clean(),
            basis: VerdictBasis::Residual,
            settled_ratio_regressed: default_settled_ratio_regressed(),
            early_margin_dentries: default_early_margin_dentries(),
        }
    }
}

impl Scenario {
    /// The probe a verdict is judged on: the first that is not a control
    /// (the scenario loader requires one), else the first of all.
    pub fn judged_probe(&self) -> Option<&ProbePath> {
        self.probes.iter().find(|p| !p.control).or(self.probes.first())
    }

    /// The control probe, expected to stay flat whatever the kernel.
    pub fn control_probe(&self) -> Option<&ProbePath> {
        self.probes.iter().find(|p| p.control)
    }

    /// Whether the agent's settle can end on its cleanup barrier: not where
    /// held fds keep namespaces alive past any barrier. (The host ships
    /// veth for it where the kernel has it as a module.)
    pub fn settles_on_barrier(&self) -> bool {
        self.hold.is_none()
    }

    /// Whether a churn of this scenario can pause in rounds for a sequential
    /// verdict: not one that holds fds or drops caches on a schedule, whose
    /// state would not settle the way a round assumes. The host sizes its
    /// windows and the agent pauses by this one rule.
    pub fn pauses_in_rounds(&self) -> bool {
        self.hold.is_none() && self.drop_caches_every.is_none()
    }
}

/// One path the probe times from the initial namespace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbePath {
    /// Short label used in results (`ipv6`, `ipv4`).
    pub name: String,
    /// Absolute path, e.g. /proc/sys/net/ipv6/neigh/lo/retrans_time_ms.
    pub path: String,
    /// A control path: expected to stay flat whatever the kernel.
    #[serde(default)]
    pub control: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProbeSettings {
    /// Timed opens per path per window.
    pub samples: u32,
    /// Time the probe may spend per path per window; once spent, the window
    /// keeps the samples taken so far (at least `min_samples`).
    pub budget_ms: u64,
    pub min_samples: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SettleSettings {
    pub poll_ms: u64,
    /// Consecutive polls without a new minimum of nr_dentry that end the phase.
    pub stable_polls: u32,
    /// Upper bound on the settle phase.
    pub max_ms: u64,
    /// Cleanup is over as soon as nr_dentry is within this many dentries per
    /// churned namespace of the baseline (a fixed kernel gets back there).
    pub baseline_tolerance: f64,
    /// Adaptive end: the count has made no new low for this long, and for
    /// `flat_factor` times the longest wait between two lows seen so far
    /// (cleanup that is visibly progressing in batches gets that long to
    /// show its next batch). 0 turns the adaptive end off.
    #[serde(default)]
    pub flat_ms: u64,
    #[serde(default)]
    pub flat_factor: f64,
}

/// Where the agent runs, which decides how it talks and how it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentMode {
    /// PID 1 in a QEMU guest: mounts, streams on ttyS1, powers off.
    Guest,
    /// A process on the host's running kernel: streams on stdout, exits.
    Host,
}

/// What the host asks the agent to do (`/repro/job.json` in the guest's
/// initramfs, or `--job FILE` on the host backend).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// [`JOB_FORMAT_VERSION`], read before the rest so that an agent of
    /// another format says so instead of a parse error.
    pub format_version: u32,
    pub mode: AgentMode,
    pub task: Task,
}

/// The one thing a job does: churn namespaces (run, check, matrix, bisect)
/// or run one command (`repro exec`). Every command reaches the guest
/// through the same boot and the same session; only this differs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Task {
    Churn(Box<Churn>),
    /// Run this command in the guest and stream its output. argv[0] is a
    /// path inside the guest.
    Exec {
        argv: Vec<String>,
    },
}

/// The churn: the scenario's workload, windows of probes, rounds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Churn {
    pub scenario: Scenario,
    pub iterations: u64,
    pub workers: u32,
    /// Iterations per window: the probe runs each time this many more
    /// namespaces have been churned.
    pub window: u64,
    pub progress_interval_ms: u64,
    /// Kernel modules in the initramfs (absolute paths) to load before the
    /// workload, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub load_modules: Vec<String>,
    /// Count proc_sys_compare() calls per probe open with a kprobe (`--chain-walk`).
    #[serde(default)]
    pub count_chain: bool,
    /// Sequential verdicts: pause the churn after this many iterations (and
    /// after each doubling of it), settle, report a [`Message::Round`] and
    /// go on or stop as the host answers ([`HostMessage::Continue`] or
    /// [`HostMessage::Stop`]). None: churn all `iterations` in one go. Set
    /// only for a scenario that [`Scenario::pauses_in_rounds`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_round: Option<u64>,
    /// After the first round, pause every this many more iterations instead
    /// of at each doubling: the pauses a checkpointed run saves the guest
    /// at (`repro run --checkpoint-every`). None: doublings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round_step: Option<u64>,
}

/// One line the agent streams to the host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    /// First message: the guest is up and speaking our format.
    Hello {
        format_version: u32,
        agent_version: String,
        /// `uname -r` of the kernel the agent runs on.
        release: String,
        /// `uname -v`.
        kernel_version: String,
        cpus: u32,
        mem_total_kib: u64,
        /// The guest's /proc/uptime when the agent said hello: the kernel's
        /// boot to /init plus the agent's start.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        uptime_s: Option<f64>,
    },
    /// The baseline, taken after a warm-up probe and before any churn.
    Started {
        baseline: DentryState,
        /// How chain walks are counted here, or why they are not.
        #[serde(default)]
        chain_counter: Option<String>,
    },
    /// Heartbeat between windows.
    Progress {
        iteration: u64,
        elapsed_s: f64,
        churn_errors: u64,
    },
    Window(Window),
    /// After the churn: cleanup has settled; the probe ran once more.
    Settled(Settled),
    /// A pause of a sequential run: the churn so far has settled and been
    /// probed; the agent waits for the host's Continue or Stop.
    Round(Settled),
    /// A line the command of `repro exec` printed (stdout and stderr merged).
    Output {
        line: String,
    },
    /// The command of `repro exec` ended with this exit code (128 + signal).
    Exited {
        code: i32,
    },
    Done {
        iterations_done: u64,
        elapsed_s: f64,
    },
    /// The agent could not go on; it powers off (guest) or exits after this.
    Error {
        message: String,
    },
}

impl Message {
    /// The last message of a stream: after it the agent waits for the
    /// host's [`HostMessage::Ack`] and then powers off (guest) or exits.
    pub fn is_final(&self) -> bool {
        matches!(self, Message::Done { .. } | Message::Error { .. })
    }
}

/// What the host says back on the protocol channel (guest backend only).
///
/// A guest that powers off right after writing its last message loses
/// whatever the UART and QEMU have not yet moved to the host's socket, and
/// on a busy host that is often the whole `Settled`/`Done` tail. So the
/// host acknowledges the final message ([`Message::is_final`]) once it has
/// read and recorded it, and the agent powers off only after that ack, or
/// after [`ACK_TIMEOUT_S`] when no host answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum HostMessage {
    /// The final message arrived: a guest may power off.
    Ack,
    /// After a Round: churn on to the next round.
    Continue,
    /// After a Round: the verdict is decided; end the run with this round's
    /// settled state.
    Stop,
}

impl HostMessage {
    /// One JSON line, newline included, as written on the wire.
    pub fn line(&self) -> String {
        let mut s = serde_json::to_string(self).expect("a unit variant serialises");
        s.push('\n');
        s
    }
}

/// How long the agent waits for the host's ack before powering off anyway.
/// Longer than any sane scheduling delay on a loaded host; shorter than the
/// host's default stall timeout (2 min), so a lost ack never looks like a hang.
pub const ACK_TIMEOUT_S: u64 = 30;

/// The longest line the host accepts from the agent. The biggest real
/// message (a window with a few probes, or an output line) is a few KiB.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// One probe window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Window {
    /// Namespaces churned so far (completed iterations).
    pub iteration: u64,
    /// Seconds since the churn started.
    pub elapsed_s: f64,
    /// Iterations per second since the previous window.
    pub churn_rate: f64,
    /// Iterations whose child failed (unshare or open), so far.
    pub churn_errors: u64,
    pub nr_dentry: u64,
    pub nr_unused: u64,
    pub probes: Vec<ProbeStats>,
    /// Calls of proc_sys_compare() during one open of the judged probe path:
    /// the hash chain entries that lookup walked (a kprobe; absent where the
    /// kernel has no kprobe events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_walk: Option<u64>,
    /// The guest's free memory (/proc/meminfo MemFree) and slab (Slab),
    /// KiB: what stale dentries cost, so that a long run's memory can be
    /// sized before it starts. Absent in runs recorded before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_free_kib: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slab_kib: Option<u64>,
}

/// The kernel a run booted, and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KernelInfo {
    /// What the user asked for: a catalog name or a path.
    pub name: String,
    /// `uname -r` reported by the agent (None if the guest never spoke).
    pub release: Option<String>,
    pub image: Option<String>,
    pub image_sha256: Option<String>,
    /// e.g. `debian:linux-image-6.1.0-56-cloud-amd64_6.1.192-2_amd64.deb`.
    pub source: String,
    /// How the download it came from was verified (RPMs and source
    /// tarballs repro downloaded), e.g. `RPM signature by centos-7 …`, or
    /// `UNVERIFIED (--insecure-download; …)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<String>,
    /// For a kernel repro built: the tree, its era, compiler, flags and
    /// compatibility fixes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<BuildProvenance>,
    /// For a kernel repro built: the fix its fs/proc/proc_sysctl.c has, read
    /// from the source (None where the form was not recognised).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_fix: Option<SourceFix>,
    /// Where the catalog entry's own source could not be had and its
    /// `fallback` entry was used instead: why, and which.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
}

/// Where the numbers were measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    pub repro_version: String,
    /// RFC 3339, UTC.
    pub date: String,
    pub host_cpu: String,
    pub host_kernel: String,
    pub qemu_version: Option<String>,
    /// The repro command line that made the run (absent in runs recorded before it was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunError {
    /// Stable machine-readable kind, e.g. `guest_panic`.
    pub kind: ErrorKind,
    pub message: String,
    pub exit_code: i32,
}

/// Everything a run produced, as written to `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub format_version: u32,
    pub provenance: Provenance,
    pub kernel: KernelInfo,
    pub backend: Backend,
    /// For QEMU runs; None on the host backend.
    pub accel: Option<Accel>,
    /// Why `--accel auto` did not end on KVM (None when it did, or when the
    /// accelerator was chosen explicitly).
    pub accel_fallback_reason: Option<String>,
    pub guest_cpus: Option<u32>,
    /// Where the run's time went (absent in runs recorded before it was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phases: Option<Phases>,
    /// QEMU's `-cpu` model the guest ran with.
    #[serde(default)]
    pub guest_cpu_model: Option<String>,
    pub guest_memory_mib: Option<u64>,
    pub scenario: String,
    pub scenario_definition: Scenario,
    pub iterations_requested: u64,
    pub iterations_done: u64,
    pub workers: u32,
    pub window: u64,
    pub complete: bool,
    pub error: Option<RunError>,
    pub baseline: Option<DentryState>,
    /// How `chain_walk` was counted (a kprobe on proc_sys_compare), or why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_counter: Option<String>,
    pub windows: Vec<Window>,
    pub settled: Option<Settled>,
    pub residual: Option<Residual>,
    pub duration_s: f64,
    /// The pauses of a sequential run (`Job::first_round`), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rounds: Vec<Round>,
    /// The host stopped the churn early: a round decided the verdict.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stopped_early: bool,
    /// On a churn that slows as the chain grows: when it will finish.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub projection: Option<Projection>,
    /// A checkpointed run's saves of the guest, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checkpoints: Vec<Checkpoint>,
}

/// A churn's projected duration from its windows so far: each iteration
/// costs `t0_s + per_entry_s * x` at chain length x.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Projection {
    pub at_iteration: u64,
    pub t0_s: f64,
    pub per_entry_s: f64,
    /// Seconds of churn for the whole run (`iterations_requested`).
    pub finish_s: f64,
    /// Seconds of churn to reach the write-up's 799,259 entries.
    pub writeup_chain_s: f64,
}

/// One pause of a sequential run, as the summary keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Round {
    pub iteration: u64,
    pub settle_s: f64,
    pub ended: Option<SettleEnd>,
    pub residual: Option<Residual>,
    /// Whether the host stopped the run at this round.
    pub stop: bool,
}

impl Summary {
    /// What the run ran on, for tables: the accelerator of a QEMU run, else
    /// the backend (`host`, or `qemu` for a run that never booted).
    pub fn ran_on(&self) -> &'static str {
        self.accel.map_or(self.backend.as_str(), Accel::as_str)
    }
}

/// The JSON schema every `summary.json` satisfies.
pub const SUMMARY_SCHEMA: &str = include_str!("../schema/summary.schema.json");

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn messages_round_trip_as_tagged_json_lines() {
        let m = Message::Progress { iteration: 10, elapsed_s: 1.5, churn_errors: 0 };
        let line = serde_json::to_string(&m).unwrap();
        assert!(line.starts_with(r#"{"type":"progress""#), "{line}");
        assert_eq!(serde_json::from_str::<Message>(&line).unwrap(), m);
    }

    #[test]
    fn residual_is_signed_per_iteration_growth() {
        let r = Residual::compute(3_901, 30_901, 4_500).unwrap();
        assert!((r.per_iteration - 6.0).abs() < 1e-9);
        let shrunk = Residual::compute(1_000, 900, 100).unwrap();
        assert!(shrunk.per_iteration < 0.0);
        assert!(Residual::compute(1, 2, 0).is_none());
    }
}
