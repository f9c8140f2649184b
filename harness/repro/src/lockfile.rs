//! Exclusive locks on cache entries, with a word when one must wait.

use std::fs::File;
use std::path::Path;

use anyhow::{Context, Result};

/// Take the exclusive lock at `path` (created if need be), saying so when
/// another repro holds it and this one has to wait (a second run fetching
/// or building the same kernel waits for the first). Held until dropped.
pub(crate) fn lock(path: &Path, what: &str) -> Result<nix::fcntl::Flock<File>> {
    use nix::fcntl::{Flock, FlockArg};
    let file = File::create(path).with_context(|| format!("creating the lock {}", path.display()))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(l) => Ok(l),
        Err((file, nix::errno::Errno::EWOULDBLOCK)) => {
            tracing::info!("waiting for {what}: another repro holds {}", path.display());
            Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| anyhow::anyhow!("locking {}: {e}", path.display()))
        }
        Err((_, e)) => Err(anyhow::anyhow!("locking {}: {e}", path.display())),
    }
}
