//! Faults during a real run: each ends with a clear message and its own exit
//! code, and the windows already received stay on disk.

use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use repro_proto::{exit_codes, ErrorKind};

use crate::helpers::*;

#[test]
fn guest_panic_is_reported_with_console_lines() {
    let img = debian_6_1();
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("run");
    // No /init to run: the kernel falls back to a root fs it cannot mount and panics.
    let o = repro()
        .args(["run", "--accel", "tcg", "--cpus", "1", "-n", "10", "--append", "rdinit=/nonexistent"])
        .arg("--kernel")
        .arg(img)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let err = stderr_of(&o);
    assert_eq!(o.status.code(), Some(exit_codes::GUEST_PANIC), "{err}");
    assert!(err.contains("panicked") && err.contains("last console lines") && err.contains("Kernel panic"), "{err}");
    let s = read_summary(&out);
    let e = s.error.as_ref().unwrap();
    assert!(!s.complete);
    assert_eq!((e.kind, e.exit_code), (ErrorKind::GuestPanic, exit_codes::GUEST_PANIC));
}

/// Start a long run and wait until it has recorded `windows` windows.
fn start_long_run(out: &std::path::Path, extra: &[&str], windows: usize) -> std::process::Child {
    let img = debian_6_1();
    let child = std_repro()
        .args(["run", "--accel", "tcg", "--cpus", "1", "-n", "100000", "--window", "10"])
        .args(extra)
        .arg("--kernel")
        .arg(img)
        .arg("--out")
        .arg(out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("windows in samples.jsonl", Duration::from_secs(120), || sample_lines(out, "window") >= windows);
    child
}

#[test]
fn ctrl_c_stops_the_guest_and_keeps_the_windows() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("run");
    let child = start_long_run(&out, &[], 3);
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    let o = child.wait_with_output().unwrap();
    let err = stderr_of(&o);
    assert_eq!(o.status.code(), Some(exit_codes::INTERRUPTED), "{err}");
    assert!(err.contains("interrupted at iteration"), "{err}");
    let s = read_summary(&out);
    assert_eq!((s.complete, s.error.as_ref().map(|e| e.kind)), (false, Some(ErrorKind::Interrupted)));
    assert!(s.windows.len() >= 3);
    assert!(sample_lines(&out, "window") >= 3);
}

#[test]
fn hung_guest_is_declared_after_the_stall_timeout() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("run");
    let child = start_long_run(&out, &["--stall-timeout", "5s"], 2);
    // Freeze QEMU: the guest stops answering mid-run, as a wedged kernel would.
    let qemu = children_of(child.id());
    assert_eq!(qemu.len(), 1, "expected one QEMU child, got {qemu:?}");
    kill(Pid::from_raw(qemu[0] as i32), Signal::SIGSTOP).unwrap();
    let o = child.wait_with_output().unwrap();
    let err = stderr_of(&o);
    assert_eq!(o.status.code(), Some(exit_codes::GUEST_HUNG), "{err}");
    assert!(err.contains("stopped answering") && err.contains("--stall-timeout"), "{err}");
    assert!(!std::path::Path::new(&format!("/proc/{}", qemu[0])).exists(), "QEMU was left behind");
    let s = read_summary(&out);
    assert_eq!(s.error.as_ref().map(|e| e.kind), Some(ErrorKind::GuestHung));
    assert!(s.windows.len() >= 2);
}

#[test]
fn full_disk_keeps_the_samples_and_says_to_free_space() {
    let d = tempfile::tempdir().unwrap();
    let mnt = d.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let status = std::process::Command::new("mount").args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"]).arg(&mnt).status().unwrap();
    assert!(status.success(), "mounting a small tmpfs needs root");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mnt.clone());
    let out = mnt.join("run");
    let o = repro()
        .args(["run", "--accel", "tcg", "--cpus", "1", "-n", "5000", "--window", "5", "--probe-samples", "5"])
        .arg("--kernel")
        .arg(debian_6_1())
        .arg("--out")
        .arg(&out)
        .timeout(Duration::from_secs(600))
        .output()
        .unwrap();
    let err = stderr_of(&o);
    assert_eq!(o.status.code(), Some(exit_codes::DISK_FULL), "{err}");
    assert!(err.contains("free space"), "{err}");
    // The last summary that fitted is intact and holds the windows so far.
    let s = read_summary(&out);
    assert!(!s.complete);
    assert!(!s.windows.is_empty());
    assert!(sample_lines(&out, "window") > 0);
}

/// A busy host and a slow reader: the guest writes its last lines much
/// faster than they are read, then is done. It must not power off before
/// the host has read them all (the agent waits for the host's ack).
#[test]
fn the_streams_tail_survives_a_busy_host_and_a_slow_reader() {
    use std::io::Read;
    let d = tempfile::tempdir().unwrap();
    let gen = d.path().join("gen.c");
    std::fs::write(&gen, "#include <stdio.h>\nint main(void){for(int i=0;i<8000;i++)printf(\"line %05d of the generator's output, padded to fifty\\n\",i);return 0;}\n").unwrap();
    let bin = d.path().join("gen");
    let cc = std::process::Command::new("gcc").args(["-O2", "-static", "-o"]).arg(&bin).arg(&gen).status().unwrap();
    assert!(cc.success(), "gcc -static failed (libc6-dev has libc.a)");
    // Every core busy while the guest runs.
    let busy: Vec<std::process::Child> = (0..std::thread::available_parallelism().map_or(2, |n| n.get()))
        .map(|_| std::process::Command::new("sh").args(["-c", "while :; do :; done"]).spawn().unwrap())
        .collect();
    let _stop = scopeguard(busy);
    let mut child = std_repro()
        .args(["exec", "--kernel", "6.1", "--accel", "tcg", "--cpus", "1", "--include"])
        .arg(format!("{}:bin/gen", bin.display()))
        .args(["--", "/bin/gen"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    // About 20 KB/s: the guest's output backs up through QEMU into its UART.
    loop {
        let n = stdout.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        std::thread::sleep(Duration::from_millis(200));
    }
    let o = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&got);
    let lines = text.lines().filter(|l| l.starts_with("line ")).count();
    assert!(o.status.success(), "{}", stderr_of(&o));
    assert_eq!(lines, 8000, "lines lost; last: {:?}", text.lines().last());
    assert!(text.contains("line 07999 of"), "the last line is missing");
}

/// Kills the children when dropped.
fn scopeguard(children: Vec<std::process::Child>) -> impl Drop {
    struct Kill(Vec<std::process::Child>);
    impl Drop for Kill {
        fn drop(&mut self) {
            for c in &mut self.0 {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
    Kill(children)
}

/// Processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        // A zombie has an empty command line: only the living match.
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle)))
        .collect()
}

#[test]
fn sigkill_of_repro_leaves_no_qemu_behind() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("run");
    let mut child = start_long_run(&out, &[], 2);
    let needle = out.to_str().unwrap().to_string();
    assert!(!processes_mentioning(&needle).iter().all(|p| *p == child.id()), "no QEMU found running for {needle}");
    kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).unwrap();
    let _ = child.wait();
    wait_until("QEMU to die with repro", Duration::from_secs(20), || processes_mentioning(&needle).is_empty());
    // What arrived before the kill is on disk.
    assert!(sample_lines(&out, "window") >= 2);
}

#[test]
fn sigkill_of_repro_leaves_no_host_agent_churning() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("run");
    let mut child = std_repro()
        .args(["run", "--backend", "host", "-n", "500000", "--window", "50", "--workers", "2", "--out"])
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("windows in samples.jsonl", Duration::from_secs(60), || sample_lines(&out, "window") >= 2);
    let agents = children_of(child.id());
    assert!(!agents.is_empty(), "no agent under repro");
    let workers: Vec<u32> = agents.iter().flat_map(|a| children_of(*a)).collect();
    kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).unwrap();
    let _ = child.wait();
    // A zombie waiting for init to reap it is dead.
    let alive = |pids: &[u32]| {
        pids.iter()
            .filter(|p| {
                std::fs::read_to_string(format!("/proc/{p}/stat"))
                    .is_ok_and(|st| st.rfind(')').and_then(|i| st[i + 1..].split_whitespace().next()).is_some_and(|state| state != "Z"))
            })
            .count()
    };
    wait_until("the agent and its workers to die with repro", Duration::from_secs(20), || alive(&agents) + alive(&workers) == 0);
}

/// Ctrl-C during the second run of one process (check --repeat, as in
/// matrix and bisect) stops it: the first run's signal handling must not
/// swallow later signals.
#[test]
fn ctrl_c_in_a_later_run_of_the_same_process_stops_it() {
    let img = debian_6_1();
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("check");
    let child = std_repro()
        .args(["check", "--accel", "tcg", "--cpus", "1", "--repeat", "3", "-n", "60", "--window", "10"])
        .arg("--kernel")
        .arg(img)
        .arg("--out")
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let second = out.join("run-2");
    wait_until("the second run's first window", Duration::from_secs(240), || sample_lines(&second, "window") >= 1);
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    let t0 = std::time::Instant::now();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(exit_codes::INTERRUPTED), "{}", stderr_of(&o));
    assert!(t0.elapsed() < Duration::from_secs(30), "took {:?} to stop", t0.elapsed());
    assert!(!out.join("run-3").exists(), "a third run started after Ctrl-C");
}

/// A bzImage QEMU loads whose setup code is `jmp $`: a kernel that boots
/// and prints nothing, as a tree linked with the wrong page size does.
fn silent_bzimage(dir: &std::path::Path) -> std::path::PathBuf {
    let mut b = vec![0u8; 5 * 512 + 4096];
    b[0x1f1] = 4; // setup sectors
    b[0x1fe..0x200].copy_from_slice(&[0x55, 0xaa]);
    b[0x200..0x202].copy_from_slice(&[0xeb, 0xfe]); // the setup entry: jmp $
    b[0x202..0x206].copy_from_slice(b"HdrS");
    b[0x206..0x208].copy_from_slice(&0x020du16.to_le_bytes());
    b[0x211] = 0x01; // LOADED_HIGH
    b[0x22c..0x230].copy_from_slice(&0x7fff_ffffu32.to_le_bytes()); // initrd_addr_max
    b[0x238..0x23c].copy_from_slice(&2048u32.to_le_bytes()); // cmdline_size
    let p = dir.join("silent-bzImage");
    std::fs::write(&p, b).unwrap();
    p
}

#[test]
fn a_kernel_that_prints_nothing_is_diagnosed_not_blamed_on_a_slow_machine() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("run");
    let o = repro()
        .args(["run", "--accel", "tcg", "--cpus", "1", "-n", "10", "--boot-timeout", "8s", "--kernel"])
        .arg(silent_bzimage(d.path()))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let err = stderr_of(&o);
    assert_eq!(o.status.code(), Some(exit_codes::GUEST_HUNG), "{err}");
    assert!(err.contains("printed nothing") && err.contains("will not help"), "{err}");
    assert!(err.contains("protocol 2.13") && err.contains("earlyprintk=serial,ttyS0"), "{err}");
    assert_eq!(read_summary(&out).error.unwrap().kind, ErrorKind::GuestHung);
}
