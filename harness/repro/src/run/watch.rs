//! `repro watch`: the alarm the write-up's authors wished they had, for a
//! live host (no VM). Every interval it times opens of a probe sysctl
//! (ipv6, on the hot hash chain) and a control (ipv4, elsewhere), reads
//! dentry-state, estimates the chain length from the difference, prints
//! one JSON line, and raises an alarm when the probe/control ratio stays
//! above a threshold: a hook runs, or repro exits 1.
//!
//! It costs a few hundred open()s per interval, and measures its own CPU
//! time, which every line reports (BENCHMARKS.md has the figures).

use std::time::{Instant, SystemTime};

use anyhow::{Context, Result};
use repro_proto::ProbeStats;
use serde::Serialize;

use crate::error::{fail, Kind};

/// One line of `repro watch` output.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Tick {
    pub time: String,
    pub probe_p50_us: f64,
    pub control_p50_us: f64,
    /// probe p50 / control p50.
    pub ratio: f64,
    pub nr_dentry: u64,
    pub nr_unused: u64,
    /// (probe p50 - control p50) / --per-entry-us: stale entries the probe's
    /// lookup walks, roughly.
    pub chain_estimate: u64,
    /// This tick's CPU time (user + system) in microseconds: the watch's own overhead.
    pub cpu_us: u64,
    pub alarm: bool,
}

fn cpu_time_us() -> u64 {
    let u = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF).ok();
    u.map_or(0, |u| {
        let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as u64 * 1_000_000 + tv.tv_usec() as u64;
        t(u.user_time()) + t(u.system_time())
    })
}

/// p50 of `samples` timed open()+close() of `path`, in microseconds.
fn open_p50(path: &std::path::Path, samples: u32) -> Result<f64> {
    let mut ns = Vec::with_capacity(samples as usize);
    for _ in 0..samples.max(1) {
        let t0 = Instant::now();
        let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        ns.push(t0.elapsed().as_nanos() as u64);
        drop(f);
    }
    Ok(ProbeStats::from_samples_ns("watch", &mut ns, 0).p50_us)
}

/// Pure: the tick's derived numbers.
pub(crate) fn derive(probe_us: f64, control_us: f64, per_entry_us: f64) -> (f64, u64) {
    let ratio = if control_us > 0.0 { probe_us / control_us } else { 0.0 };
    let chain = ((probe_us - control_us).max(0.0) / per_entry_us.max(1e-9)).round() as u64;
    (ratio, chain)
}

/// What `repro watch` is asked.
#[derive(Debug, Clone)]
pub struct WatchRequest {
    pub interval: std::time::Duration,
    pub samples: u32,
    /// The sysctl on the hot hash chain, and one off it.
    pub probe: std::path::PathBuf,
    pub control: std::path::PathBuf,
    pub ratio_alarm: f64,
    pub chain_alarm: Option<u64>,
    pub consecutive: u32,
    pub per_entry_us: f64,
    pub hook: Option<String>,
    pub count: Option<u64>,
    pub linger: std::time::Duration,
    /// A command to watch beside.
    pub while_cmd: Vec<String>,
}

/// How a watch ended; cli/ chooses the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WatchEnd {
    /// --count intervals, or the command ended and --linger passed.
    Done,
    /// The alarm, with no --hook to take it.
    Alarm,
}

pub(crate) fn watch(args: &WatchRequest) -> Result<WatchEnd> {
    check_sysctls(args)?;
    let mut above = 0u32;
    let mut n = 0u64;
    let mut child = start_while_cmd(&args.while_cmd)?;
    let mut ended: Option<Instant> = None;
    loop {
        if crate::interrupt::requested() {
            return Ok(WatchEnd::Done);
        }
        if let (Some(c), None) = (child.as_mut(), ended) {
            if let Some(status) = c.0.try_wait()? {
                if !status.success() {
                    crate::text::errln(&format!("watch: {:?} ended with {status}", args.while_cmd.join(" ")));
                }
                ended = Some(Instant::now());
            }
        }
        if ended.is_some_and(|t| t.elapsed() >= args.linger) {
            return Ok(WatchEnd::Done);
        }
        let t0 = Instant::now();
        let cpu0 = cpu_time_us();
        let probe = open_p50(&args.probe, args.samples)?;
        let control = open_p50(&args.control, args.samples)?;
        let repro_proto::DentryState { nr_dentry, nr_unused } = repro_proto::DentryState::read().map_err(anyhow::Error::msg)?;
        let (ratio, chain) = derive(probe, control, args.per_entry_us);
        above = if ratio >= args.ratio_alarm || args.chain_alarm.is_some_and(|c| chain >= c) { above + 1 } else { 0 };
        let alarm = above >= args.consecutive.max(1);
        let tick = Tick {
            time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            probe_p50_us: probe,
            control_p50_us: control,
            ratio,
            nr_dentry,
            nr_unused,
            chain_estimate: chain,
            cpu_us: cpu_time_us().saturating_sub(cpu0),
            alarm,
        };
        crate::text::outln(&serde_json::to_string(&tick)?.to_string());
        if alarm {
            match &args.hook {
                Some(hook) => run_hook(hook, &tick)?,
                None => {
                    crate::text::errln(&format!(
                        "alarm: {} costs {ratio:.1}x {} for {above} intervals (about {chain} stale entries on its hash chain): \
                         stale /proc/sys/net dentries are piling up; `echo 2 > /proc/sys/vm/drop_caches` relieves it, a kernel with \
                         d6cffbbe9a7e (v4.11) fixes it",
                        args.probe.display(),
                        args.control.display()
                    ));
                    return Ok(WatchEnd::Alarm);
                }
            }
            above = 0;
        }
        n += 1;
        if args.count.is_some_and(|c| n >= c) {
            return Ok(WatchEnd::Done);
        }
        std::thread::sleep(args.interval.saturating_sub(t0.elapsed()));
    }
}

/// --probe and --control must be sysctl files this kernel has: regular
/// files (a FIFO or device would block the timed opens forever).
fn check_sysctls(args: &WatchRequest) -> Result<()> {
    for p in [&args.probe, &args.control] {
        match std::fs::metadata(p) {
            Err(e) => {
                return Err(fail(
                    Kind::Usage,
                    format!("{}: {e}; this kernel has no such sysctl: pick another with --probe/--control", p.display()),
                ))
            }
            // A sysctl is a regular file; a FIFO or device would block the timed opens forever.
            Ok(m) if !m.is_file() => {
                return Err(fail(
                    Kind::Usage,
                    format!("{} is not a regular file: --probe and --control take sysctl files under /proc/sys", p.display()),
                ))
            }
            Ok(_) => {}
        }
    }
    Ok(())
}

/// The command after --: runs beside the watch and is killed with it.
fn start_while_cmd(while_cmd: &[String]) -> Result<Option<ChildGuard>> {
    Ok(match while_cmd.split_first() {
        None => None,
        Some((prog, rest)) => {
            let mut cmd = std::process::Command::new(prog);
            cmd.args(rest).stdout(std::process::Stdio::from(std::io::stderr()));
            crate::child::own(&mut cmd, nix::sys::signal::Signal::SIGKILL);
            Some(ChildGuard(cmd.spawn().map_err(|e| {
                fail(Kind::Usage, format!("cannot start {prog:?} ({e}): the command after -- must be a program on PATH or a path"))
            })?))
        }
    })
}

/// The command after --, with everything it started (its process group):
/// killed and reaped whenever the watch ends.
struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        crate::child::kill_group(self.0.id());
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

fn run_hook(hook: &str, tick: &Tick) -> Result<()> {
    let mut cmd = std::process::Command::new("sh");
    cmd.args(["-c", hook])
        .env("REPRO_WATCH_RATIO", format!("{:.2}", tick.ratio))
        .env("REPRO_WATCH_CHAIN", tick.chain_estimate.to_string())
        .env("REPRO_WATCH_JSON", serde_json::to_string(tick)?);
    // Its own process group, ended with repro, as every child.
    crate::child::own(&mut cmd, nix::sys::signal::Signal::SIGTERM);
    let status = cmd.status().with_context(|| format!("running the --hook {hook:?}"))?;
    if !status.success() {
        tracing::warn!("the --hook exited with {status}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_estimate_from_the_latency_difference() {
        // The write-up: 0.456 s for the probe, ~instant control, 0.57 us per entry.
        let (ratio, chain) = derive(456_366.0, 5.0, 0.571);
        assert!(ratio > 1000.0);
        assert!((790_000..810_000).contains(&chain), "{chain}");
        assert_eq!(derive(40.0, 45.0, 0.57), (40.0 / 45.0, 0));
    }
}
