//! QEMU's machine protocol (QMP) through the `qapi` crate's typed commands:
//! the connection, over a Unix socket (a checkpointed guest) or a child's
//! stdio (the KVM probe's CPU model query). What each feature asks is
//! beside it (`checkpoint.rs`, `qemu::kvm_model_gaps`).

use std::io::{BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

type Reader = BufReader<Box<dyn Read + Send>>;
type Writer = Box<dyn Write + Send>;

/// A connection to QEMU's machine protocol, past its handshake.
pub(crate) struct Qmp {
    inner: qapi::Qmp<qapi::Stream<Reader, Writer>>,
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
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        Qmp::over(stream.try_clone()?, stream)
    }

    /// Any pair of streams QEMU speaks QMP on (`-qmp stdio`: its stdout and stdin).
    pub(crate) fn over(read: impl Read + Send + 'static, write: impl Write + Send + 'static) -> Result<Qmp> {
        let reader: Reader = BufReader::new(Box::new(read));
        let writer: Writer = Box::new(write);
        let mut inner = qapi::Qmp::new(qapi::Stream::new(reader, writer));
        inner.handshake().context("QMP handshake")?;
        Ok(Qmp { inner })
    }

    pub(crate) fn run<C: qapi::Command>(&mut self, c: &C) -> Result<C::Ok> {
        self.inner.execute(c).with_context(|| format!("QMP {}", C::NAME))
    }
}
