//! The chain-walk counter: how many dcache hash chain entries one lookup
//! of the probe path compares, counted as calls of proc_sys_compare() with
//! a kprobe event (tracefs), as the write-up's authors measured with a
//! module. Only this process's calls are counted (a pid filter), so the
//! churn running beside it does not show up.
//!
//! Where the kernel has no kprobe events (or tracefs), the counter is
//! absent and says why; nothing else changes.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;
use nix::unistd::close;

const EVENT: &str = "p:repro/proc_sys_compare proc_sys_compare";

pub struct Counter {
    dir: PathBuf,
}

impl Counter {
    /// Set up the kprobe, or say why it cannot be.
    pub fn new() -> Result<Counter, String> {
        let dir = tracefs()?;
        let events = dir.join("kprobe_events");
        std::fs::OpenOptions::new()
            .append(true)
            .open(&events)
            .and_then(|mut f| std::io::Write::write_all(&mut f, format!("{EVENT}\n").as_bytes()))
            .map_err(|e| format!("no kprobe on proc_sys_compare ({}: {e}); CONFIG_KPROBE_EVENTS missing?", events.display()))?;
        let ev = dir.join("events/repro/proc_sys_compare");
        write(&ev.join("filter"), &format!("common_pid == {}", std::process::id()))?;
        // Room for long chains: ~32 bytes an event in the ring buffer.
        let _ = write(&dir.join("buffer_size_kb"), "16384");
        Ok(Counter { dir })
    }

    /// proc_sys_compare() calls during one open()+close() of `path`.
    pub fn walk(&self, path: &CString) -> Option<u64> {
        let ev = self.dir.join("events/repro/proc_sys_compare/enable");
        write(&self.dir.join("trace"), "").ok()?;
        write(&ev, "1").ok()?;
        if let Ok(fd) = open(path.as_c_str(), OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()) {
            let _ = close(fd);
        }
        write(&ev, "0").ok()?;
        let text = std::fs::read_to_string(self.dir.join("trace")).ok()?;
        Some(text.lines().filter(|l| !l.starts_with('#') && l.contains("proc_sys_compare")).count() as u64)
    }
}

impl Drop for Counter {
    fn drop(&mut self) {
        let _ = write(&self.dir.join("events/repro/proc_sys_compare/enable"), "0");
        let _ = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.join("kprobe_events"))
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"-:repro/proc_sys_compare\n"));
    }
}

fn write(p: &Path, s: &str) -> Result<(), String> {
    std::fs::write(p, s).map_err(|e| format!("writing {}: {e}", p.display()))
}

/// tracefs, mounted if it is not (the guest mounts nothing by itself).
fn tracefs() -> Result<PathBuf, String> {
    for d in ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"] {
        if Path::new(d).join("kprobe_events").exists() {
            return Ok(PathBuf::from(d));
        }
    }
    let d = Path::new("/sys/kernel/tracing");
    if d.is_dir() {
        use nix::mount::{mount, MsFlags};
        if mount(Some("tracefs"), d, Some("tracefs"), MsFlags::empty(), None::<&str>).is_ok() && d.join("kprobe_events").exists() {
            return Ok(d.to_path_buf());
        }
    }
    Err("no tracefs with kprobe_events (kernel without CONFIG_KPROBE_EVENTS/CONFIG_FTRACE, or not mountable)".into())
}
