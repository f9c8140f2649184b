//! Scenarios: `--scenario`'s name-or-path (ScenarioSpec) and the built-in
//! set compiled into the binary; the files' TOML is read by scenario_toml.rs.

use std::path::PathBuf;

use anyhow::Result;
use repro_proto::Scenario;

use crate::error::{fail, Kind};
use crate::kernel::spec::slug;

pub use crate::run::scenario_toml::parse;

/// Scenarios shipped in scenarios/, compiled in so the binary works anywhere.
pub(crate) const BUILTIN: &[(&str, &str)] = &[
    ("seed", include_str!("../../../../scenarios/seed.toml")),
    ("sysctl-all", include_str!("../../../../scenarios/sysctl-all.toml")),
    ("held-fd", include_str!("../../../../scenarios/held-fd.toml")),
    ("drop-caches", include_str!("../../../../scenarios/drop-caches.toml")),
    ("veth", include_str!("../../../../scenarios/veth.toml")),
    ("ipc-teardown", include_str!("../../../../scenarios/ipc-teardown.toml")),
    ("netns-lock", include_str!("../../../../scenarios/netns-lock.toml")),
    ("mount-propagation", include_str!("../../../../scenarios/mount-propagation.toml")),
];
/// `--scenario`, decided once: a built-in name or a scenario file, by the
/// same name-or-path rule as `--kernel` ([`crate::input::names_a_path`]),
/// where a `.toml` ending also makes a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScenarioSpec {
    /// A built-in scenario (scenarios/*.toml compiled in), or an unknown name.
    Named(String),
    /// A scenario file.
    File(PathBuf),
}

impl ScenarioSpec {
    pub fn parse(arg: &str) -> ScenarioSpec {
        if crate::input::names_a_path(arg.as_ref()) || arg.ends_with(".toml") {
            ScenarioSpec::File(arg.into())
        } else {
            ScenarioSpec::Named(arg.to_string())
        }
    }

    /// As the user gave it: the name, or the path.
    pub fn label(&self) -> String {
        match self {
            ScenarioSpec::Named(n) => n.clone(),
            ScenarioSpec::File(p) => p.display().to_string(),
        }
    }

    /// The scenario's part of a run directory's name: the name, or the
    /// file's stem, with path-hostile characters replaced.
    pub fn slug(&self) -> String {
        match self {
            ScenarioSpec::Named(n) => slug(n),
            ScenarioSpec::File(p) => slug(&p.file_stem().unwrap_or(p.as_os_str()).to_string_lossy()),
        }
    }

    /// Read and validate it; an unknown name lists the built-in ones.
    pub(crate) fn load(&self) -> Result<Scenario> {
        match self {
            ScenarioSpec::Named(arg) => match BUILTIN.iter().find(|(n, _)| n == arg) {
                Some((_, text)) => parse(&format!("scenarios/{arg}.toml (built in)"), text),
                None => {
                    let names: Vec<_> = BUILTIN.iter().map(|(n, _)| *n).collect();
                    Err(fail(
                        Kind::ScenarioInvalid,
                        format!(
                            "unknown scenario {:?}: built-in scenarios are {}; or pass the path of a scenario file (see scenarios/seed.toml for the format)",
                            crate::text::clip(arg, 40),
                            names.join(", ")
                        ),
                    ))
                }
            },
            ScenarioSpec::File(p) => {
                let text = crate::input::Input::Scenario.read_text(p)?;
                parse(&p.display().to_string(), &text)
            }
        }
    }
}

impl std::str::FromStr for ScenarioSpec {
    type Err = std::convert::Infallible;
    fn from_str(arg: &str) -> Result<ScenarioSpec, Self::Err> {
        Ok(ScenarioSpec::parse(arg))
    }
}

impl std::fmt::Display for ScenarioSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.label())
    }
}

/// Built-in scenario names as a workflow input types them ("seed,
/// held-fd"): trimmed, empty ones dropped, `suite` standing for the
/// suite's (one per known bug), each once, and a name no built-in scenario
/// has refused (exit 2) instead of silently matching nothing.
pub(crate) fn builtin_names(given: &[String]) -> Result<Vec<String>> {
    let known: Vec<&str> = BUILTIN.iter().map(|(n, _)| *n).collect();
    let mut names: Vec<String> = Vec::new();
    for s in given.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        let these = if s == "suite" { suite()?.into_iter().map(|(_, spec)| spec.label()).collect() } else { vec![s.to_string()] };
        for n in these {
            if !names.contains(&n) {
                names.push(n);
            }
        }
    }
    match names.iter().find(|s| !known.contains(&s.as_str())) {
        Some(bad) => Err(fail(
            Kind::Usage,
            format!(
                "no scenario is named {:?}: the built-in scenarios are {}, and suite (one per known bug)",
                crate::text::clip(bad, 40),
                known.join(", ")
            ),
        )),
        None => Ok(names),
    }
}

/// The regression suite (`repro check --suite`): for each known bug, the
/// first built-in scenario that tests it (seed for the dentry bug).
pub(crate) fn suite() -> Result<Vec<(repro_proto::Bug, ScenarioSpec)>> {
    let mut out = Vec::new();
    for bug in repro_proto::Bug::ALL {
        for (name, _) in BUILTIN {
            let spec = ScenarioSpec::Named(name.to_string());
            if spec.load()?.bug == bug {
                out.push((bug, spec));
                break;
            }
        }
    }
    Ok(out)
}

/// A built-in scenario by name (tests and fixed uses such as `seed`).
#[cfg(test)]
pub(crate) fn load(name: &str) -> Result<Scenario> {
    ScenarioSpec::parse(name).load()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_suite_has_one_scenario_per_known_bug() {
        let names: Vec<(repro_proto::Bug, String)> = suite().unwrap().into_iter().map(|(b, s)| (b, s.label())).collect();
        assert_eq!(
            names,
            [
                (repro_proto::Bug::ProcSysDentries, "seed".to_string()),
                (repro_proto::Bug::IpcTeardown, "ipc-teardown".to_string()),
                (repro_proto::Bug::NetnsLock, "netns-lock".to_string()),
                (repro_proto::Bug::MountLimit, "mount-propagation".to_string())
            ]
        );
    }

    #[test]
    fn a_workflow_input_may_name_the_suite() {
        let given = |s: &str| builtin_names(&s.split(',').map(str::to_string).collect::<Vec<_>>()).unwrap();
        assert_eq!(given("suite"), ["seed", "ipc-teardown", "netns-lock", "mount-propagation"]);
        assert_eq!(given(" held-fd, suite,seed"), ["held-fd", "seed", "ipc-teardown", "netns-lock", "mount-propagation"]);
        assert!(builtin_names(&["suites".into()]).is_err());
    }

    #[test]
    fn every_scenario_file_is_built_into_the_binary() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios");
        for f in std::fs::read_dir(dir).unwrap().flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            let stem = name.strip_suffix(".toml").unwrap_or_else(|| panic!("scenarios/{name} is not a .toml file"));
            let built = BUILTIN.iter().find(|(n, _)| *n == stem).unwrap_or_else(|| panic!("scenarios/{name} is not in BUILTIN"));
            assert_eq!(built.1, std::fs::read_to_string(f.path()).unwrap(), "scenarios/{name} differs from what is built in");
        }
    }

    #[test]
    fn a_scenario_is_a_name_or_a_path_by_the_kernel_rule_and_slugs_by_its_stem() {
        assert_eq!(ScenarioSpec::parse("held-fd"), ScenarioSpec::Named("held-fd".into()));
        assert_eq!(ScenarioSpec::parse("mine.toml"), ScenarioSpec::File("mine.toml".into()));
        assert_eq!(ScenarioSpec::parse("dir/x"), ScenarioSpec::File("dir/x".into()));
        assert_eq!(ScenarioSpec::parse("scenarios/held-fd.toml").slug(), "held-fd");
        assert_eq!(ScenarioSpec::parse("a b").slug(), "a_b");
        assert_eq!(ScenarioSpec::parse("..").slug(), "_..");
        let e = ScenarioSpec::parse("nosuch").load().unwrap_err();
        assert_eq!(crate::error::kind_of(&e), Some(Kind::ScenarioInvalid));
    }

    #[test]
    fn every_builtin_scenario_parses_with_its_options() {
        let all: Vec<Scenario> = BUILTIN.iter().map(|(n, _)| load(n).unwrap()).collect();
        assert!(all.iter().all(|s| BUILTIN.iter().any(|(n, _)| *n == s.name)), "a file's name differs from its built-in name");
        let by = |n: &str| all.iter().find(|s| s.name == n).unwrap();
        assert_eq!(by("sysctl-all").read_all.as_deref(), Some("/proc/sys"));
        let hold = by("held-fd").hold.clone().unwrap();
        assert_eq!((hold.paths, hold.release_after_ms), (vec!["/proc/sys/net/ipv6/conf/all".to_string()], None));
        assert_eq!(by("held-fd").verdict.basis, repro_proto::VerdictBasis::SettledRatio);
        assert_eq!(by("drop-caches").drop_caches_every, Some(500));
    }

    #[test]
    fn hold_and_drop_caches_are_validated() {
        let held = include_str!("../../../../scenarios/held-fd.toml");
        let e = format!("{:#}", parse("h.toml", &held.replace("release_after = \"never\"", "release_after = \"soon\"")).unwrap_err());
        assert!(e.starts_with("h.toml:") && e.contains("bad duration"), "{e}");
        let ok = parse("h.toml", &held.replace("release_after = \"never\"", "release_after = \"3s\"")).unwrap();
        assert_eq!(ok.hold.unwrap().release_after_ms, Some(3000));
        let drop = include_str!("../../../../scenarios/drop-caches.toml");
        let e = format!("{:#}", parse("d.toml", &drop.replace("drop_caches_every = 500", "drop_caches_every = 0")).unwrap_err());
        assert!(e.contains("drop_caches_every must be at least 1"), "{e}");
    }

    fn seed_text() -> &'static str {
        BUILTIN[0].1
    }

    #[test]
    fn seed_scenario_parses_to_absolute_paths() {
        let s = load("seed").unwrap();
        assert_eq!(s.name, "seed");
        assert_eq!(s.touch, ["/proc/sys/net/ipv6/conf/all/disable_ipv6", "/proc/sys/net/core/somaxconn"]);
        assert_eq!(s.probes[0].path, "/proc/sys/net/ipv6/neigh/lo/retrans_time_ms");
        assert!(!s.probes[0].control && s.probes[1].control);
        assert_eq!(s.probe.budget_ms, 2000);
        assert_eq!(s.settle.max_ms, 120_000);
        assert_eq!(s.settle.baseline_tolerance, 0.1);
        assert_eq!((s.verdict.residual_regressed, s.verdict.residual_clean), (1.0, 0.5));
    }

    fn err_of(text: &str) -> String {
        format!("{:#}", parse("x.toml", text).unwrap_err())
    }

    #[test]
    fn syntax_errors_name_file_and_line() {
        let broken = seed_text().replace("samples = 100", "samples = = 100");
        let line = seed_text().lines().position(|l| l.starts_with("samples = 100")).unwrap() + 1;
        let e = err_of(&broken);
        assert!(e.starts_with(&format!("x.toml:{line}:")), "{e}");
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_line() {
        let e = err_of(&seed_text().replace("[settle]", "[settle]\nbogus = 1"));
        assert!(e.contains("bogus") && e.starts_with("x.toml:"), "{e}");
    }

    #[test]
    fn bad_duration_and_absolute_paths_are_located() {
        let e = err_of(&seed_text().replace("budget = \"2s\"", "budget = \"2 parsecs\""));
        assert!(e.contains("bad duration") && e.starts_with("x.toml:"), "{e}");
        let e = err_of(&seed_text().replace("\"net/core/somaxconn\"", "\"/proc/sys/net/core/somaxconn\""));
        assert!(e.contains("relative to /proc/sys"), "{e}");
        let e = err_of(&seed_text().replace("\"net/core/somaxconn\"", "\"net/../../etc/passwd\""));
        assert!(e.contains("not a plain path"), "{e}");
    }

    #[test]
    fn verdict_thresholds_must_be_ordered() {
        let e = err_of(&seed_text().replace("residual_clean = 0.5", "residual_clean = 2.0"));
        assert!(e.contains("must be below residual_regressed") && e.starts_with("x.toml:"), "{e}");
    }

    #[test]
    fn unknown_scenario_names_list_the_builtins() {
        let e = format!("{:#}", load("nope").unwrap_err());
        assert!(e.contains("seed"), "{e}");
    }
}
