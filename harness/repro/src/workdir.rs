//! A session's work directory (the guest's sockets, its initramfs): in the
//! temporary directory as `repro-XXXXXX`, locked for as long as its process
//! lives. A repro killed outright (kill -9, a host going down) cannot remove
//! its own, so each new one removes the ones nobody holds any more.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

const PREFIX: &str = "repro-";
/// A directory younger than this may be one another repro has created and
/// not yet locked: left alone.
const GRACE: Duration = Duration::from_secs(60);

pub(crate) struct WorkDir {
    // Field order: the lock is released after the directory is removed.
    dir: tempfile::TempDir,
    _lock: nix::fcntl::Flock<std::fs::File>,
}

impl WorkDir {
    /// A new work directory under the temporary directory (short, for the
    /// 108-byte socket paths), after sweeping up stale ones.
    pub(crate) fn new() -> Result<WorkDir> {
        let tmp = std::env::temp_dir();
        sweep(&tmp);
        let dir = tempfile::Builder::new().prefix(PREFIX).tempdir_in(&tmp).context("creating a work directory")?;
        let lock = lock(dir.path()).map_err(|e| anyhow::anyhow!("locking the work directory {}: {e}", dir.path().display()))?;
        Ok(WorkDir { dir, _lock: lock })
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }
}

fn lock(dir: &Path) -> Result<nix::fcntl::Flock<std::fs::File>, nix::errno::Errno> {
    let f = std::fs::File::open(dir).map_err(|e| nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0)))?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|(_, e)| e)
}

/// Remove this user's `repro-*` directories that no live repro holds.
fn sweep(tmp: &Path) {
    use std::os::unix::fs::MetadataExt;
    let me = nix::unistd::geteuid().as_raw();
    for e in std::fs::read_dir(tmp).into_iter().flatten().flatten() {
        let name = e.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(PREFIX)) else { continue };
        // tempfile's six random characters, nothing else: not a user's own repro-something.
        if rest.len() != 6 || !rest.chars().all(|c| c.is_ascii_alphanumeric()) {
            continue;
        }
        let Ok(meta) = std::fs::symlink_metadata(e.path()) else { continue };
        let old = meta.modified().ok().and_then(|m| m.elapsed().ok()).is_some_and(|age| age > GRACE);
        if !meta.is_dir() || meta.uid() != me || !old {
            continue;
        }
        if let Ok(held) = lock(&e.path()) {
            match std::fs::remove_dir_all(e.path()) {
                Ok(()) => tracing::debug!("removed {}, left by a repro that was killed", e.path().display()),
                Err(err) => tracing::debug!("could not remove the stale {}: {err}", e.path().display()),
            }
            drop(held);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn age(p: &Path) {
        let old = std::time::SystemTime::now() - Duration::from_secs(3600);
        std::fs::File::open(p).unwrap().set_modified(old).unwrap();
    }

    #[test]
    fn directories_no_live_repro_holds_are_swept_and_held_ones_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let stale = tmp.path().join("repro-AbC123");
        std::fs::create_dir(&stale).unwrap();
        std::fs::write(stale.join("initramfs.cpio"), vec![0u8; 1024]).unwrap();
        age(&stale);
        let held = tmp.path().join("repro-XyZ789");
        std::fs::create_dir(&held).unwrap();
        let _lock = lock(&held).unwrap();
        age(&held);
        let young = tmp.path().join("repro-young1");
        std::fs::create_dir(&young).unwrap();
        let users = tmp.path().join("repro-results");
        std::fs::create_dir(&users).unwrap();
        age(&users);
        sweep(tmp.path());
        assert!(!stale.exists(), "a killed repro's directory stays");
        assert!(held.exists() && young.exists() && users.exists());
    }
}
