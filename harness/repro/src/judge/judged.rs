//! One run judged: the same path for `check`, `bisect` and `matrix`.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, Result};

use crate::error::{kind_of, Kind};
use crate::guest::execute::execute;
use crate::guest::request::RunRequest;
use crate::guest::stream::Decider;
use crate::judge::verdict::{decide, Verdict};
use crate::run::record::SUMMARY;
use crate::run::summary::{new_summary, run_error};
use crate::text::first_line;

/// A verdict and the run directory it was judged on, if one was written.
pub(crate) struct Judged {
    pub verdict: Verdict,
    pub dir: Option<PathBuf>,
}

/// One run and its verdict (also written to the run directory's
/// verdict.json). What the kernel under test causes (build failure, boot
/// failure, panic, hang, an unfetchable kernel) is an inconclusive verdict:
/// that revision cannot be tested; with `--out`, a run that failed before it
/// began still leaves a summary with its error there. What would fail on any
/// kernel ([`Kind::is_kernel_independent`]) and Ctrl-C are Err: there is
/// nothing to judge.
pub(crate) fn judge(run: &RunRequest, quiet: bool) -> Result<Judged> {
    // Interrupted anywhere (a killed apt-get reads as an unfetchable
    // kernel) is an interrupt, never a verdict on the kernel.
    let any_kernel = |e: &anyhow::Error| crate::interrupt::requested() || kind_of(e).unwrap_or(Kind::Internal).is_kernel_independent();
    // Sequential unless --full: a round that decides ends the churn.
    let early = (!run.full).then_some(crate::judge::verdict::decided_at_round as Decider);
    match execute(run, quiet, early) {
        Ok(mut done) => {
            if let Some(e) = done.error.take() {
                if any_kernel(&e) {
                    return Err(e);
                }
                crate::text::errln(&format!("error: {}", crate::error::render(&e)));
            }
            let verdict = decide(&done.summary, &done.summary.scenario_definition.verdict);
            crate::atomic::write_json(&done.dir.join(Verdict::FILE), &verdict)?;
            Ok(Judged { verdict, dir: Some(done.dir) })
        }
        Err(e) if any_kernel(&e) => Err(e),
        Err(e) => {
            let msg = crate::error::render(&e);
            crate::text::errln(&format!("error: {msg}"));
            match &run.out {
                Some(dir) => {
                    let verdict = record_failure(dir, run, &e)?;
                    Ok(Judged { verdict, dir: Some(dir.clone()) })
                }
                None => Ok(Judged { verdict: Verdict::cannot_test(format!("cannot test: {}", first_line(&msg))), dir: None }),
            }
        }
    }
}

/// A run that failed before it began (kernel fetch or build) still gets a
/// run directory: an incomplete summary with the error, and its verdict.
fn record_failure(dir: &Path, run: &RunRequest, e: &anyhow::Error) -> Result<Verdict> {
    let scenario = run.scenario.load()?;
    let date = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let mut s = new_summary(&date, &run.kernel_label(), scenario, run.iterations, run.workers, run.window());
    s.backend = run.backend;
    s.error = Some(run_error(e));
    // A tree that did not build still has a source to expect a verdict from.
    if let crate::kernel::spec::KernelSpec::Tree(src) = &run.vm.kernel {
        s.kernel.source_fix = crate::kernel::build::read_source_fix(src);
        s.kernel.source_bugs = crate::kernel::build::read_source_bugs(src);
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    crate::atomic::write_json(&dir.join(SUMMARY), &s)?;
    let verdict = decide(&s, &s.scenario_definition.verdict);
    crate::atomic::write_json(&dir.join(Verdict::FILE), &verdict)?;
    Ok(verdict)
}
