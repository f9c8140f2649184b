//! The cache: where kernels, builds, compilers and apt state live, and the
//! checks every image passes before it is booted.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use crate::error::{fail, Kind};
use crate::kernel::apt::Distro;

/// A kernel image ready to boot.
#[derive(Debug, Clone)]
pub struct KernelImage {
    /// What the user asked for.
    pub name: String,
    pub path: PathBuf,
    pub sha256: String,
    pub origin: Origin,
    /// How the download it came from was verified (packages and trees repro
    /// downloaded; None for apt's, which apt verified, and for paths).
    pub verified: Option<String>,
    /// The same, typed: an `Unverified` image needs --insecure-download
    /// every time it is used ([`crate::kernel::verify::admit`]).
    pub verification: Option<repro_proto::Verification>,
    /// How repro built it (None: not built by repro).
    pub build: Option<repro_proto::BuildProvenance>,
    /// The fix its source has, where repro read the source.
    pub source_fix: Option<repro_proto::SourceFix>,
    /// Whether its source has each sibling bug, where repro read the source.
    pub source_bugs: repro_proto::SourceBugs,
    /// Set when this is a catalog entry's fallback: why, and which.
    pub fallback: Option<String>,
}

/// Where an image came from. Its display (`debian:linux-image-…deb`,
/// `rpm:kernel-…rpm`, `build:…`, `path:…`) is the summary's
/// `kernel.source`; code decides on the variant, never on that text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A distribution's kernel package fetched with apt.
    Package { distro: Distro, archive: String },
    /// A binary RPM downloaded and verified.
    Rpm { file: String },
    /// Built by repro: tree, patches, config and compiler.
    Build { recipe: String },
    /// A bzImage the user named.
    Path(PathBuf),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Package { distro, archive } => write!(f, "{}:{archive}", distro.id()),
            Origin::Rpm { file } => write!(f, "rpm:{file}"),
            Origin::Build { recipe } => write!(f, "build:{recipe}"),
            Origin::Path(p) => write!(f, "path:{}", p.display()),
        }
    }
}

/// repro's cache: fetched kernels and private apt state. Shared between runs
/// (and CI jobs): entries are written under a lock and renamed into place.
#[derive(Debug, Clone)]
pub struct Cache {
    pub root: PathBuf,
    /// `--insecure-download`: a download nothing verifies is used anyway,
    /// its hash kept as first seen (see `kernel::verify`).
    pub insecure_download: bool,
}

impl Cache {
    pub fn allowing_unverified(mut self, yes: bool) -> Cache {
        self.insecure_download = yes;
        self
    }

    /// `--cache-dir`, else $REPRO_CACHE_DIR, else $XDG_CACHE_HOME/repro, else ~/.cache/repro.
    pub fn new(explicit: Option<PathBuf>) -> Cache {
        let root = explicit
            .or_else(|| std::env::var_os("REPRO_CACHE_DIR").map(PathBuf::from))
            .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|x| PathBuf::from(x).join("repro")))
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/repro")))
            .unwrap_or_else(private_fallback);
        // Created private: kernels, build trees and apt state are this user's.
        // (An existing directory keeps its mode; a failure shows on first use.)
        if !root.exists() {
            use std::os::unix::fs::DirBuilderExt;
            let _ = std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&root);
        }
        Cache { root, insecure_download: false }
    }
}

/// With no HOME: a cache of this user's own under /var/tmp, created 0700.
/// A shared, predictable directory there could be prepared by another user
/// to feed repro a kernel; one that is not ours is not used: the next name
/// (`-UID.1`, `-UID.2`...) that is ours or can be made ours is, the same one
/// on every run, so foreign directories never make repro start a new cache
/// each time. Ours but open to others (0777) is closed to 0700.
fn private_fallback() -> PathBuf {
    private_dir_under(Path::new("/var/tmp"), nix::unistd::geteuid().as_raw())
}

fn private_dir_under(base: &Path, uid: u32) -> PathBuf {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let name = |n: u32| base.join(if n == 0 { format!("repro-cache-{uid}") } else { format!("repro-cache-{uid}.{n}") });
    for n in 0..64 {
        let dir = name(n);
        let _ = std::fs::DirBuilder::new().mode(0o700).create(&dir);
        match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() && m.uid() == uid => {
                if m.mode() & 0o077 != 0 {
                    let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
                }
                if n > 0 {
                    tracing::warn!(
                        "{} is not this user's own directory; using {} (set REPRO_CACHE_DIR or --cache-dir)",
                        name(0).display(),
                        dir.display()
                    );
                }
                return dir;
            }
            _ => continue,
        }
    }
    tempfile::Builder::new().prefix("repro-cache-").tempdir().map(|t| t.keep()).unwrap_or_else(|_| name(0))
}

/// The most recently modified entry of cache directory `dir` that `keep`
/// accepts: the image, build or compiler fetched last.
pub(crate) fn newest_entry(dir: &Path, keep: impl Fn(&std::fs::DirEntry) -> bool) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|e| keep(e))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .max()
        .map(|(_, p)| p)
}

/// Refuse anything QEMU's `-kernel` cannot boot as an x86 bzImage.
pub(crate) fn check_bzimage(path: &Path) -> Result<()> {
    let mut head = [0u8; 0x210];
    if let Err(e) = std::fs::metadata(path) {
        return Err(fail(
            Kind::ImageInvalid,
            format!("cannot open kernel image {}: {e}; pass an existing bzImage or a catalog name (see `repro kernels`)", path.display()),
        ));
    }
    // A device or FIFO is refused (exit 2) before it is read, never waited on.
    let (mut f, _) = crate::input::Input::KernelImage.open(path)?;
    let n = read_up_to(&mut f, &mut head)?;
    if head[..n].starts_with(b"\x7fELF") {
        return Err(fail(
            Kind::ImageInvalid,
            format!("{} is an ELF file (vmlinux?), not a bzImage: pass arch/x86/boot/bzImage from the build tree", path.display()),
        ));
    }
    if n < 0x206 || &head[0x202..0x206] != b"HdrS" {
        return Err(fail(
            Kind::ImageInvalid,
            format!(
                "{} is not an x86 bzImage (no \"HdrS\" boot header at 0x202; {n} bytes read): the file is truncated or not a kernel. \
                 Rebuild it, or for a catalog kernel delete its cache entry and run again",
                path.display()
            ),
        ));
    }
    Ok(())
}

fn read_up_to(f: &mut File, buf: &mut [u8]) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// The sha256 of `bytes`, in hex.
pub(crate) fn hex_sha256(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

pub(crate) fn sha256_file(path: &Path) -> Result<String> {
    let mut f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut HashWriter(&mut h))?;
    Ok(format!("{:x}", h.finalize()))
}

struct HashWriter<'a>(&'a mut Sha256);
impl Write for HashWriter<'_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.update(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_no_home_cache_is_private_and_the_same_on_every_run_even_beside_a_foreign_one() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let base = tempfile::tempdir().unwrap();
        let me = nix::unistd::geteuid().as_raw();
        let first = private_dir_under(base.path(), me);
        assert_eq!(first, base.path().join(format!("repro-cache-{me}")));
        assert_eq!(std::fs::metadata(&first).unwrap().mode() & 0o777, 0o700);
        // Ours but opened to everyone: closed again.
        std::fs::set_permissions(&first, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert_eq!(private_dir_under(base.path(), me), first);
        assert_eq!(std::fs::metadata(&first).unwrap().mode() & 0o777, 0o700);
        // Another user's directory of that name (made so by root here) is
        // skipped for the next name, and that one is used on every run.
        if me == 0 {
            let base = tempfile::tempdir().unwrap();
            let theirs = base.path().join("repro-cache-0");
            std::fs::create_dir(&theirs).unwrap();
            nix::unistd::chown(&theirs, Some(nix::unistd::Uid::from_raw(4242)), None).unwrap();
            let a = private_dir_under(base.path(), 0);
            assert_eq!(a, base.path().join("repro-cache-0.1"));
            assert_eq!(private_dir_under(base.path(), 0), a, "a new directory on every run");
        }
    }
}
