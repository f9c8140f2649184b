//! The run's record on disk (`summary.json`), with its JSON schema.

use serde::{Deserialize, Serialize};

use crate::bugs::SourceBugs;
use crate::checkpoint::Checkpoint;
use crate::kinds::{Accel, Backend, ErrorKind};
use crate::procfs::DentryState;
use crate::protocol::Window;
use crate::provenance::BuildProvenance;
use crate::scenario::Scenario;
use crate::settle::{Phases, Residual, SettleEnd, Settled};
use crate::source::SourceFix;

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
    /// For a kernel repro built: whether its source has each sibling bug.
    #[serde(default, skip_serializing_if = "SourceBugs::is_empty")]
    pub source_bugs: SourceBugs,
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
