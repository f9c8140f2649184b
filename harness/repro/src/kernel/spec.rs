//! `--kernel`, decided once: a catalog name, a bzImage on disk, or a source
//! tree to build. Every command that takes kernels (run, check, exec,
//! matrix, bisect) parses them into a [`KernelSpec`] and resolves it here to
//! a [`KernelImage`], whose path goes to QEMU's `-kernel` unchanged.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::error::Kind;
use crate::kernel::apt::Distro;
use crate::kernel::build::{self, Recipe};
use crate::kernel::cache::{check_bzimage, sha256_file, Cache, KernelImage, Origin};
use crate::kernel::catalog::{Catalog, Entry, Source};
use crate::kernel::packaged;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelSpec {
    /// A catalog entry or alias (`repro kernels`).
    Catalog(String),
    /// An x86 bzImage on disk.
    Image(PathBuf),
    /// A kernel source tree, built by its era (`--src`).
    Tree(PathBuf),
}

impl KernelSpec {
    /// A path or a name, by [`crate::input::names_a_path`].
    pub fn parse(arg: &OsStr) -> KernelSpec {
        if crate::input::names_a_path(arg) {
            KernelSpec::Image(Path::new(arg).to_path_buf())
        } else {
            KernelSpec::Catalog(arg.to_string_lossy().into_owned())
        }
    }

    /// The kernel's name in summaries and reports: the catalog name, the
    /// image's path, or `src:DIR`.
    pub fn label(&self) -> String {
        match self {
            KernelSpec::Catalog(n) => n.clone(),
            KernelSpec::Image(p) => p.display().to_string(),
            KernelSpec::Tree(d) => format!("src:{}", d.display()),
        }
    }

    /// The kernel's part of a run directory's name: a catalog name whole
    /// ("6.1" has no file stem to speak of), a path by its file name, with
    /// path-hostile characters replaced.
    pub fn slug(&self) -> String {
        match self {
            KernelSpec::Catalog(n) => slug(n),
            KernelSpec::Image(p) | KernelSpec::Tree(p) => slug(&p.file_name().unwrap_or(p.as_os_str()).to_string_lossy()),
        }
    }

    /// Fetch, build or check the image; `cc` is the compiler for builds. A
    /// fetch or build that failed on a full or read-only cache is the
    /// environment's failure, not the kernel's.
    /// `extra_config`: fragments a tree on disk is built with after its
    /// era's (the scenario's `config`); a catalog entry's config is its own.
    pub fn resolve(&self, catalog: &Catalog, cache: &Cache, cc: Option<&str>, extra_config: &[String]) -> Result<KernelImage> {
        let image = self.resolve_in(catalog, cache, cc, extra_config).map_err(|e| crate::error::with_room_check(e, &cache.root))?;
        crate::kernel::verify::admit(cache, &image)?;
        Ok(image)
    }

    fn resolve_in(&self, catalog: &Catalog, cache: &Cache, cc: Option<&str>, extra_config: &[String]) -> Result<KernelImage> {
        match self {
            KernelSpec::Image(p) => {
                check_bzimage(p)?;
                let path = p.canonicalize().with_context(|| format!("resolving {}", p.display()))?;
                Ok(KernelImage {
                    fallback: None,
                    name: self.label(),
                    sha256: sha256_file(&path)?,
                    origin: Origin::Path(path.clone()),
                    path,
                    verified: None,
                    verification: None,
                    build: None,
                    source_fix: None,
                    source_bugs: Default::default(),
                })
            }
            KernelSpec::Tree(dir) => build::build(&Recipe::local(dir, cc, extra_config), cache),
            KernelSpec::Catalog(name) => {
                let entry = catalog.lookup(name)?;
                match (fetch_entry(catalog, entry, cache, cc), &entry.fallback) {
                    // Only a source that cannot be had; a refused download never falls back.
                    // Not after a signal: apt-get killed by Ctrl-C reads as a source that cannot be had.
                    (Err(e), Some(alt)) if crate::error::kind_of(&e) == Some(Kind::KernelUnavailable) && !crate::interrupt::requested() => {
                        let alt = catalog.lookup(alt)?;
                        let why = crate::error::render(&e).lines().next().unwrap_or_default().to_string();
                        tracing::warn!("{why}; using the catalog's fallback for {}: {} ({})", entry.name, alt.name, alt.description);
                        let mut img = fetch_entry(catalog, alt, cache, cc)?;
                        img.name = entry.name.clone();
                        img.fallback = Some(format!("{} could not be had ({why}); this is its fallback {}", entry.name, alt.name));
                        Ok(img)
                    }
                    (got, _) => got,
                }
            }
        }
    }
}

/// The image of one catalog entry, from its own source.
fn fetch_entry(catalog: &Catalog, entry: &Entry, cache: &Cache, cc: Option<&str>) -> Result<KernelImage> {
    match &entry.source {
        Source::Debian { suites, package } => packaged::fetch_apt(Distro::Debian, &entry.name, suites, package, cache),
        Source::Ubuntu { suites, package } => packaged::fetch_apt(Distro::Ubuntu, &entry.name, suites, package, cache),
        Source::Rpm { url, sha256, key } => packaged::fetch_rpm(&entry.name, url, sha256.as_deref(), key, cache),
        Source::Build(b) => Recipe::catalog(catalog, &entry.name, b, cc).and_then(|r| build::build(&r, cache)),
    }
    .with_context(|| format!("getting kernel {:?} ({})", entry.name, entry.description))
}

impl From<OsString> for KernelSpec {
    fn from(arg: OsString) -> KernelSpec {
        KernelSpec::parse(&arg)
    }
}

impl fmt::Display for KernelSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

/// A file-name-safe form of `s`, for outside text too: what is not
/// alphanumeric, `.`, `-` or `_` becomes `_`, and never `.`, `..` or empty.
pub(crate) fn slug(s: &str) -> String {
    let slug: String = s.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '_' }).collect();
    if slug.trim_matches('.').is_empty() {
        format!("_{slug}")
    } else {
        slug
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slash_makes_a_path_and_a_bare_word_a_name() {
        assert_eq!(KernelSpec::parse(OsStr::new("6.1-noprune")), KernelSpec::Catalog("6.1-noprune".into()));
        assert_eq!(KernelSpec::parse(OsStr::new("./bzImage")), KernelSpec::Image("./bzImage".into()));
        assert_eq!(KernelSpec::parse(OsStr::new("/nonexistent/bzImage")), KernelSpec::Image("/nonexistent/bzImage".into()));
    }

    #[test]
    fn slugs_keep_names_and_shorten_paths() {
        assert_eq!(KernelSpec::Catalog("6.1".into()).slug(), "6.1");
        assert_eq!(KernelSpec::Image("/tmp/x/bzImage".into()).slug(), "bzImage");
        assert_eq!(KernelSpec::Image("/tmp/a b/vmlinuz-4.9.115".into()).slug(), "vmlinuz-4.9.115");
        assert_eq!(KernelSpec::Tree("/src/linux 3".into()).slug(), "linux_3");
        assert_eq!(KernelSpec::Tree("/src/linux".into()).label(), "src:/src/linux");
    }
}
