//! The run directory: samples appended as they arrive, and summary.json
//! rewritten atomically after every window so that whatever stops the run
//! (panic, hang, Ctrl-C, full disk, SIGKILL) leaves the recorded windows on
//! disk with `complete: false`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use repro_proto::{Message, Phases, Residual, Round, RunError, Summary};

pub(crate) const SUMMARY: &str = "summary.json";
pub(crate) const SAMPLES: &str = "samples.jsonl";
pub(crate) const CONSOLE: &str = "console.log";

/// The most windows one run records: what the host asks for (a usage
/// error beyond) and what it accepts from the agent (a protocol violation
/// beyond), with room for the windows rounds add at their pauses.
pub(crate) const MAX_WINDOWS: u64 = 10_000;
const MAX_WINDOWS_RECEIVED: usize = MAX_WINDOWS as usize + 64;

/// summary.json is rewritten at most this often while windows stream in
/// (every window is in samples.jsonl at once): 10,000 windows cost 10,000
/// small writes, not 10,000 rewrites of a growing file.
const SUMMARY_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

pub(crate) struct Recorder {
    pub dir: PathBuf,
    samples: BufWriter<File>,
    pub summary: Summary,
    started: std::time::Instant,
    /// When summary.json was last written.
    written: std::time::Instant,
    done: bool,
    /// The exit code of `repro exec`'s command.
    pub exec_exit: Option<i32>,
    clock: Clock,
}

/// When the phases of a run began, on the host's clock ([`Phases`]).
#[derive(Debug, Default)]
struct Clock {
    command: Option<std::time::Instant>,
    first_spawn: Option<std::time::Instant>,
    spawn: Option<std::time::Instant>,
    hello: Option<std::time::Instant>,
    started: Option<std::time::Instant>,
    phases: Phases,
}

/// Make `dir` the run's own: created here, or an empty directory this user
/// owns (`mktemp -d`). A directory with entries, someone else's, or a
/// link is refused (exit 2): files repro writes there must be repro's.
fn claim_run_dir(dir: &Path) -> Result<()> {
    let refuse = |why: String| {
        crate::error::fail(
            crate::error::Kind::Usage,
            format!("cannot use {} as the run directory: {why}; choose another --out", dir.display()),
        )
    };
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| refuse(format!("cannot create its parent ({e})")))?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => existing_dir_is_claimable(dir),
        Err(e) => Err(refuse(e.to_string())),
    }
}

/// An existing `dir` may be a run directory only if it is an empty
/// directory this user owns.
fn existing_dir_is_claimable(dir: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let refuse = |why: String| {
        crate::error::fail(
            crate::error::Kind::Usage,
            format!("cannot use {} as the run directory: {why}; choose another --out", dir.display()),
        )
    };
    let meta = std::fs::symlink_metadata(dir).map_err(|e| refuse(e.to_string()))?;
    if !meta.is_dir() {
        return Err(refuse("it exists and is not a directory (a link or a file)".into()));
    }
    if meta.uid() != nix::unistd::geteuid().as_raw() {
        return Err(refuse(format!("it belongs to uid {}, not to this user", meta.uid())));
    }
    if std::fs::read_dir(dir).map_err(|e| refuse(e.to_string()))?.next().is_some() {
        return Err(refuse("it already has entries".into()));
    }
    Ok(())
}

impl Recorder {
    /// Whether `dir` can become a run directory, asked before anything slow
    /// (a kernel fetch or build of minutes) so a bad --out is refused at
    /// once; [`Recorder::create`] asks again and claims it.
    pub(crate) fn preflight(dir: &Path) -> Result<()> {
        // An earlier run's samples are never overwritten.
        if dir.join(SUMMARY).exists() {
            return Err(crate::error::fail(
                crate::error::Kind::Usage,
                format!(
                    "{} already holds a run (its {SUMMARY}): choose another --out, or remove that directory if the run is not wanted",
                    dir.display()
                ),
            ));
        }
        match std::fs::symlink_metadata(dir) {
            Err(_) => Ok(()),
            Ok(_) => existing_dir_is_claimable(dir),
        }
    }

    pub(crate) fn create(dir: &Path, summary: Summary) -> Result<Recorder> {
        Recorder::preflight(dir)?;
        claim_run_dir(dir)?;
        // Created exclusively: a second run given the same --out, or a link
        // planted there, stops here instead of being written through.
        let path = dir.join(SAMPLES);
        let samples = std::fs::OpenOptions::new().write(true).create_new(true).open(&path).map_err(|e| {
            crate::error::fail(
                crate::error::Kind::Usage,
                format!(
                    "cannot create {} ({e}): another run is writing to this --out, or something was put there; choose another --out",
                    path.display()
                ),
            )
        })?;
        Recorder::open(dir, BufWriter::new(samples), summary, std::time::Instant::now())
    }

    /// The recorder of `dir`, writing to `samples`, its run begun at
    /// `started`; the summary is written at once.
    fn open(dir: &Path, samples: BufWriter<File>, summary: Summary, started: std::time::Instant) -> Result<Recorder> {
        let mut r = Recorder {
            dir: dir.to_path_buf(),
            samples,
            summary,
            started,
            written: std::time::Instant::now(),
            done: false,
            exec_exit: None,
            clock: Clock::default(),
        };
        r.write_summary()?;
        Ok(r)
    }

    /// Reopen a run directory to go on recording (`repro resume`): the
    /// summary as it stood at the checkpoint, and samples.jsonl cut back to
    /// its length then, so that what came after the save (and is about to
    /// come again) is neither lost nor kept twice.
    pub(crate) fn reopen(dir: &Path, summary: Summary, samples_bytes: u64) -> Result<Recorder> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = dir.join(SAMPLES);
        let samples = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&path)
            .with_context(|| format!("opening {} to go on recording", path.display()))?;
        let len = samples.metadata()?.len();
        if len < samples_bytes {
            return Err(crate::error::fail(
                crate::error::Kind::Usage,
                format!(
                    "{} holds {len} bytes, fewer than the {samples_bytes} it held at the checkpoint: the run directory was changed \
                     and cannot be resumed",
                    path.display()
                ),
            ));
        }
        samples.set_len(samples_bytes)?;
        let mut samples = BufWriter::new(samples);
        std::io::Seek::seek(&mut samples, std::io::SeekFrom::End(0))?;
        // The saved summary is outside data: a duration no run has (negative,
        // NaN, 1e308 s) is refused, not handed to the clock arithmetic.
        let ran = std::time::Duration::try_from_secs_f64(summary.duration_s).ok().filter(|d| d.as_secs() <= 10 * 366 * 86400).ok_or_else(
            || {
                crate::error::fail(
                    crate::error::Kind::Usage,
                    format!("the saved summary's duration_s {} is no run's duration: the run directory was changed", summary.duration_s),
                )
            },
        )?;
        let started = std::time::Instant::now().checked_sub(ran).unwrap_or_else(std::time::Instant::now);
        Recorder::open(dir, samples, summary, started)
    }

    /// What a message may not say at this point of the stream: the agent is
    /// outside data, and a stream that contradicts itself is no run.
    pub(crate) fn violation(&self, msg: &Message) -> Option<String> {
        let s = &self.summary;
        let asked = s.iterations_requested;
        let last_window = s.windows.last().map_or(0, |w| w.iteration);
        match msg {
            Message::Window(w) => {
                if s.baseline.is_none() {
                    return Some("a window before the baseline (Started)".into());
                }
                if w.iteration > asked {
                    return Some(format!("a window at iteration {} of a run of {asked}", w.iteration));
                }
                if let Some(last) = s.windows.last().filter(|l| w.iteration < l.iteration) {
                    return Some(format!("a window at iteration {} after one at {}", w.iteration, last.iteration));
                }
                if let Err(why) = w.check() {
                    return Some(why);
                }
                (s.windows.len() >= MAX_WINDOWS_RECEIVED).then(|| format!("more than {MAX_WINDOWS_RECEIVED} windows"))
            }
            Message::Settled(_) | Message::Round(_) if s.baseline.is_none() => Some("a settle before the baseline (Started)".into()),
            Message::Started { .. } if s.baseline.is_some() => Some("a second Started in one run".into()),
            Message::Settled(st) if st.window.iteration > asked || st.window.iteration < last_window => {
                Some(format!("a settle at iteration {} (the run asked {asked}, its windows reached {last_window})", st.window.iteration))
            }
            Message::Settled(st) | Message::Round(st) => st.check(&s.scenario_definition).err(),
            Message::Done { iterations_done, .. } if *iterations_done > asked => {
                Some(format!("Done after {iterations_done} iterations of a run of {asked}"))
            }
            Message::Done { iterations_done, .. } if *iterations_done < last_window => {
                Some(format!("Done after {iterations_done} iterations, though a window came at {last_window}"))
            }
            // A churn (not `repro exec`, which asks for none) ends with its windows.
            Message::Done { .. } if asked > 0 && (s.baseline.is_none() || s.windows.is_empty()) => {
                Some("Done without a baseline or a single window".into())
            }
            _ => None,
        }
    }

    /// The command began at `t` (before its kernel was resolved).
    pub(crate) fn command_started(&mut self, t: std::time::Instant) {
        self.clock.command = Some(t);
    }

    /// QEMU (or the host agent) is being started now. A start before it
    /// that never said hello was a failed KVM proof.
    pub(crate) fn spawning(&mut self) {
        let now = std::time::Instant::now();
        let c = &mut self.clock;
        if let Some(earlier) = c.spawn {
            c.phases.kvm_proof_s += now.duration_since(earlier).as_secs_f64();
        }
        c.first_spawn.get_or_insert(now);
        c.spawn = Some(now);
    }

    /// A proof of KVM that started no guest (the CPU model query) took `d`.
    pub(crate) fn kvm_queried(&mut self, d: std::time::Duration) {
        self.clock.phases.kvm_proof_s += d.as_secs_f64();
    }

    /// Record one message from the agent. Progress heartbeats are not kept.
    pub(crate) fn record(&mut self, msg: &Message) -> Result<()> {
        if let Some(v) = self.violation(msg) {
            return Err(crate::error::fail(
                crate::error::Kind::GuestFailed,
                format!("the agent broke the protocol: {v}; the windows recorded before it are kept, nothing after it is trusted"),
            ));
        }
        if !matches!(msg, Message::Progress { .. }) {
            serde_json::to_writer(&mut self.samples, msg)?;
            self.samples.write_all(b"\n")?;
            self.samples.flush().with_context(|| format!("writing {}", self.dir.join(SAMPLES).display()))?;
        }
        let s = &mut self.summary;
        match msg {
            Message::Hello { release, cpus, uptime_s, .. } => {
                s.kernel.release = Some(release.clone());
                s.guest_cpus = s.guest_cpus.or(Some(*cpus));
                let c = &mut self.clock;
                let now = std::time::Instant::now();
                c.hello = Some(now);
                c.phases.guest_uptime_at_hello_s = uptime_s.filter(|u| u.is_finite() && *u >= 0.0);
                if let (Some(first), Some(spawn)) = (c.first_spawn, c.spawn) {
                    c.phases.boot_s = now.duration_since(spawn).as_secs_f64();
                    c.phases.prepare_s = c.command.map_or(0.0, |t| first.saturating_duration_since(t).as_secs_f64());
                }
            }
            Message::Started { baseline, chain_counter } => {
                s.baseline = Some(*baseline);
                s.chain_counter = chain_counter.clone();
                let now = std::time::Instant::now();
                self.clock.started = Some(now);
                self.clock.phases.baseline_s = self.clock.hello.map_or(0.0, |h| now.duration_since(h).as_secs_f64());
            }
            Message::Progress { iteration, .. } => s.iterations_done = *iteration,
            Message::Window(w) => {
                s.iterations_done = w.iteration;
                s.windows.push(w.clone());
                if self.written.elapsed() >= SUMMARY_EVERY {
                    self.update_projection();
                    self.write_summary()?;
                }
            }
            Message::Round(st) => {
                s.rounds.push(Round {
                    iteration: st.window.iteration,
                    settle_s: st.settle_s,
                    ended: st.ended,
                    residual: s.baseline.and_then(|b| Residual::compute(b.nr_dentry, st.window.nr_dentry, st.window.iteration)),
                    stop: false,
                });
                // Saved with the host's answer (round_answered), which follows.
            }
            Message::Settled(st) => {
                s.residual = s.baseline.and_then(|b| Residual::compute(b.nr_dentry, st.window.nr_dentry, st.window.iteration));
                s.settled = Some(st.clone());
                let c = &mut self.clock;
                if let Some(started) = c.started {
                    let settles = st.settle_s + s.rounds.iter().map(|r| r.settle_s).sum::<f64>();
                    c.phases.settle_s = settles.max(0.0);
                    c.phases.churn_s = (started.elapsed().as_secs_f64() - settles).max(0.0);
                    s.phases = Some(c.phases.clone());
                }
                self.write_summary()?;
            }
            Message::Done { iterations_done, .. } => {
                s.iterations_done = *iterations_done;
                self.done = true;
            }
            Message::Exited { code } => self.exec_exit = Some(*code),
            Message::Error { .. } | Message::Output { .. } => {}
        }
        Ok(())
    }

    /// The churn's projection to the run's end, kept current in the summary
    /// (worked out when the summary is written, not per window).
    fn update_projection(&mut self) {
        let s = &mut self.summary;
        let projection = crate::run::projection::project(&s.windows, s.iterations_requested);
        if let (None, Some(p)) = (&s.projection, &projection) {
            // Said once, when the slowdown first shows.
            tracing::warn!(
                "the churn slows as the chain grows ({:.1} ms per iteration + {:.2} us per stale entry): \
                 {} namespaces will take about {}, and the write-up's 799,259 about {}",
                p.t0_s * 1e3,
                p.per_entry_s * 1e6,
                s.iterations_requested,
                humantime::format_duration(std::time::Duration::from_secs(p.finish_s as u64)),
                humantime::format_duration(std::time::Duration::from_secs(p.writeup_chain_s as u64)),
            );
        }
        s.projection = projection.or(s.projection.take());
    }

    /// The host's answer to the last round: stop there, or go on.
    pub(crate) fn round_answered(&mut self, stop: bool) -> Result<()> {
        if let Some(r) = self.summary.rounds.last_mut() {
            r.stop = stop;
        }
        self.summary.stopped_early |= stop;
        self.write_summary()
    }

    /// Close the run: complete only if the agent said Done and nothing failed.
    pub(crate) fn finish(&mut self, error: Option<RunError>) -> Result<()> {
        self.update_projection();
        self.summary.complete = self.done && error.is_none();
        self.summary.error = error;
        self.write_summary()
    }

    pub(crate) fn write_summary(&mut self) -> Result<()> {
        self.written = std::time::Instant::now();
        self.summary.duration_s = self.started.elapsed().as_secs_f64();
        crate::atomic::write_json(&self.dir.join(SUMMARY), &self.summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use repro_proto::{DentryState, Window};

    fn window(iteration: u64) -> Message {
        Message::Window(Window { iteration, elapsed_s: 1.0, churn_rate: 1.0, nr_dentry: 1, ..Window::default() })
    }

    fn recorder(dir: &Path, iterations: u64) -> Recorder {
        let scenario = crate::run::scenario::load("seed").unwrap();
        Recorder::create(dir, crate::run::summary::new_summary("2026-11-27T00:00:00Z", "6.1", scenario, iterations, 1, 10)).unwrap()
    }

    #[test]
    fn a_stream_that_contradicts_itself_is_refused_and_what_came_before_is_kept() {
        let d = tempfile::tempdir().unwrap();
        let mut r = recorder(&d.path().join("run"), 1000);
        let done = |n| Message::Done { iterations_done: n, elapsed_s: 1.0 };
        assert!(r.violation(&done(0)).unwrap().contains("without a baseline"));
        assert!(r.violation(&window(10)).unwrap().contains("before the baseline"));
        r.record(&Message::Started { baseline: DentryState { nr_dentry: 1, nr_unused: 0 }, chain_counter: None }).unwrap();
        r.record(&window(100)).unwrap();
        assert!(r.violation(&window(50)).unwrap().contains("after one at 100"));
        assert!(r.violation(&window(1001)).unwrap().contains("of a run of 1000"));
        assert!(r.violation(&done(u64::MAX)).unwrap().contains("of a run of 1000"));
        let e = r.record(&window(50)).unwrap_err();
        assert_eq!(crate::error::kind_of(&e), Some(crate::error::Kind::GuestFailed));
        assert!(r.violation(&done(1000)).is_none());
        assert_eq!(r.summary.windows.len(), 1, "the refused window was not recorded");
        // Issue 31, item 10: a second Started, a Done behind the windows, a settle past the run.
        let started = Message::Started { baseline: DentryState { nr_dentry: 1, nr_unused: 0 }, chain_counter: None };
        assert!(r.violation(&started).unwrap().contains("second Started"));
        assert!(r.violation(&done(1)).unwrap().contains("window came at 100"));
        let settled = |i| {
            Message::Settled(repro_proto::Settled {
                settle_s: 1.0,
                stable: true,
                ended: None,
                trace: vec![],
                window: Window { iteration: i, elapsed_s: 1.0, ..Window::default() },
                barrier_failed: None,
                mounts: None,
            })
        };
        assert!(r.violation(&settled(1_000_000_000_000)).unwrap().contains("settle at iteration"));
        assert!(r.violation(&settled(50)).unwrap().contains("settle at iteration"));
        assert!(r.violation(&settled(1000)).is_none());
    }

    #[test]
    fn windows_past_the_cap_are_a_protocol_violation() {
        let d = tempfile::tempdir().unwrap();
        let mut r = recorder(&d.path().join("run"), 1_000_000);
        r.record(&Message::Started { baseline: DentryState { nr_dentry: 1, nr_unused: 0 }, chain_counter: None }).unwrap();
        for i in 0..MAX_WINDOWS_RECEIVED as u64 {
            r.record(&window(i + 1)).unwrap();
        }
        assert!(r.violation(&window(MAX_WINDOWS_RECEIVED as u64 + 1)).unwrap().contains("more than"));
    }

    #[test]
    fn figures_no_probe_can_measure_are_a_protocol_violation() {
        let d = tempfile::tempdir().unwrap();
        let mut r = recorder(&d.path().join("run"), 1000);
        r.record(&Message::Started { baseline: DentryState { nr_dentry: 1, nr_unused: 0 }, chain_counter: None }).unwrap();
        let with = |p50: f64| {
            Message::Window(Window {
                iteration: 10,
                elapsed_s: 1.0,
                probes: vec![repro_proto::ProbeStats::around("ipv6", p50)],
                ..Window::default()
            })
        };
        // 2.3e-308 us hung the report's log axis; NaN, infinity and a day are no open's time.
        for bad in [2.3e-308, 0.0, f64::NAN, f64::INFINITY, 86400e6] {
            assert!(r.violation(&with(bad)).is_some(), "{bad}");
        }
        assert!(r.violation(&with(0.5)).is_none());
        let mut settled = Window { iteration: 10, elapsed_s: f64::NAN, ..Window::default() };
        assert!(r.violation(&Message::Window(settled.clone())).is_some());
        settled.elapsed_s = 1.0;
        assert!(r.violation(&Message::Window(settled)).is_none());
    }
}
