//! `repro check`'s rules: a run judged `repeat` times, the repeats'
//! agreement (any disagreement is inconclusive), their spread, and the JUnit
//! cases, each run's row found the way `report` finds it. cli/check.rs
//! prints and chooses the exit code; `git bisect run` drives it.

use std::path::PathBuf;

use anyhow::Result;

use crate::error::{kind_of, Kind};
use crate::guest::request::RunRequest;
use crate::judge::judged::judge;
use crate::judge::verdict::{Outcome, Verdict};

/// What `repro check` is asked.
pub(crate) struct CheckRequest {
    pub run: RunRequest,
    /// How many times to run and judge (at least 1).
    pub repeat: u32,
    pub junit: Option<PathBuf>,
}

/// How a check ended.
pub(crate) enum CheckEnd {
    /// Every repeat was judged.
    Judged(Repeats),
    /// repro cannot run here whatever the kernel (no QEMU, no disk): the
    /// error, for git bisect run to stop on.
    CannotRun(anyhow::Error),
}

/// The verdicts of a check's repeats, in order.
pub(crate) struct Repeats(pub Vec<Verdict>);

impl Repeats {
    /// The outcome every repeat reached, if they all agree.
    fn agreed(&self) -> Option<Outcome> {
        let first = self.0.first()?.outcome;
        self.0.iter().all(|v| v.outcome == first).then_some(first)
    }

    /// The check's outcome: the repeats' common outcome, inconclusive if any differ.
    pub(crate) fn outcome(&self) -> Outcome {
        self.agreed().unwrap_or(Outcome::Inconclusive)
    }

    /// One line on what the repeats say together, with the spread of the
    /// evidence they were decided on: the settled probe/control ratio where
    /// a ratio rule decided every one, else the residual.
    pub(crate) fn summary(&self) -> String {
        let n = self.0.len();
        let by_ratio = self.0.iter().all(Verdict::rests_on_ratio);
        let (what, values): (&str, Vec<f64>) = if by_ratio {
            ("settled probe/control", self.0.iter().filter_map(|v| v.evidence.settled_probe_over_control).collect())
        } else {
            ("residual per namespace", self.0.iter().filter_map(|v| v.evidence.residual_per_iteration).collect())
        };
        let spread = match (values.iter().copied().reduce(f64::min), values.iter().copied().reduce(f64::max)) {
            (Some(lo), Some(hi)) if by_ratio => format!("{what} {lo:.2}x to {hi:.2}x"),
            (Some(lo), Some(hi)) => format!("{what} {lo:.2} to {hi:.2}"),
            _ => "no residuals".into(),
        };
        match self.agreed() {
            Some(o) => format!("verdict: {} ({n} of {n} runs agree; {spread})", o.as_str()),
            None => {
                let each: Vec<&str> = self.0.iter().map(|v| v.outcome.as_str()).collect();
                format!("verdict: inconclusive (the runs disagree: {}; {spread})", each.join(", "))
            }
        }
    }
}

/// Run and judge `req.run` `req.repeat` times (each repeat in its own
/// run-N directory under --out), calling `each` with every verdict as it
/// comes; the JUnit file written at the end.
pub(crate) fn check(req: &CheckRequest, quiet: bool, mut each: impl FnMut(u32, &Verdict)) -> Result<CheckEnd> {
    let repeat = req.repeat.max(1);
    let mut verdicts = Vec::new();
    let mut cases = Vec::new();
    for i in 1..=repeat {
        let mut run = req.run.clone();
        if let (Some(out), true) = (&req.run.out, repeat > 1) {
            run.out = Some(out.join(format!("run-{i}")));
        }
        let j = match judge(&run, quiet) {
            Ok(j) => j,
            Err(e) if matches!(kind_of(&e), Some(Kind::Interrupted | Kind::Usage)) => return Err(e),
            Err(e) => return Ok(CheckEnd::CannotRun(e)),
        };
        if req.junit.is_some() {
            cases.push(match &j.dir {
                Some(dir) => crate::judge::junit::case_of_row(&crate::judge::report::row(dir, &req.run.vm.catalog)?),
                None => crate::judge::junit::case_without_run(&run.vm.kernel.to_string(), &run.scenario.label(), &j.verdict),
            });
        }
        each(i, &j.verdict);
        verdicts.push(j.verdict);
    }
    if let Some(path) = &req.junit {
        crate::judge::junit::write(path, "repro check", cases)?;
    }
    Ok(CheckEnd::Judged(Repeats(verdicts)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use repro_proto::{Evidence, Rule};

    fn v(outcome: Outcome, residual: f64) -> Verdict {
        Verdict {
            outcome,
            rule: String::new(),
            decided_by: None,
            evidence: Evidence { residual_per_iteration: Some(residual), ..Evidence::default() },
        }
    }

    #[test]
    fn repeats_agree_or_the_check_is_inconclusive() {
        let agree = Repeats(vec![v(Outcome::Regressed, 6.0), v(Outcome::Regressed, 6.1)]);
        assert_eq!(agree.outcome(), Outcome::Regressed);
        assert_eq!(agree.summary(), "verdict: regressed (2 of 2 runs agree; residual per namespace 6.00 to 6.10)");
        let mut ratios = Repeats(vec![v(Outcome::Regressed, 0.05), v(Outcome::Regressed, 0.05)]);
        for (r, x) in ratios.0.iter_mut().zip([18.3, 39.73]) {
            r.decided_by = Some(Rule::RatioRegressed);
            r.evidence.settled_probe_over_control = Some(x);
        }
        assert_eq!(ratios.summary(), "verdict: regressed (2 of 2 runs agree; settled probe/control 18.30x to 39.73x)");
        let differ = Repeats(vec![v(Outcome::Regressed, 6.0), v(Outcome::Clean, 0.0)]);
        assert_eq!(differ.outcome(), Outcome::Inconclusive);
        assert!(differ.summary().contains("the runs disagree: regressed, clean"), "{}", differ.summary());
    }
}
