//! The kernel catalog (vm-images/catalog.toml), compiled into the binary.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::error::{fail, Kind};

pub const CATALOG_TOML: &str = include_str!("../../../vm-images/catalog.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    pub kernel: Vec<Entry>,
    /// Source trees that `build` entries compile.
    #[serde(default)]
    pub tree: Vec<Tree>,
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
    Tarball { url: String, sha256: Option<String> },
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
    pub source: Source,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    Regressed,
    Clean,
}

#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Source {
    /// A Debian binary kernel package.
    Debian { suites: Vec<String>, package: String },
    /// An Ubuntu binary kernel package, fetched the same way from the
    /// machine's Ubuntu mirror (GitHub's runners have one).
    Ubuntu { suites: Vec<String>, package: String },
    /// A binary kernel RPM by URL (CentOS/RHEL): boot/vmlinuz-* is booted.
    Rpm { url: String, sha256: Option<String> },
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
    /// A config fragment instead of the era's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// A compiler instead of the era's (gcc-10, or a path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cc: Option<String>,
}

impl Catalog {
    /// The catalog compiled in, or the file named by $REPRO_CATALOG (a
    /// private catalog, or a test's).
    pub fn builtin() -> Result<Catalog> {
        match std::env::var_os("REPRO_CATALOG") {
            Some(path) => {
                let text = std::fs::read_to_string(&path).with_context(|| format!("reading REPRO_CATALOG={}", path.to_string_lossy()))?;
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
            if let Source::Build(b) = &e.source {
                anyhow::ensure!(
                    c.tree.iter().any(|t| t.name == b.tree),
                    "kernel {} builds tree {:?}, which has no [[tree]] entry",
                    e.name,
                    b.tree
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

    /// A hash of everything that makes `e`'s image: the entry, its tree,
    /// its patches and config fragment. CI caches built kernels under it.
    pub fn cache_key(&self, e: &Entry) -> Result<String> {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(serde_json::to_vec(&e.source)?);
        if let Source::Build(b) = &e.source {
            h.update(serde_json::to_vec(self.tree(&b.tree)?)?);
            for p in &b.patches {
                let text = crate::build::PATCHES.iter().find(|(n, _)| n == p).map(|(_, t)| *t).unwrap_or_default();
                h.update(p.as_bytes());
                h.update(text.as_bytes());
            }
            // The era rules: compilers, flags, fragments, compat patches.
            h.update(crate::era::Eras::fingerprint().as_bytes());
        }
        Ok(format!("{:x}", h.finalize())[..16].to_string())
    }

    /// The CI matrix: every kernel (or only `only`, a name or alias) with
    /// an expectation for each scenario. Each row says where its job can
    /// run (`host`: "debian" for Debian's packages and Debian source trees,
    /// which need Debian's apt sources, so a Debian container on Ubuntu
    /// runners; "any" otherwise) and which tree builds it (`build`), so CI
    /// builds each tree once and fans the checks out. An empty matrix is an
    /// error: GitHub rejects one with a message that names nothing.
    pub fn matrix(&self, scenarios: &[String], only: Option<&str>) -> Result<serde_json::Value> {
        let only = only.map(|n| self.lookup(n).map(|e| e.name.as_str())).transpose()?;
        let mut include = Vec::new();
        for s in scenarios {
            for e in self.kernel.iter().filter(|e| only.is_none_or(|o| o == e.name)) {
                if let Some(x) = e.expect.get(s) {
                    include.push(serde_json::json!({
                        "kernel": e.name,
                        "scenario": s,
                        "expect": x,
                        "cache_key": format!("{}-{}", e.name, self.cache_key(e)?),
                        "host": self.job_host(e),
                        "build": match &e.source { Source::Build(b) => Some(&b.tree), _ => None },
                    }));
                }
            }
        }
        if include.is_empty() {
            return Err(fail(
                Kind::Usage,
                format!(
                    "no catalog kernel{} has an expectation for scenario(s) {}: nothing to run. `repro kernels` lists each kernel's expectations",
                    only.map(|o| format!(" named {o}")).unwrap_or_default(),
                    scenarios.join(", ")
                ),
            ));
        }
        Ok(serde_json::json!({ "include": include }))
    }

    /// Where a CI job for `e` can get its kernel: "debian" when it comes
    /// through Debian's apt sources, or is built (CI builds every tree in
    /// the same Debian container, whose compiler is part of the image's
    /// cache key, so the check finds the image the build job made); "any"
    /// for Ubuntu's packages and RPMs.
    pub fn job_host(&self, e: &Entry) -> &'static str {
        match &e.source {
            Source::Debian { .. } | Source::Build(_) => "debian",
            Source::Ubuntu { .. } | Source::Rpm { .. } => "any",
        }
    }

    pub fn lookup(&self, name: &str) -> Result<&Entry> {
        self.kernel.iter().find(|e| e.name == name || e.aliases.iter().any(|a| a == name)).ok_or_else(|| {
            fail(
                Kind::KernelUnavailable,
                format!(
                    "unknown kernel {name:?}: the catalog knows {} (see `repro kernels`); \
                     to boot any other kernel pass the path of its bzImage, e.g. --kernel arch/x86/boot/bzImage",
                    self.names().join(", ")
                ),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
