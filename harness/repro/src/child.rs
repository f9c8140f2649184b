//! The one way repro owns a child process (QEMU, the host agent, make, the
//! command `repro watch` runs beside it): in a process group of its own, so
//! a terminal's Ctrl-C reaches repro alone, which then stops the child
//! itself; told by the kernel when repro dies however it dies (SIGKILL,
//! the OOM killer, a closed terminal), through PR_SET_PDEATHSIG; and, where
//! repro drops it, its whole group killed.

use nix::sys::signal::Signal;
use nix::unistd::Pid;

/// Prepare `cmd` (std or tokio): own process group, `on_parent_death`
/// delivered to it when repro's thread that spawned it exits. SIGKILL for
/// QEMU and agents; SIGTERM for make, which then deletes the target it was
/// writing.
pub(crate) fn own(cmd: &mut std::process::Command, on_parent_death: Signal) {
    use std::os::unix::process::CommandExt;
    cmd.process_group(0);
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || nix::sys::prctl::set_pdeathsig(on_parent_death).map_err(std::io::Error::from));
    }
}

/// [`own`] for a tokio command.
pub(crate) fn own_async(cmd: &mut tokio::process::Command, on_parent_death: Signal) {
    cmd.process_group(0);
    // SAFETY: as in `own`.
    unsafe {
        cmd.pre_exec(move || nix::sys::prctl::set_pdeathsig(on_parent_death).map_err(std::io::Error::from));
    }
}

/// SIGKILL the process group led by `pid` (a child made by [`own`]): the
/// child and whatever it started.
pub(crate) fn kill_group(pid: u32) {
    let _ = nix::sys::signal::killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
}

/// Run `cmd` to its end as an owned child ([`own`], SIGTERM if repro dies)
/// with its output captured: the one way repro runs a short-lived tool
/// (git, apt-get, a compiler's --version, qemu --version, make's queries).
/// The wait honours the process-wide interrupt and `limit`: either stops
/// the child's whole process group, and the error says which (`what` names
/// the step). stdin is closed.
pub(crate) fn output(cmd: &mut std::process::Command, what: &str, limit: std::time::Duration) -> anyhow::Result<std::process::Output> {
    use std::io::Read;
    use std::process::Stdio;
    own(cmd, Signal::SIGTERM);
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    // Drained while it runs, so a chatty child never blocks on a full pipe.
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>));
    let err = drain(child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>));
    let t0 = std::time::Instant::now();
    let stop = |child: &mut std::process::Child| {
        let _ = nix::sys::signal::killpg(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        std::thread::sleep(std::time::Duration::from_millis(200));
        kill_group(child.id());
        let _ = child.wait();
    };
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if crate::interrupt::requested() {
            stop(&mut child);
            return Err(crate::error::fail(crate::error::Kind::Interrupted, format!("{} during {what}", crate::interrupt::why())));
        }
        if t0.elapsed() >= limit {
            stop(&mut child);
            anyhow::bail!("{what} did not finish within {}; stopped it", humantime::format_duration(limit));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    Ok(std::process::Output { status, stdout: out.join().unwrap_or_default(), stderr: err.join().unwrap_or_default() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tool_that_hangs_is_stopped_at_its_limit_with_its_whole_group() {
        let t0 = std::time::Instant::now();
        let mut cmd = std::process::Command::new("sh");
        cmd.args(["-c", "sleep 30 & sleep 30"]);
        let e = output(&mut cmd, "a hung tool", std::time::Duration::from_millis(300)).unwrap_err();
        assert!(format!("{e:#}").contains("did not finish within"), "{e:#}");
        assert!(t0.elapsed() < std::time::Duration::from_secs(5));
        let o = output(std::process::Command::new("sh").args(["-c", "echo out; echo err >&2"]), "echo", std::time::Duration::from_secs(10))
            .unwrap();
        assert_eq!((o.stdout.as_slice(), o.stderr.as_slice()), (&b"out\n"[..], &b"err\n"[..]));
    }
}
