//! The stream of a started agent, from hello to Done: every message
//! recorded (run/record.rs checks it), rounds answered (and, in a
//! checkpointed run, the guest saved there), and every other ending (a
//! stall, --timeout, a signal, a garbled flood, the agent's error, an early
//! end) an error of its kind, with the windows recorded before it kept.
//! [`crate::guest::drive`] is its one caller.

use std::time::Duration;

use anyhow::{Context, Result};
use repro_proto::{HostMessage, Message, MAX_LINE_BYTES};
use tokio::time::{sleep_until, Instant};

use crate::error::{fail, Kind};
use crate::guest::checkpoint::{AtRound, Checkpointer};
use crate::guest::lines::Line;
use crate::guest::session::{starved_by_the_host, Agent};
use crate::run::progress::{Event, Progress};
use crate::run::record::Recorder;
use crate::text::printable;

/// Whether a sequential run may stop at a round (the run so far, the
/// round's settled state): the judge's rule, handed down to the stream.
pub(crate) type Decider = fn(&repro_proto::Summary, &repro_proto::Settled) -> bool;

/// How the stream may end besides Done.
pub(crate) struct StreamLimits {
    /// No message for this long: the guest is hung.
    pub stall: Duration,
    /// The whole run's deadline (--timeout).
    pub overall: Option<Instant>,
    /// Answers the agent's rounds; None answers Continue.
    pub early: Option<Decider>,
}

impl StreamLimits {
    /// Silence allowed between messages, and an optional deadline for the
    /// whole stream counted from now.
    pub(crate) fn new(stall: Duration, timeout: Option<Duration>) -> StreamLimits {
        StreamLimits { stall, overall: timeout.map(|t| Instant::now() + t), early: None }
    }
}

/// How long a checkpointed run asked to stop waits for its next round (to
/// save there) before it stops without saving; the last checkpoint stays.
const CHECKPOINT_GRACE: Duration = Duration::from_secs(300);

/// Garbled agent lines shown as warnings; past [`MAX_GARBLED`] the stream
/// is no protocol at all and the run ends (a flood was 200,000 warning
/// lines in 1.5 s).
const GARBLED_SHOWN: u32 = 10;
const MAX_GARBLED: u32 = 1000;

/// Stream messages into the recorder until the agent says Done. Every other
/// ending is an error of the matching kind; the recorder has kept all that
/// arrived before it. With a [`Checkpointer`], rounds save the guest as its
/// policy says, and a signal saves at the next round and stops.
pub(crate) async fn stream(
    agent: &mut Agent,
    rec: &mut Recorder,
    progress: &mut Progress,
    limits: &StreamLimits,
    mut checkpoint: Option<&mut Checkpointer>,
) -> Result<()> {
    let far = Instant::now() + Duration::from_secs(10 * 365 * 24 * 3600);
    let overall = limits.overall.unwrap_or(far);
    // Set once a signal asked a checkpointed run to save and stop.
    let mut grace_until: Option<Instant> = None;
    let mut garbled = 0u32;
    loop {
        let stall_at = Instant::now() + limits.stall;
        let line = tokio::select! {
            l = agent.next_line() => l,
            _ = sleep_until(stall_at) => {
                agent.guard.stop().await;
                return Err(fail(Kind::GuestHung, format!(
                    "the guest stopped answering: no message for {:?} (last at iteration {}); it is stuck or far slower than expected. \
                     Raise --stall-timeout if the kernel is known to be this slow{}",
                    limits.stall, rec.summary.iterations_done, agent.guard.diagnostics())));
            }
            _ = sleep_until(overall) => {
                agent.guard.stop().await;
                return Err(fail(Kind::GuestHung, format!(
                    "the run exceeded --timeout at iteration {} of {}; the windows so far are kept. Raise --timeout or lower --iterations",
                    rec.summary.iterations_done, rec.summary.iterations_requested)));
            }
            _ = crate::interrupt::raised(), if grace_until.is_none() => {
                if let Some(cp) = checkpoint.as_deref_mut().filter(|_| !crate::interrupt::by_closed_stdout()) {
                    cp.stop_requested = true;
                    grace_until = Some(Instant::now() + CHECKPOINT_GRACE);
                    tracing::warn!("{}: saving the guest at the next round (waiting up to {CHECKPOINT_GRACE:?}), then stopping", crate::interrupt::why());
                    continue;
                }
                agent.guard.stop().await;
                return Err(fail(Kind::Interrupted, format!(
                    "{} at iteration {} of {}; the windows recorded so far are kept",
                    crate::interrupt::why(), rec.summary.iterations_done, rec.summary.iterations_requested)));
            }
            _ = sleep_until(grace_until.unwrap_or(far)), if grace_until.is_some() => {
                agent.guard.stop().await;
                return Err(fail(Kind::Interrupted, format!(
                    "{} at iteration {}, and no round came within {CHECKPOINT_GRACE:?} to save at; the windows so far are kept, and \
                     the last checkpoint ({}) is where `repro resume {}` goes on from",
                    crate::interrupt::why(), rec.summary.iterations_done,
                    rec.summary.checkpoints.last().map_or("none".into(), |c| format!("iteration {}", c.iteration)), rec.dir.display())));
            }
        };
        let Some(msg) = decode(line.context("reading the agent's messages")?, agent, rec, &mut garbled).await? else { continue };
        rec.record(&msg)?;
        if msg.is_final() {
            agent.acknowledge().await;
        }
        if answer(&msg, agent, rec, progress, limits, checkpoint.as_deref_mut()).await? {
            return Ok(());
        }
    }
}

/// One line of the stream as a message: None for a line to skip (empty,
/// oversized, garbled: counted, shown ten times, the run ended past
/// [`MAX_GARBLED`]); an error when the stream ended before Done.
async fn decode(line: Option<Line>, agent: &mut Agent, rec: &Recorder, garbled: &mut u32) -> Result<Option<Message>> {
    let text = match line {
        Some(Line::Text(t)) if t.is_empty() => return Ok(None),
        Some(Line::Text(t)) => t,
        Some(Line::Oversized) => {
            tracing::warn!("ignoring a line from the agent longer than {MAX_LINE_BYTES} bytes");
            return Ok(None);
        }
        None => return Err(ended_early(agent, rec).await),
    };
    match serde_json::from_str(&text) {
        Ok(m) => Ok(Some(m)),
        Err(e) => {
            *garbled += 1;
            if *garbled > MAX_GARBLED {
                agent.guard.stop().await;
                return Err(fail(
                    Kind::GuestFailed,
                    format!(
                        "the agent broke the protocol: more than {MAX_GARBLED} lines that are no message; the windows \
                         recorded before them are kept"
                    ),
                ));
            }
            if *garbled <= GARBLED_SHOWN {
                tracing::warn!("ignoring a garbled line from the agent ({e}): {:?}", crate::text::clip(&text, 200));
            } else if *garbled == GARBLED_SHOWN + 1 {
                tracing::warn!("ignoring further garbled lines without showing them (the run ends past {MAX_GARBLED})");
            }
            Ok(None)
        }
    }
}

/// What the host does with a recorded message: answer a round (saving the
/// guest there if the run checkpoints), end at Done (true) or at the
/// agent's error, or show it.
async fn answer(
    msg: &Message,
    agent: &mut Agent,
    rec: &mut Recorder,
    progress: &mut Progress,
    limits: &StreamLimits,
    checkpoint: Option<&mut Checkpointer>,
) -> Result<bool> {
    match msg {
        Message::Round(s) => {
            let stop = limits.early.is_some_and(|decided| decided(&rec.summary, s));
            if let Some(cp) = checkpoint.filter(|_| !stop) {
                save_at_round(cp, agent, rec, progress, s.window.iteration).await?;
            }
            rec.round_answered(stop)?;
            agent.answer(if stop { HostMessage::Stop } else { HostMessage::Continue }).await;
            let residual = rec.summary.rounds.last().and_then(|r| r.residual.as_ref()).map(|r| r.per_iteration);
            progress.on(Event::RoundAnswered { round: s, residual, stop });
            Ok(false)
        }
        Message::Done { .. } => Ok(true),
        Message::Error { message } => {
            agent.guard.wait_or_kill(Duration::from_secs(10)).await;
            Err(fail(Kind::GuestFailed, format!("the agent failed: {}{}", printable(message), agent.guard.diagnostics())))
        }
        _ => {
            progress.on(Event::Message(msg));
            Ok(false)
        }
    }
}

/// At a round of a checkpointed run: save the guest if its policy (or a
/// signal) says so, and end the stream with [`Kind::Checkpointed`] if the
/// save is also a stop. Blocking, on purpose: the guest is stopped and
/// nothing else is due.
async fn save_at_round(cp: &mut Checkpointer, agent: &mut Agent, rec: &mut Recorder, progress: &Progress, iteration: u64) -> Result<()> {
    let at = cp.at_round();
    if at == AtRound::GoOn {
        return Ok(());
    }
    progress.status(&format!("saving the guest at iteration {iteration}"));
    if let Err(e) = cp.save(rec, at == AtRound::SaveAndStop) {
        agent.guard.stop().await;
        // A signal that ended the save (the QMP reader gives up at one) is
        // the interrupt, not a failed checkpoint.
        if crate::interrupt::requested() {
            return Err(fail(
                Kind::Interrupted,
                format!(
                    "{} while saving the guest at iteration {iteration} ({e:#}); the windows recorded so far are kept, and the \
                     last complete checkpoint ({}) is where `repro resume {}` goes on from",
                    crate::interrupt::why(),
                    rec.summary.checkpoints.last().map_or("none".into(), |c| format!("iteration {}", c.iteration)),
                    rec.dir.display()
                ),
            ));
        }
        return Err(fail(
            Kind::GuestFailed,
            format!(
                "the checkpoint at iteration {iteration} failed: {e:#}; the windows recorded so far are kept, and the last \
                 complete checkpoint ({}) is where `repro resume {}` goes on from",
                rec.summary.checkpoints.last().map_or("none".into(), |c| format!("iteration {}", c.iteration)),
                rec.dir.display()
            ),
        ));
    }
    if at == AtRound::Save {
        return Ok(());
    }
    agent.guard.stop().await;
    Err(fail(
        Kind::Checkpointed,
        format!(
            "saved the guest at iteration {iteration} of {} and stopped, as asked; `repro resume {}` goes on from there",
            rec.summary.iterations_requested,
            rec.dir.display()
        ),
    ))
}

/// The message stream ended without Done: a panic, or an unexpected exit.
async fn ended_early(agent: &mut Agent, rec: &Recorder) -> anyhow::Error {
    let status = agent.guard.wait_or_kill(Duration::from_secs(10)).await;
    let at = format!("at iteration {} of {}", rec.summary.iterations_done, rec.summary.iterations_requested);
    if agent.guard.console_panicked() && starved_by_the_host(&agent.guard.diagnostics()) {
        return fail(
            Kind::HostStarved,
            format!(
                "the guest failed its timer check {at} because this host gave it too little CPU time, not because of its kernel; \
                 the windows so far are kept; run it again on a less busy host. Console:{}",
                agent.guard.diagnostics()
            ),
        );
    }
    if agent.guard.console_panicked() {
        return fail(
            Kind::GuestPanic,
            format!("the guest kernel panicked {at}; the windows so far are kept. Console:{}", agent.guard.diagnostics()),
        );
    }
    let st = status.map_or("still running, killed".into(), |s| s.to_string());
    if let (Some(bytes), Some(true)) = (agent.truncated_tail(), status.map(|s| s.success())) {
        return fail(
            Kind::GuestFailed,
            format!(
                "{} exited cleanly ({st}) {at}, but the message stream ended in the middle of a line ({bytes} bytes): \
                 its tail was lost in transit, not refused by the agent. The windows so far are kept{}",
                agent.guard.what,
                agent.guard.diagnostics()
            ),
        );
    }
    fail(Kind::GuestFailed, format!("{} exited ({st}) {at} before the run finished{}", agent.guard.what, agent.guard.diagnostics()))
}
