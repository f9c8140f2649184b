//! `repro check`.

use anyhow::Result;

use crate::cli::args::CheckArgs;
use repro_proto::exit_codes;

use crate::error::{kind_of, Kind};
use crate::judge::judged::judge;
use crate::kernel::catalog::Catalog;

/// `repro check`: run (`--repeat` times) and judge. Exits 0 clean,
/// 1 regressed, 125 inconclusive or cannot test: `git bisect run`'s contract.
pub(super) fn check(args: &CheckArgs, quiet: bool) -> Result<i32> {
    use crate::judge::verdict::{Outcome, Verdict};
    let repeat = args.repeat.max(1);
    // Refused before the run, not after it: an output that cannot be written is the command line's fault.
    if let Some(path) = &args.junit {
        crate::atomic::check_target(path)?;
    }
    // With --json, stdout carries the summaries; verdict lines go to stderr.
    let say = |line: String| if args.run.json { crate::text::err(&format!("{line}\n")) } else { crate::text::outln(&line) };
    let mut verdicts: Vec<Verdict> = Vec::new();
    let mut cases = Vec::new();
    for i in 1..=repeat {
        let mut run = args.run.request();
        if let (Some(out), true) = (&args.run.out, repeat > 1) {
            run.out = Some(out.join(format!("run-{i}")));
        }
        let j = match judge(&run, quiet) {
            Ok(j) => j,
            Err(e) if matches!(kind_of(&e), Some(Kind::Interrupted | Kind::Usage)) => return Err(e),
            Err(e) => {
                crate::text::errln(&format!("error: {}", crate::error::render(&e)));
                crate::text::errln(&format!(
                    "repro cannot run here whatever the kernel; exiting {} so that git bisect run stops",
                    exit_codes::CANNOT_RUN
                ));
                return Ok(exit_codes::CANNOT_RUN);
            }
        };
        if args.junit.is_some() {
            // The report's own row: the expectation the same way `report` finds it.
            cases.push(match &j.dir {
                Some(dir) => crate::judge::junit::case_of_row(&crate::judge::report::row(dir, &Catalog::builtin()?)?),
                None => crate::judge::junit::case_without_run(&run.vm.kernel.to_string(), &run.scenario.label(), &j.verdict),
            });
        }
        let v = j.verdict;
        say(format!("verdict{}: {} ({})", if repeat > 1 { format!(" {i}/{repeat}") } else { String::new() }, v.outcome.as_str(), v.rule));
        verdicts.push(v);
    }
    if let Some(path) = &args.junit {
        crate::judge::junit::write(path, "repro check", cases)?;
    }
    let first = verdicts[0].outcome;
    let agreed = verdicts.iter().all(|v| v.outcome == first);
    let outcome = if agreed { first } else { Outcome::Inconclusive };
    if repeat > 1 {
        let residuals: Vec<f64> = verdicts.iter().filter_map(|v| v.evidence.residual_per_iteration).collect();
        let spread = match (residuals.iter().cloned().reduce(f64::min), residuals.iter().cloned().reduce(f64::max)) {
            (Some(lo), Some(hi)) => format!("residual per namespace {lo:.2} to {hi:.2}"),
            _ => "no residuals".into(),
        };
        let each: Vec<&str> = verdicts.iter().map(|v| v.outcome.as_str()).collect();
        say(if agreed {
            format!("verdict: {} ({repeat} of {repeat} runs agree; {spread})", outcome.as_str())
        } else {
            format!("verdict: inconclusive (the runs disagree: {}; {spread})", each.join(", "))
        });
    }
    Ok(match (outcome, args.reverse) {
        (Outcome::Clean, false) | (Outcome::Regressed, true) => exit_codes::OK,
        (Outcome::Regressed, false) | (Outcome::Clean, true) => exit_codes::REGRESSED,
        (Outcome::Inconclusive, _) => exit_codes::INCONCLUSIVE,
    })
}
