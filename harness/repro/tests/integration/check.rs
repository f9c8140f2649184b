//! `repro check`: the verdict as an exit status, as `git bisect run` reads it.

use predicates::prelude::*;
use repro_proto::exit_codes;
use serde_json::Value;

use crate::helpers::*;

fn check(args: &[&str]) -> (Option<i32>, String, Value) {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("run");
    let o = repro().args(["check", "-q", "--accel", "tcg"]).args(args).arg("--out").arg(&out).output().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    let verdict = std::fs::read_to_string(out.join("verdict.json")).map_or(Value::Null, |t| serde_json::from_str(&t).unwrap());
    (o.status.code(), stdout + &stderr_of(&o), verdict)
}

#[test]
fn check_exits_1_on_the_noprune_variant() {
    let (code, text, v) = check(&["--kernel", "6.1-noprune", "-n", "400"]);
    assert_eq!(code, Some(exit_codes::REGRESSED), "{text}");
    assert_eq!(v["outcome"], "regressed");
    assert!(v["evidence"]["residual_per_iteration"].as_f64().unwrap() >= 5.0, "{v:#}");
    assert!(text.contains("verdict: regressed (") && text.contains("stale dentries per namespace remain"), "{text}");
}

#[test]
fn check_exits_0_on_the_stock_source_build() {
    let (code, text, v) = check(&["--kernel", "6.1-src", "-n", "400"]);
    assert_eq!(code, Some(exit_codes::OK), "{text}");
    assert_eq!(v["outcome"], "clean");
}

#[test]
fn check_says_inconclusive_for_a_run_too_short_to_judge() {
    let (code, text, v) = check(&["--kernel", "6.1", "--cpus", "1", "-n", "50"]);
    assert_eq!(code, Some(exit_codes::INCONCLUSIVE), "{text}");
    assert!(v["rule"].as_str().unwrap().starts_with("too short"), "{v:#}");
}

#[test]
fn check_repeat_decides_by_agreement_and_reports_the_spread() {
    let (code, text, _) = check(&["--kernel", "6.1", "--cpus", "1", "-n", "200", "--repeat", "2"]);
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
    repro()
        .args(["check", "--cache-dir"])
        .arg(d.path().join("cache"))
        .arg("--src")
        .arg(&tree)
        .assert()
        .code(exit_codes::INCONCLUSIVE)
        .stdout(predicate::str::contains("verdict: inconclusive (cannot test:"));
}
