//! `repro run`, `repro kernels`, `repro fetch`: setup on the host, then one
//! session with the agent, then the summary.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};
use repro_proto::{exit_codes, AgentMode, Job, KernelInfo, Message, Provenance, RunError, Summary, FORMAT_VERSION};

use crate::build;
use crate::catalog::{Catalog, Source};
use crate::error::{fail, kind_of, Kind};
use crate::kernel::{self, Cache};
use crate::progress::Progress;
use crate::qemu::{self, Accel, VmSpec};
use crate::record::{Recorder, CONSOLE};
use crate::session::{self, StartFailure, StreamLimits};
use crate::{AccelChoice, Backend, ExecArgs, FetchArgs, ImageBuildArgs, KernelsArgs, RunArgs, VmArgs};

/// Guest memory that holds every stale dentry the run can leave: about six
/// dentries and their proc inodes per churned namespace (~5 KiB; 8 KiB
/// with slack) on a base of 512 MiB. Less, and memory pressure prunes the
/// dcache, which hides the bug.
pub fn memory_needed_mib(iterations: u64) -> u64 {
    let mib = 512 + iterations.saturating_mul(8) / 1024;
    mib.max(1024).div_ceil(256) * 256
}

/// A run that got as far as a run directory: its summary on disk, and the
/// error that ended it early, if any.
pub struct Finished {
    pub summary: Summary,
    pub dir: PathBuf,
    pub error: Option<anyhow::Error>,
}

/// `repro run`: exit 0 when the run completed, else the error's code.
pub fn run(args: &RunArgs, quiet: bool) -> Result<i32> {
    let done = execute(args, quiet)?;
    match done.error {
        Some(e) => Err(e),
        None => Ok(exit_codes::OK),
    }
}

/// Set up, run and record; errors before the run directory exists are Err.
pub fn execute(args: &RunArgs, quiet: bool) -> Result<Finished> {
    if args.iterations == 0 || args.workers == 0 || args.vm.cpus == 0 {
        return Err(fail(Kind::Usage, "--iterations, --workers and --cpus must each be at least 1"));
    }
    let mut scenario = crate::scenario::load(&args.scenario)?;
    if let Some(n) = args.probe_samples {
        scenario.probe.samples = n.max(1);
        scenario.probe.min_samples = scenario.probe.min_samples.min(scenario.probe.samples);
    }
    let window = args.window.unwrap_or(args.iterations / 20).max(1);
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
    };
    let agent = agent_path()?;

    let date = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let summary = new_summary(&date, &args.vm.kernel, scenario, args.iterations, args.workers, window);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    match args.backend {
        Backend::Host => run_host(args, quiet, summary, job, &agent, &date, &rt),
        Backend::Qemu => run_qemu(args, quiet, summary, job, &agent, &date, &rt),
    }
}

/// A kernel, a QEMU and a memory size, checked before anything boots.
struct Vm {
    image: kernel::KernelImage,
    qemu: PathBuf,
    memory_mib: u64,
}

/// Resolve the kernel and QEMU, size the guest, and note it all in `summary`.
fn prepare_vm(vm: &VmArgs, iterations: u64, summary: &mut Summary) -> Result<Vm> {
    let catalog = Catalog::builtin()?;
    let cache = Cache::new(vm.cache_dir.clone());
    let image = match &vm.src {
        Some(dir) => {
            summary.kernel.name = format!("src:{}", dir.display());
            build::build(&build::Recipe::local(dir, vm.cc.as_deref()), &cache)?
        }
        None => kernel::resolve(&vm.kernel, &catalog, &cache, vm.cc.as_deref())?,
    };
    let qemu_bin = qemu::find(vm.qemu.as_deref())?;
    let needed = memory_needed_mib(iterations);
    let memory_mib = match vm.memory {
        Some(m) if m < needed => {
            tracing::warn!(
                "--memory {m}M may be too small for {iterations} iterations: the stale dentries of a buggy kernel need about {needed}M; \
                 memory pressure would prune them and hide the bug"
            );
            m
        }
        Some(m) => m,
        None => needed,
    };
    summary.provenance.qemu_version = qemu::version(&qemu_bin);
    summary.backend = "qemu".into();
    summary.kernel.image = Some(image.path.display().to_string());
    summary.kernel.image_sha256 = Some(image.sha256.clone());
    summary.kernel.source = image.source.clone();
    summary.guest_cpus = Some(vm.cpus);
    summary.guest_memory_mib = Some(memory_mib);
    Ok(Vm { image, qemu: qemu_bin, memory_mib })
}

/// Write the initramfs (agent as /init, the job, extra files) into `work`.
fn write_initramfs(work: &Path, agent: &Path, job: &Job, extra: Vec<crate::initramfs::Entry>) -> Result<PathBuf> {
    let initrd = work.join("initramfs.cpio");
    let agent_bytes = std::fs::read(agent).with_context(|| format!("reading the agent {}", agent.display()))?;
    let mut entries = crate::initramfs::entries(agent_bytes, serde_json::to_vec(job)?);
    entries.extend(extra);
    let f = std::fs::File::create(&initrd).with_context(|| format!("creating {}", initrd.display()))?;
    crate::initramfs::write(std::io::BufWriter::new(f), &entries)?.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(initrd)
}

/// Boot, trying the accelerators in order (--accel auto: KVM, proven by the
/// agent's hello within --kvm-timeout, then TCG), and record which ran and why.
async fn boot(vm_args: &VmArgs, vm: &Vm, initrd: &Path, work: &Path, rec: &mut Recorder, progress: &Progress) -> Result<session::Started> {
    let (accels, mut fallback_reason) = session::kvm_plan(vm_args.accel);
    for (i, accel) in accels.iter().enumerate() {
        let is_probe = vm_args.accel == AccelChoice::Auto && *accel == Accel::Kvm;
        let console = rec.dir.join(if is_probe { "console-kvm-probe.log" } else { CONSOLE });
        let spec = VmSpec {
            qemu: vm.qemu.clone(),
            accel: *accel,
            cpus: vm_args.cpus,
            memory_mib: vm.memory_mib,
            kernel: vm.image.path.clone(),
            initrd: initrd.to_path_buf(),
            cmdline: qemu::kernel_cmdline(&vm_args.append),
            console_log: console,
            proto_socket: work.join("proto.sock"),
        };
        let deadline = if is_probe { vm_args.kvm_timeout } else { vm_args.boot_timeout };
        progress.status(&format!("booting {} under {}", vm.image.name, accel.as_str()));
        match session::start_qemu(&spec, &rec.dir, deadline).await {
            Ok(started) => {
                rec.summary.accel = Some(accel.as_str().into());
                rec.summary.accel_fallback_reason = fallback_reason;
                rec.record(&started.hello)?;
                log_hello(&started.hello, accel.as_str(), progress);
                return Ok(started);
            }
            Err(StartFailure::Interrupted) => {
                return Err(fail(Kind::Interrupted, "interrupted while booting the guest; nothing was recorded yet"))
            }
            Err(f) if is_probe && i + 1 < accels.len() => {
                let why = format!("KVM did not work: {}", first_line(&f.describe()));
                tracing::warn!("{why}; falling back to TCG");
                fallback_reason = Some(why);
            }
            Err(f) => return Err(boot_failure(f, accel.as_str())),
        }
    }
    bail!("no accelerator to try")
}

fn run_qemu(
    args: &RunArgs,
    quiet: bool,
    mut summary: Summary,
    mut job: Job,
    agent: &Path,
    date: &str,
    rt: &tokio::runtime::Runtime,
) -> Result<Finished> {
    let vm = prepare_vm(&args.vm, args.iterations, &mut summary)?;
    // Modules the scenario needs that this kernel builds as modules (veth on Debian's).
    let modules = kernel::debian_modules(&vm.image, &job.scenario.modules, &Catalog::builtin()?, &Cache::new(args.vm.cache_dir.clone()))?;
    let mut extra = Vec::new();
    if !modules.is_empty() {
        extra.push(crate::initramfs::Entry::Dir { path: "repro/modules".into() });
    }
    for (name, data) in modules {
        job.load_modules.push(format!("/repro/modules/{name}.ko"));
        extra.push(crate::initramfs::Entry::File { path: format!("repro/modules/{name}.ko"), mode: 0o644, data });
    }
    let run_dir = run_dir(args, date)?;
    let mut rec = Recorder::create(&run_dir, summary)?;
    tracing::info!("run directory {}", run_dir.display());
    // The socket path must stay short (108 bytes), so it lives in /tmp.
    let work = tempfile::Builder::new().prefix("repro-").tempdir().context("creating a work directory")?;
    let initrd = write_initramfs(work.path(), agent, &job, extra)?;

    let mut progress = Progress::new(args.iterations, first_probe(&job), quiet);
    let outcome: Result<()> = rt.block_on(async {
        let mut started = boot(&args.vm, &vm, &initrd, work.path(), &mut rec, &progress).await?;
        let limits = StreamLimits::new(args.stall_timeout, args.timeout);
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

pub fn exec(args: &ExecArgs) -> Result<i32> {
    let agent = agent_path()?;
    let mut extra = vec![crate::initramfs::Entry::Dir { path: "bin".into() }];
    for inc in &args.include {
        let (host, guest) = match inc.split_once(':') {
            Some((h, g)) => (h.to_string(), g.trim_start_matches('/').to_string()),
            None => {
                (inc.clone(), format!("bin/{}", Path::new(inc).file_name().map_or("file".into(), |f| f.to_string_lossy().into_owned())))
            }
        };
        let data = std::fs::read(&host).with_context(|| format!("reading --include {host}"))?;
        extra.push(crate::initramfs::Entry::File { path: guest, mode: 0o755, data });
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
        settle: repro_proto::SettleSettings { poll_ms: 0, stable_polls: 0, max_ms: 0, baseline_tolerance: 0.0 },
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
    };
    let date = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let mut summary = new_summary(&date, &args.vm.kernel, scenario, 0, 1, 1);
    let vm = prepare_vm(&args.vm, 0, &mut summary)?;
    let work = tempfile::Builder::new().prefix("repro-").tempdir().context("creating a work directory")?;
    let out = args.out.clone().unwrap_or_else(|| work.path().join("out"));
    let mut rec = Recorder::create(&out, summary)?;
    let initrd = write_initramfs(work.path(), &agent, &job, extra)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let mut progress = Progress::new(0, "", true);
    let outcome: Result<()> = rt.block_on(async {
        let mut started = boot(&args.vm, &vm, &initrd, work.path(), &mut rec, &progress).await?;
        let limits = StreamLimits::new(args.timeout, Some(args.timeout));
        let r = session::stream(&mut started.agent, &mut rec, &mut progress, &limits).await;
        started.agent.guard.wait_or_kill(Duration::from_secs(30)).await;
        r
    });
    rec.finish(outcome.as_ref().err().map(run_error))?;
    outcome?;
    tracing::debug!(
        "guest ran on {} ({})",
        rec.summary.kernel.release.as_deref().unwrap_or("?"),
        rec.summary.accel.as_deref().unwrap_or("?")
    );
    rec.exec_exit.context("the guest command ended without an exit code")
}

pub(crate) fn new_summary(
    date: &str,
    kernel: &str,
    scenario: repro_proto::Scenario,
    iterations: u64,
    workers: u32,
    window: u64,
) -> Summary {
    Summary {
        format_version: FORMAT_VERSION,
        provenance: Provenance {
            repro_version: env!("CARGO_PKG_VERSION").to_string(),
            date: date.to_string(),
            host_cpu: host_cpu(),
            host_kernel: nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default(),
            qemu_version: None,
            command: Some(command_line()),
        },
        kernel: KernelInfo { name: kernel.to_string(), release: None, image: None, image_sha256: None, source: String::new() },
        backend: String::new(),
        accel: None,
        accel_fallback_reason: None,
        guest_cpus: None,
        guest_memory_mib: None,
        scenario: scenario.name.clone(),
        scenario_definition: scenario,
        iterations_requested: iterations,
        iterations_done: 0,
        workers,
        window,
        complete: false,
        error: None,
        baseline: None,
        chain_counter: None,
        windows: Vec::new(),
        settled: None,
        residual: None,
        duration_s: 0.0,
    }
}

fn run_host(
    args: &RunArgs,
    quiet: bool,
    mut summary: Summary,
    job: Job,
    agent: &Path,
    date: &str,
    rt: &tokio::runtime::Runtime,
) -> Result<Finished> {
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
    summary.backend = "host".into();
    summary.kernel.source = "host".into();
    let run_dir = run_dir(args, date)?;
    let job_path = run_dir.join("job.json");
    let mut rec = Recorder::create(&run_dir, summary)?;
    std::fs::write(&job_path, serde_json::to_vec_pretty(&job)?)?;
    tracing::info!("run directory {}", run_dir.display());
    let mut progress = Progress::new(args.iterations, first_probe(&job), quiet);
    let outcome: Result<()> = rt.block_on(async {
        let mut started = match session::start_host(agent, &job_path, &run_dir, Duration::from_secs(30)).await {
            Ok(s) => s,
            Err(StartFailure::Interrupted) => return Err(fail(Kind::Interrupted, "interrupted before the agent started")),
            Err(f) => return Err(fail(Kind::GuestFailed, format!("the host agent did not start: {}", f.describe()))),
        };
        rec.record(&started.hello)?;
        log_hello(&started.hello, "host", &progress);
        let limits = StreamLimits::new(args.stall_timeout, args.timeout);
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
        println!("{}", serde_json::to_string_pretty(s)?);
    }
    print_report(s, &rec.dir, json);
    // A summary that could not be saved is the error to report (disk full).
    let error = match saved {
        Err(e) => Some(e),
        Ok(()) => outcome.err(),
    };
    Ok(Finished { summary: rec.summary.clone(), dir: rec.dir.clone(), error })
}

/// One run and its verdict (also written to the run directory's
/// verdict.json). What the kernel under test causes (build failure, boot
/// failure, panic, hang, an unfetchable kernel) is an inconclusive verdict:
/// that revision cannot be tested. What would fail on any kernel (QEMU
/// missing, bad scenario, disk full, no permission, repro's own bugs) and
/// Ctrl-C are Err: there is nothing to judge.
pub fn judge(run: &RunArgs, quiet: bool) -> Result<(crate::verdict::Verdict, Option<PathBuf>)> {
    use crate::verdict::{decide, Outcome, Verdict};
    // Interrupted anywhere (a killed apt-get reads as an unfetchable
    // kernel) is an interrupt, never a verdict on the kernel.
    let any_kernel = |e: &anyhow::Error| {
        crate::interrupt::requested()
            || matches!(
                kind_of(e),
                None | Some(Kind::QemuMissing | Kind::ScenarioInvalid | Kind::DiskFull | Kind::Permission | Kind::Interrupted)
            )
    };
    match execute(run, quiet) {
        Ok(mut done) => {
            if let Some(e) = done.error.take() {
                if any_kernel(&e) {
                    return Err(e);
                }
                eprintln!("error: {}", crate::error::render(&e));
            }
            let v = decide(&done.summary, &done.summary.scenario_definition.verdict);
            std::fs::write(done.dir.join("verdict.json"), serde_json::to_vec_pretty(&v)?)
                .with_context(|| format!("writing {}/verdict.json", done.dir.display()))?;
            Ok((v, Some(done.dir)))
        }
        Err(e) if any_kernel(&e) => Err(e),
        Err(e) => {
            let msg = crate::error::render(&e);
            eprintln!("error: {msg}");
            let v = Verdict {
                outcome: Outcome::Inconclusive,
                rule: format!("cannot test: {}", first_line(&msg)),
                evidence: Default::default(),
            };
            Ok((v, None))
        }
    }
}

/// `repro check`: run (`--repeat` times) and judge. Exits 0 clean,
/// 1 regressed, 125 inconclusive or cannot test: `git bisect run`'s contract.
pub fn check(args: &crate::CheckArgs, quiet: bool) -> Result<i32> {
    use crate::verdict::{Outcome, Verdict};
    let repeat = args.repeat.max(1);
    // With --json, stdout carries the summaries; verdict lines go to stderr.
    let say = |line: String| if args.run.json { eprintln!("{line}") } else { println!("{line}") };
    let mut verdicts: Vec<Verdict> = Vec::new();
    for i in 1..=repeat {
        let mut run = args.run.clone();
        if let (Some(out), true) = (&args.run.out, repeat > 1) {
            run.out = Some(out.join(format!("run-{i}")));
        }
        let v = match judge(&run, quiet) {
            Ok((v, _)) => v,
            Err(e) if kind_of(&e) == Some(Kind::Interrupted) => return Err(e),
            Err(e) => {
                eprintln!("error: {}", crate::error::render(&e));
                eprintln!("repro cannot run here whatever the kernel; exiting {} so that git bisect run stops", exit_codes::CANNOT_RUN);
                return Ok(exit_codes::CANNOT_RUN);
            }
        };
        say(format!("verdict{}: {} ({})", if repeat > 1 { format!(" {i}/{repeat}") } else { String::new() }, v.outcome.as_str(), v.rule));
        verdicts.push(v);
    }
    let first = verdicts[0].outcome;
    let agreed = verdicts.iter().all(|v| v.outcome == first);
    let outcome = if agreed { first } else { Outcome::Inconclusive };
    if repeat > 1 {
        let residuals: Vec<f64> = verdicts.iter().filter_map(|v| v.evidence.residual_per_iteration).collect();
        let spread = match (residuals.iter().cloned().reduce(f64::min), residuals.iter().cloned().reduce(f64::max)) {
            (Some(lo), Some(hi)) => format!("residual per namespace {lo:.2} to {hi:.2}"),
            _ => "no residuals".into(),
        };
        let each: Vec<&str> = verdicts.iter().map(|v| v.outcome.as_str()).collect();
        say(if agreed {
            format!("verdict: {} ({repeat} of {repeat} runs agree; {spread})", outcome.as_str())
        } else {
            format!("verdict: inconclusive (the runs disagree: {}; {spread})", each.join(", "))
        });
    }
    Ok(match (outcome, args.reverse) {
        (Outcome::Clean, false) | (Outcome::Regressed, true) => exit_codes::OK,
        (Outcome::Regressed, false) | (Outcome::Clean, true) => exit_codes::REGRESSED,
        (Outcome::Inconclusive, _) => exit_codes::INCONCLUSIVE,
    })
}

/// How a failed run is described in summary.json.
pub(crate) fn run_error(e: &anyhow::Error) -> RunError {
    RunError {
        kind: kind_of(e).map_or("internal", Kind::as_str).into(),
        message: crate::error::render(e),
        exit_code: crate::error::exit_code_of(e),
    }
}

fn print_report(s: &Summary, dir: &Path, to_stderr: bool) {
    let mut text = String::new();
    let release = s.kernel.release.as_deref().unwrap_or("?");
    let accel = s.accel.as_deref().unwrap_or(&s.backend);
    text.push_str(&format!(
        "{} on {release} ({accel}): {} of {} iterations, {} windows{}\n",
        s.scenario,
        s.iterations_done,
        s.iterations_requested,
        s.windows.len(),
        if s.complete { "" } else { ", INCOMPLETE" }
    ));
    if let (Some(first), Some(last)) = (s.windows.first(), s.windows.last()) {
        for p in &first.probes {
            if let Some(l) = last.probes.iter().find(|q| q.name == p.name) {
                text.push_str(&format!(
                    "  {:<6} open() p50 {:>10.1}us -> {:>10.1}us  (p99 {:.1}us)\n",
                    p.name, p.p50_us, l.p50_us, l.p99_us
                ));
            }
        }
        text.push_str(&format!("  nr_dentry {} -> {}, churn {:.0}/s at the end\n", first.nr_dentry, last.nr_dentry, last.churn_rate));
    }
    if let Some(r) = &s.residual {
        text.push_str(&format!(
            "  after settling: nr_dentry {} -> {}, residual {:.2} dentries per iteration\n",
            r.nr_dentry_before, r.nr_dentry_after, r.per_iteration
        ));
    }
    text.push_str(&format!("  results: {}\n", dir.display()));
    if to_stderr {
        eprint!("{text}");
    } else {
        print!("{text}");
    }
}

fn log_hello(hello: &Message, accel: &str, progress: &Progress) {
    if let Message::Hello { release, cpus, mem_total_kib, .. } = hello {
        progress.status(&format!("guest up: {}, {cpus} cpus, {} MiB ({accel})", session::printable(release), mem_total_kib / 1024));
        tracing::debug!("guest up: {release} ({accel})");
    }
}

fn boot_failure(f: StartFailure, accel: &str) -> anyhow::Error {
    match f {
        StartFailure::Exited(msg) if msg.contains("Kernel panic") => fail(Kind::GuestPanic, format!("the guest kernel panicked while booting under {accel}: {msg}")),
        StartFailure::Exited(msg) => fail(
            Kind::GuestFailed,
            format!("the guest did not come up under {accel}: {msg}\nIf the image is not an x86-64 kernel with serial console, initramfs and NET_NS support, it cannot run repro's agent"),
        ),
        StartFailure::Deadline(msg) => fail(
            Kind::GuestHung,
            format!("the guest did not come up under {accel}: {msg}; raise --boot-timeout if this machine is slow, or look at console.log in the run directory"),
        ),
        StartFailure::Interrupted => fail(Kind::Interrupted, "interrupted"),
        StartFailure::Other(e) => e,
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

fn first_probe(job: &Job) -> &str {
    let p = &job.scenario.probes;
    p.iter().find(|p| !p.control).or(p.first()).map_or("probe", |p| p.name.as_str())
}

fn run_dir(args: &RunArgs, date: &str) -> Result<PathBuf> {
    if let Some(out) = &args.out {
        return Ok(out.clone());
    }
    let kernel: String = args
        .vm
        .kernel
        .rsplit('/')
        .next()
        .unwrap_or("kernel")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '_' })
        .collect();
    let stamp: String = date.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    let backend = match args.backend {
        Backend::Host => "host".to_string(),
        Backend::Qemu => kernel,
    };
    let scenario = Path::new(&args.scenario).file_stem().map_or("scenario".into(), |s| s.to_string_lossy().into_owned());
    let base = PathBuf::from("results/runs").join(format!("{stamp}-{backend}-{scenario}-{}", args.iterations));
    // Two runs in one second get distinct directories.
    let mut dir = base.clone();
    let mut n = 1;
    while dir.exists() {
        n += 1;
        dir = PathBuf::from(format!("{}-{n}", base.display()));
    }
    Ok(dir)
}

/// The static agent, beside this executable (one `cargo build` puts it there).
pub fn agent_path() -> Result<PathBuf> {
    let path = match std::env::var_os("REPRO_AGENT") {
        Some(p) => PathBuf::from(p),
        None => std::env::current_exe()
            .context("locating the repro executable")?
            .parent()
            .context("the repro executable has no directory")?
            .join("repro-agent"),
    };
    let bytes = std::fs::read(&path).map_err(|e| {
        anyhow::anyhow!(
            "the guest agent is missing at {} ({e}): build the whole workspace with `cargo build --workspace` \
             (it puts repro-agent beside repro), or set REPRO_AGENT",
            path.display()
        )
    })?;
    if !bytes.starts_with(b"\x7fELF") {
        bail!("{} is not an ELF executable", path.display());
    }
    if bytes.windows(14).take(8192).any(|w| w == b"/lib64/ld-linu") {
        bail!(
            "{} is dynamically linked, so it cannot be /init of an initramfs: build it with the workspace's .cargo/config.toml \
             (static glibc, --target x86_64-unknown-linux-gnu)",
            path.display()
        );
    }
    Ok(path)
}

/// This process's command line as a shell would take it back.
pub(crate) fn command_line() -> String {
    let quote = |a: String| {
        if !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=,:+@".contains(c)) {
            a
        } else {
            format!("'{}'", a.replace('\'', r"'\''"))
        }
    };
    let mut args = std::env::args();
    // The program as a command name, not wherever cargo put it.
    let prog = args.next().map(|p| Path::new(&p).file_name().map_or(p.clone(), |f| f.to_string_lossy().into_owned()));
    prog.into_iter().chain(args.map(quote)).collect::<Vec<_>>().join(" ")
}

fn host_cpu() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| t.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).map(|s| s.trim().to_string()))
        .unwrap_or_else(|| "unknown".into())
}

pub fn report(args: &crate::ReportArgs) -> Result<i32> {
    // With --expect, a directory with no runs at all is a report of
    // missing pairs, not an error: that is what a matrix whose jobs all
    // failed before running looks like.
    let dirs = match crate::report::collect(&args.dirs) {
        Ok(d) => d,
        Err(e) if args.expect.is_some() => {
            tracing::warn!("{e:#}");
            Vec::new()
        }
        Err(e) => return Err(e),
    };
    let rows = crate::report::rows(&dirs, &Catalog::builtin()?)?;
    let missing = match &args.expect {
        Some(m) => crate::report::missing(m, &rows)?,
        None => Vec::new(),
    };
    if let Some(out) = &args.out {
        let dirs: Vec<String> = args.dirs.iter().map(|d| d.display().to_string()).collect();
        let doc = crate::report::Document {
            rows: &rows,
            out,
            commands: vec![format!("repro report {} --out {}", dirs.join(" "), out.display())],
            missing: &missing,
            logs: args.logs.as_deref(),
        };
        crate::report::write(&doc)?;
        println!("{}", out.join("README.md").display());
    } else {
        let base = std::env::current_dir()?;
        print!("{}", crate::report::markdown(&rows, &base));
        if !missing.is_empty() {
            print!("\nRuns that never reported:\n\n{}", crate::report::missing_section(&missing, args.logs.as_deref()));
        }
        let x = crate::report::extrapolation(&rows);
        if !x.is_empty() {
            print!("\nExtrapolation:\n\n{x}");
        }
    }
    if !missing.is_empty() {
        eprintln!(
            "{} expected run(s) never reported: {}",
            missing.len(),
            missing.iter().map(|m| format!("{}/{}", m.kernel, m.scenario)).collect::<Vec<_>>().join(", ")
        );
        if args.strict {
            return Ok(exit_codes::REGRESSED);
        }
    }
    let contradicted = rows.iter().filter(|r| {
        use crate::catalog::Expect;
        use crate::verdict::Outcome;
        matches!((r.expected, r.verdict.outcome), (Some(Expect::Regressed), Outcome::Clean) | (Some(Expect::Clean), Outcome::Regressed))
    });
    let n = contradicted.count();
    if n > 0 {
        eprintln!("{n} verdict(s) contradict the catalog's expectation");
        if args.strict {
            return Ok(exit_codes::REGRESSED);
        }
    }
    Ok(exit_codes::OK)
}

pub fn kernels(args: &KernelsArgs) -> Result<i32> {
    let catalog = Catalog::builtin()?;
    if args.matrix {
        println!("{}", serde_json::to_string(&catalog.matrix(&args.scenarios, args.kernel.as_deref())?)?);
        return Ok(exit_codes::OK);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&catalog.kernel)?);
        return Ok(exit_codes::OK);
    }
    println!("{:<18} {:<20} {:<10} DESCRIPTION", "NAME", "ALIASES", "SEED");
    for e in &catalog.kernel {
        let seed = e.expect.get("seed").map_or("?", |x| match x {
            crate::catalog::Expect::Regressed => "regressed",
            crate::catalog::Expect::Clean => "clean",
        });
        println!("{:<18} {:<20} {:<10} {}", e.name, e.aliases.join(","), seed, e.description);
    }
    println!("\nAny other kernel: --kernel PATH/TO/bzImage, or --src DIR to build a source tree");
    Ok(exit_codes::OK)
}

pub fn fetch(args: &FetchArgs) -> Result<i32> {
    let catalog = Catalog::builtin()?;
    let img = kernel::resolve(&args.kernel, &catalog, &Cache::new(args.cache_dir.clone()), args.cc.as_deref())?;
    println!("{}\t{}\t{}", img.path.display(), img.sha256, img.source);
    Ok(exit_codes::OK)
}

pub fn image_build(args: &ImageBuildArgs) -> Result<i32> {
    let cache = Cache::new(args.cache_dir.clone());
    let img = match (&args.src, &args.kernel) {
        (Some(dir), _) => build::build(&build::Recipe::local(dir, args.cc.as_deref()), &cache)?,
        (None, Some(name)) => {
            let catalog = Catalog::builtin()?;
            if !matches!(catalog.lookup(name)?.source, Source::Build { .. }) {
                return Err(fail(Kind::Usage, format!("{name} is a prebuilt package, not a build entry: `repro fetch {name}` gets it")));
            }
            kernel::resolve(name, &catalog, &cache, args.cc.as_deref())?
        }
        (None, None) => return Err(fail(Kind::Usage, "name a catalog build entry or pass --src DIR")),
    };
    println!("{}\t{}\t{}", img.path.display(), img.sha256, img.source);
    Ok(exit_codes::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_default_grows_with_iterations() {
        assert_eq!(memory_needed_mib(1_000), 1024);
        let big = memory_needed_mib(800_000);
        assert!(big >= 6_500 && big.is_multiple_of(256), "{big}");
    }
}
