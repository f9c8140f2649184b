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

/// A Round: the agent pauses at `iteration` for the host's answer (where a
/// checkpointed run saves the guest).
fn round(iteration: u64) -> String {
    line(&Message::Round(repro_proto::Settled {
        settle_s: 0.1,
        stable: true,
        ended: None,
        trace: vec![],
        window: Window { iteration, elapsed_s: iteration as f64, churn_rate: 100.0, nr_dentry: 1000, ..Window::default() },
        barrier_failed: None,
        mounts: None,
    }))
}

/// A checkpointed run whose save meets `qmp` (the double's QEMU machine
/// protocol), started in the background: the child, its run directory.
fn checkpointed_run(qmp: &str, d: &Path) -> (std::process::Child, PathBuf) {
    // The save is due at the first round a second after the start.
    let script = format!("{}\n{}\n{}\n@sleep 1.5\n{}\n@wait\n", hello(), started(), window(10, 30.0), round(10));
    let script_file = d.join("script");
    std::fs::write(&script_file, script).unwrap();
    let out = d.join("run");
    let child = std_repro()
        .args(["run", "-q", "--accel", "tcg", "--window", "10", "-n", "1000", "--checkpoint-every", "1s", "--kernel"])
        .arg(fake_bzimage(d))
        .arg("--out")
        .arg(&out)
        .env("REPRO_QEMU", double())
        .env("HOSTILE_SCRIPT", &script_file)
        .env("HOSTILE_QMP", qmp)
        .env("HOSTILE_QMP_SEEN", d.join("save-began"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    (child, out)
}

/// Issue 31 ("hang uninterruptibly"): a QEMU that never answers the save's
/// first command, or answers with events and never the answer, held repro
/// past every signal (a minute per read, or forever). Its machine protocol
/// is read within bounds: SIGTERM ends the run in seconds, as an
/// interrupt, its windows kept and no half-written state left behind.
#[test]
fn a_qemu_that_never_answers_a_save_does_not_outlast_a_signal() {
    for qmp in ["silent", "events"] {
        let d = tempfile::tempdir().unwrap();
        let (mut child, out) = checkpointed_run(qmp, d.path());
        // A signal before the save began asks for the save (then a stop): wait
        // until QEMU has the save's first command, however busy the host (a
        // fixed half second was not enough beside kernel builds).
        wait_until("the save to begin", Duration::from_secs(60), || d.path().join("save-began").exists());
        assert!(sample_lines(&out, "round") > 0);
        let t0 = Instant::now();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
        wait_until("repro to end after SIGTERM", Duration::from_secs(15), || child.try_wait().unwrap().is_some());
        let o = child.wait_with_output().unwrap();
        let err = stderr_of(&o);
        assert_eq!(o.status.code(), Some(exit_codes::INTERRUPTED), "{qmp}: {err}");
        assert!(t0.elapsed() < Duration::from_secs(15), "{qmp}: {:?}", t0.elapsed());
        assert!(err.contains("while saving the guest at iteration 10"), "{qmp}: {err}");
        assert_eq!(read_summary(&out).windows.len(), 1, "{qmp}: the window recorded before the save is kept");
        let saved: Vec<_> = std::fs::read_dir(out.join("checkpoint")).unwrap().flatten().map(|e| e.file_name()).collect();
        assert!(!saved.iter().any(|n| n.to_string_lossy().starts_with("vm-")), "{qmp}: a half-written state was left: {saved:?}");
    }
}

/// A QEMU that answers with a line without end: the read stops past 1 MiB
/// (memory stays bounded) and the run ends with the checkpoint's failure,
/// its windows kept.
#[test]
fn a_qemu_answering_with_a_line_without_end_is_refused_past_a_bound() {
    let d = tempfile::tempdir().unwrap();
    let (mut child, out) = checkpointed_run("endless-line", d.path());
    wait_until("repro to end", Duration::from_secs(60), || child.try_wait().unwrap().is_some());
    let o = child.wait_with_output().unwrap();
    let err = stderr_of(&o);
    assert_eq!(o.status.code(), Some(exit_codes::GUEST_FAILED), "{err}");
    assert!(err.contains("longer than 1048576 bytes"), "{err}");
    assert_eq!(read_summary(&out).windows.len(), 1);
}
