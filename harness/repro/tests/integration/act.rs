//! The workflows and the action run by a real workflow engine: nektos/act
//! (`ci/act.sh`), every job on this host as GitHub's runner would run it,
//! with stand-ins for GitHub's own actions (ci/act/). Kernel-heavy steps use
//! small inputs (200-400 namespaces, the kernel built once into the test
//! cache and restored through the cache action, as a warm CI cache would),
//! but every step runs. Each test dispatches as GitHub would and plays
//! GitHub's part where act has none (the soak's next dispatch, the release
//! download server).

use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;
use std::sync::OnceLock;

use crate::helpers::*;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// One act run: its exit status and everything it printed.
struct ActRun {
    ok: bool,
    log: String,
    run_id: String,
}

impl ActRun {
    fn job_succeeded(&self, job: &str) -> bool {
        self.log.lines().any(|l| l.starts_with(&format!("[{job}")) && l.contains("Job succeeded"))
    }
}

/// Where the act runs of this test binary keep artifacts, cache and
/// releases, and build repro (debug: the suite's own profile, in a target
/// directory of their own, shared by every act run). A home stays after
/// its process ends, so a failed run's log can be read, until the next act
/// test sweeps it: nextest runs each test in a process of its own, and the
/// homes (~130 MB each) had filled the disk after a few dozen suites.
fn act_home() -> &'static Path {
    static HOME: OnceLock<PathBuf> = OnceLock::new();
    HOME.get_or_init(|| {
        sweep_homes_of_ended_processes();
        let d = std::env::temp_dir().join(format!("repro-act-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    })
}

/// Remove the act homes whose test process is gone (a live one is another
/// act test running beside this one).
fn sweep_homes_of_ended_processes() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("repro-act-").and_then(|p| p.parse::<u32>().ok()) else { continue };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

fn act(workflow: &str, workspace: &Path, args: &[&str]) -> ActRun {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    let run_id = format!("{}{:03}", std::process::id(), N.fetch_add(1, std::sync::atomic::Ordering::SeqCst));
    let target = root().join("target/act");
    let o = StdCommand::new(root().join("ci/act.sh"))
        .arg(workflow)
        .args(args)
        .args(["--env", "PROFILE=debug", "--env"])
        .arg(format!("CARGO_TARGET_DIR={}", target.display()))
        .env("REPRO_ACT_HOME", act_home())
        .env("RUN_ID", &run_id)
        .env("WORKSPACE", workspace)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let log = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    // The log stays readable after a failure: it is long.
    let file = act_home().join(format!("act-{run_id}.log"));
    std::fs::write(&file, &log).unwrap();
    eprintln!("act {workflow} {args:?}: exit {:?}, log {}", o.status.code(), file.display());
    ActRun { ok: o.status.success(), log, run_id }
}

fn artifact(run: &ActRun, name: &str) -> PathBuf {
    act_home().join("artifacts").join(&run.run_id).join(name)
}

/// The built kernel in this machine's repro cache, put where the build
/// job's cache action restores it from under the key the job computes: as
/// a CI cache warm from an earlier run would be.
fn warm_image_cache(kernel: &str, tree: &str) {
    let o = std_repro().args(["image", "build", kernel]).output().unwrap();
    assert!(o.status.success(), "{}", stderr_of(&o));
    let key = StdCommand::new(root().join("ci/image-key.sh")).arg(kernel).env("PROFILE", "debug").output().unwrap();
    assert!(key.status.success(), "{}", stderr_of(&key));
    let key = String::from_utf8(key.stdout).unwrap().trim().trim_start_matches("key=").to_string();
    let entry = String::from_utf8_lossy(&key_entries(kernel)).to_string();
    let image_dir = entry.split('\t').nth(1).unwrap().trim().to_string();
    let cache = std::env::var_os("REPRO_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/repro"));
    let store = act_home().join("cache").join(format!("repro-images-{tree}-{key}")).join(&image_dir);
    std::fs::create_dir_all(&store).unwrap();
    for e in std::fs::read_dir(cache.join("images").join(&image_dir)).unwrap().flatten() {
        std::fs::copy(e.path(), store.join(e.file_name())).unwrap();
    }
}

fn key_entries(kernel: &str) -> Vec<u8> {
    let o = std_repro().args(["image", "key", kernel]).output().unwrap();
    assert!(o.status.success(), "{}", stderr_of(&o));
    o.stdout
}

/// repro.yml dispatched for one built kernel: lint, the matrix, the build
/// (its cache key captured into $GITHUB_OUTPUT), the check through the
/// action, and the report, whose `--junit report/junit.xml` beside `--out
/// report` failed on every run before.
#[test]
fn the_repro_workflow_runs_every_job_for_a_built_kernel() {
    warm_image_cache("6.1-noprune", "debian-6.1");
    let run = act(
        "repro.yml",
        &root(),
        &["workflow_dispatch", "--input", "kernel=6.1-noprune", "--input", "iterations=200", "--input", "kvm=false"],
    );
    assert!(run.ok, "act failed: see the log above");
    for job in ["repro/lint", "repro/matrix", "repro/build debian-6.1", "repro/6.1-noprune / seed", "repro/report"] {
        assert!(run.job_succeeded(job), "job {job} did not succeed");
    }
    assert!(run.log.contains("cache (stand-in): restored"), "the build job did not restore the kernels it caches");
    assert!(artifact(&run, "kernels-debian-6.1").read_dir().unwrap().count() > 0);
    let summary = read_summary(&artifact(&run, "run-seed-6.1-noprune"));
    assert_eq!(summary.iterations_requested, 200);
    let junit = std::fs::read_to_string(artifact(&run, "report").join("junit.xml")).unwrap();
    assert!(junit.contains("tests=\"1\"") && junit.contains("failures=\"0\"") && junit.contains("errors=\"0\""), "{junit}");
    assert!(artifact(&run, "report").join("README.md").is_file());

    // A kernel from Debian's archive: the check-debian job (a debian:bookworm
    // container on GitHub), fetching it with apt into the job's empty cache.
    let run =
        act("repro.yml", &root(), &["workflow_dispatch", "--input", "kernel=6.1", "--input", "iterations=200", "--input", "kvm=false"]);
    assert!(run.ok, "act failed: see the log above");
    for job in ["repro/matrix", "repro/6.1 / seed", "repro/report"] {
        assert!(run.job_succeeded(job), "job {job} did not succeed");
    }
    let junit = std::fs::read_to_string(artifact(&run, "report").join("junit.xml")).unwrap();
    assert!(junit.contains("tests=\"1\"") && junit.contains("failures=\"0\"") && junit.contains("errors=\"0\""), "{junit}");
}

/// soak.yml as a chain of fresh runners: the first segment saves at its
/// first window and dispatches the next (`gh workflow run`, recorded by the
/// stand-in); this test dispatches it as GitHub would, with a longer
/// stop-after so that it finishes. The second segment runs in a new
/// workspace whose repro cache is empty, downloads the first's artifact by
/// its run ID, and resumes from the checkpoint alone.
#[test]
fn the_soak_workflow_hands_its_run_to_a_fresh_runner() {
    // Debian's 6.1 (fetched with apt in seconds): which kernel soaks does not
    // matter to the hand-over, and a built one would be compiled in the
    // first segment's empty cache (minutes, as on GitHub).
    let first = act(
        "soak.yml",
        &root(),
        &[
            "workflow_dispatch",
            "--input",
            "kernel=6.1",
            "--input",
            "iterations=400",
            "--input",
            "workers=1",
            "--input",
            "stop-after=0s",
            "--input",
            "accel=tcg",
        ],
    );
    assert!(first.ok && first.job_succeeded("repro soak/segment"), "the first segment failed: see its log");
    let saved = artifact(&first, "soak");
    let s = read_summary(&saved);
    assert!(!s.complete && s.checkpoints.len() == 1, "{:#?}", s.checkpoints);
    assert!(saved.join("checkpoint/bzImage").is_file(), "the checkpoint does not carry its kernel");
    assert_eq!(std::fs::read_to_string(artifact(&first, "soak.retention-days")).unwrap().trim(), "7");

    // The dispatch the first segment asked for, with its inputs.
    let dispatches = std::fs::read_to_string(act_home().join("dispatches")).unwrap();
    let last: Vec<String> = serde_json::from_str(dispatches.lines().last().unwrap()).unwrap();
    assert_eq!(last[..1], ["soak.yml".to_string()]);
    let mut args = vec!["workflow_dispatch".to_string()];
    for pair in last.windows(2).filter(|w| w[0] == "-f") {
        let (k, v) = pair[1].split_once('=').unwrap();
        let v = if k == "stop-after" { "1h" } else { v };
        args.extend(["--input".to_string(), format!("{k}={v}")]);
    }
    assert!(args.contains(&format!("resume={}", first.run_id)), "{args:?}");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let second = act("soak.yml", &root(), &args);
    assert!(second.ok && second.job_succeeded("repro soak/segment"), "the second segment failed: see its log");
    assert!(second.log.contains("resuming"), "the second segment did not resume");
    let done = read_summary(&artifact(&second, "soak"));
    assert!(done.complete && done.iterations_done == 400, "{:#?}", done.error);
    assert_eq!(done.checkpoints.len(), 1);
    assert!(done.checkpoints[0].restore_s.is_some());
    assert!(artifact(&second, "soak").join("report/README.md").is_file(), "the last segment renders the report");
    assert_eq!(std::fs::read_to_string(artifact(&second, "soak.retention-days")).unwrap().trim(), "90");
}

/// The README's workflow for another repository, as that repository meets
/// the action: at a release tag it downloads the release's binaries from a
/// server (a local one standing in for GitHub's releases, filled by
/// release.yml itself) and checks their sha256, building nothing; an altered
/// archive fails the step; at @main it builds from source. This machine's
/// nested KVM cannot run a guest, so the snippet's require-kvm is false
/// here, and the kernel is one with the bug (expect: regressed).
#[test]
fn the_readme_workflow_uses_the_action_from_a_release_or_from_source() {
    let release = act("release.yml", &root(), &["workflow_dispatch", "--input", "tag=v0.1.0"]);
    assert!(release.ok && release.job_succeeded("release/release"), "release.yml failed: see its log");
    let releases = act_home().join("releases");
    for tag in ["v0.1.0", "v0"] {
        for f in ["repro-x86_64-linux.tar.gz", "SHA256SUMS"] {
            assert!(releases.join(tag).join(f).is_file(), "release {tag} lacks {f}");
        }
    }
    let api = std::fs::read_to_string(act_home().join("api")).unwrap();
    assert!(api.contains("refs/tags/v0"), "the major tag was not moved: {api}");

    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let base = format!("http://{}", server.server_addr().to_ip().unwrap());
    let served = releases.clone();
    std::thread::spawn(move || {
        for rq in server.incoming_requests() {
            let rel = rq.url().trim_start_matches('/').to_string();
            let ok = !rel.contains("..");
            match std::fs::File::open(served.join(&rel)).ok().filter(|_| ok) {
                Some(f) => rq.respond(tiny_http::Response::from_file(f)).unwrap(),
                None => rq.respond(tiny_http::Response::empty(404)).unwrap(),
            }
        }
    });

    let d = tempfile::tempdir().unwrap();
    let consumer = d.path().join("kernel-repo");
    let image = std_repro().args(["fetch", "6.1-noprune"]).output().unwrap();
    assert!(image.status.success(), "{}", stderr_of(&image));
    let image = PathBuf::from(String::from_utf8(image.stdout).unwrap().split('\t').next().unwrap().trim());
    std::fs::create_dir_all(consumer.join("arch/x86/boot")).unwrap();
    std::fs::copy(&image, consumer.join("arch/x86/boot/bzImage")).unwrap();
    // act reads the repository's commit and ref, as GitHub gives them.
    for args in
        [&["init", "-q", "-b", "main"][..], &["add", "-A"], &["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "kernel"]]
    {
        assert!(StdCommand::new("git").args(args).current_dir(&consumer).status().unwrap().success());
    }
    let use_at = |r#ref: &str| -> ActRun {
        let workflow = readme_snippet()
            .replace("OWNER/repro/ci/action@main", &format!("acme/repro/ci/action@{ref}"))
            .replace("require-kvm: \"true\"", "require-kvm: \"false\"")
            .replace("expect: clean", "expect: regressed")
            .replace("iterations: \"3000\"", "iterations: \"200\"");
        let file = d.path().join("kernel.yml");
        std::fs::write(&file, workflow).unwrap();
        let _ = std::fs::remove_dir_all(consumer.join("repro-out"));
        let local = format!("acme/repro@{ref}={}", action_repo().display());
        act(file.to_str().unwrap(), &consumer, &["push", "--local-repository", &local, "--env", &format!("REPRO_RELEASE_URL={base}")])
    };

    let released = use_at("v0");
    assert!(released.ok && released.job_succeeded("kernel/repro"), "the action at v0 failed: see its log");
    assert!(released.log.contains("repro v0 from the release, sha256 verified"), "the release was not used");
    assert!(!released.log.contains("Compiling repro"), "repro was compiled although a release was there");

    // An archive altered after its checksum was published.
    let tarball = releases.join("v0/repro-x86_64-linux.tar.gz");
    let good = std::fs::read(&tarball).unwrap();
    let mut bad = good.clone();
    bad.extend_from_slice(b"altered");
    std::fs::write(&tarball, bad).unwrap();
    let altered = use_at("v0");
    std::fs::write(&tarball, good).unwrap();
    assert!(!altered.ok, "an altered release was accepted");
    assert!(altered.log.contains("does not match the sha256"), "no checksum error in the log");

    let from_source = use_at("main");
    assert!(from_source.ok && from_source.job_succeeded("kernel/repro"), "the action at main failed: see its log");
    assert!(from_source.log.contains("names no release: repro is built from source"), "{}", from_source.run_id);
}

/// The workflow between the README's action-snippet markers.
fn readme_snippet() -> String {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let start = readme.find("<!-- action-snippet").expect("README has the action snippet");
    let body = &readme[start..readme.find("<!-- /action-snippet -->").unwrap()];
    let yaml = body.split("```yaml\n").nth(1).unwrap();
    yaml[..yaml.find("```").unwrap()].to_string()
}

/// This repository as GitHub serves it to another repository's workflow:
/// its files (tracked, and new ones not ignored, as the working tree has
/// them), without target/ (act reads an action's repository whole).
fn action_repo() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = act_home().join("repro-repo");
        let o = StdCommand::new("git")
            .args(["ls-files", "-z", "--cached", "--others", "--exclude-standard"])
            .current_dir(root())
            .output()
            .unwrap();
        assert!(o.status.success());
        for f in o.stdout.split(|b| *b == 0).filter(|f| !f.is_empty()) {
            let rel = Path::new(std::str::from_utf8(f).unwrap());
            let (from, to) = (root().join(rel), dir.join(rel));
            if from.is_file() {
                std::fs::create_dir_all(to.parent().unwrap()).unwrap();
                std::fs::copy(&from, &to).unwrap();
            }
        }
        dir
    })
}

/// bisect.yml on a repository it clones over https (git's insteadOf points
/// the URL at a local repository, as the runner's network would reach a
/// real one): synthetic 6.1 trees whose build copies a kernel image in, so
/// each step builds in a second and boots a real kernel. Hunting the fix:
/// the image with the bug (6.1-noprune) until one commit brings Debian's
/// fixed 6.1; the workflow names that commit.
#[test]
fn the_bisect_workflow_names_the_fix_in_a_cloned_repository() {
    let d = tempfile::tempdir().unwrap();
    let repo = d.path().join("linux");
    let fetch = |k: &str| {
        let o = std_repro().args(["fetch", k]).output().unwrap();
        assert!(o.status.success(), "{}", stderr_of(&o));
        PathBuf::from(String::from_utf8(o.stdout).unwrap().split('\t').next().unwrap().trim())
    };
    let (buggy, fixed) = (fetch("6.1-noprune"), fetch("6.1"));
    synthetic_tree(&repo, "6.1.999", None, &buggy);
    let git = |args: &[&str]| {
        let o = StdCommand::new("git").args(["-c", "user.name=t", "-c", "user.email=t@t"]).args(args).current_dir(&repo).output().unwrap();
        assert!(o.status.success(), "git {args:?}: {}", stderr_of(&o));
        String::from_utf8(o.stdout).unwrap().trim().to_string()
    };
    let commit = |msg: &str| {
        git(&["add", "-A"]);
        git(&["commit", "-qm", msg]);
        git(&["rev-parse", "HEAD"])
    };
    git(&["init", "-q", "-b", "main"]);
    let unfixed = commit("the tree with the bug");
    std::fs::write(repo.join("README"), "unrelated\n").unwrap();
    commit("an unrelated change");
    std::fs::copy(&fixed, repo.join("prebuilt-bzImage")).unwrap();
    let fix = commit("the fix");
    std::fs::write(repo.join("README"), "unrelated, again\n").unwrap();
    let tip = commit("another unrelated change");

    let url = "https://kernel.test/linux.git";
    let run = act(
        "bisect.yml",
        &root(),
        &[
            "workflow_dispatch",
            "--input",
            &format!("repository={url}"),
            "--input",
            &format!("good={unfixed}"),
            "--input",
            &format!("bad={tip}"),
            "--input",
            "hunt=fix",
            "--input",
            "iterations=200",
            "--input",
            "accel=tcg",
            "--env",
            "GIT_CONFIG_COUNT=1",
            "--env",
            &format!("GIT_CONFIG_KEY_0=url.{}.insteadOf", repo.display()),
            "--env",
            &format!("GIT_CONFIG_VALUE_0={url}"),
        ],
    );
    assert!(run.ok && run.job_succeeded("repro bisect/bisect"), "bisect.yml failed: see its log");
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(artifact(&run, "bisect").join("bisect.json")).unwrap()).unwrap();
    assert_eq!(state["result"]["first_new"], fix.as_str(), "{state:#}");
    assert!(artifact(&run, "bisect").join("bisect.md").is_file());
}
