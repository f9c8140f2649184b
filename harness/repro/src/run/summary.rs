//! What a run directory says about itself: the summary's skeleton and
//! provenance, the run directory's default name, the error record, and the
//! human report printed at the end.

use std::path::{Path, PathBuf};

use anyhow::Result;

use repro_proto::{Backend, KernelInfo, Provenance, RunError, Summary, FORMAT_VERSION};

use crate::error::{kind_of, Kind};
use crate::run::scenario::ScenarioSpec;

pub(crate) fn new_summary(
    date: &str,
    kernel: &str,
    scenario: repro_proto::Scenario,
    iterations: u64,
    workers: u32,
    window: u64,
) -> Summary {
    Summary {
        format_version: FORMAT_VERSION,
        provenance: Provenance {
            repro_version: env!("CARGO_PKG_VERSION").to_string(),
            date: date.to_string(),
            host_cpu: host_cpu(),
            host_kernel: nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default(),
            qemu_version: None,
            command: Some(command_line()),
        },
        kernel: KernelInfo {
            name: kernel.to_string(),
            release: None,
            image: None,
            image_sha256: None,
            source: String::new(),
            verified: None,
            build: None,
            source_fix: None,
            source_bugs: Default::default(),
            fallback: None,
        },
        backend: Backend::Qemu,
        accel: None,
        accel_fallback_reason: None,
        guest_cpus: None,
        phases: None,
        guest_cpu_model: None,
        guest_memory_mib: None,
        scenario: scenario.name.clone(),
        scenario_definition: scenario,
        iterations_requested: iterations,
        iterations_done: 0,
        workers,
        window,
        complete: false,
        error: None,
        baseline: None,
        chain_counter: None,
        windows: Vec::new(),
        settled: None,
        residual: None,
        duration_s: 0.0,
        rounds: Vec::new(),
        checkpoints: Vec::new(),
        stopped_early: false,
        projection: None,
    }
}

/// How a failed run is described in summary.json.
pub(crate) fn run_error(e: &anyhow::Error) -> RunError {
    RunError { kind: kind_of(e).unwrap_or(Kind::Internal), message: crate::error::render(e), exit_code: crate::error::exit_code_of(e) }
}

pub(crate) fn print_report(s: &Summary, dir: &Path, to_stderr: bool) {
    let mut text = String::new();
    let release = s.kernel.release.as_deref().unwrap_or("?");
    let accel = s.ran_on();
    text.push_str(&format!(
        "{} on {release} ({accel}): {} of {} iterations, {} windows{}\n",
        s.scenario,
        s.iterations_done,
        s.iterations_requested,
        s.windows.len(),
        if s.complete { "" } else { ", INCOMPLETE" }
    ));
    if let (Some(first), Some(last)) = (s.windows.first(), s.windows.last()) {
        for p in &first.probes {
            if let Some(l) = last.probes.iter().find(|q| q.name == p.name) {
                text.push_str(&format!(
                    "  {:<6} {} p50 {:>10.1}us -> {:>10.1}us  (p99 {:.1}us)\n",
                    p.name,
                    s.scenario_definition.op_of(&p.name).timed(),
                    p.p50_us,
                    l.p50_us,
                    l.p99_us
                ));
            }
        }
        text.push_str(&format!("  nr_dentry {} -> {}, churn {:.0}/s at the end\n", first.nr_dentry, last.nr_dentry, last.churn_rate));
    }
    if let Some(r) = &s.residual {
        text.push_str(&format!(
            "  after settling: nr_dentry {} -> {}, residual {:.2} dentries per iteration\n",
            r.nr_dentry_before, r.nr_dentry_after, r.per_iteration
        ));
    }
    text.push_str(&format!("  results: {}\n", dir.display()));
    if to_stderr {
        crate::text::err(&text);
    } else {
        crate::text::out(&text);
    }
}

/// `out`, else a new directory under results/runs named by the date, the
/// kernel's slug, the scenario and the iteration count.
pub(crate) fn run_dir(out: Option<&Path>, kernel_slug: &str, scenario: &ScenarioSpec, iterations: u64, date: &str) -> Result<PathBuf> {
    if let Some(out) = out {
        return Ok(out.to_path_buf());
    }
    let base = default_dir(&format!("{}-{kernel_slug}-{}-{iterations}", stamp(date), scenario.slug()));
    // Two runs in one second get distinct directories.
    let mut dir = base.clone();
    let mut n = 1;
    while dir.exists() {
        n += 1;
        dir = PathBuf::from(format!("{}-{n}", base.display()));
    }
    Ok(dir)
}

/// Where a command's directory goes without --out: results/runs/NAME.
pub(crate) fn default_dir(name: &str) -> PathBuf {
    PathBuf::from("results/runs").join(name)
}

/// An RFC 3339 date as a run directory's stamp: its digits and letters.
pub(crate) fn stamp(date: &str) -> String {
    date.chars().filter(|c| c.is_ascii_alphanumeric()).collect()
}

/// This process's command line as a shell would take it back.
pub(crate) fn command_line() -> String {
    let mut args = std::env::args_os();
    // The program as a command name, not wherever cargo put it.
    let prog = args.next().map(|p| Path::new(&p).file_name().map_or(p.clone(), |f| f.to_os_string()));
    crate::text::shell_words(prog.into_iter().chain(args))
}

fn host_cpu() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| t.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).map(|s| s.trim().to_string()))
        .unwrap_or_else(|| "unknown".into())
}
