//! Checkpoints: a run on a kernel with the bug saved and resumed twice,
//! each time in a new process, against the same run straight through.

use std::path::Path;

use repro_proto::exit_codes;

use crate::helpers::*;

const N: &str = "1200";
const WINDOW: &str = "100";

fn run(args: &[&str], out: &Path) -> (Option<i32>, String) {
    let o = repro()
        .args(["run", "-q", "--kernel", "6.1-noprune", "--accel", "tcg", "-n", N, "--window", WINDOW])
        .args(args)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    (o.status.code(), stderr_of(&o))
}

fn resume(args: &[&str], dir: &Path) -> (Option<i32>, String) {
    let o = repro().args(["resume", "-q"]).arg(dir).args(args).output().unwrap();
    (o.status.code(), stderr_of(&o))
}

#[test]
fn a_run_saved_and_resumed_twice_matches_one_run_straight_through() {
    let d = tempfile::tempdir().unwrap();
    let straight_dir = d.path().join("straight");
    let (code, err) = run(&[], &straight_dir);
    assert_eq!(code, Some(exit_codes::OK), "{err}");
    let straight = read_summary(&straight_dir);

    // --stop-after 0s: save at the first round (every window is one) and stop.
    let dir = d.path().join("saved");
    let (code, err) = run(&["--stop-after", "0s"], &dir);
    assert_eq!(code, Some(exit_codes::CHECKPOINTED), "{err}");
    assert!(err.contains("repro resume"), "{err}");
    let first = read_summary(&dir);
    assert!(!first.complete && first.checkpoints.len() == 1, "{first:#?}");
    assert_eq!(first.checkpoints[0].iteration, 100);

    // A checkpoint is outside data: a changed kernel image, a state that
    // names a program, numbers out of bounds, a link planted in the run
    // directory: each refused before anything starts, and nothing run.
    let marker = d.path().join("ran");
    let program = d.path().join("qemu.sh");
    std::fs::write(&program, format!("#!/bin/sh\ntouch {}\necho 'QEMU emulator version 0'\n", marker.display())).unwrap();
    std::fs::set_permissions(&program, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let tamper = |name: &str, edit: &dyn Fn(&mut serde_json::Value, &Path)| {
        let t = d.path().join(name);
        copy_dir(&dir, &t);
        let state_path = t.join("checkpoint/state.json");
        let mut state: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&state_path).unwrap()).unwrap();
        edit(&mut state, &t);
        std::fs::write(&state_path, state.to_string()).unwrap();
        let (code, err) = resume(&[], &t);
        assert_eq!(code, Some(exit_codes::USAGE), "{name}: {err}");
        assert!(!marker.exists(), "{name}: the state's program ran");
        err
    };
    let err = tamper("kernel", &|s, _| s["kernel_sha256"] = "0".repeat(64).into());
    assert!(err.contains("kernel image") && err.contains("copy the whole run directory"), "{err}");
    let err = tamper("program", &|s, _| {
        s["machine"]["qemu"] = program.display().to_string().into();
        s["qemu_version"] = "QEMU emulator version 0".into();
    });
    assert!(err.contains("not a checkpoint state repro wrote"), "{err}");
    let err = tamper("cpus", &|s, _| s["machine"]["cpus"] = u32::MAX.into());
    assert!(err.contains("CPUs is outside"), "{err}");
    let err = tamper("memory", &|s, _| s["machine"]["memory_mib"] = (u64::MAX >> 1).into());
    assert!(err.contains("memory"), "{err}");
    let err = tamper("stall", &|s, _| s["stall_timeout_s"] = 1e308.into());
    assert!(err.contains("stall timeout"), "{err}");
    let err = tamper("link", &|_, t| {
        std::fs::remove_file(t.join("console.log")).unwrap();
        std::os::unix::fs::symlink(d.path().join("elsewhere"), t.join("console.log")).unwrap();
    });
    assert!(err.contains("symbolic link"), "{err}");
    assert!(!d.path().join("elsewhere").exists());

    // Resumed in a new process and stopped by SIGTERM, as a CI job's end or
    // a host's shutdown stops it: it saves at the next round, and exits 75.
    // On a machine whose repro cache is empty, as a fresh CI runner's: the
    // checkpoint carries the kernel image and the initramfs.
    let empty_cache = d.path().join("empty-cache");
    let child = std_repro()
        .env("REPRO_CACHE_DIR", &empty_cache)
        .args(["resume", "-q"])
        .arg(&dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the resumed run's next window", std::time::Duration::from_secs(120), || sample_lines(&dir, "window") > 1);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(exit_codes::CHECKPOINTED), "{}", stderr_of(&o));
    let second = read_summary(&dir).checkpoints[1].iteration;
    assert!(!empty_cache.join("images").exists(), "the resume looked for the kernel in the cache");
    assert!(second > 100 && second < 1200, "saved at {second}");
    let (code, err) = resume(&[], &dir);
    assert_eq!(code, Some(exit_codes::OK), "{err}");
    let s = read_summary(&dir);
    assert!(s.complete, "{:#?}", s.error);
    assert_eq!(s.iterations_done, 1200);

    // The same curve: every window once, none lost or repeated, on disk too.
    // The checkpointed run pauses at each window's exact iteration; the one
    // straight through takes its window when the probe runs, which on a busy
    // host can be an iteration later (201 for 200, seen in a fresh-clone run).
    let at = |s: &repro_proto::Summary| s.windows.iter().map(|w| w.iteration).collect::<Vec<_>>();
    let (resumed, through) = (at(&s), at(&straight));
    assert_eq!(resumed.len(), through.len(), "{resumed:?} against {through:?}");
    assert!(resumed.iter().zip(&through).all(|(a, b)| a.abs_diff(*b) <= 2), "{resumed:?} against {through:?}");
    assert!(resumed.iter().enumerate().all(|(i, it)| *it == (i as u64 + 1) * 100), "{resumed:?}");
    assert_eq!(sample_lines(&dir, "window"), s.windows.len());
    assert!(s.windows.windows(2).all(|w| w[1].elapsed_s > w[0].elapsed_s), "the guest's clock runs on, never back");
    // Two saves, each loaded back once; only the last state file is kept.
    let cps: Vec<(u64, bool, bool)> = s.checkpoints.iter().map(|c| (c.iteration, c.stopped, c.restore_s.is_some())).collect();
    assert_eq!(cps, [(100, true, true), (second, true, true)]);
    assert!(s.checkpoints.iter().all(|c| c.state_bytes > 1 << 20 && c.save_s > 0.0));
    let kept: Vec<String> = std::fs::read_dir(dir.join("checkpoint"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("vm-"))
        .collect();
    assert_eq!(kept, [format!("vm-{second}.gz")]);

    // The bug's residual, as in the run straight through.
    let (a, b) = (s.residual.unwrap().per_iteration, straight.residual.unwrap().per_iteration);
    assert!(a > 4.0 && b > 4.0 && (a - b).abs() < 0.5, "resumed {a:.2} against straight {b:.2} stale dentries per namespace");

    // A finished run is not resumed again.
    let (code, err) = resume(&[], &dir);
    assert_eq!(code, Some(exit_codes::USAGE), "{err}");
    assert!(err.contains("complete"), "{err}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}
