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
