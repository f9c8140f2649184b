//! The job the host hands the agent and the message stream between them:
//! what the agent says (hello, windows, rounds, done) and what the host
//! answers.

use serde::{Deserialize, Serialize};

use crate::procfs::DentryState;
use crate::scenario::Scenario;
use crate::settle::Settled;
use crate::stats::ProbeStats;

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
