//! `repro check`: the verdict as an exit status, as `git bisect run` reads it.

use predicates::prelude::*;
use repro_proto::exit_codes;
use repro_proto::{Outcome, Rule, Verdict};

use crate::helpers::*;

fn check(args: &[&str]) -> (Option<i32>, String, Verdict) {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("run");
    let o = repro().args(["check", "-q", "--accel", "tcg"]).args(args).arg("--out").arg(&out).output().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    let text = std::fs::read_to_string(out.join("verdict.json")).unwrap_or_else(|e| panic!("no verdict.json ({e}): {}", stderr_of(&o)));
    let verdict: Verdict = serde_json::from_str(&text).unwrap();
    (o.status.code(), stdout + &stderr_of(&o), verdict)
}

/// With --repeat the runs are OUT/run-N: no verdict.json at OUT itself.
fn check_repeat(args: &[&str]) -> (Option<i32>, String) {
    let d = tempfile::tempdir().unwrap();
    let o = repro().args(["check", "-q", "--accel", "tcg"]).args(args).arg("--out").arg(d.path().join("run")).output().unwrap();
    (o.status.code(), String::from_utf8_lossy(&o.stdout).into_owned() + &stderr_of(&o))
}

#[test]
fn check_exits_1_on_the_noprune_variant() {
    let (code, text, v) = check(&["--kernel", "6.1-noprune", "-n", "400"]);
    assert_eq!(code, Some(exit_codes::REGRESSED), "{text}");
    assert_eq!((v.outcome, v.decided_by), (Outcome::Regressed, Some(Rule::ResidualRegressed)), "{v:?}");
    assert!(v.evidence.residual_per_iteration.unwrap() >= 5.0, "{v:?}");
    assert!(text.contains("verdict: regressed ("), "{text}");
}

#[test]
fn check_exits_0_on_the_stock_source_build() {
    let (code, text, v) = check(&["--kernel", "6.1-src", "-n", "400"]);
    assert_eq!(code, Some(exit_codes::OK), "{text}");
    assert_eq!(v.outcome, Outcome::Clean, "{v:?}");
}

#[test]
fn check_says_inconclusive_for_a_run_too_short_to_judge() {
    let (code, text, v) = check(&["--kernel", "6.1", "--cpus", "1", "-n", "50"]);
    assert_eq!(code, Some(exit_codes::INCONCLUSIVE), "{text}");
    assert_eq!(v.decided_by, Some(Rule::TooShort), "{v:?}");
}

#[test]
fn check_repeat_decides_by_agreement_and_reports_the_spread() {
    let (code, text) = check_repeat(&["--kernel", "6.1", "--cpus", "1", "-n", "200", "--repeat", "2"]);
    assert_eq!(code, Some(exit_codes::OK), "{text}");
    assert!(text.contains("verdict 1/2: clean") && text.contains("verdict 2/2: clean"), "{text}");
    assert!(text.contains("2 of 2 runs agree; residual per namespace"), "{text}");
}

#[test]
fn check_skips_what_it_cannot_build_with_125() {
    let d = tempfile::tempdir().unwrap();
    let tree = d.path().join("linux");
    std::fs::create_dir_all(tree.join("arch/x86")).unwrap();
    std::fs::write(tree.join("Makefile"), "tinyconfig:\n\t@echo 'error: broken tree' >&2; exit 2\n").unwrap();
    // A source without the dentry prune: expected to regress, built or not (issue 33).
    std::fs::create_dir_all(tree.join("fs/proc")).unwrap();
    std::fs::write(tree.join("fs/proc/proc_sysctl.c"), "static int proc_sys_open(void) { return 0; }\n").unwrap();
    let out = d.path().join("run");
    repro()
        .args(["check", "--cache-dir"])
        .arg(d.path().join("cache"))
        .arg("--src")
        .arg(&tree)
        .arg("--out")
        .arg(&out)
        .assert()
        .code(exit_codes::INCONCLUSIVE)
        .stdout(predicate::str::contains("verdict: inconclusive").and(predicate::str::contains("build_failed")));
    assert_eq!(read_summary(&out).kernel.source_fix, Some(repro_proto::SourceFix::Absent));
    repro().arg("report").arg(&out).assert().success().stdout(predicate::str::contains("| regressed |"));
}
