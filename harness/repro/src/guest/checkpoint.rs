//! Checkpoints: a run's guest saved whole at a round's pause, so that a
//! churn too long for one process, host or CI job (800,000 namespaces on a
//! kernel with the bug) goes on in another.
//!
//! At a round the agent has sent everything up to its `Round` and waits for
//! the host's answer, so the stream is at a line boundary and nothing is in
//! flight. There repro stops the guest over QEMU's machine protocol, has
//! QEMU migrate it into a gzip file in the run directory, and writes what a
//! resume needs beside it: the kernel image and initramfs themselves (a
//! resume on a fresh machine, a CI runner with an empty cache, has nothing
//! else), and `checkpoint/state.json`: the QEMU version, accelerator, CPU
//! model and vendor, memory, the files' sha256, and the length of
//! samples.jsonl and the summary as they stood.
//!
//! A checkpoint is outside data (CI downloads it from another run's
//! artifact), so `repro resume DIR` trusts none of it: the resuming host
//! chooses its own QEMU (as a run does) and asks its version itself; the
//! state names no program, path or QEMU option; every number is bounded;
//! the run directory's own files must be plain files, not links. Then it
//! starts QEMU waiting for the state, loads it, and answers the round: the
//! stream goes on where it stopped. The guest's clocks stop with the VM, so
//! the gap is not in its windows.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use qapi::qmp;
use repro_proto::{Accel, Checkpoint, Summary};
use serde::{Deserialize, Serialize};

use crate::error::{fail, Kind};
use crate::guest::qemu::{Machine, VmSpec};
pub(crate) use crate::guest::qmp::Qmp;
use crate::run::record::{Recorder, SAMPLES};

/// The checkpoint's folder in the run directory.
pub(crate) const DIR: &str = "checkpoint";
pub(crate) const STATE: &str = "state.json";
pub(crate) const INITRD: &str = "initramfs.cpio";
pub(crate) const KERNEL: &str = "bzImage";
/// 3: the kernel image carried in the checkpoint; no QEMU, path or data
/// directory in the state (the resuming host chooses them); the CPU vendor.
const STATE_FORMAT: u32 = 3;
/// The longest stall timeout a state may carry (a week).
const STALL_BOUND_S: f64 = 7.0 * 86400.0;
/// The longest a save or a restore may take (a 10 GiB guest through gzip
/// takes minutes, not an hour).
const MIGRATION_BOUND: Duration = Duration::from_secs(3600);

/// When a run saves its guest.
#[derive(Debug, Clone, Copy, Default)]
pub struct CheckpointPolicy {
    /// Save at the first round this long after the last save (or the start).
    pub every: Option<Duration>,
    /// Save and stop at the first round this long after the start: a job
    /// that hands the run on before its time limit.
    pub stop_after: Option<Duration>,
}

impl CheckpointPolicy {
    /// Whether the run saves at all.
    pub fn is_on(&self) -> bool {
        self.every.is_some() || self.stop_after.is_some()
    }
}

/// What a resume needs to start the same machine, and to check that it is
/// the same: written by repro, and still checked before it is trusted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SavedVm {
    pub format_version: u32,
    /// The machine the state must be loaded into again.
    pub machine: Machine,
    /// `qemu --version`: migration needs the same QEMU on both sides.
    pub qemu_version: String,
    /// The saving host's CPU vendor under KVM (`vendor_id`): a KVM guest
    /// keeps the vendor of the host it booted on, and its state loads only
    /// on a host of the same vendor. None under TCG.
    pub cpu_vendor: Option<String>,
    pub kernel_sha256: String,
    pub initrd_sha256: String,
    /// The guest state file, in the checkpoint folder (named by iteration:
    /// a new save never overwrites the one this state points at).
    pub state_file: String,
    /// The summary as it stood at the save, beside it: a resume starts from it.
    pub summary_file: String,
    pub iteration: u64,
    /// samples.jsonl's length at the save: a resume cuts what came after.
    pub samples_bytes: u64,
    pub stall_timeout_s: f64,
}

impl SavedVm {
    /// The state at `dir`'s checkpoint, checked against this machine and
    /// its QEMU `qemu`: the same QEMU version, kernel image and initramfs,
    /// and an accelerator (and CPU vendor) it has.
    pub(crate) fn read(run_dir: &Path, qemu: &Path) -> Result<(SavedVm, Summary)> {
        let cp = run_dir.join(DIR);
        let path = cp.join(STATE);
        own_files_are_plain(run_dir)?;
        if !path.exists() {
            return Err(fail(
                Kind::Usage,
                format!(
                    "{} has no checkpoint ({} is missing): only a run started with --checkpoint-every or --stop-after \
                     that saved at least once can be resumed",
                    run_dir.display(),
                    path.display()
                ),
            ));
        }
        let now = crate::input::Input::Summary.read_text(&run_dir.join(crate::run::record::SUMMARY))?;
        if serde_json::from_str::<Summary>(&now).is_ok_and(|s| s.complete) {
            bail!(fail(Kind::Usage, format!("the run in {} is complete: there is nothing to resume", run_dir.display())));
        }
        let text = crate::input::Input::Checkpoint.read_text(&path)?;
        let saved: SavedVm = serde_json::from_str(&text).map_err(|e| {
            fail(Kind::Usage, format!("{} is not a checkpoint state repro wrote ({e}); the run cannot be resumed", path.display()))
        })?;
        if saved.format_version != STATE_FORMAT {
            bail!(fail(
                Kind::Usage,
                format!(
                    "{} is in checkpoint format {}, this repro reads {STATE_FORMAT}: resume it with the repro that saved it",
                    path.display(),
                    saved.format_version
                )
            ));
        }
        if !valid_name(&saved.summary_file) {
            bail!(fail(Kind::Usage, format!("{}: {:?} is not a file name repro writes", path.display(), saved.summary_file)));
        }
        let summary_path = cp.join(&saved.summary_file);
        let summary_text = crate::input::Input::Summary.read_text(&summary_path)?;
        let summary: Summary = serde_json::from_str(&summary_text)
            .map_err(|e| fail(Kind::Usage, format!("{}: not a summary ({e})", summary_path.display())))?;
        saved.check(run_dir, &summary, qemu)?;
        Ok((saved, summary))
    }

    /// Everything that must match for QEMU to load the state, each refused
    /// with what differs and what to do.
    fn check(&self, run_dir: &Path, summary: &Summary, qemu: &Path) -> Result<()> {
        let mismatch = |what: String| fail(Kind::Usage, format!("cannot resume {}: {what}", run_dir.display()));
        self.machine.check().map_err(|why| mismatch(format!("its state is not one repro writes: {why}")))?;
        if !(self.stall_timeout_s.is_finite() && (1.0..=STALL_BOUND_S).contains(&self.stall_timeout_s)) {
            return Err(mismatch(format!("its stall timeout {} s is outside 1 s to a week", self.stall_timeout_s)));
        }
        if let Some(host) = crate::guest::qemu::host_available_mib() {
            if self.machine.memory_mib > host {
                return Err(mismatch(format!(
                    "its guest has {} MiB of memory and this host has {host} MiB available: resume it on a larger machine",
                    self.machine.memory_mib
                )));
            }
        }
        if summary.windows.last().map_or(0, |w| w.iteration) > self.iteration || summary.complete {
            return Err(mismatch("its saved summary is past the checkpoint, or complete: the folder was changed".into()));
        }
        if !valid_name(&self.state_file) || !run_dir.join(DIR).join(&self.state_file).is_file() {
            return Err(mismatch(format!("the guest state file {:?} is missing from {DIR}/", self.state_file)));
        }
        // This host's QEMU, asked by this host: the state's word is only compared.
        let have = crate::guest::qemu::version(qemu);
        if have.as_deref() != Some(self.qemu_version.as_str()) {
            return Err(mismatch(format!(
                "it was saved by {:?}, and this host's QEMU ({}) is {}; QEMU loads only a state saved by the same version: \
                 install that QEMU here and pass it with --qemu (or REPRO_QEMU)",
                crate::text::clip(&self.qemu_version, 200),
                qemu.display(),
                have.map_or("not runnable".into(), |v| format!("{v:?}"))
            )));
        }
        for (what, path, want) in [
            ("kernel image", &run_dir.join(DIR).join(KERNEL), &self.kernel_sha256),
            ("initramfs", &run_dir.join(DIR).join(INITRD), &self.initrd_sha256),
        ] {
            let got = crate::input::Input::KernelImage.sha256(path);
            if got.as_ref().ok() != Some(want) {
                return Err(mismatch(format!(
                    "the {what} {} is {} (the guest's memory holds the one with sha256 {}); the checkpoint folder was \
                     changed or is incomplete: copy the whole run directory again",
                    path.display(),
                    match got {
                        Ok(_) => "a different file now".to_string(),
                        Err(e) => format!("unusable ({e:#})"),
                    },
                    crate::text::clip(want, 80)
                )));
            }
        }
        if self.machine.accel == Accel::Kvm {
            let here = host_cpu_vendor();
            if here != self.cpu_vendor {
                return Err(mismatch(format!(
                    "it was saved under KVM on a {} host and this host is {}: a KVM guest keeps its CPU vendor, so its \
                     state loads only on a host of the same vendor (pick such a runner, or start the run again)",
                    self.cpu_vendor.as_deref().map_or("?".into(), |v| crate::text::clip(v, 40)),
                    here.as_deref().unwrap_or("of unknown vendor")
                )));
            }
            crate::guest::qemu::kvm_device_usable().map_err(|why| {
                mismatch(format!(
                    "it was saved under KVM, and {why}; a KVM guest's state resumes only under KVM, with CPU model {}",
                    self.machine.kvm_cpu
                ))
            })?;
        }
        Ok(())
    }

    /// The machine to start on this host's `qemu`, waiting for this state.
    pub(crate) fn spec(&self, run_dir: &Path, work: &Path, qemu: crate::guest::qemu::Qemu) -> VmSpec {
        VmSpec {
            qemu,
            kernel: run_dir.join(DIR).join(KERNEL),
            machine: self.machine.clone(),
            initrd: run_dir.join(DIR).join(INITRD),
            console_log: run_dir.join(crate::run::record::CONSOLE),
            proto_socket: work.join("proto.sock"),
            qmp_socket: Some(work.join("qmp.sock")),
            incoming: true,
        }
    }

    pub(crate) fn state_path(&self, run_dir: &Path) -> PathBuf {
        run_dir.join(DIR).join(&self.state_file)
    }
}

/// The run directory's own files, which a resume opens for writing or
/// hands to QEMU (which follows links in `-chardev file`): each must be a
/// plain file (the checkpoint a plain directory) or absent, never a link
/// planted to send the writes elsewhere.
fn own_files_are_plain(run_dir: &Path) -> Result<()> {
    use crate::run::record::{CONSOLE, SAMPLES, SUMMARY};
    let logs = [Accel::Tcg, Accel::Kvm].map(crate::guest::qemu::stderr_log);
    let files = [SAMPLES, SUMMARY, CONSOLE, &logs[0], &logs[1], repro_proto::Verdict::FILE];
    let check = |name: &str, want_dir: bool| -> Result<()> {
        let p = run_dir.join(name);
        let Ok(meta) = std::fs::symlink_metadata(&p) else { return Ok(()) };
        let ok = if want_dir { meta.file_type().is_dir() } else { meta.file_type().is_file() };
        if ok {
            return Ok(());
        }
        Err(fail(
            Kind::Usage,
            format!(
                "cannot resume {}: {} is {}, not a plain {}: repro writes there and will not follow it elsewhere; \
                 remove it (or copy the run directory again) and resume",
                run_dir.display(),
                p.display(),
                if meta.file_type().is_symlink() { "a symbolic link" } else { "of another type" },
                if want_dir { "directory" } else { "file" }
            ),
        ))
    };
    check(DIR, true)?;
    for name in files {
        check(name, false)?;
    }
    for name in [STATE, INITRD, KERNEL] {
        check(&format!("{DIR}/{name}"), false)?;
    }
    Ok(())
}

/// Copy the file at `from` to `to` unless it is there already, and point
/// `from` at the copy; whether it copied.
fn carry(from: &mut PathBuf, to: PathBuf) -> Result<bool> {
    if *from == to {
        return Ok(false);
    }
    std::fs::copy(&*from, &to).with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    *from = to;
    Ok(true)
}

/// This host's CPU vendor (`vendor_id` in /proc/cpuinfo: GenuineIntel, AuthenticAMD).
fn host_cpu_vendor() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines().find_map(|l| l.strip_prefix("vendor_id")).and_then(|r| r.split(':').nth(1)).map(|v| v.trim().to_string())
}

/// A file name repro writes in the checkpoint folder: no path in it.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-') && !name.starts_with('.')
}

/// `path` as one word of `sh -c`, for QEMU's `exec:` migration.
fn sh_quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

/// The checkpoint's commands on QEMU's machine protocol.
impl Qmp {
    /// Poll QEMU's migration until it ends; its error if it failed.
    fn await_migration(&mut self, what: &str) -> Result<()> {
        let until = Instant::now() + MIGRATION_BOUND;
        loop {
            self.check_interrupt()?;
            let info = self.run(&qmp::query_migrate {})?;
            match info.status {
                Some(qmp::MigrationStatus::completed) => return Ok(()),
                Some(qmp::MigrationStatus::failed | qmp::MigrationStatus::cancelled) => {
                    bail!("QEMU's {what} failed: {}", info.error_desc.unwrap_or_else(|| "no reason given".into()))
                }
                _ if Instant::now() > until => bail!("QEMU's {what} did not end within {MIGRATION_BOUND:?}"),
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Stop the guest and save its whole state to `file` (gzip).
    fn save(&mut self, file: &Path) -> Result<()> {
        self.begin();
        self.run(&qmp::stop {})?;
        let uri = format!("exec:gzip -1 -c > {}", sh_quote(file));
        self.run(&qmp::migrate { uri: Some(uri), channels: None, detach: None, resume: None })?;
        self.await_migration("save")
    }

    /// Load a saved state into a QEMU started with `-incoming defer`; the
    /// guest stays paused until [`Qmp::cont`].
    pub(crate) fn restore(&mut self, file: &Path) -> Result<()> {
        self.begin();
        let uri = format!("exec:gzip -dc {}", sh_quote(file));
        self.run(&qmp::migrate_incoming { uri: Some(uri), channels: None, exit_on_error: None })?;
        let until = Instant::now() + MIGRATION_BOUND;
        loop {
            self.check_interrupt()?;
            let st = self.run(&qmp::query_status {})?;
            match st.status {
                qmp::RunState::inmigrate if Instant::now() < until => std::thread::sleep(Duration::from_millis(50)),
                qmp::RunState::inmigrate => bail!("QEMU did not load the saved state within {MIGRATION_BOUND:?}"),
                _ => break,
            }
        }
        self.await_migration("restore")
    }

    pub(crate) fn cont(&mut self) -> Result<()> {
        self.run(&qmp::cont {}).map(drop)
    }
}

/// What the stream does at a round, by the policy and any signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AtRound {
    GoOn,
    Save,
    SaveAndStop,
}

/// A run's checkpoints: the policy, the QEMU to save, and what the saved
/// state must say about it.
pub(crate) struct Checkpointer {
    policy: CheckpointPolicy,
    began: Instant,
    last: Instant,
    /// A signal asked the run to stop: save at the next round, then stop.
    pub stop_requested: bool,
    qmp: Option<Qmp>,
    template: SavedVm,
    initrd: PathBuf,
    kernel: PathBuf,
}

impl Checkpointer {
    /// For the guest `spec` (with its QMP socket), which booted `initrd`.
    pub(crate) fn new(policy: CheckpointPolicy, spec: &VmSpec, kernel_sha256: &str, qemu_version: &str, stall: Duration) -> Checkpointer {
        Checkpointer {
            policy,
            began: Instant::now(),
            last: Instant::now(),
            stop_requested: false,
            qmp: None,
            initrd: spec.initrd.clone(),
            kernel: spec.kernel.clone(),
            template: SavedVm {
                format_version: STATE_FORMAT,
                machine: spec.machine.clone(),
                qemu_version: qemu_version.to_string(),
                cpu_vendor: (spec.machine.accel == Accel::Kvm).then(host_cpu_vendor).flatten(),
                kernel_sha256: kernel_sha256.to_string(),
                initrd_sha256: String::new(),
                state_file: String::new(),
                summary_file: String::new(),
                iteration: 0,
                samples_bytes: 0,
                stall_timeout_s: stall.as_secs_f64(),
            },
        }
    }

    /// A resumed run's checkpointer: the QEMU it restored, the state it came from.
    pub(crate) fn resumed(policy: CheckpointPolicy, saved: &SavedVm, qmp: Qmp, run_dir: &Path) -> Checkpointer {
        Checkpointer {
            policy,
            began: Instant::now(),
            last: Instant::now(),
            stop_requested: false,
            qmp: Some(qmp),
            initrd: run_dir.join(DIR).join(INITRD),
            kernel: run_dir.join(DIR).join(KERNEL),
            template: saved.clone(),
        }
    }

    /// Connect to the guest's QEMU (after it booted).
    pub(crate) fn attach(&mut self, qmp_socket: &Path) -> Result<()> {
        self.qmp = Some(Qmp::connect(qmp_socket)?);
        Ok(())
    }

    pub(crate) fn at_round(&self) -> AtRound {
        let now = Instant::now();
        let stop = self.stop_requested || self.policy.stop_after.is_some_and(|d| now.duration_since(self.began) >= d);
        if stop {
            AtRound::SaveAndStop
        } else if self.policy.every.is_some_and(|d| now.duration_since(self.last) >= d) {
            AtRound::Save
        } else {
            AtRound::GoOn
        }
    }

    /// Save the guest at this round into the run directory; the guest stays
    /// stopped if `stop`, else runs on. The summary (with this checkpoint)
    /// is written first, so that state, summary and samples agree.
    pub(crate) fn save(&mut self, rec: &mut Recorder, stop: bool) -> Result<()> {
        let qmp = self.qmp.as_mut().context("no QMP connection to the guest's QEMU")?;
        let dir = rec.dir.join(DIR);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        // The boot files travel with the state (a resume may be on a machine
        // whose cache never had them), copied once: they do not change during a run.
        if carry(&mut self.initrd, dir.join(INITRD))? || self.template.initrd_sha256.is_empty() {
            self.template.initrd_sha256 = crate::kernel::cache::sha256_file(&self.initrd)?;
        }
        carry(&mut self.kernel, dir.join(KERNEL))?;
        let iteration = rec.summary.rounds.last().map_or(rec.summary.iterations_done, |r| r.iteration);
        let name = format!("vm-{iteration}.gz");
        let file = dir.join(&name);
        let t0 = Instant::now();
        if let Err(e) = qmp.save(&file) {
            // A save cut short leaves no half file behind; the state still
            // points at the last complete one.
            let _ = std::fs::remove_file(&file);
            return Err(e.context(format!("saving the guest to {}", file.display())));
        }
        let save_s = t0.elapsed().as_secs_f64();
        let state_bytes = std::fs::metadata(&file)?.len();
        rec.summary.checkpoints.push(Checkpoint {
            iteration,
            saved_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            state_bytes,
            save_s,
            restore_s: None,
            stopped: stop,
        });
        rec.write_summary()?;
        let summary_file = format!("summary-{iteration}.json");
        crate::atomic::write_json(&dir.join(&summary_file), &rec.summary)?;
        let previous = [std::mem::take(&mut self.template.state_file), std::mem::take(&mut self.template.summary_file)];
        self.template.state_file = name;
        self.template.summary_file = summary_file;
        self.template.iteration = iteration;
        self.template.samples_bytes = std::fs::metadata(rec.dir.join(SAMPLES))?.len();
        crate::atomic::write_json(&dir.join(STATE), &self.template)?;
        // The state now points at the new files; the old ones can go.
        for old in previous.iter().filter(|o| !o.is_empty() && **o != self.template.state_file && **o != self.template.summary_file) {
            let _ = std::fs::remove_file(dir.join(old));
        }
        tracing::info!("checkpoint at iteration {iteration}: {} MiB in {save_s:.1}s ({})", state_bytes >> 20, file.display());
        self.last = Instant::now();
        if !stop {
            qmp.cont()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_reach_the_shell_as_one_word_and_state_files_are_plain_names() {
        assert_eq!(sh_quote(Path::new("/r/it's here/vm-1.gz")), r"'/r/it'\''s here/vm-1.gz'");
        assert!(valid_name("vm-3000.gz"));
        for bad in ["", "../summary.json", "a/b", ".hidden", "vm 1.gz"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
