//! The cleanup barrier: proof that every network namespace whose last
//! reference was dropped before it began has been cleaned up, on any kernel
//! from 3.10 on, so a settle can end the moment cleanup is done instead of
//! waiting out a bound when the dentry count stays flat (the bug).
//!
//! The kernel cleans dead namespaces in `cleanup_net`, on one ordered
//! workqueue, a batch at a time (everything queued when it starts). A
//! sentinel namespace holding one end of a veth pair whose other end is
//! here is destroyed in the first batch that starts after it is queued;
//! its device exit removes the peer here, which is visible. That batch's
//! device exits run before its sysctl tables are unregistered, so one
//! sentinel only proves the earlier batches done; a second sentinel,
//! queued once the first one's peer is gone, lands in the batch after the
//! first's, which starts only when the first's `cleanup_net` has returned:
//! its peer vanishing proves every namespace queued before the barrier
//! cleaned (tables unregistered, dentries pruned or not).

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use nix::sched::{unshare, CloneFlags};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, pipe, read, write, ForkResult};
use rtnetlink::{LinkUnspec, LinkVeth};

/// Run the barrier; its seconds, or why it could not run (then the settle
/// falls back to watching the count).
pub fn cleanup_barrier(limit: Duration) -> Result<f64, String> {
    let t0 = Instant::now();
    for round in 0..2 {
        sentinel(&format!("rbar{round}"), &format!("rbar{round}p"), t0, limit)?;
    }
    Ok(t0.elapsed().as_secs_f64())
}

/// One sentinel: a namespace with `peer`, `name` here; returns once `name` is gone.
fn sentinel(name: &str, peer: &str, t0: Instant, limit: Duration) -> Result<(), String> {
    let (ready_r, ready_w) = pipe().map_err(|e| format!("pipe: {e}"))?;
    let (go_r, go_w) = pipe().map_err(|e| format!("pipe: {e}"))?;
    // SAFETY: the agent is single-threaded; the child only makes syscalls and `_exit`s.
    let child = match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => {
            // Only the parent may hold the write end, or the read below never ends.
            drop(go_w);
            drop(ready_r);
            let ok = unshare(CloneFlags::CLONE_NEWNET).is_ok();
            let _ = write(&ready_w, if ok { b"1" } else { b"0" });
            let mut b = [0u8; 1];
            let _ = read(go_r.as_raw_fd(), &mut b);
            unsafe { nix::libc::_exit(0) }
        }
        ForkResult::Parent { child } => child,
    };
    drop(ready_w);
    drop(go_r);
    let mut b = [0u8; 1];
    let unshared = matches!(read(ready_r.as_raw_fd(), &mut b), Ok(1)) && b[0] == b'1';
    let made = if unshared { veth_into(name, peer, child.as_raw() as u32) } else { Err("unshare in the sentinel failed".into()) };
    // The sentinel exits either way: its namespace's last reference goes.
    drop(go_w);
    let _ = waitpid(child, None);
    made?;
    while has_device(name)? {
        if t0.elapsed() > limit {
            return Err(format!("the sentinel namespace's {name} was still there after {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Whether this namespace has a device `name` (/proc/net/dev: `  name: ...`).
fn has_device(name: &str) -> Result<bool, String> {
    let dev = std::fs::read_to_string("/proc/net/dev").map_err(|e| format!("reading /proc/net/dev: {e}"))?;
    Ok(dev.lines().any(|l| l.trim_start().split(':').next() == Some(name)))
}

/// A veth pair `name`/`peer` here, `peer` moved into process `pid`'s namespace.
fn veth_into(name: &str, peer: &str, pid: u32) -> Result<(), String> {
    crate::veth::with_netlink(|handle| async move {
        handle.link().add(LinkVeth::new(name, peer).build()).execute().await.map_err(|e| format!("adding veth {name}/{peer}: {e}"))?;
        let mut links = handle.link().get().match_name(peer.to_string()).execute();
        let link = links.try_next().await.map_err(|e| format!("finding {peer}: {e}"))?.ok_or(format!("{peer} vanished"))?;
        let moved = handle.link().set(LinkUnspec::new_with_index(link.header.index).setns_by_pid(pid).build()).execute().await;
        if let Err(e) = moved {
            let _ = handle.link().del(link.header.index).execute().await;
            return Err(format!("moving {peer} into the sentinel namespace: {e}"));
        }
        Ok(())
    })
}
