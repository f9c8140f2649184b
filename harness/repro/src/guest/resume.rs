//! `repro resume DIR`: a checkpointed run continued in a new process,
//! possibly on another machine with the same QEMU, kernel image and
//! accelerator ([`SavedVm::read`] checks them): the guest's saved state
//! loaded into a new QEMU, the round it was saved at answered, and the
//! same stream recorded on to the end (or to the next stop).

use std::time::{Duration, Instant};

use anyhow::Result;
use repro_proto::HostMessage;

use crate::error::{fail, Kind};
use crate::guest::checkpoint::{Checkpointer, Qmp, SavedVm};
use crate::guest::drive::{drive, Begun};
use crate::guest::execute::{finish, Finished};
use crate::guest::request::ResumeRequest;
use crate::guest::session::{self, StartFailure};
use crate::guest::stream::StreamLimits;
use crate::run::progress::Progress;
use crate::run::record::Recorder;

/// How long QEMU may take to start and connect its serial port.
const START_BOUND: Duration = Duration::from_secs(60);

pub(crate) fn resume(req: &ResumeRequest, quiet: bool) -> Result<Finished> {
    let qemu = this_hosts_qemu(req)?;
    let (saved, summary) = SavedVm::read(&req.dir, &qemu.program)?;
    let mut rec = Recorder::reopen(&req.dir, summary, saved.samples_bytes)?;
    tracing::info!(
        "resuming {} at iteration {} of {} ({} windows recorded)",
        req.dir.display(),
        saved.iteration,
        rec.summary.iterations_requested,
        rec.summary.windows.len()
    );
    let mut progress = Progress::of_run(&rec.summary, quiet);
    let stall = req.stall_timeout.unwrap_or(Duration::from_secs_f64(saved.stall_timeout_s.max(1.0)));
    let limits = StreamLimits::new(stall, req.timeout);
    let work = crate::workdir::WorkDir::new()?;
    let spec = saved.spec(&req.dir, work.path(), qemu);
    let outcome = drive(&mut rec, &mut progress, &limits, async |rec, progress| {
        progress.status(&format!("loading the guest saved at iteration {}", saved.iteration));
        let mut agent = match session::spawn_qemu(&spec, &req.dir, tokio::time::Instant::now() + START_BOUND, START_BOUND).await {
            Ok(a) => a,
            Err(StartFailure::Interrupted) => {
                return Err(fail(Kind::Interrupted, "interrupted while starting QEMU; the checkpoint is kept"))
            }
            Err(f) => return Err(fail(Kind::GuestFailed, format!("QEMU did not start to load the checkpoint: {}", f.describe()))),
        };
        let socket = spec.qmp_socket.clone().expect("a resumed guest has a QMP socket");
        let t0 = Instant::now();
        let loaded = Qmp::connect(&socket).and_then(|mut qmp| {
            qmp.restore(&saved.state_path(&req.dir))?;
            qmp.cont()?;
            Ok(qmp)
        });
        let qmp = match loaded {
            Ok(q) => q,
            Err(e) => {
                agent.guard.stop().await;
                return Err(fail(
                    Kind::GuestFailed,
                    format!("QEMU could not load the checkpoint ({e:#}); the checkpoint is kept{}", agent.guard.diagnostics()),
                ));
            }
        };
        if let Some(c) = rec.summary.checkpoints.last_mut() {
            c.restore_s = Some(t0.elapsed().as_secs_f64());
        }
        tracing::info!("guest loaded in {:.1}s; the churn goes on", t0.elapsed().as_secs_f64());
        let checkpoint = Some(Checkpointer::resumed(req.checkpoint, &saved, qmp, &req.dir));
        // The answer to the round the guest was saved at.
        rec.round_answered(false)?;
        agent.answer(HostMessage::Continue).await;
        Ok(Begun { agent, checkpoint, after_done: Duration::from_secs(30) })
    });
    finish(&mut rec, outcome, req.json)
}

/// The QEMU this host would run the run's kernel on (`--qemu`, REPRO_QEMU,
/// PATH, or the catalog's newer QEMU): chosen here, never named by the
/// checkpoint. The kernel's name is read from the run's summary only to look
/// it up in the catalog.
fn this_hosts_qemu(req: &ResumeRequest) -> Result<crate::guest::qemu::Qemu> {
    let text = crate::input::Input::Summary.read_text(&req.dir.join(crate::run::record::SUMMARY))?;
    let name = serde_json::from_str::<repro_proto::Summary>(&text).map(|s| s.kernel.name).unwrap_or_default();
    let spec = crate::kernel::spec::KernelSpec::parse(std::ffi::OsStr::new(&name));
    crate::guest::boot::choose_qemu(req.qemu.as_deref(), &spec, &req.catalog, &crate::kernel::cache::Cache::new(None))
}
