//! The closed sets that cross the host/guest/disk boundary: where a run
//! ran, under which accelerator, and why it failed. Each is written by its
//! name in summary.json, and code matches on the variant, never the text.

use serde::{Deserialize, Serialize};

use crate::exit_codes;

macro_rules! display_as_str {
    ($($t:ty),*) => {$(
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )*};
}
display_as_str!(Backend, Accel, ErrorKind);

/// Where a run ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// A QEMU guest on the kernel under test.
    Qemu,
    /// The machine's own kernel, no VM.
    Host,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Qemu => "qemu",
            Backend::Host => "host",
        }
    }
}

/// The accelerator a QEMU guest ran under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// Why a run or a command failed: each kind has one exit code, chosen in
/// one exhaustive match, so a new kind cannot be added without choosing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    KernelUnavailable,
    ImageInvalid,
    QemuMissing,
    ScenarioInvalid,
    GuestPanic,
    GuestHung,
    GuestFailed,
    /// The guest failed because the host starved it of CPU time (a busy
    /// host under TCG), not because of its kernel.
    HostStarved,
    DiskFull,
    Permission,
    BuildFailed,
    /// A download or cached file that does not verify.
    Unverified,
    /// The command line asks for something that cannot be done as asked.
    Usage,
    Interrupted,
    /// The run saved the guest and stopped, as asked: `repro resume` continues it.
    Checkpointed,
    /// A bug in repro, or a failure nothing above classified.
    Internal,
}

impl ErrorKind {
    pub fn exit_code(self) -> i32 {
        use exit_codes as c;
        match self {
            ErrorKind::KernelUnavailable => c::KERNEL_UNAVAILABLE,
            ErrorKind::ImageInvalid => c::IMAGE_INVALID,
            ErrorKind::QemuMissing => c::QEMU_MISSING,
            ErrorKind::ScenarioInvalid => c::SCENARIO_INVALID,
            ErrorKind::GuestPanic => c::GUEST_PANIC,
            ErrorKind::GuestHung => c::GUEST_HUNG,
            ErrorKind::GuestFailed => c::GUEST_FAILED,
            ErrorKind::HostStarved => c::HOST_STARVED,
            ErrorKind::DiskFull => c::DISK_FULL,
            ErrorKind::Permission => c::PERMISSION,
            ErrorKind::BuildFailed => c::BUILD_FAILED,
            ErrorKind::Unverified => c::KERNEL_UNAVAILABLE,
            ErrorKind::Usage => c::USAGE,
            ErrorKind::Interrupted => c::INTERRUPTED,
            ErrorKind::Checkpointed => c::CHECKPOINTED,
            ErrorKind::Internal => c::INTERNAL,
        }
    }

    /// The name summary.json uses, e.g. `guest_panic`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::KernelUnavailable => "kernel_unavailable",
            ErrorKind::ImageInvalid => "image_invalid",
            ErrorKind::QemuMissing => "qemu_missing",
            ErrorKind::ScenarioInvalid => "scenario_invalid",
            ErrorKind::GuestPanic => "guest_panic",
            ErrorKind::GuestHung => "guest_hung",
            ErrorKind::GuestFailed => "guest_failed",
            ErrorKind::HostStarved => "host_starved",
            ErrorKind::DiskFull => "disk_full",
            ErrorKind::Permission => "permission",
            ErrorKind::BuildFailed => "build_failed",
            ErrorKind::Unverified => "unverified",
            ErrorKind::Usage => "usage",
            ErrorKind::Interrupted => "interrupted",
            ErrorKind::Checkpointed => "checkpointed",
            ErrorKind::Internal => "internal",
        }
    }

    /// Whether this is what a signal asks of a run, done: the run saved its
    /// guest and stopped (75, resumable), so the command keeps this kind's
    /// code; any other error after Ctrl-C or SIGTERM is the interruption's
    /// (130), whatever a step made of being interrupted.
    pub fn answers_a_signal(self) -> bool {
        match self {
            ErrorKind::Checkpointed => true,
            ErrorKind::KernelUnavailable
            | ErrorKind::ImageInvalid
            | ErrorKind::QemuMissing
            | ErrorKind::ScenarioInvalid
            | ErrorKind::GuestPanic
            | ErrorKind::GuestHung
            | ErrorKind::GuestFailed
            | ErrorKind::HostStarved
            | ErrorKind::DiskFull
            | ErrorKind::Permission
            | ErrorKind::BuildFailed
            | ErrorKind::Unverified
            | ErrorKind::Usage
            | ErrorKind::Interrupted
            | ErrorKind::Internal => false,
        }
    }

    /// Whether the failure would happen whatever the kernel (no QEMU, a bad
    /// scenario, a full disk, no permission, repro's own bug, Ctrl-C):
    /// then there is no kernel to judge, and `check` must not call it
    /// inconclusive. Everything the kernel under test causes (it does not
    /// build, boot, or answer) is a verdict of "cannot test".
    pub fn is_kernel_independent(self) -> bool {
        match self {
            ErrorKind::QemuMissing
            | ErrorKind::ScenarioInvalid
            | ErrorKind::DiskFull
            | ErrorKind::HostStarved
            | ErrorKind::Permission
            | ErrorKind::Usage
            | ErrorKind::Interrupted
            | ErrorKind::Checkpointed
            | ErrorKind::Internal => true,
            ErrorKind::KernelUnavailable
            | ErrorKind::ImageInvalid
            | ErrorKind::GuestPanic
            | ErrorKind::GuestHung
            | ErrorKind::GuestFailed
            | ErrorKind::BuildFailed
            | ErrorKind::Unverified => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_are_written_as_their_names() {
        for k in [ErrorKind::GuestPanic, ErrorKind::Internal, ErrorKind::KernelUnavailable] {
            assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{}\"", k.as_str()));
        }
        assert_eq!(serde_json::to_string(&Backend::Qemu).unwrap(), "\"qemu\"");
        assert_eq!(serde_json::from_str::<Accel>("\"tcg\"").unwrap(), Accel::Tcg);
    }
}
