//! The mount-limit bug's measurement: a shared tmpfs bound into itself
//! until the kernel refuses or the binds run out, in a child with a mount
//! namespace of its own, and the mounts counted in /proc/self/mountinfo.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::{unshare, CloneFlags};
use nix::sys::stat::Mode;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult};
use repro_proto::{MountReach, Propagation};

/// Where the tree grows: a directory of the guest's rootfs, mounted over
/// only inside the child's namespace.
const TOP: &std::ffi::CStr = c"/tmp/repro-propagation";
const INNER: &std::ffi::CStr = c"/tmp/repro-propagation/a";

/// How often the parent calls `heartbeat` while the child grows the tree
/// and tears it down: 131,071 mounts took over two minutes under TCG on a
/// busy host, past the host's stall timeout for a silent guest.
const HEARTBEAT: Duration = Duration::from_secs(5);

/// Grow the tree in a child and report how far it got; Err where the
/// child could not set up (no mount namespace, no tmpfs) or died. The
/// child's exit tears the whole tree down with its namespace. `heartbeat`
/// runs every few seconds meanwhile (the host's sign of life).
pub(crate) fn reach(p: &Propagation, mut heartbeat: impl FnMut()) -> Result<MountReach, String> {
    let (rx, tx) = nix::unistd::pipe().map_err(|e| format!("pipe: {e}"))?;
    // SAFETY: the child makes syscalls on static paths and a stack buffer
    // only (nothing allocates), writes its answer and _exits.
    match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => {
            drop(rx);
            let answer = match grow(p.binds) {
                Ok((binds, mounts, refused)) => [0, u64::from(binds), mounts, refused.map_or(0, |e| e as u64)],
                Err(e) => [1, e as u64, 0, 0],
            };
            let mut bytes = [0u8; 32];
            for (chunk, v) in bytes.chunks_exact_mut(8).zip(answer) {
                chunk.copy_from_slice(&v.to_ne_bytes());
            }
            let _ = nix::unistd::write(&tx, &bytes);
            // SAFETY: leave without running the parent's atexit handlers.
            unsafe { nix::libc::_exit(0) }
        }
        ForkResult::Parent { child } => {
            drop(tx);
            let answer = read_answer(&rx, &mut heartbeat);
            let status = reap(child, &mut heartbeat);
            match (answer, status) {
                (Some([0, binds, mounts, refused]), Ok(WaitStatus::Exited(_, 0))) => {
                    Ok(MountReach { binds: binds as u32, mounts, refused: (refused != 0).then_some(refused as i32) })
                }
                (Some([1, errno, ..]), _) => Err(format!("setting up the propagation tree: {}", Errno::from_raw(errno as i32).desc())),
                (_, status) => Err(format!("the propagation child ended without an answer ({status:?})")),
            }
        }
    }
}

/// The child's exit status, `heartbeat` every [`HEARTBEAT`] meanwhile.
fn reap(child: nix::unistd::Pid, heartbeat: &mut impl FnMut()) -> nix::Result<WaitStatus> {
    let mut last = Instant::now();
    loop {
        match waitpid(child, Some(WaitPidFlag::WNOHANG))? {
            WaitStatus::StillAlive => std::thread::sleep(Duration::from_millis(50)),
            done => return Ok(done),
        }
        if last.elapsed() >= HEARTBEAT {
            heartbeat();
            last = Instant::now();
        }
    }
}

/// The child's four numbers, `heartbeat` every [`HEARTBEAT`] of waiting.
fn read_answer(rx: &OwnedFd, heartbeat: &mut impl FnMut()) -> Option<[u64; 4]> {
    let mut buf = [0u8; 32];
    let mut got = 0;
    while got < buf.len() {
        let mut fds = [PollFd::new(rx.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::try_from(HEARTBEAT.as_millis() as i32).unwrap_or(PollTimeout::NONE)) {
            Ok(0) => {
                heartbeat();
                continue;
            }
            Err(Errno::EINTR) => continue,
            Err(_) => return None,
            Ok(_) => {}
        }
        match nix::unistd::read(rx.as_raw_fd(), &mut buf[got..]) {
            Ok(0) => return None,
            Ok(n) => got += n,
            Err(Errno::EINTR) => {}
            Err(_) => return None,
        }
    }
    let mut out = [0u64; 4];
    for (v, chunk) in out.iter_mut().zip(buf.chunks_exact(8)) {
        *v = u64::from_ne_bytes(chunk.try_into().ok()?);
    }
    Some(out)
}

/// In the child: a private copy of the mounts, a shared tmpfs at TOP, then
/// `binds` binds of TOP onto INNER, each doubling the tree; stops at the
/// first refused. (binds done, mounts they added, errno of the refused).
fn grow(binds: u32) -> Result<(u32, u64, Option<i32>), Errno> {
    unshare(CloneFlags::CLONE_NEWNS)?;
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)?;
    let _ = nix::unistd::mkdir(c"/tmp", Mode::from_bits_truncate(0o755));
    let _ = nix::unistd::mkdir(TOP, Mode::from_bits_truncate(0o755));
    mount(Some("tmpfs"), TOP, Some("tmpfs"), MsFlags::empty(), Some("size=64k"))?;
    mount(None::<&str>, TOP, None::<&str>, MsFlags::MS_SHARED, None::<&str>)?;
    nix::unistd::mkdir(INNER, Mode::from_bits_truncate(0o755))?;
    let before = count_mounts()?;
    let mut done = 0;
    let mut refused = None;
    while done < binds {
        match mount(Some(TOP), INNER, None::<&str>, MsFlags::MS_BIND, None::<&str>) {
            Ok(()) => done += 1,
            Err(e) => {
                refused = Some(e as i32);
                break;
            }
        }
    }
    Ok((done, count_mounts()?.saturating_sub(before), refused))
}

/// Lines of /proc/self/mountinfo, read through a stack buffer.
fn count_mounts() -> Result<u64, Errno> {
    let fd = nix::fcntl::open(c"/proc/self/mountinfo", nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC, Mode::empty())?;
    let mut buf = [0u8; 16384];
    let mut lines = 0u64;
    let counted = loop {
        match nix::unistd::read(fd.as_raw_fd(), &mut buf) {
            Ok(0) => break Ok(lines),
            Ok(n) => lines += buf[..n].iter().filter(|b| **b == b'\n').count() as u64,
            Err(Errno::EINTR) => {}
            Err(e) => break Err(e),
        }
    };
    counted
}
