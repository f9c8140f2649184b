//! `repro bisect`: find the commit (or the kernel in a list) where the
//! verdict changes.
//!
//! Git mode drives `git bisect` in the source tree: each revision git
//! checks out is built incrementally (one O= directory per tree, so a step
//! recompiles only what changed), run and judged like `repro check`, and
//! answered with git's own terms: good/bad when hunting a regression,
//! unfixed/fixed when hunting the fix. List mode binary-searches an ordered
//! list of kernels without git.
//!
//! Every step is appended to `<out>/bisect.json` before git hears of it.
//! Rerunning the same command with the same --out resumes: the recorded
//! answers are replayed into a fresh `git bisect start`, which puts git
//! exactly where it was. At the end the first new-term revision and its
//! parent are judged again, and `<out>/bisect.md` tells the whole chain.

use std::path::Path;
use std::time::{Instant, SystemTime};

use anyhow::{bail, Context, Result};

use crate::error::{fail, Kind};
use crate::guest::request::RunRequest;
use crate::judge::bisect_git::git_bisect;
use crate::judge::bisect_state::*;
use crate::judge::judged::judge;
use crate::judge::verdict::Verdict;
use crate::kernel::spec::KernelSpec;
use crate::run::summary::stamp;

/// What `repro bisect` is asked: the two ends (git mode, `run.vm.kernel`
/// a tree) or a list of kernels, and how to run each step.
#[derive(Debug, Clone)]
pub struct BisectRequest {
    /// Hunting a regression: the ends.
    pub good: Option<String>,
    pub bad: Option<String>,
    /// Hunting a fix: the ends.
    pub unfixed: Option<String>,
    pub fixed: Option<String>,
    /// List mode: kernels, oldest first.
    pub kernels: Vec<KernelSpec>,
    /// List mode: hunt the fix.
    pub fix: bool,
    pub run: RunRequest,
}

impl BisectRequest {
    /// The git tree bisected (`--src`), if any.
    fn src(&self) -> Option<&Path> {
        match &self.run.vm.kernel {
            KernelSpec::Tree(dir) => Some(dir),
            _ => None,
        }
    }
}

/// `repro bisect`: the finding, also kept in bisect.json and bisect.md.
pub(crate) fn bisect(args: &BisectRequest, quiet: bool) -> Result<Finding> {
    let (terms, old, new) = match (&args.good, &args.bad, &args.unfixed, &args.fixed) {
        (Some(g), Some(b), None, None) => (Terms::regression(), g.clone(), b.clone()),
        (None, None, Some(u), Some(f)) => (Terms::fix(), u.clone(), f.clone()),
        (None, None, None, None) if !args.kernels.is_empty() && args.src().is_none() => {
            (if args.fix { Terms::fix() } else { Terms::regression() }, String::new(), String::new())
        }
        _ => {
            return Err(fail(
                Kind::Usage,
                "say which end is which: --good OLD --bad NEW to find where a regression came in, or --unfixed OLD --fixed NEW \
                 to find its fix (with --kernels, the list's first and last are the ends; add --fix to hunt a fix)",
            ))
        }
    };
    let date = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let out = args.run.out.clone().unwrap_or_else(|| crate::run::summary::default_dir(&format!("bisect-{}", stamp(&date))));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    if args.src().is_some() && !args.kernels.is_empty() {
        return Err(fail(Kind::Usage, "--src bisects a git tree and --kernels a list of kernels: give one of them"));
    }
    let src = match args.src() {
        Some(s) => Some(s.canonicalize().with_context(|| format!("kernel source {}", s.display()))?),
        None => None,
    };
    let mut state = State {
        version: STATE_VERSION,
        started: date,
        src: src.clone(),
        old,
        new,
        kernels: args.kernels.iter().map(KernelSpec::label).collect(),
        terms,
        scenario: args.run.scenario.label(),
        iterations: args.run.iterations,
        steps: Vec::new(),
        result: None,
    };
    if out.join(STATE).exists() {
        let prev = State::read(&out.join(STATE))?;
        if !prev.same_bisection(&state) {
            return Err(fail(
                Kind::Usage,
                format!("{} holds a different bisection ({} .. {}); give this one another --out", out.display(), prev.old, prev.new),
            ));
        }
        tracing::info!("resuming the bisection in {} ({} steps recorded)", out.display(), prev.steps.len());
        state = prev;
        state.result = None;
    }
    let judge_ctx = Judge { args, out: &out, quiet };
    match &src {
        Some(src) => git_bisect(src, &mut state, judge_ctx.out, |s, rev, subject| judge_ctx.step(s, rev, subject, None))?,
        None => list_bisect(&mut state, &judge_ctx)?,
    };
    save(&state, &out)?;
    crate::text::out(&report(&state));
    state.result.context("the bisection ended without a finding")
}

struct Judge<'a> {
    args: &'a BisectRequest,
    out: &'a Path,
    quiet: bool,
}

impl Judge<'_> {
    /// The kernel a step boots: the revision built (git mode), or the
    /// list's kernel. The inner error is a revision that does not compile (a
    /// skip); the outer, anything that stops the bisection (no compiler, no
    /// tree).
    fn kernel_of(&self, state: &State, rev: &str, kernel: Option<&str>) -> Result<Result<KernelSpec>> {
        match (&state.src, kernel) {
            (Some(src), _) => {
                let extra = self.args.run.scenario.load()?.config;
                let built = crate::kernel::build::build(
                    &crate::kernel::build::Recipe::local(src, self.args.run.vm.cc.as_deref(), &extra),
                    &self.args.run.vm.cache,
                );
                match built {
                    // Boot the image just built: with --src still set, the run would hash the tree again.
                    Ok(img) => Ok(Ok(KernelSpec::Image(img.path))),
                    Err(e) if crate::error::kind_of(&e) != Some(Kind::BuildFailed) => Err(e),
                    Err(e) => Ok(Err(e)),
                }
            }
            (None, Some(k)) => Ok(Ok(KernelSpec::parse(std::ffi::OsStr::new(k)))),
            (None, None) => bail!("nothing to run for {rev}"),
        }
    }

    /// Build (git mode) and run one revision; a build failure is a skip.
    fn step(&self, state: &State, rev: &str, subject: &str, kernel: Option<&str>) -> Result<Step> {
        let n = state.steps.len() + 1;
        let short: String = rev.chars().take(12).collect();
        let slug = crate::kernel::spec::slug(&short);
        let mut run = self.args.run.clone();
        let dir = self.out.join("steps").join(format!("{n:02}-{slug}"));
        // A step directory that bisect.json does not list is what an
        // interrupted step left: this step replaces it.
        if dir.exists() {
            tracing::info!("step {n}: replacing {} left by an interrupted step", dir.display());
            std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        run.out = Some(dir);
        run.json = false;
        let t0 = Instant::now();
        if state.src.is_some() {
            tracing::info!("step {n}: building {short} ({subject})");
        }
        let built = self.kernel_of(state, rev, kernel)?;
        let build_s = t0.elapsed().as_secs_f64();
        let (verdict, dir) = match built {
            Ok(spec) => {
                run.vm.kernel = spec;
                tracing::info!("step {n}: running {short}");
                let j = judge(&run, self.quiet)?;
                (j.verdict, j.dir)
            }
            Err(e) => {
                let msg = crate::error::render(&e);
                crate::text::errln(&format!("error: {msg}"));
                (Verdict::cannot_test(format!("build failed: {}", msg.lines().next().unwrap_or(""))), None)
            }
        };
        let run_s = t0.elapsed().as_secs_f64() - build_s;
        let e = &verdict.evidence;
        let step = Step {
            rev: rev.to_string(),
            subject: subject.to_string(),
            answer: state.terms.answer_for(verdict.outcome),
            outcome: verdict.outcome,
            rule: verdict.rule.clone(),
            build_s,
            run_s,
            residual_per_iteration: e.residual_per_iteration,
            slope_us_per_1k: e.slope_us_per_1k,
            p50_first_us: e.p50_first_us,
            p50_last_us: e.p50_last_us,
            run_dir: dir,
        };
        let msg = format!(
            "step {n}: {short} {}: {} (build {:.0}s, run {:.0}s; {})",
            subject,
            state.terms.word(step.answer),
            build_s,
            run_s,
            step.rule
        );
        if self.quiet {
            crate::text::errln(&msg);
        } else {
            tracing::info!("{msg}");
        }
        Ok(step)
    }
}

/// Binary search over kernels ordered oldest first. Both ends are judged
/// too: a list is a claim, not a git bisect's given.
fn list_bisect(state: &mut State, j: &Judge) -> Result<()> {
    let ks = state.kernels.clone();
    if ks.len() < 2 {
        return Err(fail(Kind::Usage, "--kernels needs at least two kernels, oldest first"));
    }
    let terms = state.terms.clone();
    // Answers so far, by index; a resumed state already holds some.
    let answer = |state: &mut State, i: usize| -> Result<Answer> {
        if let Some(s) = state.steps.iter().find(|s| s.rev == ks[i] && !s.subject.starts_with("re-check")) {
            return Ok(s.answer);
        }
        let step = j.step(state, &ks[i], &format!("kernel {} of {}", i + 1, ks.len()), Some(&ks[i]))?;
        let a = step.answer;
        state.steps.push(step);
        save(state, j.out)?;
        Ok(a)
    };
    let (first, last) = (answer(state, 0)?, answer(state, ks.len() - 1)?);
    if first != Answer::Old || last != Answer::New {
        let f = Finding {
            first_new: None,
            subject: format!(
                "the ends do not bracket a change: {} is {}, {} is {}",
                ks[0],
                terms.word(first),
                ks[ks.len() - 1],
                terms.word(last)
            ),
            candidates: vec![],
            recheck: vec![],
            held: false,
        };
        return state.conclude(f, j.out);
    }
    let (mut lo, mut hi) = (0usize, ks.len() - 1);
    let mut skipped: Vec<usize> = Vec::new();
    loop {
        let open: Vec<usize> = (lo + 1..hi).filter(|i| !skipped.contains(i)).collect();
        if open.is_empty() {
            break;
        }
        let mid = open[open.len() / 2];
        match answer(state, mid)? {
            Answer::Old => lo = mid,
            Answer::New => hi = mid,
            Answer::Skip => skipped.push(mid),
        }
    }
    let between: Vec<usize> = skipped.iter().copied().filter(|i| *i > lo && *i < hi).collect();
    let mut finding = if between.is_empty() {
        Finding { first_new: Some(ks[hi].clone()), subject: format!("after {}", ks[lo]), candidates: vec![], recheck: vec![], held: false }
    } else {
        let mut c: Vec<String> = between.iter().map(|i| ks[*i].clone()).collect();
        c.push(ks[hi].clone());
        Finding { first_new: None, subject: String::new(), candidates: c, recheck: vec![], held: false }
    };
    if finding.first_new.is_some() {
        let mut held = true;
        for (i, want) in [(hi, Answer::New), (lo, Answer::Old)] {
            let step = j.step(state, &ks[i], &format!("re-check: kernel {} of {}", i + 1, ks.len()), Some(&ks[i]))?;
            held &= state.recheck(&mut finding, step, want, j.out)?;
        }
        finding.held = held;
    }
    state.conclude(finding, j.out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::verdict::Outcome;
    use std::path::PathBuf;

    fn state_with(rev: &str, answer: Answer, src: Option<&str>) -> State {
        State {
            version: STATE_VERSION,
            started: String::new(),
            src: src.map(PathBuf::from),
            old: "v4.9.115".into(),
            new: "HEAD".into(),
            kernels: vec!["4.9.119".into(), "4.9.123".into()],
            terms: Terms::fix(),
            scenario: "seed".into(),
            iterations: 1000,
            steps: vec![Step {
                rev: rev.into(),
                subject: String::new(),
                answer,
                outcome: Outcome::Clean,
                rule: String::new(),
                build_s: 0.0,
                run_s: 0.0,
                residual_per_iteration: None,
                slope_us_per_1k: None,
                p50_first_us: None,
                p50_last_us: None,
                run_dir: None,
            }],
            result: None,
        }
    }

    #[test]
    fn a_resumed_state_replays_only_terms_skips_and_full_commit_ids() {
        let sha = "f5382b7a".repeat(5);
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("bisect.json");
        let read = |s: &State| {
            std::fs::write(&p, serde_json::to_string(s).unwrap()).unwrap();
            State::read(&p)
        };
        assert!(read(&state_with(&sha, Answer::New, Some("/src"))).is_ok());
        assert!(read(&state_with(&sha, Answer::Skip, Some("/src"))).is_ok());
        // `git bisect run` would execute the revision as a script: no such answer parses.
        let run = serde_json::to_string(&state_with(&sha, Answer::New, Some("/src"))).unwrap().replace("\"new\"", "\"run\"");
        std::fs::write(&p, run).unwrap();
        let e = State::read(&p).unwrap_err();
        assert_eq!(crate::error::kind_of(&e), Some(Kind::Usage));
        assert!(format!("{e:#}").contains("start over"), "{e:#}");
        for rev in ["HEAD", "f5382b7", "--help", &format!("{sha};rm")] {
            let e = read(&state_with(rev, Answer::New, Some("/src"))).unwrap_err();
            assert!(format!("{e:#}").contains("step 1"), "{rev}: {e:#}");
        }
        // List mode: revisions are the listed kernels.
        assert!(read(&state_with("4.9.123", Answer::New, None)).is_ok());
        assert!(read(&state_with("4.4.178", Answer::New, None)).is_err());
        // A state of another format is named as such, not replayed.
        for version in [1, 999] {
            let mut other = state_with(&sha, Answer::New, Some("/src"));
            other.version = version;
            assert!(format!("{:#}", read(&other).unwrap_err()).contains(&format!("format {version}")));
        }
    }

    #[test]
    fn every_save_leaves_the_report_so_far_beside_the_state() {
        let d = tempfile::tempdir().unwrap();
        let state = state_with(&"ab".repeat(20), Answer::New, Some("/src/linux"));
        save(&state, d.path()).unwrap();
        let md = std::fs::read_to_string(d.path().join(REPORT)).unwrap();
        assert!(md.contains("abababababab"), "{md}");
        assert!(md.contains("Not finished: rerun the same command with the same --out to resume."), "{md}");
        assert!(d.path().join(STATE).is_file());
    }

    #[test]
    fn terms_map_verdicts_both_ways() {
        let r = Terms::regression();
        assert_eq!(r.word(r.answer_for(Outcome::Regressed)), "bad");
        assert_eq!(r.word(r.answer_for(Outcome::Clean)), "good");
        assert_eq!(r.answer_for(Outcome::Inconclusive), Answer::Skip);
        assert_eq!(r.word(Answer::Skip), "skip");
        let f = Terms::fix();
        assert_eq!(f.word(f.answer_for(Outcome::Regressed)), "unfixed");
        assert_eq!(f.word(f.answer_for(Outcome::Clean)), "fixed");
    }
}
