//! The churn workload; its measurements (the probe, the settle) are measure.rs's.
//!
//! Churn: `workers` processes each claim iterations from a counter in shared
//! memory; an iteration forks a child that unshares a new network namespace,
//! opens and reads the scenario's sysctl files and exits, and the worker
//! reaps it. The main process never churns: it watches the counter of
//! finished iterations and runs the probe from the initial namespace each
//! time a window's worth of namespaces has been churned.
//!
//! Scenario options change the child and the worker: `read_all` reads every
//! file under a directory (`sysctl -a`); `hold` opens directories inside the
//! namespace and passes the fds to the worker (SCM_RIGHTS over a socketpair),
//! which keeps them after the namespace is gone, for a while or until the run
//! ends; `drop_caches_every` has the main process drop the dcache every K
//! iterations.

use std::ffi::CString;
use std::io::IoSlice;
use std::num::NonZeroUsize;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::fcntl::{open, OFlag};
use nix::sched::{unshare, CloneFlags};
use nix::sys::mman::{mmap_anonymous, MapFlags, ProtFlags};
use nix::sys::stat::Mode;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{close, fork, read, ForkResult};
use repro_proto::{Churn, HostMessage, Message, Settled};

use crate::measure::{dentry_state, judged_probe, probe, settle, window_now, Prober};
use crate::plan::{admit, fd_limit, Held, Rounds, Ticket, WindowClock};
use crate::Channel;

/// How long a paused run waits for the host's answer to a round.
const ROUND_ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// What a churned namespace does, prepared before any fork.
struct ChildPlan {
    veth: bool,
    touch: Vec<CString>,
    read_all: Option<String>,
    hold: Vec<CString>,
}

/// Counters shared between the main process and the workers.
struct Shared {
    claimed: AtomicU64,
    done: AtomicU64,
    errors: AtomicU64,
    /// Tickets below this may run (the current round; see [`Rounds`]).
    limit: AtomicU64,
    /// Non-zero once the host stopped the run at a round.
    stop: AtomicU64,
}

fn shared_counters() -> Result<&'static Shared, String> {
    let len = NonZeroUsize::new(std::mem::size_of::<Shared>()).unwrap();
    // SAFETY: a fresh anonymous shared mapping, zero-filled, which is a valid
    // `Shared` (zero atomics); it lives until the process exits.
    unsafe {
        let p = mmap_anonymous(None, len, ProtFlags::PROT_READ | ProtFlags::PROT_WRITE, MapFlags::MAP_SHARED)
            .map_err(|e| format!("mmap of the shared counters: {e}"))?;
        Ok(&*(p.as_ptr() as *const Shared))
    }
}

fn cpaths(paths: impl IntoIterator<Item = impl AsRef<str>>) -> Result<Vec<CString>, String> {
    paths.into_iter().map(|p| CString::new(p.as_ref()).map_err(|_| format!("path with a NUL byte: {:?}", p.as_ref()))).collect()
}

pub fn run(job: &Churn, ch: &mut Channel) -> Result<(), String> {
    let sc = &job.scenario;
    let touch = cpaths(&sc.touch)?;
    let probe_paths = cpaths(sc.probes.iter().map(|p| &p.path))?;
    load_modules(&job.load_modules)?;
    let plan = ChildPlan {
        veth: sc.veth,
        touch: touch.clone(),
        read_all: sc.read_all.clone(),
        hold: cpaths(sc.hold.iter().flat_map(|h| h.paths.iter()))?,
    };
    let release_after = sc.hold.as_ref().and_then(|h| h.release_after_ms).map(Duration::from_millis);
    let keep_workers = sc.hold.is_some();
    if keep_workers {
        raise_fd_limit(fd_limit(job.iterations, plan.hold.len()))?;
    }

    check_namespaces_work(&plan)?;
    // Warm the probe paths' dentries so that the baseline includes them.
    probe(job, &probe_paths);
    let counter = job.count_chain.then(crate::chain::Counter::new);
    let chain_counter = counter.as_ref().map(|c| match c {
        Ok(_) => "kprobe on proc_sys_compare, calls during one open of the judged probe path".to_string(),
        Err(why) => format!("unavailable: {why}"),
    });
    let prober = Prober { judged: judged_probe(job, &probe_paths), paths: probe_paths, counter: counter.and_then(Result::ok) };
    let baseline = dentry_state()?;
    ch.send(&Message::Started { baseline, chain_counter });

    let shared = shared_counters()?;
    // Rounds pause the churn to settle and ask the host, where the scenario
    // pauses in rounds (proto's one rule, which the host sizes windows by).
    let first_round = job.first_round.filter(|_| sc.pauses_in_rounds());
    let rounds = Rounds::new(job.iterations, first_round, job.round_step);
    shared.limit.store(rounds.limit(), Ordering::Release);
    let start = Instant::now();
    let mut workers = spawn_workers(job, shared, &plan, release_after)?;
    let stopped_at = supervise(job, ch, shared, &prober, baseline.nr_dentry, start, rounds)?;
    // Workers holding fds forever stay until the end (see below); the
    // others are done, or are waiting out their release delay.
    if !keep_workers || release_after.is_some() {
        for w in workers.drain(..) {
            let _ = waitpid(w, None);
        }
    }
    let churn_s = start.elapsed().as_secs_f64();
    let iterations_done = shared.done.load(Ordering::Acquire);
    let errors = shared.errors.load(Ordering::Relaxed);
    if errors == iterations_done && iterations_done > 0 {
        return Err(format!("every one of {iterations_done} churn iterations failed (unshare or open in the new namespace)"));
    }

    let settled = match stopped_at {
        Some(s) => s,
        None => settle(job, ch, &prober, baseline.nr_dentry, iterations_done, churn_s, errors)?,
    };
    // Held "until the run ends": the run has now settled and been probed.
    for w in workers {
        let _ = nix::sys::signal::kill(w, nix::sys::signal::Signal::SIGKILL);
        let _ = waitpid(w, None);
    }
    ch.send(&Message::Settled(settled));
    ch.send(&Message::Done { iterations_done, elapsed_s: start.elapsed().as_secs_f64() });
    Ok(())
}

/// Fork the job's churn workers; each dies with the agent.
fn spawn_workers(
    job: &Churn,
    shared: &'static Shared,
    plan: &ChildPlan,
    release_after: Option<Duration>,
) -> Result<Vec<nix::unistd::Pid>, String> {
    let mut workers = Vec::new();
    for _ in 0..job.workers.max(1) {
        // SAFETY: the agent is single-threaded; the worker only runs
        // `worker_loop` and exits.
        match unsafe { fork() }.map_err(|e| format!("fork of a churn worker: {e}"))? {
            ForkResult::Child => {
                // Die with the agent (host mode: Ctrl-C, kill).
                let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
                worker_loop(shared, job.iterations, plan, release_after);
                // SAFETY: leave without running the parent's atexit handlers.
                unsafe { nix::libc::_exit(0) };
            }
            ForkResult::Parent { child } => workers.push(child),
        }
    }
    Ok(workers)
}

/// Watch the workers churn: a window at each boundary, caches dropped on
/// the scenario's schedule, progress, and at each round a settle and the
/// host's answer. Returns the settled state of the round the host stopped
/// the run at, if it did.
fn supervise(
    job: &Churn,
    ch: &mut Channel,
    shared: &Shared,
    prober: &Prober,
    baseline_nr_dentry: u64,
    start: Instant,
    mut rounds: Rounds,
) -> Result<Option<Settled>, String> {
    let sc = &job.scenario;
    let progress_every = Duration::from_millis(job.progress_interval_ms.max(100));
    let mut clock = WindowClock::new(job.window);
    let mut last_progress = Instant::now();
    let mut last_t = 0.0f64;
    let drop_every = sc.drop_caches_every.filter(|k| *k > 0);
    let mut next_drop = drop_every.unwrap_or(u64::MAX);
    // The settled state of the round the host stopped the run at.
    let mut stopped_at: Option<Settled> = None;
    loop {
        let done = shared.done.load(Ordering::Acquire);
        if let Some(k) = drop_every.filter(|_| done >= next_drop) {
            drop_caches()?;
            next_drop = (done / k + 1) * k;
        }
        let finished = done >= job.iterations;
        let paused = done >= rounds.limit();
        if clock.due(done, paused) {
            let elapsed = start.elapsed().as_secs_f64();
            let rate = (done - clock.last()) as f64 / (elapsed - last_t).max(1e-9);
            let w = window_now(job, prober, done, elapsed, rate, shared.errors.load(Ordering::Relaxed))?;
            ch.send(&Message::Window(w));
            clock.taken(done);
            last_t = elapsed;
        } else if paused && !rounds.is_last() {
            // A round: everything up to the limit has churned. Settle, show
            // the host, and go on or stop as it says.
            let errors = shared.errors.load(Ordering::Relaxed);
            let settled = settle(job, ch, prober, baseline_nr_dentry, done, start.elapsed().as_secs_f64(), errors)?;
            ch.send(&Message::Round(settled.clone()));
            if ch.answer(ROUND_ANSWER_TIMEOUT) == HostMessage::Stop {
                shared.stop.store(1, Ordering::Release);
                stopped_at = Some(settled);
                break;
            }
            rounds.advance();
            shared.limit.store(rounds.limit(), Ordering::Release);
            last_t = start.elapsed().as_secs_f64();
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
    Ok(stopped_at)
}

/// One worker: claim iterations until the job's count is reached.
fn worker_loop(shared: &Shared, total: u64, plan: &ChildPlan, release_after: Option<Duration>) {
    let mut buf = [0u8; 256];
    // The children hand their held fds back on this pair.
    let pair = if plan.hold.is_empty() {
        None
    } else {
        use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
        socketpair(AddressFamily::Unix, SockType::Datagram, None, SockFlag::SOCK_CLOEXEC).ok()
    };
    let mut held: Held<Vec<OwnedFd>> = Held::new(release_after);
    loop {
        let ticket = shared.claimed.fetch_add(1, Ordering::AcqRel);
        let go = loop {
            match admit(ticket, shared.limit.load(Ordering::Acquire), total, shared.stop.load(Ordering::Acquire) != 0) {
                Ticket::Go => break true,
                Ticket::Over => break false,
                // Beyond this round: the main process is settling and asking
                // the host; poll for its answer cheaply.
                Ticket::Wait => std::thread::sleep(Duration::from_millis(5)),
            }
        };
        if !go {
            break;
        }
        // SAFETY: the worker is single-threaded; the child only makes
        // syscalls on memory prepared before the fork, then `_exit`s.
        let ok = match unsafe { fork() } {
            Ok(ForkResult::Child) => {
                let code = churn_child(plan, pair.as_ref().map(|(_, tx)| tx.as_raw_fd()), &mut buf);
                unsafe { nix::libc::_exit(code) }
            }
            Ok(ForkResult::Parent { child }) => {
                let exited = matches!(waitpid(child, None), Ok(WaitStatus::Exited(_, 0)));
                let got = pair.as_ref().map(|(rx, _)| receive_fds(rx.as_raw_fd())).unwrap_or_default();
                let complete = got.len() == plan.hold.len();
                if !got.is_empty() {
                    held.hold(Instant::now(), got);
                }
                exited && complete
            }
            Err(_) => false,
        };
        if !ok {
            shared.errors.fetch_add(1, Ordering::Relaxed);
        }
        shared.done.fetch_add(1, Ordering::AcqRel);
        held.release_due(Instant::now());
    }
    match release_after {
        // Release the rest on schedule, then exit.
        Some(_) => {
            while let Some((wait, fds)) = held.next_due(Instant::now()) {
                std::thread::sleep(wait);
                drop(fds);
            }
        }
        // Hold until the main process kills this worker after the settled probe.
        None if !held.is_empty() => loop {
            nix::unistd::pause();
        },
        None => {}
    }
}

/// The body of one churned namespace. Returns the child's exit code.
fn churn_child(plan: &ChildPlan, hold_to: Option<RawFd>, buf: &mut [u8]) -> i32 {
    if unshare(CloneFlags::CLONE_NEWNET).is_err() {
        return 10;
    }
    if plan.veth && crate::veth::create_pair("veth0", "veth1").is_err() {
        return 14;
    }
    let mut code = 0;
    for (i, path) in plan.touch.iter().enumerate() {
        match open(path.as_c_str(), OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()) {
            Ok(fd) => {
                let _ = read(fd, buf);
                let _ = close(fd);
            }
            // Which path: the namespace check before the churn reports it.
            Err(_) => code = 200 + i.min(50) as i32,
        }
    }
    if let Some(dir) = &plan.read_all {
        read_tree(std::path::Path::new(dir), buf);
    }
    if let Some(tx) = hold_to {
        let fds: Vec<RawFd> = plan
            .hold
            .iter()
            .filter_map(|p| open(p.as_c_str(), OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()).ok())
            .collect();
        if fds.len() != plan.hold.len() {
            code = 12;
        }
        use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
        let iov = [IoSlice::new(b"h")];
        if sendmsg::<()>(tx, &iov, &[ControlMessage::ScmRights(&fds)], MsgFlags::empty(), None).is_err() {
            code = 13;
        }
    }
    code
}

/// Read every readable file below `dir`, as `sysctl -a` does.
fn read_tree(dir: &std::path::Path, buf: &mut [u8]) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => read_tree(&p, buf),
            Ok(_) => {
                if let Ok(mut f) = std::fs::File::open(&p) {
                    let _ = std::io::Read::read(&mut f, buf);
                }
            }
            Err(_) => {}
        }
    }
}

/// The fds a child passed (nothing if it sent none).
fn receive_fds(rx: RawFd) -> Vec<OwnedFd> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut byte = [0u8; 1];
    let mut iov = [std::io::IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([RawFd; 8]);
    let Ok(msg) = recvmsg::<()>(rx, &mut iov, Some(&mut space), MsgFlags::MSG_DONTWAIT) else { return Vec::new() };
    let mut out = Vec::new();
    for c in msg.cmsgs().into_iter().flatten() {
        if let ControlMessageOwned::ScmRights(fds) = c {
            // SAFETY: fresh descriptors the kernel installed for this process.
            out.extend(fds.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
        }
    }
    out
}

/// Room for every held fd (root may raise the hard limit up to fs.nr_open).
fn raise_fd_limit(want: u64) -> Result<(), String> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(|e| format!("getrlimit: {e}"))?;
    if soft >= want {
        return Ok(());
    }
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open").ok().and_then(|s| s.trim().parse::<u64>().ok()).unwrap_or(hard);
    let to = want.min(nr_open.max(hard));
    setrlimit(Resource::RLIMIT_NOFILE, to, to.max(hard))
        .map_err(|e| format!("holding {want} fds needs RLIMIT_NOFILE >= {want}, and raising it to {to} failed: {e}; use fewer iterations"))
}

fn drop_caches() -> Result<(), String> {
    std::fs::write("/proc/sys/vm/drop_caches", b"2").map_err(|e| format!("writing 2 to /proc/sys/vm/drop_caches: {e}"))
}

/// Fail early, with a reason, if this kernel cannot do what one churned
/// namespace does: run one, exactly as the churn will, and read its exit.
fn check_namespaces_work(plan: &ChildPlan) -> Result<(), String> {
    let mut buf = [0u8; 256];
    // A held fd goes nowhere here: the check only needs the open to work.
    let pair = if plan.hold.is_empty() {
        None
    } else {
        use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
        Some(socketpair(AddressFamily::Unix, SockType::Datagram, None, SockFlag::SOCK_CLOEXEC).map_err(|e| format!("socketpair: {e}"))?)
    };
    // SAFETY: single-threaded; the child only makes syscalls and `_exit`s.
    match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => {
            let code = churn_child(plan, pair.as_ref().map(|(_, tx)| tx.as_raw_fd()), &mut buf);
            unsafe { nix::libc::_exit(code) }
        }
        ForkResult::Parent { child } => match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, 0)) => Ok(()),
            Ok(WaitStatus::Exited(_, c)) if c >= 200 => Err(format!(
                "{} does not exist inside a new network namespace on this kernel (is the protocol built in?)",
                plan.touch.get((c - 200) as usize).map_or("a touched path".into(), |p| p.to_string_lossy().into_owned())
            )),
            Ok(WaitStatus::Exited(_, 10)) => {
                Err("unshare(CLONE_NEWNET) failed in a trial namespace (kernel built without CONFIG_NET_NS, or not root?)".into())
            }
            Ok(WaitStatus::Exited(_, 14)) => Err("creating a veth pair with rtnetlink failed in a new namespace: this kernel has no \
                 veth (CONFIG_VETH), or its module was not shipped and loaded"
                .into()),
            Ok(WaitStatus::Exited(_, 12)) => Err(format!(
                "a churn.hold directory does not exist inside a new network namespace: {}",
                plan.hold.iter().map(|p| p.to_string_lossy().into_owned()).collect::<Vec<_>>().join(", ")
            )),
            Ok(WaitStatus::Exited(_, c)) => Err(format!("a trial namespace failed with code {c}")),
            other => Err(format!("namespace check child ended oddly: {other:?}")),
        },
    }
}

/// Load the kernel modules the host shipped (veth on Debian's kernels).
fn load_modules(paths: &[String]) -> Result<(), String> {
    for p in paths {
        let f = std::fs::File::open(p).map_err(|e| format!("opening module {p}: {e}"))?;
        match nix::kmod::finit_module(&f, &CString::default(), nix::kmod::ModuleInitFlags::empty()) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(format!("loading module {p}: {e} (built for another kernel release?)")),
        }
    }
    Ok(())
}
