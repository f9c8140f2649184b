//! The measurements a churn makes from the initial namespace: a window
//! (every probe path's open() timed, the dentry counts, memory) and the
//! settle after the churn (the cleanup barrier, or the count watched until
//! it stops falling).

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use nix::fcntl::{open, OFlag};
use nix::sched::{unshare, CloneFlags};
use nix::sys::stat::Mode;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{close, dup2, fork, ForkResult};
use repro_proto::{
    meminfo_kib, Churn, DentryState, Message, Namespace, ProbeOp, ProbeStats, SettleEnd, SettlePoint, Settled, Teardown, Window,
};

use crate::plan::SettleWatch;
use crate::Channel;

/// The probe paths, and the chain-walk counter with the path it counts for.
pub(crate) struct Prober {
    pub paths: Vec<CString>,
    pub judged: Option<CString>,
    pub counter: Option<crate::chain::Counter>,
}

/// The path of the probe a verdict is about ([`repro_proto::Scenario::judged_probe`]).
pub(crate) fn judged_probe(job: &Churn, paths: &[CString]) -> Option<CString> {
    let judged = job.scenario.judged_probe()?;
    let i = job.scenario.probes.iter().position(|p| std::ptr::eq(p, judged))?;
    paths.get(i).cloned()
}

pub(crate) fn window_now(
    job: &Churn,
    prober: &Prober,
    iteration: u64,
    elapsed_s: f64,
    churn_rate: f64,
    churn_errors: u64,
) -> Result<Window, String> {
    let probes = probe(job, &prober.paths);
    let chain_walk = prober.counter.as_ref().zip(prober.judged.as_ref()).and_then(|(c, p)| c.walk(p));
    let ds = dentry_state()?;
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    Ok(Window {
        iteration,
        elapsed_s,
        churn_rate,
        churn_errors,
        nr_dentry: ds.nr_dentry,
        nr_unused: ds.nr_unused,
        probes,
        chain_walk,
        mem_free_kib: meminfo_kib(&meminfo, "MemFree"),
        slab_kib: meminfo_kib(&meminfo, "Slab"),
    })
}

/// Time every probe's operation (an open()+close() of its path, or a
/// namespace's life), interleaved within each of the scenario's
/// [`repro_proto::Scenario::probe_phases`], up to the sample count or the
/// per-probe time budget. Where lives are paced by a teardown
/// ([`repro_proto::Scenario::lives_paced_by_teardown`]) each keeps its
/// namespaces until the next teardown begins.
pub(crate) fn probe(job: &Churn, paths: &[CString]) -> Vec<ProbeStats> {
    let mut sampler = Sampler {
        job,
        paced: job.scenario.lives_paced_by_teardown(),
        samples: vec![Vec::with_capacity(job.scenario.probe.samples as usize); paths.len()],
        spent: vec![Duration::ZERO; paths.len()],
        errors: vec![0u32; paths.len()],
        held: Vec::new(),
        stack: Vec::new(),
    };
    for phase in job.scenario.probe_phases() {
        sampler.phase(paths, &phase);
    }
    let Sampler { samples, errors, .. } = sampler;
    job.scenario.probes.iter().zip(samples).zip(errors).map(|((p, mut s), e)| ProbeStats::from_samples_ns(&p.name, &mut s, e)).collect()
}

/// One probe call's samples so far, per probe.
struct Sampler<'a> {
    job: &'a Churn,
    paced: bool,
    samples: Vec<Vec<u64>>,
    spent: Vec<Duration>,
    errors: Vec<u32>,
    /// The namespaces paced lives left alive; dropping an fd lets one die.
    held: Vec<OwnedFd>,
    /// The stack a paced life's child runs on, allocated at its first use.
    stack: Vec<u8>,
}

impl Sampler<'_> {
    /// Sample these probes, interleaved, until each has its count or all
    /// have spent the budget with at least `min_samples`.
    fn phase(&mut self, paths: &[CString], phase: &[usize]) {
        let settings = &self.job.scenario.probe;
        let budget = Duration::from_millis(settings.budget_ms);
        for n in 0..settings.samples {
            let over_budget = phase.iter().all(|&i| self.spent[i] >= budget);
            if over_budget && n >= settings.min_samples {
                break;
            }
            for &i in phase {
                let (ok, dt) = self.sample(i, &paths[i]);
                self.spent[i] += dt;
                match ok {
                    true => self.samples[i].push(dt.as_nanos() as u64),
                    false => self.errors[i] += 1,
                }
            }
        }
    }

    /// One timed operation of probe `i`: whether it held, and its time.
    fn sample(&mut self, i: usize, path: &CString) -> (bool, Duration) {
        let ProbeOp::Lifecycle { unshare, after } = &self.job.scenario.probes[i].op else {
            return time_open(path);
        };
        // The teardown and the pause are untimed, but spend the probe's budget.
        let t0 = Instant::now();
        let torn = match after {
            Some(t) => {
                // The held namespaces die first; their cleanup overlaps the teardown's creations.
                self.held.clear();
                let torn = tear_down(t);
                std::thread::sleep(Duration::from_millis(Teardown::PAUSE_MS));
                torn
            }
            None => true,
        };
        self.spent[i] += t0.elapsed();
        match (torn, self.paced) {
            (false, _) => (false, Duration::ZERO),
            (true, false) => time_lifecycle(clone_flags(unshare)),
            (true, true) => {
                self.stack.resize(CHILD_STACK, 0);
                time_held_life(unshare, &mut self.held, &mut self.stack)
            }
        }
    }
}

/// One open() of `path`, timed; closed after the clock stops.
fn time_open(path: &CString) -> (bool, Duration) {
    let t0 = Instant::now();
    let fd = open(path.as_c_str(), OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty());
    let dt = t0.elapsed();
    let ok = fd.map(close).is_ok();
    (ok, dt)
}

/// One namespace's life, timed from fork to reaping: the child unshares
/// `flags` and exits, and the namespaces' release runs in its exit (the
/// IPC namespace's mqueue unmount waited a grace period there before 5.7).
fn time_lifecycle(flags: CloneFlags) -> (bool, Duration) {
    let t0 = Instant::now();
    let ok = in_child(|| flags.is_empty() || unshare(flags).is_ok());
    (ok, t0.elapsed())
}

/// A namespace's life as [`time_lifecycle`] times it, but its namespaces
/// outlive it: the child shares the agent's fd table and puts an fd on each
/// new namespace in a slot the agent opened for it, which `held` keeps.
fn time_held_life(kinds: &[Namespace], held: &mut Vec<OwnedFd>, stack: &mut [u8]) -> (bool, Duration) {
    let slots: Vec<OwnedFd> = kinds
        .iter()
        .filter_map(|_| open(c"/dev/null", OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()).ok())
        .map(|fd| {
            // SAFETY: open returned it and nothing else owns it.
            unsafe { OwnedFd::from_raw_fd(fd) }
        })
        .collect();
    if slots.len() != kinds.len() {
        return (false, Duration::ZERO);
    }
    let targets: Vec<(Namespace, RawFd)> = kinds.iter().copied().zip(slots.iter().map(|s| s.as_raw_fd())).collect();
    let flags = clone_flags(kinds);
    let t0 = Instant::now();
    // unshare, open, dup2 and close: nothing allocates in the child.
    let ok = in_child_sharing_files(stack, || {
        unshare(flags).is_ok()
            && targets.iter().all(|&(k, slot)| match open(ns_path(k), OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()) {
                Ok(fd) => {
                    let put = dup2(fd, slot).is_ok();
                    let _ = close(fd);
                    put
                }
                Err(_) => false,
            })
    });
    let dt = t0.elapsed();
    held.extend(slots);
    (ok, dt)
}

/// The stack of a child [`in_child_sharing_files`] starts: a few syscalls.
const CHILD_STACK: usize = 64 * 1024;

/// [`in_child`], but the child shares the agent's fd table (CLONE_FILES),
/// so what it opens outlives it. fork() cannot share one, hence clone.
fn in_child_sharing_files(stack: &mut [u8], mut f: impl FnMut() -> bool) -> bool {
    let cb = Box::new(move || if f() { 0 } else { 1 });
    // SAFETY: the child runs only `f`, async-signal-safe by contract, on
    // `stack` (CHILD_STACK, for a few syscalls), and returns to clone's exit.
    match unsafe { nix::sched::clone(cb, stack, CloneFlags::CLONE_FILES, Some(nix::libc::SIGCHLD)) } {
        Ok(child) => matches!(waitpid(child, None), Ok(WaitStatus::Exited(_, 0))),
        Err(_) => false,
    }
}

/// Fork; the child runs `f` and exits 0 if it held, and the parent reaps
/// it: whether the child exited 0. `f` must be async-signal-safe (no
/// allocation): the agent may have threads when it forks.
fn in_child(f: impl FnOnce() -> bool) -> bool {
    // SAFETY: the child runs only `f`, async-signal-safe by contract, and _exit.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            let code = if f() { 0 } else { 1 };
            unsafe { nix::libc::_exit(code) }
        }
        Ok(ForkResult::Parent { child }) => matches!(waitpid(child, None), Ok(WaitStatus::Exited(_, 0))),
        Err(_) => false,
    }
}

/// A child unshares the teardown's namespaces `count` times, keeping an fd
/// on each new one, and exits: every one of them dies at once, and the
/// kernel cleans them up together (for network namespaces, one cleanup_net
/// batch) while the next sample runs. False if any unshare or open failed.
fn tear_down(t: &Teardown) -> bool {
    let flags = clone_flags(&t.unshare);
    // unshare and open of static paths only: nothing allocates.
    in_child(|| {
        let mut ok = true;
        for _ in 0..t.count {
            ok &= unshare(flags).is_ok();
            for k in &t.unshare {
                // Kept open (never closed): the exit drops them all.
                ok &= open(ns_path(*k), OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()).is_ok();
            }
        }
        ok
    })
}

/// /proc/self/ns/KIND: an fd on it keeps the namespace alive.
fn ns_path(kind: Namespace) -> &'static std::ffi::CStr {
    match kind {
        Namespace::Net => c"/proc/self/ns/net",
        Namespace::Ipc => c"/proc/self/ns/ipc",
        Namespace::Uts => c"/proc/self/ns/uts",
        Namespace::Mnt => c"/proc/self/ns/mnt",
    }
}

/// The unshare(2) flags of these namespace kinds.
fn clone_flags(kinds: &[Namespace]) -> CloneFlags {
    kinds.iter().fold(CloneFlags::empty(), |f, k| {
        f | match k {
            Namespace::Net => CloneFlags::CLONE_NEWNET,
            Namespace::Ipc => CloneFlags::CLONE_NEWIPC,
            Namespace::Uts => CloneFlags::CLONE_NEWUTS,
            Namespace::Mnt => CloneFlags::CLONE_NEWNS,
        }
    })
}

/// Wait until namespace cleanup has finished (nr_dentry back near the
/// baseline, or no longer reaching new lows), within a bound, then probe
/// once more.
pub(crate) fn settle(
    job: &Churn,
    ch: &mut Channel,
    prober: &Prober,
    baseline: u64,
    iterations: u64,
    churn_s: f64,
    errors: u64,
) -> Result<Settled, String> {
    let s = &job.scenario.settle;
    let t0 = Instant::now();
    // The barrier proves cleanup done, and the count it leaves is the
    // answer, however flat (the bug) it is; held fds rule it out and those
    // runs watch the count. Its bound is well inside the host's stall
    // timeout: it sends no heartbeat.
    let barrier = job.scenario.settles_on_barrier().then(|| crate::barrier::cleanup_barrier(Duration::from_millis(s.max_ms.min(30_000))));
    let barrier_failed = match barrier {
        Some(Ok(_)) => {
            let nr_dentry = dentry_state()?.nr_dentry;
            let settle_s = t0.elapsed().as_secs_f64();
            let window = window_now(job, prober, iterations, churn_s + settle_s, 0.0, errors)?;
            let trace = vec![SettlePoint { t_s: settle_s, nr_dentry }];
            let mounts = propagation(job, ch, iterations, churn_s + settle_s, errors)?;
            return Ok(Settled { settle_s, stable: true, ended: Some(SettleEnd::Cleaned), trace, window, barrier_failed: None, mounts });
        }
        Some(Err(why)) => Some(why),
        None => None,
    };
    let first = dentry_state()?.nr_dentry;
    let mut trace = vec![SettlePoint { t_s: 0.0, nr_dentry: first }];
    let mut watch = SettleWatch::new(s, baseline, iterations, first);
    let ended = loop {
        if let Some(end) = watch.end(t0.elapsed().as_secs_f64()) {
            break end;
        }
        std::thread::sleep(Duration::from_millis(s.poll_ms));
        let now = dentry_state()?.nr_dentry;
        let t_s = t0.elapsed().as_secs_f64();
        trace.push(SettlePoint { t_s, nr_dentry: now });
        watch.observe(t_s, now);
        // A heartbeat, so a long settle is not taken for a hung guest.
        ch.send(&Message::Progress { iteration: iterations, elapsed_s: churn_s + t_s, churn_errors: errors });
    };
    let stable = ended != SettleEnd::MaxTime;
    let settle_s = t0.elapsed().as_secs_f64();
    let window = window_now(job, prober, iterations, churn_s + settle_s, 0.0, errors)?;
    let mounts = propagation(job, ch, iterations, churn_s + settle_s, errors)?;
    Ok(Settled { settle_s, stable, ended: Some(ended), trace, window, barrier_failed, mounts })
}

/// The scenario's propagation, grown once the settled window is taken (its
/// teardown would disturb the count the window reads), with heartbeats.
fn propagation(
    job: &Churn,
    ch: &mut Channel,
    iteration: u64,
    elapsed_s: f64,
    errors: u64,
) -> Result<Option<repro_proto::MountReach>, String> {
    let Some(p) = job.scenario.propagation.as_ref() else { return Ok(None) };
    let t0 = Instant::now();
    let beat = || ch.send(&Message::Progress { iteration, elapsed_s: elapsed_s + t0.elapsed().as_secs_f64(), churn_errors: errors });
    crate::mounts::reach(p, beat).map(Some)
}

pub fn dentry_state() -> Result<DentryState, String> {
    DentryState::read()
}

pub fn mem_total_kib() -> Option<u64> {
    meminfo_kib(&std::fs::read_to_string("/proc/meminfo").ok()?, "MemTotal")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dentry_state_parses_first_two_fields() {
        let ds = DentryState::parse("3901\t1200\t45\t0\t10\t0\n").unwrap();
        assert_eq!((ds.nr_dentry, ds.nr_unused), (3901, 1200));
        assert!(DentryState::parse("garbage").is_none());
    }
}
