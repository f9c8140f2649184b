//! The scenarios beyond seed on real kernels: each does what its file says
//! and its verdict separates the kernels the way kernel-history.md predicts.

use serde_json::Value;

use crate::helpers::*;

fn check(kernel: &str, scenario: &str, n: &str) -> (i32, Value) {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("run");
    let o = repro()
        .args(["-q", "check", "--accel", "tcg", "--kernel", kernel, "--scenario", scenario, "-n", n, "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let s = read_summary(&out);
    assert_schema_valid(&s);
    assert_eq!(s["complete"], true, "{kernel} x {scenario} did not complete: {}\n{}", s["error"], stderr_of(&o));
    let v: Value = serde_json::from_str(&std::fs::read_to_string(out.join("verdict.json")).unwrap()).unwrap();
    (o.status.code().unwrap(), v)
}

#[test]
fn held_fd_keeps_dentries_on_the_chain_with_the_4_11_prune_but_not_with_d_invalidate() {
    let (code, v) = check("6.1-prune-aliases", "held-fd", "400");
    assert_eq!(code, 1, "{v}");
    assert!(v["evidence"]["settled_probe_over_control"].as_f64().unwrap() >= 5.0, "{v}");
    let (code, v) = check("6.1-src", "held-fd", "400");
    assert_eq!(code, 0, "{v}");
    // The held dentries are still allocated on the fixed kernel: only the ratio tells.
    assert!(v["evidence"]["residual_per_iteration"].as_f64().unwrap() >= 1.0, "{v}");
}

#[test]
fn veth_scenario_ships_and_loads_the_module_on_debian_6_1() {
    let (code, v) = check("6.1", "veth", "200");
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["evidence"]["iterations"], 200);
}
