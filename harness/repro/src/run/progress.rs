//! Progress on long runs: a bar on a terminal, periodic log lines otherwise.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use repro_proto::{Message, Settled, Window};

const LOG_EVERY: Duration = Duration::from_secs(10);

/// What the session's stream tells the UI. The stream decides and records;
/// what is shown of it, and how, is decided here.
pub(crate) enum Event<'a> {
    /// A message from the agent, recorded.
    Message(&'a Message),
    /// A round the host answered: stop (decided) or churn on.
    RoundAnswered { round: &'a Settled, residual: Option<f64>, stop: bool },
}

pub(crate) struct Progress {
    bar: Option<ProgressBar>,
    last_log: Option<Instant>,
    /// The probe shown: the first non-control path.
    probe: String,
}

impl Progress {
    /// The progress of the run `summary` starts (or a resume goes on
    /// with): its iterations, shown with its judged probe's latency.
    pub(crate) fn of_run(summary: &repro_proto::Summary, quiet: bool) -> Progress {
        let probe = summary.scenario_definition.judged_probe().map_or("probe", |p| p.name.as_str());
        Progress::new(summary.iterations_requested, probe, quiet)
    }

    pub(crate) fn new(total: u64, probe: &str, quiet: bool) -> Progress {
        let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let bar = (tty && !quiet).then(|| {
            let b = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            b.set_style(
                ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} ns {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            b.set_message("booting");
            b.enable_steady_tick(Duration::from_millis(200));
            b
        });
        Progress { bar, last_log: None, probe: probe.to_string() }
    }

    /// Show what the stream reports.
    pub(crate) fn on(&mut self, e: Event) {
        match e {
            Event::Message(Message::Progress { iteration, .. }) => self.iteration(*iteration),
            Event::Message(Message::Window(w)) => self.window(w),
            Event::Message(Message::Started { baseline, .. }) => {
                self.status(&format!("churning (baseline nr_dentry {})", baseline.nr_dentry))
            }
            Event::Message(Message::Settled(s)) => self.status(&format!("settled after {:.1}s", s.settle_s)),
            Event::Message(Message::Output { line }) => self.suspend(|| crate::text::outln(&crate::text::printable(line).to_string())),
            Event::Message(_) => {}
            Event::RoundAnswered { round, residual, stop } => self.status(&format!(
                "round at {}: {:.2} stale dentries per namespace after {:.1}s settling; {}",
                round.window.iteration,
                residual.unwrap_or(f64::NAN),
                round.settle_s,
                if stop { "decided, stopping" } else { "not decided yet, churning on" }
            )),
        }
    }

    pub(crate) fn status(&self, msg: &str) {
        match &self.bar {
            Some(b) => b.set_message(msg.to_string()),
            None => tracing::info!("{msg}"),
        }
    }

    pub(crate) fn iteration(&self, i: u64) {
        if let Some(b) = &self.bar {
            b.set_position(i);
        }
    }

    pub(crate) fn window(&mut self, w: &Window) {
        let p50 = w.probes.iter().find(|p| p.name == self.probe).map_or(0.0, |p| p.p50_us);
        let text = format!("{:.0}/s, {} p50 {:.0}us, nr_dentry {}", w.churn_rate, self.probe, p50, w.nr_dentry);
        match &self.bar {
            Some(b) => {
                b.set_position(w.iteration);
                b.set_message(text);
            }
            None => {
                if self.last_log.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
                    tracing::info!("iteration {}: {text}", w.iteration);
                    self.last_log = Some(Instant::now());
                }
            }
        }
    }

    /// Run `f` (which prints) without the bar drawing over it.
    pub(crate) fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.bar {
            Some(b) => b.suspend(f),
            None => f(),
        }
    }

    pub(crate) fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
