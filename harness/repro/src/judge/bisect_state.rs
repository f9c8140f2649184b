//! A bisection's record: `bisect.json` (the terms, the range and every step,
//! validated before a resumed bisection trusts it) and `bisect.md`, the
//! report of the chain of steps and the answer.

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::error::{fail, Kind};
use crate::judge::verdict::Outcome;

pub(crate) const STATE: &str = "bisect.json";
pub(crate) const REPORT: &str = "bisect.md";
/// 2: answers are `old`, `new` or `skip` ([`Answer`]), not git's words.
pub(crate) const STATE_VERSION: u32 = 2;

/// What the two ends of the range are called, git's way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Terms {
    pub old: String,
    pub new: String,
    /// True when hunting a fix: the old state is the regression.
    pub reverse: bool,
}

impl Terms {
    pub(crate) fn regression() -> Terms {
        Terms { old: "good".into(), new: "bad".into(), reverse: false }
    }
    pub(crate) fn fix() -> Terms {
        Terms { old: "unfixed".into(), new: "fixed".into(), reverse: true }
    }
    /// The answer for a verdict: which end the revision is like, or skip.
    pub(crate) fn answer_for(&self, o: Outcome) -> Answer {
        match (o, self.reverse) {
            (Outcome::Inconclusive, _) => Answer::Skip,
            (Outcome::Clean, false) | (Outcome::Regressed, true) => Answer::Old,
            (Outcome::Regressed, false) | (Outcome::Clean, true) => Answer::New,
        }
    }

    /// The word git takes for `a` in this bisection (`good`, `fixed`, `skip`...).
    pub(crate) fn word(&self, a: Answer) -> &str {
        match a {
            Answer::Old => &self.old,
            Answer::New => &self.new,
            Answer::Skip => "skip",
        }
    }
}

/// What one revision was found to be: like the old end, like the new end,
/// or undecided (skipped). Stored as such; git's words come from [`Terms`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Answer {
    Old,
    New,
    Skip,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Step {
    /// Full commit id (git mode) or the kernel as given (list mode).
    pub rev: String,
    pub subject: String,
    /// The answer given ([`Terms::word`] is what git was told).
    pub answer: Answer,
    pub outcome: Outcome,
    pub rule: String,
    pub build_s: f64,
    pub run_s: f64,
    pub residual_per_iteration: Option<f64>,
    pub slope_us_per_1k: Option<f64>,
    pub p50_first_us: Option<f64>,
    pub p50_last_us: Option<f64>,
    pub run_dir: Option<PathBuf>,
}

/// The bisection's parameters, which a resume must match, and its steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct State {
    pub version: u32,
    pub started: String,
    /// The source tree (git mode) or None (list mode).
    pub src: Option<PathBuf>,
    pub old: String,
    pub new: String,
    /// List mode: the kernels, oldest first.
    pub kernels: Vec<String>,
    pub terms: Terms,
    pub scenario: String,
    pub iterations: u64,
    pub steps: Vec<Step>,
    pub result: Option<Finding>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Finding {
    /// The first revision (kernel) in the new state, when one was named.
    pub first_new: Option<String>,
    pub subject: String,
    /// Candidates when skipped revisions leave more than one.
    pub candidates: Vec<String>,
    /// Re-checks of the first new revision and its parent: (rev, answer).
    pub recheck: Vec<(String, Answer)>,
    pub held: bool,
}

impl Finding {
    /// One revision was named and the re-check of it and its parent held.
    pub(crate) fn named(&self) -> bool {
        self.first_new.is_some() && self.held
    }
}

impl State {
    /// A bisect.json read back: outside data, bounded, parsed into the
    /// typed state (an answer other than old, new or skip, as a stored
    /// "run" that git would execute, does not parse), and checked.
    pub(crate) fn read(path: &Path) -> Result<State> {
        let text = crate::input::Input::BisectState.read_text(path)?;
        let refuse = |e: serde_json::Error| {
            fail(
                Kind::Usage,
                format!(
                    "{} is not a bisect state this repro wrote ({e}): remove it, or give this bisection another --out, to start over",
                    path.display()
                ),
            )
        };
        // The format first, so an older state is named as such.
        #[derive(Deserialize)]
        struct Format {
            version: u32,
        }
        let format: Format = serde_json::from_str(&text).map_err(refuse)?;
        if format.version != STATE_VERSION {
            return Err(fail(
                Kind::Usage,
                format!(
                    "{} is a bisect state of format {}, and this repro reads format {STATE_VERSION}: give this bisection another --out",
                    path.display(),
                    format.version
                ),
            ));
        }
        let state: State = serde_json::from_str(&text).map_err(refuse)?;
        state.check_steps(path)?;
        Ok(state)
    }

    /// Every revision must be a full commit id (git mode) or one of the
    /// listed kernels ([`State::read`] has checked the format).
    fn check_steps(&self, path: &Path) -> Result<()> {
        for (i, s) in self.steps.iter().enumerate() {
            let rev_ok = if self.src.is_some() {
                matches!(s.rev.len(), 40 | 64) && s.rev.bytes().all(|b| b.is_ascii_hexdigit())
            } else {
                self.kernels.contains(&s.rev)
            };
            if !rev_ok {
                return Err(fail(
                    Kind::Usage,
                    format!(
                        "{} step {}: {} is not a step repro records (revisions are full commit ids or listed kernels): the file \
                         was edited or is corrupt. Remove it, or give this bisection another --out, to start over",
                        path.display(),
                        i + 1,
                        serde_json::json!({ "rev": s.rev, "answer": s.answer }),
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Record a re-check step; whether it agrees with the answer.
    pub(crate) fn recheck(&mut self, finding: &mut Finding, step: Step, want: Answer, out: &Path) -> Result<bool> {
        let agrees = step.answer == want;
        finding.recheck.push((step.rev.clone(), step.answer));
        self.steps.push(step);
        save(self, out)?;
        Ok(agrees)
    }

    /// Save the finding.
    pub(crate) fn conclude(&mut self, finding: Finding, out: &Path) -> Result<()> {
        self.result = Some(finding);
        save(self, out)
    }

    pub(crate) fn same_bisection(&self, other: &State) -> bool {
        (&self.src, &self.old, &self.new, &self.kernels, &self.terms, &self.scenario, self.iterations)
            == (&other.src, &other.old, &other.new, &other.kernels, &other.terms, &other.scenario, other.iterations)
    }
}

/// Save the state after every step, atomically: a bisection stopped at any
/// point resumes from the last step that finished.
/// bisect.json, and bisect.md as it stands: after every step, because a
/// CI step's timeout kills the process tree without a signal reaching
/// repro, and the report must already be there when that happens.
pub(crate) fn save(state: &State, out: &Path) -> Result<()> {
    crate::atomic::write_json(&out.join(STATE), state)?;
    crate::atomic::write_bytes(&out.join(REPORT), report(state).as_bytes())
}

fn num(x: Option<f64>, d: usize) -> String {
    x.map_or("-".into(), |v| format!("{v:.d$}"))
}

/// The bisect report: parameters, the chain of steps, the answer.
pub(crate) fn report(s: &State) -> String {
    let mut md = String::from("# repro bisect\n\n");
    md.push_str(&parameters(s));
    md.push_str(&steps_table(s));
    md.push_str(&answer(s));
    md.push_str(&with_git_alone(s));
    md
}

/// A revision as the report shows it: a commit shortened, a kernel whole.
fn short(s: &State, r: &str) -> String {
    if s.src.is_some() {
        r.chars().take(12).collect()
    } else {
        r.to_string()
    }
}

fn parameters(s: &State) -> String {
    let short = |r: &str| short(s, r);
    let mut md = String::new();
    match &s.src {
        Some(src) => md.push_str(&format!(
            "Tree {}; {} {} .. {} {}; scenario {}, {} iterations per step; started {}.\n\n",
            src.display(),
            s.terms.old,
            short(&s.old),
            s.terms.new,
            short(&s.new),
            s.scenario,
            s.iterations,
            s.started
        )),
        None => md.push_str(&format!(
            "Kernels, oldest first: {}; terms {}/{}; scenario {}, {} iterations per step; started {}.\n\n",
            s.kernels.join(", "),
            s.terms.old,
            s.terms.new,
            s.scenario,
            s.iterations,
            s.started
        )),
    }
    md
}

fn steps_table(s: &State) -> String {
    let short = |r: &str| short(s, r);
    let mut md = String::new();
    md.push_str("| # | revision | subject | build (s) | run (s) | verdict | answer | residual per ns | slope (us per 1k) | p50 first → last (us) |\n");
    md.push_str("|---|---|---|---|---|---|---|---|---|---|\n");
    for (i, st) in s.steps.iter().enumerate() {
        md.push_str(&format!(
            "| {} | {} | {} | {:.0} | {:.0} | {} | {} | {} | {} | {} → {} |\n",
            i + 1,
            short(&st.rev),
            st.subject.replace('|', "/"),
            st.build_s,
            st.run_s,
            st.outcome.as_str(),
            s.terms.word(st.answer),
            num(st.residual_per_iteration, 2),
            num(st.slope_us_per_1k, 1),
            num(st.p50_first_us, 1),
            num(st.p50_last_us, 1),
        ));
    }
    md.push('\n');
    md
}

fn answer(s: &State) -> String {
    let short = |r: &str| short(s, r);
    let mut md = String::new();
    match &s.result {
        Some(Finding { first_new: Some(r), subject, recheck, held, .. }) => {
            md.push_str(&format!("First {} {}: {} {}\n\n", s.terms.new, if s.src.is_some() { "commit" } else { "kernel" }, r, subject));
            let checks: Vec<String> = recheck.iter().map(|(r, a)| format!("{} is {}", short(r), s.terms.word(*a))).collect();
            md.push_str(&format!(
                "Re-checked: {}. {}\n",
                checks.join(", "),
                if *held { "The answer held." } else { "The answer did NOT hold: the verdicts are not stable at this iteration count; rerun with more iterations or check --repeat." }
            ));
        }
        Some(Finding { candidates, subject, .. }) if !candidates.is_empty() || !subject.is_empty() => {
            if candidates.is_empty() {
                md.push_str(&format!("No answer: {subject}.\n"));
            } else {
                let c: Vec<String> = candidates.iter().map(|c| short(c)).collect();
                md.push_str(&format!(
                    "No single answer: skipped revisions leave these candidates for the first {}: {}\n",
                    s.terms.new,
                    c.join(", ")
                ));
            }
        }
        _ => md.push_str("Not finished: rerun the same command with the same --out to resume.\n"),
    }
    md
}

/// The same bisection with git bisect run and repro check, for a tree.
fn with_git_alone(s: &State) -> String {
    let mut md = String::new();
    if let Some(src) = &s.src {
        md.push_str(&format!(
            "\nThe same with git alone:\n\n    cd {}\n    git bisect start --term-old={} --term-new={} {} {}\n    git bisect run repro check --build . --scenario {} -n {}{}\n",
            src.display(),
            s.terms.old,
            s.terms.new,
            s.new,
            s.old,
            s.scenario,
            s.iterations,
            if s.terms.reverse { " --reverse" } else { "" }
        ));
        if s.terms.reverse {
            md.push_str(
                "\n(`--reverse` makes repro check exit 0 on the regressed, old state, as git bisect run needs when hunting a fix.)\n",
            );
        }
    }
    md
}
