//! `repro matrix`: every kernel x scenario pair, one after another (two
//! cores do not run two TCG guests well), then the report over all of them.
//! A pair that fails is recorded as an incomplete run with its error, so the
//! report shows it and the remaining pairs still run.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, Result};
use repro_proto::exit_codes;

use crate::catalog::{Catalog, Expect};
use crate::error::{kind_of, Kind};
use crate::record::SUMMARY;
use crate::report::{self, Document};
use crate::run_cmd::{self, execute};
use crate::verdict::{decide, Outcome};
use crate::MatrixArgs;

/// `<out>/<scenario>/<kernel>-<iterations>`, with path-hostile characters replaced.
pub fn pair_dir(out: &Path, kernel: &str, scenario: &str, iterations: u64) -> PathBuf {
    let slug = |s: &str| -> String {
        let base = Path::new(s).file_stem().map_or(s.to_string(), |f| f.to_string_lossy().into_owned());
        base.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_' { c } else { '_' }).collect()
    };
    // A catalog name is kept whole ("6.1" has no file stem to speak of); a path is slugged.
    let k = if kernel.contains('/') { slug(kernel) } else { kernel.to_string() };
    out.join(slug(scenario)).join(format!("{k}-{iterations}"))
}

pub fn matrix(args: &MatrixArgs, quiet: bool) -> Result<i32> {
    // Names that cannot work fail now, not an hour into the matrix.
    let catalog = Catalog::builtin()?;
    for k in &args.kernels {
        if !Path::new(k).is_file() {
            catalog.lookup(k)?;
        }
    }
    let scenarios = args.scenarios.iter().map(|s| crate::scenario::load(s).map(|def| (s.clone(), def))).collect::<Result<Vec<_>>>()?;
    let date = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let out = args.run.out.clone().unwrap_or_else(|| {
        PathBuf::from("results/runs").join(format!("matrix-{}", date.chars().filter(|c| c.is_ascii_alphanumeric()).collect::<String>()))
    });
    let total = args.kernels.len() * scenarios.len();
    let mut dirs = Vec::new();
    let mut interrupted = false;
    'pairs: for (name, def) in &scenarios {
        for kernel in &args.kernels {
            let dir = pair_dir(&out, kernel, name, args.run.iterations);
            let i = dirs.len() + 1;
            tracing::info!("[{i}/{total}] {kernel} x {name} -> {}", dir.display());
            let mut run = args.run.clone();
            run.vm.kernel = kernel.clone();
            run.scenario = name.clone();
            run.out = Some(dir.clone());
            run.json = false;
            let verdict = match execute(&run, quiet) {
                Ok(done) => {
                    if let Some(e) = &done.error {
                        eprintln!("error: {}", crate::error::render(e));
                        interrupted = kind_of(e) == Some(Kind::Interrupted) || crate::interrupt::requested();
                    }
                    decide(&done.summary, &done.summary.scenario_definition.verdict)
                }
                Err(e) => {
                    eprintln!("error: {}", crate::error::render(&e));
                    interrupted = kind_of(&e) == Some(Kind::Interrupted) || crate::interrupt::requested();
                    record_failure(&dir, kernel, def.clone(), &run, &e, &date)?
                }
            };
            std::fs::write(dir.join("verdict.json"), serde_json::to_vec_pretty(&verdict)?)
                .with_context(|| format!("writing {}/verdict.json", dir.display()))?;
            println!("[{i}/{total}] {kernel} x {name}: {} ({})", verdict.outcome.as_str(), verdict.rule);
            dirs.push(dir);
            if interrupted {
                eprintln!("interrupted: {} of {total} pairs ran; writing the report for them", dirs.len());
                break 'pairs;
            }
        }
    }
    let rows = report::rows(&dirs, &catalog)?;
    let doc = Document {
        rows: &rows,
        out: &out,
        commands: vec![
            run_cmd::command_line(),
            format!(
                "repro report {} --out {}",
                scenarios.iter().map(|(n, _)| out.join(n).display().to_string()).collect::<Vec<_>>().join(" "),
                out.display()
            ),
        ],
        // Every pair leaves a run directory (a failed one, incomplete).
        missing: &[],
        logs: None,
    };
    report::write(&doc)?;
    println!("report: {}", out.join("README.md").display());
    if interrupted {
        return Ok(exit_codes::INTERRUPTED);
    }
    let contradicted = rows.iter().any(|r| {
        matches!((r.expected, r.verdict.outcome), (Some(Expect::Regressed), Outcome::Clean) | (Some(Expect::Clean), Outcome::Regressed))
    });
    Ok(if contradicted {
        exit_codes::REGRESSED
    } else if rows.iter().any(|r| r.verdict.outcome == Outcome::Inconclusive) {
        exit_codes::INCONCLUSIVE
    } else {
        exit_codes::OK
    })
}

/// A pair that failed before its run began (kernel fetch or build, QEMU
/// missing) still gets a run directory: an incomplete summary with the error.
fn record_failure(
    dir: &Path,
    kernel: &str,
    scenario: repro_proto::Scenario,
    run: &crate::RunArgs,
    e: &anyhow::Error,
    date: &str,
) -> Result<crate::verdict::Verdict> {
    let window = run.window.unwrap_or(run.iterations / 20).max(1);
    let mut s = run_cmd::new_summary(date, kernel, scenario, run.iterations, run.workers, window);
    s.backend = "qemu".into();
    s.error = Some(run_cmd::run_error(e));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join(SUMMARY), serde_json::to_vec_pretty(&s)?).with_context(|| format!("writing {}/{SUMMARY}", dir.display()))?;
    Ok(decide(&s, &s.scenario_definition.verdict))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_directories_are_named_by_scenario_and_kernel() {
        let out = Path::new("m");
        assert_eq!(pair_dir(out, "6.1-noprune", "seed", 3000), Path::new("m/seed/6.1-noprune-3000"));
        assert_eq!(pair_dir(out, "/tmp/x/bzImage", "scenarios/held-fd.toml", 10), Path::new("m/held-fd/bzImage-10"));
    }
}
