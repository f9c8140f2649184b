//! The GitHub Actions workflows: installed copies equal their sources in
//! ci/workflows/, valid against GitHub's workflow schema, and the matrix
//! they run comes from the catalog.

use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;

use serde_json::Value;

use crate::helpers::*;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn workflow_sources() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root().join("ci/workflows")).unwrap().flatten().map(|e| e.path()).collect();
    v.sort();
    assert!(!v.is_empty());
    v
}

/// check-jsonschema on PATH, or where ci/setup.sh puts it.
fn check_jsonschema() -> PathBuf {
    if let Ok(o) = StdCommand::new("check-jsonschema").arg("--version").output() {
        if o.status.success() {
            return "check-jsonschema".into();
        }
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache"));
    let p = cache.join("repro-tools/venv/bin/check-jsonschema");
    assert!(p.exists(), "check-jsonschema is not installed: run ci/setup.sh (it installs it from PyPI into {})", p.display());
    p
}

#[test]
fn workflows_are_installed_unchanged_and_valid() {
    for src in workflow_sources() {
        let installed = root().join(".github/workflows").join(src.file_name().unwrap());
        let (a, b) = (std::fs::read_to_string(&src).unwrap(), std::fs::read_to_string(&installed).unwrap_or_default());
        assert!(a == b, "{} differs from {}: run ci/install-workflows.sh", installed.display(), src.display());
    }
    let o = StdCommand::new(check_jsonschema())
        .args(["--builtin-schema", "vendor.github-workflows"])
        .args(workflow_sources())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}{}", String::from_utf8_lossy(&o.stdout), stderr_of(&o));
}

#[test]
fn the_ci_matrix_is_the_catalog() {
    let o = repro().args(["kernels", "--matrix", "--scenarios", "seed"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr_of(&o));
    let m: Value = serde_json::from_slice(&o.stdout).unwrap();
    let include = m["include"].as_array().unwrap();
    let o = repro().args(["kernels", "--json"]).output().unwrap();
    let catalog: Value = serde_json::from_slice(&o.stdout).unwrap();
    let expected: Vec<&str> =
        catalog.as_array().unwrap().iter().filter(|k| k["expect"]["seed"].is_string()).map(|k| k["name"].as_str().unwrap()).collect();
    let got: Vec<&str> = include.iter().map(|e| e["kernel"].as_str().unwrap()).collect();
    assert_eq!(got, expected, "one job per catalog kernel with a seed expectation");
    for e in include {
        assert_eq!(e["scenario"], "seed");
        assert!(e["expect"] == "clean" || e["expect"] == "regressed", "{e}");
        assert!(e["cache_key"].as_str().unwrap().starts_with(e["kernel"].as_str().unwrap()), "{e}");
    }
    // The real old kernels runners can download are jobs too.
    for old in ["3.10.0-514.el7", "4.4.178", "4.9.119", "6.1-noprune"] {
        assert!(got.contains(&old), "{old} missing from the matrix: {got:?}");
    }
    // Where each job runs: Debian's kernels need Debian's apt (a container
    // on GitHub's Ubuntu runners); each source tree is built once.
    for e in include {
        let k = e["kernel"].as_str().unwrap();
        let debian = k == "6.1" || k == "5.10" || k == "6.12" || k == "sid" || k.starts_with("6.1-") || k.starts_with("4.");
        assert_eq!(e["host"], if debian { "debian" } else { "any" }, "{e}");
        assert_eq!(e["build"].is_string(), k.starts_with("6.1-") || k.starts_with("4."), "{e}");
    }
    let wf = std::fs::read_to_string(root().join("ci/workflows/repro.yml")).unwrap();
    for needle in [
        "ci/matrix.sh",
        "fromJSON(needs.matrix.outputs.debian)",
        "fromJSON(needs.matrix.outputs.any)",
        "fromJSON(needs.matrix.outputs.trees)",
        "image: debian:bookworm",
        "--device /dev/kvm",
        "ci/job.sh",
        "REQUIRE_KVM",
        "--expect matrix.json",
    ] {
        assert!(wf.contains(needle), "repro.yml lacks {needle:?}");
    }
}

#[test]
fn workflow_inputs_reach_scripts_only_through_the_environment() {
    for src in workflow_sources() {
        let text = std::fs::read_to_string(&src).unwrap();
        let mut in_run = false;
        for line in text.lines() {
            let t = line.trim_start();
            if t.starts_with("run:") {
                in_run = true;
            } else if t.starts_with("- ")
                || t.starts_with("uses:")
                || t.starts_with("env:")
                || t.starts_with("if:")
                || t.starts_with("with:")
            {
                in_run = false;
            }
            if in_run || t.starts_with("run:") {
                assert!(!line.contains("${{"), "{}: an expression inside a run: script (pass it through env:): {line}", src.display());
            }
        }
        assert!(text.contains("permissions:\n  contents: read"), "{}: no read-only permissions", src.display());
        assert!(text.contains("persist-credentials: false"), "{}", src.display());
        assert!(!text.contains("always()"), "{}: always() runs even on cancel; use !cancelled()", src.display());
    }
}
