//! One run, from the command line to a run directory: the job, the guest
//! (or the host backend), the stream recorded, the summary finished.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use repro_proto::{AgentMode, Backend, Job, Summary, FORMAT_VERSION};

use crate::error::{fail, Kind};
use crate::guest::boot::{self, agent_path};
use crate::guest::request::RunRequest;
use crate::guest::session::{self, Decider, StartFailure, StreamLimits};
use crate::kernel::catalog::Catalog;
use crate::kernel::packaged;
use crate::run::progress::Progress;
use crate::run::record::Recorder;
use crate::run::summary::{new_summary, print_report, run_dir, run_error};

/// A run that got as far as a run directory: its summary on disk, and the
/// error that ended it early, if any.
pub(crate) struct Finished {
    pub summary: Summary,
    pub dir: PathBuf,
    pub error: Option<anyhow::Error>,
}

use crate::run::record::MAX_WINDOWS;

/// What both backends get from [`execute`].
struct Setup<'a> {
    args: &'a RunRequest,
    quiet: bool,
    agent: &'a Path,
    date: &'a str,
    early: Option<Decider>,
    /// When the command began: the start of the run's `prepare` phase.
    began: std::time::Instant,
}

/// `early`: decide at rounds (sequential verdicts) with this rule; None
/// churns every iteration, as `repro run` does.
pub(crate) fn execute(args: &RunRequest, quiet: bool, early: Option<Decider>) -> Result<Finished> {
    let began = std::time::Instant::now();
    if args.iterations == 0 || args.workers == 0 || args.vm.cpus == 0 {
        return Err(fail(Kind::Usage, "--iterations, --workers and --cpus must each be at least 1"));
    }
    if let Some(out) = &args.out {
        crate::run::record::Recorder::preflight(out)?;
    }
    let mut scenario = args.scenario.load()?;
    if let Some(n) = args.probe_samples {
        scenario.probe.samples = n.max(1);
        scenario.probe.min_samples = scenario.probe.min_samples.min(scenario.probe.samples);
    }
    // Sequential: the first round is the least the verdict will judge, and
    // windows small enough that it has the windows it needs.
    let first_round = early.map(|_| scenario.verdict.min_iterations.max(1)).filter(|f| *f < args.iterations);
    let window = match (args.window, first_round) {
        (None, Some(first)) => args.window().min(first / u64::from(scenario.verdict.min_windows.max(1))).max(1),
        _ => args.window(),
    };
    // Every window is a message, a line of samples.jsonl and a rewrite of
    // summary.json: their number is bounded, whatever the run's length.
    if args.iterations / window > MAX_WINDOWS {
        return Err(fail(
            Kind::Usage,
            format!(
                "--window {window} makes {} windows of {} iterations; repro records at most {MAX_WINDOWS}: \
                 use --window {} or more (or leave it out: a twentieth of the run)",
                args.iterations / window,
                args.iterations,
                args.iterations.div_ceil(MAX_WINDOWS)
            ),
        ));
    }
    let job = Job {
        format_version: FORMAT_VERSION,
        mode: match args.backend {
            Backend::Qemu => AgentMode::Guest,
            Backend::Host => AgentMode::Host,
        },
        scenario: scenario.clone(),
        iterations: args.iterations,
        workers: args.workers,
        window,
        progress_interval_ms: 1000,
        exec: None,
        load_modules: Vec::new(),
        count_chain: args.chain_walk,
        first_round,
    };
    let agent = agent_path()?;

    let date = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let summary = new_summary(&date, &args.kernel_label(), scenario, args.iterations, args.workers, window);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    match args.backend {
        Backend::Host => run_host(&Setup { args, quiet, agent: &agent, date: &date, early, began }, summary, job, &rt),
        Backend::Qemu => run_qemu(&Setup { args, quiet, agent: &agent, date: &date, early, began }, summary, job, &rt),
    }
}

fn run_qemu(setup: &Setup, mut summary: Summary, mut job: Job, rt: &tokio::runtime::Runtime) -> Result<Finished> {
    let Setup { args, quiet, agent, date, early, began } = *setup;
    let vm = boot::prepare_vm(&args.vm, args.iterations, &mut summary)?;
    // Modules the scenario needs that this kernel builds as modules (veth on
    // Debian's), and veth for the agent's cleanup barrier wherever the settle
    // can use one; without it the settle watches the count, as before.
    let catalog = Catalog::builtin()?;
    let mut wanted = job.scenario.modules.clone();
    let for_barrier = job.scenario.settles_on_barrier() && !wanted.iter().any(|m| m == "veth");
    if for_barrier {
        wanted.push("veth".into());
    }
    let modules = match packaged::debian_modules(&vm.image, &wanted, &catalog, &args.vm.cache) {
        Ok(m) => m,
        Err(e) if for_barrier && crate::error::kind_of(&e).is_none_or(|k| !k.is_kernel_independent()) => {
            tracing::warn!("{e:#}: without veth the settle cannot use its cleanup barrier and watches the count instead");
            packaged::debian_modules(&vm.image, &job.scenario.modules, &catalog, &args.vm.cache)?
        }
        Err(e) => return Err(e),
    };
    let mut extra = Vec::new();
    if !modules.is_empty() {
        extra.push(crate::guest::initramfs::Entry::Dir { path: "repro/modules".into() });
    }
    for (name, data) in modules {
        job.load_modules.push(format!("/repro/modules/{name}.ko"));
        extra.push(crate::guest::initramfs::Entry::File { path: format!("repro/modules/{name}.ko"), mode: 0o644, data });
    }
    let run_dir = run_dir(args.out.as_deref(), &args.kernel_slug(), &args.scenario, args.iterations, date)?;
    let mut rec = Recorder::create(&run_dir, summary)?;
    rec.command_started(began);
    tracing::info!("run directory {}", run_dir.display());
    // The socket path must stay short (108 bytes), so it lives in /tmp.
    let work = tempfile::Builder::new().prefix("repro-").tempdir().context("creating a work directory")?;
    let initrd = boot::write_initramfs(work.path(), agent, &job, extra)?;

    let mut progress = Progress::new(args.iterations, job.scenario.judged_probe().map_or("probe", |p| p.name.as_str()), quiet);
    let outcome: Result<()> = rt.block_on(async {
        let mut started = boot::boot(&args.vm, &vm, &initrd, work.path(), &mut rec, &progress).await?;
        let limits = StreamLimits { early, ..StreamLimits::new(args.stall_timeout, args.timeout) };
        let r = session::stream(&mut started.agent, &mut rec, &mut progress, &limits).await;
        if r.is_ok() {
            // The agent powers the guest off after Done.
            if started.agent.guard.wait_or_kill(Duration::from_secs(30)).await.is_none() {
                tracing::warn!("the guest did not power off within 30s; QEMU was killed");
            }
        }
        r
    });
    progress.finish();
    finish(&mut rec, outcome, args.json)
}

fn run_host(setup: &Setup, mut summary: Summary, job: Job, rt: &tokio::runtime::Runtime) -> Result<Finished> {
    let Setup { args, quiet, agent, date, early, began } = *setup;
    if !nix::unistd::geteuid().is_root() {
        return Err(fail(
            Kind::Permission,
            "--backend host needs root: unshare(CLONE_NEWNET) requires CAP_SYS_ADMIN. Run it with sudo, or use the default QEMU backend",
        ));
    }
    let release = nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default();
    tracing::warn!(
        "--backend host churns {} network namespaces on this machine's running kernel ({release}); \
         on a kernel before 4.11 their dentries stay cached until memory pressure or `echo 2 > /proc/sys/vm/drop_caches`",
        args.iterations
    );
    summary.backend = Backend::Host;
    summary.kernel.source = "host".into();
    let run_dir = run_dir(args.out.as_deref(), &args.kernel_slug(), &args.scenario, args.iterations, date)?;
    let job_path = run_dir.join("job.json");
    let mut rec = Recorder::create(&run_dir, summary)?;
    rec.command_started(began);
    std::fs::write(&job_path, serde_json::to_vec_pretty(&job)?)?;
    tracing::info!("run directory {}", run_dir.display());
    let mut progress = Progress::new(args.iterations, job.scenario.judged_probe().map_or("probe", |p| p.name.as_str()), quiet);
    let outcome: Result<()> = rt.block_on(async {
        rec.spawning();
        let mut started = match session::start_host(agent, &job_path, &run_dir, Duration::from_secs(30)).await {
            Ok(s) => s,
            Err(StartFailure::Interrupted) => return Err(fail(Kind::Interrupted, "interrupted before the agent started")),
            Err(f) => return Err(fail(Kind::GuestFailed, format!("the host agent did not start: {}", f.describe()))),
        };
        rec.record(&started.hello)?;
        boot::log_hello(&started.hello, "host", &progress);
        let limits = StreamLimits { early, ..StreamLimits::new(args.stall_timeout, args.timeout) };
        let r = session::stream(&mut started.agent, &mut rec, &mut progress, &limits).await;
        started.agent.guard.wait_or_kill(Duration::from_secs(10)).await;
        r
    });
    progress.finish();
    finish(&mut rec, outcome, args.json)
}

/// Record how the run ended, print the result, and pick the exit code.
fn finish(rec: &mut Recorder, outcome: Result<()>, json: bool) -> Result<Finished> {
    let saved = rec.finish(outcome.as_ref().err().map(run_error));
    let s = &rec.summary;
    if json {
        crate::text::outln(&serde_json::to_string_pretty(s)?.to_string());
    }
    print_report(s, &rec.dir, json);
    // A summary that could not be saved is the error to report (disk full).
    let error = match saved {
        Err(e) => Some(e),
        Ok(()) => outcome.err(),
    };
    Ok(Finished { summary: rec.summary.clone(), dir: rec.dir.clone(), error })
}
