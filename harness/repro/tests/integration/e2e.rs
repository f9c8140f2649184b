//! End to end: real kernels booted under QEMU, real churn, real numbers.

use std::path::Path;

use repro_proto::{Accel, Backend, Summary};

use crate::helpers::*;

/// What every complete run must show, whatever the kernel.
fn assert_complete_curve(s: &Summary, min_windows: usize) {
    assert!(s.complete, "{:#?}", s.error);
    assert_eq!(s.iterations_done, s.iterations_requested);
    assert!(s.windows.len() >= min_windows, "only {} windows", s.windows.len());
    for w in &s.windows {
        assert!(w.nr_dentry > 0 && w.churn_rate > 0.0, "{w:?}");
        for p in &w.probes {
            assert!(p.count >= 5 && p.p50_us > 0.0 && p.min_us <= p.max_us, "{p:?}");
        }
    }
    let names: Vec<&str> = s.windows[0].probes.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["ipv6", "ipv4"]);
    let r = s.residual.as_ref().expect("a residual");
    assert!(r.nr_dentry_before > 0 && r.nr_dentry_after > 0, "{r:?}");
    assert_eq!(s.settled.as_ref().unwrap().window.iteration, s.iterations_done);
}

fn run_json(args: &[&str], out: &Path) -> Summary {
    let output = repro().args(["run", "--json", "-q"]).args(args).arg("--out").arg(out).output().unwrap();
    assert!(output.status.success(), "repro run {args:?} failed:\n{}", stderr_of(&output));
    // --json prints exactly the summary written to disk.
    let printed: Summary = serde_json::from_slice(&output.stdout).expect("stdout is the summary JSON");
    assert_eq!(printed, read_summary(out));
    printed
}

#[test]
fn debian_6_1_under_tcg_records_a_full_curve() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("run");
    let s = run_json(&["--kernel", "6.1", "--accel", "tcg", "-n", "300"], &out);
    assert_complete_curve(&s, 10);
    assert!(s.kernel.release.as_deref().unwrap().starts_with("6.1."), "{:?}", s.kernel);
    assert_eq!(s.kernel.image_sha256.as_deref().unwrap().len(), 64);
    assert!(s.kernel.source.starts_with("debian:linux-image-6.1"));
    assert_eq!((s.backend, s.accel), (Backend::Qemu, Some(Accel::Tcg)));
    assert!(s.accel_fallback_reason.is_none(), "tcg was asked for, nothing fell back");
    assert_eq!(s.guest_cpu_model.as_deref(), Some("max"), "TCG runs every kernel on -cpu max");
    // Where the time went: each phase measured, the guest's own boot inside QEMU's.
    let p = s.phases.as_ref().expect("phases");
    assert!(p.boot_s > 0.0 && p.churn_s > 0.0 && p.baseline_s > 0.0, "{p:?}");
    assert!(p.guest_uptime_at_hello_s.is_some_and(|u| u > 0.0 && u <= p.boot_s + 0.5), "{p:?}");
    // duration_s counts from the run directory's creation, after `prepare`.
    let parts = p.kvm_proof_s + p.boot_s + p.baseline_s + p.churn_s + p.settle_s;
    assert!(parts <= s.duration_s + 1.0, "the phases ({parts:.1} s) exceed the run ({:.1} s): {p:?}", s.duration_s);
    assert!(s.provenance.qemu_version.as_deref().unwrap().starts_with("QEMU emulator version"));
    // 6.1 has the fix: once cleanup has settled, nothing per namespace remains.
    let settled = s.settled.as_ref().unwrap();
    let residual = s.residual.as_ref().unwrap().per_iteration;
    assert!(residual.abs() < 0.5, "fixed kernel left {residual} dentries per iteration: {:?}", settled.trace);
    assert!(settled.stable);
    // Every window is on disk as a line too, and the guest's console was kept.
    assert_eq!(sample_lines(&out, "window"), s.windows.len());
    assert!(std::fs::read_to_string(out.join("console.log")).unwrap().contains("Linux version 6.1"));
}

#[test]
fn accel_auto_proves_kvm_or_falls_back_to_tcg_and_says_why() {
    let d = tempfile::tempdir().unwrap();
    let s = run_json(&["--kernel", "6.1", "--accel", "auto", "-n", "40", "--cpus", "1"], &d.path().join("run"));
    assert_complete_curve(&s, 10);
    match s.accel.unwrap() {
        Accel::Kvm => assert!(s.accel_fallback_reason.is_none()),
        Accel::Tcg => assert!(s.accel_fallback_reason.as_deref().is_some_and(|r| !r.is_empty()), "{s:#?}"),
    }
    // Where /dev/kvm opens but KVM failed (here: nested KVM hangs), the next
    // run does not pay --kvm-timeout again: the failure is remembered.
    if s.accel == Some(Accel::Tcg) && Path::new("/dev/kvm").exists() {
        let again = run_json(&["--kernel", "6.1", "--accel", "auto", "-n", "40", "--cpus", "1"], &d.path().join("again"));
        assert_eq!(again.accel, Some(Accel::Tcg));
        let why = again.accel_fallback_reason.as_deref().unwrap_or_default();
        assert!(why.starts_with("KVM failed on this host before") || why.contains("cannot be opened"), "{why}");
    }
}

#[test]
fn kernel_path_boots_any_bzimage() {
    let img = debian_6_1();
    let d = tempfile::tempdir().unwrap();
    let s = run_json(&["--kernel", img.to_str().unwrap(), "--accel", "tcg", "-n", "60", "--cpus", "1"], &d.path().join("run"));
    assert_complete_curve(&s, 10);
    assert!(s.kernel.source.starts_with("path:"));
    assert_eq!(s.kernel.image.as_deref().unwrap(), img.to_str().unwrap());
}

#[test]
fn host_backend_churns_the_running_kernel() {
    assert!(nix::unistd::geteuid().is_root(), "the host backend test needs root (CI runs as root)");
    let d = tempfile::tempdir().unwrap();
    let s = run_json(&["--backend", "host", "-n", "200"], &d.path().join("run"));
    assert_complete_curve(&s, 10);
    assert_eq!(s.backend, Backend::Host);
    assert!(s.accel.is_none());
    let host_release = nix::sys::utsname::uname().unwrap().release().to_string_lossy().into_owned();
    assert_eq!(s.kernel.release.as_deref().unwrap(), host_release);
}

#[test]
fn two_workers_churn_in_parallel() {
    let d = tempfile::tempdir().unwrap();
    let s = run_json(&["--kernel", "6.1", "--accel", "tcg", "-n", "100", "--workers", "2"], &d.path().join("run"));
    assert_complete_curve(&s, 10);
    assert_eq!(s.workers, 2);
}

#[test]
fn exec_forwards_output_and_exit_code_of_a_guest_command() {
    // /init is the agent; run as a plain command it prints its usage and exits 2.
    let o = repro().args(["exec", "--kernel", "6.1", "--accel", "tcg", "--cpus", "1", "--", "/init"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr_of(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("usage: repro-agent"), "{o:?}");
}
