//! The churn workload, the probe and the settle phase.
//!
//! Churn: `workers` processes each claim iterations from a counter in shared
//! memory; an iteration forks a child that unshares a new network namespace,
//! opens and reads the scenario's sysctl files and exits, and the worker
//! reaps it. The main process never churns: it watches the counter of
//! finished iterations and runs the probe from the initial namespace each
//! time a window's worth of namespaces has been churned.

use std::ffi::CString;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::fcntl::{open, OFlag};
use nix::sched::{unshare, CloneFlags};
use nix::sys::mman::{mmap_anonymous, MapFlags, ProtFlags};
use nix::sys::stat::Mode;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{close, fork, read, ForkResult};
use repro_proto::{DentryState, Job, Message, ProbeStats, SettlePoint, Settled, Window};

use crate::Channel;

/// Counters shared between the main process and the workers.
struct Shared {
    claimed: AtomicU64,
    done: AtomicU64,
    errors: AtomicU64,
}

fn shared_counters() -> Result<&'static Shared, String> {
    let len = NonZeroUsize::new(std::mem::size_of::<Shared>()).unwrap();
    // SAFETY: a fresh anonymous shared mapping, zero-filled, which is a valid
    // `Shared` (three zero atomics); it lives until the process exits.
    unsafe {
        let p = mmap_anonymous(None, len, ProtFlags::PROT_READ | ProtFlags::PROT_WRITE, MapFlags::MAP_SHARED)
            .map_err(|e| format!("mmap of the shared counters: {e}"))?;
        Ok(&*(p.as_ptr() as *const Shared))
    }
}

fn cpaths(paths: impl IntoIterator<Item = impl AsRef<str>>) -> Result<Vec<CString>, String> {
    paths.into_iter().map(|p| CString::new(p.as_ref()).map_err(|_| format!("path with a NUL byte: {:?}", p.as_ref()))).collect()
}

pub fn run(job: &Job, ch: &mut Channel) -> Result<(), String> {
    let sc = &job.scenario;
    let touch = cpaths(&sc.touch)?;
    let probe_paths = cpaths(sc.probes.iter().map(|p| &p.path))?;

    check_namespaces_work(&touch)?;
    // Warm the probe paths' dentries so that the baseline includes them.
    probe(job, &probe_paths);
    let baseline = dentry_state()?;
    ch.send(&Message::Started { baseline });

    let shared = shared_counters()?;
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..job.workers.max(1) {
        // SAFETY: the agent is single-threaded; the worker only runs
        // `worker_loop` and exits.
        match unsafe { fork() }.map_err(|e| format!("fork of a churn worker: {e}"))? {
            ForkResult::Child => {
                // Die with the agent (host mode: Ctrl-C, kill).
                let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
                worker_loop(shared, job.iterations, &touch);
                // SAFETY: leave without running the parent's atexit handlers.
                unsafe { nix::libc::_exit(0) };
            }
            ForkResult::Parent { child } => workers.push(child),
        }
    }

    let window = job.window.max(1);
    let progress_every = Duration::from_millis(job.progress_interval_ms.max(100));
    let mut next_window = window;
    let mut last_progress = Instant::now();
    let (mut last_iter, mut last_t) = (0u64, 0.0f64);
    loop {
        let done = shared.done.load(Ordering::Acquire);
        let finished = done >= job.iterations;
        if done >= next_window || (finished && done > last_iter) {
            let elapsed = start.elapsed().as_secs_f64();
            let rate = (done - last_iter) as f64 / (elapsed - last_t).max(1e-9);
            let w = window_now(job, &probe_paths, done, elapsed, rate, shared.errors.load(Ordering::Relaxed))?;
            ch.send(&Message::Window(w));
            (last_iter, last_t) = (done, elapsed);
            next_window = (done / window + 1) * window;
        } else if last_progress.elapsed() >= progress_every {
            ch.send(&Message::Progress {
                iteration: done,
                elapsed_s: start.elapsed().as_secs_f64(),
                churn_errors: shared.errors.load(Ordering::Relaxed),
            });
            last_progress = Instant::now();
        }
        if finished {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    for w in workers {
        let _ = waitpid(w, None);
    }
    let churn_s = start.elapsed().as_secs_f64();
    let iterations_done = shared.done.load(Ordering::Acquire);
    let errors = shared.errors.load(Ordering::Relaxed);
    if errors == iterations_done && iterations_done > 0 {
        return Err(format!("every one of {iterations_done} churn iterations failed (unshare or open in the new namespace)"));
    }

    let settled = settle(job, ch, &probe_paths, baseline.nr_dentry, iterations_done, churn_s, errors)?;
    ch.send(&Message::Settled(settled));
    ch.send(&Message::Done { iterations_done, elapsed_s: start.elapsed().as_secs_f64() });
    Ok(())
}

/// One worker: claim iterations until the job's count is reached.
fn worker_loop(shared: &Shared, total: u64, touch: &[CString]) {
    let mut buf = [0u8; 256];
    while shared.claimed.fetch_add(1, Ordering::AcqRel) < total {
        // SAFETY: the worker is single-threaded; the child only makes
        // syscalls on memory prepared before the fork, then `_exit`s.
        let ok = match unsafe { fork() } {
            Ok(ForkResult::Child) => {
                let code = churn_child(touch, &mut buf);
                unsafe { nix::libc::_exit(code) }
            }
            Ok(ForkResult::Parent { child }) => {
                matches!(waitpid(child, None), Ok(WaitStatus::Exited(_, 0)))
            }
            Err(_) => false,
        };
        if !ok {
            shared.errors.fetch_add(1, Ordering::Relaxed);
        }
        shared.done.fetch_add(1, Ordering::AcqRel);
    }
}

/// The body of one churned namespace. Returns the child's exit code.
fn churn_child(touch: &[CString], buf: &mut [u8]) -> i32 {
    if unshare(CloneFlags::CLONE_NEWNET).is_err() {
        return 10;
    }
    let mut code = 0;
    for path in touch {
        match open(path.as_c_str(), OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()) {
            Ok(fd) => {
                let _ = read(fd, buf);
                let _ = close(fd);
            }
            Err(_) => code = 11,
        }
    }
    code
}

/// Fail early, with the errno, if this kernel cannot make network namespaces
/// or the scenario touches paths that do not exist in one.
fn check_namespaces_work(touch: &[CString]) -> Result<(), String> {
    // SAFETY: single-threaded; the child only makes syscalls and `_exit`s.
    match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => {
            let code = match unshare(CloneFlags::CLONE_NEWNET) {
                Err(e) => e as i32,
                Ok(()) => {
                    let missing = touch.iter().position(|p| open(p.as_c_str(), OFlag::O_RDONLY, Mode::empty()).is_err());
                    missing.map_or(0, |i| 200 + i as i32)
                }
            };
            unsafe { nix::libc::_exit(code) }
        }
        ForkResult::Parent { child } => match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, 0)) => Ok(()),
            Ok(WaitStatus::Exited(_, c)) if c >= 200 => Err(format!(
                "{} does not exist inside a new network namespace on this kernel (is the protocol built in?)",
                touch[(c - 200) as usize].to_string_lossy()
            )),
            Ok(WaitStatus::Exited(_, errno)) => Err(format!(
                "unshare(CLONE_NEWNET) failed: {} (kernel built without CONFIG_NET_NS, or not root?)",
                nix::errno::Errno::from_raw(errno)
            )),
            other => Err(format!("namespace check child ended oddly: {other:?}")),
        },
    }
}

fn window_now(
    job: &Job,
    probe_paths: &[CString],
    iteration: u64,
    elapsed_s: f64,
    churn_rate: f64,
    churn_errors: u64,
) -> Result<Window, String> {
    let probes = probe(job, probe_paths);
    let ds = dentry_state()?;
    Ok(Window { iteration, elapsed_s, churn_rate, churn_errors, nr_dentry: ds.nr_dentry, nr_unused: ds.nr_unused, probes })
}

/// Time open()+close() of every probe path, interleaved, up to the sample
/// count or the per-path time budget.
fn probe(job: &Job, paths: &[CString]) -> Vec<ProbeStats> {
    let settings = &job.scenario.probe;
    let budget = Duration::from_millis(settings.budget_ms);
    let mut samples: Vec<Vec<u64>> = vec![Vec::with_capacity(settings.samples as usize); paths.len()];
    let mut spent = vec![Duration::ZERO; paths.len()];
    let mut errors = vec![0u32; paths.len()];
    for n in 0..settings.samples {
        let over_budget = spent.iter().all(|s| *s >= budget);
        if over_budget && n >= settings.min_samples {
            break;
        }
        for (i, path) in paths.iter().enumerate() {
            let t0 = Instant::now();
            let fd = open(path.as_c_str(), OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty());
            let dt = t0.elapsed();
            spent[i] += dt;
            match fd {
                Ok(fd) => {
                    let _ = close(fd);
                    samples[i].push(dt.as_nanos() as u64);
                }
                Err(_) => errors[i] += 1,
            }
        }
    }
    job.scenario.probes.iter().zip(samples.iter_mut()).zip(errors).map(|((p, s), e)| ProbeStats::from_samples_ns(&p.name, s, e)).collect()
}

/// Wait until namespace cleanup has finished (nr_dentry back near the
/// baseline, or no longer reaching new lows), within a bound, then probe
/// once more.
fn settle(
    job: &Job,
    ch: &mut Channel,
    probe_paths: &[CString],
    baseline: u64,
    iterations: u64,
    churn_s: f64,
    errors: u64,
) -> Result<Settled, String> {
    let s = &job.scenario.settle;
    let t0 = Instant::now();
    let back_at = baseline + (s.baseline_tolerance * iterations as f64) as u64;
    let mut low = dentry_state()?.nr_dentry;
    let mut trace = vec![SettlePoint { t_s: 0.0, nr_dentry: low }];
    let mut stable_for = 0;
    let stable = loop {
        if low <= back_at || stable_for >= s.stable_polls {
            break true;
        }
        if t0.elapsed() >= Duration::from_millis(s.max_ms) {
            break false;
        }
        std::thread::sleep(Duration::from_millis(s.poll_ms));
        let now = dentry_state()?.nr_dentry;
        trace.push(SettlePoint { t_s: t0.elapsed().as_secs_f64(), nr_dentry: now });
        // A heartbeat, so a long settle is not taken for a hung guest.
        ch.send(&Message::Progress { iteration: iterations, elapsed_s: churn_s + t0.elapsed().as_secs_f64(), churn_errors: errors });
        if now < low {
            low = now;
            stable_for = 0;
        } else {
            stable_for += 1;
        }
    };
    let settle_s = t0.elapsed().as_secs_f64();
    let window = window_now(job, probe_paths, iterations, churn_s + settle_s, 0.0, errors)?;
    Ok(Settled { settle_s, stable, trace, window })
}

pub fn dentry_state() -> Result<DentryState, String> {
    let text = std::fs::read_to_string("/proc/sys/fs/dentry-state").map_err(|e| format!("reading /proc/sys/fs/dentry-state: {e}"))?;
    parse_dentry_state(&text).ok_or_else(|| format!("unexpected /proc/sys/fs/dentry-state: {text:?}"))
}

fn parse_dentry_state(text: &str) -> Option<DentryState> {
    let mut f = text.split_whitespace().map(|x| x.parse::<u64>());
    Some(DentryState { nr_dentry: f.next()?.ok()?, nr_unused: f.next()?.ok()? })
}

pub fn mem_total_kib() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dentry_state_parses_first_two_fields() {
        let ds = parse_dentry_state("3901\t1200\t45\t0\t10\t0\n").unwrap();
        assert_eq!((ds.nr_dentry, ds.nr_unused), (3901, 1200));
        assert!(parse_dentry_state("garbage").is_none());
    }
}
