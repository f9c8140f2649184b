//! Failures that end a command with a specific exit code.
//!
//! Code deep in the stack raises a [`Fail`] with the one-paragraph message a
//! user should read; layers above add `.context(...)`. At the top,
//! [`exit_code_of`] finds the `Fail` in the chain (or a full disk) and maps it
//! to a code from [`repro_proto::exit_codes`].

/// The kinds, with their exit codes, are the guest's and the summary's too:
/// [`repro_proto::ErrorKind`].
pub(crate) use repro_proto::ErrorKind as Kind;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub(crate) struct Fail {
    pub kind: Kind,
    pub message: String,
}

pub(crate) fn fail(kind: Kind, message: impl Into<String>) -> anyhow::Error {
    Fail { kind, message: message.into() }.into()
}

/// The kind of failure an error chain carries, if any. A full, over-quota
/// or read-only filesystem anywhere in the chain is the environment's,
/// whatever the step that met it called it: it would fail on any kernel.
pub(crate) fn kind_of(err: &anyhow::Error) -> Option<Kind> {
    let no_room = |cause: &(dyn std::error::Error + 'static)| {
        // By errno, or by kind where a wrapper (tempfile's path errors) keeps only that.
        let io = cause.downcast_ref::<std::io::Error>().is_some_and(|io| {
            matches!(io.raw_os_error(), Some(nix::libc::ENOSPC | nix::libc::EDQUOT | nix::libc::EROFS))
                || matches!(
                    io.kind(),
                    std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded | std::io::ErrorKind::ReadOnlyFilesystem
                )
        });
        let json = cause.downcast_ref::<serde_json::Error>().is_some_and(|j| j.io_error_kind() == Some(std::io::ErrorKind::StorageFull));
        let said = cause.downcast_ref::<Fail>().is_some_and(|f| f.kind == Kind::DiskFull);
        io || json || said
    };
    if err.chain().any(no_room) {
        return Some(Kind::DiskFull);
    }
    err.chain().find_map(|c| c.downcast_ref::<Fail>()).map(|f| f.kind)
}

/// After a step that writes under `dir` failed: if that filesystem is
/// (nearly) full or read-only, the failure is the environment's, whatever
/// the step said (a child such as apt-get or make only reports its exit
/// status), and the message names the place and its free space.
pub(crate) fn with_room_check(err: anyhow::Error, dir: &Path) -> anyhow::Error {
    const LOW: u64 = 64 << 20;
    if kind_of(&err) == Some(Kind::DiskFull) {
        return err;
    }
    let Some(existing) = dir.ancestors().find(|a| a.exists()) else { return err };
    let Ok(st) = nix::sys::statvfs::statvfs(existing) else { return err };
    let free = st.blocks_available() * st.fragment_size();
    let read_only = st.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY);
    if !read_only && free >= LOW {
        return err;
    }
    let why = if read_only { "is read-only".to_string() } else { format!("has {} MiB free", free >> 20) };
    fail(
        Kind::DiskFull,
        format!("{err:#}; {} {why}: free space there, or point --cache-dir at a disk with room, and run again", existing.display()),
    )
}

pub(crate) fn exit_code_of(err: &anyhow::Error) -> i32 {
    kind_of(err).unwrap_or(Kind::Internal).exit_code()
}

/// The message to print, terminal-safe (an error may quote a guest's
/// console): a full disk gets advice of its own.
pub(crate) fn render(err: &anyhow::Error) -> String {
    let mut msg = crate::text::terminal_safe(&format!("{err:#}"));
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
    fn a_full_disk_outranks_what_the_step_called_it() {
        let io = std::io::Error::from_raw_os_error(nix::libc::ENOSPC);
        let e = anyhow::Error::from(io).context(Fail { kind: Kind::KernelUnavailable, message: "cannot download".into() });
        assert_eq!(kind_of(&e), Some(Kind::DiskFull));
        let ro = anyhow::Error::from(std::io::Error::from_raw_os_error(nix::libc::EROFS));
        assert_eq!(kind_of(&ro), Some(Kind::DiskFull));
        // tempfile wraps the errno in a path error that keeps only its kind.
        let wrapped = std::io::Error::new(std::io::ErrorKind::StorageFull, "No space left on device (os error 28) at path x");
        assert_eq!(kind_of(&anyhow::Error::from(wrapped)), Some(Kind::DiskFull));
        // A child's failure says nothing of why; the filesystem's free space does.
        let child = fail(Kind::KernelUnavailable, "apt-get download failed (exit status: 100)");
        assert_eq!(kind_of(&with_room_check(child, Path::new("/proc/self"))), Some(Kind::DiskFull), "procfs has no free space");
        let child = fail(Kind::KernelUnavailable, "apt-get download failed (exit status: 100)");
        let d = tempfile::tempdir().unwrap();
        assert_eq!(kind_of(&with_room_check(child, d.path())), Some(Kind::KernelUnavailable));
    }

    #[test]
    fn other_errors_are_internal() {
        assert_eq!(exit_code_of(&anyhow::anyhow!("boom")), codes::INTERNAL);
    }
}
