//! Running the kernel's own build: config, make with the era's variables,
//! a log per build with progress every 30 s, and the host tools it needs.

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::Result;

use crate::error::{fail, Kind};

pub(crate) fn make(src: &Path, out: &Path, vars: &[String], targets: &[&str], log: &Path) -> Result<()> {
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut cmd = Command::new("make");
    cmd.arg("-C").arg(src).arg(format!("O={}", out.display())).arg(format!("-j{jobs}")).args(vars).args(targets);
    run_logged(&mut cmd, log, &format!("make {}", targets.join(" ")))
}

pub(crate) fn make_output(src: &Path, out: &Path, vars: &[String], args: &[&str]) -> Result<String> {
    let mut cmd = Command::new("make");
    cmd.arg("-C").arg(src).arg(format!("O={}", out.display())).args(vars).args(args);
    crate::child::own(&mut cmd, nix::sys::signal::Signal::SIGTERM);
    let o = cmd.stdin(Stdio::null()).output().map_err(|e| fail(Kind::BuildFailed, format!("cannot run make ({e})")))?;
    if !o.status.success() {
        return Err(fail(
            Kind::BuildFailed,
            format!("make {} failed: {}", args.join(" "), crate::text::printable(String::from_utf8_lossy(&o.stderr).trim())),
        ));
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// A script of the tree, run through the interpreter its `#!` line names
/// (`sh` without one), so a tree whose files lost their run bits (a
/// snapshot, a tarball, a mirror) runs it all the same.
pub(crate) fn script(src: &Path, rel: &str) -> Command {
    let path = src.join(rel);
    let first = std::fs::read(&path).ok().map(|b| b.split(|c| *c == b'\n').next().unwrap_or_default().to_vec()).unwrap_or_default();
    let shebang = String::from_utf8_lossy(&first);
    let mut words = shebang.strip_prefix("#!").map(|s| s.split_whitespace().map(String::from).collect::<Vec<_>>()).unwrap_or_default();
    if words.is_empty() {
        words.push("sh".into());
    }
    let mut cmd = Command::new(&words[0]);
    cmd.args(&words[1..]).arg(path).current_dir(src);
    // Owned wherever it is run: its own process group, ended with repro.
    crate::child::own(&mut cmd, nix::sys::signal::Signal::SIGTERM);
    cmd
}

/// The last non-empty line of a build log (read from its last 4 KiB).
pub(crate) fn last_log_line(log: &Path) -> Option<String> {
    use std::io::{Seek, SeekFrom};
    let mut f = File::open(log).ok()?;
    let len = f.metadata().ok()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(4096))).ok()?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf);
    at_step(&text).map(|l| crate::text::printable(l).chars().take(120).collect())
}

/// Where a build is, from its log's tail: the last of kbuild's step lines
/// (`  CC      fs/proc/proc_sysctl.o`), not a compiler warning's caret or
/// context; any last line if none is in view.
fn at_step(text: &str) -> Option<&str> {
    let step = |l: &&str| {
        let mut w = l.split_whitespace();
        l.starts_with("  ")
            && w.next().is_some_and(|v| {
                v.len() <= 8
                    && v.starts_with(|c: char| c.is_ascii_uppercase())
                    && v.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            })
            && w.next().is_some()
    };
    text.lines().rev().find(step).or_else(|| text.lines().rev().find(|l| !l.trim().is_empty())).map(str::trim)
}

/// Run with stdout and stderr appended to `log`; on failure, the error
/// quotes the log's last lines (compiler errors first) and names the log.
pub(crate) fn run_logged(cmd: &mut Command, log: &Path, what: &str) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
    writeln!(f, "\n### repro: {what}")?;
    // A build outlives nothing: if repro dies, make gets SIGTERM, stops and
    // deletes its half-written target instead of building on as an orphan.
    crate::child::own(cmd, nix::sys::signal::Signal::SIGTERM);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(f.try_clone()?)
        .stderr(f)
        .spawn()
        .map_err(|e| fail(Kind::BuildFailed, format!("cannot run {what} ({e}); log: {}", log.display())))?;
    let t0 = Instant::now();
    let mut next_note = t0 + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        // A build takes minutes: say every half minute that it goes on, and where.
        if Instant::now() >= next_note {
            next_note += std::time::Duration::from_secs(30);
            tracing::info!("{what}: {:.0}s, at {}", t0.elapsed().as_secs_f64(), last_log_line(log).unwrap_or_default());
        }
        if crate::interrupt::requested() {
            // make and every compiler it runs: its process group.
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM);
            let _ = child.wait();
            return Err(fail(
                Kind::Interrupted,
                format!("interrupted during {what}; the tree was put back and nothing was cached (log: {})", log.display()),
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    if status.success() {
        return Ok(());
    }
    let mut text = String::new();
    File::open(log)?.read_to_string(&mut text)?;
    let section = text.rsplit("### repro: ").next().unwrap_or("");
    let errors: Vec<&str> = section.lines().filter(|l| l.contains("error") || l.contains("Error")).take(10).collect();
    let tail = crate::text::tail(section, 15);
    Err(fail(
        Kind::BuildFailed,
        format!("{what} failed ({status}); full log: {}\n--- errors ---\n{}\n--- last lines ---\n{tail}", log.display(), errors.join("\n")),
    ))
}

/// The build tools and headers a minimal kernel build needs, with the
/// Debian package that provides each.
pub(crate) const BUILD_NEEDS: &[(&str, &str)] = &[
    ("make", "make"),
    ("flex", "flex"),
    ("bison", "bison"),
    ("bc", "bc"),
    ("perl", "perl"),
    ("git", "git"),
    ("/usr/include/libelf.h", "libelf-dev"),
    ("/usr/include/openssl/opensslv.h", "libssl-dev"),
    // The boot image's compression (minimal.config): lz4 from 5.x, lz4c before.
    ("lz4", "lz4"),
    ("lz4c", "lz4"),
];

pub(crate) fn check_build_tools() -> Result<()> {
    let on_path = |tool: &str| std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).any(|d| d.join(tool).is_file());
    // gcc builds the host tools of every tree, whichever compiler builds the kernel.
    let missing: Vec<&str> = BUILD_NEEDS
        .iter()
        .chain(&[("gcc", "gcc")])
        .filter(|(what, _)| if what.starts_with('/') { !Path::new(what).exists() } else { !on_path(what) })
        .map(|(_, pkg)| *pkg)
        .collect();
    if !missing.is_empty() {
        return Err(fail(
            Kind::KernelUnavailable,
            format!(
                "building a kernel needs {}: install with `sudo apt-get install -y {}` (ci/setup.sh does), or boot a prebuilt image with --kernel PATH",
                missing.join(", "),
                missing.join(" ")
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_build_is_at_its_last_kbuild_step_not_at_a_warning_caret() {
        let log = "  CC      kernel/bpf/core.o\nfoo.c:12:3: warning: x\n   12 |   y;\n      |   ^~~~\n";
        assert_eq!(at_step(log), Some("CC      kernel/bpf/core.o"));
        assert_eq!(at_step("make: Entering directory '/x'\n"), Some("make: Entering directory '/x'"));
    }
}
