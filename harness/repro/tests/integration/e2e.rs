//! End to end: real kernels booted under QEMU, real churn, real numbers.

use std::path::Path;

use serde_json::Value;

use crate::helpers::*;

/// What every complete run must show, whatever the kernel.
fn assert_complete_curve(s: &Value, min_windows: usize) {
    assert_schema_valid(s);
    assert_eq!(s["complete"], true, "{:#}", s["error"]);
    assert_eq!(s["iterations_done"], s["iterations_requested"]);
    let windows = s["windows"].as_array().unwrap();
    assert!(windows.len() >= min_windows, "only {} windows", windows.len());
    for w in windows {
        assert!(w["nr_dentry"].as_u64().unwrap() > 0, "{w}");
        assert!(w["churn_rate"].as_f64().unwrap() > 0.0, "{w}");
        for p in w["probes"].as_array().unwrap() {
            assert!(p["count"].as_u64().unwrap() >= 5, "{p}");
            assert!(p["p50_us"].as_f64().unwrap() > 0.0 && p["min_us"].as_f64() <= p["max_us"].as_f64(), "{p}");
        }
    }
    let names: Vec<&str> = windows[0]["probes"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["ipv6", "ipv4"]);
    let r = &s["residual"];
    assert!(r["nr_dentry_before"].as_u64().unwrap() > 0 && r["nr_dentry_after"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(s["settled"]["window"]["iteration"], s["iterations_done"]);
}

fn run_json(args: &[&str], out: &Path) -> Value {
    let output = repro().args(["run", "--json", "-q"]).args(args).arg("--out").arg(out).output().unwrap();
    assert!(output.status.success(), "repro run {args:?} failed:\n{}", stderr_of(&output));
    // --json prints exactly the summary written to disk.
    let printed: Value = serde_json::from_slice(&output.stdout).expect("stdout is the summary JSON");
    assert_eq!(printed, read_summary(out));
    printed
}

#[test]
fn debian_6_1_under_tcg_records_a_full_curve() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("run");
    let s = run_json(&["--kernel", "6.1", "--accel", "tcg", "-n", "300"], &out);
    assert_complete_curve(&s, 10);
    assert!(s["kernel"]["release"].as_str().unwrap().starts_with("6.1."), "{}", s["kernel"]);
    assert_eq!(s["kernel"]["image_sha256"].as_str().unwrap().len(), 64);
    assert!(s["kernel"]["source"].as_str().unwrap().starts_with("debian:linux-image-6.1"));
    assert_eq!((s["backend"].as_str(), s["accel"].as_str()), (Some("qemu"), Some("tcg")));
    assert!(s["accel_fallback_reason"].is_null(), "tcg was asked for, nothing fell back");
    assert!(s["provenance"]["qemu_version"].as_str().unwrap().starts_with("QEMU emulator version"));
    // 6.1 has the fix: once cleanup has settled, nothing per namespace remains.
    let residual = s["residual"]["per_iteration"].as_f64().unwrap();
    assert!(residual.abs() < 0.5, "fixed kernel left {residual} dentries per iteration: {:#}", s["settled"]["trace"]);
    assert_eq!(s["settled"]["stable"], true);
    // Every window is on disk as a line too, and the guest's console was kept.
    assert_eq!(sample_lines(&out, "window"), s["windows"].as_array().unwrap().len());
    assert!(std::fs::read_to_string(out.join("console.log")).unwrap().contains("Linux version 6.1"));
}

#[test]
fn accel_auto_proves_kvm_or_falls_back_to_tcg_and_says_why() {
    let d = tempfile::tempdir().unwrap();
    let s = run_json(&["--kernel", "6.1", "--accel", "auto", "-n", "40", "--cpus", "1"], &d.path().join("run"));
    assert_complete_curve(&s, 10);
    match s["accel"].as_str().unwrap() {
        "kvm" => assert!(s["accel_fallback_reason"].is_null()),
        "tcg" => assert!(s["accel_fallback_reason"].as_str().is_some_and(|r| !r.is_empty()), "{s:#}"),
        other => panic!("accel {other}"),
    }
}

#[test]
fn kernel_path_boots_any_bzimage() {
    let img = debian_6_1();
    let d = tempfile::tempdir().unwrap();
    let s = run_json(&["--kernel", img.to_str().unwrap(), "--accel", "tcg", "-n", "60", "--cpus", "1"], &d.path().join("run"));
    assert_complete_curve(&s, 10);
    assert!(s["kernel"]["source"].as_str().unwrap().starts_with("path:"));
    assert_eq!(s["kernel"]["image"].as_str().unwrap(), img.to_str().unwrap());
}

#[test]
fn host_backend_churns_the_running_kernel() {
    assert!(nix::unistd::geteuid().is_root(), "the host backend test needs root (CI runs as root)");
    let d = tempfile::tempdir().unwrap();
    let s = run_json(&["--backend", "host", "-n", "200"], &d.path().join("run"));
    assert_complete_curve(&s, 10);
    assert_eq!(s["backend"], "host");
    assert!(s["accel"].is_null());
    let host_release = nix::sys::utsname::uname().unwrap().release().to_string_lossy().into_owned();
    assert_eq!(s["kernel"]["release"].as_str().unwrap(), host_release);
}

#[test]
fn two_workers_churn_in_parallel() {
    let d = tempfile::tempdir().unwrap();
    let s = run_json(&["--kernel", "6.1", "--accel", "tcg", "-n", "100", "--workers", "2"], &d.path().join("run"));
    assert_complete_curve(&s, 10);
    assert_eq!(s["workers"], 2);
}

#[test]
fn exec_forwards_output_and_exit_code_of_a_guest_command() {
    // /init is the agent; run as a plain command it prints its usage and exits 2.
    let o = repro().args(["exec", "--kernel", "6.1", "--accel", "tcg", "--cpus", "1", "--", "/init"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr_of(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("usage: repro-agent"), "{o:?}");
}
