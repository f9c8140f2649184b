//! Fetching Debian packages with the machine's own apt configuration.
//!
//! A catalog entry names Debian suites (say bullseye) that the machine's
//! sources may not carry. repro never edits the system's apt configuration:
//! it writes a private one in its cache, with the mirrors taken from the
//! system's sources (the entry carrying `-security` suites for security
//! suites, the main Debian entry for the rest), and runs apt-get/apt-cache
//! with `-o Dir::...` options pointing at it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};

use crate::error::{fail, Kind};

const DEBIAN_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";
const UBUNTU_KEYRING: &str = "/usr/share/keyrings/ubuntu-archive-keyring.gpg";
/// Package lists younger than this are not refreshed.
const LISTS_MAX_AGE: Duration = Duration::from_secs(12 * 3600);
const DEBIAN_CODENAMES: &[&str] =
    &["buster", "bullseye", "bookworm", "trixie", "forky", "duke", "sid", "stable", "oldstable", "testing", "unstable"];
const UBUNTU_CODENAMES: &[&str] = &["xenial", "bionic", "focal", "jammy", "noble", "oracular", "plucky", "questing", "resolute"];

/// One `deb` source from the system's configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceEntry {
    pub uri: String,
    pub suites: Vec<String>,
    pub signed_by: Option<String>,
    /// The machine trusts this archive unsigned (`trusted=yes`): so do its
    /// derived sources, and nothing else is.
    pub trusted: bool,
}

/// Parse deb822 `.sources` text.
pub fn parse_deb822(text: &str) -> Vec<SourceEntry> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let field =
            |name: &str| stanza.lines().find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')).map(|v| v.trim().to_string()));
        let types = field("Types").unwrap_or_default();
        let enabled = field("Enabled").is_none_or(|v| v != "no");
        if !enabled || !types.split_whitespace().any(|t| t == "deb") {
            continue;
        }
        let suites: Vec<String> = field("Suites").unwrap_or_default().split_whitespace().map(String::from).collect();
        let signed_by = field("Signed-By").filter(|s| s.starts_with('/'));
        let trusted = field("Trusted").is_some_and(|v| v == "yes");
        for uri in field("URIs").unwrap_or_default().split_whitespace() {
            out.push(SourceEntry { uri: uri.to_string(), suites: suites.clone(), signed_by: signed_by.clone(), trusted });
        }
    }
    out
}

/// Parse one-line-style `sources.list` text.
pub fn parse_one_line(text: &str) -> Vec<SourceEntry> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some(rest) = line.strip_prefix("deb ") else {
            continue;
        };
        let mut rest = rest.trim();
        let mut signed_by = None;
        let mut trusted = false;
        if let Some(opts) = rest.strip_prefix('[') {
            // An option list that never closes is not a source apt reads either.
            let Some((opts, after)) = opts.split_once(']') else { continue };
            for opt in opts.split_whitespace() {
                if let Some(v) = opt.strip_prefix("signed-by=") {
                    signed_by = Some(v.to_string());
                }
                trusted |= opt == "trusted=yes";
            }
            rest = after.trim();
        }
        let mut words = rest.split_whitespace();
        if let (Some(uri), Some(suite)) = (words.next(), words.next()) {
            out.push(SourceEntry { uri: uri.to_string(), suites: vec![suite.to_string()], signed_by, trusted });
        }
    }
    out
}

/// The system's `deb` sources, from /etc/apt/sources.list and sources.list.d.
pub(crate) fn system_sources() -> Vec<SourceEntry> {
    let mut out = Vec::new();
    if let Ok(t) = std::fs::read_to_string("/etc/apt/sources.list") {
        out.extend(parse_one_line(&t));
    }
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut files: Vec<PathBuf> = dir.flatten().map(|e| e.path()).collect();
        files.sort();
        for f in files {
            let Ok(t) = std::fs::read_to_string(&f) else {
                continue;
            };
            match f.extension().and_then(|e| e.to_str()) {
                Some("sources") => out.extend(parse_deb822(&t)),
                Some("list") => out.extend(parse_one_line(&t)),
                _ => {}
            }
        }
    }
    out
}

pub(crate) fn is_debian_suite(suite: &str) -> bool {
    DEBIAN_CODENAMES.contains(&suite.split('-').next().unwrap_or(""))
}

pub(crate) fn is_ubuntu_suite(suite: &str) -> bool {
    UBUNTU_CODENAMES.contains(&suite.split('-').next().unwrap_or(""))
}

/// A distribution whose archive layout repro knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Distro {
    Debian,
    Ubuntu,
}

impl Distro {
    /// The word provenance uses: `debian`, `ubuntu`.
    pub fn id(self) -> &'static str {
        match self {
            Distro::Debian => "debian",
            Distro::Ubuntu => "ubuntu",
        }
    }

    fn of_suite(suite: &str) -> Option<Distro> {
        if is_debian_suite(suite) {
            Some(Distro::Debian)
        } else if is_ubuntu_suite(suite) {
            Some(Distro::Ubuntu)
        } else {
            None
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Distro::Debian => "Debian",
            Distro::Ubuntu => "Ubuntu",
        }
    }

    /// Kernels and compilers: Ubuntu keeps older GCCs in universe.
    fn components(self) -> &'static str {
        match self {
            Distro::Debian => "main",
            Distro::Ubuntu => "main universe",
        }
    }

    fn keyring(self) -> &'static str {
        match self {
            Distro::Debian => DEBIAN_KEYRING,
            Distro::Ubuntu => UBUNTU_KEYRING,
        }
    }
}

/// The `sources.list` lines for `suites`, with mirrors taken from `system`:
/// a suite of Debian's or Ubuntu's is fetched from this machine's mirror of
/// that same distribution, the one carrying its `-security` suites for
/// security suites and the main one for the rest.
pub fn derive_sources(system: &[SourceEntry], suites: &[String]) -> Result<String> {
    let mut lines = String::new();
    for suite in suites {
        let distro = Distro::of_suite(suite).with_context(|| format!("{suite:?} is not a Debian or Ubuntu suite repro knows"))?;
        let mirrors: Vec<&SourceEntry> = system.iter().filter(|e| e.suites.iter().any(|s| Distro::of_suite(s) == Some(distro))).collect();
        let security = suite.ends_with("-security");
        let entry = mirrors
            .iter()
            .find(|e| e.suites.iter().any(|s| s.ends_with("-security") == security))
            // Ubuntu serves -security from the main archive too.
            .or_else(|| if distro == Distro::Ubuntu { mirrors.first() } else { None });
        let Some(entry) = entry else {
            bail!(
                "no {} {} mirror in this machine's apt configuration (/etc/apt/sources.list{{,.d}}) to fetch suite {suite} from; \
                 add one, or pass a kernel image with --kernel PATH",
                distro.name(),
                if security { "security" } else { "archive" }
            );
        };
        let keyring = entry.signed_by.as_deref().unwrap_or(distro.keyring());
        let trusted = if entry.trusted { " trusted=yes" } else { "" };
        lines.push_str(&format!("deb [signed-by={keyring}{trusted}] {} {suite} {}\n", entry.uri, distro.components()));
    }
    Ok(lines)
}

/// A private apt state directory for one set of suites. Holding one holds
/// an exclusive lock on it: two repro processes never run apt on the same
/// lists at once (apt would refuse the second with its own lock error).
pub(crate) struct AptRoot {
    dir: PathBuf,
    _lock: nix::fcntl::Flock<std::fs::File>,
}

/// The most one apt-get call may take (a kernel package is ~70 MB).
const APT_LIMIT: std::time::Duration = std::time::Duration::from_secs(20 * 60);

impl AptRoot {
    pub(crate) fn create(dir: &Path, sources_list: &str) -> Result<AptRoot> {
        for sub in ["lists/partial", "cache/archives/partial", "sources.list.d", "preferences.d"] {
            std::fs::create_dir_all(dir.join(sub)).with_context(|| format!("creating {}", dir.join(sub).display()))?;
        }
        let lock = crate::lockfile::lock(&dir.join(".repro-lock"), "the private apt root")?;
        let path = dir.join("sources.list");
        if std::fs::read_to_string(&path).ok().as_deref() != Some(sources_list) {
            std::fs::write(&path, sources_list).with_context(|| format!("writing {}", path.display()))?;
            // New sources: the lists are stale whatever their age.
            let _ = std::fs::remove_file(dir.join("updated"));
        }
        Ok(AptRoot { dir: dir.to_path_buf(), _lock: lock })
    }

    fn options(&self) -> Vec<String> {
        let d = self.dir.display();
        vec![
            format!("-oDir::Etc::SourceList={d}/sources.list"),
            format!("-oDir::Etc::SourceParts={d}/sources.list.d"),
            format!("-oDir::Etc::PreferencesParts={d}/preferences.d"),
            format!("-oDir::State::Lists={d}/lists"),
            format!("-oDir::Cache={d}/cache"),
            "-oAPT::Get::List-Cleanup=false".into(),
            "-oAcquire::Languages=none".into(),
            // A mirror that stops answering is given up on, not waited for.
            "-oAcquire::http::Timeout=60".into(),
            "-oAcquire::Retries=2".into(),
            "-oAcquire::IndexTargets::deb::DEP-11::DefaultEnabled=false".into(),
            "-oAcquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false".into(),
            "-oAcquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false".into(),
            "-q".into(),
        ]
    }

    fn apt(&self, tool: &str, args: &[&str], cwd: Option<&Path>) -> Result<String> {
        let mut cmd = Command::new(tool);
        cmd.args(self.options()).args(args);
        if let Some(cwd) = cwd {
            cmd.current_dir(cwd);
        }
        tracing::debug!(?cmd, "apt");
        // A network step: bounded, and stopped by Ctrl-C with its children.
        let out = crate::child::output(&mut cmd, tool, APT_LIMIT).map_err(|e| match crate::error::kind_of(&e) {
            Some(_) => e,
            None => fail(
                Kind::KernelUnavailable,
                format!(
                    "{tool} failed to run: {e:#}; fetching Debian kernels needs apt (Debian/Ubuntu) and its mirror, or pass --kernel PATH"
                ),
            ),
        })?;
        if !out.status.success() {
            bail!("`{tool} {}` failed ({}): {}", args.join(" "), out.status, String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `apt-cache ARGS`, answered from this root's memo while its package
    /// lists are the ones the answer was read from: each apt-cache run
    /// loads the whole lists (about a second each here, three per Debian
    /// kernel run), and the answer cannot change until they do.
    fn query(&self, args: &[&str]) -> Result<String> {
        #[derive(serde::Serialize, serde::Deserialize, Default)]
        struct Memo {
            lists: String,
            answers: std::collections::BTreeMap<String, String>,
        }
        let lists = std::fs::metadata(self.dir.join("updated"))
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map(|d| d.as_nanos().to_string());
        let Some(lists) = lists else { return self.apt("apt-cache", args, None) };
        let file = self.dir.join("answers.json");
        let key = args.join(" ");
        // Our own file, still read with a bound and checked: a bad one is a miss.
        let mut memo: Memo = std::fs::read(&file)
            .ok()
            .filter(|b| b.len() < (4 << 20))
            .and_then(|b| serde_json::from_slice::<Memo>(&b).ok())
            .filter(|m| m.lists == lists)
            .unwrap_or_default();
        if let Some(a) = memo.answers.get(&key) {
            return Ok(a.clone());
        }
        let answer = self.apt("apt-cache", args, None)?;
        memo.lists = lists;
        memo.answers.insert(key, answer.clone());
        if let Err(e) = crate::atomic::write_json(&file, &memo) {
            tracing::debug!("cannot keep apt's answer in {}: {e:#}", file.display());
        }
        Ok(answer)
    }

    /// Refresh the package lists unless they are recent.
    pub(crate) fn update(&self, force: bool) -> Result<()> {
        let stamp = self.dir.join("updated");
        let fresh = std::fs::metadata(&stamp).and_then(|m| m.modified()).ok().is_some_and(|t| {
            // A stamp from the future (the clock was set back) is fresh too.
            SystemTime::now().duration_since(t).map_or(true, |age| age < LISTS_MAX_AGE)
        });
        if fresh && !force {
            return Ok(());
        }
        tracing::info!("refreshing package lists ({})", self.dir.display());
        self.apt("apt-get", &["update"], None)?;
        std::fs::write(&stamp, b"")?;
        Ok(())
    }

    /// Follow a metapackage to the `linux-image-*` package it depends on.
    pub(crate) fn resolve_image_package(&self, package: &str) -> Result<String> {
        let mut pkg = package.to_string();
        // metapackage -> linux-image-R -> (sid since 7.x) linux-binary-R, which holds the image.
        for _ in 0..3 {
            let out = self.query(&["depends", "--no-recommends", "--no-suggests", &pkg])?;
            let deps: Vec<&str> = out.lines().filter_map(|l| l.trim().strip_prefix("Depends: ")).map(str::trim).collect();
            match next_image_package(&pkg, &deps) {
                Some(next) => pkg = next.to_string(),
                None => break,
            }
        }
        Ok(pkg)
    }

    /// The candidate version of `package`.
    pub(crate) fn candidate_version(&self, package: &str) -> Result<String> {
        let out = self.query(&["policy", package])?;
        out.lines()
            .find_map(|l| l.trim().strip_prefix("Candidate: "))
            .filter(|v| *v != "(none)")
            .map(str::to_string)
            .with_context(|| format!("apt knows no candidate for {package}"))
    }

    /// `apt-get download` into `dir`; returns the .deb's path.
    pub(crate) fn download(&self, package: &str, version: &str, dir: &Path) -> Result<PathBuf> {
        std::fs::create_dir_all(dir)?;
        self.apt("apt-get", &["download", &format!("{package}={version}")], Some(dir))?;
        let prefix = format!("{package}_");
        std::fs::read_dir(dir)?
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                n.starts_with(&prefix) && n.ends_with(".deb")
            })
            .with_context(|| format!("apt-get download left no {package}_*.deb in {}", dir.display()))
    }
}

/// The dependency of `pkg` that is closer to the kernel image: a
/// metapackage's linux-image-R, or linux-image-R's linux-binary-R.
fn next_image_package<'a>(pkg: &str, deps: &[&'a str]) -> Option<&'a str> {
    deps.iter()
        .copied()
        .find(|d| d.starts_with("linux-binary-"))
        .or_else(|| deps.iter().copied().find(|d| d.starts_with("linux-image-") && *d != pkg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_reused_while_the_lists_it_came_from_are_and_asked_again_after() {
        let d = tempfile::tempdir().unwrap();
        let root = AptRoot::create(d.path(), "").unwrap();
        let answer = "linux-image-x:\n  Candidate: 1.2-3\n";
        // A memo for the lists of this stamp: apt-cache is not run (it could
        // not answer here: its lists are empty).
        std::fs::write(d.path().join("updated"), b"").unwrap();
        let lists = std::fs::metadata(d.path().join("updated")).unwrap().modified().unwrap();
        let nanos = lists.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_nanos().to_string();
        let memo = serde_json::json!({ "lists": nanos, "answers": { "policy linux-image-x": answer } });
        std::fs::write(d.path().join("answers.json"), memo.to_string()).unwrap();
        assert_eq!(root.candidate_version("linux-image-x").unwrap(), "1.2-3");
        // New lists: the memo is stale and apt-cache is asked (and knows nothing).
        let later = lists + std::time::Duration::from_secs(5);
        std::fs::File::options().write(true).open(d.path().join("updated")).unwrap().set_modified(later).unwrap();
        assert!(root.candidate_version("linux-image-x").is_err());
    }

    #[test]
    fn image_packages_are_followed_to_the_one_holding_vmlinuz() {
        assert_eq!(
            next_image_package("linux-image-cloud-amd64", &["linux-image-6.1.0-56-cloud-amd64"]),
            Some("linux-image-6.1.0-56-cloud-amd64")
        );
        let sid = [
            "linux-base",
            "linux-base-7.2.13+deb14-cloud-amd64",
            "linux-binary-7.2.13+deb14-cloud-amd64",
            "linux-modules-7.2.13+deb14-cloud-amd64",
        ];
        assert_eq!(next_image_package("linux-image-7.2.13+deb14-cloud-amd64", &sid), Some("linux-binary-7.2.13+deb14-cloud-amd64"));
        assert_eq!(next_image_package("linux-image-6.1.0-56-cloud-amd64", &["linux-base", "initramfs-tools"]), None);
    }

    const DEB822: &str = "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\nTypes: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\nComponents: main\n\nTypes: deb\nURIs: https://vendor.example/apt\nSuites: nodistro\nComponents: main\n";

    #[test]
    fn deb822_and_one_line_sources_parse() {
        let e = parse_deb822(DEB822);
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].suites, ["bookworm", "bookworm-updates"]);
        let l = parse_one_line("# c\ndeb [arch=amd64 signed-by=/k.gpg] http://m.example/debian bullseye main\ndeb-src http://x y z\n");
        assert_eq!(l.len(), 1);
        assert_eq!((l[0].uri.as_str(), l[0].signed_by.as_deref()), ("http://m.example/debian", Some("/k.gpg")));
    }

    #[test]
    fn derived_sources_reuse_the_machines_mirrors_per_role() {
        let sys = parse_deb822(DEB822);
        let s = derive_sources(&sys, &["bullseye".into(), "bullseye-security".into(), "bookworm-backports".into()]).unwrap();
        let lines: Vec<&str> = s.lines().collect();
        assert!(lines[0].ends_with("http://mirror.example/debian bullseye main"), "{s}");
        assert!(lines[1].ends_with("http://mirror.example/debian-security bullseye-security main"), "{s}");
        assert!(lines[2].contains("http://mirror.example/debian bookworm-backports"), "{s}");
        assert!(!s.contains("vendor.example"));
    }

    #[test]
    fn an_apt_root_is_locked_while_held() {
        use nix::fcntl::{Flock, FlockArg};
        let d = tempfile::tempdir().unwrap();
        let root = AptRoot::create(d.path(), "deb [signed-by=/k] http://m.example/debian bookworm main\n").unwrap();
        let other = std::fs::File::open(d.path().join(".repro-lock")).unwrap();
        let other = Flock::lock(other, FlockArg::LockExclusiveNonblock).map(drop).map_err(|(_, e)| e);
        assert_eq!(other, Err(nix::errno::Errno::EWOULDBLOCK), "a second process could run apt on the same lists");
        drop(root);
        let again = std::fs::File::open(d.path().join(".repro-lock")).unwrap();
        assert!(Flock::lock(again, FlockArg::LockExclusiveNonblock).is_ok());
    }

    #[test]
    fn ubuntu_suites_come_from_the_machines_ubuntu_mirror_with_universe() {
        let sys = parse_deb822(
            "Types: deb\nURIs: http://u.example/ubuntu/\nSuites: noble noble-updates noble-backports\nComponents: main universe\n\
             Signed-By: /usr/share/keyrings/ubuntu-archive-keyring.gpg\n\n\
             Types: deb\nURIs: http://s.example/ubuntu/\nSuites: noble-security\nComponents: main universe\n",
        );
        let s = derive_sources(&sys, &["jammy".into(), "focal-updates".into(), "focal-security".into()]).unwrap();
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines[0], "deb [signed-by=/usr/share/keyrings/ubuntu-archive-keyring.gpg] http://u.example/ubuntu/ jammy main universe");
        assert!(lines[1].ends_with("http://u.example/ubuntu/ focal-updates main universe"), "{s}");
        assert!(lines[2].ends_with("http://s.example/ubuntu/ focal-security main universe"), "{s}");
        // A Debian suite on an Ubuntu-only machine has no mirror to come from.
        let e = derive_sources(&sys, &["bookworm".into()]).unwrap_err().to_string();
        assert!(e.contains("no Debian archive mirror"), "{e}");
        assert!(derive_sources(&sys, &["warty".into()]).is_err());
    }

    #[test]
    fn broken_option_lists_are_skipped_not_a_panic() {
        for text in ["deb [", "deb [é", "deb [signed-by=/k", "deb ]x[", "deb [] ", "deb"] {
            assert!(parse_one_line(text).is_empty(), "{text:?}");
        }
        let l = parse_one_line("deb [trusted=yes] http://127.0.0.1:1/u noble main\n");
        assert!(l[0].trusted);
        let s = derive_sources(&l, &["noble".into()]).unwrap();
        assert!(s.contains("trusted=yes"), "{s}");
    }

    #[test]
    fn no_debian_mirror_is_a_clear_error() {
        let sys = parse_deb822("Types: deb\nURIs: https://vendor.example/apt\nSuites: nodistro\n");
        let e = derive_sources(&sys, &["bookworm".into()]).unwrap_err().to_string();
        assert!(e.contains("no Debian archive mirror") && e.contains("--kernel PATH"), "{e}");
    }
}
