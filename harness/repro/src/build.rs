//! Building guest kernels from source.
//!
//! A catalog entry of kind `build` names a source tree, patches and a config
//! fragment. The image is cached under a key that hashes all three (plus the
//! compiler and this recipe's version), so a second run boots it at once.
//!
//! One work tree per source tree, under a lock: patches are applied with
//! `git apply` after saving pristine copies of the files they touch, and the
//! copies are put back before the next build (also after an interrupted
//! one). Objects go to one O= directory per config and compiler, shared by
//! the variants, so switching variant recompiles only the patched files.
//! The finished bzImage is renamed into its cache entry: an interrupted
//! build never leaves a half-written entry.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result};
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::apt::{self, AptRoot};
use crate::catalog::{Catalog, TreeKind};
use crate::error::{fail, Kind};
use crate::kernel::{sha256_file, Cache, KernelImage};

/// Bump when the build steps change in a way that changes the image.
const RECIPE_VERSION: u32 = 1;

/// Config fragments and patches, compiled in so the binary works anywhere.
pub const CONFIGS: &[(&str, &str)] = &[
    ("minimal", include_str!("../../../vm-images/config/minimal.config")),
    ("minimal-4.x", include_str!("../../../vm-images/config/minimal-4.x.config")),
];
pub const PATCHES: &[(&str, &str)] = &[
    ("6.1-noprune.patch", include_str!("../../../vm-images/patches/6.1-noprune.patch")),
    ("6.1-prune-aliases.patch", include_str!("../../../vm-images/patches/6.1-prune-aliases.patch")),
];

/// What to build.
#[derive(Debug, Clone)]
pub struct Recipe {
    /// The catalog name, or `local` for `--src`.
    pub name: String,
    pub tree: TreeSpec,
    pub patches: Vec<(String, String)>,
    pub config: (String, String),
    /// The C compiler (`--cc`), e.g. gcc or gcc-10.
    pub cc: String,
}

#[derive(Debug, Clone)]
pub enum TreeSpec {
    /// A tree from the catalog's `[[tree]]` table.
    Catalog { name: String, kind: TreeKind },
    /// A kernel tree on disk (`--src DIR`), built in place with O= output.
    Local(PathBuf),
}

/// What the cache records beside each built image.
#[derive(Debug, Serialize, Deserialize)]
pub struct BuildInfo {
    pub name: String,
    pub tree: String,
    pub patches: Vec<String>,
    pub config: String,
    pub cc: String,
    pub release: String,
    pub key: String,
    pub image_sha256: String,
    pub build_seconds: f64,
}

pub fn recipe_for(catalog: &Catalog, name: &str, tree: &str, patches: &[String], config: &str, cc: &str) -> Result<Recipe> {
    let t = catalog.tree(tree)?;
    let patches = patches
        .iter()
        .map(|p| {
            PATCHES
                .iter()
                .find(|(n, _)| n == p)
                .map(|(n, t)| (n.to_string(), t.to_string()))
                .with_context(|| format!("catalog entry {name} names patch {p}, which is not in vm-images/patches/"))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Recipe {
        name: name.to_string(),
        tree: TreeSpec::Catalog { name: t.name.clone(), kind: t.kind.clone() },
        patches,
        config: config_fragment(config)?,
        cc: cc.to_string(),
    })
}

pub fn config_fragment(name: &str) -> Result<(String, String)> {
    CONFIGS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .with_context(|| format!("no config fragment {name:?} in vm-images/config/"))
}

/// Build (or find in the cache) the image for `recipe`.
pub fn build(recipe: &Recipe, cache: &Cache) -> Result<KernelImage> {
    check_build_tools(&recipe.cc)?;
    let cc_version = compiler_version(&recipe.cc)?;
    let (tree_id, tree_key) = match &recipe.tree {
        TreeSpec::Catalog { name, kind } => {
            let id = tree_identity(name, kind, cache)?;
            (name.clone(), id)
        }
        TreeSpec::Local(dir) => {
            let dir = dir.canonicalize().with_context(|| format!("kernel source {}", dir.display()))?;
            if !dir.join("Makefile").exists() || !dir.join("arch/x86").is_dir() {
                return Err(fail(
                    Kind::KernelUnavailable,
                    format!("{} is not a Linux kernel source tree (no Makefile or arch/x86)", dir.display()),
                ));
            }
            (format!("local-{}", &hex(dir.to_string_lossy().as_bytes())[..12]), local_tree_state(&dir)?)
        }
    };
    let key = {
        let mut h = Sha256::new();
        h.update(format!("recipe {RECIPE_VERSION}\ntree {tree_key}\ncc {cc_version}\nconfig {}\n", recipe.config.1));
        for (n, t) in &recipe.patches {
            h.update(format!("patch {n}\n{t}\n"));
        }
        format!("{:x}", h.finalize())
    };
    let images = cache.root.join("images");
    let entry = images.join(format!("{}-{}", recipe.name, &key[..16]));
    if let Some(img) = load_built(&entry, &recipe.name)? {
        tracing::info!("using the cached build of {} ({})", recipe.name, entry.display());
        return Ok(img);
    }

    let build_root = cache.root.join("build").join(&tree_id);
    std::fs::create_dir_all(&build_root).with_context(|| format!("creating {}", build_root.display()))?;
    let lock = File::create(build_root.join(".lock"))?;
    tracing::info!("waiting for the build lock of {tree_id}");
    let _lock = Flock::lock(lock, FlockArg::LockExclusive).map_err(|(_, e)| anyhow::anyhow!("locking {}: {e}", build_root.display()))?;
    // Someone may have built it while we waited.
    if let Some(img) = load_built(&entry, &recipe.name)? {
        return Ok(img);
    }

    let src = match &recipe.tree {
        TreeSpec::Catalog { name, kind } => ensure_tree(name, kind, &tree_key, cache)?,
        TreeSpec::Local(dir) => dir.canonicalize()?,
    };
    // From here on Ctrl-C/SIGTERM stop make and put the tree back.
    let _signals = InterruptFlag::install();
    let pristine = build_root.join("pristine");
    restore_pristine(&src, &pristine)?;
    let t0 = Instant::now();
    let result = (|| -> Result<(PathBuf, String)> {
        for (name, text) in &recipe.patches {
            apply_patch(&src, &pristine, name, text)?;
        }
        let cfg_key = &hex(format!("{}\n{cc_version}", recipe.config.1).as_bytes())[..16];
        let out = build_root.join(format!("out-{}-{cfg_key}", recipe.config.0));
        std::fs::create_dir_all(&out)?;
        let log = out.join("build.log");
        configure(&src, &out, &recipe.config, &recipe.cc, &log)?;
        tracing::info!("building {} (make bzImage; log: {})", recipe.name, log.display());
        make(&src, &out, &recipe.cc, &["bzImage"], &log)?;
        let release = make_output(&src, &out, &recipe.cc, &["-s", "kernelrelease"])?;
        Ok((out.join("arch/x86/boot/bzImage"), release.trim().to_string()))
    })();
    // Leave the tree as it was fetched, whatever happened.
    let restored = restore_pristine(&src, &pristine);
    let (bz, release) = result.with_context(|| format!("building kernel {}", recipe.name))?;
    restored?;

    std::fs::create_dir_all(&images)?;
    let tmp = tempfile::Builder::new().prefix(".build-").tempdir_in(&images)?;
    std::fs::copy(&bz, tmp.path().join("bzImage")).with_context(|| format!("copying {}", bz.display()))?;
    crate::kernel::check_bzimage(&tmp.path().join("bzImage"))?;
    let info = BuildInfo {
        name: recipe.name.clone(),
        tree: tree_key,
        patches: recipe.patches.iter().map(|(n, _)| n.clone()).collect(),
        config: recipe.config.0.clone(),
        cc: cc_version,
        release,
        key,
        image_sha256: sha256_file(&tmp.path().join("bzImage"))?,
        build_seconds: t0.elapsed().as_secs_f64(),
    };
    std::fs::write(tmp.path().join("build.json"), serde_json::to_vec_pretty(&info)?)?;
    if entry.exists() {
        std::fs::remove_dir_all(&entry)?;
    }
    std::fs::rename(tmp.keep(), &entry).with_context(|| format!("installing {}", entry.display()))?;
    tracing::info!("built {} ({}) in {:.0}s", recipe.name, info.release, info.build_seconds);
    load_built(&entry, &recipe.name)?.context("the image just built cannot be read back")
}

fn load_built(entry: &Path, name: &str) -> Result<Option<KernelImage>> {
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
        name: name.to_string(),
        sha256: info.image_sha256,
        source: format!(
            "build:{}{}+{} ({})",
            info.tree,
            info.patches.iter().map(|p| format!("+{p}")).collect::<String>(),
            info.config,
            info.cc
        ),
        path,
    }))
}

/// A stable identity of a catalog tree: which exact source it is.
fn tree_identity(name: &str, kind: &TreeKind, cache: &Cache) -> Result<String> {
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
        TreeKind::Tarball { url, sha256 } => Ok(format!("tarball:{url}{}", sha256.as_deref().map(|s| format!("@{s}")).unwrap_or_default())),
    }
}

fn apt_root(name: &str, suites: &[String], cache: &Cache) -> Result<AptRoot> {
    let sources = apt::derive_sources(&apt::system_sources(), suites).map_err(|e| fail(Kind::KernelUnavailable, format!("{e:#}")))?;
    AptRoot::create(&cache.root.join("apt").join(format!("src-{name}")), &sources)
}

/// Extracted trees of catalog tree `name`: (identity, directory), oldest first.
fn extracted_trees(cache: &Cache, name: &str) -> Vec<(String, PathBuf)> {
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

/// The extracted source tree of a catalog tree, fetching it if needed.
fn ensure_tree(name: &str, kind: &TreeKind, id: &str, cache: &Cache) -> Result<PathBuf> {
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
            crate::deb::extract_source_tarball(&deb, &tmp.path().join("linux"))?;
            std::fs::remove_file(&deb)?;
        }
        TreeKind::Tarball { url, sha256 } => {
            let got = crate::fetch::fetch(url, sha256.as_deref(), cache)?;
            tracing::info!("extracting {} (sha256 {}, {})", got.path.display(), got.sha256, got.verified_by);
            crate::fetch::extract_tarball(&got.path, &tmp.path().join("linux"))?;
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
fn local_tree_state(dir: &Path) -> Result<String> {
    let git = |args: &[&str]| Command::new("git").arg("-C").arg(dir).args(args).output().ok().filter(|o| o.status.success());
    match (git(&["rev-parse", "HEAD"]), git(&["diff", "HEAD"])) {
        (Some(head), Some(diff)) => {
            Ok(format!("local:{}@{}+{}", dir.display(), String::from_utf8_lossy(&head.stdout).trim(), &hex(&diff.stdout)[..16]))
        }
        _ => Ok(format!("local:{}@{}", dir.display(), humantime::format_rfc3339_nanos(std::time::SystemTime::now()))),
    }
}

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
    let mut child = Command::new("git")
        .args(["apply", "--whitespace=nowarn", "-"])
        .current_dir(src)
        // Outside a git checkout, git apply works on the plain files.
        .env("GIT_CEILING_DIRECTORIES", src.parent().unwrap_or(src))
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(Kind::KernelUnavailable, format!("cannot run git to apply patches ({e}): apt-get install git")))?;
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), text.as_bytes())?;
    drop(child.stdin.take());
    let out = child.wait_with_output()?;
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

const ABSENT: &str = ".repro-absent";

/// Marks a file the patch creates: restoring means deleting it.
fn absent_marker(saved: &Path) -> PathBuf {
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

/// tinyconfig + the fragment + olddefconfig, then check that every option
/// the fragment sets survived. Skipped when the fragment and compiler have
/// not changed since the last configure of this output directory.
fn configure(src: &Path, out: &Path, config: &(String, String), cc: &str, log: &Path) -> Result<()> {
    let stamp = out.join(".repro-config");
    let want = hex(config.1.as_bytes());
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(want.as_str()) && out.join(".config").exists() {
        return Ok(());
    }
    let fragment = out.join(format!("{}.config", config.0));
    std::fs::write(&fragment, &config.1)?;
    make(src, out, cc, &["tinyconfig"], log)?;
    run_logged(
        Command::new(src.join("scripts/kconfig/merge_config.sh"))
            .args(["-m", "-O"])
            .arg(out)
            .arg(out.join(".config"))
            .arg(&fragment)
            .current_dir(src),
        log,
        "merge_config.sh",
    )?;
    make(src, out, cc, &["olddefconfig"], log)?;
    let merged = std::fs::read_to_string(out.join(".config"))?;
    let missing = missing_options(&config.1, &merged);
    if !missing.is_empty() {
        return Err(fail(
            Kind::BuildFailed,
            format!(
                "the config fragment vm-images/config/{}.config did not survive olddefconfig: {} (unmet dependencies in this tree's Kconfig; adjust the fragment)",
                config.0,
                missing.join(", ")
            ),
        ));
    }
    std::fs::write(&stamp, want)?;
    Ok(())
}

/// Options the fragment sets (`CONFIG_X=v`) that `config` does not have with
/// that value.
pub fn missing_options(fragment: &str, config: &str) -> Vec<String> {
    let have: std::collections::HashSet<&str> = config.lines().map(str::trim).collect();
    fragment
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("CONFIG_") && l.contains('='))
        .filter(|l| !have.contains(l))
        .map(|l| l.split('=').next().unwrap().to_string())
        .collect()
}

fn make(src: &Path, out: &Path, cc: &str, targets: &[&str], log: &Path) -> Result<()> {
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut cmd = Command::new("make");
    cmd.arg("-C").arg(src).arg(format!("O={}", out.display())).arg(format!("-j{jobs}")).arg(format!("CC={cc}")).args(targets);
    run_logged(&mut cmd, log, &format!("make {}", targets.join(" ")))
}

fn make_output(src: &Path, out: &Path, cc: &str, args: &[&str]) -> Result<String> {
    let o = Command::new("make").arg("-C").arg(src).arg(format!("O={}", out.display())).arg(format!("CC={cc}")).args(args).output()?;
    anyhow::ensure!(o.status.success(), "make {} failed: {}", args.join(" "), String::from_utf8_lossy(&o.stderr));
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// Run with stdout and stderr appended to `log`; on failure, the error
/// quotes the log's last lines (compiler errors first) and names the log.
fn run_logged(cmd: &mut Command, log: &Path, what: &str) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
    writeln!(f, "\n### repro: {what}")?;
    die_with_parent(cmd);
    let mut child = cmd.stdin(Stdio::null()).stdout(f.try_clone()?).stderr(f).spawn().with_context(|| format!("running {what}"))?;
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if INTERRUPTED.load(std::sync::atomic::Ordering::Relaxed) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM);
            let _ = child.wait();
            return Err(fail(
                Kind::Interrupted,
                format!("interrupted during {what}; the tree was put back and nothing was cached (log: {})", log.display()),
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    if status.success() {
        return Ok(());
    }
    let mut text = String::new();
    File::open(log)?.read_to_string(&mut text)?;
    let section = text.rsplit("### repro: ").next().unwrap_or("");
    let errors: Vec<&str> = section.lines().filter(|l| l.contains("error") || l.contains("Error")).take(10).collect();
    let tail = crate::session::tail(section, 15);
    Err(fail(
        Kind::BuildFailed,
        format!("{what} failed ({status}); full log: {}\n--- errors ---\n{}\n--- last lines ---\n{tail}", log.display(), errors.join("\n")),
    ))
}

static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn note_interrupt(_: nix::libc::c_int) {
    INTERRUPTED.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// While alive, SIGINT and SIGTERM only raise [`INTERRUPTED`], which the
/// build's wait loop turns into a clean stop; the previous handlers come
/// back on drop.
struct InterruptFlag {
    previous: Vec<(nix::sys::signal::Signal, nix::sys::signal::SigAction)>,
}

impl InterruptFlag {
    fn install() -> InterruptFlag {
        use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
        INTERRUPTED.store(false, std::sync::atomic::Ordering::Relaxed);
        let action = SigAction::new(SigHandler::Handler(note_interrupt), SaFlags::SA_RESTART, SigSet::empty());
        let previous = [Signal::SIGINT, Signal::SIGTERM]
            .into_iter()
            // SAFETY: the handler only stores to an atomic.
            .filter_map(|sig| unsafe { sigaction(sig, &action) }.ok().map(|old| (sig, old)))
            .collect();
        InterruptFlag { previous }
    }
}

impl Drop for InterruptFlag {
    fn drop(&mut self) {
        for (sig, old) in &self.previous {
            // SAFETY: restores the handler that was installed before.
            let _ = unsafe { nix::sys::signal::sigaction(*sig, old) };
        }
    }
}

/// A build outlives nothing: if repro dies (Ctrl-C, kill), make gets
/// SIGTERM, stops and deletes its half-written target, instead of building
/// on as an orphan.
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM).map_err(std::io::Error::from));
    }
}

/// The build tools and headers a minimal kernel build needs, with the
/// Debian package that provides each.
pub const BUILD_NEEDS: &[(&str, &str)] = &[
    ("make", "make"),
    ("flex", "flex"),
    ("bison", "bison"),
    ("bc", "bc"),
    ("perl", "perl"),
    ("git", "git"),
    ("/usr/include/libelf.h", "libelf-dev"),
    ("/usr/include/openssl/opensslv.h", "libssl-dev"),
];

fn check_build_tools(cc: &str) -> Result<()> {
    let on_path = |tool: &str| std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).any(|d| d.join(tool).is_file());
    let mut missing: Vec<&str> = BUILD_NEEDS
        .iter()
        .filter(|(what, _)| if what.starts_with('/') { !Path::new(what).exists() } else { !on_path(what) })
        .map(|(_, pkg)| *pkg)
        .collect();
    if !on_path(cc) && !Path::new(cc).is_file() {
        missing.push(if cc == "gcc" { "gcc" } else { cc });
    }
    if !missing.is_empty() {
        return Err(fail(
            Kind::KernelUnavailable,
            format!(
                "building a kernel needs {}: install with `sudo apt-get install -y {}` (ci/setup.sh does), or boot a prebuilt image with --kernel PATH",
                missing.join(", "),
                missing.join(" ")
            ),
        ));
    }
    Ok(())
}

fn compiler_version(cc: &str) -> Result<String> {
    let o =
        Command::new(cc).arg("--version").output().map_err(|e| fail(Kind::KernelUnavailable, format!("cannot run compiler {cc}: {e}")))?;
    Ok(String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or(cc).trim().to_string())
}

fn hex(b: &[u8]) -> String {
    format!("{:x}", Sha256::digest(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_patch_and_fragment_in_vm_images_is_compiled_in() {
        for (dir, table) in [("patches", PATCHES), ("config", CONFIGS)] {
            let on_disk: Vec<String> = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../vm-images").join(dir))
                .unwrap()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            for f in &on_disk {
                let stem = f.trim_end_matches(".config");
                assert!(table.iter().any(|(n, _)| n == f || *n == stem), "vm-images/{dir}/{f} is not in the table");
            }
        }
    }

    #[test]
    fn patches_name_the_upstream_commit_they_undo_or_emulate() {
        for (name, text) in PATCHES {
            assert!(text.contains("d6cffbbe9a7e") || text.contains("f90f3cafe8d5"), "{name} has no header naming a commit");
            assert!(!patched_files(text).is_empty(), "{name} touches no file");
        }
        assert_eq!(patched_files(PATCHES[0].1), ["fs/proc/proc_sysctl.c"]);
    }

    #[test]
    fn config_check_lists_options_that_did_not_survive() {
        let fragment = "# c\nCONFIG_IPV6=y\nCONFIG_NET_NS=y\nCONFIG_VETH=y\n";
        let merged = "CONFIG_IPV6=y\n# CONFIG_NET_NS is not set\nCONFIG_VETH=m\n";
        assert_eq!(missing_options(fragment, merged), ["CONFIG_NET_NS", "CONFIG_VETH"]);
        assert!(missing_options(fragment, "CONFIG_IPV6=y\nCONFIG_NET_NS=y\nCONFIG_VETH=y\n").is_empty());
    }

    fn fixture_tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("src/fs/proc")).unwrap();
        std::fs::write(d.path().join("src/fs/proc/a.c"), "one\ntwo\nthree\n").unwrap();
        d
    }

    const PATCH: &str = "header text\n\n--- a/fs/proc/a.c\n+++ b/fs/proc/a.c\n@@ -1,3 +1,3 @@\n one\n-two\n+TWO\n three\n--- /dev/null\n+++ b/fs/proc/new.c\n@@ -0,0 +1 @@\n+new\n";

    #[test]
    fn patches_apply_and_pristine_restores_the_tree() {
        let d = fixture_tree();
        let (src, pristine) = (d.path().join("src"), d.path().join("pristine"));
        apply_patch(&src, &pristine, "t.patch", PATCH).unwrap();
        assert_eq!(std::fs::read_to_string(src.join("fs/proc/a.c")).unwrap(), "one\nTWO\nthree\n");
        assert!(src.join("fs/proc/new.c").exists());
        restore_pristine(&src, &pristine).unwrap();
        assert_eq!(std::fs::read_to_string(src.join("fs/proc/a.c")).unwrap(), "one\ntwo\nthree\n");
        assert!(!src.join("fs/proc/new.c").exists() && !pristine.exists());
    }

    #[test]
    fn a_patch_that_no_longer_applies_names_the_patch_and_the_file() {
        let d = fixture_tree();
        let src = d.path().join("src");
        std::fs::write(src.join("fs/proc/a.c"), "one\nchanged upstream\nthree\n").unwrap();
        let e = format!("{:#}", apply_patch(&src, &d.path().join("pristine"), "t.patch", PATCH).unwrap_err());
        assert!(e.contains("t.patch no longer applies") && e.contains("fs/proc/a.c"), "{e}");
    }
}
