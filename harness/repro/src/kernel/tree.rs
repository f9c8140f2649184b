//! Source trees: which exact tree a catalog entry or a local directory is
//! (its identity, part of the image's key), and extracting a catalog tree
//! from its Debian package once, into the cache.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::error::{fail, Kind};
use crate::git::git;
use crate::kernel::apt::{self, AptRoot};
use crate::kernel::cache::{hex_sha256 as hex, Cache};
use crate::kernel::catalog::TreeKind;

/// A stable identity of a catalog tree: which exact source it is.
pub fn tree_identity(name: &str, kind: &TreeKind, cache: &Cache) -> Result<String> {
    match kind {
        TreeKind::DebianSource { suites, package } => {
            let root = apt_root(name, suites, cache)?;
            let resolved = root.update(false).and_then(|()| root.candidate_version(package));
            match resolved {
                Ok(v) => Ok(format!("debian:{package}={v}")),
                Err(e) => {
                    // Offline: the tree fetched before is still the tree.
                    match extracted_trees(cache, name).pop() {
                        Some((id, _)) => {
                            tracing::warn!("apt failed ({e:#}); building the cached source {id}");
                            Ok(id)
                        }
                        None => Err(fail(Kind::KernelUnavailable, format!("cannot resolve {package} with apt: {e:#}"))),
                    }
                }
            }
        }
        TreeKind::Tarball { url, sha256, .. } => {
            Ok(format!("tarball:{url}{}", sha256.as_deref().map(|s| format!("@{s}")).unwrap_or_default()))
        }
    }
}

pub fn apt_root(name: &str, suites: &[String], cache: &Cache) -> Result<AptRoot> {
    let sources = apt::derive_sources(&apt::system_sources(), suites).map_err(|e| fail(Kind::KernelUnavailable, format!("{e:#}")))?;
    AptRoot::create(&cache.root.join("apt").join(format!("src-{name}")), &sources)
}

/// Extracted trees of catalog tree `name`: (identity, directory), oldest first.
pub fn extracted_trees(cache: &Cache, name: &str) -> Vec<(String, PathBuf)> {
    let dir = cache.root.join("src").join(name);
    let mut v: Vec<(std::time::SystemTime, String, PathBuf)> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let id = std::fs::read_to_string(e.path().join(".repro-tree")).ok()?;
            Some((e.metadata().ok()?.modified().ok()?, id.trim().to_string(), e.path().join("linux")))
        })
        .collect();
    v.sort();
    v.into_iter().map(|(_, id, p)| (id, p)).collect()
}

/// Beside an extracted tree: how its download was verified.
pub const VERIFIED: &str = ".repro-verified";

/// How the download of the tree extracted at `src` (its `linux/`) was
/// verified; None for trees that came through apt.
pub fn verified(src: &Path) -> Option<String> {
    std::fs::read_to_string(src.parent()?.join(VERIFIED)).ok()
}

/// The extracted source tree of a catalog tree, fetching it if needed.
pub fn ensure_tree(name: &str, kind: &TreeKind, id: &str, cache: &Cache) -> Result<PathBuf> {
    let id = id.to_string();
    if let Some((_, dir)) = extracted_trees(cache, name).into_iter().find(|(i, _)| *i == id) {
        return Ok(dir);
    }
    let base = cache.root.join("src").join(name);
    std::fs::create_dir_all(&base)?;
    let tmp = tempfile::Builder::new().prefix(".fetch-").tempdir_in(&base)?;
    match kind {
        TreeKind::DebianSource { suites, package } => {
            let root = apt_root(name, suites, cache)?;
            let version = id.rsplit('=').next().unwrap_or_default().to_string();
            tracing::info!("fetching {package} {version} with apt-get download");
            let deb = root.download(package, &version, tmp.path()).map_err(|e| fail(Kind::KernelUnavailable, format!("{e:#}")))?;
            tracing::info!("extracting the kernel source ({})", deb.display());
            crate::kernel::deb::extract_source_tarball(&deb, &tmp.path().join("linux"))?;
            std::fs::remove_file(&deb)?;
        }
        TreeKind::Tarball { url, sha256, key } => {
            let key = crate::kernel::verify::key_text(key.as_deref().unwrap_or("kernel.org"))?;
            let got = crate::kernel::download::fetch(url, sha256.as_deref(), Some(&key), cache)?;
            let file = crate::kernel::download::file_name(url);
            let v = crate::kernel::verify::accept(cache, file, &got.sha256, got.verified)?;
            tracing::info!("extracting {} (sha256 {}, {v})", got.path.display(), got.sha256);
            crate::kernel::download::extract_tarball(&got.path, &tmp.path().join("linux"))?;
            std::fs::write(tmp.path().join(VERIFIED), v.to_string())?;
        }
    }
    std::fs::write(tmp.path().join(".repro-tree"), &id)?;
    let dir = base.join(&hex(id.as_bytes())[..16]);
    std::fs::rename(tmp.keep(), &dir)?;
    Ok(dir.join("linux"))
}

/// A cheap identity of a local tree: its path and, in a git checkout, HEAD
/// plus a hash of the uncommitted diff. Outside git, every build is new
/// (make still rebuilds only what changed).
pub fn local_tree_state(dir: &Path) -> Result<String> {
    match (git(dir, &["rev-parse", "HEAD"]), git(dir, &["diff", "HEAD"])) {
        (Ok(head), Ok(diff)) => Ok(format!("local:{}@{}+{}", dir.display(), head.trim(), &hex(diff.as_bytes())[..16])),
        _ => Ok(format!("local:{}@{}", dir.display(), humantime::format_rfc3339_nanos(std::time::SystemTime::now()))),
    }
}
