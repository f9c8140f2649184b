//! The kernel catalog (vm-images/catalog.toml), compiled into the binary.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::error::{fail, Kind};

pub(crate) const CATALOG_TOML: &str = include_str!("../../../../vm-images/catalog.toml");

/// The catalog's patches, compiled in so the binary works anywhere. The
/// era compatibility fixes are in [`crate::kernel::compat`].
pub(crate) const PATCHES: &[(&str, &str)] = &[
    ("6.1-noprune.patch", include_str!("../../../../vm-images/patches/6.1-noprune.patch")),
    ("6.1-prune-aliases.patch", include_str!("../../../../vm-images/patches/6.1-prune-aliases.patch")),
    ("6.1-ipc-sync.patch", include_str!("../../../../vm-images/patches/6.1-ipc-sync.patch")),
    ("6.1-netns-lock.patch", include_str!("../../../../vm-images/patches/6.1-netns-lock.patch")),
    ("6.1-mount-nolimit.patch", include_str!("../../../../vm-images/patches/6.1-mount-nolimit.patch")),
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    pub kernel: Vec<Entry>,
    /// Source trees that `build` entries compile.
    #[serde(default)]
    pub tree: Vec<Tree>,
    /// QEMUs a kernel may need (`qemu = NAME` in its entry).
    #[serde(default)]
    pub qemu: BTreeMap<String, QemuNeed>,
    /// The CPU model a KVM guest gets, by the kernel's version.
    #[serde(default)]
    pub kvm_cpu: Vec<KvmCpu>,
}

/// A CPU model for KVM guests of some kernel versions (`[[kvm_cpu]]`).
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct KvmCpu {
    /// The kernel versions it is for (semver requirement syntax).
    pub versions: semver::VersionReq,
    /// QEMU's `-cpu` model.
    pub model: String,
    pub why: String,
}

impl Catalog {
    /// QEMU's `-cpu` under KVM for a kernel of version `v` (read from its
    /// bzImage, whatever its origin): the first `[[kvm_cpu]]` whose versions
    /// match, else `host`, also where the version cannot be read.
    pub(crate) fn kvm_cpu_model(&self, v: Option<&crate::kernel::era::KernelVersion>) -> &str {
        v.and_then(|v| self.kvm_cpu.iter().find(|k| k.versions.matches(&v.semver()))).map_or("host", |k| k.model.as_str())
    }
}

/// A QEMU newer than some machines have, which repro fetches with apt into
/// its cache for the kernels that name it.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct QemuNeed {
    /// Why: what goes wrong under older QEMUs, measured.
    pub why: String,
    /// The machine's QEMU is used where it matches this.
    pub min_version: semver::VersionReq,
    pub packages: Vec<String>,
    /// The binary inside them.
    pub driver: String,
    /// Its data directory inside them (`-L`).
    pub data: String,
    /// Suites per host distribution.
    pub suites: BTreeMap<String, Vec<String>>,
}

impl QemuNeed {
    pub fn tool(&self) -> crate::kernel::era::PackagedTool {
        crate::kernel::era::PackagedTool { packages: self.packages.clone(), driver: self.driver.clone(), suites: self.suites.clone() }
    }
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Tree {
    pub name: String,
    pub description: String,
    #[serde(rename = "source")]
    pub kind: TreeKind,
}

#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum TreeKind {
    /// Debian's linux-source-X package: a tarball under /usr/src.
    DebianSource { suites: Vec<String>, package: String },
    /// A source tarball by URL (.tar.xz or .tar.gz), e.g. from kernel.org.
    Tarball {
        url: String,
        sha256: Option<String>,
        /// The key whose signed sha256sums.asc lists it [default: kernel.org].
        #[serde(default)]
        key: Option<String>,
    },
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub name: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    pub description: String,
    /// Expected verdict per scenario name: "regressed" or "clean".
    #[serde(default)]
    pub expect: BTreeMap<String, Expect>,
    /// What is known to go wrong with this kernel here, measured; the report
    /// shows it beside a run that does not match the expectation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_issue: Option<String>,
    /// A QEMU of the catalog's [qemu] table this kernel needs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qemu: Option<String>,
    /// Another entry to use when this one's source cannot be had (a
    /// distribution that leaves the mirrors), never when a download is
    /// refused. The run keeps this entry's name and records the fallback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    pub source: Source,
}

pub(crate) use repro_proto::Expect;

#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Source {
    /// A Debian binary kernel package.
    Debian { suites: Vec<String>, package: String },
    /// An Ubuntu binary kernel package, fetched the same way from the
    /// machine's Ubuntu mirror (GitHub's runners have one).
    Ubuntu { suites: Vec<String>, package: String },
    /// A binary kernel RPM by URL (CentOS/RHEL): boot/vmlinuz-* is booted.
    Rpm {
        url: String,
        sha256: Option<String>,
        /// The key that signs the package [default: centos-7].
        #[serde(default)]
        key: Option<String>,
    },
    /// Built from a `[[tree]]` with patches from vm-images/patches/, by the
    /// rules of the tree's era (vm-images/eras.toml).
    Build(BuildSource),
}

#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct BuildSource {
    pub tree: String,
    #[serde(default)]
    pub patches: Vec<String>,
    /// Config fragments instead of the era's, merged in order (a later
    /// one overrides an earlier): `["minimal", "mqueue"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<Vec<String>>,
    /// A compiler instead of the era's (gcc-12, or a path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cc: Option<String>,
}

impl Catalog {
    /// The catalog compiled in, or the file named by $REPRO_CATALOG (a
    /// private catalog, or a test's).
    pub fn builtin() -> Result<Catalog> {
        match std::env::var_os("REPRO_CATALOG") {
            Some(path) => {
                let text = crate::input::Input::Catalog.read_text(std::path::Path::new(&path))?;
                Catalog::parse(&text).with_context(|| format!("parsing REPRO_CATALOG={}", path.to_string_lossy()))
            }
            None => Catalog::parse(CATALOG_TOML).context("parsing the built-in vm-images/catalog.toml"),
        }
    }

    pub fn parse(text: &str) -> Result<Catalog> {
        let c: Catalog = toml::from_str(text)?;
        let mut seen = std::collections::HashSet::new();
        for e in &c.kernel {
            for n in std::iter::once(&e.name).chain(&e.aliases) {
                anyhow::ensure!(seen.insert(n.clone()), "kernel name {n:?} appears twice in the catalog");
            }
            if let Some(q) = &e.qemu {
                anyhow::ensure!(c.qemu.contains_key(q), "kernel {} needs QEMU {q:?}, which has no [qemu.{q}] table", e.name);
            }
            if let Source::Build(b) = &e.source {
                anyhow::ensure!(
                    c.tree.iter().any(|t| t.name == b.tree),
                    "kernel {} builds tree {:?}, which has no [[tree]] entry",
                    e.name,
                    b.tree
                );
            }
        }
        for e in &c.kernel {
            if let Some(f) = &e.fallback {
                let alt = c.kernel.iter().find(|k| &k.name == f);
                anyhow::ensure!(alt.is_some(), "kernel {} falls back to {f:?}, which is no catalog kernel's name", e.name);
                anyhow::ensure!(
                    f != &e.name && alt.is_some_and(|a| a.fallback.is_none()),
                    "kernel {} falls back to {f:?}, which is itself or has a fallback of its own: one step only",
                    e.name
                );
            }
        }
        Ok(c)
    }

    pub fn tree(&self, name: &str) -> Result<&Tree> {
        self.tree.iter().find(|t| t.name == name).with_context(|| format!("the catalog has no [[tree]] named {name:?}"))
    }

    pub fn names(&self) -> Vec<&str> {
        self.kernel.iter().map(|e| e.name.as_str()).collect()
    }

    pub fn lookup(&self, name: &str) -> Result<&Entry> {
        self.kernel.iter().find(|e| e.name == name || e.aliases.iter().any(|a| a == name)).ok_or_else(|| {
            fail(
                Kind::KernelUnavailable,
                format!(
                    "unknown kernel {:?}: the catalog knows {} (see `repro kernels`); \
                     to boot any other kernel pass the path of its bzImage, e.g. --kernel arch/x86/boot/bzImage",
                    crate::text::clip(name, 80),
                    self.names().join(", ")
                ),
            )
        })
    }

    /// A catalog entry that builds a tree, and how: `repro image` works on
    /// these alone (a packaged kernel's image is its package).
    pub fn build_entry(&self, name: &str) -> Result<(&Entry, &BuildSource)> {
        let e = self.lookup(name)?;
        match &e.source {
            Source::Build(b) => Ok((e, b)),
            _ => Err(fail(
                Kind::Usage,
                format!("{name} is a prebuilt package, not a build entry: its image is the package itself (`repro fetch {name}` gets it)"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fallback_names_another_kernel_one_step_deep() {
        let k = |name: &str, fallback: Option<&str>| {
            format!(
                "[[kernel]]\nname = \"{name}\"\ndescription = \"d\"\n{}source = {{ kind = \"debian\", suites = [\"bookworm\"], package = \"p\" }}\n",
                fallback.map(|f| format!("fallback = \"{f}\"\n")).unwrap_or_default()
            )
        };
        assert!(Catalog::parse(&(k("a", Some("b")) + &k("b", None))).is_ok());
        for bad in [k("a", Some("nosuch")), k("a", Some("a")), k("a", Some("b")) + &k("b", Some("c")) + &k("c", None)] {
            let e = format!("{:#}", Catalog::parse(&bad).unwrap_err());
            assert!(e.contains("falls back to"), "{e}");
        }
        // The built-in 5.10 (Debian 11, whose LTS has ended) builds from kernel.org when bullseye is gone.
        let c = Catalog::builtin().unwrap();
        assert_eq!(c.lookup("5.10").unwrap().fallback.as_deref(), Some("5.10-kernel.org"));
    }

    #[test]
    fn old_kernels_get_a_cpu_model_of_their_time_under_kvm_and_current_ones_the_host() {
        use crate::kernel::era::KernelVersion;
        let c = Catalog::builtin().unwrap();
        let model = |r: &str| c.kvm_cpu_model(KernelVersion::from_release(r).as_ref()).to_string();
        for old in ["3.10.0-514.el7.x86_64 (mockbuild@x86-017) #1 SMP", "4.4.0-148-generic", "4.9.115", "4.15.0-20-generic"] {
            assert_eq!(model(old), "SandyBridge", "{old}");
        }
        for new in ["5.10.0-46-cloud-amd64", "6.1.0-28-cloud-amd64 (debian-kernel@lists.debian.org)", "6.12.9"] {
            assert_eq!(model(new), "host", "{new}");
        }
        assert_eq!(c.kvm_cpu_model(None), "host", "an unreadable version");
    }

    #[test]
    fn builtin_catalog_parses_and_resolves_names_and_aliases() {
        let c = Catalog::builtin().unwrap();
        assert_eq!(c.lookup("6.1").unwrap().name, "6.1");
        assert_eq!(c.lookup("bookworm").unwrap().name, "6.1");
        let Source::Debian { suites, package } = &c.lookup("5.10").unwrap().source else { panic!("5.10 is a Debian package") };
        assert_eq!(suites[0], "bullseye");
        assert!(package.starts_with("linux-image-"));
        let Source::Build(b) = &c.lookup("6.1-noprune").unwrap().source else { panic!("6.1-noprune is built") };
        assert_eq!(
            (b.tree.as_str(), b.patches.as_slice(), b.config.as_deref()),
            ("debian-6.1", &["6.1-noprune.patch".to_string()][..], None)
        );
        assert_eq!(c.lookup("6.1-noprune").unwrap().expect["seed"], Expect::Regressed);
        for e in &c.kernel {
            assert!(e.expect.contains_key("seed"), "{} has no expectation for seed", e.name);
        }
    }

    #[test]
    fn unknown_kernel_lists_known_ones_and_suggests_a_path() {
        let c = Catalog::builtin().unwrap();
        let e = format!("{:#}", c.lookup("2.6.32").unwrap_err());
        assert!(e.contains("6.1") && e.contains("5.10") && e.contains("bzImage"), "{e}");
        assert_eq!(crate::error::kind_of(&c.lookup("x").unwrap_err()), Some(Kind::KernelUnavailable));
    }

    #[test]
    fn build_entries_must_name_a_known_tree() {
        let t = "[[kernel]]\nname = \"x\"\ndescription = \"\"\nsource = { kind = \"build\", tree = \"nope\" }\n";
        assert!(format!("{:#}", Catalog::parse(t).unwrap_err()).contains("no [[tree]] entry"));
    }

    #[test]
    fn duplicate_names_are_rejected() {
        let t = r#"
[[kernel]]
name = "a"
description = ""
source = { kind = "debian", suites = ["x"], package = "p" }
[[kernel]]
name = "b"
aliases = ["a"]
description = ""
source = { kind = "debian", suites = ["x"], package = "p" }
"#;
        assert!(Catalog::parse(t).is_err());
    }
}
