//! `repro matrix`: every kernel x scenario pair, one after another (two
//! cores do not run two TCG guests well), then the report over all of them.
//! A pair that fails is recorded as an incomplete run with its error, so the
//! report shows it and the remaining pairs still run.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::Result;

use crate::error::{kind_of, Kind};
use crate::guest::request::RunRequest;
use crate::judge::judged::judge;
use crate::judge::report::{self, Document};
use crate::judge::verdict::{Agreement, Outcome};
use crate::kernel::spec::KernelSpec;
use crate::run::record::SUMMARY;
use crate::run::scenario::ScenarioSpec;
use crate::run::summary::{command_line, stamp};

/// `<out>/<scenario>/<kernel>-<iterations>`, with path-hostile characters replaced.
pub(crate) fn pair_dir(out: &Path, kernel: &KernelSpec, scenario: &ScenarioSpec, iterations: u64) -> PathBuf {
    out.join(scenario.slug()).join(format!("{}-{iterations}", kernel.slug()))
}

/// Every kernel x scenario pair, run as `run` says.
#[derive(Debug, Clone)]
pub struct MatrixRequest {
    pub kernels: Vec<KernelSpec>,
    pub scenarios: Vec<ScenarioSpec>,
    pub run: RunRequest,
    /// Also write the verdicts here as JUnit XML.
    pub junit: Option<PathBuf>,
}

/// How a matrix ended, worst first; cli/ chooses the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MatrixEnd {
    /// Ctrl-C: the pairs so far were reported.
    Interrupted,
    /// A verdict contradicts the expectation.
    Contradicts,
    /// A pair failed or was inconclusive.
    Inconclusive,
    /// Every pair ran and agrees.
    Agrees,
}

pub(crate) fn matrix(args: &MatrixRequest, quiet: bool) -> Result<MatrixEnd> {
    // Names that cannot work fail now, not an hour into the matrix.
    let catalog = &args.run.vm.catalog;
    for k in &args.kernels {
        if let KernelSpec::Catalog(name) = k {
            catalog.lookup(name)?;
        }
    }
    for s in &args.scenarios {
        s.load()?;
    }
    if let Some(path) = &args.junit {
        crate::atomic::check_target(path)?;
    }
    let scenarios = &args.scenarios;
    let date = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let out = args.run.out.clone().unwrap_or_else(|| crate::run::summary::default_dir(&format!("matrix-{}", stamp(&date))));
    let total = args.kernels.len() * scenarios.len();
    let mut dirs = Vec::new();
    let mut interrupted = false;
    'pairs: for name in scenarios {
        for kernel in &args.kernels {
            let dir = pair_dir(&out, kernel, name, args.run.iterations);
            let i = dirs.len() + 1;
            tracing::info!("[{i}/{total}] {kernel} x {name} -> {}", dir.display());
            let mut run = args.run.clone();
            run.vm.kernel = kernel.clone();
            run.scenario = name.clone();
            run.out = Some(dir.clone());
            run.json = false;
            // The same judge as check and bisect; a pair the kernel cannot
            // run is an inconclusive row and the rest still run.
            match judge(&run, quiet) {
                Ok(j) => {
                    crate::text::outln(&format!("[{i}/{total}] {kernel} x {name}: {} ({})", j.verdict.outcome.as_str(), j.verdict.rule))
                }
                Err(e) if kind_of(&e) == Some(Kind::Interrupted) || crate::interrupt::requested() => interrupted = true,
                Err(e) => return Err(e),
            }
            if dir.join(SUMMARY).exists() {
                dirs.push(dir);
            }
            if interrupted {
                crate::text::errln(&format!("interrupted: {} of {total} pairs ran; writing the report for them", dirs.len()));
                break 'pairs;
            }
        }
    }
    let rows = report::rows(&dirs, catalog)?;
    let doc = Document {
        rows: &rows,
        out: &out,
        commands: vec![
            command_line(),
            format!(
                "repro report {} --out {}",
                scenarios.iter().map(|n| out.join(n.slug()).display().to_string()).collect::<Vec<_>>().join(" "),
                out.display()
            ),
        ],
        // Every pair leaves a run directory (a failed one, incomplete).
        missing: &[],
        logs: None,
    };
    crate::judge::report_files::write(&doc)?;
    crate::text::outln(&format!("report: {}", out.join("README.md").display()));
    if let Some(path) = &args.junit {
        crate::judge::junit::write(path, "repro matrix", rows.iter().map(crate::judge::junit::case_of_row).collect())?;
    }
    if interrupted {
        return Ok(MatrixEnd::Interrupted);
    }
    Ok(if rows.iter().any(|r| r.agreement() == Agreement::Contradicts) {
        MatrixEnd::Contradicts
    } else if rows.iter().any(|r| r.verdict.outcome == Outcome::Inconclusive) {
        MatrixEnd::Inconclusive
    } else {
        MatrixEnd::Agrees
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_directories_are_named_by_scenario_and_kernel() {
        let out = Path::new("m");
        let spec = |s: &str| KernelSpec::parse(std::ffi::OsStr::new(s));
        assert_eq!(pair_dir(out, &spec("6.1-noprune"), &ScenarioSpec::parse("seed"), 3000), Path::new("m/seed/6.1-noprune-3000"));
        assert_eq!(
            pair_dir(out, &spec("/tmp/x/bzImage"), &ScenarioSpec::parse("scenarios/held-fd.toml"), 10),
            Path::new("m/held-fd/bzImage-10")
        );
    }
}
