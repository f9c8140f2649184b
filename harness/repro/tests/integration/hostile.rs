//! A hostile guest, with no kernel: `tests/doubles/hostile-qemu` stands in
//! for QEMU (REPRO_QEMU), connects to repro's serial socket as the agent
//! would and sends what a test scripts: floods, contradictions, control
//! characters, numbers no probe can measure. Each case of the attack run of
//! issue 31 that needs a guest is one test here, in seconds.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use repro_proto::{exit_codes, DentryState, Message, ProbeStats, Window};

use crate::helpers::*;

fn double() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/doubles/hostile-qemu")
}

fn line(m: &Message) -> String {
    serde_json::to_string(m).unwrap()
}

fn hello() -> String {
    line(&Message::Hello {
        format_version: repro_proto::FORMAT_VERSION,
        agent_version: "hostile".into(),
        release: "6.1.0-hostile".into(),
        kernel_version: "#1".into(),
        cpus: 2,
        mem_total_kib: 1 << 20,
        uptime_s: Some(1.0),
    })
}

fn started() -> String {
    line(&Message::Started { baseline: DentryState { nr_dentry: 1000, nr_unused: 10 }, chain_counter: None })
}

fn window(iteration: u64, p50_us: f64) -> String {
    let probe = ProbeStats::around;
    line(&Message::Window(Window {
        iteration,
        elapsed_s: iteration as f64,
        churn_rate: 100.0,
        nr_dentry: 1000 + 6 * iteration,
        probes: vec![probe("ipv6", p50_us), probe("ipv4", 20.0)],
        ..Window::default()
    }))
}

/// `repro run` against the double speaking `script`: its exit code, stderr, run directory.
fn run(script: &str, iterations: &str) -> (Option<i32>, String, PathBuf, tempfile::TempDir) {
    let d = tempfile::tempdir().unwrap();
    let script_file = d.path().join("script");
    std::fs::write(&script_file, script).unwrap();
    let out = d.path().join("run");
    let t0 = Instant::now();
    let o = repro()
        .args(["run", "-q", "--accel", "tcg", "--window", "10", "-n", iterations, "--stall-timeout", "20s", "--kernel"])
        .arg(fake_bzimage(d.path()))
        .arg("--out")
        .arg(&out)
        .env("REPRO_QEMU", double())
        .env("HOSTILE_SCRIPT", &script_file)
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    assert!(t0.elapsed() < Duration::from_secs(100), "the run took {:?}", t0.elapsed());
    (o.status.code(), stderr_of(&o), out, d)
}

/// Item 12: 200,000 garbled lines. Ten are shown, then one notice; past
/// 1,000 the run ends as a protocol violation, its windows kept.
#[test]
fn a_flood_of_garbled_lines_ends_the_run_and_shows_ten() {
    let script = format!("{}\n{}\n{}\n@repeat 200000 not json {{\u{1b}]0;t\u{7}\r\u{e}\n@wait\n", hello(), started(), window(10, 30.0));
    let (code, err, out, _d) = run(&script, "1000");
    assert_eq!(code, Some(exit_codes::GUEST_FAILED), "{err}");
    assert!(err.contains("more than 1000 lines that are no message"), "{err}");
    let shown = err.lines().filter(|l| l.contains("ignoring a garbled line")).count();
    assert_eq!(shown, 10, "{} garbled lines shown", shown);
    assert!(err.contains("ignoring further garbled lines"));
    // Item 7: no raw control character reaches the terminal through a warning.
    assert!(!err.chars().any(|c| c.is_control() && c != '\n'), "a control character in: {err:?}");
    let s = read_summary(&out);
    assert!(!s.complete && s.windows.len() == 1, "{:#?}", s.error);
}

/// Item 10: a second Started mid-run is no run; what came before is kept,
/// and nothing says complete.
#[test]
fn a_second_started_mid_run_is_a_protocol_violation() {
    let script = format!("{}\n{}\n{}\n{}\n{}\n@wait\n", hello(), started(), window(10, 30.0), window(20, 31.0), started());
    let (code, err, out, _d) = run(&script, "1000");
    assert_eq!(code, Some(exit_codes::GUEST_FAILED), "{err}");
    assert!(err.contains("a second Started"), "{err}");
    let s = read_summary(&out);
    assert!(!s.complete && s.windows.len() == 2);
}

/// Item 3: a p50 of 2.3e-308 us from the guest is refused where it enters;
/// and a summary carrying one (a run directory is outside data too) is
/// reported in seconds, where `report --out` used to loop forever.
#[test]
fn a_p50_no_probe_can_measure_is_refused_and_a_report_of_it_ends() {
    let script = format!("{}\n{}\n{}\n{}\n@wait\n", hello(), started(), window(10, 30.0), window(20, 2.3e-308));
    let (code, err, out, d) = run(&script, "1000");
    assert_eq!(code, Some(exit_codes::GUEST_FAILED), "{err}");
    assert!(err.contains("outside a nanosecond to an hour"), "{err}");

    let results = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../results/seed/6.1-noprune-3000");
    let tampered = d.path().join("tampered");
    std::fs::create_dir(&tampered).unwrap();
    let mut s: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(results.join("summary.json")).unwrap()).unwrap();
    for w in s["windows"].as_array_mut().unwrap() {
        w["probes"][0]["p50_us"] = 2.3e-308.into();
    }
    std::fs::write(tampered.join("summary.json"), s.to_string()).unwrap();
    let t0 = Instant::now();
    let o =
        repro().arg("report").arg(&tampered).arg("--out").arg(d.path().join("report")).timeout(Duration::from_secs(60)).output().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(60), "report did not end");
    assert!(o.status.code().is_some(), "report was killed: {}", stderr_of(&o));
    let _ = out;
}
