//! `repro report DIR...`: run directories into a comparison across kernels.
//! The rows (one per run, with its verdict and the catalog's expectation)
//! become a markdown table, charts, and a directory holding README.md, the
//! plots as SVG and PNG, and one self-contained report.html.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use repro_proto::Summary;

use crate::judge::plot::{Chart, Series};
use crate::judge::verdict::{decide, Agreement, Verdict};
use crate::kernel::catalog::{Catalog, Expect};

/// One run, with its verdict and what the catalog, or the kernel's own
/// source, expected.
pub(crate) struct Row {
    pub dir: PathBuf,
    pub summary: Summary,
    pub verdict: Verdict,
    pub expected: Option<Expect>,
    /// Where `expected` came from: the catalog, or the fix read in the source.
    pub expected_from: Option<String>,
    /// The catalog's known issue with this kernel, if any.
    pub known_issue: Option<String>,
}

impl Row {
    pub(crate) fn agreement(&self) -> Agreement {
        Agreement::of(self.expected, self.verdict.outcome)
    }
}

/// The run directories under `args`: a directory holding summary.json is a
/// run; otherwise its subdirectories that hold one are, in name order.
pub(crate) fn collect(args: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut dirs = Vec::new();
    for a in args {
        if a.join("summary.json").is_file() {
            dirs.push(a.clone());
            continue;
        }
        let mut subs: Vec<PathBuf> = std::fs::read_dir(a)
            .map_err(|e| {
                crate::error::fail(
                    crate::error::Kind::Usage,
                    format!("cannot read {} ({e}): pass run directories (each holding summary.json), or directories of them", a.display()),
                )
            })?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.join("summary.json").is_file())
            .collect();
        if subs.is_empty() {
            return Err(crate::error::fail(
                crate::error::Kind::Usage,
                format!("{} holds no summary.json, nor any run directory that does", a.display()),
            ));
        }
        subs.sort();
        dirs.extend(subs);
    }
    Ok(dirs)
}

/// The rows of the runs in `dirs`. A run whose summary cannot be read (cut
/// short, hand-edited, another program's) is left out with a warning that
/// names it: one bad directory never takes the whole report down. None
/// readable at all is an error.
pub(crate) fn rows(dirs: &[PathBuf], catalog: &Catalog) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    let mut unreadable = Vec::new();
    for dir in dirs {
        match row(dir, catalog) {
            Ok(r) => rows.push(r),
            Err(e) => {
                tracing::warn!("leaving {} out of the report: {e:#}", dir.display());
                unreadable.push(format!("{e:#}"));
            }
        }
    }
    if rows.is_empty() && !unreadable.is_empty() {
        anyhow::bail!("no run could be read: {}", unreadable.join("; "));
    }
    Ok(rows)
}

pub(crate) fn row(dir: &Path, catalog: &Catalog) -> Result<Row> {
    let path = dir.join("summary.json");
    let text = crate::input::Input::Summary.read_text(&path)?;
    let summary: Summary = serde_json::from_str(&text).with_context(|| format!("{} is not a repro summary", path.display()))?;
    let verdict = decide(&summary, &summary.scenario_definition.verdict);
    let entry = catalog.lookup(&summary.kernel.name).ok();
    let from_catalog = entry.and_then(|e| e.expect.get(&summary.scenario).copied()).map(|x| (x, "the catalog".to_string()));
    // A kernel built from a tree (--src) says in its source which bugs it has.
    let from_source = || summary.kernel.expect_from_source(&summary.scenario_definition);
    let (expected, expected_from) = from_catalog.or_else(from_source).unzip();
    let known_issue = entry.and_then(|e| e.known_issue.clone());
    Ok(Row { dir: dir.to_path_buf(), summary, verdict, expected, expected_from, known_issue })
}

/// The name of the probe a run is judged on ([`repro_proto::Scenario::judged_probe`]).
fn judged_probe(s: &Summary) -> Option<&str> {
    s.scenario_definition.judged_probe().map(|p| p.name.as_str())
}

/// A line's label: the kernel, with the accelerator when runs of one
/// kernel differ in it, and the run directory when they still collide.
fn labels(rows: &[&Row]) -> Vec<String> {
    let base: Vec<String> = rows.iter().map(|r| r.summary.kernel.name.clone()).collect();
    rows.iter()
        .enumerate()
        .map(|(i, r)| {
            let dup = base.iter().filter(|b| **b == base[i]).count() > 1;
            if !dup {
                return base[i].clone();
            }
            let name = r.dir.file_name().map_or(String::new(), |f| f.to_string_lossy().into_owned());
            format!("{} ({}, {name})", base[i], r.summary.ran_on())
        })
        .collect()
}

/// Charts per scenario: the judged probe's p50 and p99 and nr_dentry
/// against iteration, one line per run. Named `<scenario>-<what>`.
pub(crate) fn charts(rows: &[Row]) -> Vec<(String, Chart)> {
    let mut scenarios: Vec<&str> = rows.iter().map(|r| r.summary.scenario.as_str()).collect();
    scenarios.sort();
    scenarios.dedup();
    let mut out = Vec::new();
    for sc in scenarios {
        let runs: Vec<&Row> = rows.iter().filter(|r| r.summary.scenario == sc && !r.summary.windows.is_empty()).collect();
        let names = labels(&runs);
        let probe = runs.first().and_then(|r| judged_probe(&r.summary)).unwrap_or("probe").to_string();
        let timed = runs.first().map(|r| r.summary.scenario_definition.op_of(&probe)).unwrap_or_default().timed();
        let latency = |pick: fn(&repro_proto::ProbeStats) -> f64| -> Vec<Series> {
            runs.iter()
                .zip(&names)
                .map(|(r, label)| Series {
                    label: label.clone(),
                    points: r
                        .summary
                        .windows
                        .iter()
                        .filter_map(|w| w.probes.iter().find(|p| p.name == probe).map(|p| (w.iteration as f64, pick(p))))
                        .collect(),
                })
                .collect()
        };
        let kinds: [(&str, String, String, bool, Vec<Series>); 3] = [
            ("p50", format!("{sc}: {probe} {timed} p50"), "microseconds (log scale)".into(), true, latency(|p| p.p50_us)),
            ("p99", format!("{sc}: {probe} {timed} p99"), "microseconds (log scale)".into(), true, latency(|p| p.p99_us)),
            (
                "nr_dentry",
                format!("{sc}: dentries in the dcache"),
                "nr_dentry".into(),
                false,
                runs.iter()
                    .zip(&names)
                    .map(|(r, label)| Series {
                        label: label.clone(),
                        points: r.summary.windows.iter().map(|w| (w.iteration as f64, w.nr_dentry as f64)).collect(),
                    })
                    .collect(),
            ),
        ];
        for (what, title, y_label, log_y, series) in kinds {
            // A scenario name comes from a summary: it names a file in plots/
            // only through characters that cannot climb out of it.
            out.push((format!("{}-{what}", crate::kernel::spec::slug(sc)), Chart { title, y_label, log_y, series }));
        }
    }
    out
}

/// What a written report is made of, and how it was made.
pub(crate) struct Document<'a> {
    pub rows: &'a [Row],
    /// The directory the report is written to; paths are relative to it.
    pub out: &'a Path,
    /// The commands that made this report, shown verbatim after the
    /// commands the runs record in their provenance.
    pub commands: Vec<String>,
    /// Pairs that were meant to run and left no run directory.
    pub missing: &'a [Missing],
    /// Where the jobs' logs are, for the missing pairs.
    pub logs: Option<&'a str>,
}

/// A (kernel, scenario) pair of the expected matrix with no run.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Missing {
    pub kernel: String,
    pub scenario: String,
}

/// The pairs of the matrix in `path` that no row ran.
pub(crate) fn missing(path: &Path, rows: &[Row]) -> Result<Vec<Missing>> {
    let m = crate::kernel::ci::Matrix::read(path)?;
    Ok(m.include
        .into_iter()
        .filter(|p| !rows.iter().any(|r| r.summary.kernel.name == p.kernel && r.summary.scenario == p.scenario))
        .map(|p| Missing { kernel: p.kernel, scenario: p.scenario })
        .collect())
}

impl Document<'_> {
    /// The runs' own command lines (first seen first), then the report's.
    pub(crate) fn all_commands(&self) -> Vec<String> {
        let mut all: Vec<String> = Vec::new();
        for c in self.rows.iter().filter_map(|r| r.summary.provenance.command.clone()).chain(self.commands.iter().cloned()) {
            if !all.contains(&c) {
                all.push(c);
            }
        }
        all
    }
}

/// Where the plots go under the report directory.
pub(crate) const PLOTS: &str = "plots";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::report_md::{extrapolation, markdown, md_cell};

    #[test]
    fn report_markdown_of_the_recorded_seed_runs() {
        let results = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../results");
        let dirs = collect(&[results.join("seed")]).unwrap();
        let rows = rows(&dirs, &Catalog::parse(crate::kernel::catalog::CATALOG_TOML).unwrap()).unwrap();
        for r in &rows {
            let a = r.agreement();
            assert!(
                a == Agreement::Agrees || (a == Agreement::Inconclusive && r.known_issue.is_some()),
                "{} disagrees with the catalog unexplained",
                r.dir.display()
            );
        }
        assert!(rows.iter().all(|r| r.agreement() != Agreement::Contradicts), "a recorded run contradicts the catalog");
        insta::assert_snapshot!(markdown(&rows, &results));
        let x = extrapolation(&rows);
        assert_eq!(x.lines().count(), 1, "one regressed run: {x}");
        assert!(x.starts_with("- 6.1-noprune on seed (tcg): ") && x.contains("Write-up: 0.456 s (0.57 us per entry)"), "{x}");
        assert!(x.contains("fitted on chains of 150-3000 entries (20 windows)"), "{x}");
    }

    #[test]
    fn one_unreadable_run_is_left_out_and_the_rest_are_reported() {
        let d = tempfile::tempdir().unwrap();
        let good = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../results/seed/6.1-noprune-3000");
        let bad = d.path().join("bad");
        std::fs::create_dir(&bad).unwrap();
        // What an older repro wrote for an infinite projection.
        std::fs::write(bad.join("summary.json"), "{\"projection\": {\"writeup_chain_s\": null}}").unwrap();
        let catalog = Catalog::parse(crate::kernel::catalog::CATALOG_TOML).unwrap();
        assert_eq!(rows(&[good, bad.clone()], &catalog).unwrap().len(), 1);
        assert!(rows(&[bad], &catalog).is_err(), "nothing readable at all is an error");
    }

    #[test]
    fn each_sibling_bug_has_a_section_with_its_runs_settled_ratios() {
        let results = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../results");
        let catalog = Catalog::parse(crate::kernel::catalog::CATALOG_TOML).unwrap();
        let dirs =
            [results.join("netns-lock/6.1-netns-lock-200"), results.join("real-trees/3.17-netns-lock"), results.join("seed/6.1-3000")];
        let rows = rows(&dirs, &catalog).unwrap();
        let md = crate::judge::report_md::bug_sections(&rows, &results);
        assert!(md.contains("## netns-lock: a network namespace's creation waits"), "{md}");
        assert!(!md.contains("## ipc-teardown"), "no run of it here: {md}");
        // The real tree is expected by what its net/core/net_namespace.c says.
        let tree = md.lines().find(|l| l.contains("real-trees/3.17-netns-lock")).unwrap();
        assert!(tree.contains("| regressed | regressed | its source: copy_net_ns() takes") && tree.contains("| yes |"), "{tree}");
        assert_eq!(md.lines().filter(|l| l.starts_with("| ") && !l.starts_with("| kernel")).count(), 2, "{md}");
    }

    #[test]
    fn a_run_built_from_a_tree_is_expected_what_its_source_says() {
        // A recorded real-tree run (4.9.115, regressed), as a new summary
        // records it: with the fix read from its source and no catalog name.
        let results = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../results/real-trees/4.9.115-src-3000/summary.json");
        let mut s: Summary = serde_json::from_str(&std::fs::read_to_string(results).unwrap()).unwrap();
        let catalog = Catalog::parse(crate::kernel::catalog::CATALOG_TOML).unwrap();
        let d = tempfile::tempdir().unwrap();
        for (name, fix, agreement) in [
            ("absent", Some(repro_proto::SourceFix::Absent), Agreement::Agrees),
            ("invalidate", Some(repro_proto::SourceFix::Invalidate), Agreement::Contradicts),
            ("unknown", None, Agreement::NoExpectation),
        ] {
            s.kernel.source_fix = fix;
            let dir = d.path().join(name);
            std::fs::create_dir(&dir).unwrap();
            std::fs::write(dir.join("summary.json"), serde_json::to_vec(&s).unwrap()).unwrap();
            let r = rows(&[dir], &catalog).unwrap().pop().unwrap();
            assert_eq!(r.agreement(), agreement, "{name}");
            if fix.is_some() {
                assert!(r.expected_from.as_deref().unwrap().starts_with("its source: "), "{:?}", r.expected_from);
            }
        }
    }

    #[test]
    fn names_from_summaries_cannot_break_a_table_or_leave_plots() {
        assert_eq!(md_cell("a|b\nc\u{1b}[31m"), "a\\|b c [31m");
        assert_eq!(crate::kernel::spec::slug("../../etc/passwd"), ".._.._etc_passwd");
        assert_eq!(crate::kernel::spec::slug(".."), "_..");
        assert_eq!(crate::kernel::spec::slug("seed"), "seed");
    }

    #[test]
    fn a_directory_without_runs_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        assert!(collect(&[d.path().to_path_buf()]).is_err());
    }
}
