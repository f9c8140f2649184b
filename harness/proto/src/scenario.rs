//! A workload as the host hands it to the agent and records it in the
//! summary: what each churned namespace touches, what the probe opens, how
//! the settle decides cleanup is over, and the verdict's settings.

use serde::{Deserialize, Serialize};

use crate::bugs::Bug;

/// A workload: what each churned namespace touches, what the probe opens from
/// the initial namespace, and how the settle phase decides cleanup is over.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Scenario {
    pub name: String,
    /// The regression it tests (the dentry bug unless it says).
    #[serde(default, skip_serializing_if = "Bug::is_default")]
    pub bug: Bug,
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
    /// A bind-mount tree grown by propagation, counted after each settle
    /// (the mount-limit bug).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub propagation: Option<crate::Propagation>,
    pub probes: Vec<ProbePath>,
    pub probe: ProbeSettings,
    pub settle: SettleSettings,
    /// How a run of this scenario is judged (`repro check`).
    #[serde(default)]
    pub verdict: VerdictSettings,
    /// Arguments appended to the guest kernel's command line, after repro's
    /// own (the last of a repeated parameter wins): `rcupdate.rcu_expedited=0`
    /// for a workload that waits on RCU grace periods, which the expedited
    /// ones repro boots with would hide.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kernel_args: Vec<String>,
    /// Config fragments (vm-images/config/) a kernel repro builds from a
    /// tree on disk for this scenario merges after its era's: what the
    /// workload needs that repro's minimal builds leave out (`mqueue`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config: Vec<String>,
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
    /// How far the scenario's propagation grew one mount namespace
    /// ([`crate::MountReach::judge`]): a count, past the fix's limit or
    /// refused at it.
    Mounts,
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

impl VerdictSettings {
    /// Where its basis turns regressed and clean, in a table's words.
    pub fn thresholds(&self) -> String {
        match self.basis {
            VerdictBasis::SettledRatio => format!(">= {}x, <= {}x", self.settled_ratio_regressed, self.settled_ratio_clean),
            VerdictBasis::Residual => format!(">= {}, <= {} per namespace", self.residual_regressed, self.residual_clean),
            VerdictBasis::Mounts => format!("> {} mounts; ENOSPC at or under", crate::MountReach::FIX_LIMIT),
        }
    }
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

    /// Whether its namespace lives are paced by a teardown: a probe follows
    /// one (netns-lock's). Then every life, the control's too, keeps its
    /// namespaces alive (the agent holds them) until the next teardown
    /// begins, so that nothing dies but the teardown's batch, and the
    /// probes are sampled in [`Scenario::probe_phases`]. The bug is in the
    /// creation, so a life's release may wait; where the bug is in the
    /// release (ipc-teardown) no probe follows a teardown and each
    /// namespace dies in its own life.
    pub fn lives_paced_by_teardown(&self) -> bool {
        self.probes.iter().any(|p| p.op.follows_teardown())
    }

    /// The probes' indices in the order the agent samples them: each
    /// phase's probes interleaved, sample by sample, phase after phase.
    /// Usually one phase, so a busy moment of the host meets every probe.
    /// Where lives are paced by a teardown, the probes with no teardown
    /// (the control) go first, while nothing is dying (the settled window
    /// follows the cleanup barrier, and the lives are held), then those
    /// with one. Interleaved, the control's life followed the timed one's,
    /// and on a kernel with the lock it could wait for whatever cleanup the
    /// timed creation had not (the worker takes the namespaces queued when
    /// it starts, so one teardown can be cleaned in two runs): beside a
    /// compile a locked kernel's control floor rose from 5 to 24 ms and it
    /// read clean (2.26x), and a control held and paused like the timed
    /// life read 47-84 ms quiet.
    pub fn probe_phases(&self) -> Vec<Vec<usize>> {
        let all: Vec<usize> = (0..self.probes.len()).collect();
        if !self.lives_paced_by_teardown() {
            return vec![all];
        }
        let (after, before): (Vec<usize>, Vec<usize>) = all.into_iter().partition(|&i| self.probes[i].op.follows_teardown());
        vec![before, after]
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
    /// What is timed: an open of `path` (the default), or a namespace's
    /// whole life (`path` is then empty).
    #[serde(default, skip_serializing_if = "ProbeOp::is_open")]
    pub op: ProbeOp,
}

/// What one probe sample times.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ProbeOp {
    /// open() and close() of the probe's path from the initial namespace.
    #[default]
    Open,
    /// fork, the child unshares these namespaces and exits, the parent
    /// reaps it: creation and teardown of one set of namespaces, the exit's
    /// wait for their release included (none: a plain fork, the control).
    /// With `after`, each sample follows a teardown of many, untimed.
    Lifecycle {
        unshare: Vec<Namespace>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<Teardown>,
    },
}

/// Namespaces torn down all at once right before a timed sample, untimed:
/// a child unshares `unshare` `count` times, keeping each set alive (an fd
/// on /proc/self/ns/KIND), and exits, so that they all die together and
/// the kernel cleans them up as one batch while the sample runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Teardown {
    pub unshare: Vec<Namespace>,
    pub count: u32,
}

impl Teardown {
    /// The most namespaces one teardown may hold open at once: the fds stay
    /// under the guest's default limit of 1,024 with the agent's own.
    pub const MAX_HELD: u32 = 512;

    /// How long the probe waits after the teardown before the timed sample:
    /// the kernel's cleanup worker, woken by the exit, gets to start first.
    /// Without it the timed creation could take net_mutex before
    /// cleanup_net did and never wait (a locked kernel read 4.93x once on a
    /// busy host, and 5-7 ms samples beside 60-90 ms ones on a quiet one);
    /// with it none of 285 samples of a locked kernel escaped the wait,
    /// quiet or beside four CPU hogs (BENCHMARKS.md, "netns-lock"). 20 ms
    /// is several scheduler ticks of the guest, and a fraction of the
    /// cleanup it must overlap (30-150 ms under TCG for 32 namespaces).
    pub const PAUSE_MS: u64 = 20;

    /// Whether the agent can hold it: at least one namespace kind and one
    /// set, and at most [`Teardown::MAX_HELD`] fds.
    pub fn fits(&self) -> bool {
        !self.unshare.is_empty() && self.count >= 1 && (self.unshare.len() as u64) * u64::from(self.count) <= u64::from(Self::MAX_HELD)
    }
}

impl ProbeOp {
    pub fn is_open(&self) -> bool {
        matches!(self, ProbeOp::Open)
    }

    /// Whether each sample follows a teardown (`after_teardown`).
    pub fn follows_teardown(&self) -> bool {
        matches!(self, ProbeOp::Lifecycle { after: Some(_), .. })
    }

    /// Whether its cost grows with the churn: an open walks the hash chain
    /// the churned namespaces leave; a namespace's life costs what the
    /// kernel's paths cost, however much was churned before. A curve is
    /// extrapolated, and a ratio waits for more churn, only for the first.
    pub fn grows_with_churn(&self) -> bool {
        matches!(self, ProbeOp::Open)
    }

    /// Why its settled cost over the control's would be high on a kernel
    /// with the bug (the settled-ratio verdict's words).
    pub fn slower_because(&self) -> &'static str {
        match self {
            ProbeOp::Open => "stale entries stay on the probed hash chain",
            ProbeOp::Lifecycle { .. } => "the namespace's creation or release waits on something the control's does not",
        }
    }

    /// The figure of a settled window that its ratio against the control
    /// compares (the same figure of both). For a namespace's life, the
    /// least sample: the waits these bugs add are in every sample on a
    /// kernel with the bug (a grace period in each IPC namespace's exit, a
    /// batch's cleanup after each teardown), a floor no sample escapes,
    /// while a busy host only ever adds time (a preempted vCPU, a lock
    /// holder's), and least against least drops that noise on both sides;
    /// a fixed kernel's least is its life unhindered. Medians let it
    /// through: a fixed kernel's IPC life read 3.29x the UTS control's
    /// beside a CI run (its least samples, 15 ms against 1.3 ms with the
    /// wait, 1.2-1.9 ms both without: BENCHMARKS.md, "ipc-teardown"). For
    /// an open, the median: its chain walk is microseconds, and the median
    /// is what the dentry bug's thresholds were measured with.
    pub fn settled_us(&self, stats: &crate::ProbeStats) -> f64 {
        match self {
            ProbeOp::Lifecycle { .. } => stats.min_us,
            ProbeOp::Open => stats.p50_us,
        }
    }

    /// [`ProbeOp::settled_us`]'s figure, in the verdict's words.
    pub fn settled_figure(&self) -> &'static str {
        match self {
            ProbeOp::Lifecycle { .. } => "least sample",
            ProbeOp::Open => "median",
        }
    }

    /// What a sample of it is, as printed and charted.
    pub fn timed(&self) -> &'static str {
        match self {
            ProbeOp::Open => "open()",
            ProbeOp::Lifecycle { .. } => "namespace life",
        }
    }
}

impl Scenario {
    /// What the probe named `name` times (an open when no probe has that name).
    pub fn op_of(&self, name: &str) -> ProbeOp {
        self.probes.iter().find(|p| p.name == name).map(|p| p.op.clone()).unwrap_or_default()
    }
}

/// A namespace kind a probe or a churn can unshare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Namespace {
    Net,
    Ipc,
    Uts,
    Mnt,
}

impl Namespace {
    pub const ALL: [Namespace; 4] = [Namespace::Net, Namespace::Ipc, Namespace::Uts, Namespace::Mnt];

    /// Its name in scenario files and `/proc/PID/ns/`.
    pub fn name(self) -> &'static str {
        match self {
            Namespace::Net => "net",
            Namespace::Ipc => "ipc",
            Namespace::Uts => "uts",
            Namespace::Mnt => "mnt",
        }
    }
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
