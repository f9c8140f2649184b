//! A checkpointed run's saves, as the summary keeps them: where in the run
//! each was taken, how large the guest's saved state is, and how long the
//! save and the restore took (`repro run --checkpoint-every`, `repro resume`).

use serde::{Deserialize, Serialize};

/// One save of the guest's whole state at a round boundary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The iteration the churn had reached (a round's pause).
    pub iteration: u64,
    /// When it was saved (RFC 3339, the host's clock).
    pub saved_at: String,
    /// Bytes of the compressed guest state file.
    pub state_bytes: u64,
    /// Seconds from stopping the guest to the file being complete.
    pub save_s: f64,
    /// Seconds to load it back into a new QEMU, once a resume has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_s: Option<f64>,
    /// Whether the run stopped after this save (asked to by a signal or
    /// --stop-after), to be continued by `repro resume`.
    pub stopped: bool,
}
