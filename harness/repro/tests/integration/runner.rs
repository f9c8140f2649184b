//! What a GitHub runner does, tried here: ci/job.sh on a machine whose apt
//! sources are Ubuntu's (simulated in a private mount namespace), the KVM
//! proof, and the report of a matrix where a job produced nothing.

use std::path::{Path, PathBuf};

use crate::helpers::*;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// ci/job.sh with the debug build (.ci/run builds it) and `env`.
fn job(kernel: &str, n: &str, out: &Path, env: &[(&str, &str)], sources: Option<(&str, &Path)>) -> std::process::Output {
    let script = root().join("ci/job.sh");
    let mut c = match sources {
        Some((text, dir)) => with_apt_sources(text, dir, Path::new("bash"), &[script.to_str().unwrap(), kernel, "seed", n]),
        None => {
            let mut c = std::process::Command::new("bash");
            c.arg(&script).args([kernel, "seed", n]);
            c
        }
    };
    c.env("PROFILE", "debug").env("JOB_EXIT", "expect").env("REPRO_JOB_OUT", out).env_remove("GITHUB_STEP_SUMMARY");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

#[test]
fn ci_jobs_for_debian_kernels_pass_on_an_ubuntu_runner_from_the_cache() {
    // The images the build job (or an earlier fetch) left in the cache.
    debian_6_1();
    let b = repro().args(["image", "build", "6.1-noprune"]).output().unwrap();
    assert!(b.status.success(), "{}", stderr_of(&b));
    for (kernel, n) in [("6.1", "300"), ("6.1-noprune", "300")] {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("out");
        let o = job(kernel, n, &out, &[], Some((NOBLE_SOURCES, d.path())));
        let summary = std::fs::read_to_string(out.join("job-summary.md")).unwrap_or_default();
        assert!(o.status.success(), "ci/job.sh {kernel} failed with noble's apt sources:\n{summary}\n{}", stderr_of(&o));
        assert!(stderr_of(&o).contains("using the cached"), "{kernel}: not from the cache: {}", stderr_of(&o));
        assert!(summary.contains("matches the expectation"), "{summary}");
    }
}

#[test]
fn a_job_whose_kvm_proof_fails_fails_with_the_reason() {
    if !Path::new("/dev/kvm").exists() {
        return; // Nothing to prove without /dev/kvm.
    }
    debian_6_1();
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("out");
    let o = job("6.1", "100", &out, &[("REQUIRE_KVM", "1")], None);
    let summary = std::fs::read_to_string(out.join("job-summary.md")).unwrap();
    if o.status.success() {
        // KVM works on this machine: the proof held.
        assert_eq!(read_summary(&out).accel, Some(repro_proto::Accel::Kvm), "{summary}");
        return;
    }
    assert!(summary.contains("--accel kvm") && summary.contains("does NOT match"), "{summary}");
    assert!(summary.to_lowercase().contains("kvm"), "the reason is not in the job summary: {summary}");
}

#[test]
fn a_matrix_pair_that_left_no_run_is_a_failed_row_and_fails_strict() {
    let d = tempfile::tempdir().unwrap();
    let runs = d.path().join("runs");
    std::fs::create_dir_all(&runs).unwrap();
    let src = root().join("results/seed/6.1-noprune-3000");
    let dst = runs.join("6.1-noprune");
    std::fs::create_dir_all(&dst).unwrap();
    std::fs::copy(src.join("summary.json"), dst.join("summary.json")).unwrap();
    let m = repro().args(["kernels", "--matrix", "--scenarios", "seed", "--kernel", "6.1-noprune"]).output().unwrap();
    let mut matrix: serde_json::Value = serde_json::from_slice(&m.stdout).unwrap();
    let mut other = matrix["include"][0].clone();
    other["kernel"] = "5.10".into();
    matrix["include"].as_array_mut().unwrap().push(other);
    std::fs::write(d.path().join("matrix.json"), matrix.to_string()).unwrap();
    let report = d.path().join("report");
    let o = repro()
        .arg("report")
        .arg(&runs)
        .arg("--expect")
        .arg(d.path().join("matrix.json"))
        .args(["--logs", "https://ci.invalid/run/1", "--strict", "--out"])
        .arg(&report)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr_of(&o));
    assert!(stderr_of(&o).contains("5.10/seed"), "{}", stderr_of(&o));
    let md = std::fs::read_to_string(report.join("README.md")).unwrap();
    assert!(md.contains("| 5.10 | seed | **failed: no run** |") && md.contains("https://ci.invalid/run/1"), "{md}");
    // Without --strict the report is written and the exit is 0.
    let o = repro().arg("report").arg(&runs).arg("--expect").arg(d.path().join("matrix.json")).output().unwrap();
    assert!(o.status.success(), "{}", stderr_of(&o));
    // Nothing ran at all: still a report, every pair failed.
    let empty = d.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let o = repro().arg("report").arg(&empty).arg("--expect").arg(d.path().join("matrix.json")).arg("--strict").output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr_of(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("6.1-noprune | seed | **failed: no run**"));
}

#[test]
fn an_alias_matrix_is_resolved_and_an_empty_one_refused() {
    let o = repro().args(["kernels", "--matrix", "--kernel", "bookworm"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr_of(&o));
    let m: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(m["include"][0]["kernel"], "6.1");
    assert_eq!(m["include"][0]["host"], "debian");
    let o = repro().args(["kernels", "--matrix", "--kernel", "focal", "--scenarios", "seed,held-fd"]).output().unwrap();
    let m: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(m["include"].as_array().unwrap().len(), 2);
    assert_eq!(m["include"][1]["expect"], "regressed", "focal's 5.4 keeps a held dentry (4.11-5.6 era)");
    assert_eq!(m["include"][0]["host"], "any");
    let o = repro().args(["kernels", "--matrix", "--kernel", "6.1", "--scenarios", "drop-caches"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "an empty matrix is refused: {}", stderr_of(&o));
    assert!(stderr_of(&o).contains("nothing to run"), "{}", stderr_of(&o));
    let o = repro().args(["kernels", "--matrix", "--kernel", "no-such"]).output().unwrap();
    assert_ne!(o.status.code(), Some(0));
}

/// The action other repositories use, on a bzImage path as a kernel team's
/// workflow would give it: the verdict, the run directory and a JUnit file
/// the Jenkins schema accepts, as step outputs.
#[test]
fn the_action_judges_a_bzimage_and_gives_verdict_run_and_junit() {
    let image = debian_6_1();
    let d = tempfile::tempdir().unwrap();
    let inputs = [("kernel", image.to_str().unwrap()), ("iterations", "300"), ("require-kvm", "false")];
    let (o, outputs) = crate::workflows::run_action(&inputs, d.path(), &[("PROFILE", "debug")]);
    assert!(o.status.success(), "{}\n{}", String::from_utf8_lossy(&o.stdout), stderr_of(&o));
    let get = |k: &str| {
        outputs.lines().find_map(|l| l.strip_prefix(&format!("{k}="))).unwrap_or_else(|| panic!("no output {k}: {outputs}")).to_string()
    };
    assert_eq!(get("verdict"), "clean");
    assert_eq!(get("exit-code"), "0");
    let run = PathBuf::from(get("run-dir"));
    // One directory per kernel, so a job may judge several.
    assert_eq!(run, d.path().join("repro-out/seed").join(image.file_name().unwrap()));
    assert!(read_summary(&run).complete);
    let junit = PathBuf::from(get("junit"));
    crate::workflows::assert_valid_junit(&junit);
    let summary = std::fs::read_to_string(d.path().join("step_summary.md")).unwrap();
    assert!(summary.contains("expected clean: the verdict matches"), "{summary}");

    // A bad input is refused before anything runs, and the step fails.
    let (o, _) = crate::workflows::run_action(&[("kernel", "6.1"), ("require-kvm", "yes")], d.path(), &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr_of(&o));
    assert!(stderr_of(&o).contains("require-kvm must be 'true' or 'false'"), "{}", stderr_of(&o));
}
