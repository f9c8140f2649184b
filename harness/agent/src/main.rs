//! repro-agent: runs the churn workload and the probe, and streams results.
//!
//! In a guest it is PID 1 of an initramfs that repro writes: it mounts the
//! pseudo filesystems, reads its job from the initramfs, streams JSON lines
//! on a dedicated serial port and powers the machine off. On the host
//! (`repro run --backend host`) it reads the job from `--job FILE`, streams on
//! stdout and exits.
//!
//! The agent forks a child per iteration, so it stays single-threaded.

mod barrier;
mod chain;
mod measure;
mod mounts;
mod plan;
mod veth;
mod workload;

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::fd::AsFd;

use nix::sys::termios;
use repro_proto::{
    AgentMode, HostMessage, Job, Message, Task, ACK_TIMEOUT_S, FORMAT_VERSION, GUEST_JOB_PATH, GUEST_PROTO_TTY, JOB_FORMAT_VERSION,
};

/// Where messages go (the protocol serial port, or stdout), and where the
/// host's answers come from (the same tty, or stdin).
pub struct Channel {
    out: Box<dyn Write>,
    input: File,
    /// A guest: the output is a UART to drain, and the machine may power
    /// off only after the host's ack.
    guest: bool,
}

impl Channel {
    pub fn send(&mut self, msg: &Message) {
        // A failed write cannot be reported anywhere else; the host sees the
        // missing lines and a guest that stopped answering.
        if let Some(line) = plan::encode(msg) {
            let _ = self.out.write_all(line.as_bytes());
            let _ = self.out.flush();
        }
    }

    /// The host's answer to a [`Message::Round`]: Continue or Stop. With no
    /// answer within `timeout` the run goes on, as it would without rounds.
    pub fn answer(&mut self, timeout: std::time::Duration) -> HostMessage {
        let _ = self.out.flush();
        wait_for(&self.input, timeout, |m| matches!(m, HostMessage::Continue | HostMessage::Stop)).unwrap_or_else(|e| {
            eprintln!("repro-agent: going on without the host's answer to a round: {e}");
            HostMessage::Continue
        })
    }

    /// Block until the host has read everything sent so far (its
    /// [`HostMessage::Ack`]), or [`ACK_TIMEOUT_S`] passed. Only then may a
    /// guest power off: the UART and QEMU still hold the stream's tail.
    fn finish(&mut self) {
        let _ = self.out.flush();
        if !self.guest {
            // A pipe loses nothing when the agent exits: no ack is needed.
            return;
        }
        // Everything written has left the guest's UART.
        let _ = termios::tcdrain(self.input.as_fd());
        if let Err(e) = wait_for(&self.input, std::time::Duration::from_secs(ACK_TIMEOUT_S), |m| *m == HostMessage::Ack) {
            // On the console (ttyS0): the host's diagnostics show it.
            eprintln!("repro-agent: powering off without the host's ack: {e}");
        }
    }
}

/// Read lines from `f` until one is a host message `want` accepts, for at
/// most `timeout`. Anything else on the line (noise from QEMU's chardev) is
/// skipped.
fn wait_for(f: &File, timeout: std::time::Duration, want: impl Fn(&HostMessage) -> bool) -> Result<HostMessage, String> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::io::Read;
    let deadline = std::time::Instant::now() + timeout;
    let mut pending = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(format!("no answer within {:?}", timeout));
        }
        let ms = PollTimeout::try_from(left.as_millis().min(60_000) as i32).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(f.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, ms) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(format!("poll: {e}")),
        }
        let n = (&*f).read(&mut buf).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("the host closed the channel before its ack".into());
        }
        pending.extend_from_slice(&buf[..n]);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            if let Ok(m) = serde_json::from_slice::<HostMessage>(&line) {
                if want(&m) {
                    return Ok(m);
                }
            }
        }
        // A stray byte stream with no newline cannot grow without bound.
        if pending.len() > 4096 {
            pending.clear();
        }
    }
}

fn main() {
    let guest = std::process::id() == 1;
    let args: Vec<String> = std::env::args().collect();
    let result = if guest {
        guest_main()
    } else {
        match args.iter().position(|a| a == "--job").and_then(|i| args.get(i + 1)) {
            Some(path) => host_main(path),
            None => {
                eprintln!("usage: repro-agent --job JOB.json   (repro starts this; see `repro run --help`)");
                std::process::exit(2);
            }
        }
    };
    if let Err(e) = result {
        eprintln!("repro-agent: {e}");
        if guest {
            power_off();
        }
        std::process::exit(1);
    }
}

fn host_main(job_path: &str) -> io::Result<()> {
    let job = read_job(job_path)?;
    // SAFETY: fd 0 is this process's stdin, which repro pipes to it, and
    // nothing else in the agent uses it.
    let stdin = unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(0) };
    let mut ch = Channel { out: Box::new(BufWriter::new(io::stdout())), input: stdin, guest: false };
    run_job(&job, &mut ch, AgentMode::Host);
    ch.finish();
    Ok(())
}

fn guest_main() -> io::Result<()> {
    mount_pseudo_filesystems();
    let tty = open_proto_tty()?;
    let mut ch = Channel { out: Box::new(BufWriter::new(tty.try_clone()?)), input: tty, guest: true };
    match read_job(GUEST_JOB_PATH) {
        Ok(job) => run_job(&job, &mut ch, AgentMode::Guest),
        Err(e) => ch.send(&Message::Error { message: format!("reading {GUEST_JOB_PATH}: {e}") }),
    }
    ch.finish();
    power_off()
}

fn read_job(path: &str) -> io::Result<Job> {
    let text = std::fs::read_to_string(path)?;
    // The version first: a job of another format would not parse as ours.
    let v: serde_json::Value = serde_json::from_str(&text).map_err(io::Error::other)?;
    let version = v.get("format_version").and_then(serde_json::Value::as_u64);
    if version != Some(u64::from(JOB_FORMAT_VERSION)) {
        return Err(io::Error::other(format!(
            "job format {} but this agent speaks {JOB_FORMAT_VERSION}: rebuild the workspace",
            version.map_or("(none)".to_string(), |n| n.to_string())
        )));
    }
    serde_json::from_str(&text).map_err(io::Error::other)
}

fn run_job(job: &Job, ch: &mut Channel, mode: AgentMode) {
    let uts = nix::sys::utsname::uname().ok();
    let field = |f: fn(&nix::sys::utsname::UtsName) -> &std::ffi::OsStr| {
        uts.as_ref().map(|u| f(u).to_string_lossy().into_owned()).unwrap_or_default()
    };
    ch.send(&Message::Hello {
        format_version: FORMAT_VERSION,
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        release: field(|u| u.release()),
        kernel_version: field(|u| u.version()),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
        mem_total_kib: measure::mem_total_kib().unwrap_or(0),
        uptime_s: std::fs::read_to_string("/proc/uptime").ok().and_then(|u| u.split_whitespace().next()?.parse().ok()),
    });
    if job.mode != mode {
        ch.send(&Message::Error { message: format!("job is for mode {:?} but the agent runs as {mode:?}", job.mode) });
        return;
    }
    let result = match &job.task {
        Task::Exec { argv } => exec(argv, ch),
        Task::Churn(churn) => workload::run(churn, ch),
    };
    if let Err(message) = result {
        ch.send(&Message::Error { message });
    }
}

/// `repro exec`: run one command, forward its output line by line.
fn exec(argv: &[String], ch: &mut Channel) -> Result<(), String> {
    use std::io::BufRead;
    use std::os::unix::process::ExitStatusExt;
    let (program, args) = argv.split_first().ok_or("exec needs a command")?;
    let (reader, writer) = io::pipe().map_err(|e| format!("pipe: {e}"))?;
    let t0 = std::time::Instant::now();
    let mut child = std::process::Command::new(program)
        .args(args)
        .env("PATH", "/bin:/sbin:/usr/bin")
        .stdin(std::process::Stdio::null())
        .stdout(writer.try_clone().map_err(|e| format!("pipe: {e}"))?)
        .stderr(writer)
        .spawn()
        .map_err(|e| format!("cannot run {program} in the guest: {e}"))?;
    for line in io::BufReader::new(reader).lines() {
        match line {
            Ok(line) => ch.send(&Message::Output { line }),
            Err(_) => break,
        }
    }
    let status = child.wait().map_err(|e| format!("waiting for {program}: {e}"))?;
    let code = status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    ch.send(&Message::Exited { code });
    ch.send(&Message::Done { iterations_done: 0, elapsed_s: t0.elapsed().as_secs_f64() });
    Ok(())
}

fn mount_pseudo_filesystems() {
    use nix::mount::{mount, MsFlags};
    for (src, target, fstype) in [("proc", "/proc", "proc"), ("sysfs", "/sys", "sysfs"), ("devtmpfs", "/dev", "devtmpfs")] {
        let _ = std::fs::create_dir_all(target);
        if let Err(e) = mount(Some(src), target, Some(fstype), MsFlags::empty(), None::<&str>) {
            // Visible on the console; a missing /proc fails loudly later.
            eprintln!("repro-agent: mount {target}: {e}");
        }
    }
}

fn open_proto_tty() -> io::Result<File> {
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(GUEST_PROTO_TTY)
        .map_err(|e| io::Error::new(e.kind(), format!("opening {GUEST_PROTO_TTY}: {e}")))?;
    // Raw mode: no "\n" -> "\r\n" translation, no echo, no line discipline.
    if let Ok(mut t) = termios::tcgetattr(tty.as_fd()) {
        termios::cfmakeraw(&mut t);
        let _ = termios::tcsetattr(tty.as_fd(), termios::SetArg::TCSANOW, &t);
    }
    Ok(tty)
}

fn power_off() -> ! {
    use nix::sys::reboot::{reboot, RebootMode};
    nix::unistd::sync();
    let _ = reboot(RebootMode::RB_POWER_OFF);
    // Without ACPI power-off, a restart ends QEMU too (it runs with -no-reboot).
    let _ = reboot(RebootMode::RB_AUTOBOOT);
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;
    use std::time::{Duration, Instant};

    fn pair() -> (File, UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        (File::from(std::os::fd::OwnedFd::from(a)), b)
    }

    #[test]
    fn the_ack_is_found_after_noise_and_split_writes() {
        let (agent, mut host) = pair();
        let writer = std::thread::spawn(move || {
            host.write_all(b"\x00garbage\n{\"type\":").unwrap();
            std::thread::sleep(Duration::from_millis(50));
            host.write_all(&HostMessage::Ack.line().as_bytes()[8..]).unwrap();
            host
        });
        assert_eq!(wait_for(&agent, Duration::from_secs(5), |m| *m == HostMessage::Ack).unwrap(), HostMessage::Ack);
        drop(writer.join());
    }

    #[test]
    fn without_an_ack_the_wait_ends_at_its_bound() {
        let (agent, mut host) = pair();
        host.write_all(b"{\"type\":\"nack\"}\n").unwrap();
        let t0 = Instant::now();
        let e = wait_for(&agent, Duration::from_millis(300), |m| *m == HostMessage::Ack).unwrap_err();
        assert!(e.contains("no answer"), "{e}");
        assert!(t0.elapsed() >= Duration::from_millis(300) && t0.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_closed_channel_ends_the_wait_at_once() {
        let (agent, host) = pair();
        drop(host);
        assert!(wait_for(&agent, Duration::from_secs(30), |_| true).unwrap_err().contains("closed"));
    }

    #[test]
    fn a_round_waits_for_continue_or_stop_and_skips_a_late_ack() {
        let (agent, mut host) = pair();
        host.write_all(HostMessage::Ack.line().as_bytes()).unwrap();
        host.write_all(HostMessage::Stop.line().as_bytes()).unwrap();
        let got = wait_for(&agent, Duration::from_secs(5), |m| matches!(m, HostMessage::Continue | HostMessage::Stop));
        assert_eq!(got.unwrap(), HostMessage::Stop);
    }
}
