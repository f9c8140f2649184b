//! Every input in harness/fuzz/corpus/ (the seeds, and what the fuzzers
//! kept as new coverage) through its target's entry point, as the fuzzers
//! call it: a finding fixed stays fixed, in the fast set, with no fuzzer
//! installed. A seed must be accepted all the way through (except those
//! named seed-refused-*). The fuzzers themselves run from ci/fuzz.sh.

use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The targets harness/fuzz/Cargo.toml declares, by their `[[bin]]` names.
fn declared_targets() -> Vec<String> {
    let text = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
    let toml: toml::Value = toml::from_str(&text).unwrap();
    toml["bin"].as_array().unwrap().iter().map(|b| b["name"].as_str().unwrap().to_string()).collect()
}

/// A target's entry point: whether the input was accepted all the way through.
type Entry = fn(&[u8]) -> bool;

/// The entry point of each target (what fuzz_targets/<name>.rs calls).
const TARGETS: &[(&str, Entry)] = &[
    ("agent_stream", repro::fuzzing::agent_stream),
    ("checkpoint_state", repro::fuzzing::checkpoint_state),
    ("report_summary", repro::fuzzing::report_summary),
    ("bisect_state", repro::fuzzing::bisect_state),
    ("scenario_toml", repro::fuzzing::scenario_toml),
    ("catalog_toml", repro::fuzzing::catalog_toml),
    ("deb_package", repro::fuzzing::deb_package),
    ("tar_unpack", repro::fuzzing::tar_unpack),
    ("rpm_package", repro::fuzzing::rpm_package),
];

fn replay(target: &str) {
    let (_, entry) = TARGETS.iter().find(|(n, _)| *n == target).unwrap();
    let dir = fuzz_dir().join("corpus").join(target);
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()).collect();
    inputs.sort();
    assert!(inputs.iter().any(|p| p.file_name().unwrap().to_string_lossy().starts_with("seed-")), "{target} has no seed");
    for input in inputs {
        let data = std::fs::read(&input).unwrap();
        let name = input.file_name().unwrap().to_string_lossy().into_owned();
        let outcome = std::panic::catch_unwind(|| entry(&data));
        let hint = format!("reproduce: ci/fuzz.sh --reproduce {target} {}", input.display());
        let accepted = outcome.unwrap_or_else(|_| panic!("{name} panics {target} ({hint})"));
        // A seed is a valid input of today's formats: refused, it starts the fuzzer at the surface.
        if name.starts_with("seed-") && !name.starts_with("seed-refused-") {
            assert!(accepted, "the seed {name} of {target} is refused: make the seeds anew (harness/fuzz/seeds.py)");
        }
    }
}

#[test]
fn every_declared_target_is_replayed_here() {
    let mut declared = declared_targets();
    declared.sort();
    let mut here: Vec<String> = TARGETS.iter().map(|(n, _)| n.to_string()).collect();
    here.sort();
    assert_eq!(declared, here, "harness/fuzz/Cargo.toml and this file's TARGETS name the same targets");
    for t in &declared {
        let source = std::fs::read_to_string(fuzz_dir().join("fuzz_targets").join(format!("{t}.rs"))).unwrap();
        assert!(source.contains(&format!("repro::fuzzing::{t}(")), "fuzz_targets/{t}.rs calls repro::fuzzing::{t}");
    }
}

#[test]
fn agent_stream() {
    replay("agent_stream");
}

#[test]
fn checkpoint_state() {
    replay("checkpoint_state");
}

#[test]
fn report_summary() {
    replay("report_summary");
}

#[test]
fn bisect_state() {
    replay("bisect_state");
}

#[test]
fn scenario_toml() {
    replay("scenario_toml");
}

#[test]
fn catalog_toml() {
    replay("catalog_toml");
}

#[test]
fn deb_package() {
    replay("deb_package");
}

#[test]
fn tar_unpack() {
    replay("tar_unpack");
}

#[test]
fn rpm_package() {
    replay("rpm_package");
}

/// The RPM seed: the fixture builder's package (what the fetch tests serve
/// in place of CentOS's), written by `harness/fuzz/seeds.py` through this test.
#[test]
#[ignore = "writes the RPM seed; run by harness/fuzz/seeds.py"]
fn write_the_rpm_seed() {
    let rpm = repro::testing::rpm_fixture(&[("boot/vmlinuz-3.10.0-fuzz.el7.x86_64", b"MZ a kernel")], None).unwrap();
    let dir = fuzz_dir().join("corpus/rpm_package");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("seed-fixture"), rpm).unwrap();
}
