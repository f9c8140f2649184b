//! Verdicts as JUnit XML (`--junit FILE` on check, matrix and report), the
//! format GitHub's, GitLab's and Jenkins' dashboards read as test results:
//! one test case per kernel x scenario, the verdict and its evidence in it.
//!
//! What passes: a verdict that agrees with the expectation (the catalog's,
//! or the fix read from a built tree's source), or a clean one where there
//! is none. A contradicted or unexpected regressed verdict is a failure; an
//! inconclusive one, or a pair of the matrix that left no run, an error
//! (the test could not decide).

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use crate::judge::report::{Missing, Row};
use crate::judge::verdict::{Agreement, Outcome, Verdict};
use crate::kernel::catalog::Expect;

/// The one rule of what passes: agreeing with the expectation, or clean
/// where there is none. `expected`: the expectation and where it came from.
fn status(v: &Verdict, expected: Option<(Expect, &str)>) -> TestCaseStatus {
    let failure = |message: String| {
        let mut st = TestCaseStatus::non_success(NonSuccessKind::Failure);
        st.set_type(v.outcome.as_str()).set_message(message);
        st
    };
    match (expected, v.outcome) {
        (_, Outcome::Inconclusive) => {
            let mut st = TestCaseStatus::non_success(NonSuccessKind::Error);
            st.set_type("inconclusive").set_message(format!("inconclusive: {}", v.rule));
            st
        }
        (None, Outcome::Clean) => TestCaseStatus::success(),
        (None, Outcome::Regressed) => failure(format!("regressed: {}", v.rule)),
        (Some((x, _)), o) if Agreement::of(Some(x), o) == Agreement::Agrees => TestCaseStatus::success(),
        (Some((x, from)), o) => failure(format!("expected {} (from {from}), measured {}: {}", x.as_str(), o.as_str(), v.rule)),
    }
}

/// One test case: a run's row.
pub(crate) fn case_of_row(row: &Row) -> TestCase {
    let s = &row.summary;
    let v = &row.verdict;
    let status = status(v, row.expected.map(|x| (x, row.expected_from.as_deref().unwrap_or("-"))));
    // The evidence as `key: value` lines: Jenkins' schema allows no
    // properties on a test case, and every dashboard shows system-out.
    let mut out = vec![
        format!("verdict: {} ({})", v.outcome.as_str(), v.rule),
        format!("expected: {}", row.expected.map_or("none", |x| x.as_str())),
        format!("iterations: {}", v.evidence.iterations),
        format!("kernel source: {}", s.kernel.source),
    ];
    out.extend(s.kernel.release.as_ref().map(|r| format!("kernel release: {r}")));
    out.extend(v.evidence.residual_per_iteration.map(|r| format!("residual per namespace: {r:.3}")));
    out.extend(s.accel.map(|a| format!("accel: {}", a.as_str())));
    out.push(format!("run directory: {}", row.dir.display()));
    let mut c = TestCase::new(format!("{} / {}", s.kernel.name, s.scenario), status);
    c.set_classname(format!("repro.{}", s.scenario))
        .set_time(Duration::from_secs_f64(s.duration_s.max(0.0)))
        .set_system_out(out.join("\n") + "\n");
    c
}

/// A run that left no run directory (`repro check` without --out whose
/// kernel could not be had).
pub(crate) fn case_without_run(kernel: &str, scenario: &str, v: &Verdict) -> TestCase {
    let mut c = TestCase::new(format!("{kernel} / {scenario}"), status(v, None));
    c.set_classname(format!("repro.{scenario}"));
    c
}

/// A pair of the expected matrix that no run reported.
pub(crate) fn case_of_missing(m: &Missing) -> TestCase {
    let mut st = TestCaseStatus::non_success(NonSuccessKind::Error);
    st.set_type("no run")
        .set_message("in the matrix, but no run directory: its job failed before the run began, or its artifact was not uploaded");
    let mut c = TestCase::new(format!("{} / {}", m.kernel, m.scenario), st);
    c.set_classname(format!("repro.{}", m.scenario));
    c
}

/// Write `cases` as one suite named `suite` to `path`, atomically.
pub(crate) fn write(path: &Path, suite: &str, cases: Vec<TestCase>) -> Result<()> {
    let mut s = TestSuite::new(suite);
    s.set_time(cases.iter().filter_map(|c| c.time).sum());
    s.add_test_cases(cases);
    let mut r = Report::new("repro");
    r.add_test_suite(s);
    crate::atomic::write_bytes(path, r.to_string()?.as_bytes())
}
