//! `--kernel`: a catalog name (fetched and cached) or the path of a bzImage.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::apt::{self, AptRoot};
use crate::catalog::{Catalog, Source};
use crate::error::{fail, Kind};

/// A kernel image ready to boot.
#[derive(Debug, Clone)]
pub struct KernelImage {
    /// What the user asked for.
    pub name: String,
    pub path: PathBuf,
    pub sha256: String,
    /// Where it came from, e.g. `debian:linux-image-..._6.1.192-2_amd64.deb`.
    pub source: String,
}

/// What the cache records beside each fetched image.
#[derive(Debug, Serialize, Deserialize)]
struct CachedImage {
    /// `debian` or `rpm`: how `deb` names the archive in provenance.
    #[serde(default = "debian")]
    origin: String,
    package: String,
    version: String,
    deb: String,
    deb_sha256: String,
    release: String,
    image_sha256: String,
}

impl CachedImage {
    /// What is known before extraction; `install_image` fills in the image.
    fn new(origin: &str, package: String, version: String, archive: &Path, archive_sha256: String) -> CachedImage {
        CachedImage {
            origin: origin.into(),
            package,
            version,
            deb: archive.file_name().map_or_else(String::new, |f| f.to_string_lossy().into_owned()),
            deb_sha256: archive_sha256,
            release: String::new(),
            image_sha256: String::new(),
        }
    }
}

/// repro's cache: fetched kernels and private apt state. Shared between runs
/// (and CI jobs): entries are written under a lock and renamed into place.
#[derive(Debug, Clone)]
pub struct Cache {
    pub root: PathBuf,
}

impl Cache {
    /// `--cache-dir`, else $REPRO_CACHE_DIR, else $XDG_CACHE_HOME/repro, else ~/.cache/repro.
    pub fn new(explicit: Option<PathBuf>) -> Cache {
        let root = explicit
            .or_else(|| std::env::var_os("REPRO_CACHE_DIR").map(PathBuf::from))
            .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|x| PathBuf::from(x).join("repro")))
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/repro")))
            .unwrap_or_else(|| PathBuf::from("/var/tmp/repro-cache"));
        Cache { root }
    }
}

pub fn resolve(arg: &str, catalog: &Catalog, cache: &Cache, cc: Option<&str>) -> Result<KernelImage> {
    let as_path = Path::new(arg);
    if arg.contains('/') || as_path.exists() {
        check_bzimage(as_path)?;
        let path = as_path.canonicalize().with_context(|| format!("resolving {arg}"))?;
        return Ok(KernelImage { name: arg.to_string(), sha256: sha256_file(&path)?, source: format!("path:{}", path.display()), path });
    }
    let entry = catalog.lookup(arg)?;
    match &entry.source {
        Source::Debian { suites, package } => fetch_apt("debian", &entry.name, suites, package, cache),
        Source::Ubuntu { suites, package } => fetch_apt("ubuntu", &entry.name, suites, package, cache),
        Source::Rpm { url, sha256 } => fetch_rpm(&entry.name, url, sha256.as_deref(), cache),
        Source::Build(b) => crate::build::Recipe::catalog(catalog, &entry.name, b, cc).and_then(|r| crate::build::build(&r, cache)),
    }
    .with_context(|| format!("getting kernel {:?} ({})", entry.name, entry.description))
}

/// Modules `names` for a Debian kernel image repro fetched, from its package
/// (or the linux-modules-R package sid splits them into), kept beside the
/// image in `modules/` after the first time. Images that are not Debian
/// packages get none: repro's builds have what the scenarios need built in.
pub fn debian_modules(image: &KernelImage, names: &[String], catalog: &Catalog, cache: &Cache) -> Result<Vec<(String, Vec<u8>)>> {
    if names.is_empty() || !(image.source.starts_with("debian:") || image.source.starts_with("ubuntu:")) {
        return Ok(Vec::new());
    }
    let entry_dir = image.path.parent().context("a cached image has a directory")?;
    let dir = entry_dir.join("modules");
    let cached = || -> Option<Vec<(String, Vec<u8>)>> {
        names.iter().map(|n| std::fs::read(dir.join(format!("{n}.ko"))).ok().map(|b| (n.clone(), b))).collect()
    };
    if let Some(m) = cached() {
        return Ok(m);
    }
    let meta: CachedImage = serde_json::from_str(&std::fs::read_to_string(entry_dir.join("source.json"))?)?;
    let (Source::Debian { suites, .. } | Source::Ubuntu { suites, .. }) = &catalog.lookup(&image.name)?.source else {
        bail!("{} is not a Debian catalog kernel", image.name);
    };
    let root = kernel_apt_root(&image.name, suites, cache)?;
    root.update(false)?;
    let tmp = tempfile::Builder::new().prefix(".modules-").tempdir_in(entry_dir)?;
    let mut found = Vec::new();
    for pkg in [meta.package.clone(), format!("linux-modules-{}", meta.release)] {
        tracing::info!("fetching {pkg} {} for modules {}", meta.version, names.join(", "));
        let Ok(deb) = root.download(&pkg, &meta.version, tmp.path()) else { continue };
        found = crate::deb::extract_modules(&deb, names)?;
        if found.len() == names.len() {
            break;
        }
    }
    let missing: Vec<&String> = names.iter().filter(|n| !found.iter().any(|(f, _)| f == *n)).collect();
    if !missing.is_empty() {
        return Err(fail(
            Kind::KernelUnavailable,
            format!(
                "kernel {} ({}) has no module {} in its packages: the scenario cannot run on it",
                image.name,
                meta.release,
                missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    std::fs::create_dir_all(&dir)?;
    for (n, bytes) in &found {
        std::fs::write(dir.join(format!("{n}.ko")), bytes)?;
    }
    Ok(found)
}

/// The private apt root of Debian catalog kernel `name` (one per kernel, in the cache).
fn kernel_apt_root(name: &str, suites: &[String], cache: &Cache) -> Result<AptRoot> {
    let sources = apt::derive_sources(&apt::system_sources(), suites)?;
    AptRoot::create(&cache.root.join("apt").join(name), &sources)
}

/// A kernel package of Debian's or Ubuntu's (`distro`), through a private
/// apt root whose sources come from the machine's own.
fn fetch_apt(distro: &str, name: &str, suites: &[String], package: &str, cache: &Cache) -> Result<KernelImage> {
    let kdir = cache.root.join("kernels").join(name);
    let _lock = lock_kernel_dir(&kdir)?;

    let unavailable = |e: anyhow::Error| {
        fail(
            Kind::KernelUnavailable,
            format!(
                "cannot fetch the {} package {package} from {}: {e:#}. Check the network and apt (`apt-get update`), \
                 or pass a kernel image with --kernel PATH",
                if distro == "ubuntu" { "Ubuntu" } else { "Debian" },
                suites.join(", ")
            ),
        )
    };
    // No apt root (a machine whose sources lack this distribution, an
    // Ubuntu runner for a Debian kernel) is offline for this kernel too.
    let resolved = kernel_apt_root(name, suites, cache).and_then(|root| {
        root.update(false)?;
        let pkg = root.resolve_image_package(package)?;
        let ver = root.candidate_version(&pkg)?;
        Ok((root, pkg, ver))
    });
    let (root, pkg, ver) = match resolved {
        Ok(rpv) => rpv,
        Err(e) => {
            // Offline: the newest image fetched before still boots.
            if let Some(img) = newest_cached(&kdir, name)? {
                tracing::warn!("apt failed ({e:#}); using the cached {}", img.source);
                return Ok(img);
            }
            return Err(unavailable(e));
        }
    };
    let dir = kdir.join(format!("{pkg}_{}", ver.replace([':', '/'], "_")));
    if let Some(img) = load_cached(&dir, name)? {
        return Ok(img);
    }

    tracing::info!("fetching {pkg} {ver} with apt-get download");
    let tmp = tempfile::Builder::new().prefix(".fetch-").tempdir_in(&kdir)?;
    let deb = root.download(&pkg, &ver, tmp.path()).map_err(unavailable)?;
    let meta = CachedImage::new(distro, pkg, ver, &deb, sha256_file(&deb)?);
    install_image(tmp, &dir, name, &deb, crate::deb::extract_vmlinuz, meta)
}

/// Extract the image of `archive` (with `extract`) into a cache entry at
/// `dir`: written in the temporary directory `tmp`, checked, recorded in
/// source.json and renamed into place, so an interrupted fetch leaves only
/// a `.fetch-*` directory, never a half entry. An archive inside `tmp` is
/// dropped once its image is out.
fn install_image(
    tmp: tempfile::TempDir,
    dir: &Path,
    name: &str,
    archive: &Path,
    extract: fn(&Path, &mut File) -> Result<String>,
    mut meta: CachedImage,
) -> Result<KernelImage> {
    let image_tmp = tmp.path().join("vmlinuz");
    let mut out = File::create(&image_tmp)?;
    meta.release = extract(archive, &mut out)?;
    out.sync_all()?;
    check_bzimage(&image_tmp)?;
    meta.image_sha256 = sha256_file(&image_tmp)?;
    if archive.starts_with(tmp.path()) {
        std::fs::remove_file(archive)?;
    }
    std::fs::write(tmp.path().join("source.json"), serde_json::to_vec_pretty(&meta)?)?;
    std::fs::rename(tmp.keep(), dir).with_context(|| format!("moving the extracted image into {}", dir.display()))?;
    load_cached(dir, name)?.context("the image just cached cannot be read back")
}

/// Lock a catalog kernel's cache directory (two runs fetch it one after the
/// other) and clear what interrupted fetches left there.
fn lock_kernel_dir(kdir: &Path) -> Result<Flock<File>> {
    std::fs::create_dir_all(kdir).with_context(|| format!("creating cache directory {}", kdir.display()))?;
    let lock = Flock::lock(File::create(kdir.join(".lock"))?, FlockArg::LockExclusive)
        .map_err(|(_, e)| anyhow::anyhow!("locking {}: {e}", kdir.display()))?;
    sweep_interrupted_fetches(kdir);
    Ok(lock)
}

/// Remove what interrupted fetches left (killed before their temporary
/// directory was renamed into place). Only called with the lock held, so no
/// fetch is under way.
fn sweep_interrupted_fetches(kdir: &Path) {
    for e in std::fs::read_dir(kdir).into_iter().flatten().flatten() {
        if e.file_name().to_string_lossy().starts_with(".fetch-") {
            tracing::debug!("removing {} left by an interrupted fetch", e.path().display());
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

fn debian() -> String {
    "debian".into()
}

/// A binary kernel RPM (CentOS 7): download, verify, extract boot/vmlinuz-*.
fn fetch_rpm(name: &str, url: &str, sha256: Option<&str>, cache: &Cache) -> Result<KernelImage> {
    let kdir = cache.root.join("kernels").join(name);
    let _lock = lock_kernel_dir(&kdir)?;
    let file = crate::fetch::file_name(url);
    let dir = kdir.join(file.trim_end_matches(".rpm"));
    if let Some(img) = load_cached(&dir, name)? {
        return Ok(img);
    }
    let got = crate::fetch::fetch(url, sha256, cache)?;
    let tmp = tempfile::Builder::new().prefix(".fetch-").tempdir_in(&kdir)?;
    let meta = CachedImage::new("rpm", file.trim_end_matches(".rpm").into(), got.verified_by, &got.path, got.sha256);
    install_image(tmp, &dir, name, &got.path, crate::rpm::extract_vmlinuz, meta)
}

fn load_cached(dir: &Path, name: &str) -> Result<Option<KernelImage>> {
    let Ok(text) = std::fs::read_to_string(dir.join("source.json")) else {
        return Ok(None);
    };
    let meta: CachedImage = serde_json::from_str(&text).with_context(|| format!("reading {}/source.json", dir.display()))?;
    let path = dir.join("vmlinuz");
    let sha = sha256_file(&path).unwrap_or_default();
    if sha != meta.image_sha256 {
        tracing::warn!("cached image {} is corrupt (sha256 mismatch); fetching it again", path.display());
        std::fs::remove_dir_all(dir)?;
        return Ok(None);
    }
    Ok(Some(KernelImage { name: name.to_string(), path, sha256: sha, source: format!("{}:{}", meta.origin, meta.deb) }))
}

fn newest_cached(kdir: &Path, name: &str) -> Result<Option<KernelImage>> {
    match newest_entry(kdir, |e| e.path().join("source.json").exists()) {
        Some(d) => load_cached(&d, name),
        None => Ok(None),
    }
}

/// The most recently modified entry of cache directory `dir` that `keep`
/// accepts: the image, build or compiler fetched last.
pub fn newest_entry(dir: &Path, keep: impl Fn(&std::fs::DirEntry) -> bool) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|e| keep(e))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .max()
        .map(|(_, p)| p)
}

/// Refuse anything QEMU's `-kernel` cannot boot as an x86 bzImage.
pub fn check_bzimage(path: &Path) -> Result<()> {
    let mut head = [0u8; 0x210];
    let mut f = File::open(path).map_err(|e| {
        fail(
            Kind::ImageInvalid,
            format!("cannot open kernel image {}: {e}; pass an existing bzImage or a catalog name (see `repro kernels`)", path.display()),
        )
    })?;
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

pub fn sha256_file(path: &Path) -> Result<String> {
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

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    #[test]
    fn bzimage_header_is_required() {
        let d = tempfile::tempdir().unwrap();
        let mut ok = vec![0u8; 0x400];
        ok[0x202..0x206].copy_from_slice(b"HdrS");
        check_bzimage(&write(d.path(), "good", &ok)).unwrap();

        let elf = check_bzimage(&write(d.path(), "vmlinux", b"\x7fELF\x02\x01")).unwrap_err();
        assert!(format!("{elf:#}").contains("vmlinux"));
        let short = check_bzimage(&write(d.path(), "short", b"abc")).unwrap_err();
        assert_eq!(crate::error::kind_of(&short), Some(Kind::ImageInvalid));
        let missing = check_bzimage(&d.path().join("nope")).unwrap_err();
        assert_eq!(crate::error::kind_of(&missing), Some(Kind::ImageInvalid));
    }

    fn cached_entry(kdir: &Path, image: &[u8], recorded_sha: &str) -> PathBuf {
        let dir = kdir.join("linux-image-x_1");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("vmlinuz"), image).unwrap();
        let meta = CachedImage {
            origin: "debian".into(),
            package: "linux-image-x".into(),
            version: "1".into(),
            deb: "linux-image-x_1_amd64.deb".into(),
            deb_sha256: "0".repeat(64),
            release: "x".into(),
            image_sha256: recorded_sha.into(),
        };
        std::fs::write(dir.join("source.json"), serde_json::to_vec(&meta).unwrap()).unwrap();
        dir
    }

    #[test]
    fn cached_image_is_reused_when_its_hash_matches() {
        let d = tempfile::tempdir().unwrap();
        let sha = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let dir = cached_entry(d.path(), b"abc", sha);
        let img = load_cached(&dir, "6.1").unwrap().expect("cache hit");
        assert_eq!((img.sha256.as_str(), img.source.as_str()), (sha, "debian:linux-image-x_1_amd64.deb"));
        assert_eq!(newest_cached(d.path(), "6.1").unwrap().unwrap().path, dir.join("vmlinuz"));
    }

    #[test]
    fn corrupt_cached_image_is_dropped_for_a_fresh_fetch() {
        let d = tempfile::tempdir().unwrap();
        let dir = cached_entry(d.path(), b"truncated", &"f".repeat(64));
        assert!(load_cached(&dir, "6.1").unwrap().is_none());
        assert!(!dir.exists(), "the corrupt entry must be removed");
    }

    #[test]
    fn interrupted_fetches_are_swept() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join(".fetch-abc/x")).unwrap();
        let kept = cached_entry(d.path(), b"abc", "0");
        sweep_interrupted_fetches(d.path());
        assert!(!d.path().join(".fetch-abc").exists() && kept.exists());
    }

    #[test]
    fn sha256_of_a_file() {
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), "f", b"abc");
        assert_eq!(sha256_file(&p).unwrap(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
