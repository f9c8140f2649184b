//! Patches on a shared work tree: applied with `git apply` after saving a
//! pristine copy of every file they touch, and undone by restoring those
//! copies before the next build (also after an interrupted one).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result};

use crate::error::{fail, Kind};

/// Files a unified diff changes (its `+++ b/...` lines).
pub fn patched_files(patch: &str) -> Vec<String> {
    patch
        .lines()
        .filter_map(|l| l.strip_prefix("+++ "))
        .map(|p| p.split('\t').next().unwrap_or(p).trim())
        .filter(|p| *p != "/dev/null")
        .map(|p| p.strip_prefix("b/").unwrap_or(p).to_string())
        .collect()
}

/// Save pristine copies of the files `patch` touches, then apply it.
pub fn apply_patch(src: &Path, pristine: &Path, name: &str, text: &str) -> Result<()> {
    for f in patched_files(text) {
        let saved = pristine.join(&f);
        if !saved.exists() && !absent_marker(&saved).exists() {
            std::fs::create_dir_all(saved.parent().unwrap())?;
            let orig = src.join(&f);
            if orig.exists() {
                std::fs::copy(&orig, &saved).with_context(|| format!("saving {}", orig.display()))?;
            } else {
                // Created by the patch: restoring means deleting it.
                std::fs::write(absent_marker(&saved), b"")?;
            }
        }
    }
    let out = git_apply(src, &["--whitespace=nowarn"], text)?;
    if !out.status.success() {
        return Err(fail(
            Kind::BuildFailed,
            format!(
                "patch {name} no longer applies to {}: {} (the patch is vm-images/patches/{name}; rebase it on this tree)",
                src.display(),
                String::from_utf8_lossy(&out.stderr).trim().replace('\n', "; ")
            ),
        ));
    }
    Ok(())
}

pub const ABSENT: &str = ".repro-absent";

/// Marks a file the patch creates: restoring means deleting it.
pub fn absent_marker(saved: &Path) -> PathBuf {
    let mut name = saved.as_os_str().to_owned();
    name.push(ABSENT);
    PathBuf::from(name)
}

/// Put back every file saved by [`apply_patch`]: the tree is as fetched.
/// Restored files get a new mtime, so make recompiles them.
pub fn restore_pristine(src: &Path, pristine: &Path) -> Result<()> {
    if !pristine.exists() {
        return Ok(());
    }
    let mut stack = vec![pristine.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir)?.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let rel = p.strip_prefix(pristine).unwrap();
            if let Some(created) = rel.to_str().and_then(|r| r.strip_suffix(ABSENT)) {
                let _ = std::fs::remove_file(src.join(created));
            } else {
                std::fs::copy(&p, src.join(rel)).with_context(|| format!("restoring {}", rel.display()))?;
            }
        }
    }
    std::fs::remove_dir_all(pristine)?;
    Ok(())
}

/// Whether `patch` applies to the tree as it is now (`git apply --check`).
pub fn patch_applies(src: &Path, patch: &str) -> bool {
    git_apply(src, &["--check"], patch).is_ok_and(|o| o.status.success())
}

/// `git apply ARGS -` in `src` with `patch` on stdin; outside a git
/// checkout, git apply works on the plain files.
pub fn git_apply(src: &Path, args: &[&str], patch: &str) -> Result<std::process::Output> {
    let mut child = Command::new("git")
        .arg("apply")
        .args(args)
        .arg("-")
        .current_dir(src)
        .env("GIT_CEILING_DIRECTORIES", src.parent().unwrap_or(src))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(Kind::KernelUnavailable, format!("cannot run git to apply patches ({e}): apt-get install git")))?;
    std::io::Write::write_all(child.stdin.as_mut().expect("piped stdin"), patch.as_bytes())?;
    drop(child.stdin.take());
    Ok(child.wait_with_output()?)
}
