//! What a kernel tree of a given age needs to build as repro's guest.
//!
//! A tree says its version in its top Makefile. `vm-images/eras.toml` maps
//! version ranges to an era: the compiler, the config fragments, extra make
//! variables and the compatibility patches that era needs. Everything that
//! builds a tree (`--src`, `--build`, `repro bisect`, catalog `build`
//! entries) goes through [`Era::for_version`], so a 3.10 tree and a 6.1
//! tree build with one command each.
//!
//! The fragments list options; [`ConfigPlan`] drops those the tree's Kconfig
//! does not define (reported as skipped: a 4.9 tree has no PVH) and checks
//! after `olddefconfig` that the options the churn and the probe need
//! survived (`# repro-require:` lines in the fragments).

use std::collections::{BTreeMap, BTreeSet};
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

/// One fragment's options and requirements.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fragment {
    /// `CONFIG_X=v` lines, in order.
    pub options: Vec<(String, String)>,
    /// Options that must exist in the tree and survive.
    pub require: Vec<String>,
    /// Options that must survive where the tree defines them.
    pub require_if_present: Vec<String>,
}

impl Fragment {
    /// Options are `CONFIG_X=v` lines; `# repro-require: X Y` and
    /// `# repro-require-if-present: X` lines name symbols without CONFIG_.
    pub fn parse(text: &str) -> Fragment {
        let mut f = Fragment::default();
        for line in text.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("# repro-require-if-present:") {
                f.require_if_present.extend(rest.split_whitespace().map(String::from));
            } else if let Some(rest) = line.strip_prefix("# repro-require:") {
                f.require.extend(rest.split_whitespace().map(String::from));
            } else if let Some((k, v)) = line.strip_prefix("CONFIG_").and_then(|l| l.split_once('=')) {
                f.options.push((k.to_string(), v.to_string()));
            }
        }
        f
    }
}

/// The symbols a tree's Kconfig files define (`config X` / `menuconfig X`).
pub(crate) fn kconfig_symbols(src: &Path) -> Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?.flatten() {
            let Ok(ft) = e.file_type() else { continue };
            let name = e.file_name();
            let name = name.to_string_lossy();
            if ft.is_dir() && !name.starts_with('.') {
                stack.push(e.path());
            } else if ft.is_file() && name.starts_with("Kconfig") {
                let text = std::fs::read(e.path()).unwrap_or_default();
                for line in String::from_utf8_lossy(&text).lines() {
                    let mut w = line.split_whitespace();
                    if let (Some("config" | "menuconfig"), Some(sym)) = (w.next(), w.next()) {
                        out.insert(sym.to_string());
                    }
                }
            }
        }
    }
    Ok(out)
}

/// The merged fragment for one tree: what is applied, what was skipped.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ConfigPlan {
    /// The fragment names, joined: `minimal+minimal-3.x`.
    pub name: String,
    /// The `CONFIG_X=v` lines applied (symbols the tree defines).
    pub applied: Vec<(String, String)>,
    /// Options the tree's Kconfig does not define: not applied.
    pub skipped: Vec<String>,
    /// Must be in `applied` and survive olddefconfig.
    pub required: Vec<String>,
}

impl ConfigPlan {
    /// Merge `fragments` for a tree defining `symbols`. A required option
    /// the tree does not define is an error that names it.
    pub(crate) fn new(fragments: &[(&str, Fragment)], symbols: &BTreeSet<String>) -> Result<ConfigPlan> {
        let mut applied: Vec<(String, String)> = Vec::new();
        let mut skipped = Vec::new();
        let mut required = Vec::new();
        let mut absent_required = Vec::new();
        for (_, f) in fragments {
            for (k, v) in &f.options {
                if !symbols.contains(k) {
                    skipped.push(k.clone());
                    continue;
                }
                // A later fragment overrides an earlier one.
                match applied.iter_mut().find(|(a, _)| a == k) {
                    Some(slot) => slot.1 = v.clone(),
                    None => applied.push((k.clone(), v.clone())),
                }
            }
            for r in &f.require {
                if symbols.contains(r) {
                    required.push(r.clone());
                } else {
                    absent_required.push(r.clone());
                }
            }
            required.extend(f.require_if_present.iter().filter(|r| symbols.contains(*r)).cloned());
        }
        if !absent_required.is_empty() {
            return Err(fail(
                Kind::BuildFailed,
                format!(
                    "this tree's Kconfig does not define {}, which repro's churn and probe need: it cannot be built as repro's guest",
                    absent_required.iter().map(|s| format!("CONFIG_{s}")).collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        let missing_value: Vec<String> = required.iter().filter(|r| !applied.iter().any(|(k, _)| k == *r)).cloned().collect();
        anyhow::ensure!(missing_value.is_empty(), "required options {missing_value:?} have no CONFIG_ line in the fragments");
        required.sort();
        required.dedup();
        skipped.sort();
        skipped.dedup();
        Ok(ConfigPlan { name: fragments.iter().map(|(n, _)| *n).collect::<Vec<_>>().join("+"), applied, skipped, required })
    }

    /// For an era, the tree's vendor if it has one, and the tree on disk.
    pub(crate) fn for_tree(era: &Era, vendor: Option<&Vendor>, src: &Path) -> Result<ConfigPlan> {
        let names = era.config.iter().chain(vendor.into_iter().flat_map(|v| &v.config));
        let fragments: Vec<(&str, Fragment)> =
            names.map(|n| config_text(n).map(|t| (n.as_str(), Fragment::parse(t)))).collect::<Result<_>>()?;
        ConfigPlan::new(&fragments, &kconfig_symbols(src)?)
    }

    /// The fragment file handed to merge_config.sh.
    pub(crate) fn fragment_text(&self) -> String {
        self.applied.iter().map(|(k, v)| format!("CONFIG_{k}={v}\n")).collect()
    }

    /// After olddefconfig: (required options that did not survive, other
    /// applied options that did not).
    pub(crate) fn check(&self, merged: &str) -> (Vec<String>, Vec<String>) {
        let have: BTreeSet<&str> = merged.lines().map(str::trim).collect();
        // `=n` survives as "is not set", or as no line at all.
        let kept = |k: &str, v: &str| match v {
            "n" => !merged.lines().any(|l| l.trim().strip_prefix(&format!("CONFIG_{k}=")).is_some_and(|x| x != "n")),
            _ => have.contains(format!("CONFIG_{k}={v}").as_str()),
        };
        let lost: Vec<&String> = self.applied.iter().filter(|(k, v)| !kept(k, v)).map(|(k, _)| k).collect();
        let (req, other): (Vec<&String>, Vec<&String>) = lost.into_iter().partition(|k| self.required.contains(k));
        (req.into_iter().cloned().collect(), other.into_iter().cloned().collect())
    }
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
    fn fragment_directives_and_options_parse() {
        let f = Fragment::parse("# c\n# repro-require: IPV6 NET_NS\n# repro-require-if-present: KPROBE_EVENTS KPROBE_EVENT\nCONFIG_IPV6=y\nCONFIG_NET_NS=y\nCONFIG_KPROBE_EVENTS=y\nCONFIG_KPROBE_EVENT=y\n# CONFIG_X is not set\n");
        assert_eq!(f.require, ["IPV6", "NET_NS"]);
        assert_eq!(f.require_if_present, ["KPROBE_EVENTS", "KPROBE_EVENT"]);
        assert_eq!(f.options.len(), 4);
    }

    fn symbols(s: &[&str]) -> BTreeSet<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn options_the_tree_lacks_are_skipped_and_kprobe_events_go_by_either_name() {
        let f = Fragment::parse("# repro-require: IPV6\n# repro-require-if-present: KPROBE_EVENTS KPROBE_EVENT\nCONFIG_IPV6=y\nCONFIG_PVH=y\nCONFIG_KPROBE_EVENTS=y\nCONFIG_KPROBE_EVENT=y\n");
        // A 4.9 tree: the old kprobe option name, no PVH.
        let p = ConfigPlan::new(&[("minimal", f.clone())], &symbols(&["IPV6", "KPROBE_EVENT"])).unwrap();
        assert_eq!(p.skipped, ["KPROBE_EVENTS", "PVH"]);
        assert_eq!(p.required, ["IPV6", "KPROBE_EVENT"]);
        assert_eq!(p.fragment_text(), "CONFIG_IPV6=y\nCONFIG_KPROBE_EVENT=y\n");
        // A tree with neither kprobe option builds without them.
        let p = ConfigPlan::new(&[("minimal", f)], &symbols(&["IPV6"])).unwrap();
        assert_eq!(p.required, ["IPV6"]);
    }

    #[test]
    fn a_required_option_the_tree_does_not_define_fails_naming_it() {
        let f = Fragment::parse("# repro-require: IPV6 NET_NS\nCONFIG_IPV6=y\nCONFIG_NET_NS=y\n");
        let e = ConfigPlan::new(&[("minimal", f)], &symbols(&["IPV6"])).unwrap_err();
        assert_eq!(crate::error::kind_of(&e), Some(Kind::BuildFailed));
        assert!(format!("{e:#}").contains("CONFIG_NET_NS"), "{e:#}");
    }

    #[test]
    fn after_olddefconfig_lost_required_options_are_told_apart_from_the_rest() {
        let f = Fragment::parse("# repro-require: IPV6\nCONFIG_IPV6=y\nCONFIG_VETH=y\nCONFIG_TMPFS=y\n");
        let p = ConfigPlan::new(&[("minimal", f)], &symbols(&["IPV6", "VETH", "TMPFS"])).unwrap();
        let (req, other) = p.check("# CONFIG_IPV6 is not set\nCONFIG_VETH=m\nCONFIG_TMPFS=y\n");
        let off = ConfigPlan::new(&[("v", Fragment::parse("CONFIG_XEN_PCI=n\n"))], &symbols(&["XEN_PCI"])).unwrap();
        assert_eq!(off.check("# CONFIG_XEN_PCI is not set\n"), (vec![], vec![]));
        assert_eq!(off.check(""), (vec![], vec![]), "an option off by its dependencies has no line");
        assert_eq!(off.check("CONFIG_XEN_PCI=m\n").1, ["XEN_PCI"]);
        assert_eq!((req, other), (vec!["IPV6".to_string()], vec!["VETH".to_string()]));
        assert_eq!(p.check("CONFIG_IPV6=y\nCONFIG_VETH=y\nCONFIG_TMPFS=y\n"), (vec![], vec![]));
    }

    #[test]
    fn a_later_fragment_overrides_an_earlier_value() {
        let a = Fragment::parse("CONFIG_MODULES=n\n");
        let b = Fragment::parse("CONFIG_MODULES=y\n");
        let p = ConfigPlan::new(&[("a", a), ("b", b)], &symbols(&["MODULES"])).unwrap();
        assert_eq!((p.name.as_str(), p.applied), ("a+b", vec![("MODULES".to_string(), "y".to_string())]));
    }

    #[test]
    fn kconfig_symbols_are_read_from_every_kconfig_file() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("net/ipv6")).unwrap();
        std::fs::write(d.path().join("Kconfig"), "mainmenu \"x\"\nconfig NET\n\tbool \"net\"\nmenuconfig NETDEVICES\n").unwrap();
        std::fs::write(d.path().join("net/ipv6/Kconfig"), "config IPV6\n\ttristate\n# config NOT_ME\n").unwrap();
        std::fs::write(d.path().join("net/ipv6/Makefile"), "config FAKE\n").unwrap();
        assert_eq!(kconfig_symbols(d.path()).unwrap(), symbols(&["IPV6", "NET", "NETDEVICES"]));
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
