//! The images built from source in the cache: an entry directory per key
//! holding the bzImage and its build.json ([`BuildInfo`]), installed by a
//! rename (an interrupted build never leaves a half-written entry), read
//! back only if the image's hash matches, and the directories of killed
//! builds swept.

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::kernel::cache::{sha256_file, KernelImage, Origin};
use repro_proto::{BuildProvenance, SourceFix};

/// What the cache records beside each built image.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct BuildInfo {
    pub name: String,
    pub tree: String,
    /// The tree's version, from its Makefile.
    #[serde(default)]
    pub version: String,
    /// The era of vm-images/eras.toml it was built by.
    #[serde(default)]
    pub era: String,
    /// Compatibility fixes applied, then the entry's own patches.
    pub patches: Vec<String>,
    /// Every compatibility fix: applied (what it found) or not needed (why).
    #[serde(default)]
    pub fixes: Vec<String>,
    /// The fix the tree's fs/proc/proc_sysctl.c has, after the patches.
    #[serde(default)]
    pub source_fix: Option<SourceFix>,
    /// Whether the tree has each sibling bug, after the patches (absent in
    /// entries built before repro read them).
    #[serde(default)]
    pub source_bugs: repro_proto::SourceBugs,
    pub config: String,
    /// Fragment options this tree's Kconfig does not define.
    #[serde(default)]
    pub config_skipped: Vec<String>,
    /// The compiler's `--version` line.
    pub cc: String,
    /// Where the compiler came from (host, PATH, fetched packages).
    #[serde(default)]
    pub cc_origin: String,
    /// The make variables (CC with its flags, LD...).
    #[serde(default)]
    pub make_vars: Vec<String>,
    pub release: String,
    pub key: String,
    pub image_sha256: String,
    pub build_seconds: f64,
    /// How the tree's download was verified (a tarball); None otherwise.
    #[serde(default)]
    pub tree_verified: Option<String>,
    /// The same, typed.
    #[serde(default)]
    pub tree_verification: Option<crate::kernel::verify::Verification>,
}

impl BuildInfo {
    /// Put the bzImage and its build.json into the image cache's `entry`,
    /// atomically (a directory renamed into place), with the image's hash.
    pub(crate) fn install(mut self, images: &Path, entry: &Path, bz: &Path) -> Result<()> {
        std::fs::create_dir_all(images)?;
        let tmp = tempfile::Builder::new().prefix(".build-").tempdir_in(images)?;
        std::fs::copy(bz, tmp.path().join("bzImage")).with_context(|| format!("copying {}", bz.display()))?;
        crate::kernel::cache::check_bzimage(&tmp.path().join("bzImage"))?;
        self.image_sha256 = sha256_file(&tmp.path().join("bzImage"))?;
        std::fs::write(tmp.path().join("build.json"), serde_json::to_vec_pretty(&self)?)?;
        if entry.exists() {
            std::fs::remove_dir_all(entry)?;
        }
        std::fs::rename(tmp.keep(), entry).with_context(|| format!("installing {}", entry.display()))?;
        tracing::info!("built {} ({}) in {:.0}s", self.name, self.release, self.build_seconds);
        Ok(())
    }
}

/// The most recently built image of catalog entry `name`, if any.
pub(crate) fn newest_built(images: &Path, name: &str) -> Result<Option<KernelImage>> {
    let prefix = format!("{name}-");
    let is_entry = |e: &std::fs::DirEntry| {
        let n = e.file_name();
        let key = n.to_str().and_then(|n| n.strip_prefix(&prefix));
        key.is_some_and(|k| k.len() == 16 && k.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    match crate::kernel::cache::newest_entry(images, is_entry) {
        Some(entry) => load_built(&entry, name),
        None => Ok(None),
    }
}

pub(crate) fn load_built(entry: &Path, name: &str) -> Result<Option<KernelImage>> {
    let Ok(text) = std::fs::read_to_string(entry.join("build.json")) else {
        return Ok(None);
    };
    let info: BuildInfo = serde_json::from_str(&text).with_context(|| format!("reading {}/build.json", entry.display()))?;
    let path = entry.join("bzImage");
    if sha256_file(&path).ok().as_deref() != Some(info.image_sha256.as_str()) {
        tracing::warn!("cached build {} is corrupt; building it again", entry.display());
        std::fs::remove_dir_all(entry)?;
        return Ok(None);
    }
    Ok(Some(KernelImage {
        fallback: None,
        build: Some(BuildProvenance {
            version: info.version.clone(),
            era: info.era.clone(),
            cc: format!("{} ({})", info.cc, info.cc_origin),
            make_vars: info.make_vars.clone(),
            fixes: info.fixes.clone(),
        }),
        source_fix: info.source_fix,
        source_bugs: info.source_bugs,
        verified: info.tree_verified.clone(),
        verification: info.tree_verification.clone(),
        name: name.to_string(),
        sha256: info.image_sha256,
        origin: Origin::Build {
            recipe: format!(
                "{}{}+{} ({})",
                info.tree,
                info.patches.iter().map(|p| format!("+{p}")).collect::<String>(),
                info.config,
                info.cc
            ),
        },
        path,
    }))
}

/// A `.build-*` directory this old in the images directory was left by a
/// build that was killed before renaming its image into place (another
/// tree's build, under another lock, may be writing a fresh one).
pub(crate) const ABANDONED_AFTER: std::time::Duration = std::time::Duration::from_secs(6 * 3600);

pub(crate) fn sweep_abandoned(images: &Path, older_than: std::time::Duration) {
    for e in std::fs::read_dir(images).into_iter().flatten().flatten() {
        let old = e.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok()).is_some_and(|age| age >= older_than);
        if e.file_name().to_string_lossy().starts_with(".build-") && old {
            tracing::debug!("removing {} left by an interrupted build", e.path().display());
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_abandoned_build_directories_are_swept() {
        let d = tempfile::tempdir().unwrap();
        for n in [".build-old", "6.1-src-0123456789abcdef"] {
            std::fs::create_dir(d.path().join(n)).unwrap();
        }
        sweep_abandoned(d.path(), std::time::Duration::from_secs(3600));
        assert!(d.path().join(".build-old").exists(), "a fresh one may be another build's");
        sweep_abandoned(d.path(), std::time::Duration::ZERO);
        assert!(!d.path().join(".build-old").exists() && d.path().join("6.1-src-0123456789abcdef").exists());
    }
}
