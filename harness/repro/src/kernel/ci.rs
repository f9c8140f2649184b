//! The catalog as CI sees it: the GitHub Actions matrix, where each job can
//! run, and the key CI caches each kernel's image under.

use anyhow::Result;
use sha2::{Digest, Sha256};

use crate::error::{fail, Kind};
use crate::kernel::build::Recipe;
use crate::kernel::catalog::{Catalog, Entry, Source};

/// CI's cache key of `e`'s image. A built kernel's is [`Recipe::key`], with
/// the catalog's tree entry standing for the tree (CI knows no more before
/// it fetches) and no host compiler (the build and check jobs run in the
/// same container); a packaged kernel's is its source entry's hash.
pub(crate) fn cache_key(catalog: &Catalog, e: &Entry) -> Result<String> {
    let key = match &e.source {
        Source::Build(b) => {
            let tree = serde_json::to_string(catalog.tree(&b.tree)?)?;
            Recipe::catalog(catalog, &e.name, b, None)?.key(&tree, "")
        }
        other => format!("{:x}", Sha256::digest(serde_json::to_vec(other)?)),
    };
    Ok(format!("{}-{}", e.name, &key[..16]))
}

/// Where a CI job for `e` can get its kernel: "debian" when it comes
/// through Debian's apt sources, or is built (CI builds every tree in the
/// same Debian container, whose compiler is part of the image's cache key,
/// so the check finds the image the build job made); "any" for Ubuntu's
/// packages and RPMs.
pub(crate) fn job_host(e: &Entry) -> &'static str {
    match &e.source {
        Source::Debian { .. } | Source::Build(_) => "debian",
        Source::Ubuntu { .. } | Source::Rpm { .. } => "any",
    }
}

/// The CI matrix: every kernel (or only `only`, a name or alias) with an
/// expectation for each scenario. Each row says where its job can run
/// ([`job_host`]) and which tree builds it (`build`), so CI builds each tree
/// once and fans the checks out. An empty matrix is an error: GitHub
/// rejects one with a message that names nothing.
pub(crate) fn matrix(catalog: &Catalog, scenarios: &[String], only: Option<&str>) -> Result<serde_json::Value> {
    let only = only.map(|n| catalog.lookup(n).map(|e| e.name.as_str())).transpose()?;
    let mut include = Vec::new();
    for s in scenarios {
        for e in catalog.kernel.iter().filter(|e| only.is_none_or(|o| o == e.name)) {
            if let Some(x) = e.expect.get(s) {
                include.push(serde_json::json!({
                    "kernel": e.name,
                    "scenario": s,
                    "expect": x,
                    "cache_key": cache_key(catalog, e)?,
                    "host": job_host(e),
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
