//! Bad input is refused before anything boots, with a message that says what
//! to do and a distinct exit code.

use predicates::prelude::*;
use repro_proto::exit_codes;

use crate::helpers::*;

#[test]
fn unknown_kernel_lists_the_catalog_and_exits_kernel_unavailable() {
    repro().args(["run", "--kernel", "2.6.32", "-n", "10"]).assert().code(exit_codes::KERNEL_UNAVAILABLE).stderr(
        predicate::str::contains("unknown kernel \"2.6.32\"").and(predicate::str::contains("6.1")).and(predicate::str::contains("bzImage")),
    );
}

#[test]
fn missing_image_path_is_image_invalid() {
    repro()
        .args(["run", "--kernel", "/nonexistent/bzImage", "-n", "10"])
        .assert()
        .code(exit_codes::IMAGE_INVALID)
        .stderr(predicate::str::contains("cannot open kernel image"));
}

#[test]
fn garbage_image_is_rejected_before_booting() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("vmlinux");
    std::fs::write(&p, b"\x7fELF\x02\x01\x01 not a bzImage").unwrap();
    repro()
        .args(["run", "-n", "10", "--out"])
        .arg(d.path().join("run"))
        .arg("--kernel")
        .arg(&p)
        .assert()
        .code(exit_codes::IMAGE_INVALID)
        .stderr(predicate::str::contains("not a bzImage"));
    assert!(!d.path().join("run").exists(), "no run directory for a run that never started");
}

#[test]
fn missing_qemu_says_how_to_install_it() {
    let d = tempfile::tempdir().unwrap();
    let img = fake_bzimage(d.path());
    repro()
        .args(["run", "-n", "10", "--kernel"])
        .arg(&img)
        .env("PATH", d.path())
        .env_remove("REPRO_QEMU")
        .assert()
        .code(exit_codes::QEMU_MISSING)
        .stderr(predicate::str::contains("apt-get install -y qemu-system-x86"));
    repro().args(["run", "-n", "10", "--qemu", "/nonexistent/qemu", "--kernel"]).arg(&img).assert().code(exit_codes::QEMU_MISSING);
}

#[test]
fn scenario_syntax_error_names_file_and_line() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("broken.toml");
    std::fs::write(&p, "name = \"broken\"\n\n[churn]\ntouch = [\"net/core/somaxconn\"\n").unwrap();
    repro()
        .args(["run", "-n", "10", "--scenario"])
        .arg(&p)
        .assert()
        .code(exit_codes::SCENARIO_INVALID)
        .stderr(predicate::str::contains(format!("{}:", p.display())).and(predicate::str::is_match(r"broken\.toml:\d+:\d+: ").unwrap()));
}

#[test]
fn unknown_scenario_lists_the_builtins() {
    repro()
        .args(["run", "-n", "10", "--scenario", "nosuch"])
        .assert()
        .code(exit_codes::SCENARIO_INVALID)
        .stderr(predicate::str::contains("built-in scenarios are seed"));
}

#[test]
fn missing_agent_is_explained() {
    repro()
        .args(["run", "-n", "10"])
        .env("REPRO_AGENT", "/nonexistent/repro-agent")
        .assert()
        .code(exit_codes::INTERNAL)
        .stderr(predicate::str::contains("cargo build --workspace"));
}

#[test]
fn every_refusal_of_bad_command_line_input_exits_2() {
    let d = tempfile::tempdir().unwrap();
    let img = fake_bzimage(d.path());
    let img = img.to_str().unwrap();
    let dir = d.path().to_str().unwrap();
    let long_name = "k".repeat(100_000);
    // Issue 31, item 5: every outside file is checked before it is opened for good.
    let fifo = d.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let fifo = fifo.to_str().unwrap();
    for args in [
        vec!["run", "-n", "0", "--kernel", img],
        vec!["run", "--workers", "0", "--kernel", img],
        vec!["run", "--cpus", "0", "--kernel", img],
        vec!["run", "--window", "0", "--kernel", img],
        vec!["check", "-n", "0", "--kernel", img],
        vec!["check", "--repeat", "0", "--kernel", img],
        // The suite runs every bug's scenario, once each.
        vec!["check", "--suite", "--scenario", "held-fd", "--kernel", img],
        vec!["check", "--suite", "--repeat", "3", "--kernel", img],
        vec!["check", "--suite", "--reverse", "--kernel", img],
        vec!["image", "build", "6.1"],
        vec!["report", "/nonexistent/runs"],
        vec!["run", "--kernel", img, "--accel", "tcg", "-n", "10", "--out", "/proc/repro-run"],
        vec!["kernels", "--matrix", "--kernel", "6.1", "--scenarios", "drop-caches"],
        vec!["run", "--frobnicate"],
        vec!["run", "--backend", "vm"],
        vec!["run", "--kernel", img, "-n", "100000", "--window", "1"],
        vec!["exec", "--kernel", img, "--include", "/nonexistent/churn-ref", "--", "/bin/churn-ref"],
        // What an attack run found exiting 3 to 12 (issue 20, item 15), and a device as a scenario.
        vec!["run", "--kernel", dir],
        vec!["run", "--kernel", img, "--cache-dir", img],
        vec!["run", "--kernel", img, "--cache-dir", "/proc/repro-cache"],
        vec!["image", "build", "--src", "/nonexistent"],
        vec!["bisect", "--src", "/nonexistent", "--good", "a", "--bad", "b"],
        vec!["report", "results/seed", "--expect", "/nonexistent.json"],
        vec!["watch", "--count", "1", "--", "/nonexistent/cmd"],
        vec!["watch", "--ratio-alarm", "NaN"],
        vec!["run", "--kernel", img, "--memory", "99999999999999999999T"],
        // Issue 31, items 6, 9 and 15: durations that overflowed the clock, sample
        // counts that aborted on a 32 GiB allocation, a save at every window.
        vec!["run", "--kernel", img, "--stall-timeout", "500000000000y"],
        vec!["run", "--kernel", img, "--timeout", "500000000000y"],
        vec!["run", "--kernel", img, "--boot-timeout", "500000000000y"],
        vec!["run", "--kernel", img, "--kvm-timeout", "500000000000y"],
        vec!["run", "--kernel", img, "--checkpoint-every", "0s"],
        vec!["resume", dir, "--stall-timeout", "500000000000y"],
        vec!["watch", "--samples", "4294967295"],
        vec!["run", "--kernel", fifo, "-n", "10"],
        vec!["watch", "--probe", fifo, "--count", "1"],
        vec!["run", "--kernel", img, "--scenario", fifo],
        vec!["report", dir, "--expect", fifo],
        vec!["run", "--backend", "host", "--probe-samples", "4294967295"],
        vec!["run", "--kernel", img, "--scenario", "/dev/zero"],
        // The workflow's scenario input, misspelt (issue 23, item 1).
        vec!["kernels", "--matrix", "--scenarios", "seed,nosuch"],
    ] {
        let o = repro().args(&args).output().unwrap();
        assert_eq!(o.status.code(), Some(exit_codes::USAGE), "repro {}: {}", args.join(" "), stderr_of(&o));
        assert!(!stderr_of(&o).trim().is_empty(), "repro {} said nothing", args.join(" "));
    }
    // A 100 KB name is no kernel's name, and is not echoed whole (bisect
    // --kernels wrote it to stdout, bisect.md and bisect.json: issue 31, item 14).
    let list = format!("{long_name},6.1");
    for args in [vec!["run", "--kernel", &long_name], vec!["bisect", "--kernels", &list], vec!["matrix", "--kernels", &list]] {
        let o = repro().args(&args).current_dir(d.path()).output().unwrap();
        assert_eq!(o.status.code(), Some(exit_codes::USAGE), "{}", stderr_of(&o));
        assert!(stderr_of(&o).len() + o.stdout.len() < 4096, "the name was echoed: {} bytes", stderr_of(&o).len() + o.stdout.len());
    }
}

#[test]
fn bad_sizes_and_durations_are_usage_errors() {
    repro().args(["run", "--memory", "lots"]).assert().code(exit_codes::USAGE);
    repro().args(["run", "--timeout", "soon"]).assert().code(exit_codes::USAGE);
}

#[test]
fn help_teaches_with_examples() {
    repro()
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("repro run --kernel 6.1").and(predicate::str::contains("--backend host")));
    repro().args(["run", "--help"]).assert().success().stdout(
        predicate::str::contains("--accel").and(predicate::str::contains("--stall-timeout")).and(predicate::str::contains("catalog name")),
    );
}

#[test]
fn kernels_lists_the_catalog_as_text_and_json() {
    repro().arg("kernels").assert().success().stdout(predicate::str::contains("6.1").and(predicate::str::contains("5.10")));
    let out = repro().args(["kernels", "--json"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = v.as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"6.1") && names.contains(&"6.12"), "{names:?}");
}

#[test]
fn build_failure_quotes_the_compiler_error_and_names_the_log() {
    // A tree whose make fails the way a compile error does.
    let d = tempfile::tempdir().unwrap();
    let tree = d.path().join("linux");
    synthetic_tree(&tree, "6.1.0", None, &fake_bzimage(d.path()));
    std::fs::write(
        tree.join("Makefile"),
        "VERSION = 6\nPATCHLEVEL = 1\nSUBLEVEL = 0\n\ntinyconfig:\n\t@echo '  CC      fs/proc/proc_sysctl.o'\n\t@echo \"fs/proc/proc_sysctl.c:42:1: error: expected ';' before '}' token\" >&2\n\t@exit 2\n",
    )
    .unwrap();
    repro()
        .args(["image", "build", "--cc", "gcc", "--cache-dir"])
        .arg(d.path().join("cache"))
        .arg("--src")
        .arg(&tree)
        .assert()
        .code(exit_codes::BUILD_FAILED)
        .stderr(
            predicate::str::contains("error: expected ';' before '}' token")
                .and(predicate::str::contains("full log:"))
                .and(predicate::str::contains("build.log")),
        );
}

#[test]
fn src_that_is_not_a_kernel_tree_is_refused() {
    let d = tempfile::tempdir().unwrap();
    repro()
        .args(["image", "build", "--src"])
        .arg(d.path())
        .assert()
        .code(exit_codes::KERNEL_UNAVAILABLE)
        .stderr(predicate::str::contains("not a Linux kernel source tree"));
}

#[test]
fn missing_build_tools_are_named_by_their_debian_package() {
    let d = tempfile::tempdir().unwrap();
    let tree = d.path().join("linux");
    std::fs::create_dir_all(tree.join("arch/x86")).unwrap();
    std::fs::write(tree.join("Makefile"), "").unwrap();
    // A PATH with none of make, flex, bison, bc, perl, git or gcc on it.
    repro()
        .args(["image", "build", "--cache-dir"])
        .arg(d.path().join("cache"))
        .arg("--src")
        .arg(&tree)
        .env("PATH", d.path())
        .assert()
        .code(exit_codes::KERNEL_UNAVAILABLE)
        .stderr(predicate::str::contains("sudo apt-get install -y make flex bison bc").and(predicate::str::contains("gcc")));
}

#[test]
fn report_strict_fails_when_a_verdict_contradicts_the_catalog() {
    let results = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../results/seed");
    repro()
        .arg("report")
        .arg(&results)
        .args(["--strict"])
        .assert()
        .success()
        .stdout(predicate::str::contains("| 6.1-noprune | 6.1.192 | tcg | seed | 3000 | 6.00 |"));
    // A clean run filed under a kernel the catalog expects to regress.
    let d = tempfile::tempdir().unwrap();
    let run = d.path().join("mislabelled");
    std::fs::create_dir(&run).unwrap();
    let mut s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(results.join("6.1-src-3000/summary.json")).unwrap()).unwrap();
    s["kernel"]["name"] = "6.1-noprune".into();
    std::fs::write(run.join("summary.json"), serde_json::to_vec(&s).unwrap()).unwrap();
    repro()
        .arg("report")
        .arg(&run)
        .arg("--strict")
        .assert()
        .code(exit_codes::REGRESSED)
        .stderr(predicate::str::contains("contradict the catalog"));
}

#[test]
fn watch_names_a_missing_sysctl_and_exits_2() {
    let o = repro().args(["watch", "--probe", "/proc/sys/net/ipv6/no-such-sysctl", "--count", "1"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr_of(&o));
    assert!(stderr_of(&o).contains("no-such-sysctl") && stderr_of(&o).contains("--probe"), "{}", stderr_of(&o));
}

#[test]
fn bisect_says_which_end_is_which_and_refuses_a_tree_without_git() {
    let o = repro().args(["bisect", "-n", "300"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr_of(&o));
    assert!(stderr_of(&o).contains("--good OLD --bad NEW"), "{}", stderr_of(&o));
    let d = tempfile::tempdir().unwrap();
    let o = repro()
        .args(["bisect", "--good", "a", "--bad", "b", "--src"])
        .arg(d.path())
        .arg("--out")
        .arg(d.path().join("out"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr_of(&o));
    assert!(stderr_of(&o).contains("not a git checkout"), "{}", stderr_of(&o));
}

/// Run repro with stdout a pipe whose reader has already gone.
fn with_closed_stdout(args: &[&str]) -> std::process::Output {
    let (reader, writer) = nix::unistd::pipe().unwrap();
    drop(reader);
    let mut c = std_repro();
    c.args(args).stdout(std::process::Stdio::from(writer)).stderr(std::process::Stdio::piped());
    c.output().unwrap()
}

#[test]
fn a_scenario_list_typed_with_spaces_gives_every_scenario() {
    let o = repro().args(["kernels", "--matrix", "--scenarios", "seed, held-fd"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr_of(&o));
    let m: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let scenarios: std::collections::BTreeSet<&str> =
        m["include"].as_array().unwrap().iter().map(|j| j["scenario"].as_str().unwrap()).collect();
    assert_eq!(scenarios.into_iter().collect::<Vec<_>>(), ["held-fd", "seed"]);
}

#[test]
fn a_closed_stdout_ends_the_command_quietly_not_with_a_panic() {
    for args in [&["kernels"][..], &["watch", "--count", "1000", "--interval", "10ms"][..]] {
        let o = with_closed_stdout(args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(exit_codes::STDOUT_CLOSED), "{args:?}: {err}");
        assert!(!err.contains("panicked") && !err.contains("error:"), "{args:?}: {err}");
    }
}

#[test]
fn logs_carry_no_colour_codes_off_a_terminal_whatever_no_color_says() {
    // stderr is a pipe here: no escape sequences with or without NO_COLOR,
    // on a command that logs (a synthetic tree's build).
    let d = tempfile::tempdir().unwrap();
    let tree = d.path().join("linux");
    synthetic_tree(&tree, "6.1.0", None, &fake_bzimage(d.path()));
    for no_color in [None, Some("1")] {
        let mut c = std_repro();
        c.env_remove("NO_COLOR").args(["image", "build", "--src"]).arg(&tree).arg("--cache-dir").arg(d.path().join("cache"));
        if let Some(v) = no_color {
            c.env("NO_COLOR", v);
        }
        let o = c.env("REPRO_LOG", "info").output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("INFO"), "nothing was logged: {err}");
        assert!(!o.stderr.contains(&0x1b), "{err}");
    }
}

/// A --out that cannot take the run is refused before the kernel is
/// fetched or built (minutes for a source tree), not after.
#[test]
fn an_out_that_holds_a_run_is_refused_before_the_kernel_is_even_looked_up() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("summary.json"), "{}").unwrap();
    // An unknown kernel would be exit 3; the --out is judged first.
    repro()
        .args(["run", "--kernel", "no-such-kernel", "--out"])
        .arg(d.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("already holds a run"));
    let f = d.path().join("a-file");
    std::fs::write(&f, "x").unwrap();
    repro()
        .args(["check", "--kernel", "no-such-kernel", "--out"])
        .arg(&f)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("not a directory"));
}

#[test]
fn a_run_never_writes_through_links_planted_in_its_out_directory() {
    let d = tempfile::tempdir().unwrap();
    let img = fake_bzimage(d.path());
    let victim = d.path().join("victim");
    std::fs::write(&victim, "precious").unwrap();
    let out = d.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::os::unix::fs::symlink(&victim, out.join("samples.jsonl")).unwrap();
    std::os::unix::fs::symlink(d.path().join("created"), out.join(".summary.json.tmp")).unwrap();
    repro()
        .args(["run", "--accel", "tcg", "-n", "10", "--boot-timeout", "2s", "--kernel"])
        .arg(&img)
        .arg("--out")
        .arg(&out)
        .assert()
        .code(exit_codes::USAGE)
        .stderr(predicate::str::contains("already has entries"));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    assert!(!d.path().join("created").exists());
    // An empty directory of one's own (mktemp -d) is a fine --out; a link to one is not.
    let empty = d.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let link = d.path().join("link");
    std::os::unix::fs::symlink(&empty, &link).unwrap();
    repro()
        .args(["run", "--accel", "tcg", "-n", "10", "--boot-timeout", "2s", "--kernel"])
        .arg(&img)
        .arg("--out")
        .arg(&link)
        .assert()
        .code(exit_codes::USAGE)
        .stderr(predicate::str::contains("not a directory (a link"));
    let o = repro()
        .args(["run", "--accel", "tcg", "-n", "10", "--boot-timeout", "2s", "--kernel"])
        .arg(&img)
        .arg("--out")
        .arg(&empty)
        .output()
        .unwrap();
    assert_ne!(o.status.code(), Some(exit_codes::USAGE), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(empty.join("summary.json").exists());
}

/// The report job's own command: `--junit report/junit.xml` beside `--out
/// report` in a directory where neither exists yet. And the one rule for
/// every output path: new, or a regular file it replaces; a FIFO, a
/// directory, a link or a place that takes no files is bad input (exit 2),
/// left as it was.
#[test]
fn report_creates_its_output_directories_and_refuses_special_files_as_outputs() {
    let results = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../results/seed");
    let d = tempfile::tempdir().unwrap();
    repro().current_dir(d.path()).arg("report").arg(&results).args(["--out", "report", "--junit", "report/junit.xml"]).assert().success();
    assert!(std::fs::read_to_string(d.path().join("report/junit.xml")).unwrap().contains("<testsuite"));
    assert!(d.path().join("report/README.md").is_file());

    let fifo = d.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let target = d.path().join("target.xml");
    std::fs::write(&target, "keep").unwrap();
    let link = d.path().join("link.xml");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    for bad in [fifo.clone(), d.path().join("report"), link.clone(), "/proc/repro-junit.xml".into()] {
        repro()
            .arg("report")
            .arg(&results)
            .arg("--junit")
            .arg(&bad)
            .assert()
            .code(exit_codes::USAGE)
            .stderr(predicate::str::contains(bad.display().to_string()));
    }
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(&std::fs::symlink_metadata(&fifo).unwrap().file_type()));
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
}
