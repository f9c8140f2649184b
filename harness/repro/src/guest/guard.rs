//! The children a session owns (QEMU or the host agent) and the logs they
//! write: every child is killed and reaped when its [`Guard`] goes, and
//! what it wrote is read back bounded, for errors and diagnoses.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use tokio::process::Child;

use crate::text::tail;

/// A child process (QEMU or the host agent) that is killed and reaped when
/// the guard goes away, however the run ends.
pub(crate) struct Guard {
    pub(super) child: Child,
    pub(super) what: &'static str,
    /// Where its stderr goes.
    stderr_log: PathBuf,
    /// The guest console, for QEMU.
    console_log: Option<PathBuf>,
    /// Keeps console.log under [`CONSOLE_CAP`] while QEMU runs.
    rotation: Option<tokio::task::JoinHandle<()>>,
}

impl Guard {
    /// QEMU, whose console.log is kept under [`CONSOLE_CAP`] while it runs.
    pub(super) fn qemu(child: Child, stderr_log: PathBuf, console_log: PathBuf) -> Guard {
        let console = console_log.clone();
        let rotation = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                if let Ok(true) = rotate_if_over(&console, CONSOLE_CAP) {
                    tracing::warn!("the guest's console passed {} MiB: its last MiB is in {}.1", CONSOLE_CAP >> 20, console.display());
                }
            }
        });
        Guard { child, what: "qemu", stderr_log, console_log: Some(console_log), rotation: Some(rotation) }
    }

    /// The agent on the host's own kernel.
    pub(super) fn host_agent(child: Child, stderr_log: PathBuf) -> Guard {
        Guard { child, what: "repro-agent", stderr_log, console_log: None, rotation: None }
    }

    /// Kill (if still running) and reap.
    pub(crate) async fn stop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            if let Some(pid) = self.child.id() {
                crate::child::kill_group(pid);
            }
            let _ = self.child.start_kill();
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }

    /// Let it exit by itself for up to `grace`, then kill it.
    pub(crate) async fn wait_or_kill(&mut self, grace: Duration) -> Option<ExitStatus> {
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(Ok(s)) => Some(s),
            _ => {
                self.stop().await;
                None
            }
        }
    }

    /// Its stderr and the last console lines, for error messages.
    pub(crate) fn diagnostics(&self) -> String {
        let mut out = String::new();
        let stderr = read_lossy(&self.stderr_log);
        if !stderr.trim().is_empty() {
            out.push_str(&format!("\n--- {} stderr ({}) ---\n{}", self.what, self.stderr_log.display(), tail(&stderr, 15)));
        }
        if let Some(c) = &self.console_log {
            let console = read_lossy(c);
            out.push_str(&format!("\n--- last console lines ({}) ---\n{}", c.display(), tail(&console, 25)));
        }
        out
    }

    pub(super) fn console_panicked(&self) -> bool {
        self.console_log.as_deref().is_some_and(|c| read_lossy(c).contains(repro_proto::PANIC_MARKER))
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(r) = self.rotation.take() {
            r.abort();
        }
        // The async paths stop it properly; this covers early returns.
        if let Some(pid) = self.child.id() {
            crate::child::kill_group(pid);
        }
        let _ = self.child.start_kill();
        let _ = self.child.try_wait();
    }
}

/// At most the last [`LOG_TAIL_BYTES`] of a log the guest or QEMU wrote:
/// a guest that floods its console cannot make repro read gigabytes.
pub(crate) fn read_lossy(p: &Path) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(p) else { return String::new() };
    let len = f.metadata().map_or(0, |m| m.len());
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(LOG_TAIL_BYTES)));
    let mut b = Vec::new();
    let _ = f.take(LOG_TAIL_BYTES).read_to_end(&mut b);
    String::from_utf8_lossy(&b).into_owned()
}

/// The most console.log holds: QEMU appends to it (`append=on`), and past
/// this its last MiB is moved to console.log.1 and it starts over, so a
/// guest flooding its console holds at most this and a MiB on disk.
pub(crate) const CONSOLE_CAP: u64 = 64 << 20;

/// Rotate `path` if it is over `cap` bytes; whether it did. Lines QEMU
/// writes between the copy and the truncation are lost: only a flood gets
/// here.
pub(crate) fn rotate_if_over(path: &Path, cap: u64) -> std::io::Result<bool> {
    if std::fs::metadata(path)?.len() <= cap {
        return Ok(false);
    }
    let tail = read_lossy(path);
    let mut old = path.as_os_str().to_owned();
    old.push(".1");
    std::fs::write(&old, tail)?;
    std::fs::OpenOptions::new().write(true).open(path)?.set_len(0)?;
    Ok(true)
}

/// How much of the end of console.log and QEMU's stderr repro reads.
pub(crate) const LOG_TAIL_BYTES: u64 = 1 << 20;

/// The panic a kernel's IO-APIC timer check ends in when its vCPU got too
/// little CPU time to see the timer tick (TCG on a busy host; `no_timer_check`
/// on the command line skips the check, so it takes an --append that
/// removes it, or a kernel that ignores it).
const TIMER_CHECK_PANIC: &str = "IO-APIC + timer doesn't work";

/// Whether a console shows the host, not the kernel, failing the boot.
pub(crate) fn starved_by_the_host(console: &str) -> bool {
    console.contains(TIMER_CHECK_PANIC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flooded_console_keeps_its_last_mib_and_starts_over() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("console.log");
        std::fs::write(&p, b"early boot\n").unwrap();
        assert!(!rotate_if_over(&p, 1024).unwrap());
        let mut big = vec![b'x'; 3 << 20];
        big.extend_from_slice(b"\nKernel panic - not syncing: the end\n");
        std::fs::write(&p, &big).unwrap();
        assert!(rotate_if_over(&p, 1 << 20).unwrap());
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 0);
        let kept = std::fs::read_to_string(d.path().join("console.log.1")).unwrap();
        assert_eq!(kept.len() as u64, LOG_TAIL_BYTES);
        assert!(kept.ends_with("Kernel panic - not syncing: the end\n"));
    }
}
