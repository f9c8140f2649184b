//! A scenario file's TOML (scenarios/*.toml, `--scenario FILE`): read with
//! spans, validated, every error as `origin:line:column: what to fix`.

use anyhow::Result;
use repro_proto::{Namespace, ProbeOp, ProbePath, ProbeSettings, Scenario, SettleSettings, Teardown};
use serde::Deserialize;
use toml::Spanned;

use crate::error::{fail, Kind};

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
    #[serde(default)]
    kernel_args: Option<Spanned<Vec<Spanned<String>>>>,
    /// Config fragments a tree on disk is built with for this scenario.
    #[serde(default)]
    config: Vec<Spanned<String>>,
    /// The known regression it tests (the dentry bug by default).
    #[serde(default)]
    bug: repro_proto::Bug,
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
    /// A sysctl to open; or, instead, `unshare`: namespaces whose life is timed.
    #[serde(default)]
    path: Option<Spanned<String>>,
    #[serde(default)]
    unshare: Option<Spanned<Vec<Spanned<String>>>>,
    /// With `unshare`: time each sample right after a teardown of many.
    #[serde(default)]
    after_teardown: Option<Spanned<RawTeardown>>,
    #[serde(default)]
    control: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTeardown {
    unshare: Spanned<Vec<Spanned<String>>>,
    count: Spanned<u32>,
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
        bug: raw.bug,
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
        kernel_args: f.kernel_args(raw.kernel_args.as_ref())?,
        config: f.config(&raw.config)?,
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
            let (path, op) = match (&p.path, &p.unshare) {
                (Some(path), None) if p.after_teardown.is_none() => (self.sysctl_path(path)?, ProbeOp::Open),
                (None, Some(kinds)) => {
                    let after = p.after_teardown.as_ref().map(|t| self.teardown(t)).transpose()?;
                    (String::new(), ProbeOp::Lifecycle { unshare: self.namespaces(kinds)?, after })
                }
                (Some(_), None) => {
                    return Err(
                        self.at(p.name.span(), format!("probe {name:?}: after_teardown times a namespace's life (unshare), not an open"))
                    );
                }
                _ => {
                    return Err(self.at(
                        p.name.span(),
                        format!("probe {name:?} needs either a path (a sysctl to open) or unshare (namespaces to time)"),
                    ));
                }
            };
            probes.push(ProbePath { name, path, control: p.control, op });
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

    /// Fragments of vm-images/config/ by name, each once.
    fn config(&self, raw: &[Spanned<String>]) -> Result<Vec<String>> {
        let known = || crate::kernel::era::CONFIGS.iter().map(|(n, _)| *n).collect::<Vec<_>>();
        let mut out: Vec<String> = Vec::new();
        for c in raw {
            let name = c.get_ref();
            if !known().contains(&name.as_str()) {
                return Err(
                    self.at(c.span(), format!("config: no fragment {name:?} in vm-images/config/; there are {}", known().join(", ")))
                );
            }
            if out.contains(name) {
                return Err(self.at(c.span(), format!("config names {name:?} twice")));
            }
            out.push(name.clone());
        }
        Ok(out)
    }

    /// A probe's `after_teardown`: namespaces to hold and drop together.
    fn teardown(&self, raw: &Spanned<RawTeardown>) -> Result<Teardown> {
        let t = Teardown { unshare: self.namespaces(&raw.get_ref().unshare)?, count: *raw.get_ref().count.get_ref() };
        if !t.fits() {
            return Err(self.at(
                raw.span(),
                format!(
                    "after_teardown needs at least one namespace kind and a count of at least 1, and holds at most {} namespaces (kinds times count); got {} times {}",
                    Teardown::MAX_HELD,
                    t.unshare.len(),
                    t.count
                ),
            ));
        }
        Ok(t)
    }

    /// Namespace kinds by their /proc/PID/ns names, each once.
    fn namespaces(&self, raw: &Spanned<Vec<Spanned<String>>>) -> Result<Vec<Namespace>> {
        let mut out = Vec::new();
        for k in raw.get_ref() {
            let Some(ns) = Namespace::ALL.into_iter().find(|n| n.name() == k.get_ref().as_str()) else {
                let known: Vec<&str> = Namespace::ALL.iter().map(|n| n.name()).collect();
                return Err(self.at(k.span(), format!("unshare: no namespace {:?}; the kinds are {}", k.get_ref(), known.join(", "))));
            };
            if out.contains(&ns) {
                return Err(self.at(k.span(), format!("unshare names {:?} twice", k.get_ref())));
            }
            out.push(ns);
        }
        Ok(out)
    }

    /// Kernel arguments appended after repro's own: `name=value` words, at
    /// most 16 and 200 bytes each, none of the parameters repro's boot
    /// depends on.
    fn kernel_args(&self, raw: Option<&Spanned<Vec<Spanned<String>>>>) -> Result<Vec<String>> {
        const OWNED: [&str; 5] = ["console", "rdinit", "init", "panic", "root"];
        let Some(raw) = raw else { return Ok(Vec::new()) };
        if raw.get_ref().len() > 16 {
            return Err(self.at(raw.span(), "kernel_args: at most 16 arguments".into()));
        }
        let mut out = Vec::new();
        for a in raw.get_ref() {
            let word = a.get_ref();
            let printable = !word.is_empty() && word.len() <= 200 && word.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
            if !printable {
                return Err(self.at(a.span(), format!("kernel_args: {word:?} is not one word of printable ASCII up to 200 bytes")));
            }
            let param = word.split('=').next().unwrap_or_default();
            if OWNED.contains(&param) {
                return Err(
                    self.at(a.span(), format!("kernel_args: {param}= is repro's own (the agent's console and /init); leave it out"))
                );
            }
            out.push(word.clone());
        }
        Ok(out)
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

    const SEED: &str = include_str!("../../../../scenarios/seed.toml");

    fn err_of(text: &str) -> String {
        format!("{:#}", parse("x.toml", text).unwrap_err())
    }

    /// The seed scenario with its control probe timing namespaces instead.
    fn lifecycle(unshare: &str) -> String {
        SEED.replace("path = \"net/ipv4/neigh/lo/retrans_time_ms\"", &format!("unshare = {unshare}"))
    }

    #[test]
    fn a_probe_times_an_open_or_a_namespaces_life() {
        let s = parse("x.toml", &lifecycle("[\"ipc\", \"uts\"]")).unwrap();
        assert_eq!(s.probes[0].op, ProbeOp::Open);
        assert_eq!(s.probes[1].op, ProbeOp::Lifecycle { unshare: vec![Namespace::Ipc, Namespace::Uts], after: None });
        assert_eq!((s.probes[1].path.as_str(), s.op_of("ipv4").timed()), ("", "namespace life"));
        // A plain fork: the control whose cost no namespace changes.
        assert_eq!(parse("x.toml", &lifecycle("[]")).unwrap().probes[1].op, ProbeOp::Lifecycle { unshare: vec![], after: None });
    }

    #[test]
    fn a_scenario_names_the_bug_it_tests() {
        assert_eq!(parse("x.toml", SEED).unwrap().bug, repro_proto::Bug::ProcSysDentries);
        assert_eq!(parse("x.toml", &format!("bug = \"netns-lock\"\n{SEED}")).unwrap().bug, repro_proto::Bug::NetnsLock);
        let e = err_of(&format!("bug = \"mount-storm\"\n{SEED}"));
        assert!(e.starts_with("x.toml:1:") && e.contains("ipc-teardown"), "{e}");
    }

    #[test]
    fn a_scenario_names_the_config_fragments_its_workload_needs() {
        let with = |c: &str| format!("config = {c}\n{SEED}");
        assert_eq!(parse("x.toml", &with("[\"mqueue\"]")).unwrap().config, ["mqueue"]);
        assert!(parse("x.toml", SEED).unwrap().config.is_empty());
        let e = err_of(&with("[\"bpf\"]"));
        assert!(e.starts_with("x.toml:1:") && e.contains("no fragment \"bpf\"") && e.contains("mqueue"), "{e}");
        assert!(err_of(&with("[\"mqueue\", \"mqueue\"]")).contains("twice"));
    }

    #[test]
    fn a_namespace_life_may_follow_a_teardown_of_many_within_the_fd_bound() {
        let with = |t: &str| lifecycle(&format!("[\"net\"]\nafter_teardown = {t}"));
        let s = parse("x.toml", &with("{ unshare = [\"net\"], count = 32 }")).unwrap();
        let after = Some(Teardown { unshare: vec![Namespace::Net], count: 32 });
        assert_eq!(s.probes[1].op, ProbeOp::Lifecycle { unshare: vec![Namespace::Net], after });
        for bad in ["{ unshare = [\"net\"], count = 0 }", "{ unshare = [], count = 3 }", "{ unshare = [\"net\", \"ipc\"], count = 300 }"] {
            let e = err_of(&with(bad));
            assert!(e.starts_with("x.toml:") && e.contains("at most 512"), "{bad}: {e}");
        }
        assert!(err_of(&with("{ unshare = [\"pid\"], count = 1 }")).contains("no namespace \"pid\""));
        // An open has no namespace to follow a teardown with.
        let open = SEED.replace(
            "path = \"net/ipv4/neigh/lo/retrans_time_ms\"",
            "path = \"net/ipv4/neigh/lo/retrans_time_ms\"\nafter_teardown = { unshare = [\"net\"], count = 1 }",
        );
        assert!(err_of(&open).contains("not an open"), "{}", err_of(&open));
    }

    #[test]
    fn a_probe_names_one_thing_to_time_and_known_namespaces() {
        let both = SEED
            .replace("path = \"net/ipv4/neigh/lo/retrans_time_ms\"", "path = \"net/ipv4/neigh/lo/retrans_time_ms\"\nunshare = [\"ipc\"]");
        assert!(err_of(&both).contains("either a path"), "{}", err_of(&both));
        let e = err_of(&lifecycle("[\"pid\"]"));
        assert!(e.contains("no namespace \"pid\"") && e.contains("net, ipc, uts, mnt") && e.starts_with("x.toml:"), "{e}");
        assert!(err_of(&lifecycle("[\"ipc\", \"ipc\"]")).contains("twice"));
    }

    #[test]
    fn kernel_args_are_words_and_leave_repros_own_alone() {
        let with = |args: &str| SEED.replace("[churn]", &format!("kernel_args = {args}\n\n[churn]"));
        assert_eq!(parse("x.toml", &with("[\"rcupdate.rcu_expedited=0\"]")).unwrap().kernel_args, ["rcupdate.rcu_expedited=0"]);
        assert!(parse("x.toml", SEED).unwrap().kernel_args.is_empty());
        for bad in ["[\"a b\"]", "[\"\"]", "[\"x=\\\"y\\\"\"]"] {
            assert!(err_of(&with(bad)).contains("one word of printable ASCII"), "{bad}: {}", err_of(&with(bad)));
        }
        for owned in ["rdinit=/bin/sh", "console=tty0", "init=/x", "panic=0"] {
            let e = err_of(&with(&format!("[\"{owned}\"]")));
            assert!(e.contains("is repro's own") && e.starts_with("x.toml:"), "{e}");
        }
        let many = format!("[{}]", vec!["\"quiet\""; 17].join(", "));
        assert!(err_of(&with(&many)).contains("at most 16"));
    }
}
