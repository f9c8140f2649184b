//! Driving one agent to the end: start it (QEMU guest or host process), wait
//! for its hello, stream its messages into the recorder, and turn every way
//! it can stop into a clear error. Every child is owned by a [`Guard`] that
//! kills and reaps it.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use repro_proto::Message;
use repro_proto::{HostMessage, MAX_LINE_BYTES};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::process::{Child, Command};
use tokio::time::{sleep_until, Instant};

use crate::error::{fail, Kind};
use crate::guest::qemu::{self, VmSpec};
use crate::run::progress::Progress;
use crate::run::record::Recorder;
use crate::text::{printable, tail};

/// A child process (QEMU or the host agent) that is killed and reaped when
/// the guard goes away, however the run ends.
pub(crate) struct Guard {
    child: Child,
    what: &'static str,
    /// Where its stderr goes.
    stderr_log: PathBuf,
    /// The guest console, for QEMU.
    console_log: Option<PathBuf>,
    /// Keeps console.log under [`CONSOLE_CAP`] while QEMU runs.
    rotation: Option<tokio::task::JoinHandle<()>>,
}

impl Guard {
    /// Kill (if still running) and reap.
    pub(crate) async fn stop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            if let Some(pid) = self.child.id() {
                crate::child::kill_group(pid);
            }
            let _ = self.child.start_kill();
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }

    /// Let it exit by itself for up to `grace`, then kill it.
    pub(crate) async fn wait_or_kill(&mut self, grace: Duration) -> Option<ExitStatus> {
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(Ok(s)) => Some(s),
            _ => {
                self.stop().await;
                None
            }
        }
    }

    /// Its stderr and the last console lines, for error messages.
    pub(crate) fn diagnostics(&self) -> String {
        let mut out = String::new();
        let stderr = read_lossy(&self.stderr_log);
        if !stderr.trim().is_empty() {
            out.push_str(&format!("\n--- {} stderr ({}) ---\n{}", self.what, self.stderr_log.display(), tail(&stderr, 15)));
        }
        if let Some(c) = &self.console_log {
            let console = read_lossy(c);
            out.push_str(&format!("\n--- last console lines ({}) ---\n{}", c.display(), tail(&console, 25)));
        }
        out
    }

    fn console_panicked(&self) -> bool {
        self.console_log.as_deref().is_some_and(|c| read_lossy(c).contains(repro_proto::PANIC_MARKER))
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(r) = self.rotation.take() {
            r.abort();
        }
        // The async paths stop it properly; this covers early returns.
        if let Some(pid) = self.child.id() {
            crate::child::kill_group(pid);
        }
        let _ = self.child.start_kill();
        let _ = self.child.try_wait();
    }
}

/// At most the last [`LOG_TAIL_BYTES`] of a log the guest or QEMU wrote:
/// a guest that floods its console cannot make repro read gigabytes.
pub(crate) fn read_lossy(p: &Path) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(p) else { return String::new() };
    let len = f.metadata().map_or(0, |m| m.len());
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(LOG_TAIL_BYTES)));
    let mut b = Vec::new();
    let _ = f.take(LOG_TAIL_BYTES).read_to_end(&mut b);
    String::from_utf8_lossy(&b).into_owned()
}

/// The most console.log holds: QEMU appends to it (`append=on`), and past
/// this its last MiB is moved to console.log.1 and it starts over, so a
/// guest flooding its console holds at most this and a MiB on disk.
pub(crate) const CONSOLE_CAP: u64 = 64 << 20;

/// Rotate `path` if it is over `cap` bytes; whether it did. Lines QEMU
/// writes between the copy and the truncation are lost: only a flood gets
/// here.
pub(crate) fn rotate_if_over(path: &Path, cap: u64) -> std::io::Result<bool> {
    if std::fs::metadata(path)?.len() <= cap {
        return Ok(false);
    }
    let tail = read_lossy(path);
    let mut old = path.as_os_str().to_owned();
    old.push(".1");
    std::fs::write(&old, tail)?;
    std::fs::OpenOptions::new().write(true).open(path)?.set_len(0)?;
    Ok(true)
}

/// How much of the end of console.log and QEMU's stderr repro reads.
pub(crate) const LOG_TAIL_BYTES: u64 = 1 << 20;

/// A running agent whose messages can be read.
pub(crate) struct Agent {
    pub guard: Guard,
    lines: Lines,
    /// The way back to the agent ([`HostMessage`]): the guest's serial
    /// socket, or the host agent's stdin.
    ack: Option<Box<dyn AsyncWrite + Unpin + Send>>,
}

/// The agent's stream, split into bounded lines.
struct Lines {
    reader: BufReader<Box<dyn AsyncRead + Unpin + Send>>,
    buf: Vec<u8>,
    /// The stream ended in the middle of a line of this many bytes: its
    /// tail was lost, which is not the same as the agent failing.
    truncated_tail: Option<usize>,
}

/// One line from the agent.
enum Line {
    Text(String),
    /// Longer than [`MAX_LINE_BYTES`]: dropped without being held.
    Oversized,
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

/// Boot QEMU and wait for the agent's hello within `deadline`.
pub(crate) async fn start_qemu(spec: &VmSpec, run_dir: &Path, deadline: Duration) -> Result<Started, StartFailure> {
    let stderr_log = run_dir.join(format!("qemu-{}.stderr.log", spec.accel.as_str()));
    let stderr =
        std::fs::File::create(&stderr_log).with_context(|| format!("creating {}", stderr_log.display())).map_err(StartFailure::Other)?;
    let _ = std::fs::remove_file(&spec.proto_socket);
    let listener = UnixListener::bind(&spec.proto_socket)
        .with_context(|| format!("listening on {}", spec.proto_socket.display()))
        .map_err(StartFailure::Other)?;
    let args = qemu::command_args(spec);
    tracing::debug!("qemu command: {} {}", spec.qemu.display(), crate::text::shell_words(&args));
    let mut cmd = Command::new(&spec.qemu);
    cmd.args(&args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(stderr).kill_on_drop(true);
    // A terminal's Ctrl-C reaches repro only, which records what it has and
    // stops QEMU itself; if repro dies, QEMU dies with it.
    crate::child::own_async(&mut cmd, nix::sys::signal::Signal::SIGKILL);
    let child = cmd.spawn().map_err(|e| StartFailure::Other(anyhow::anyhow!("starting {}: {e}", spec.qemu.display())))?;
    let console = spec.console_log.clone();
    let rotation = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            if let Ok(true) = rotate_if_over(&console, CONSOLE_CAP) {
                tracing::warn!("the guest's console passed {} MiB: its last MiB is in {}.1", CONSOLE_CAP >> 20, console.display());
            }
        }
    });
    let mut guard = Guard { child, what: "qemu", stderr_log, console_log: Some(spec.console_log.clone()), rotation: Some(rotation) };
    let until = Instant::now() + deadline;
    let accel = spec.accel.as_str();
    let stream = tokio::select! {
        r = listener.accept() => r.map(|(s, _)| s).context("accepting QEMU's serial connection").map_err(StartFailure::Other),
        st = guard.child.wait() => Err(exited_before_hello(&guard, st.ok(), accel)),
        _ = sleep_until(until) => Err(StartFailure::Deadline(format!("QEMU ({accel}) did not connect its serial port within {deadline:?}"))),
        _ = crate::interrupt::raised() => Err(StartFailure::Interrupted),
    };
    let stream = match stream {
        Ok(s) => s,
        Err(f) => {
            guard.stop().await;
            return Err(f);
        }
    };
    let (read, write) = stream.into_split();
    let agent = Agent::new(guard, Box::new(read), Some(Box::new(write)));
    await_hello(agent, until, deadline, accel).await
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
    let agent = Agent::new(
        Guard { child, what: "repro-agent", stderr_log, console_log: None, rotation: None },
        Box::new(stdout),
        Some(Box::new(stdin)),
    );
    await_hello(agent, Instant::now() + deadline, deadline, "host").await
}

fn exited_before_hello(guard: &Guard, status: Option<ExitStatus>, accel: &str) -> StartFailure {
    let st = status.map_or("unknown status".into(), |s| s.to_string());
    StartFailure::Exited(format!("{} ({accel}) exited ({st}) before the agent said hello{}", guard.what, guard.diagnostics()))
}

async fn await_hello(mut agent: Agent, until: Instant, deadline: Duration, accel: &str) -> Result<Started, StartFailure> {
    loop {
        let line = tokio::select! {
            l = agent.next_line() => l,
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
                Ok(hello @ Message::Hello { .. }) => return Ok(Started { agent, hello }),
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
    async fn answer(&mut self, msg: HostMessage) {
        if let Some(w) = &mut self.ack {
            if let Err(e) = w.write_all(msg.line().as_bytes()).await.and(w.flush().await) {
                tracing::debug!("could not send {msg:?} to the agent: {e}");
            }
        }
    }
}

impl Lines {
    fn new(reader: Box<dyn AsyncRead + Unpin + Send>) -> Lines {
        Lines { reader: BufReader::new(reader), buf: Vec::new(), truncated_tail: None }
    }

    /// One line, lossily decoded (a serial line may carry stray bytes), and
    /// never more than [`MAX_LINE_BYTES`] of it held in memory. None at the
    /// end of the stream; a partial last line is noted in `truncated_tail`.
    async fn next(&mut self) -> Result<Option<Line>> {
        self.buf.clear();
        let mut oversized = false;
        loop {
            let chunk = self.reader.fill_buf().await?;
            if chunk.is_empty() {
                if !self.buf.is_empty() || oversized {
                    self.truncated_tail = Some(self.buf.len());
                }
                return Ok(None);
            }
            let (take, end) = match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (chunk.len(), false),
            };
            if !oversized && self.buf.len() + take > MAX_LINE_BYTES {
                oversized = true;
                self.buf = Vec::new();
            }
            if !oversized {
                self.buf.extend_from_slice(&chunk[..take]);
            }
            self.reader.consume(take);
            if end {
                return Ok(Some(if oversized {
                    Line::Oversized
                } else {
                    Line::Text(String::from_utf8_lossy(&self.buf).trim().to_string())
                }));
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

/// Stream messages into the recorder until the agent says Done. Every other
/// ending is an error of the matching kind; the recorder has kept all that
/// arrived before it.
pub(crate) async fn stream(agent: &mut Agent, rec: &mut Recorder, progress: &mut Progress, limits: &StreamLimits) -> Result<()> {
    let far = Instant::now() + Duration::from_secs(10 * 365 * 24 * 3600);
    let overall = limits.overall.unwrap_or(far);
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
            _ = crate::interrupt::raised() => {
                agent.guard.stop().await;
                return Err(fail(Kind::Interrupted, format!(
                    "{} at iteration {} of {}; the windows recorded so far are kept",
                    crate::interrupt::why(), rec.summary.iterations_done, rec.summary.iterations_requested)));
            }
        };
        let text = match line.context("reading the agent's messages")? {
            Some(Line::Text(t)) if t.is_empty() => continue,
            Some(Line::Text(t)) => t,
            Some(Line::Oversized) => {
                tracing::warn!("ignoring a line from the agent longer than {MAX_LINE_BYTES} bytes");
                continue;
            }
            None => return Err(ended_early(agent, rec).await),
        };
        let msg: Message = match serde_json::from_str(&text) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!("ignoring a garbled line from the agent ({e}): {text:?}");
                continue;
            }
        };
        rec.record(&msg)?;
        if msg.is_final() {
            agent.acknowledge().await;
        }
        match &msg {
            Message::Progress { iteration, .. } => progress.iteration(*iteration),
            Message::Window(w) => progress.window(w),
            Message::Started { baseline, .. } => progress.status(&format!("churning (baseline nr_dentry {})", baseline.nr_dentry)),
            Message::Settled(s) => progress.status(&format!("settled after {:.1}s", s.settle_s)),
            Message::Round(s) => {
                let stop = limits.early.is_some_and(|decided| decided(&rec.summary, s));
                rec.round_answered(stop)?;
                agent.answer(if stop { HostMessage::Stop } else { HostMessage::Continue }).await;
                let r = rec.summary.rounds.last().and_then(|r| r.residual.as_ref()).map_or(f64::NAN, |r| r.per_iteration);
                progress.status(&format!(
                    "round at {}: {r:.2} stale dentries per namespace after {:.1}s settling; {}",
                    s.window.iteration,
                    s.settle_s,
                    if stop { "decided, stopping" } else { "not decided yet, churning on" }
                ));
            }
            Message::Done { .. } => return Ok(()),
            Message::Error { message } => {
                agent.guard.wait_or_kill(Duration::from_secs(10)).await;
                return Err(fail(Kind::GuestFailed, format!("the agent failed: {}{}", printable(message), agent.guard.diagnostics())));
            }
            Message::Output { line } => progress.suspend(|| crate::text::outln(&printable(line).to_string())),
            Message::Hello { .. } | Message::Exited { .. } => {}
        }
    }
}

/// The panic a kernel's IO-APIC timer check ends in when its vCPU got too
/// little CPU time to see the timer tick (TCG on a busy host; `no_timer_check`
/// on the command line skips the check, so it takes an --append that
/// removes it, or a kernel that ignores it).
const TIMER_CHECK_PANIC: &str = "IO-APIC + timer doesn't work";

/// Whether a console shows the host, not the kernel, failing the boot.
pub(crate) fn starved_by_the_host(console: &str) -> bool {
    console.contains(TIMER_CHECK_PANIC)
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

    #[test]
    fn a_flooded_console_keeps_its_last_mib_and_starts_over() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("console.log");
        std::fs::write(&p, b"early boot\n").unwrap();
        assert!(!rotate_if_over(&p, 1024).unwrap());
        let mut big = vec![b'x'; 3 << 20];
        big.extend_from_slice(b"\nKernel panic - not syncing: the end\n");
        std::fs::write(&p, &big).unwrap();
        assert!(rotate_if_over(&p, 1 << 20).unwrap());
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 0);
        let kept = std::fs::read_to_string(d.path().join("console.log.1")).unwrap();
        assert_eq!(kept.len() as u64, LOG_TAIL_BYTES);
        assert!(kept.ends_with("Kernel panic - not syncing: the end\n"));
    }

    async fn read_all(input: Vec<u8>) -> (Vec<String>, Option<usize>) {
        let mut lines = Lines::new(Box::new(std::io::Cursor::new(input)));
        let mut out = Vec::new();
        while let Some(l) = lines.next().await.unwrap() {
            out.push(match l {
                Line::Text(t) => t,
                Line::Oversized => "<oversized>".into(),
            });
        }
        (out, lines.truncated_tail)
    }

    #[tokio::test]
    async fn a_stream_cut_mid_line_is_a_truncated_tail_not_a_line() {
        let (lines, tail) = read_all(b"{\"type\":\"done\"}\n{\"type\":\"sett".to_vec()).await;
        assert_eq!(lines, ["{\"type\":\"done\"}"]);
        assert_eq!(tail, Some(r#"{"type":"sett"#.len()));
        assert_eq!(read_all(b"a\nb\n".to_vec()).await, (vec!["a".to_string(), "b".to_string()], None));
    }

    #[tokio::test]
    async fn a_line_over_the_cap_is_dropped_without_being_held() {
        let mut input = vec![b'x'; MAX_LINE_BYTES + 10];
        input.extend_from_slice(b"\nnext\n");
        let (lines, tail) = read_all(input).await;
        assert_eq!(lines, ["<oversized>", "next"]);
        assert_eq!(tail, None);
    }
}
