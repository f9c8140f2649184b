//! Driving one agent to the end: start it (QEMU guest or host process), wait
//! for its hello, stream its messages into the recorder, answer its rounds,
//! and turn every way it can stop into a clear error. Every child is owned
//! by a [`Guard`] that kills and reaps it; what the UI shows it learns from
//! the stream's [`Event`]s.

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use repro_proto::Message;
use repro_proto::{HostMessage, MAX_LINE_BYTES};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::UnixListener;
use tokio::process::Command;
use tokio::time::{sleep_until, Instant};

use crate::error::{fail, Kind};
use crate::guest::checkpoint::{AtRound, Checkpointer};
pub(crate) use crate::guest::guard::{read_lossy, starved_by_the_host, Guard};
use crate::guest::lines::{Line, Lines};
use crate::guest::qemu::{self, VmSpec};
use crate::run::progress::{Event, Progress};
use crate::run::record::Recorder;
use crate::text::printable;

/// A running agent whose messages can be read.
pub(crate) struct Agent {
    pub guard: Guard,
    lines: Lines,
    /// The way back to the agent ([`HostMessage`]): the guest's serial
    /// socket, or the host agent's stdin.
    ack: Option<Box<dyn AsyncWrite + Unpin + Send>>,
}

/// Why a start did not reach the agent's hello.
pub(crate) enum StartFailure {
    Exited(String),
    Deadline(String),
    Interrupted,
    Other(anyhow::Error),
}

impl StartFailure {
    pub(crate) fn describe(&self) -> String {
        match self {
            StartFailure::Exited(s) | StartFailure::Deadline(s) => s.clone(),
            StartFailure::Interrupted => "interrupted".into(),
            StartFailure::Other(e) => format!("{e:#}"),
        }
    }
}

/// The hello's release, and the agent ready to stream.
pub(crate) struct Started {
    pub agent: Agent,
    pub hello: Message,
}

/// Boot QEMU and wait for the agent's hello within `deadline`; with
/// `first_line`, fail as soon as that long has passed with nothing from
/// the kernel on the console (a guest that hangs before its first line
/// says no more later).
pub(crate) async fn start_qemu(
    spec: &VmSpec,
    run_dir: &Path,
    deadline: Duration,
    first_line: Option<Duration>,
) -> Result<Started, StartFailure> {
    let until = Instant::now() + deadline;
    let agent = spawn_qemu(spec, run_dir, until, deadline).await?;
    let silence = first_line.map(|within| (spec.console_log.as_path(), within));
    await_hello(agent, until, deadline, spec.machine.accel.as_str(), silence).await
}

/// Whether the console shows nothing from the kernel: empty, or only the
/// firmware's own lines (SeaBIOS, "Booting from ROM").
pub(crate) fn kernel_printed_nothing(console: &Path) -> bool {
    let text = read_lossy(console);
    text.lines()
        .map(str::trim)
        .all(|l| l.is_empty() || ["SeaBIOS", "Booting from", "iPXE", "Probing EDD", "Machine UUID"].iter().any(|p| l.starts_with(p)))
}

/// Start QEMU and accept its serial connection to the agent: a booting
/// guest (whose agent will say hello) or one waiting for a saved state.
pub(crate) async fn spawn_qemu(spec: &VmSpec, run_dir: &Path, until: Instant, deadline: Duration) -> Result<Agent, StartFailure> {
    let stderr_log = run_dir.join(qemu::stderr_log(spec.machine.accel));
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&stderr_log)
        .with_context(|| format!("creating {}", stderr_log.display()))
        .map_err(StartFailure::Other)?;
    let _ = std::fs::remove_file(&spec.proto_socket);
    let listener = UnixListener::bind(&spec.proto_socket)
        .with_context(|| format!("listening on {}", spec.proto_socket.display()))
        .map_err(StartFailure::Other)?;
    let args = qemu::command_args(spec);
    tracing::debug!("qemu command: {} {}", spec.qemu.program.display(), crate::text::shell_words(&args));
    let mut cmd = Command::new(&spec.qemu.program);
    cmd.args(&args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(stderr).kill_on_drop(true);
    // A terminal's Ctrl-C reaches repro only, which records what it has and
    // stops QEMU itself; if repro dies, QEMU dies with it.
    crate::child::own_async(&mut cmd, nix::sys::signal::Signal::SIGKILL);
    let child = cmd.spawn().map_err(|e| StartFailure::Other(anyhow::anyhow!("starting {}: {e}", spec.qemu.program.display())))?;
    let mut guard = Guard::qemu(child, stderr_log, spec.console_log.clone());
    let accel = spec.machine.accel.as_str();
    let stream = tokio::select! {
        r = listener.accept() => r.map(|(s, _)| s).context("accepting QEMU's serial connection").map_err(StartFailure::Other),
        st = guard.child.wait() => Err(exited_before_hello(&guard, st.ok(), accel)),
        _ = sleep_until(until) => Err(StartFailure::Deadline(format!("QEMU ({accel}) did not connect its serial port within {deadline:?}"))),
        _ = crate::interrupt::raised() => Err(StartFailure::Interrupted),
    };
    match stream {
        Ok(s) => {
            let (read, write) = s.into_split();
            Ok(Agent::new(guard, Box::new(read), Some(Box::new(write))))
        }
        Err(f) => {
            guard.stop().await;
            Err(f)
        }
    }
}

/// Start the agent on the host's own kernel.
pub(crate) async fn start_host(agent_bin: &Path, job_path: &Path, run_dir: &Path, deadline: Duration) -> Result<Started, StartFailure> {
    let stderr_log = run_dir.join("agent.stderr.log");
    let stderr = std::fs::File::create(&stderr_log).map_err(|e| StartFailure::Other(e.into()))?;
    let mut cmd = Command::new(agent_bin);
    cmd.arg("--job").arg(job_path).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(stderr).kill_on_drop(true);
    // The agent churns the host's namespaces as root: it and its workers
    // (its process group) never outlive repro.
    crate::child::own_async(&mut cmd, nix::sys::signal::Signal::SIGKILL);
    let mut child = cmd.spawn().map_err(|e| StartFailure::Other(anyhow::anyhow!("starting {}: {e}", agent_bin.display())))?;
    let stdout = child.stdout.take().expect("piped stdout");
    let stdin = child.stdin.take().expect("piped stdin");
    let agent = Agent::new(Guard::host_agent(child, stderr_log), Box::new(stdout), Some(Box::new(stdin)));
    await_hello(agent, Instant::now() + deadline, deadline, "host", None).await
}

fn exited_before_hello(guard: &Guard, status: Option<ExitStatus>, accel: &str) -> StartFailure {
    let st = status.map_or("unknown status".into(), |s| s.to_string());
    StartFailure::Exited(format!("{} ({accel}) exited ({st}) before the agent said hello{}", guard.what, guard.diagnostics()))
}

async fn await_hello(
    mut agent: Agent,
    until: Instant,
    deadline: Duration,
    accel: &str,
    mut silence: Option<(&Path, Duration)>,
) -> Result<Started, StartFailure> {
    let silence_at = Instant::now() + silence.map_or(Duration::ZERO, |(_, within)| within);
    loop {
        let line = tokio::select! {
            l = agent.next_line() => l,
            _ = sleep_until(silence_at), if silence.is_some() => {
                let (console, within) = silence.take().expect("checked by the guard");
                if kernel_printed_nothing(console) {
                    agent.guard.stop().await;
                    return Err(StartFailure::Deadline(format!(
                        "the kernel printed nothing on its console within {within:?} ({accel})"
                    )));
                }
                continue;
            }
            _ = sleep_until(until) => {
                agent.guard.stop().await;
                return Err(StartFailure::Deadline(format!("no hello from the agent within {deadline:?} ({accel})")));
            }
            _ = crate::interrupt::raised() => {
                agent.guard.stop().await;
                return Err(StartFailure::Interrupted);
            }
        };
        match line {
            Ok(Some(Line::Oversized)) => tracing::debug!("ignoring an oversized line before hello"),
            Ok(Some(Line::Text(text))) => match serde_json::from_str::<Message>(&text) {
                Ok(hello @ Message::Hello { .. }) => {
                    crate::fastset::refuse_boot().map_err(StartFailure::Other)?;
                    return Ok(Started { agent, hello });
                }
                // Noise on the line before the agent speaks is harmless.
                _ => tracing::debug!("ignoring before hello: {text:?}"),
            },
            Ok(None) => {
                let status = agent.guard.child.wait().await.ok();
                return Err(exited_before_hello(&agent.guard, status, accel));
            }
            Err(e) => {
                agent.guard.stop().await;
                return Err(StartFailure::Other(e.context("reading the agent's messages")));
            }
        }
    }
}

impl Agent {
    fn new(guard: Guard, reader: Box<dyn AsyncRead + Unpin + Send>, ack: Option<Box<dyn AsyncWrite + Unpin + Send>>) -> Agent {
        Agent { guard, lines: Lines::new(reader), ack }
    }

    async fn next_line(&mut self) -> Result<Option<Line>> {
        self.lines.next().await
    }

    /// Tell a guest agent its final message arrived, so it may power off.
    async fn acknowledge(&mut self) {
        self.answer(HostMessage::Ack).await;
    }

    /// Write one host message back to the agent.
    pub(crate) async fn answer(&mut self, msg: HostMessage) {
        if let Some(w) = &mut self.ack {
            if let Err(e) = w.write_all(msg.line().as_bytes()).await.and(w.flush().await) {
                tracing::debug!("could not send {msg:?} to the agent: {e}");
            }
        }
    }
}

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
    if let (Some(bytes), Some(true)) = (agent.lines.truncated_tail, status.map(|s| s.success())) {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// An agent that never speaks (a `sleep` holding its pipe open): the
    /// state of a guest that hangs before its hello.
    fn silent_agent(dir: &Path) -> Agent {
        let mut cmd = Command::new("sleep");
        cmd.arg("60").stdout(Stdio::piped()).kill_on_drop(true);
        let mut child = cmd.spawn().unwrap();
        let out = child.stdout.take().unwrap();
        Agent::new(Guard::host_agent(child, dir.join("stderr.log")), Box::new(out), None)
    }

    async fn wait(console: &Path, dir: &Path) -> String {
        let deadline = Duration::from_secs(3);
        let silence = Some((console, Duration::from_millis(100)));
        match await_hello(silent_agent(dir), Instant::now() + deadline, deadline, "kvm", silence).await {
            Err(StartFailure::Deadline(why)) => why,
            Err(f) => panic!("not a deadline: {}", f.describe()),
            Ok(_) => panic!("a hello from a silent agent"),
        }
    }

    #[tokio::test]
    async fn a_console_silent_past_the_first_line_bound_ends_the_wait_there() {
        let d = tempfile::tempdir().unwrap();
        let console = d.path().join("console.log");
        std::fs::write(&console, "SeaBIOS (version 1.16.2)\nBooting from ROM..\n").unwrap();
        let why = wait(&console, d.path()).await;
        assert!(why.contains("printed nothing on its console"), "{why}");
    }

    #[tokio::test]
    async fn a_kernel_that_printed_is_waited_for_until_the_deadline() {
        let d = tempfile::tempdir().unwrap();
        let console = d.path().join("console.log");
        std::fs::write(&console, "[    0.000000] Linux version 6.1.0\n").unwrap();
        let why = wait(&console, d.path()).await;
        assert!(why.starts_with("no hello from the agent within"), "{why}");
    }
}
