//! QEMU's machine protocol (QMP) through the `qapi` crate's typed commands:
//! the connection, over a Unix socket (a checkpointed guest) or a child's
//! stdio (the KVM probe's CPU model query). What each feature asks is
//! beside it (`checkpoint.rs`, `qemu::kvm_model_gaps`).

use std::io::{BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

type Reader = BufReader<Bounded<Box<dyn Read + Send>>>;
type Writer = Box<dyn Write + Send>;

/// The longest one command may take to be answered: QEMU answers at once
/// (a migration is polled, each poll a command).
const COMMAND_BOUND: Duration = Duration::from_secs(60);
/// The longest line QEMU's answers or events have (query-cpu-definitions,
/// the longest repro asks for, is ~40 KiB).
const MAX_LINE: usize = 1 << 20;
/// How often a read waiting on the socket wakes to look at the clock and
/// the signals.
const WAKE: Duration = Duration::from_millis(200);

/// A connection to QEMU's machine protocol, past its handshake.
pub(crate) struct Qmp {
    inner: qapi::Qmp<qapi::Stream<Reader, Writer>>,
    limits: std::sync::Arc<std::sync::Mutex<Limits>>,
}

/// What ends a command's wait: its deadline, or a signal after it began.
#[derive(Clone, Copy)]
struct Limits {
    deadline: Instant,
    signals: u32,
}

impl Limits {
    fn now() -> Limits {
        Limits { deadline: Instant::now() + COMMAND_BOUND, signals: crate::interrupt::signals() }
    }

    /// A signal came after these limits were set.
    fn interrupted(&self) -> bool {
        crate::interrupt::signals() > self.signals
    }
}

/// The limits shared by a connection and its reader (a poisoned lock still holds them).
fn lock(limits: &std::sync::Mutex<Limits>) -> std::sync::MutexGuard<'_, Limits> {
    limits.lock().unwrap_or_else(|e| e.into_inner())
}

/// QEMU's side of the connection, read within bounds. QEMU is a program
/// repro started, but a wedged or hostile one must neither hold repro
/// forever (an endless stream of events, an answer that never comes, a
/// byte a minute) nor fill its memory (a line without end): every read
/// gives up at the command's deadline or at a signal that came after the
/// command began, and a line past [`MAX_LINE`] is an error.
struct Bounded<R> {
    inner: R,
    limits: std::sync::Arc<std::sync::Mutex<Limits>>,
    /// Bytes of the line being read so far.
    line: usize,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::io::{Error, ErrorKind};
        loop {
            let limits = *lock(&self.limits);
            if limits.interrupted() {
                // Not ErrorKind::Interrupted: std's line readers retry that one forever.
                return Err(Error::other(format!("{} while waiting for QEMU", crate::interrupt::why())));
            }
            if Instant::now() > limits.deadline {
                return Err(Error::new(ErrorKind::TimedOut, format!("QEMU did not answer within {COMMAND_BOUND:?}")));
            }
            let n = match self.inner.read(buf) {
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => continue,
                r => r?,
            };
            self.line = match buf[..n].iter().rposition(|&b| b == b'\n') {
                Some(i) => n - i - 1,
                None => self.line + n,
            };
            if self.line > MAX_LINE {
                return Err(Error::new(ErrorKind::InvalidData, format!("QEMU sent a line longer than {MAX_LINE} bytes")));
            }
            return Ok(n);
        }
    }
}

impl Qmp {
    /// The Unix socket QEMU listens on (`-qmp unix:...,server=on`), waited
    /// for up to 10 s while QEMU starts.
    pub(crate) fn connect(socket: &Path) -> Result<Qmp> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let stream = loop {
            match UnixStream::connect(socket) {
                Ok(s) => break s,
                Err(e) if Instant::now() > deadline => return Err(e).with_context(|| format!("connecting to QMP at {}", socket.display())),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        stream.set_read_timeout(Some(WAKE))?;
        Qmp::over(stream.try_clone()?, stream)
    }

    /// Any pair of streams QEMU speaks QMP on (`-qmp stdio`: its stdout and
    /// stdin, where a read cannot wake on its own: the child's own time
    /// limit ends it).
    pub(crate) fn over(read: impl Read + Send + 'static, write: impl Write + Send + 'static) -> Result<Qmp> {
        let limits = std::sync::Arc::new(std::sync::Mutex::new(Limits::now()));
        let reader: Reader = BufReader::new(Bounded { inner: Box::new(read), limits: limits.clone(), line: 0 });
        let writer: Writer = Box::new(write);
        let mut inner = qapi::Qmp::new(qapi::Stream::new(reader, writer));
        inner.handshake().context("QMP handshake")?;
        Ok(Qmp { inner, limits })
    }

    /// One command and its answer, within [`COMMAND_BOUND`], and ended by
    /// a signal that comes after the step it is part of began ([`Qmp::begin`]).
    pub(crate) fn run<C: qapi::Command>(&mut self, c: &C) -> Result<C::Ok> {
        lock(&self.limits).deadline = Instant::now() + COMMAND_BOUND;
        self.inner.execute(c).with_context(|| format!("QMP {}", C::NAME))
    }

    /// A step of several commands begins (a save, a restore): a signal
    /// from now on ends it, one before does not (the save a checkpointed
    /// run makes because it was asked to stop must be able to finish).
    pub(crate) fn begin(&mut self) {
        *lock(&self.limits) = Limits::now();
    }

    /// A signal came since the step began: the loops that poll QEMU stop.
    pub(crate) fn check_interrupt(&self) -> Result<()> {
        if lock(&self.limits).interrupted() {
            anyhow::bail!("{} while waiting for QEMU", crate::interrupt::why());
        }
        Ok(())
    }
}
