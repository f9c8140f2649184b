//! The catalog as CI sees it: the GitHub Actions matrix and where each job
//! can run. The matrix is one typed file: `repro kernels --matrix` writes
//! it, the workflow splits it with jq, and `repro report --expect` reads it
//! back with the same types.
//!
//! No cache key here: a built image's key needs the exact source package
//! version and the compiler of the machine that builds it, which the
//! matrix job (no apt, no container) cannot know; the build job asks
//! `repro image key` ([`crate::kernel::build::Recipe::resolve`]).

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::error::{fail, Kind};
use crate::kernel::catalog::{Catalog, Entry, Expect, Source};

/// A `repro kernels --matrix` file: GitHub's `{"include": [...]}` form.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Matrix {
    pub include: Vec<MatrixJob>,
}

/// One check job: a kernel on a scenario.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct MatrixJob {
    pub kernel: String,
    pub scenario: String,
    pub expect: Expect,
    pub host: JobHost,
    /// The catalog tree the build job makes this kernel from.
    pub build: Option<String>,
}

/// Where a CI job for a kernel can get it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum JobHost {
    /// Through Debian's apt sources, or built (CI builds every tree in
    /// the same Debian container, and the check downloads the image the
    /// build job made): a debian:bookworm container.
    Debian,
    /// Ubuntu's packages and RPMs: any runner.
    Any,
}

impl JobHost {
    pub(crate) fn of(e: &Entry) -> JobHost {
        match &e.source {
            Source::Debian { .. } | Source::Build(_) => JobHost::Debian,
            Source::Ubuntu { .. } | Source::Rpm { .. } => JobHost::Any,
        }
    }
}

impl Matrix {
    /// Every kernel (or only `only`, a name or alias) with an expectation
    /// for each scenario. An empty matrix is an error: GitHub rejects one
    /// with a message that names nothing.
    pub(crate) fn of_catalog(catalog: &Catalog, scenarios: &[String], only: Option<&str>) -> Result<Matrix> {
        let only = only.map(|n| catalog.lookup(n).map(|e| e.name.as_str())).transpose()?;
        let mut include = Vec::new();
        for s in scenarios {
            for e in catalog.kernel.iter().filter(|e| only.is_none_or(|o| o == e.name)) {
                if let Some(x) = e.expect.get(s) {
                    include.push(MatrixJob {
                        kernel: e.name.clone(),
                        scenario: s.clone(),
                        expect: *x,
                        host: JobHost::of(e),
                        build: match &e.source {
                            Source::Build(b) => Some(b.tree.clone()),
                            _ => None,
                        },
                    });
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
        Ok(Matrix { include })
    }

    /// A matrix file written by `repro kernels --matrix` (read with the
    /// matrix's size cap; anything else is a usage error).
    pub(crate) fn read(path: &std::path::Path) -> Result<Matrix> {
        let text = crate::input::Input::Matrix.read_text(path)?;
        serde_json::from_str(&text)
            .map_err(|e| fail(Kind::Usage, format!("{} is not a `repro kernels --matrix` file: {e}", path.display())))
    }
}
