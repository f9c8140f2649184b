//! The command line turned into the layers' requests: each subcommand's
//! clap arguments (cli/args.rs) become the domain types the layers take,
//! so nothing below cli/ sees clap.

use std::sync::Arc;

use anyhow::Result;

use crate::cli::args::{
    BisectArgs, CheckArgs, CheckpointArgs, ExecArgs, MatrixArgs, ReportArgs, ResumeArgs, RunArgs, RunCommandArgs, VmArgs, WatchArgs,
};
use crate::guest::checkpoint::CheckpointPolicy;
use crate::guest::request::{ExecRequest, ResumeRequest, RunRequest, VmRequest};
use crate::judge::bisect::BisectRequest;
use crate::judge::check::CheckRequest;
use crate::judge::matrix::MatrixRequest;
use crate::judge::report_run::ReportRequest;
use crate::judge::suite::SuiteRequest;
use crate::kernel::catalog::Catalog;
use crate::kernel::spec::KernelSpec;
use crate::run::watch::WatchRequest;

impl VmArgs {
    /// The kernel these arguments name: `--src` builds a tree, else `--kernel`.
    pub fn kernel_spec(&self) -> KernelSpec {
        match &self.src {
            Some(dir) => KernelSpec::Tree(dir.clone()),
            None => self.kernel.clone(),
        }
    }

    pub fn request(&self) -> Result<VmRequest> {
        Ok(VmRequest {
            kernel: self.kernel_spec(),
            accel: self.accel.into(),
            cpus: self.cpus,
            memory: self.memory,
            boot_timeout: self.boot_timeout,
            kvm_timeout: self.kvm_timeout,
            append: self.append.clone(),
            qemu: self.qemu.clone(),
            cache: self.cache.cache(),
            cc: self.cc.clone(),
            catalog: catalog()?,
        })
    }
}

impl RunArgs {
    pub fn request(&self) -> Result<RunRequest> {
        Ok(RunRequest {
            vm: self.vm.request()?,
            scenario: self.scenario.clone(),
            iterations: self.iterations,
            workers: self.workers,
            window: self.window,
            probe_samples: self.probe_samples,
            backend: self.backend,
            timeout: self.timeout,
            stall_timeout: self.stall_timeout,
            out: self.out.clone(),
            json: self.json,
            full: self.full,
            chain_walk: self.chain_walk,
            checkpoint: CheckpointPolicy::default(),
        })
    }
}

impl CheckpointArgs {
    pub fn policy(&self) -> CheckpointPolicy {
        CheckpointPolicy { every: self.checkpoint_every, stop_after: self.stop_after }
    }
}

impl RunCommandArgs {
    pub fn request(&self) -> Result<RunRequest> {
        Ok(RunRequest { checkpoint: self.checkpoint.policy(), ..self.run.request()? })
    }
}

impl ResumeArgs {
    pub fn request(&self) -> Result<ResumeRequest> {
        Ok(ResumeRequest {
            dir: self.dir.clone(),
            qemu: self.qemu.clone(),
            checkpoint: self.checkpoint.policy(),
            timeout: self.timeout,
            stall_timeout: self.stall_timeout,
            json: self.json,
            catalog: catalog()?,
        })
    }
}

impl ExecArgs {
    pub fn request(&self) -> Result<ExecRequest> {
        Ok(ExecRequest {
            vm: self.vm.request()?,
            include: self.include.clone(),
            timeout: self.timeout,
            out: self.out.clone(),
            command: self.command.clone(),
        })
    }
}

impl BisectArgs {
    pub fn request(&self) -> Result<BisectRequest> {
        Ok(BisectRequest {
            good: self.good.clone(),
            bad: self.bad.clone(),
            unfixed: self.unfixed.clone(),
            fixed: self.fixed.clone(),
            kernels: self.kernels.clone(),
            fix: self.fix,
            run: self.run.request()?,
        })
    }
}

impl MatrixArgs {
    pub fn request(&self) -> Result<MatrixRequest> {
        Ok(MatrixRequest {
            kernels: self.kernels.clone(),
            scenarios: self.scenarios.clone(),
            run: self.run.request()?,
            junit: self.junit.clone(),
        })
    }
}

impl WatchArgs {
    pub fn request(&self) -> WatchRequest {
        WatchRequest {
            interval: self.interval,
            samples: self.samples,
            probe: self.probe.clone(),
            control: self.control.clone(),
            ratio_alarm: self.ratio_alarm,
            chain_alarm: self.chain_alarm,
            consecutive: self.consecutive,
            per_entry_us: self.per_entry_us,
            hook: self.hook.clone(),
            count: self.count,
            linger: self.linger,
            while_cmd: self.while_cmd.clone(),
        }
    }
}

impl CheckArgs {
    pub(crate) fn request(&self) -> Result<CheckRequest> {
        Ok(CheckRequest { run: self.run.request()?, repeat: self.repeat.max(1), junit: self.junit.clone() })
    }

    /// `--suite`: the run's settings, each bug's scenario in turn.
    pub(crate) fn suite_request(&self) -> Result<SuiteRequest> {
        Ok(SuiteRequest { run: self.run.request()?, junit: self.junit.clone() })
    }
}

impl ReportArgs {
    pub(crate) fn request(&self) -> Result<ReportRequest> {
        Ok(ReportRequest {
            dirs: self.dirs.clone(),
            out: self.out.clone(),
            expect: self.expect.clone(),
            logs: self.logs.clone(),
            junit: self.junit.clone(),
            catalog: catalog()?,
        })
    }
}

/// The catalog every command that names kernels resolves them in, loaded
/// once per command here (a private one from $REPRO_CATALOG is read and
/// checked once) and handed down in its request.
pub(crate) fn catalog() -> Result<Arc<Catalog>> {
    Catalog::builtin().map(Arc::new)
}
