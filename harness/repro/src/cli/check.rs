//! `repro check`.

use anyhow::Result;

use crate::cli::args::CheckArgs;
use repro_proto::exit_codes;

use crate::judge::check::CheckEnd;
use crate::judge::verdict::Outcome;

/// `repro check`: run (`--repeat` times) and judge ([`crate::judge::check`]).
/// Exits 0 clean, 1 regressed, 125 inconclusive or cannot test: `git bisect
/// run`'s contract (`--reverse` swaps 0 and 1 for a search for a fix).
pub(super) fn check(args: &CheckArgs, quiet: bool) -> Result<i32> {
    // Refused before the run, not after it: an output that cannot be written is the command line's fault.
    if let Some(path) = &args.junit {
        crate::atomic::check_target(path)?;
    }
    // With --json, stdout carries the summaries; verdict lines go to stderr.
    let say = |line: String| if args.run.json { crate::text::errln(&line) } else { crate::text::outln(&line) };
    if args.suite {
        return suite(args, quiet, say);
    }
    let req = args.request()?;
    let n = req.repeat;
    let end = crate::judge::check::check(&req, quiet, |i, v| {
        say(format!("verdict{}: {} ({})", if n > 1 { format!(" {i}/{n}") } else { String::new() }, v.outcome.as_str(), v.rule));
    })?;
    let repeats = match end {
        CheckEnd::Judged(r) => r,
        CheckEnd::CannotRun(e) => {
            crate::text::errln(&format!("error: {}", crate::error::render(&e)));
            crate::text::errln(&format!(
                "repro cannot run here whatever the kernel; exiting {} so that git bisect run stops",
                exit_codes::CANNOT_RUN
            ));
            return Ok(exit_codes::CANNOT_RUN);
        }
    };
    if n > 1 {
        say(repeats.summary());
    }
    Ok(match (repeats.outcome(), args.reverse) {
        (Outcome::Clean, false) | (Outcome::Regressed, true) => exit_codes::OK,
        (Outcome::Regressed, false) | (Outcome::Clean, true) => exit_codes::REGRESSED,
        (Outcome::Inconclusive, _) => exit_codes::INCONCLUSIVE,
    })
}

/// `repro check --suite`: every bug's verdict as it comes, then the table;
/// exit 1 if any bug is regressed, 125 if none is and any is inconclusive.
fn suite(args: &CheckArgs, quiet: bool, say: impl Fn(String)) -> Result<i32> {
    let req = args.suite_request()?;
    let end = crate::judge::suite::suite(&req, quiet, |l| {
        say(format!("{}: {} ({})", l.bug.name(), l.verdict.outcome.as_str(), l.verdict.rule));
    })?;
    say(String::new());
    for line in end.table() {
        say(line);
    }
    Ok(match end.outcome() {
        Outcome::Clean => exit_codes::OK,
        Outcome::Regressed => exit_codes::REGRESSED,
        Outcome::Inconclusive => exit_codes::INCONCLUSIVE,
    })
}
