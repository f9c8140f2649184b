//! `repro exec`: boot a kernel and run one command in it instead of the churn.

use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use repro_proto::{AgentMode, Job, FORMAT_VERSION};

use crate::guest::boot::{self, agent_path};
use crate::guest::request::ExecRequest;
use crate::guest::session::{self, StreamLimits};
use crate::run::progress::Progress;
use crate::run::record::Recorder;
use crate::run::summary::{new_summary, run_error};

pub(crate) fn exec(args: &ExecRequest) -> Result<i32> {
    let agent = agent_path()?;
    let mut extra = vec![crate::guest::initramfs::Entry::Dir { path: "bin".into() }];
    for inc in &args.include {
        let (host, guest) = match inc.split_once(':') {
            Some((h, g)) => (h.to_string(), g.trim_start_matches('/').to_string()),
            None => {
                (inc.clone(), format!("bin/{}", Path::new(inc).file_name().map_or("file".into(), |f| f.to_string_lossy().into_owned())))
            }
        };
        let data = crate::input::Input::Include.read(Path::new(&host))?;
        extra.push(crate::guest::initramfs::Entry::File { path: guest, mode: 0o755, data });
    }
    let scenario = repro_proto::Scenario {
        name: "exec".into(),
        description: args.command.join(" "),
        touch: Vec::new(),
        read_all: None,
        hold: None,
        drop_caches_every: None,
        veth: false,
        modules: Vec::new(),
        probes: Vec::new(),
        probe: repro_proto::ProbeSettings { samples: 1, budget_ms: 0, min_samples: 1 },
        settle: repro_proto::SettleSettings {
            poll_ms: 0,
            stable_polls: 0,
            max_ms: 0,
            baseline_tolerance: 0.0,
            flat_ms: 0,
            flat_factor: 0.0,
        },
        verdict: Default::default(),
    };
    let job = Job {
        format_version: FORMAT_VERSION,
        mode: AgentMode::Guest,
        scenario: scenario.clone(),
        iterations: 0,
        workers: 1,
        window: 1,
        progress_interval_ms: 1000,
        exec: Some(args.command.clone()),
        load_modules: Vec::new(),
        count_chain: false,
        first_round: None,
    };
    let date = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let mut summary = new_summary(&date, &args.vm.kernel.label(), scenario, 0, 1, 1);
    let vm = boot::prepare_vm(&args.vm, 0, &mut summary)?;
    let work = tempfile::Builder::new().prefix("repro-").tempdir().context("creating a work directory")?;
    let out = args.out.clone().unwrap_or_else(|| work.path().join("out"));
    let mut rec = Recorder::create(&out, summary)?;
    let initrd = boot::write_initramfs(work.path(), &agent, &job, extra)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let mut progress = Progress::new(0, "", true);
    let outcome: Result<()> = rt.block_on(async {
        let mut started = boot::boot(&args.vm, &vm, &initrd, work.path(), &mut rec, &progress).await?;
        let limits = StreamLimits::new(args.timeout, Some(args.timeout));
        let r = session::stream(&mut started.agent, &mut rec, &mut progress, &limits).await;
        started.agent.guard.wait_or_kill(Duration::from_secs(30)).await;
        r
    });
    rec.finish(outcome.as_ref().err().map(run_error))?;
    outcome?;
    tracing::debug!("guest ran on {} ({})", rec.summary.kernel.release.as_deref().unwrap_or("?"), rec.summary.ran_on());
    rec.exec_exit.context("the guest command ended without an exit code")
}
