//! What a kernel tree of a given age needs to build as repro's guest.
//!
//! A tree says its version in its top Makefile. `vm-images/eras.toml` maps
//! version ranges to an era: the compiler, the config fragments, extra make
//! variables and the compatibility patches that era needs. Everything that
//! builds a tree (`--src`, `--build`, `repro bisect`, catalog `build`
//! entries) goes through [`Era::for_version`], so a 3.10 tree and a 6.1
//! tree build with one command each.
//!
//! The fragments list options; [`ConfigPlan`](crate::kernel::config::ConfigPlan) drops those the tree's Kconfig
//! does not define (reported as skipped: a 4.9 tree has no PVH) and checks
//! after `olddefconfig` that the options the churn and the probe need
//! survived (`# repro-require:` lines in the fragments).

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::error::{fail, Kind};

pub(crate) const ERAS_TOML: &str = include_str!("../../../../vm-images/eras.toml");

/// Config fragments, compiled in so the binary works anywhere.
pub(crate) const CONFIGS: &[(&str, &str)] = &[
    ("minimal", include_str!("../../../../vm-images/config/minimal.config")),
    ("minimal-3.x", include_str!("../../../../vm-images/config/minimal-3.x.config")),
    ("rhel-7", include_str!("../../../../vm-images/config/rhel-7.config")),
    ("mqueue", include_str!("../../../../vm-images/config/mqueue.config")),
];

/// A kernel version as a tree's Makefile states it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct KernelVersion {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
    /// EXTRAVERSION, e.g. `-rc3`; ignored for era selection.
    pub extra: String,
}

impl fmt::Display for KernelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}{}", self.major, self.minor, self.patch, self.extra)
    }
}

impl KernelVersion {
    /// VERSION, PATCHLEVEL, SUBLEVEL and EXTRAVERSION from a top Makefile.
    pub fn from_makefile(text: &str) -> Option<KernelVersion> {
        let var = |name: &str| makefile_var(text, name);
        let num = |name: &str| var(name)?.parse::<u64>().ok();
        Some(KernelVersion {
            major: num("VERSION")?,
            minor: num("PATCHLEVEL")?,
            patch: num("SUBLEVEL").unwrap_or(0),
            extra: var("EXTRAVERSION").unwrap_or_default(),
        })
    }

    /// A Red Hat tree's release, from the RHEL_MAJOR/MINOR/RELEASE lines its
    /// top Makefile adds: `7.9 (3.10.0-1160)`; None for any other tree.
    pub(crate) fn red_hat_release(text: &str) -> Option<String> {
        let var = |name: &str| makefile_var(text, name);
        let v = KernelVersion::from_makefile(text)?;
        Some(format!("{}.{} ({}.{}.{}-{})", var("RHEL_MAJOR")?, var("RHEL_MINOR")?, v.major, v.minor, v.patch, var("RHEL_RELEASE")?))
    }

    /// The version at the start of a kernel release string, as a bzImage's
    /// header or `uname -r` gives it: `3.10.0-514.el7.x86_64 (mockbuild@...)`.
    pub fn from_release(release: &str) -> Option<KernelVersion> {
        let head = release.split_whitespace().next()?;
        let end = head.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(head.len());
        let mut nums = head[..end].split('.').map(|n| n.parse::<u64>().ok());
        Some(KernelVersion {
            major: nums.next()??,
            minor: nums.next()??,
            patch: nums.next().flatten().unwrap_or(0),
            extra: head[end..].to_string(),
        })
    }

    /// The version of the tree in `dir`, or a build failure saying why not.
    pub fn of_tree(dir: &Path) -> Result<KernelVersion> {
        let makefile = dir.join("Makefile");
        let text = std::fs::read_to_string(&makefile).map_err(|e| {
            fail(Kind::BuildFailed, format!("cannot read {} ({e}): is {} a Linux kernel source tree?", makefile.display(), dir.display()))
        })?;
        KernelVersion::from_makefile(&text).ok_or_else(|| {
            fail(
                Kind::BuildFailed,
                format!(
                    "cannot read the kernel version of {}: its Makefile has no numeric VERSION/PATCHLEVEL lines near the top; \
                     point --src at the top of a Linux kernel tree",
                    dir.display()
                ),
            )
        })
    }

    pub(crate) fn semver(&self) -> semver::Version {
        semver::Version::new(self.major, self.minor, self.patch)
    }
}

/// A `NAME = value` line near the top of a kernel's Makefile.
fn makefile_var(text: &str, name: &str) -> Option<String> {
    text.lines().take(50).find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == name).then(|| v.trim().to_string())
    })
}

/// How to build a tree of one era.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Era {
    pub name: String,
    /// Which tree versions this era covers (semver requirement syntax).
    pub versions: semver::VersionReq,
    /// Why this era needs what it has: shown in `--help`-level docs and logs.
    pub why: String,
    /// The compiler: "host" or a compiler in [`Eras::compiler`].
    pub cc: String,
    /// Appended to CC, so they reach every compile.
    #[serde(default)]
    pub cc_flags: Vec<String>,
    /// The make target whose .config the fragments are merged onto.
    #[serde(default = "default_base")]
    pub base: String,
    /// Config fragments, merged in this order.
    pub config: Vec<String>,
    /// Extra make variables (HOSTCC, ...). LD is the compatibility fixes'.
    #[serde(default)]
    pub make: BTreeMap<String, String>,
}

/// A vendor's trees, told by variables their top Makefile sets, and the
/// fragments its own configuration needs on top of the era's.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vendor {
    pub name: String,
    /// Variables the tree's top Makefile must set, each to this value.
    pub makefile: BTreeMap<String, String>,
    pub why: String,
    /// Config fragments, merged after the era's.
    pub config: Vec<String>,
}

impl Vendor {
    /// Whether the tree whose top Makefile is `makefile_text` is this vendor's.
    pub fn owns(&self, makefile_text: &str) -> bool {
        self.makefile.iter().all(|(k, v)| makefile_var(makefile_text, k).as_deref() == Some(v.as_str()))
    }
}

fn default_base() -> String {
    "tinyconfig".into()
}

/// A tool repro fetches with apt into its cache instead of installing it:
/// an era's compiler (eras.toml) or the QEMU a kernel needs (catalog.toml).
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct PackagedTool {
    /// The packages that together hold the program and what it loads
    /// (GCC's driver, cc1 and libgcc; QEMU's binary and its data).
    pub packages: Vec<String>,
    /// The program inside them, e.g. usr/bin/gcc-12.
    pub driver: String,
    /// Suites to fetch from, per distribution of the host (its apt sources).
    pub suites: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Eras {
    pub era: Vec<Era>,
    #[serde(default)]
    pub vendor: Vec<Vendor>,
    #[serde(default)]
    pub compiler: BTreeMap<String, PackagedTool>,
}

impl Eras {
    pub fn builtin() -> Eras {
        Eras::parse(ERAS_TOML).expect("vm-images/eras.toml is checked by the tests")
    }

    pub fn parse(text: &str) -> Result<Eras> {
        let eras: Eras = toml::from_str(text)?;
        for c in eras.vendor.iter().flat_map(|v| &v.config) {
            config_text(c)?;
        }
        for e in &eras.era {
            for c in &e.config {
                config_text(c)?;
            }
            anyhow::ensure!(
                !e.make.contains_key("LD"),
                "era {}: LD is set by the compatibility fixes (kernel/compat.rs), not by an era",
                e.name
            );
            anyhow::ensure!(
                e.cc == "host" || eras.compiler.contains_key(&e.cc),
                "era {} names compiler {}, which has no [compiler] table",
                e.name,
                e.cc
            );
        }
        Ok(eras)
    }

    /// The era of a tree of version `v`.
    pub fn for_version(&self, v: &KernelVersion) -> Result<&Era> {
        self.era.iter().find(|e| e.versions.matches(&v.semver())).ok_or_else(|| {
            let known: Vec<String> = self.era.iter().map(|e| format!("{} ({})", e.name, e.versions)).collect();
            fail(
                Kind::BuildFailed,
                format!(
                    "repro does not know how to build a {v} tree: its eras are {}. Build it yourself and pass --kernel PATH",
                    known.join(", ")
                ),
            )
        })
    }

    /// The vendor whose tree is at `src` (by its top Makefile), if any.
    pub fn vendor_of(&self, src: &Path) -> Option<&Vendor> {
        let text = std::fs::read_to_string(src.join("Makefile")).ok()?;
        self.vendor.iter().find(|v| v.owns(&text))
    }

    /// Text that changes whenever any era's rules or fragments change:
    /// part of every build's cache key (the compatibility fixes are code:
    /// `RECIPE_VERSION` in kernel/build.rs moves with them).
    pub fn fingerprint() -> String {
        let mut s = String::from(ERAS_TOML);
        for (n, t) in CONFIGS {
            s.push_str(&format!("\n--- {n}\n{t}"));
        }
        s
    }
}

pub(crate) fn config_text(name: &str) -> Result<&'static str> {
    CONFIGS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t).with_context(|| format!("no config fragment {name:?} in vm-images/config/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(major: u64, minor: u64, patch: u64) -> KernelVersion {
        KernelVersion { major, minor, patch, extra: String::new() }
    }

    #[test]
    fn a_red_hat_tree_says_its_release_and_others_say_nothing() {
        let rhel =
            "VERSION = 3\nPATCHLEVEL = 10\nSUBLEVEL = 0\nEXTRAVERSION =\nNAME = x\nRHEL_MAJOR = 7\nRHEL_MINOR = 9\nRHEL_RELEASE = 1160\n";
        assert_eq!(KernelVersion::red_hat_release(rhel).as_deref(), Some("7.9 (3.10.0-1160)"));
        assert_eq!(KernelVersion::red_hat_release("VERSION = 4\nPATCHLEVEL = 4\nSUBLEVEL = 1\n"), None);
    }

    #[test]
    fn the_version_is_read_from_the_top_makefile() {
        let mk = "VERSION = 3\nPATCHLEVEL = 10\nSUBLEVEL = 0\nEXTRAVERSION =\nNAME = Unicycling Gorilla\nRHEL_MAJOR = 7\n";
        assert_eq!(KernelVersion::from_makefile(mk), Some(v(3, 10, 0)));
        let rc = "# SPDX\nVERSION = 6\nPATCHLEVEL = 1\nSUBLEVEL = 192\nEXTRAVERSION = -rc3\n";
        assert_eq!(KernelVersion::from_makefile(rc).unwrap().to_string(), "6.1.192-rc3");
        assert_eq!(KernelVersion::from_makefile("all:\n\techo hi\n"), None);
        assert_eq!(KernelVersion::from_makefile("VERSION = $(shell x)\nPATCHLEVEL = 1\n"), None);
    }

    #[test]
    fn a_tree_without_a_readable_version_is_a_build_failure_that_says_so() {
        let d = tempfile::tempdir().unwrap();
        let e = KernelVersion::of_tree(d.path()).unwrap_err();
        assert_eq!(crate::error::kind_of(&e), Some(Kind::BuildFailed));
        std::fs::write(d.path().join("Makefile"), "all:\n").unwrap();
        let e = format!("{:#}", KernelVersion::of_tree(d.path()).unwrap_err());
        assert!(e.contains("cannot read the kernel version"), "{e}");
    }

    #[test]
    fn every_era_from_3_10_to_today_has_rules_and_older_trees_are_refused() {
        let eras = Eras::builtin();
        assert_eq!(eras.for_version(&v(3, 10, 0)).unwrap().name, "3.x");
        assert_eq!(eras.for_version(&v(4, 4, 178)).unwrap().name, "4.x");
        assert_eq!(eras.for_version(&v(4, 9, 115)).unwrap().name, "4.x");
        assert_eq!(eras.for_version(&v(5, 10, 0)).unwrap().name, "5.x and later");
        assert_eq!(eras.for_version(&v(6, 1, 192)).unwrap().name, "5.x and later");
        assert_eq!(eras.for_version(&v(7, 2, 0)).unwrap().cc, "host");
        // tinyconfig came with 3.17.
        assert_eq!(eras.for_version(&v(3, 10, 0)).unwrap().base, "alldefconfig");
        assert_eq!(eras.for_version(&v(4, 4, 178)).unwrap().base, "tinyconfig");
        let e = format!("{:#}", eras.for_version(&v(2, 6, 32)).unwrap_err());
        assert!(e.contains("2.6.32") && e.contains("--kernel PATH"), "{e}");
    }

    #[test]
    fn old_eras_name_a_compiler_repro_can_fetch_on_debian_and_ubuntu() {
        let eras = Eras::builtin();
        for e in eras.era.iter().filter(|e| e.cc != "host") {
            let c = &eras.compiler[&e.cc];
            assert!(c.suites.contains_key("debian") && c.suites.contains_key("ubuntu"), "{}", e.cc);
            assert!(c.packages.iter().any(|p| p == &e.cc));
        }
    }

    #[test]
    fn every_fragment_in_vm_images_is_compiled_in() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../vm-images");
        for f in std::fs::read_dir(root.join("config")).unwrap().flatten() {
            let n = f.file_name().to_string_lossy().trim_end_matches(".config").to_string();
            assert!(CONFIGS.iter().any(|(c, _)| *c == n), "vm-images/config/{n}.config is not compiled in");
        }
    }
}
