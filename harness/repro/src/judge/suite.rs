//! `repro check --suite`: every known bug's scenario against one kernel,
//! one after another, each judged as `check` judges a run; one row per bug
//! (verdict, evidence, expectation, agreement) and one JUnit case per bug.

use std::path::PathBuf;

use anyhow::Result;
use repro_proto::{Agreement, Bug};

use crate::guest::request::RunRequest;
use crate::judge::judged::judge;
use crate::judge::report::Row;
use crate::judge::verdict::Outcome;

/// What `repro check --suite` is asked: the run's settings (its scenario
/// is replaced by each of the suite's), and where the JUnit file goes.
pub(crate) struct SuiteRequest {
    pub run: RunRequest,
    pub junit: Option<PathBuf>,
}

/// One bug's line: its run's row (verdict and expectation), or no row when
/// the run left no directory.
pub(crate) struct SuiteLine {
    pub bug: Bug,
    pub scenario: String,
    pub row: Option<Row>,
    pub verdict: crate::judge::verdict::Verdict,
}

impl SuiteLine {
    pub(crate) fn agreement(&self) -> Agreement {
        self.row.as_ref().map_or(Agreement::NoExpectation, Row::agreement)
    }
}

/// The suite's lines, in the order of [`Bug::ALL`].
pub(crate) struct SuiteEnd(pub Vec<SuiteLine>);

impl SuiteEnd {
    /// The kernel's answer: regressed if any bug is, else inconclusive if
    /// any verdict is, else clean.
    pub(crate) fn outcome(&self) -> Outcome {
        let has = |o| self.0.iter().any(|l| l.verdict.outcome == o);
        if has(Outcome::Regressed) {
            Outcome::Regressed
        } else if has(Outcome::Inconclusive) {
            Outcome::Inconclusive
        } else {
            Outcome::Clean
        }
    }

    /// The table, as Markdown lines.
    pub(crate) fn table(&self) -> Vec<String> {
        let mut out =
            vec!["| bug | scenario | verdict | evidence | expected | agrees |".to_string(), "|---|---|---|---|---|---|".to_string()];
        for l in &self.0 {
            let expected = l.row.as_ref().and_then(|r| r.expected).map_or("-", |x| x.as_str());
            out.push(format!(
                "| {} | {} | {} | {} | {} | {} |",
                l.bug.name(),
                l.scenario,
                l.verdict.outcome.as_str(),
                l.verdict.brief_evidence(),
                expected,
                l.agreement().as_str()
            ));
        }
        out
    }
}

/// Run every bug's scenario against the request's kernel (each run under
/// `--out/SCENARIO` when --out is given), calling `each` as each is judged;
/// the JUnit file (one case per bug) written at the end. A run repro could
/// not make at all ends the suite with its error.
pub(crate) fn suite(req: &SuiteRequest, quiet: bool, mut each: impl FnMut(&SuiteLine)) -> Result<SuiteEnd> {
    let mut lines = Vec::new();
    let mut cases = Vec::new();
    for (bug, spec) in crate::run::scenario::suite()? {
        let mut run = req.run.clone();
        run.out = req.run.out.as_ref().map(|o| o.join(spec.slug()));
        run.scenario = spec.clone();
        let j = judge(&run, quiet)?;
        let row = j.dir.as_deref().map(|d| crate::judge::report::row(d, &run.vm.catalog)).transpose()?;
        if req.junit.is_some() {
            cases.push(match &row {
                Some(r) => crate::judge::junit::case_of_row(r),
                None => crate::judge::junit::case_without_run(&run.vm.kernel.to_string(), &spec.label(), &j.verdict),
            });
        }
        let line = SuiteLine { bug, scenario: spec.label(), row, verdict: j.verdict };
        each(&line);
        lines.push(line);
    }
    if let Some(path) = &req.junit {
        crate::judge::junit::write(path, "repro check --suite", cases)?;
    }
    Ok(SuiteEnd(lines))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::verdict::Verdict;
    use repro_proto::Evidence;

    fn line(bug: Bug, outcome: Outcome, evidence: Evidence) -> SuiteLine {
        let decided_by = match (outcome, evidence.probe.is_some()) {
            (Outcome::Regressed, true) => Some(repro_proto::Rule::RatioRegressed),
            _ => None,
        };
        let verdict = Verdict { outcome, rule: String::new(), decided_by, evidence };
        SuiteLine { bug, scenario: bug.name().into(), row: None, verdict }
    }

    #[test]
    fn the_suite_says_regressed_if_any_bug_is_and_shows_each_bugs_evidence() {
        let ratio = Evidence { settled_probe_over_control: Some(29.4), probe: Some("net".into()), ..Evidence::default() };
        let residual = Evidence { residual_per_iteration: Some(6.0), settled_probe_over_control: Some(1.1), ..Evidence::default() };
        let mut end = SuiteEnd(vec![
            line(Bug::ProcSysDentries, Outcome::Clean, residual.clone()),
            line(Bug::IpcTeardown, Outcome::Inconclusive, Evidence::default()),
            line(Bug::NetnsLock, Outcome::Regressed, ratio),
        ]);
        assert_eq!(end.outcome(), Outcome::Regressed);
        let table = end.table();
        assert_eq!(table.len(), 5);
        assert_eq!(table[2], "| proc-sys-dentries | proc-sys-dentries | clean | 6.00 stale dentries per namespace | - | no expectation |");
        assert_eq!(table[4], "| netns-lock | netns-lock | regressed | net 29.4x the control, settled | - | no expectation |");
        end.0.pop();
        assert_eq!(end.outcome(), Outcome::Inconclusive);
        end.0.pop();
        assert_eq!(end.outcome(), Outcome::Clean);
    }
}
