//! Outside data, as the fuzz targets (harness/fuzz/, cargo-fuzz) and the
//! corpus test (tests/integration/fuzz_corpus.rs) feed it: each function
//! takes bytes and hands them to the code that reads such data in a real
//! command, through the same functions, then asserts what must hold of
//! whatever that code accepted. A panic, a hang or an allocation past
//! libFuzzer's limit is a finding; an error is the input being refused,
//! which is what a refusal should be.
//!
//! Each returns whether the input was accepted all the way through, so that
//! the seeds can be held to reaching the end (a seed the readers refuse
//! starts the fuzzer at the surface). Files are written under a fresh
//! temporary directory per input: the readers under test take paths, as the
//! commands do (TESTING.md, "Fuzzing").

use std::path::{Path, PathBuf};

use repro_proto::{Message, Summary};

use crate::kernel::catalog::Catalog;

/// A scratch directory for one input, removed when dropped.
fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("repro-fuzz-").tempdir().expect("a temporary directory")
}

/// `data` written as `name` in a fresh scratch directory: the directory
/// (removed when dropped) and the file's path.
fn scratch_file(name: &str, data: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = scratch();
    let path = dir.path().join(name);
    std::fs::write(&path, data).unwrap();
    (dir, path)
}

/// `data` cut at its first NUL byte: two files in one input.
fn split(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

/// A summary as `repro run` starts one: the seed scenario, `iterations` asked.
fn fresh_summary(iterations: u64) -> Summary {
    let scenario = crate::run::scenario::ScenarioSpec::parse("seed").load().expect("the built-in seed scenario");
    crate::run::summary::new_summary("2026-12-06T00:00:00Z", "6.1", scenario, iterations, 1, 10)
}

/// The agent's stream (guest/lines.rs, then the protocol's messages, then
/// the recorder's checks, run/record.rs) from `data` as the serial line
/// delivered it, for a run of 3,000 iterations (the seeds' runs asked
/// 3,000 or fewer); then the run is closed and
/// judged as `run` does. Whatever the stream said, a summary marked complete
/// must describe a run that can have happened.
pub fn agent_stream(data: &[u8]) -> bool {
    let dir = scratch();
    let mut rec = crate::run::record::Recorder::create(&dir.path().join("run"), fresh_summary(3000)).expect("a run directory");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let refused = rt.block_on(async {
        let mut lines = crate::guest::lines::Lines::new(Box::new(std::io::Cursor::new(data.to_vec())));
        while let Some(line) = lines.next().await.expect("reading from memory") {
            let crate::guest::lines::Line::Text(text) = line else { continue };
            let Ok(msg) = serde_json::from_str::<Message>(&text) else { continue };
            if let Err(e) = rec.record(&msg) {
                return Some(e);
            }
            match msg {
                Message::Round(_) => rec.round_answered(false).expect("writing the summary"),
                Message::Done { .. } => return None,
                _ => {}
            }
        }
        None
    });
    let error = refused.as_ref().map(crate::run::summary::run_error);
    rec.finish(error).expect("writing the summary");
    let s = &rec.summary;
    // Judged as `check` judges it: the verdict's rules must take any stream.
    crate::judge::verdict::decide(s, &s.scenario_definition.verdict);
    if s.complete {
        assert!(s.baseline.is_some() && !s.windows.is_empty(), "a complete churn has a baseline and windows");
        assert!(s.windows.windows(2).all(|w| w[0].iteration <= w[1].iteration), "windows in order");
        assert!(s.iterations_done <= s.iterations_requested, "no more iterations than asked");
        assert!(s.windows.last().is_some_and(|w| w.iteration <= s.iterations_done), "Done behind its windows");
    }
    // What the run directory holds must read back as the summary it was.
    let back = crate::input::Input::Summary.read_text(&rec.dir.join(crate::run::record::SUMMARY)).expect("summary.json");
    let back: Summary = serde_json::from_str(&back).expect("summary.json reads back");
    assert_eq!(back.windows.len(), s.windows.len());
    s.complete
}

/// A checkpoint's state.json and its saved summary (`data` split at a NUL)
/// as `repro resume` reads them (guest/checkpoint.rs), beside a kernel and
/// an initramfs whose digests the seeds name. Whatever it accepts, the
/// QEMU it starts is the one this host chose, and the recorder reopens
/// the run directory without writing outside it.
pub fn checkpoint_state(data: &[u8]) -> bool {
    const KERNEL_BYTES: &[u8] = b"a kernel image";
    const INITRD_BYTES: &[u8] = b"an initramfs";
    let (state, saved_summary) = split(data);
    let dir = scratch();
    let run = dir.path().join("run");
    use crate::guest::checkpoint::{DIR, INITRD, KERNEL, STATE};
    let cp = run.join(DIR);
    std::fs::create_dir_all(&cp).unwrap();
    let mut summary = fresh_summary(1000);
    summary.complete = false;
    crate::atomic::write_json(&run.join(crate::run::record::SUMMARY), &summary).unwrap();
    std::fs::write(run.join(crate::run::record::SAMPLES), b"{}\n".repeat(64)).unwrap();
    for (name, bytes) in [(STATE, state), ("summary-500.json", saved_summary), (KERNEL, KERNEL_BYTES), (INITRD, INITRD_BYTES)] {
        std::fs::write(cp.join(name), bytes).unwrap();
    }
    std::fs::write(cp.join("vm-500.gz"), b"").unwrap();
    let qemu = qemu_double(dir.path());
    let Ok((saved, summary)) = crate::guest::checkpoint::SavedVm::read(&run, &qemu) else { return false };
    let chosen = crate::guest::qemu::Qemu { program: qemu.clone(), data_dirs: vec![] };
    let spec = saved.spec(&run, dir.path(), chosen);
    let argv = crate::guest::qemu::command_args(&spec);
    assert_eq!(spec.qemu.program, qemu, "the QEMU run is the host's choice");
    assert!(spec.kernel.starts_with(&run) && spec.initrd.starts_with(&run), "boot files from the run directory");
    assert!(saved.state_path(&run).starts_with(&cp), "the guest state from the checkpoint folder");
    assert!(!argv.is_empty());
    let reopened = crate::run::record::Recorder::reopen(&run, summary, saved.samples_bytes).map(|mut rec| rec.write_summary().unwrap());
    assert_nothing_outside(dir.path(), &[&run, &qemu]);
    reopened.is_ok()
}

/// A QEMU stand-in that states a version (the seeds' `qemu_version`).
fn qemu_double(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("qemu");
    std::fs::write(&path, "#!/bin/sh\necho 'QEMU emulator version 10.0.0 (repro fuzz)'\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// A summary.json, and a GitHub matrix for `--expect` after a NUL, as
/// `repro report` reads them: rows, the markdown, the extrapolation, the
/// JUnit cases, and every chart drawn (a p50 near 2.3e-308 once hung the
/// log axis forever).
pub fn report_summary(data: &[u8]) -> bool {
    let (summary, matrix) = split(data);
    let dir = scratch();
    let run = dir.path().join("run");
    std::fs::create_dir(&run).unwrap();
    std::fs::write(run.join(crate::run::record::SUMMARY), summary).unwrap();
    let catalog = Catalog::builtin().expect("the built-in catalog");
    let Ok(rows) = crate::judge::report::rows(std::slice::from_ref(&run), &catalog) else { return false };
    let mut accepted = true;
    if !matrix.is_empty() {
        std::fs::write(dir.path().join("matrix.json"), matrix).unwrap();
        accepted = crate::judge::report::missing(&dir.path().join("matrix.json"), &rows).is_ok();
    }
    let md = crate::judge::report_md::markdown(&rows, dir.path());
    assert!(md.lines().all(|l| !l.contains('\r')), "a table line broken by a carriage return");
    let _ = crate::judge::report_md::extrapolation(&rows);
    let cases = rows.iter().map(crate::judge::junit::case_of_row).collect();
    crate::judge::junit::write(&dir.path().join("junit.xml"), "fuzz", cases).expect("the JUnit file");
    for (_, chart) in crate::judge::report::charts(&rows) {
        accepted &= crate::judge::plot::svg(&chart).is_ok();
    }
    accepted
}

/// A bisect.json as `repro bisect` reads it to go on, and its report.
pub fn bisect_state(data: &[u8]) -> bool {
    let (_dir, path) = scratch_file("bisect.json", data);
    let Ok(state) = crate::judge::bisect_state::State::read(&path) else { return false };
    let _ = crate::judge::bisect_state::report(&state);
    assert!(state.same_bisection(&state));
    true
}

/// A scenario file as `--scenario PATH` reads it; what it accepts must
/// reach the agent and come back as the same scenario.
pub fn scenario_toml(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else { return false };
    let Ok(s) = crate::run::scenario::parse("fuzz.toml", text) else { return false };
    let line = serde_json::to_string(&s).expect("a scenario serialises");
    let back: repro_proto::Scenario = serde_json::from_str(&line).expect("and reads back");
    assert_eq!(back, s);
    true
}

/// A catalog as REPRO_CATALOG names one, and eras.toml's format: every
/// name it lists must be found again by the lookup every command uses.
pub fn catalog_toml(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else { return false };
    let eras = crate::kernel::era::Eras::parse(text).is_ok();
    let Ok(c) = Catalog::parse(text) else { return eras };
    for name in c.names() {
        assert!(c.lookup(name).is_ok(), "{name:?} listed and not found");
    }
    for f in c.kernel.iter().filter_map(|e| e.fallback.as_ref()) {
        assert!(c.lookup(f).is_ok(), "the fallback {f:?} is not found");
    }
    true
}

/// A Debian package (ar, then a data.tar compressed with xz, zstd, gzip or
/// nothing) as `fetch` reads a downloaded one: the kernel image, the
/// modules, and a source package's tarball unpacked.
pub fn deb_package(data: &[u8]) -> bool {
    let (dir, deb) = scratch_file("package.deb", data);
    let image = crate::kernel::deb::extract_vmlinuz(&deb, &mut std::io::sink()).is_ok();
    let _ = crate::kernel::deb::extract_modules(&deb, &["veth".to_string()]);
    let dest = dir.path().join("tree");
    let source = crate::kernel::deb::extract_source_tarball(&deb, &dest).is_ok();
    assert_nothing_outside(dir.path(), &[&deb, &dest]);
    image || source
}

/// A tarball as a kernel tree or a package is unpacked, both ways a link
/// leaving the tree is treated (refused, skipped): nothing is written
/// outside the tree, and no link left in it leads out.
pub fn tar_unpack(data: &[u8]) -> bool {
    use crate::kernel::deb::EscapingLinks;
    let mut accepted = true;
    for links in [EscapingLinks::Refuse, EscapingLinks::Skip] {
        let dir = scratch();
        let dest = dir.path().join("tree");
        accepted &= crate::kernel::deb::unpack_stripped(data, &dest, links).is_ok();
        assert_nothing_outside(dir.path(), &[&dest]);
        for entry in walk(&dest) {
            if let Ok(to) = std::fs::read_link(&entry) {
                let at = entry.strip_prefix(&dest).unwrap();
                assert!(crate::kernel::deb::link_stays_inside(at, &to), "{} -> {} leaves the tree", at.display(), to.display());
            }
        }
    }
    accepted
}

/// A kernel RPM as `fetch` reads CentOS's: headers, payload, the image.
pub fn rpm_package(data: &[u8]) -> bool {
    let (_dir, path) = scratch_file("kernel.rpm", data);
    let Ok(rpm) = crate::kernel::rpm::Rpm::open(&path) else { return false };
    let _ = rpm.version();
    rpm.extract_vmlinuz(&mut std::io::sink()).is_ok()
}

/// Every path under `dir`, not following links.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for e in entries.flatten() {
        let p = e.path();
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

/// Nothing in `dir` but `allowed` (and what is under them): a reader
/// wrote only where it was told.
fn assert_nothing_outside(dir: &Path, allowed: &[&Path]) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        assert!(allowed.iter().any(|a| *a == p), "{} written outside the destination", p.display());
    }
}
