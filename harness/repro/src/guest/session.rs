//! Driving one agent to the end: start it (QEMU guest or host process), wait
//! for its hello, stream its messages into the recorder, answer its rounds,
//! and turn every way it can stop into a clear error. Every child is owned
//! by a [`Guard`] that kills and reaps it; what the UI shows it learns from
//! the stream's [`Event`]s.

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use repro_proto::{HostMessage, Message};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::UnixListener;
use tokio::process::Command;
use tokio::time::{sleep_until, Instant};

pub(crate) use crate::guest::guard::{read_lossy, starved_by_the_host, Guard};
use crate::guest::lines::{Line, Lines};
use crate::guest::qemu::{self, VmSpec};

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

    /// The stream ended in the middle of a line of this many bytes.
    pub(crate) fn truncated_tail(&self) -> Option<usize> {
        self.lines.truncated_tail
    }

    pub(crate) async fn next_line(&mut self) -> Result<Option<Line>> {
        self.lines.next().await
    }

    /// Tell a guest agent its final message arrived, so it may power off.
    pub(crate) async fn acknowledge(&mut self) {
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
