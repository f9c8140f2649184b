//! Types shared by the host CLI (`repro`) and the guest agent (`repro-agent`):
//! the job the host hands to the agent, the messages the agent streams back,
//! the run summary written to disk, and the process exit codes.
//!
//! Everything that crosses a process or a file boundary carries
//! [`FORMAT_VERSION`]; bump it whenever a field changes meaning or is removed.

mod bugs;
mod checkpoint;
pub mod exit_codes;
mod kinds;
mod mounts;
mod procfs;
mod protocol;
mod provenance;
mod scenario;
mod settle;
mod source;
mod stats;
mod summary;
mod verdict;

pub use bugs::{Bug, SourceBugs};
pub use checkpoint::Checkpoint;
pub use kinds::{Accel, Backend, ErrorKind};
pub use mounts::{MountReach, Propagation};
pub use procfs::{meminfo_kib, DentryState};
pub use protocol::{AgentMode, Churn, HostMessage, Job, Message, Task, Window, ACK_TIMEOUT_S, MAX_LINE_BYTES};
pub use provenance::{BuildProvenance, Verification};
pub use scenario::{Hold, Namespace, ProbeOp, ProbePath, ProbeSettings, Scenario, SettleSettings, Teardown, VerdictBasis, VerdictSettings};
pub use settle::{Phases, Residual, SettleEnd, SettlePoint, Settled};
pub use source::{Expect, SourceFix};
pub use stats::{percentile_nearest_rank, ProbeStats};
pub use summary::{KernelInfo, Projection, Provenance, Round, RunError, Summary, SUMMARY_SCHEMA};
pub use verdict::{Agreement, Evidence, Outcome, Rule, Verdict};

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
