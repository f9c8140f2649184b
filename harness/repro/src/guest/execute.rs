//! One run, from the request to a run directory: the job, the guest (or
//! the host backend), the stream recorded, the summary finished. A churn
//! (`run`, `check`, `matrix`, `bisect`) and a command (`exec`) differ only
//! in their job's [`Task`]: both boot and stream through [`in_guest`], and
//! every session, the host's and a resumed one's too, through [`drive`].

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use repro_proto::{AgentMode, Backend, Churn, Job, Scenario, Summary, Task, JOB_FORMAT_VERSION};

use crate::error::{fail, Kind};
use crate::guest::boot::Vm;
use crate::guest::boot::{self, agent_path};
use crate::guest::checkpoint::{CheckpointPolicy, Checkpointer};
use crate::guest::drive::{drive, Begun};
use crate::guest::initramfs::Entry;
use crate::guest::request::{ExecRequest, RunRequest, VmRequest};
use crate::guest::session::{self, StartFailure};
use crate::guest::stream::{Decider, StreamLimits};
use crate::kernel::packaged;
use crate::run::progress::Progress;
use crate::run::record::Recorder;
use crate::run::record::MAX_WINDOWS;
use crate::run::summary::{new_summary, print_report, run_dir, run_error};

/// A run that got as far as a run directory: its summary on disk, and the
/// error that ended it early, if any.
pub(crate) struct Finished {
    pub summary: Summary,
    pub dir: PathBuf,
    pub error: Option<anyhow::Error>,
}

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

impl Setup<'_> {
    /// What every run sets up before its agent starts, whatever the
    /// backend: the run directory and its recorder, the progress, the limits.
    fn open(&self, summary: Summary) -> Result<(Recorder, Progress, StreamLimits)> {
        let args = self.args;
        let dir = run_dir(args.out.as_deref(), &args.kernel_slug(), &args.scenario, args.iterations, self.date)?;
        let mut rec = Recorder::create(&dir, summary)?;
        rec.command_started(self.began);
        tracing::info!("run directory {}", dir.display());
        let progress = Progress::of_run(&rec.summary, self.quiet);
        let limits = StreamLimits { early: self.early, ..StreamLimits::new(args.stall_timeout, args.timeout) };
        Ok((rec, progress, limits))
    }
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
    let first_round =
        early.filter(|_| scenario.pauses_in_rounds()).map(|_| scenario.verdict.min_iterations.max(1)).filter(|f| *f < args.iterations);
    let window = match (args.window, first_round) {
        (None, Some(first)) => args.window().min(first / u64::from(scenario.verdict.min_windows.max(1))).max(1),
        _ => args.window(),
    };
    // A checkpointed run pauses at every window: the rounds it may save at.
    let (first_round, round_step) = if args.checkpoint.is_on() {
        checkpointable(args, &scenario, early.is_some())?;
        (Some(window).filter(|w| *w < args.iterations), Some(window))
    } else {
        (first_round, None)
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
        format_version: JOB_FORMAT_VERSION,
        mode: match args.backend {
            Backend::Qemu => AgentMode::Guest,
            Backend::Host => AgentMode::Host,
        },
        task: Task::Churn(Box::new(Churn {
            scenario: scenario.clone(),
            iterations: args.iterations,
            workers: args.workers,
            window,
            progress_interval_ms: 1000,
            load_modules: Vec::new(),
            count_chain: args.chain_walk,
            first_round,
            round_step,
        })),
    };
    let agent = agent_path()?;

    let date = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let summary = new_summary(&date, &args.kernel_label(), scenario, args.iterations, args.workers, window);
    match args.backend {
        Backend::Host => run_host(&Setup { args, quiet, agent: &agent, date: &date, early, began }, summary, job),
        Backend::Qemu => run_qemu(&Setup { args, quiet, agent: &agent, date: &date, early, began }, summary, job),
    }
}

fn run_qemu(setup: &Setup, mut summary: Summary, mut job: Job) -> Result<Finished> {
    let Setup { args, agent, .. } = *setup;
    let vm = boot::prepare_vm(&args.vm, args.iterations, &mut summary)?;
    let Task::Churn(churn) = &mut job.task else { unreachable!("execute builds a churn") };
    let extra = modules_for(churn, &vm, &args.vm)?;
    let vm_req = args.vm.with_kernel_args(&churn.scenario.kernel_args);
    let (mut rec, mut progress, limits) = setup.open(summary)?;
    let checkpoint = Some(args.checkpoint).filter(CheckpointPolicy::is_on);
    let outcome = in_guest(&vm_req, &vm, agent, &job, extra, &mut rec, &mut progress, &limits, checkpoint);
    finish(&mut rec, outcome, args.json)
}

/// Checkpoints are taken at rounds, on a QEMU guest, in a run that churns
/// to the end: refused (exit 2) where that does not hold.
fn checkpointable(args: &RunRequest, scenario: &Scenario, judged: bool) -> Result<()> {
    let refuse = |why: &str| fail(Kind::Usage, format!("--checkpoint-every and --stop-after {why}"));
    if judged {
        return Err(refuse("belong to `repro run`: check, bisect and matrix stop at the first round that decides"));
    }
    if args.backend != Backend::Qemu {
        return Err(refuse("save a QEMU guest; the host backend has none to save"));
    }
    if !scenario.pauses_in_rounds() {
        return Err(refuse(&format!(
            "need a scenario that pauses in rounds, and {} holds fds or drops caches on a schedule; run it without them",
            scenario.name
        )));
    }
    Ok(())
}

/// The kernel modules a churn needs in the initramfs: those the scenario
/// needs that this kernel builds as modules (veth on Debian's), and veth for
/// the agent's cleanup barrier wherever the settle can use one; without it
/// the settle watches the count, as before.
fn modules_for(churn: &mut Churn, vm: &Vm, vm_req: &VmRequest) -> Result<Vec<Entry>> {
    let catalog = &vm_req.catalog;
    let mut wanted = churn.scenario.modules.clone();
    let for_barrier = churn.scenario.settles_on_barrier() && !wanted.iter().any(|m| m == "veth");
    if for_barrier {
        wanted.push("veth".into());
    }
    let modules = match packaged::debian_modules(&vm.image, &wanted, catalog, &vm_req.cache) {
        Ok(m) => m,
        Err(e) if for_barrier && crate::error::kind_of(&e).is_none_or(|k| !k.is_kernel_independent()) => {
            tracing::warn!("{e:#}: without veth the settle cannot use its cleanup barrier and watches the count instead");
            packaged::debian_modules(&vm.image, &churn.scenario.modules, catalog, &vm_req.cache)?
        }
        Err(e) => return Err(e),
    };
    let mut extra = Vec::new();
    if !modules.is_empty() {
        extra.push(Entry::Dir { path: "repro/modules".into() });
    }
    for (name, data) in modules {
        churn.load_modules.push(format!("/repro/modules/{name}.ko"));
        extra.push(Entry::File { path: format!("repro/modules/{name}.ko"), mode: 0o644, data });
    }
    Ok(extra)
}

/// A guest's session ([`drive`]): `job` (with `extra` files) in an
/// initramfs, the kernel booted, and, for a run that saves, its QEMU's
/// machine protocol attached.
#[allow(clippy::too_many_arguments)]
fn in_guest(
    vm_req: &VmRequest,
    vm: &Vm,
    agent: &Path,
    job: &Job,
    extra: Vec<Entry>,
    rec: &mut Recorder,
    progress: &mut Progress,
    limits: &StreamLimits,
    checkpoint: Option<CheckpointPolicy>,
) -> Result<()> {
    // The socket path must stay short (108 bytes), so it lives in /tmp.
    let work = crate::workdir::WorkDir::new()?;
    let initrd = boot::write_initramfs(work.path(), agent, job, extra)?;
    drive(rec, progress, limits, async |rec, progress| {
        let (started, spec) = boot::boot(vm_req, vm, &initrd, work.path(), rec, progress, checkpoint.is_some()).await?;
        let checkpoint = match (checkpoint, &spec.qmp_socket) {
            (Some(policy), Some(socket)) => {
                let qemu_version = rec.summary.provenance.qemu_version.clone().unwrap_or_default();
                let mut cp = Checkpointer::new(policy, &spec, &vm.image.sha256, &qemu_version, limits.stall);
                cp.attach(socket)?;
                Some(cp)
            }
            _ => None,
        };
        // The agent powers the guest off after Done.
        Ok(Begun { agent: started.agent, checkpoint, after_done: Duration::from_secs(30) })
    })
}

/// `repro exec`: boot a kernel and run one command in it instead of the
/// churn; its exit code is the command's.
pub(crate) fn exec(args: &ExecRequest) -> Result<i32> {
    let agent = agent_path()?;
    let mut extra = vec![Entry::Dir { path: "bin".into() }];
    for inc in &args.include {
        let (host, guest) = match inc.split_once(':') {
            Some((h, g)) => (h.to_string(), g.trim_start_matches('/').to_string()),
            None => {
                (inc.clone(), format!("bin/{}", Path::new(inc).file_name().map_or("file".into(), |f| f.to_string_lossy().into_owned())))
            }
        };
        let data = crate::input::Input::Include.read(Path::new(&host))?;
        extra.push(Entry::File { path: guest, mode: 0o755, data });
    }
    let job = Job { format_version: JOB_FORMAT_VERSION, mode: AgentMode::Guest, task: Task::Exec { argv: args.command.clone() } };
    // No workload: the summary's scenario says what ran.
    let scenario = Scenario { name: "exec".into(), description: args.command.join(" "), ..Default::default() };
    let date = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let mut summary = new_summary(&date, &args.vm.kernel.label(), scenario, 0, 1, 1);
    let vm = boot::prepare_vm(&args.vm, 0, &mut summary)?;
    let work = tempfile::Builder::new().prefix("repro-exec-").tempdir().context("creating a work directory")?;
    let out = args.out.clone().unwrap_or_else(|| work.path().join("out"));
    let mut rec = Recorder::create(&out, summary)?;
    let mut progress = Progress::new(0, "", true);
    let limits = StreamLimits::new(args.timeout, Some(args.timeout));
    let outcome = in_guest(&args.vm, &vm, &agent, &job, extra, &mut rec, &mut progress, &limits, None);
    rec.finish(outcome.as_ref().err().map(run_error))?;
    outcome?;
    tracing::debug!("guest ran on {} ({})", rec.summary.kernel.release.as_deref().unwrap_or("?"), rec.summary.ran_on());
    rec.exec_exit.context("the guest command ended without an exit code")
}

fn run_host(setup: &Setup, mut summary: Summary, job: Job) -> Result<Finished> {
    let Setup { args, agent, .. } = *setup;
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
    let Task::Churn(churn) = &job.task else { unreachable!("execute builds a churn") };
    if !churn.scenario.kernel_args.is_empty() {
        tracing::warn!(
            "scenario {} asks for kernel arguments ({}), which only a guest boots with: this machine's kernel runs as it was booted",
            churn.scenario.name,
            churn.scenario.kernel_args.join(" ")
        );
    }
    summary.backend = Backend::Host;
    summary.kernel.source = "host".into();
    let (mut rec, mut progress, limits) = setup.open(summary)?;
    let run_dir = rec.dir.clone();
    let job_path = run_dir.join("job.json");
    std::fs::write(&job_path, serde_json::to_vec_pretty(&job)?)?;
    let outcome = drive(&mut rec, &mut progress, &limits, async |rec, progress| {
        rec.spawning();
        let started = match session::start_host(agent, &job_path, &run_dir, Duration::from_secs(30)).await {
            Ok(s) => s,
            Err(StartFailure::Interrupted) => return Err(fail(Kind::Interrupted, "interrupted before the agent started")),
            Err(f) => return Err(fail(Kind::GuestFailed, format!("the host agent did not start: {}", f.describe()))),
        };
        rec.record(&started.hello)?;
        boot::log_hello(&started.hello, "host", progress);
        Ok(Begun { agent: started.agent, checkpoint: None, after_done: Duration::from_secs(10) })
    });
    finish(&mut rec, outcome, args.json)
}

/// Record how the run ended, print the result, and pick the exit code.
pub(crate) fn finish(rec: &mut Recorder, outcome: Result<()>, json: bool) -> Result<Finished> {
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
