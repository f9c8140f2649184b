//! git, run the one way repro runs it: in a given tree, output captured, a
//! failure reported with git's own words.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

/// `git -C dir ARGS`: its stdout, or an error with what git said.
pub(crate) fn git(dir: &Path, args: &[&str]) -> Result<String> {
    tracing::debug!("git -C {} {}", dir.display(), args.join(" "));
    // A git of a kernel tree can take minutes (a checkout), never hours.
    let o = crate::child::output(Command::new("git").arg("-C").arg(dir).args(args), "git", std::time::Duration::from_secs(3600))
        .context("running git (is it installed?)")?;
    if !o.status.success() {
        let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        bail!("git {} failed in {}: {}", args.join(" "), dir.display(), text.trim());
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// The subject line of commit `rev`, or "" when git cannot say.
pub(crate) fn subject_of(dir: &Path, rev: &str) -> String {
    git(dir, &["log", "-1", "--format=%s", rev]).map(|s| s.trim().to_string()).unwrap_or_default()
}
