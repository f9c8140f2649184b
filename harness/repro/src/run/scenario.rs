//! Scenario files (TOML, in scenarios/): parsing, validation with file:line
//! errors, and the built-in set compiled into the binary.

use std::path::PathBuf;

use anyhow::Result;
use repro_proto::{ProbePath, ProbeSettings, Scenario, SettleSettings};
use serde::Deserialize;
use toml::Spanned;

use crate::error::{fail, Kind};
use crate::kernel::spec::slug;

/// Scenarios shipped in scenarios/, compiled in so the binary works anywhere.
pub(crate) const BUILTIN: &[(&str, &str)] = &[
    ("seed", include_str!("../../../../scenarios/seed.toml")),
    ("sysctl-all", include_str!("../../../../scenarios/sysctl-all.toml")),
    ("held-fd", include_str!("../../../../scenarios/held-fd.toml")),
    ("drop-caches", include_str!("../../../../scenarios/drop-caches.toml")),
    ("veth", include_str!("../../../../scenarios/veth.toml")),
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: Spanned<String>,
    #[serde(default)]
    description: String,
    churn: RawChurn,
    probe: RawProbe,
    settle: RawSettle,
    #[serde(default)]
    verdict: Option<Spanned<RawVerdict>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVerdict {
    residual_regressed: f64,
    residual_clean: f64,
    min_iterations: u64,
    min_windows: u32,
    #[serde(default)]
    settled_ratio_clean: Option<f64>,
    #[serde(default)]
    basis: Option<repro_proto::VerdictBasis>,
    #[serde(default)]
    settled_ratio_regressed: Option<f64>,
    #[serde(default)]
    early_margin: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChurn {
    touch: Spanned<Vec<Spanned<String>>>,
    /// A directory under /proc/sys read whole in each namespace.
    #[serde(default)]
    read_all: Option<Spanned<String>>,
    #[serde(default)]
    hold: Option<RawHold>,
    #[serde(default)]
    drop_caches_every: Option<Spanned<u64>>,
    #[serde(default)]
    veth: bool,
    #[serde(default)]
    modules: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHold {
    paths: Spanned<Vec<Spanned<String>>>,
    /// "never", or a duration.
    release_after: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProbe {
    samples: Spanned<u32>,
    budget: Spanned<String>,
    min_samples: Spanned<u32>,
    paths: Spanned<Vec<RawProbePath>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProbePath {
    name: Spanned<String>,
    path: Spanned<String>,
    #[serde(default)]
    control: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettle {
    poll: Spanned<String>,
    stable_polls: u32,
    max: Spanned<String>,
    baseline_tolerance: Spanned<f64>,
    /// Adaptive end, see [`SettleSettings::flat_ms`]; "0s" turns it off.
    #[serde(default)]
    flat: Option<Spanned<String>>,
    #[serde(default)]
    flat_factor: Option<f64>,
}

/// The adaptive settle's defaults, used once cleanup has visibly started
/// (a count flat from the first poll waits for `stable_polls`). Recorded
/// traces (results/): fixed kernels are back at their baseline when the
/// churn ends, or Debian 6.1's batches come 0.5 s apart; plateaus of up to
/// ~7 s between batches were seen under TCG on a busy host. Eight seconds
/// covers those; three times the longest gap so far covers slower batches.
const DEFAULT_FLAT_MS: u64 = 8000;
const DEFAULT_FLAT_FACTOR: f64 = 3.0;

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

/// A built-in scenario by name (tests and fixed uses such as `seed`).
#[cfg(test)]
pub(crate) fn load(name: &str) -> Result<Scenario> {
    ScenarioSpec::parse(name).load()
}

/// Parse and validate one scenario file; errors name `origin:line:column`.
pub fn parse(origin: &str, text: &str) -> Result<Scenario> {
    let f = File { origin, text };
    let raw: RawScenario = toml::from_str(text).map_err(|e| {
        let msg = e.message().to_string();
        match e.span() {
            Some(span) => f.at(span, msg),
            None => fail(Kind::ScenarioInvalid, format!("{origin}: {msg}")),
        }
    })?;
    if raw.name.get_ref().trim().is_empty() {
        return Err(f.at(raw.name.span(), "name must not be empty".into()));
    }
    let churn = f.churn(&raw.churn)?;
    let (probes, probe) = f.probe(&raw.probe)?;
    Ok(Scenario {
        name: raw.name.into_inner(),
        description: raw.description,
        touch: churn.touch,
        read_all: churn.read_all,
        hold: churn.hold,
        drop_caches_every: churn.drop_caches_every,
        veth: raw.churn.veth,
        modules: raw.churn.modules.clone(),
        probes,
        probe,
        settle: f.settle(&raw.settle)?,
        verdict: f.verdict(raw.verdict.as_ref())?,
    })
}

/// The scenario file being parsed: where errors point.
struct File<'a> {
    origin: &'a str,
    text: &'a str,
}

/// The churn's part of a [`Scenario`], validated.
struct Churn {
    touch: Vec<String>,
    read_all: Option<String>,
    hold: Option<repro_proto::Hold>,
    drop_caches_every: Option<u64>,
}

impl File<'_> {
    /// An error at `span`, as `origin:line:column: msg`.
    fn at(&self, span: std::ops::Range<usize>, msg: String) -> anyhow::Error {
        let (line, col) = line_col(self.text, span.start);
        fail(Kind::ScenarioInvalid, format!("{}:{line}:{col}: {msg}", self.origin))
    }

    fn sysctl_path(&self, p: &Spanned<String>) -> Result<String> {
        sysctl_path(p.get_ref()).map_err(|m| self.at(p.span(), m))
    }

    fn duration_ms(&self, d: &Spanned<String>) -> Result<u64> {
        humantime::parse_duration(d.get_ref())
            .map(|d| d.as_millis() as u64)
            .map_err(|e| self.at(d.span(), format!("bad duration {:?}: {e} (write e.g. \"500ms\", \"2s\", \"2m\")", d.get_ref())))
    }

    fn churn(&self, raw: &RawChurn) -> Result<Churn> {
        if raw.touch.get_ref().is_empty() {
            return Err(self.at(raw.touch.span(), "churn.touch needs at least one path".into()));
        }
        let touch = raw.touch.get_ref().iter().map(|p| self.sysctl_path(p)).collect::<Result<Vec<_>>>()?;
        // "." is all of /proc/sys, as `sysctl -a` reads it.
        let read_all = match &raw.read_all {
            Some(d) if d.get_ref() == "." => Some("/proc/sys".to_string()),
            d => d.as_ref().map(|d| self.sysctl_path(d)).transpose()?,
        };
        let hold = match &raw.hold {
            None => None,
            Some(h) => {
                if h.paths.get_ref().is_empty() {
                    return Err(self.at(h.paths.span(), "churn.hold.paths needs at least one directory".into()));
                }
                let release_after_ms =
                    if h.release_after.get_ref().trim() == "never" { None } else { Some(self.duration_ms(&h.release_after)?) };
                let paths = h.paths.get_ref().iter().map(|p| self.sysctl_path(p)).collect::<Result<Vec<_>>>()?;
                Some(repro_proto::Hold { paths, release_after_ms })
            }
        };
        let drop_caches_every = match &raw.drop_caches_every {
            Some(k) if *k.get_ref() == 0 => return Err(self.at(k.span(), "churn.drop_caches_every must be at least 1".into())),
            k => k.as_ref().map(|k| *k.get_ref()),
        };
        Ok(Churn { touch, read_all, hold, drop_caches_every })
    }

    fn probe(&self, raw: &RawProbe) -> Result<(Vec<ProbePath>, ProbeSettings)> {
        if raw.paths.get_ref().is_empty() {
            return Err(self.at(raw.paths.span(), "probe needs at least one [[probe.paths]] entry".into()));
        }
        let mut probes = Vec::new();
        for p in raw.paths.get_ref() {
            let name = p.name.get_ref().trim().to_string();
            if name.is_empty() || probes.iter().any(|q: &ProbePath| q.name == name) {
                return Err(self.at(p.name.span(), format!("probe names must be unique and non-empty, got {name:?}")));
            }
            probes.push(ProbePath { name, path: self.sysctl_path(&p.path)?, control: p.control });
        }
        let samples = *raw.samples.get_ref();
        if samples == 0 {
            return Err(self.at(raw.samples.span(), "probe.samples must be at least 1".into()));
        }
        let min_samples = *raw.min_samples.get_ref();
        if min_samples == 0 || min_samples > samples {
            return Err(self.at(raw.min_samples.span(), format!("probe.min_samples must be between 1 and samples ({samples})")));
        }
        Ok((probes, ProbeSettings { samples, budget_ms: self.duration_ms(&raw.budget)?, min_samples }))
    }

    fn settle(&self, raw: &RawSettle) -> Result<SettleSettings> {
        let t = *raw.baseline_tolerance.get_ref();
        if !(0.0..=100.0).contains(&t) {
            return Err(self.at(raw.baseline_tolerance.span(), format!("settle.baseline_tolerance must be between 0 and 100, got {t}")));
        }
        Ok(SettleSettings {
            poll_ms: self.duration_ms(&raw.poll)?.max(10),
            stable_polls: raw.stable_polls,
            max_ms: self.duration_ms(&raw.max)?,
            flat_ms: match &raw.flat {
                Some(f) => self.duration_ms(f)?,
                None => DEFAULT_FLAT_MS,
            },
            flat_factor: raw.flat_factor.unwrap_or(DEFAULT_FLAT_FACTOR).max(0.0),
            baseline_tolerance: t,
        })
    }

    fn verdict(&self, raw: Option<&Spanned<RawVerdict>>) -> Result<repro_proto::VerdictSettings> {
        let default = repro_proto::VerdictSettings::default();
        let Some(v) = raw else { return Ok(default) };
        let r = v.get_ref();
        if r.residual_clean >= r.residual_regressed || r.residual_clean.is_nan() || r.residual_clean < 0.0 {
            return Err(self.at(
                v.span(),
                format!("verdict.residual_clean ({}) must be below residual_regressed ({})", r.residual_clean, r.residual_regressed),
            ));
        }
        let settled_ratio_clean = match r.settled_ratio_clean {
            Some(x) if x.is_nan() || x < 1.0 => {
                return Err(self.at(v.span(), format!("verdict.settled_ratio_clean ({x}) must be at least 1")))
            }
            Some(x) => x,
            None => default.settled_ratio_clean,
        };
        Ok(repro_proto::VerdictSettings {
            residual_regressed: r.residual_regressed,
            residual_clean: r.residual_clean,
            min_iterations: r.min_iterations,
            min_windows: r.min_windows.max(1),
            settled_ratio_clean,
            basis: r.basis.unwrap_or_default(),
            settled_ratio_regressed: r.settled_ratio_regressed.unwrap_or(default.settled_ratio_regressed),
            early_margin_dentries: r.early_margin.unwrap_or(default.early_margin_dentries).max(0.0),
        })
    }
}

/// A path relative to /proc/sys, made absolute.
fn sysctl_path(rel: &str) -> Result<String, String> {
    if rel.starts_with('/') {
        return Err(format!("{rel:?}: paths are relative to /proc/sys (write \"net/core/somaxconn\")"));
    }
    if rel.is_empty() || rel.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return Err(format!("{rel:?} is not a plain path below /proc/sys"));
    }
    Ok(format!("/proc/sys/{rel}"))
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

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
