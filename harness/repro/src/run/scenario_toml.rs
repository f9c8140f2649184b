//! A scenario file's TOML (scenarios/*.toml, `--scenario FILE`): read with
//! spans, validated, every error as `origin:line:column: what to fix`.

use anyhow::Result;
use repro_proto::{Namespace, ProbeOp, ProbePath, ProbeSettings, Propagation, Scenario, SettleSettings, Teardown};
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
    /// A bind-mount tree grown by propagation after each settle.
    #[serde(default)]
    propagation: Option<Spanned<RawPropagation>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPropagation {
    binds: u32,
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
    let verdict = f.verdict(raw.verdict.as_ref())?;
    let propagation = f.propagation(raw.propagation.as_ref(), &verdict, raw.verdict.as_ref().map(|v| v.span()))?;
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
        verdict,
        propagation,
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

    /// `[propagation]`: enough binds to pass the fix's limit, few enough for
    /// the guest's memory; and the mounts basis judges only with one.
    fn propagation(
        &self,
        raw: Option<&Spanned<RawPropagation>>,
        verdict: &repro_proto::VerdictSettings,
        verdict_at: Option<std::ops::Range<usize>>,
    ) -> Result<Option<Propagation>> {
        let p = raw.map(|r| (r.span(), Propagation { binds: r.get_ref().binds }));
        match p {
            Some((span, p)) if !p.fits() => Err(self.at(
                span,
                format!(
                    "propagation.binds must make more mounts than the fix's limit ({}) and be at most {}: 17 or 18, got {}",
                    repro_proto::MountReach::FIX_LIMIT,
                    Propagation::MAX_BINDS,
                    p.binds
                ),
            )),
            None if verdict.basis == repro_proto::VerdictBasis::Mounts => Err(self.at(
                verdict_at.unwrap_or(0..0),
                "verdict.basis = \"mounts\" judges a [propagation] section, and this scenario has none (add one with binds = 17)".into(),
            )),
            p => Ok(p.map(|(_, p)| p)),
        }
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
mod tests;
