//! Booting the guest: the kernel resolved and checked, QEMU found, memory
//! sized, the initramfs written, and the accelerators tried in order until
//! the agent says hello.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use repro_proto::{Backend, Job, Message, Summary, PANIC_MARKER};

use crate::error::{fail, Kind};
use crate::guest::qemu::AccelChoice;
use crate::guest::qemu::{self, Accel, Machine, VmSpec};
use crate::guest::request::VmRequest;
use crate::guest::session::{self, StartFailure};
use crate::kernel::cache::KernelImage;
use crate::kernel::catalog::Catalog;
use crate::run::progress::Progress;
use crate::run::record::{Recorder, CONSOLE};

/// Guest memory beyond what the stale namespaces hold: the kernel, the
/// initramfs, the agent and its workers.
const BASE_MIB: u64 = 512;

/// What one stale namespace holds in a guest with the bug: six dentries
/// and their proc inodes, measured as slab growth per namespace at 8.7 KiB
/// on 6.1-noprune and 6.5 KiB on 3.10.0-514.el7, nothing on a fixed kernel
/// (results/memory). The larger, with half again for slack.
const KIB_PER_STALE_NAMESPACE: u64 = 12;

/// Guest memory that holds every stale dentry the run can leave. Less, and
/// memory pressure prunes the dcache, which hides the bug.
pub(crate) fn memory_needed_mib(iterations: u64) -> u64 {
    let mib = BASE_MIB + iterations.saturating_mul(KIB_PER_STALE_NAMESPACE) / 1024;
    mib.max(1024).div_ceil(256) * 256
}

/// The guest's memory for a run of `iterations`: `asked` (--memory), else
/// [`memory_needed_mib`]. A size this host cannot give (more than
/// `host_available_mib`, its MemAvailable) is refused before any kernel is
/// fetched or built, with the numbers; a --memory below the need is only
/// warned about (the user may mean it).
pub(crate) fn size_memory(iterations: u64, asked: Option<u64>, host_available_mib: Option<u64>) -> Result<u64> {
    let needed = memory_needed_mib(iterations);
    let memory = asked.unwrap_or(needed);
    if let Some(available) = host_available_mib.filter(|a| memory > *a) {
        let fits = available.saturating_sub(BASE_MIB).saturating_mul(1024) / KIB_PER_STALE_NAMESPACE;
        return Err(fail(
            Kind::Usage,
            format!(
                "a guest of {memory} MiB is more than this host has available ({available} MiB): {iterations} namespaces need about \
                 {needed} MiB ({KIB_PER_STALE_NAMESPACE} KiB per stale namespace on a kernel with the bug, on {BASE_MIB} MiB). \
                 Lower --iterations (about {fits} fit here), or run on a host with more memory"
            ),
        ));
    }
    if memory < needed {
        tracing::warn!(
            "--memory {memory}M may be too small for {iterations} iterations: the stale dentries of a buggy kernel need about {needed}M; \
             memory pressure would prune them and hide the bug"
        );
    }
    Ok(memory)
}

/// The QEMU this host runs `kernel` on: `--qemu` (or REPRO_QEMU) if given,
/// else the machine's, or one fetched into the cache when the catalog says
/// the kernel needs a newer one. The one rule for a run and a resume.
pub(crate) fn choose_qemu(
    explicit: Option<&std::path::Path>,
    kernel: &crate::kernel::spec::KernelSpec,
    catalog: &Catalog,
    cache: &crate::kernel::cache::Cache,
) -> Result<qemu::Qemu> {
    let found = qemu::find(explicit)?;
    // A catalog kernel may need a newer QEMU than the machine's; --qemu wins.
    let need = match kernel {
        crate::kernel::spec::KernelSpec::Catalog(name) if explicit.is_none() => {
            catalog.lookup(name).ok().and_then(|e| e.qemu.clone()).and_then(|q| catalog.qemu.get(&q).map(|n| (q, n.clone())))
        }
        _ => None,
    };
    Ok(match need {
        Some((name, need)) => qemu::for_need(found, &name, &need, cache)?,
        None => qemu::Qemu { program: found, data_dirs: vec![] },
    })
}

/// A kernel, a QEMU and a memory size, checked before anything boots.
pub(crate) struct Vm {
    pub image: KernelImage,
    pub qemu: qemu::Qemu,
    pub memory_mib: u64,
    /// `-cpu` under KVM, by the kernel's version.
    pub kvm_cpu: String,
}

/// Resolve the kernel and QEMU, size the guest, and note it all in `summary`.
pub(crate) fn prepare_vm(vm: &VmRequest, iterations: u64, summary: &mut Summary) -> Result<Vm> {
    let memory_mib = size_memory(iterations, vm.memory, qemu::host_available_mib())?;
    let catalog = &vm.catalog;
    let cache = &vm.cache;
    let image = vm.kernel.resolve(catalog, cache, vm.cc.as_deref(), &summary.scenario_definition.config)?;
    let qemu_bin = choose_qemu(vm.qemu.as_deref(), &vm.kernel, catalog, cache)?;
    summary.provenance.qemu_version = qemu::version(&qemu_bin.program);
    summary.backend = Backend::Qemu;
    summary.kernel.image = Some(image.path.display().to_string());
    summary.kernel.image_sha256 = Some(image.sha256.clone());
    summary.kernel.source = image.origin.to_string();
    summary.kernel.verified = image.verified.clone();
    summary.kernel.build = image.build.clone();
    summary.kernel.source_fix = image.source_fix;
    summary.kernel.source_bugs = image.source_bugs;
    summary.kernel.fallback = image.fallback.clone();
    summary.guest_cpus = Some(vm.cpus);
    summary.guest_memory_mib = Some(memory_mib);
    let version = crate::kernel::bzimage::release(&image.path).and_then(|r| crate::kernel::era::KernelVersion::from_release(&r));
    let kvm_cpu = catalog.kvm_cpu_model(version.as_ref()).to_string();
    Ok(Vm { image, qemu: qemu_bin, memory_mib, kvm_cpu })
}

/// Write the initramfs (agent as /init, the job, extra files) into `work`.
pub(crate) fn write_initramfs(work: &Path, agent: &Path, job: &Job, extra: Vec<crate::guest::initramfs::Entry>) -> Result<PathBuf> {
    let initrd = work.join("initramfs.cpio");
    let agent_bytes = std::fs::read(agent).with_context(|| format!("reading the agent {}", agent.display()))?;
    let mut entries = crate::guest::initramfs::entries(agent_bytes, serde_json::to_vec(job)?);
    entries.extend(extra);
    let f = std::fs::File::create(&initrd).with_context(|| format!("creating {}", initrd.display()))?;
    crate::guest::initramfs::write(std::io::BufWriter::new(f), &entries)?.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(initrd)
}

/// Why KVM here cannot run the CPU model the catalog gives this kernel
/// (QEMU's own account, no guest booted), if it cannot. `host` is by
/// definition what KVM gives; a query that fails leaves it to the boot.
fn kvm_model_gap(vm: &Vm, rec: &mut Recorder) -> Option<String> {
    if vm.kvm_cpu == "host" {
        return None;
    }
    let t0 = std::time::Instant::now();
    let gaps = qemu::kvm_model_gaps(&vm.qemu.program, &vm.qemu.data_dirs, &vm.kvm_cpu);
    rec.kvm_queried(t0.elapsed());
    match gaps {
        Ok(g) if g.is_empty() => None,
        Ok(g) => Some(format!(
            "KVM did not work: it cannot give CPU model {} its {} (QEMU's query-cpu-definitions under KVM)",
            vm.kvm_cpu,
            g.join(", ")
        )),
        Err(e) => {
            tracing::debug!("the KVM CPU model query failed ({e:#}); the boot will tell");
            None
        }
    }
}

/// The KVM probe's bound on silence: a guest under KVM prints the kernel's
/// first line well within a second of QEMU's start (firmware and an LZ4
/// image's decompression at native speed), so a console still empty after
/// 5 s is the hang of a host whose /dev/kvm opens but cannot run a guest
/// (nested KVM here: nothing in 8 s, then the whole --kvm-timeout), told
/// at once instead of after 20 s. A guest that printed goes on to the
/// hello within --kvm-timeout.
const KVM_FIRST_LINE: std::time::Duration = std::time::Duration::from_secs(5);

/// Boot, trying the accelerators in order (--accel auto: KVM, proven by the
/// agent's hello within --kvm-timeout, then TCG), and record which ran and why.
pub(crate) async fn boot(
    vm_args: &VmRequest,
    vm: &Vm,
    initrd: &Path,
    work: &Path,
    rec: &mut Recorder,
    progress: &Progress,
    checkpointing: bool,
) -> Result<(session::Started, VmSpec)> {
    let memo = crate::guest::kvm_memo::KvmMemo::new(
        &vm_args.cache.root,
        rec.summary.provenance.qemu_version.as_deref().unwrap_or_default(),
        &vm.kvm_cpu,
    );
    let (accels, mut fallback_reason) = accelerators(vm_args, vm, rec, &memo);
    for (i, accel) in accels.iter().enumerate() {
        let is_probe = vm_args.accel == AccelChoice::Auto && *accel == Accel::Kvm;
        let console = rec.dir.join(if is_probe { "console-kvm-probe.log" } else { CONSOLE });
        let spec = vm.spec(vm_args, *accel, initrd, work, console, checkpointing);
        let deadline = if is_probe { vm_args.kvm_timeout } else { vm_args.boot_timeout };
        progress.status(&format!("booting {} under {}", vm.image.name, accel.as_str()));
        rec.spawning();
        let first_line = is_probe.then_some(KVM_FIRST_LINE);
        match session::start_qemu(&spec, &rec.dir, deadline, first_line).await {
            Ok(started) => {
                if *accel == Accel::Kvm {
                    memo.forget();
                }
                rec.summary.accel = Some(*accel);
                rec.summary.guest_cpu_model = Some(qemu::cpu_model(*accel, &vm.kvm_cpu).to_string());
                rec.summary.accel_fallback_reason = fallback_reason;
                rec.record(&started.hello)?;
                log_hello(&started.hello, accel.as_str(), progress);
                return Ok((started, spec));
            }
            Err(StartFailure::Interrupted) => {
                return Err(fail(Kind::Interrupted, "interrupted while booting the guest; nothing was recorded yet"))
            }
            Err(f) if is_probe && i + 1 < accels.len() => {
                let why = format!("KVM did not work: {}", f.describe().lines().next().unwrap_or_default());
                tracing::warn!("{why}; falling back to TCG");
                memo.remember_failure(&why);
                fallback_reason = Some(why);
            }
            Err(f @ StartFailure::Deadline(_)) if session::kernel_printed_nothing(&spec.console_log) => {
                return Err(fail(
                    Kind::GuestHung,
                    format!(
                        "the guest kernel printed nothing on its serial console under {accel} ({}): that is not a slow machine, \
                         a booting kernel prints within seconds even under TCG, so a longer --boot-timeout will not help. {}. \
                         console.log is kept in the run directory",
                        f.describe(),
                        crate::kernel::bzimage::silent_boot_advice(&spec.kernel, &spec.machine.cmdline),
                        accel = accel.as_str()
                    ),
                ))
            }
            Err(f) => return Err(boot_failure(f, accel.as_str())),
        }
    }
    bail!("no accelerator to try")
}

/// The accelerators to try, in order, and why KVM is already ruled out
/// (--accel auto: known to fail on this host, or shown to fail without a
/// boot by the CPU model query), if it is.
fn accelerators(vm_args: &VmRequest, vm: &Vm, rec: &mut Recorder, memo: &crate::guest::kvm_memo::KvmMemo) -> (Vec<Accel>, Option<String>) {
    let (mut accels, mut fallback_reason) = vm_args.accel.plan();
    if vm_args.accel == AccelChoice::Auto && accels.first() == Some(&Accel::Kvm) {
        let refused = match memo.failed_before() {
            Some(why) => Some(format!(
                "KVM failed on this host before ({why}); not tried again until the host kernel, its boot, QEMU or the CPU model \
                 changes (--accel kvm tries it)"
            )),
            None => kvm_model_gap(vm, rec).inspect(|why| memo.remember_failure(why)),
        };
        if let Some(reason) = refused {
            tracing::warn!("{reason}; using TCG");
            accels.retain(|a| *a != Accel::Kvm);
            fallback_reason = Some(reason);
        }
    }
    (accels, fallback_reason)
}

impl Vm {
    /// The machine to start under `accel`, its console written to `console`.
    fn spec(&self, vm_args: &VmRequest, accel: Accel, initrd: &Path, work: &Path, console: PathBuf, checkpointing: bool) -> VmSpec {
        VmSpec {
            qemu: self.qemu.clone(),
            kernel: self.image.path.clone(),
            machine: Machine {
                accel,
                kvm_cpu: self.kvm_cpu.clone(),
                cpus: vm_args.cpus,
                memory_mib: self.memory_mib,
                cmdline: qemu::kernel_cmdline(&vm_args.append),
            },
            initrd: initrd.to_path_buf(),
            console_log: console,
            proto_socket: work.join("proto.sock"),
            qmp_socket: checkpointing.then(|| work.join("qmp.sock")),
            incoming: false,
        }
    }
}

pub(crate) fn log_hello(hello: &Message, accel: &str, progress: &Progress) {
    if let Message::Hello { release, cpus, mem_total_kib, .. } = hello {
        progress.status(&format!("guest up: {}, {cpus} cpus, {} MiB ({accel})", crate::text::printable(release), mem_total_kib / 1024));
        tracing::debug!("guest up: {release} ({accel})");
    }
}

fn host_starved(accel: &str, msg: &str) -> anyhow::Error {
    fail(
        Kind::HostStarved,
        format!(
            "the guest failed its timer check under {accel} because this host gave it too little CPU time, not because of \
             its kernel: run it again on a less busy host (or with fewer --cpus): {msg}"
        ),
    )
}

pub(crate) fn boot_failure(f: StartFailure, accel: &str) -> anyhow::Error {
    match f {
        StartFailure::Exited(msg) if session::starved_by_the_host(&msg) => host_starved(accel, &msg),
        StartFailure::Exited(msg) if msg.contains(PANIC_MARKER) => fail(Kind::GuestPanic, format!("the guest kernel panicked while booting under {accel}: {msg}")),
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

/// The static agent, beside this executable (one `cargo build` puts it there).
pub(crate) fn agent_path() -> Result<PathBuf> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The console of the 6.1-noprune boot that failed on a loaded 2-core
    /// host (issue 20), as the kernel printed it.
    const STARVED_CONSOLE: &str = "..TIMER: vector=0x30 apic1=0 pin1=2 apic2=-1 pin2=-1\n\
        ..MP-BIOS bug: 8254 timer not connected to IO-APIC\n\
        ...trying to set up timer (IRQ0) through the 8259A ...\n\
        ..... (found apic 0 pin 2) ...\n....... failed.\n\
        ...trying to set up timer as Virtual Wire IRQ...\n..... failed.\n\
        ...trying to set up timer as ExtINT IRQ...\n..... failed :(.\n\
        Kernel panic - not syncing: IO-APIC + timer doesn't work!  Boot with apic=debug and send a report.";

    #[test]
    fn a_boot_the_host_starved_is_the_environment_and_stops_a_bisection() {
        let e = boot_failure(StartFailure::Exited(STARVED_CONSOLE.into()), "tcg");
        let kind = crate::error::kind_of(&e).unwrap();
        assert_eq!(kind, Kind::HostStarved);
        assert!(kind.is_kernel_independent(), "git bisect run must stop (128), not blame the commit");
        assert_eq!(kind.exit_code(), repro_proto::exit_codes::HOST_STARVED);
        assert!(format!("{e:#}").contains("less busy host"), "{e:#}");
        // Any other panic is the kernel's.
        let other = boot_failure(StartFailure::Exited("Kernel panic - not syncing: VFS: Unable to mount root fs".into()), "tcg");
        assert_eq!(crate::error::kind_of(&other), Some(Kind::GuestPanic));
    }

    #[test]
    fn a_guest_the_host_cannot_give_is_refused_with_the_numbers() {
        assert_eq!(size_memory(1_000, None, Some(20_000)).unwrap(), 1024);
        assert_eq!(size_memory(1_000, Some(2048), None).unwrap(), 2048);
        let e = size_memory(800_000, None, Some(4_096)).unwrap_err();
        assert_eq!(crate::error::kind_of(&e), Some(Kind::Usage));
        let text = format!("{e:#}");
        assert!(text.contains("4096 MiB") && text.contains("800000 namespaces"), "{text}");
        let e = size_memory(1_000, Some(64 << 10), Some(8 << 10)).unwrap_err();
        assert_eq!(crate::error::kind_of(&e), Some(Kind::Usage));
    }

    #[test]
    fn memory_default_grows_with_iterations() {
        assert_eq!(memory_needed_mib(1_000), 1024);
        // The write-up's count: 800,000 x 8.7 KiB of slab is 6.6 GiB.
        let big = memory_needed_mib(800_000);
        assert!(big >= 9_500 && big.is_multiple_of(256), "{big}");
    }
}
