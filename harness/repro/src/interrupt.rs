//! The one process-wide interrupt. SIGINT, SIGTERM and SIGHUP only raise a
//! flag, installed once when repro starts; every long operation (a run's
//! stream, a build's make, a bisection's and a matrix's loops, downloads)
//! checks it and stops cleanly, keeping what it recorded. Once raised it
//! stays raised: the whole command is ending, and a `matrix` or `bisect`
//! must not start its next run. tokio's own signal streams are not used,
//! since they stay registered after the first run and would swallow every
//! later Ctrl-C.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

static RAISED: AtomicBool = AtomicBool::new(false);
/// How many signals came: a blocking step begun after the first (the save
/// a checkpointed run makes when asked to stop) ends at the next.
static SIGNALS: AtomicU32 = AtomicU32::new(0);
/// Raised because whoever read stdout went away (`| head`), not by a signal.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

extern "C" fn raise(_: nix::libc::c_int) {
    SIGNALS.fetch_add(1, Ordering::SeqCst);
    RAISED.store(true, Ordering::SeqCst);
}

/// Route SIGINT, SIGTERM and SIGHUP to the flag (once, at startup).
pub(crate) fn install() {
    let action = SigAction::new(SigHandler::Handler(raise), SaFlags::SA_RESTART, SigSet::empty());
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only stores to an atomic.
        let _ = unsafe { sigaction(sig, &action) };
    }
}

/// Whether the user (or the system) asked repro to stop.
pub(crate) fn requested() -> bool {
    RAISED.load(Ordering::SeqCst)
}

/// The signals received so far (see [`SIGNALS`]).
pub(crate) fn signals() -> u32 {
    SIGNALS.load(Ordering::SeqCst)
}

/// The reader of stdout is gone: stop as for Ctrl-C, quietly.
pub(crate) fn stdout_closed() {
    STDOUT_CLOSED.store(true, Ordering::SeqCst);
    RAISED.store(true, Ordering::SeqCst);
}

/// Whether the interrupt came from a closed stdout.
pub(crate) fn by_closed_stdout() -> bool {
    STDOUT_CLOSED.load(Ordering::SeqCst)
}

/// Why the command is stopping, for the messages and the run's record.
pub(crate) fn why() -> &'static str {
    if by_closed_stdout() {
        "stdout was closed (broken pipe)"
    } else {
        "interrupted"
    }
}

/// Resolves once the interrupt is raised (polled: the handler can only
/// store to an atomic, and a tenth of a second is quick enough for Ctrl-C).
pub(crate) async fn raised() {
    while !requested() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_signal_raises_the_same_flag_and_it_stays_raised() {
        // The flag is process-wide and stays raised: test it in a process of
        // its own, not in the one `cargo test` shares between tests.
        if std::env::var_os("REPRO_INTERRUPT_TEST_CHILD").is_none() {
            let st = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "interrupt::tests::every_signal_raises_the_same_flag_and_it_stays_raised", "--test-threads=1"])
                .env("REPRO_INTERRUPT_TEST_CHILD", "1")
                .status()
                .unwrap();
            assert!(st.success(), "the test in its own process failed ({st})");
            return;
        }
        install();
        assert!(!requested());
        nix::sys::signal::raise(Signal::SIGHUP).unwrap();
        assert!(requested());
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        rt.block_on(async { tokio::time::timeout(Duration::from_secs(2), raised()).await }).expect("raised() returns once the flag is up");
        nix::sys::signal::raise(Signal::SIGINT).unwrap();
        assert!(requested(), "a second signal is honoured too");
    }
}
