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
pub(crate) fn tree_identity(name: &str, kind: &TreeKind, cache: &Cache) -> Result<String> {
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

pub(crate) fn apt_root(name: &str, suites: &[String], cache: &Cache) -> Result<AptRoot> {
    let sources = apt::derive_sources(&apt::system_sources(), suites).map_err(|e| fail(Kind::KernelUnavailable, format!("{e:#}")))?;
    AptRoot::create(&cache.root.join("apt").join(format!("src-{name}")), &sources)
}

/// Extracted trees of catalog tree `name`: (identity, directory), oldest first.
pub(crate) fn extracted_trees(cache: &Cache, name: &str) -> Vec<(String, PathBuf)> {
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
pub(crate) const VERIFIED: &str = ".repro-verified";

/// Beside an extracted tree: the same, typed.
pub(crate) const VERIFICATION: &str = ".repro-verification.json";

/// How the download of the tree extracted at `src` (its `linux/`) was
/// verified; None for trees that came through apt.
pub(crate) fn verified(src: &Path) -> Option<String> {
    std::fs::read_to_string(src.parent()?.join(VERIFIED)).ok()
}

/// [`verified`], typed.
pub(crate) fn verification(src: &Path) -> Option<crate::kernel::verify::Verification> {
    serde_json::from_str(&std::fs::read_to_string(src.parent()?.join(VERIFICATION)).ok()?).ok()
}

/// The extracted source tree of a catalog tree, fetching it if needed.
pub(crate) fn ensure_tree(name: &str, kind: &TreeKind, id: &str, cache: &Cache) -> Result<PathBuf> {
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
            std::fs::write(tmp.path().join(VERIFICATION), serde_json::to_vec(&v)?)?;
        }
    }
    std::fs::write(tmp.path().join(".repro-tree"), &id)?;
    let dir = base.join(&hex(id.as_bytes())[..16]);
    std::fs::rename(tmp.keep(), &dir)?;
    Ok(dir.join("linux"))
}

/// A cheap identity of a local tree: its path and, in a git checkout, HEAD
/// plus a hash of the uncommitted diff; outside git, a hash of every
/// file's path, size and mtime (a tarball or snapshot unpacked again with
/// other contents is another tree).
pub(crate) fn local_tree_state(dir: &Path) -> Result<String> {
    match (git(dir, &["rev-parse", "HEAD"]), git(dir, &["diff", "HEAD"])) {
        (Ok(head), Ok(diff)) => Ok(format!("local:{}@{}+{}", dir.display(), head.trim(), &hex(diff.as_bytes())[..16])),
        _ => Ok(format!("local:{}#{}", dir.display(), Listing::of(dir).hash)),
    }
}

/// Every file of a tree by path, size and mtime: what make can see of it.
pub(crate) struct Listing {
    pub hash: String,
    /// The newest mtime of any file.
    pub newest: std::time::SystemTime,
}

impl Listing {
    pub(crate) fn of(dir: &Path) -> Listing {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        let mut newest = std::time::SystemTime::UNIX_EPOCH;
        let mut stack = vec![dir.to_path_buf()];
        let mut entries = Vec::new();
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let Ok(m) = e.metadata() else { continue };
                if m.is_dir() {
                    if e.file_name() != ".git" {
                        stack.push(e.path());
                    }
                } else if m.is_file() {
                    let mtime = m.modified().unwrap_or(std::time::SystemTime::UNIX_EPOCH);
                    newest = newest.max(mtime);
                    let ns = mtime.duration_since(std::time::SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
                    entries.push(format!("{}\0{}\0{ns}\n", e.path().strip_prefix(dir).unwrap_or(&e.path()).display(), m.len()));
                }
            }
        }
        entries.sort();
        for e in &entries {
            h.update(e.as_bytes());
        }
        Listing { hash: format!("{:x}", h.finalize())[..16].to_string(), newest }
    }
}

/// make rebuilds what is newer than its objects. A tree replaced by other
/// contents with older mtimes (an archive unpacked again, keeping its
/// files' dates) changes nothing make can see, and the old objects would
/// be linked: then the output directory starts over.
pub(crate) fn out_dir_is_stale(out: &Path, identity: &str, src: &Path) -> bool {
    let stamp = out.join(".repro-tree");
    let Ok(meta) = std::fs::metadata(&stamp) else {
        // Built by a repro that kept no stamp: which tree is unknown.
        return out.join(".config").exists();
    };
    let same = std::fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == identity);
    let built = meta.modified().unwrap_or(std::time::SystemTime::UNIX_EPOCH);
    !same && Listing::of(src).newest <= built
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set_mtime(p: &Path, secs: u64) {
        let t = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs);
        std::fs::File::options().write(true).open(p).unwrap().set_modified(t).unwrap();
    }

    #[test]
    fn a_tree_replaced_by_older_files_makes_the_output_directory_start_over() {
        let d = tempfile::tempdir().unwrap();
        let (src, out) = (d.path().join("src"), d.path().join("out"));
        std::fs::create_dir_all(src.join("fs")).unwrap();
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(src.join("fs/dcache.c"), "one").unwrap();
        set_mtime(&src.join("fs/dcache.c"), 1_000_000);
        let first = local_tree_state(&src).unwrap();
        assert_eq!(first, local_tree_state(&src).unwrap(), "the same files are the same tree");
        assert!(!out_dir_is_stale(&out, &first, &src), "no build yet");
        std::fs::write(out.join(".config"), "").unwrap();
        assert!(out_dir_is_stale(&out, &first, &src), "a build of an unknown tree");
        std::fs::write(out.join(".repro-tree"), &first).unwrap();
        assert!(!out_dir_is_stale(&out, &first, &src));
        // Unpacked again with other contents and an old date: make would miss it.
        std::fs::write(src.join("fs/dcache.c"), "two!").unwrap();
        set_mtime(&src.join("fs/dcache.c"), 1_000_000);
        let second = local_tree_state(&src).unwrap();
        assert_ne!(first, second);
        assert!(out_dir_is_stale(&out, &second, &src));
        // An edit (a new mtime) is what make sees by itself.
        std::fs::write(src.join("fs/dcache.c"), "three").unwrap();
        assert!(!out_dir_is_stale(&out, &local_tree_state(&src).unwrap(), &src));
    }
}
