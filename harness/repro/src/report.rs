//! `repro report DIR...`: run directories into a comparison across kernels.
//! This first part is the markdown table; plots and the HTML page build on
//! the same rows.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use repro_proto::Summary;

use crate::catalog::{Catalog, Expect};
use crate::verdict::{decide, Outcome, Verdict};

/// One run, with its verdict and what the catalog expected.
pub struct Row {
    pub dir: PathBuf,
    pub summary: Summary,
    pub verdict: Verdict,
    pub expected: Option<Expect>,
}

/// The run directories under `args`: a directory holding summary.json is a
/// run; otherwise its subdirectories that hold one are, in name order.
pub fn collect(args: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut dirs = Vec::new();
    for a in args {
        if a.join("summary.json").is_file() {
            dirs.push(a.clone());
            continue;
        }
        let mut subs: Vec<PathBuf> = std::fs::read_dir(a)
            .with_context(|| format!("reading {}", a.display()))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.join("summary.json").is_file())
            .collect();
        anyhow::ensure!(!subs.is_empty(), "{} holds no summary.json, nor any run directory that does", a.display());
        subs.sort();
        dirs.extend(subs);
    }
    Ok(dirs)
}

pub fn rows(dirs: &[PathBuf], catalog: &Catalog) -> Result<Vec<Row>> {
    dirs.iter()
        .map(|dir| {
            let path = dir.join("summary.json");
            let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            let summary: Summary = serde_json::from_str(&text).with_context(|| format!("{} is not a repro summary", path.display()))?;
            let verdict = decide(&summary, &summary.scenario_definition.verdict);
            let expected = catalog.lookup(&summary.kernel.name).ok().and_then(|e| e.expect.get(&summary.scenario).copied());
            Ok(Row { dir: dir.clone(), summary, verdict, expected })
        })
        .collect()
}

fn agreement(r: &Row) -> &'static str {
    match (r.expected, r.verdict.outcome) {
        (None, _) => "no expectation",
        (Some(_), Outcome::Inconclusive) => "inconclusive",
        (Some(Expect::Regressed), Outcome::Regressed) | (Some(Expect::Clean), Outcome::Clean) => "yes",
        _ => "NO",
    }
}

fn num(x: Option<f64>, decimals: usize) -> String {
    x.map_or("-".into(), |v| format!("{v:.decimals$}"))
}

/// The comparison table, one row per run.
pub fn markdown(rows: &[Row], base: &Path) -> String {
    let mut out = String::from(
        "| kernel | release | accel | scenario | iterations | residual per namespace | probe p50 first → last (us) | slope (us per 1k) | verdict | expected | agrees | run |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let s = &r.summary;
        let e = &r.verdict.evidence;
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} {} → {} | {} | {} | {} | {} | {} |\n",
            s.kernel.name,
            s.kernel.release.as_deref().unwrap_or("?"),
            s.accel.as_deref().unwrap_or(&s.backend),
            s.scenario,
            s.iterations_done,
            num(e.residual_per_iteration, 2),
            e.probe.as_deref().unwrap_or("probe"),
            num(e.p50_first_us, 1),
            num(e.p50_last_us, 1),
            num(e.slope_us_per_1k, 1),
            r.verdict.outcome.as_str(),
            r.expected.map_or("-", |x| match x {
                Expect::Regressed => "regressed",
                Expect::Clean => "clean",
            }),
            agreement(r),
            r.dir.strip_prefix(base).unwrap_or(&r.dir).display(),
        ));
    }
    out
}

/// The write-up's measurement (shared/reference/oppo-dcache-writeup.txt):
/// one open() of an ipv6 sysctl took 0.456366 s with 799,259 entries on the
/// chain, about 0.57 us per entry.
pub const WRITEUP_OPEN_S: f64 = 0.456366;
pub const WRITEUP_CHAIN: f64 = 799_259.0;

/// For runs judged regressed: what one stale chain entry costs on this run
/// (the probe's p50 slope: each churned namespace leaves one `ipv6` entry
/// on the hot chain) and the open() latency that predicts at 800,000
/// churned namespaces, beside the write-up's figure.
pub fn extrapolation(rows: &[Row]) -> String {
    let mut out = String::new();
    for r in rows.iter().filter(|r| r.verdict.outcome == Outcome::Regressed) {
        let e = &r.verdict.evidence;
        let (Some(slope), Some(first)) = (e.slope_us_per_1k, e.p50_first_us) else { continue };
        let per_entry_us = slope / 1000.0;
        let at_800k_s = (first + per_entry_us * 800_000.0) / 1e6;
        out.push_str(&format!(
            "- {} ({}): {:.2} us per stale chain entry; predicted open() at 800,000 churned namespaces: {:.3} s \
             (write-up: {:.2} us per entry, {:.3} s at {} entries, on its hardware)\n",
            r.summary.kernel.name,
            r.summary.accel.as_deref().unwrap_or(&r.summary.backend),
            per_entry_us,
            at_800k_s,
            WRITEUP_OPEN_S / WRITEUP_CHAIN * 1e6,
            WRITEUP_OPEN_S,
            WRITEUP_CHAIN as u64,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_markdown_of_the_recorded_seed_runs() {
        let results = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../results");
        let dirs = collect(&[results.join("seed")]).unwrap();
        let rows = rows(&dirs, &Catalog::parse(crate::catalog::CATALOG_TOML).unwrap()).unwrap();
        assert!(rows.iter().all(|r| agreement(r) == "yes"), "a recorded run disagrees with the catalog");
        insta::assert_snapshot!(markdown(&rows, &results));
        let x = extrapolation(&rows);
        assert_eq!(x.lines().count(), 1, "one regressed run: {x}");
        assert!(x.starts_with("- 6.1-noprune (tcg): ") && x.contains("0.57 us per entry, 0.456 s at 799259 entries"), "{x}");
    }

    #[test]
    fn a_directory_without_runs_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        assert!(collect(&[d.path().to_path_buf()]).is_err());
    }
}
