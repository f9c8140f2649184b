//! Packaged kernels: a distribution's package through apt, or a binary RPM
//! downloaded and verified; each extracted once into the cache.

use std::fs::File;
use std::path::Path;

use anyhow::{bail, Context, Result};
use nix::fcntl::Flock;
use serde::{Deserialize, Serialize};

use crate::error::{fail, Kind};
use crate::kernel::apt::{self, AptRoot, Distro};
use crate::kernel::cache::{check_bzimage, newest_entry, sha256_file, Cache, KernelImage, Origin};
use crate::kernel::catalog::{Catalog, Source};
use crate::kernel::verify::Verification;

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
    /// How the archive was verified (downloads; apt verifies its own).
    #[serde(default)]
    verified: Option<String>,
    /// The same, typed.
    #[serde(default)]
    verification: Option<Verification>,
}

impl CachedImage {
    fn origin(&self) -> Origin {
        match self.origin.as_str() {
            "rpm" => Origin::Rpm { file: self.deb.clone() },
            "ubuntu" => Origin::Package { distro: Distro::Ubuntu, archive: self.deb.clone() },
            _ => Origin::Package { distro: Distro::Debian, archive: self.deb.clone() },
        }
    }

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
            verified: None,
            verification: None,
        }
    }
}

/// Modules `names` for a Debian kernel image repro fetched, from its package
/// (or the linux-modules-R package sid splits them into), kept beside the
/// image in `modules/` after the first time. Images that are not Debian
/// packages get none: repro's builds have what the scenarios need built in.
pub(crate) fn debian_modules(image: &KernelImage, names: &[String], catalog: &Catalog, cache: &Cache) -> Result<Vec<(String, Vec<u8>)>> {
    if names.is_empty() || !matches!(image.origin, Origin::Package { .. }) {
        return Ok(Vec::new());
    }
    let entry_dir = image.path.parent().context("a cached image has a directory")?;
    // Under the entry's lock: two runs extract once, and never half.
    let _lock = lock_kernel_dir(entry_dir.parent().context("a cached image's entry has a kernel directory")?)?;
    let dir = entry_dir.join("modules");
    if let Some(m) = cached_modules(&dir, names) {
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
        found = crate::kernel::deb::extract_modules(&deb, names)?;
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
    // Written beside the image in a temporary directory with their hashes,
    // then renamed into place.
    let staged = tmp.path().join("modules");
    std::fs::create_dir_all(&staged)?;
    let mut sums = String::new();
    for (n, bytes) in &found {
        std::fs::write(staged.join(format!("{n}.ko")), bytes)?;
        sums.push_str(&format!("{}  {n}.ko\n", crate::kernel::cache::hex_sha256(bytes)));
    }
    std::fs::write(staged.join(MODULE_SUMS), sums)?;
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&staged, &dir).with_context(|| format!("moving the modules into {}", dir.display()))?;
    Ok(found)
}

/// Beside cached modules: their sha256s, checked on every use.
const MODULE_SUMS: &str = "SHA256SUMS";

/// Modules `names` cached in `dir`, if all are there and match the hashes
/// recorded when they were extracted; None sends them to be fetched again.
fn cached_modules(dir: &Path, names: &[String]) -> Option<Vec<(String, Vec<u8>)>> {
    let sums = std::fs::read_to_string(dir.join(MODULE_SUMS)).ok()?;
    names
        .iter()
        .map(|n| {
            let bytes = std::fs::read(dir.join(format!("{n}.ko"))).ok()?;
            let want = crate::kernel::verify::sums_entry(&sums, &format!("{n}.ko"))?;
            if want != crate::kernel::cache::hex_sha256(&bytes) {
                tracing::warn!("cached module {n}.ko in {} does not match its recorded sha256: fetching it again", dir.display());
                return None;
            }
            Some((n.clone(), bytes))
        })
        .collect()
}

/// The private apt root of Debian catalog kernel `name` (one per kernel, in the cache).
fn kernel_apt_root(name: &str, suites: &[String], cache: &Cache) -> Result<AptRoot> {
    let sources = apt::derive_sources(&apt::system_sources(), suites)?;
    AptRoot::create(&cache.root.join("apt").join(name), &sources)
}

/// A kernel package of Debian's or Ubuntu's (`distro`), through a private
/// apt root whose sources come from the machine's own.
pub(crate) fn fetch_apt(distro: Distro, name: &str, suites: &[String], package: &str, cache: &Cache) -> Result<KernelImage> {
    let kdir = cache.root.join("kernels").join(name);
    let _lock = lock_kernel_dir(&kdir)?;

    let unavailable = |e: anyhow::Error| {
        fail(
            Kind::KernelUnavailable,
            format!(
                "cannot fetch the {} package {package} from {}: {e:#}. Check the network and apt (`apt-get update`), \
                 or pass a kernel image with --kernel PATH",
                distro.name(),
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
                tracing::warn!("apt failed ({e:#}); using the cached {}", img.origin);
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
    let meta = CachedImage::new(distro.id(), pkg, ver, &deb, sha256_file(&deb)?);
    install_image(tmp, &dir, name, &deb, |out| crate::kernel::deb::extract_vmlinuz(&deb, out), meta)
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
    extract: impl FnOnce(&mut File) -> Result<String>,
    mut meta: CachedImage,
) -> Result<KernelImage> {
    let image_tmp = tmp.path().join("vmlinuz");
    let mut out = File::create(&image_tmp)?;
    meta.release = extract(&mut out)?;
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
    let lock = crate::lockfile::lock(&kdir.join(".lock"), "the kernel's cache entry")?;
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
pub(crate) fn fetch_rpm(name: &str, url: &str, sha256: Option<&str>, key: &Option<String>, cache: &Cache) -> Result<KernelImage> {
    let kdir = cache.root.join("kernels").join(name);
    let _lock = lock_kernel_dir(&kdir)?;
    let file = crate::kernel::download::file_name(url);
    let dir = kdir.join(file.trim_end_matches(".rpm"));
    if let Some(img) = load_cached(&dir, name)? {
        return Ok(img);
    }
    let got = crate::kernel::download::fetch(url, sha256, None, cache)?;
    // Read once: the signature checked and the image taken from the same bytes.
    let pkg = crate::kernel::rpm::Rpm::open(&got.path)?;
    // Unpinned, the package's own signature vouches for it.
    let key_name = key.as_deref().unwrap_or("centos-7");
    let verified = got.verified.or_else(|unpinned| {
        let key = crate::kernel::verify::key_text(key_name)?;
        pkg.verify_signature(&key)
            .map(|fp| Verification::RpmSignature { key: format!("{key_name} {fp}") })
            .map_err(|e| e.context(format!("{unpinned:#}")))
    });
    let v = crate::kernel::verify::accept(cache, file, &got.sha256, verified)?;
    let tmp = tempfile::Builder::new().prefix(".fetch-").tempdir_in(&kdir)?;
    let mut meta = CachedImage::new("rpm", file.trim_end_matches(".rpm").into(), pkg.version(), &got.path, got.sha256);
    meta.verified = Some(v.to_string());
    meta.verification = Some(v);
    install_image(tmp, &dir, name, &got.path, |out| pkg.extract_vmlinuz(out), meta)
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
    Ok(Some(KernelImage {
        fallback: None,
        name: name.to_string(),
        path,
        sha256: sha,
        origin: meta.origin(),
        verified: meta.verified.clone(),
        verification: meta.verification.clone(),
        build: None,
        source_fix: None,
        source_bugs: Default::default(),
    }))
}

fn newest_cached(kdir: &Path, name: &str) -> Result<Option<KernelImage>> {
    match newest_entry(kdir, |e| e.path().join("source.json").exists()) {
        Some(d) => load_cached(&d, name),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

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
            verified: None,
            verification: None,
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
        assert_eq!((img.sha256.as_str(), img.origin.to_string().as_str()), (sha, "debian:linux-image-x_1_amd64.deb"));
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
    fn cached_modules_are_used_only_whole_and_unaltered() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("modules");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("veth.ko"), b"elf").unwrap();
        let names = vec!["veth".to_string()];
        assert!(cached_modules(&dir, &names).is_none(), "no SHA256SUMS: not trusted");
        let sum = crate::kernel::cache::hex_sha256(b"elf");
        std::fs::write(dir.join(MODULE_SUMS), format!("{sum}  veth.ko\n")).unwrap();
        assert_eq!(cached_modules(&dir, &names).unwrap(), vec![("veth".to_string(), b"elf".to_vec())]);
        std::fs::write(dir.join("veth.ko"), b"elf, altered").unwrap();
        assert!(cached_modules(&dir, &names).is_none());
        assert!(cached_modules(&dir, &["veth".to_string(), "bridge".to_string()]).is_none());
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
