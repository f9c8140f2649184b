//! The C compiler a kernel build uses.
//!
//! An era (vm-images/eras.toml) names `host` or a compiler such as gcc-12;
//! `--cc` and a catalog entry's `cc` override it. A name found on PATH (or
//! a path) is used as it is. A compiler of the `[compiler.*]` tables that
//! the machine lacks is fetched with apt into the cache (its packages'
//! data only: never installed over the system's, no root needed), from the
//! suites that table names for the host's distribution, through a private
//! apt root whose sources are derived from the machine's own: so Debian's
//! and Ubuntu's signed indexes verify it.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::error::{fail, Kind};
use crate::kernel::apt::{self, AptRoot};
use crate::kernel::cache::Cache;
use crate::kernel::compat::Toolchain;
use crate::kernel::era::{Eras, PackagedTool};

/// How long a compiler may take to say what it is.
const LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

/// A compiler ready to run.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Compiler {
    /// The name asked for: host, gcc-12, /opt/x/bin/gcc...
    pub name: String,
    /// What to run (a name on PATH or an absolute path).
    pub program: PathBuf,
    /// The first line of `--version`: part of the cache key and provenance.
    pub version: String,
    /// Where it came from: "host", "PATH", or the packages fetched.
    pub origin: String,
}

impl Compiler {
    /// `name` ready to run: found, or fetched into `cache`.
    pub(crate) fn resolve(name: &str, eras: &Eras, cache: &Cache) -> Result<Compiler> {
        let (program, origin) = if name == "host" {
            (PathBuf::from("gcc"), "host".to_string())
        } else if name.contains('/') || on_path(name) {
            (PathBuf::from(name), "PATH".to_string())
        } else if let Some(spec) = eras.compiler.get(name) {
            let dir = fetch(name, spec, cache)?;
            (dir.join(&spec.driver), format!("fetched with apt: {}", spec.packages.join(", ")))
        } else {
            return Err(fail(
                Kind::BuildFailed,
                format!(
                    "compiler {name:?} is not on PATH and is not one repro can fetch ({}): install it, or pass --cc with one of those",
                    eras.compiler.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        };
        let version = version_of(&program)?;
        Ok(Compiler { name: name.to_string(), program, version, origin })
    }

    /// What it does by default, from its own predefined macros
    /// (`cc -dM -E`): the GCC major it claims and whether it builds PIE.
    pub(crate) fn toolchain(&self) -> Result<Toolchain> {
        let o = crate::child::output(Command::new(&self.program).args(["-dM", "-E", "-x", "c", "/dev/null"]), "cc -dM -E", LIMIT)
            .map_err(|e| fail(Kind::BuildFailed, format!("cannot run compiler {}: {e:#}", self.program.display())))?;
        let text = String::from_utf8_lossy(&o.stdout);
        let define = |name: &str| text.lines().find_map(|l| l.strip_prefix(&format!("#define {name} ")).map(str::trim));
        let gcc_major = define("__GNUC__").and_then(|v| v.parse().ok()).ok_or_else(|| {
            fail(
                Kind::BuildFailed,
                format!(
                    "compiler {} does not define __GNUC__ (`-dM -E` said: {}): pass --cc with a GCC",
                    self.program.display(),
                    crate::text::first_line(&String::from_utf8_lossy(&o.stderr))
                ),
            )
        })?;
        Ok(Toolchain { gcc_major, default_pie: define("__PIE__").is_some() })
    }

    /// The CC make variable: the program and the era's flags.
    pub(crate) fn make_cc(&self, flags: &[String]) -> String {
        std::iter::once(self.program.to_string_lossy().into_owned()).chain(flags.iter().cloned()).collect::<Vec<_>>().join(" ")
    }
}

fn on_path(tool: &str) -> bool {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).any(|d| d.join(tool).is_file())
}

/// The first line of `cc --version`, or a build failure saying it cannot run.
pub(crate) fn version_of(program: &Path) -> Result<String> {
    let o = crate::child::output(Command::new(program).arg("--version"), "cc --version", LIMIT)
        .map_err(|e| fail(Kind::BuildFailed, format!("cannot run compiler {}: {e:#}", program.display())))?;
    if !o.status.success() {
        return Err(fail(
            Kind::BuildFailed,
            format!("compiler {} does not run ({}): {}", program.display(), o.status, String::from_utf8_lossy(&o.stderr).trim()),
        ));
    }
    Ok(String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or_default().trim().to_string())
}

/// The host's distribution as its apt sources say, for picking suites.
pub(crate) fn host_distribution(system: &[apt::SourceEntry]) -> Option<&'static str> {
    if system.iter().any(|e| e.suites.iter().any(|s| apt::is_debian_suite(s))) {
        Some("debian")
    } else if system.iter().any(|e| e.suites.iter().any(|s| apt::is_ubuntu_suite(s))) {
        Some("ubuntu")
    } else {
        None
    }
}

fn fetch(name: &str, spec: &PackagedTool, cache: &Cache) -> Result<PathBuf> {
    fetch_tool(name, spec, cache, |why| {
        fail(
            Kind::BuildFailed,
            format!(
                "cannot fetch compiler {name} ({}): {why}. Install {name} yourself, or pass --cc with a compiler you have",
                spec.packages.join(", ")
            ),
        )
    })
}

/// Fetch `spec`'s packages into `<cache>/toolchains/NAME-<versions>/`,
/// once, and check that its program runs (`--version`); `unavailable`
/// turns the reason it cannot be had into the caller's error.
pub(crate) fn fetch_tool(name: &str, spec: &PackagedTool, cache: &Cache, unavailable: impl Fn(String) -> anyhow::Error) -> Result<PathBuf> {
    let system = apt::system_sources();
    let distro =
        host_distribution(&system).ok_or_else(|| unavailable("this machine's apt sources are neither Debian's nor Ubuntu's".into()))?;
    let suites = spec.suites.get(distro).ok_or_else(|| unavailable(format!("vm-images/eras.toml names no {distro} suites for it")))?;
    let sources = apt::derive_sources(&system, suites).map_err(|e| unavailable(format!("{e:#}")))?;
    let base = cache.root.join("toolchains");
    std::fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
    let _lock = crate::lockfile::lock(&base.join(format!(".{name}.lock")), &format!("the toolchain {name}"))?;
    sweep(&base);

    let root = AptRoot::create(&cache.root.join("apt").join(format!("toolchain-{name}")), &sources)?;
    let versions =
        match root.update(false).and_then(|()| spec.packages.iter().map(|p| root.candidate_version(p)).collect::<Result<Vec<_>>>()) {
            Ok(v) => v,
            Err(e) => {
                // Offline: a compiler fetched before is still that compiler.
                return newest(&base, name).ok_or_else(|| unavailable(format!("{e:#}")));
            }
        };
    let dir = base.join(format!("{name}-{}", versions.join("_").replace([':', '/'], "+")));
    if dir.join(".repro-complete").exists() {
        return Ok(dir);
    }
    tracing::info!("fetching {name} ({}) with apt-get download into {}", spec.packages.join(", "), base.display());
    let tmp = tempfile::Builder::new().prefix(".fetch-").tempdir_in(&base)?;
    for (package, version) in spec.packages.iter().zip(&versions) {
        let deb = root.download(package, version, &tmp.path().join("debs")).map_err(|e| unavailable(format!("{e:#}")))?;
        crate::kernel::deb::extract_package(&deb, &tmp.path().join("root"))?;
    }
    let driver = tmp.path().join("root").join(&spec.driver);
    let version = version_of(&driver).with_context(|| format!("the fetched {name} does not run on this machine"))?;
    std::fs::remove_dir_all(tmp.path().join("debs"))?;
    std::fs::write(tmp.path().join("root/.repro-complete"), format!("{version}\n{}\n", spec.packages.join(" ")))?;
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(tmp.path().join("root"), &dir).with_context(|| format!("installing {}", dir.display()))?;
    tracing::info!("fetched {name}: {version}");
    Ok(dir)
}

/// The most recently fetched complete copy of `name`.
fn newest(base: &Path, name: &str) -> Option<PathBuf> {
    let prefix = format!("{name}-");
    crate::kernel::cache::newest_entry(base, |e| {
        e.file_name().to_string_lossy().starts_with(&prefix) && e.path().join(".repro-complete").exists()
    })
}

/// Remove what interrupted fetches left (called under the lock).
fn sweep(base: &Path) {
    for e in std::fs::read_dir(base).into_iter().flatten().flatten() {
        if e.file_name().to_string_lossy().starts_with(".fetch-") {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(suite: &str) -> apt::SourceEntry {
        apt::SourceEntry { uri: "http://mirror.invalid/x".into(), suites: vec![suite.into()], signed_by: None, trusted: false }
    }

    #[test]
    fn the_host_distribution_is_read_from_its_apt_suites() {
        assert_eq!(host_distribution(&[entry("bookworm"), entry("bookworm-security")]), Some("debian"));
        assert_eq!(host_distribution(&[entry("noble"), entry("noble-updates")]), Some("ubuntu"));
        assert_eq!(host_distribution(&[entry("nodistro")]), None);
    }

    #[test]
    fn a_compiler_repro_cannot_find_or_fetch_is_a_build_failure_naming_it() {
        let cache = Cache { root: tempfile::tempdir().unwrap().keep(), insecure_download: false };
        let e = Compiler::resolve("gcc-0-nonexistent", &Eras::builtin(), &cache).unwrap_err();
        assert_eq!(crate::error::kind_of(&e), Some(Kind::BuildFailed));
        let msg = format!("{e:#}");
        assert!(msg.contains("gcc-0-nonexistent") && msg.contains("gcc-12"), "{msg}");
    }

    #[test]
    fn the_host_compiler_and_compilers_on_path_are_used_as_they_are() {
        let cache = Cache { root: tempfile::tempdir().unwrap().keep(), insecure_download: false };
        let c = Compiler::resolve("host", &Eras::builtin(), &cache).unwrap();
        assert_eq!((c.program.as_path(), c.origin.as_str()), (Path::new("gcc"), "host"));
        assert!(c.version.contains("gcc") || c.version.contains("GCC"), "{}", c.version);
        assert_eq!(c.make_cc(&["-fno-pie".into()]), "gcc -fno-pie");
    }
}
