//! `repro bisect` in git mode: git bisect driven one step at a time in the
//! user's clean checkout, each revision built and judged, the answer then
//! re-checked on the first new revision and its parent. What git says is
//! read by [`parse_git_bisect`]; only a bisection repro started is ended.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::error::{fail, Kind};
use crate::git::{git, subject_of};
use crate::judge::bisect_state::*;

/// What `git bisect` said after an answer.
#[derive(Debug, PartialEq)]
pub enum GitSays {
    /// Test the checked-out revision next.
    Continue,
    /// "<sha> is the first <new> commit".
    Found(String),
    /// Only skipped commits are left; the first new one is among these.
    OnlySkipped(Vec<String>),
}

/// Read git bisect's answer (stdout of `git bisect <term>` or `start`).
pub fn parse_git_bisect(text: &str, new_term: &str) -> GitSays {
    let found = format!(" is the first {new_term} commit");
    if let Some(line) = text.lines().find(|l| l.contains(&found)) {
        return GitSays::Found(line.split_whitespace().next().unwrap_or_default().to_string());
    }
    if text.contains("only 'skip'ped commits left") {
        let shas = text
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|w| w.len() >= 40 && w.chars().all(|c| c.is_ascii_hexdigit()))
            .map(String::from)
            .collect();
        return GitSays::OnlySkipped(shas);
    }
    GitSays::Continue
}

/// Whether `git bisect log` shows the bisection repro starts for these
/// terms and ends (`git bisect start --term-old=.. --term-new=.. NEW OLD`).
fn started_here(log: &str, terms: &Terms, old: &str, new: &str) -> bool {
    log.lines().find(|l| l.starts_with("git bisect start")).is_some_and(|start| {
        start.contains(&format!("--term-old={}", terms.old))
            && start.contains(&format!("--term-new={}", terms.new))
            && start.contains(old)
            && start.contains(new)
    })
}

/// Check that `src` is a clean git checkout with the state's two ends as
/// commits, and end an interrupted bisection this state started (never
/// the user's own). Returns the ends as full hashes.
fn prepare_checkout(src: &Path, state: &State) -> Result<(String, String)> {
    git(src, &["rev-parse", "--git-dir"]).map_err(|_| {
        fail(
            Kind::Usage,
            format!("{} is not a git checkout: repro bisect --src needs the kernel's git history (or use --kernels)", src.display()),
        )
    })?;
    let dirty = git(src, &["status", "--porcelain", "--untracked-files=no"])?;
    if !dirty.trim().is_empty() {
        return Err(fail(
            Kind::Usage,
            format!(
                "{} has uncommitted changes; git bisect would carry them into every revision. Commit or stash them first",
                src.display()
            ),
        ));
    }
    let (old, new) = (resolve(src, &state.old)?, resolve(src, &state.new)?);
    let git_dir = PathBuf::from(git(src, &["rev-parse", "--absolute-git-dir"])?.trim());
    if git_dir.join("BISECT_START").exists() {
        // Only a bisection this state started (an interrupted one) is
        // replaced; the user's own is theirs to end.
        let log = git(src, &["bisect", "log"]).unwrap_or_default();
        if state.steps.is_empty() || !started_here(&log, &state.terms, &old, &new) {
            return Err(fail(
                Kind::Usage,
                format!(
                    "a git bisect that repro did not start is in progress in {}: finish it, or end it with `git bisect reset`, \
                     then run repro bisect again",
                    src.display()
                ),
            ));
        }
        git(src, &["bisect", "reset"])?;
    }
    Ok((old, new))
}

/// A revision of `src` as a commit's full hash; anything else is a usage error.
fn resolve(src: &Path, rev: &str) -> Result<String> {
    git(src, &["rev-parse", "--verify", &format!("{rev}^{{commit}}")])
        .map(|s| s.trim().to_string())
        .map_err(|_| fail(Kind::Usage, format!("{rev:?} is not a commit in {}", src.display())))
}

/// Git mode: git bisect driven one step at a time (the state's steps
/// replayed first), its answer then judged again on the first new revision
/// and its parent.
pub(super) fn git_bisect(src: &Path, state: &mut State, out: &Path, judge: impl Fn(&State, &str, &str) -> Result<Step>) -> Result<()> {
    let (old, new) = prepare_checkout(src, state)?;
    // Whatever happens from here on (the replay included), give the tree
    // back on its branch.
    struct Reset<'a>(&'a Path);
    impl Drop for Reset<'_> {
        fn drop(&mut self) {
            let _ = git(self.0, &["bisect", "reset"]);
        }
    }
    let _reset = Reset(src);
    let terms = state.terms.clone();
    let mut said = git(src, &["bisect", "start", &format!("--term-old={}", terms.old), &format!("--term-new={}", terms.new), &new, &old])?;
    for s in &state.steps {
        said = git(src, &["bisect", terms.word(s.answer), &s.rev])?;
    }
    let finding = loop {
        match parse_git_bisect(&said, &terms.new) {
            GitSays::Found(sha) => {
                break Finding { subject: subject_of(src, &sha), first_new: Some(sha), candidates: vec![], recheck: vec![], held: false }
            }
            GitSays::OnlySkipped(c) => {
                break Finding { first_new: None, subject: String::new(), candidates: c, recheck: vec![], held: false }
            }
            GitSays::Continue => {}
        }
        let head = git(src, &["rev-parse", "HEAD"])?.trim().to_string();
        let step = judge(state, &head, &subject_of(src, &head))?;
        state.steps.push(step);
        save(state, out)?;
        let answer = state.steps.last().map_or(Answer::Skip, |s| s.answer);
        said = git(src, &["bisect", terms.word(answer)])?;
    };
    let log = git(src, &["bisect", "log"]).unwrap_or_default();
    std::fs::write(out.join("git-bisect.log"), log)?;
    git(src, &["bisect", "reset"])?;
    let mut finding = finding;
    if let Some(first) = finding.first_new.clone() {
        // Judge the answer again: the first new revision, then its parent.
        let parent = resolve(src, &format!("{first}^"))?;
        let orig = git(src, &["rev-parse", "HEAD"])?.trim().to_string();
        let orig_ref = git(src, &["symbolic-ref", "-q", "--short", "HEAD"]).map(|s| s.trim().to_string()).unwrap_or_default();
        let mut held = true;
        for (rev, want) in [(&first, Answer::New), (&parent, Answer::Old)] {
            git(src, &["checkout", "-q", "--detach", rev])?;
            let step = judge(state, rev, &format!("re-check: {}", subject_of(src, rev)));
            let back = if orig_ref.is_empty() { orig.clone() } else { orig_ref.clone() };
            git(src, &["checkout", "-q", &back])?;
            held &= state.recheck(&mut finding, step?, want, out)?;
        }
        finding.held = held;
    }
    state.conclude(finding, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_bisection_repro_started_is_taken_for_its_own() {
        let (old, new) = ("a".repeat(40), "b".repeat(40));
        let ours = format!("git bisect start '--term-old=unfixed' '--term-new=fixed' '{new}' '{old}'\n# fixed: [{new}] x\n");
        assert!(started_here(&ours, &Terms::fix(), &old, &new));
        let users = format!("git bisect start\n# bad: [{new}] x\ngit bisect bad {new}\n");
        assert!(!started_here(&users, &Terms::fix(), &old, &new));
        assert!(!started_here(&ours, &Terms::regression(), &old, &new), "other terms");
        assert!(!started_here(&ours, &Terms::fix(), &"c".repeat(40), &new), "other ends");
        assert!(!started_here("", &Terms::fix(), &old, &new));
    }

    #[test]
    fn git_bisect_output_is_read() {
        let found = "abc0123456789abc0123456789abc0123456789a is the first bad commit\ncommit abc...\n";
        assert_eq!(parse_git_bisect(found, "bad"), GitSays::Found("abc0123456789abc0123456789abc0123456789a".into()));
        assert_eq!(
            parse_git_bisect("Bisecting: 3 revisions left to test after this (roughly 2 steps)\n[abc] x\n", "bad"),
            GitSays::Continue
        );
        let fixed = "0123456789012345678901234567890123456789 is the first fixed commit\n";
        assert!(matches!(parse_git_bisect(fixed, "fixed"), GitSays::Found(_)));
        let skipped = "There are only 'skip'ped commits left to test.\nThe first bad commit could be any of:\n\
                       1111111111111111111111111111111111111111\n2222222222222222222222222222222222222222\n\
                       We cannot bisect more!\n";
        assert_eq!(parse_git_bisect(skipped, "bad"), GitSays::OnlySkipped(vec!["1".repeat(40), "2".repeat(40)]));
    }
}
