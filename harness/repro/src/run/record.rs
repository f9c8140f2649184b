//! The run directory: samples appended as they arrive, and summary.json
//! rewritten atomically after every window so that whatever stops the run
//! (panic, hang, Ctrl-C, full disk, SIGKILL) leaves the recorded windows on
//! disk with `complete: false`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use repro_proto::{Message, Residual, Round, RunError, Summary};

pub(crate) const SUMMARY: &str = "summary.json";
pub(crate) const SAMPLES: &str = "samples.jsonl";
pub(crate) const CONSOLE: &str = "console.log";

pub(crate) struct Recorder {
    pub dir: PathBuf,
    samples: BufWriter<File>,
    pub summary: Summary,
    started: std::time::Instant,
    done: bool,
    /// The exit code of `repro exec`'s command.
    pub exec_exit: Option<i32>,
}

/// Make `dir` the run's own: created here, or an empty directory this user
/// owns (`mktemp -d`). A directory with entries, someone else's, or a
/// link is refused (exit 2): files repro writes there must be repro's.
fn claim_run_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let refuse = |why: String| {
        crate::error::fail(crate::error::Kind::Usage, format!("cannot use {} as the run directory: {why}; choose another --out", dir.display()))
    };
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| refuse(format!("cannot create its parent ({e})")))?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
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
        Err(e) => Err(refuse(e.to_string())),
    }
}

impl Recorder {
    pub(crate) fn create(dir: &Path, summary: Summary) -> Result<Recorder> {
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
        claim_run_dir(dir)?;
        // Created exclusively: a second run given the same --out, or a link
        // planted there, stops here instead of being written through.
        let path = dir.join(SAMPLES);
        let samples = std::fs::OpenOptions::new().write(true).create_new(true).open(&path).map_err(|e| {
            crate::error::fail(
                crate::error::Kind::Usage,
                format!("cannot create {} ({e}): another run is writing to this --out, or something was put there; choose another --out", path.display()),
            )
        })?;
        let mut r = Recorder {
            dir: dir.to_path_buf(),
            samples: BufWriter::new(samples),
            summary,
            started: std::time::Instant::now(),
            done: false,
            exec_exit: None,
        };
        r.write_summary()?;
        Ok(r)
    }

    /// Record one message from the agent. Progress heartbeats are not kept.
    pub(crate) fn record(&mut self, msg: &Message) -> Result<()> {
        if !matches!(msg, Message::Progress { .. }) {
            serde_json::to_writer(&mut self.samples, msg)?;
            self.samples.write_all(b"\n")?;
            self.samples.flush().with_context(|| format!("writing {}", self.dir.join(SAMPLES).display()))?;
        }
        let s = &mut self.summary;
        match msg {
            Message::Hello { release, cpus, .. } => {
                s.kernel.release = Some(release.clone());
                s.guest_cpus = s.guest_cpus.or(Some(*cpus));
            }
            Message::Started { baseline, chain_counter } => {
                s.baseline = Some(*baseline);
                s.chain_counter = chain_counter.clone();
            }
            Message::Progress { iteration, .. } => s.iterations_done = *iteration,
            Message::Window(w) => {
                s.iterations_done = w.iteration;
                s.windows.push(w.clone());
                let projection = crate::run::projection::project(&s.windows, s.iterations_requested);
                if let (None, Some(p)) = (&s.projection, &projection) {
                    // Said once, when the slowdown first shows; kept current in the summary.
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
                self.write_summary()?;
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
        self.summary.complete = self.done && error.is_none();
        self.summary.error = error;
        self.write_summary()
    }

    pub(crate) fn write_summary(&mut self) -> Result<()> {
        self.summary.duration_s = self.started.elapsed().as_secs_f64();
        crate::atomic::write_json(&self.dir.join(SUMMARY), &self.summary)
    }
}
