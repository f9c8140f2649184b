//! Failures that end a command with a specific exit code.
//!
//! Code deep in the stack raises a [`Fail`] with the one-paragraph message a
//! user should read; layers above add `.context(...)`. At the top,
//! [`exit_code_of`] finds the `Fail` in the chain (or a full disk) and maps it
//! to a code from [`repro_proto::exit_codes`].

/// The kinds, with their exit codes, are the guest's and the summary's too:
/// [`repro_proto::ErrorKind`].
pub(crate) use repro_proto::ErrorKind as Kind;

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub(crate) struct Fail {
    pub kind: Kind,
    pub message: String,
}

pub(crate) fn fail(kind: Kind, message: impl Into<String>) -> anyhow::Error {
    Fail { kind, message: message.into() }.into()
}

/// The kind of failure an error chain carries, if any.
pub(crate) fn kind_of(err: &anyhow::Error) -> Option<Kind> {
    for cause in err.chain() {
        if let Some(f) = cause.downcast_ref::<Fail>() {
            return Some(f.kind);
        }
        let io_full = cause.downcast_ref::<std::io::Error>().is_some_and(|io| io.raw_os_error() == Some(nix::libc::ENOSPC));
        let json_full =
            cause.downcast_ref::<serde_json::Error>().is_some_and(|j| j.io_error_kind() == Some(std::io::ErrorKind::StorageFull));
        if io_full || json_full {
            return Some(Kind::DiskFull);
        }
    }
    None
}

pub(crate) fn exit_code_of(err: &anyhow::Error) -> i32 {
    kind_of(err).unwrap_or(Kind::Internal).exit_code()
}

/// The message to print: a full disk gets advice of its own.
pub(crate) fn render(err: &anyhow::Error) -> String {
    let mut msg = format!("{err:#}");
    if kind_of(err) == Some(Kind::DiskFull) && !msg.contains("free space") {
        msg.push_str(
            ": the disk is full; free space (or pass --out on another filesystem) and run again; \
             the samples recorded so far are kept in the run directory",
        );
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;
    use repro_proto::exit_codes as codes;

    #[test]
    fn kind_survives_context_layers() {
        let e = Err::<(), _>(fail(Kind::QemuMissing, "no qemu")).context("booting").unwrap_err();
        assert_eq!(exit_code_of(&e), codes::QEMU_MISSING);
        assert_eq!(format!("{e:#}"), "booting: no qemu");
    }

    #[test]
    fn enospc_anywhere_in_the_chain_is_disk_full() {
        let io = std::io::Error::from_raw_os_error(nix::libc::ENOSPC);
        let e = anyhow::Error::from(io).context("writing samples.jsonl");
        assert_eq!(exit_code_of(&e), codes::DISK_FULL);
        assert!(render(&e).contains("free space"));
    }

    #[test]
    fn other_errors_are_internal() {
        assert_eq!(exit_code_of(&anyhow::anyhow!("boom")), codes::INTERNAL);
    }
}
