//! Changes to a shared work tree: patches applied with `git apply` and the
//! compatibility fixes' edits, each after saving a pristine copy of every
//! file it touches (or its mode), and undone by restoring those copies
//! before the next build (also after an interrupted one).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::error::{fail, Kind};
use crate::kernel::compat::Edit;

/// Files a unified diff changes (its `+++ b/...` lines).
pub(crate) fn patched_files(patch: &str) -> Vec<String> {
    patch
        .lines()
        .filter_map(|l| l.strip_prefix("+++ "))
        .map(|p| p.split('\t').next().unwrap_or(p).trim())
        .filter(|p| *p != "/dev/null")
        .map(|p| p.strip_prefix("b/").unwrap_or(p).to_string())
        .collect()
}

/// A copy of `from` at `to` with `from`'s modification time: a tree given
/// back after a build looks as it did, to make and to the cache key of a
/// tree without git (its files' sizes and mtimes), so the next build of the
/// same tree is a cache hit, not a full rebuild.
fn copy_with_mtime(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::copy(from, to)?;
    let mtime = std::fs::metadata(from)?.modified()?;
    std::fs::OpenOptions::new().write(true).open(to)?.set_modified(mtime)
}

/// Keep a pristine copy of `rel` (or a marker that it did not exist).
fn save(src: &Path, pristine: &Path, rel: &Path) -> Result<()> {
    let saved = pristine.join(rel);
    if !saved.exists() && !absent_marker(&saved).exists() {
        std::fs::create_dir_all(saved.parent().unwrap())?;
        let orig = src.join(rel);
        if orig.exists() {
            copy_with_mtime(&orig, &saved).with_context(|| format!("saving {}", orig.display()))?;
        } else {
            // Created by the change: restoring means deleting it.
            std::fs::write(absent_marker(&saved), b"")?;
        }
    }
    Ok(())
}

/// Save what a compatibility fix's edits touch, then make them.
pub(crate) fn apply_edits(src: &Path, pristine: &Path, edits: &[Edit]) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for e in edits {
        match e {
            Edit::Write { path, text } => {
                save(src, pristine, path)?;
                // A new file renamed into place, never a write through the old
                // one: trees made with `cp -al` share their files' inodes.
                let file = src.join(path);
                let dir = file.parent().unwrap_or(src);
                let mut tmp = tempfile::Builder::new().prefix(".repro-edit-").tempfile_in(dir)?;
                std::io::Write::write_all(&mut tmp, text.as_bytes())?;
                if let Ok(meta) = std::fs::metadata(&file) {
                    tmp.as_file().set_permissions(meta.permissions())?;
                }
                tmp.persist(&file).map_err(|e| e.error).with_context(|| format!("writing {}", file.display()))?;
            }
            Edit::MakeExecutable { path } => {
                let file = src.join(path);
                let mode = std::fs::metadata(&file)?.permissions().mode() & 0o7777;
                let marker = mode_marker(&pristine.join(path));
                if !marker.exists() {
                    std::fs::create_dir_all(marker.parent().unwrap())?;
                    std::fs::write(&marker, format!("{mode:o}"))?;
                }
                let x = mode | ((mode & 0o444) >> 2);
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(x))
                    .with_context(|| format!("giving {} its run bits", file.display()))?;
            }
        }
    }
    Ok(())
}

/// Save pristine copies of the files `patch` touches, then apply it.
pub(crate) fn apply_patch(src: &Path, pristine: &Path, name: &str, text: &str) -> Result<()> {
    for f in patched_files(text) {
        save(src, pristine, Path::new(&f))?;
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

pub(crate) const ABSENT: &str = ".repro-absent";
pub(crate) const MODE: &str = ".repro-mode";

/// Holds the mode a fix changed: restoring means setting it back.
fn mode_marker(saved: &Path) -> PathBuf {
    let mut name = saved.as_os_str().to_owned();
    name.push(MODE);
    PathBuf::from(name)
}

/// Marks a file the patch creates: restoring means deleting it.
pub(crate) fn absent_marker(saved: &Path) -> PathBuf {
    let mut name = saved.as_os_str().to_owned();
    name.push(ABSENT);
    PathBuf::from(name)
}

/// Put back every file saved by [`apply_patch`]: the tree is as fetched.
/// Restored files get a new mtime, so make recompiles them.
pub(crate) fn restore_pristine(src: &Path, pristine: &Path) -> Result<()> {
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
            } else if let Some(file) = rel.to_str().and_then(|r| r.strip_suffix(MODE)) {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::read_to_string(&p).ok().and_then(|m| u32::from_str_radix(m.trim(), 8).ok());
                if let Some(mode) = mode {
                    let _ = std::fs::set_permissions(src.join(file), std::fs::Permissions::from_mode(mode & 0o7777));
                }
            } else {
                copy_with_mtime(&p, &src.join(rel)).with_context(|| format!("restoring {}", rel.display()))?;
            }
        }
    }
    std::fs::remove_dir_all(pristine)?;
    Ok(())
}

/// `git apply ARGS PATCH` in `src`, the patch from a temporary file; outside
/// a git checkout, git apply works on the plain files.
pub(crate) fn git_apply(src: &Path, args: &[&str], patch: &str) -> Result<std::process::Output> {
    let mut file = tempfile::Builder::new().prefix("repro-").suffix(".patch").tempfile()?;
    std::io::Write::write_all(&mut file, patch.as_bytes())?;
    let mut cmd = Command::new("git");
    cmd.arg("apply").args(args).arg(file.path()).current_dir(src).env("GIT_CEILING_DIRECTORIES", src.parent().unwrap_or(src));
    crate::child::output(&mut cmd, "git apply", std::time::Duration::from_secs(300)).map_err(|e| match crate::error::kind_of(&e) {
        Some(_) => e,
        None => fail(Kind::KernelUnavailable, format!("cannot run git to apply patches ({e:#}): apt-get install git")),
    })
}
