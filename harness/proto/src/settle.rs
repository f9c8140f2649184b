//! What a settle phase ends with, what remains after it, and where a
//! run's time went.

use serde::{Deserialize, Serialize};

use crate::protocol::Window;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settled {
    /// How long the settle phase waited.
    pub settle_s: f64,
    /// Whether nr_dentry stopped falling before the bound.
    pub stable: bool,
    /// What ended the settle phase (absent in runs recorded before it was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<SettleEnd>,
    /// nr_dentry at every poll of the settle phase.
    #[serde(default)]
    pub trace: Vec<SettlePoint>,
    pub window: Window,
    /// Why the cleanup barrier could not run (then the count decided).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub barrier_failed: Option<String>,
    /// The scenario's propagation, measured after the settle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mounts: Option<crate::MountReach>,
}

impl Settled {
    /// Whether a guest's settle is one `scenario` could have produced: its
    /// window's figures, and the mount count exactly where it asked for one.
    pub fn check(&self, scenario: &crate::Scenario) -> Result<(), String> {
        self.window.check()?;
        match (&scenario.propagation, &self.mounts) {
            (Some(asked), Some(m)) => m.check(asked),
            (None, None) => Ok(()),
            (Some(_), None) => Err("a settle without the mount count the scenario asks for".into()),
            (None, Some(_)) => Err("a mount count the scenario did not ask for".into()),
        }
    }
}

/// Where a run's time went, in seconds: the host's clock, except the
/// guest's own uptime at hello.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Phases {
    /// From the command's start to starting QEMU (or the host agent):
    /// resolving the kernel (a fetch or a build) and writing the initramfs.
    /// Mostly before the run directory exists, so outside `duration_s`;
    /// the phases after it add up to about `duration_s`.
    pub prepare_s: f64,
    /// KVM proofs that failed before --accel auto fell back to TCG.
    pub kvm_proof_s: f64,
    /// From starting QEMU (or the host agent) to the agent's hello.
    pub boot_s: f64,
    /// The guest's uptime at hello: its kernel's boot to the agent, within `boot_s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest_uptime_at_hello_s: Option<f64>,
    /// From the hello to the baseline (the warm-up probe).
    pub baseline_s: f64,
    /// From the baseline to the last settle's end, the settles left out: churn and probes.
    pub churn_s: f64,
    /// Every settle, the rounds' and the last.
    pub settle_s: f64,
}

/// What ended a settle phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SettleEnd {
    /// The cleanup barrier proved every churned namespace cleaned up: the
    /// count then is final, whether it came back or stayed (the bug).
    Cleaned,
    /// nr_dentry came back within the tolerance of the baseline.
    Baseline,
    /// No new low for the adaptive flat interval.
    Flat,
    /// No new low for `stable_polls` polls.
    StablePolls,
    /// The phase's upper bound (`max`): cleanup may not be over.
    MaxTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SettlePoint {
    /// Seconds since the settle phase began.
    pub t_s: f64,
    pub nr_dentry: u64,
}

/// What remains after settling, per churned namespace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Residual {
    pub nr_dentry_before: u64,
    pub nr_dentry_after: u64,
    pub per_iteration: f64,
}

impl Residual {
    pub fn compute(before: u64, after: u64, iterations: u64) -> Option<Residual> {
        (iterations > 0).then(|| Residual {
            nr_dentry_before: before,
            nr_dentry_after: after,
            per_iteration: (after as f64 - before as f64) / iterations as f64,
        })
    }
}
