//! What a run or an `exec` asks of the guest layer, in domain terms: cli/
//! turns its clap arguments into these, and nothing below cli/ sees clap.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use repro_proto::Backend;

use crate::guest::checkpoint::CheckpointPolicy;
use crate::guest::qemu::AccelChoice;
use crate::kernel::cache::Cache;
use crate::kernel::catalog::Catalog;
use crate::kernel::spec::KernelSpec;
use crate::run::scenario::ScenarioSpec;

/// How to boot a guest.
#[derive(Debug, Clone)]
pub struct VmRequest {
    /// The kernel: a catalog name, a bzImage, or a tree to build.
    pub kernel: KernelSpec,
    pub accel: AccelChoice,
    pub cpus: u32,
    /// MiB; None: sized for the run ([`crate::guest::boot::memory_needed_mib`]).
    pub memory: Option<u64>,
    pub boot_timeout: Duration,
    pub kvm_timeout: Duration,
    /// Extra guest kernel command-line arguments.
    pub append: String,
    /// A QEMU binary the user named.
    pub qemu: Option<PathBuf>,
    pub cache: Cache,
    /// A compiler for kernel builds instead of the era's.
    pub cc: Option<String>,
    /// The catalog, loaded once by cli/ (the built-in one or $REPRO_CATALOG).
    pub catalog: Arc<Catalog>,
}

impl VmRequest {
    /// The guest with a scenario's kernel arguments after the user's
    /// `--append` (after repro's own too: the last of a parameter wins).
    pub fn with_kernel_args(&self, args: &[String]) -> VmRequest {
        let append = std::iter::once(self.append.trim()).chain(args.iter().map(String::as_str)).filter(|a| !a.is_empty());
        VmRequest { append: append.collect::<Vec<_>>().join(" "), ..self.clone() }
    }
}

/// One churn run: the guest, the workload and where to record it.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub vm: VmRequest,
    pub scenario: ScenarioSpec,
    pub iterations: u64,
    pub workers: u32,
    /// Iterations between probe windows; None: [`RunRequest::window`].
    pub window: Option<u64>,
    pub probe_samples: Option<u32>,
    pub backend: Backend,
    pub timeout: Option<Duration>,
    pub stall_timeout: Duration,
    pub out: Option<PathBuf>,
    /// Also print summary.json on stdout.
    pub json: bool,
    /// Churn every iteration even where a round decides the verdict.
    pub full: bool,
    pub chain_walk: bool,
    /// When to save the guest (`repro run` only; none by default).
    pub checkpoint: CheckpointPolicy,
}

impl RunRequest {
    /// Iterations between probe windows: the one asked, else a twentieth of the run.
    pub fn window(&self) -> u64 {
        self.window.unwrap_or(self.iterations / 20).max(1)
    }

    /// The kernel's name in the summary: the host backend runs this
    /// machine's own kernel, whatever --kernel says, and is no catalog
    /// kernel (its release is the agent's `uname -r`).
    pub fn kernel_label(&self) -> String {
        match self.backend {
            Backend::Host => "host".to_string(),
            Backend::Qemu => self.vm.kernel.label(),
        }
    }

    /// The run directory's name for this kernel: `host` on the host backend.
    pub fn kernel_slug(&self) -> String {
        match self.backend {
            Backend::Host => "host".to_string(),
            Backend::Qemu => self.vm.kernel.slug(),
        }
    }
}

/// `repro resume`: a checkpointed run continued.
#[derive(Debug, Clone)]
pub struct ResumeRequest {
    pub dir: PathBuf,
    /// The QEMU to load the state into (else this host's own choice, as a run's).
    pub qemu: Option<PathBuf>,
    pub checkpoint: CheckpointPolicy,
    pub timeout: Option<Duration>,
    /// None: the stall timeout the run was started with.
    pub stall_timeout: Option<Duration>,
    pub json: bool,
    /// Where this host's choice of QEMU comes from, as a run's.
    pub catalog: Arc<Catalog>,
}

/// One command in a guest (`repro exec`).
#[derive(Debug, Clone)]
pub struct ExecRequest {
    pub vm: VmRequest,
    /// HOST[:GUEST] files copied into the guest's /bin.
    pub include: Vec<String>,
    pub timeout: Duration,
    pub out: Option<PathBuf>,
    pub command: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scenarios_kernel_args_come_after_the_users_append() {
        let vm = VmRequest {
            kernel: KernelSpec::parse(std::ffi::OsStr::new("6.1")),
            accel: AccelChoice::Tcg,
            cpus: 1,
            memory: None,
            boot_timeout: Duration::from_secs(1),
            kvm_timeout: Duration::from_secs(1),
            append: " quiet ".into(),
            qemu: None,
            cache: Cache::new(None),
            cc: None,
            catalog: Arc::new(Catalog::builtin().unwrap()),
        };
        assert_eq!(vm.with_kernel_args(&["rcupdate.rcu_expedited=0".into()]).append, "quiet rcupdate.rcu_expedited=0");
        assert_eq!(vm.with_kernel_args(&[]).append, "quiet");
        let bare = VmRequest { append: String::new(), ..vm };
        assert_eq!(bare.with_kernel_args(&["a=1".into(), "b".into()]).append, "a=1 b");
    }
}
