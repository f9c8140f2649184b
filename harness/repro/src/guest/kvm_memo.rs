//! A KVM that failed to boot a guest here is not tried again by
//! `--accel auto` until something that could change the answer changes:
//! the host kernel, the boot (a new boot of a hypervisor's guest may get a
//! working nested KVM), the QEMU binary's version, or the `-cpu` model.
//! A failed proof costs up to --kvm-timeout (20 s; a CPU model QEMU says
//! KVM cannot give, 0.2 s; a guest silent for `boot::KVM_FIRST_LINE`, 5 s);
//! on a host where /dev/kvm opens but cannot run a guest (common with
//! nested virtualisation) every run used to pay it. `--accel kvm` always
//! tries, and a success forgets.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The remembered answer for one host, boot, QEMU and CPU model.
pub(crate) struct KvmMemo {
    file: PathBuf,
}

/// At most this much of a remembered reason is read back.
const MAX_REASON: u64 = 4096;

impl KvmMemo {
    pub(crate) fn new(cache_root: &Path, qemu_version: &str, kvm_cpu: &str) -> KvmMemo {
        let uts = nix::sys::utsname::uname().ok();
        let host = uts.map(|u| format!("{} {}", u.release().to_string_lossy(), u.version().to_string_lossy())).unwrap_or_default();
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
        let key = format!("host {host}\nboot {}\nqemu {qemu_version}\ncpu {kvm_cpu}\n", boot.trim());
        let hash = format!("{:x}", Sha256::digest(key.as_bytes()));
        KvmMemo { file: cache_root.join("kvm").join(format!("failed-{}", &hash[..16])) }
    }

    /// Why KVM failed here before, if it did.
    pub(crate) fn failed_before(&self) -> Option<String> {
        let mut text = String::new();
        std::fs::File::open(&self.file).ok()?.take(MAX_REASON).read_to_string(&mut text).ok()?;
        let text = crate::text::terminal_safe(text.trim());
        (!text.is_empty()).then_some(text)
    }

    /// Remember a failed proof (best effort: a cache that cannot be written
    /// only costs the next run the proof again).
    pub(crate) fn remember_failure(&self, why: &str) {
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(self.file.parent().unwrap_or(Path::new(".")))?;
            std::fs::write(&self.file, why)
        };
        if let Err(e) = write() {
            tracing::debug!("cannot remember the failed KVM proof in {}: {e}", self.file.display());
        }
    }

    /// KVM worked: forget any failure.
    pub(crate) fn forget(&self) {
        let _ = std::fs::remove_file(&self.file);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_is_remembered_per_qemu_and_cpu_model_and_forgotten_on_success() {
        let d = tempfile::tempdir().unwrap();
        let m = KvmMemo::new(d.path(), "QEMU emulator version 7.2.19", "host");
        assert_eq!(m.failed_before(), None);
        m.remember_failure("no hello from the agent within 20s (kvm)");
        assert_eq!(m.failed_before().as_deref(), Some("no hello from the agent within 20s (kvm)"));
        assert_eq!(KvmMemo::new(d.path(), "QEMU emulator version 10.0.2", "host").failed_before(), None, "another QEMU");
        assert_eq!(KvmMemo::new(d.path(), "QEMU emulator version 7.2.19", "SandyBridge").failed_before(), None, "another model");
        m.forget();
        assert_eq!(m.failed_before(), None);
    }
}
