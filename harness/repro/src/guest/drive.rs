//! The one session every command takes (`run` in a guest or on the host,
//! `exec`, `resume`, and through `run` `check`, `matrix` and `bisect`).
//! A start gives an agent that said hello, and the checkpointer of a run
//! that saves; from there the stream is recorded within the run's limits,
//! with its progress, and it ends the same way whatever started it: the
//! agent's end awaited after Done, or its child killed. Timeouts,
//! checkpoints and the ending are written here once; the starts differ
//! (a boot, the host agent, a saved state loaded) and only they.

use std::time::Duration;

use anyhow::Result;

use crate::guest::checkpoint::Checkpointer;
use crate::guest::session::Agent;
use crate::guest::stream::{self, StreamLimits};
use crate::run::progress::Progress;
use crate::run::record::Recorder;

/// What a start hands the session.
pub(crate) struct Begun {
    pub agent: Agent,
    /// A run that saves its guest at rounds.
    pub checkpoint: Option<Checkpointer>,
    /// How long the agent may take to end after Done (a guest powers off).
    pub after_done: Duration,
}

/// Start the agent with `start`, then record its stream into `rec` within
/// `limits` until it ends; the progress is finished either way.
pub(crate) fn drive(
    rec: &mut Recorder,
    progress: &mut Progress,
    limits: &StreamLimits,
    start: impl AsyncFnOnce(&mut Recorder, &mut Progress) -> Result<Begun>,
) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let outcome = rt.block_on(async {
        let mut begun = start(rec, progress).await?;
        let r = stream::stream(&mut begun.agent, rec, progress, limits, begun.checkpoint.as_mut()).await;
        // On an error the stream has stopped the agent (or its guard will).
        if r.is_ok() && begun.agent.guard.wait_or_kill(begun.after_done).await.is_none() {
            tracing::warn!("the agent did not end within {:?} of its last message; it was killed", begun.after_done);
        }
        r
    });
    progress.finish();
    outcome
}
