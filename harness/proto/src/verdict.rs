//! The verdict on one run, as `verdict.json` holds it: the contract between
//! the host that decides it, the reports that read it back, and CI scripts
//! that read its fields with jq (`ci/bench-verdict.sh`: `.outcome`,
//! `.evidence.iterations`; pinned by a test below). The rules that decide
//! it are the host's (`judge/verdict.rs`).

use serde::{Deserialize, Serialize};

use crate::source::Expect;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Regressed,
    Clean,
    Inconclusive,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Regressed => "regressed",
            Outcome::Clean => "clean",
            Outcome::Inconclusive => "inconclusive",
        }
    }
}

/// The verdict on one run, as written to `verdict.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub outcome: Outcome,
    /// The rule that decided, in words, with the numbers.
    pub rule: String,
    /// The same rule, typed: what programs (and tests) read instead of the
    /// words. Absent in verdicts written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<Rule>,
    pub evidence: Evidence,
}

impl Verdict {
    /// Whether a settled probe/control ratio decided it (rather than the
    /// residual of stale dentries).
    pub fn rests_on_ratio(&self) -> bool {
        matches!(self.decided_by, Some(Rule::RatioRegressed | Rule::RatioClean))
    }

    /// The evidence it rests on, in a few words.
    pub fn brief_evidence(&self) -> String {
        let e = &self.evidence;
        if let Some(m) = e.mounts {
            return m.brief();
        }
        match (self.rests_on_ratio(), e.settled_probe_over_control, e.residual_per_iteration) {
            (true, Some(r), _) => format!("{} {r:.1}x the control, settled", e.probe.as_deref().unwrap_or("probe")),
            (false, _, Some(r)) => format!("{r:.2} stale dentries per namespace"),
            _ => "-".into(),
        }
    }

    /// Nothing ran: the kernel could not be had or built (`why`).
    pub fn cannot_test(why: String) -> Verdict {
        Verdict { outcome: Outcome::Inconclusive, rule: why, decided_by: Some(Rule::CannotTest), evidence: Evidence::default() }
    }

    /// The file a run directory keeps its verdict in.
    pub const FILE: &'static str = "verdict.json";
}

/// Which of the verdict's rules decided it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// The kernel could not be had or built: nothing ran.
    CannotTest,
    /// The run did not finish.
    Incomplete,
    /// Fewer iterations or windows than the scenario needs.
    TooShort,
    /// The settle reported no residual, or no settled probe/control ratio.
    NoEvidence,
    /// Stale dentries per namespace at or over the regressed threshold.
    ResidualRegressed,
    /// At or under the clean threshold, cleanup settled.
    ResidualClean,
    /// Clean-looking, but cleanup had not settled within the bound.
    Unsettled,
    /// A residual between the thresholds whose settled probe costs what the
    /// control does: the leftovers are not on the probed chain.
    GrayOffChain,
    /// The settled probe/control ratio at or over the regressed threshold.
    RatioRegressed,
    /// The settled probe/control ratio at or under the clean one.
    RatioClean,
    /// Between the thresholds, and nothing else separates them.
    TooNoisy,
    /// One mount namespace grew past the limit the fix sets.
    MountsRegressed,
    /// A bind was refused with ENOSPC at or under that limit.
    MountsClean,
}

/// A verdict against the catalog's expectation for its kernel and scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agreement {
    NoExpectation,
    Inconclusive,
    Agrees,
    Contradicts,
}

impl Agreement {
    /// The one rule: an inconclusive verdict neither agrees nor contradicts.
    pub fn of(expected: Option<Expect>, outcome: Outcome) -> Agreement {
        match (expected, outcome) {
            (None, _) => Agreement::NoExpectation,
            (Some(_), Outcome::Inconclusive) => Agreement::Inconclusive,
            (Some(Expect::Regressed), Outcome::Regressed) | (Some(Expect::Clean), Outcome::Clean) => Agreement::Agrees,
            (Some(Expect::Regressed), Outcome::Clean) | (Some(Expect::Clean), Outcome::Regressed) => Agreement::Contradicts,
        }
    }

    /// The report's "agrees" column.
    pub fn as_str(self) -> &'static str {
        match self {
            Agreement::NoExpectation => "no expectation",
            Agreement::Inconclusive => "inconclusive",
            Agreement::Agrees => "yes",
            Agreement::Contradicts => "NO",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub residual_per_iteration: Option<f64>,
    /// Theil-Sen slope of the probe's p50, microseconds per 1,000 iterations.
    pub slope_us_per_1k: Option<f64>,
    pub p50_first_us: Option<f64>,
    pub p50_last_us: Option<f64>,
    /// Last window's p50 over the first's.
    pub last_over_first: Option<f64>,
    /// Last window's probe p50 over the control path's.
    pub probe_over_control: Option<f64>,
    /// The same once cleanup settled: what the stale entries that remain cost.
    #[serde(default)]
    pub settled_probe_over_control: Option<f64>,
    pub probe: Option<String>,
    pub windows: usize,
    /// Namespaces churned when the verdict was decided...
    pub iterations: u64,
    /// ...and the run's seconds, boot included.
    #[serde(default)]
    pub seconds: f64,
    /// A round decided the verdict before `--iterations` were churned.
    #[serde(default)]
    pub stopped_early: bool,
    /// How far one mount namespace grew, in the settled window (scenarios
    /// with a propagation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mounts: Option<crate::MountReach>,
}

impl Evidence {
    /// The figure a verdict on `basis` compares with its thresholds, for
    /// tables (the settled ratio of a residual verdict's gray zone too).
    pub fn judged_figure(&self, basis: crate::VerdictBasis) -> String {
        match (basis, self.mounts) {
            (crate::VerdictBasis::Mounts, Some(m)) => m.brief(),
            (crate::VerdictBasis::Mounts, None) => "-".into(),
            _ => self.settled_probe_over_control.map_or("-".into(), |x| format!("{x:.2}x")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fields_ci_scripts_read_are_where_they_look() {
        let v = Verdict {
            outcome: Outcome::Regressed,
            rule: "r".into(),
            decided_by: Some(Rule::ResidualRegressed),
            evidence: Evidence { iterations: 400, ..Default::default() },
        };
        let j = serde_json::to_value(&v).unwrap();
        // ci/bench-verdict.sh: jq -r '"\(.outcome) \(.evidence.iterations)"'
        assert_eq!(j["outcome"], "regressed");
        assert_eq!(j["evidence"]["iterations"], 400);
        assert_eq!(serde_json::from_value::<Verdict>(j).unwrap(), v);
    }

    #[test]
    fn an_inconclusive_verdict_neither_agrees_nor_contradicts() {
        assert_eq!(Agreement::of(Some(Expect::Clean), Outcome::Inconclusive), Agreement::Inconclusive);
        assert_eq!(Agreement::of(None, Outcome::Clean), Agreement::NoExpectation);
        assert_eq!(Agreement::of(Some(Expect::Clean), Outcome::Regressed), Agreement::Contradicts);
        assert_eq!(Agreement::of(Some(Expect::Regressed), Outcome::Regressed), Agreement::Agrees);
    }
}
