//! Bisection on a real kernel history: a git repository made from Debian's
//! linux-source-6.1 with a few commits on top, one of which removes the
//! `proc_sys_invalidate_dcache()` call (the bug) and a later one restores
//! it (the fix); after them, the netns-lock sibling bug comes (copy_net_ns()
//! waiting for cleanup_net() as under net_mutex) and goes again (the effect
//! of the series merged as 885842d89a9b), then the ipc-teardown one
//! (put_ipc_ns() freeing in the exiting task) and its fix, e1eb26fa62d0,
//! then the mount-limit one (no count of an attach's mounts) and its fix,
//! d29216842a85. An
//! ipc-teardown step is built with the scenario's mqueue fragment: its own
//! O= directory, so one more full build on a cold cache. The repository lives in the kernel cache, so its O= build
//! directory stays warm between test runs: only the first run here pays for
//! a full kernel build; every later step recompiles one or two files.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;

use nix::fcntl::{Flock, FlockArg};
use serde_json::Value;

use crate::helpers::*;

/// Iterations per step: 6 stale dentries per namespace show at any count
/// above the verdict's minimum (200).
const N: &str = "300";
/// Bump when the history below changes: the repository is rebuilt.
const FIXTURE_VERSION: &str = "4";

fn git(dir: &Path, args: &[&str]) -> String {
    let o = StdCommand::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=repro", "-c", "user.email=repro@localhost", "-c", "commit.gpgsign=false"])
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "git {args:?}: {}", stderr_of(&o));
    String::from_utf8(o.stdout).unwrap()
}

fn cache_dir() -> PathBuf {
    std::env::var_os("REPRO_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/repro"))
}

/// Debian's linux-source-6.1 as repro extracted it (building 6.1-src makes sure it is there).
fn debian_tree() -> PathBuf {
    let o = std_repro().args(["image", "build", "6.1-src"]).output().unwrap();
    assert!(o.status.success(), "repro image build 6.1-src: {}", stderr_of(&o));
    let base = cache_dir().join("src/debian-6.1");
    std::fs::read_dir(&base)
        .unwrap()
        .flatten()
        .map(|e| e.path().join("linux"))
        .find(|p| p.join("fs/proc/proc_sysctl.c").is_file())
        .unwrap_or_else(|| panic!("no extracted linux-source-6.1 under {}", base.display()))
}

/// Commit ids of the fixture history, by name.
struct History {
    repo: PathBuf,
    base: String,
    breaks_build: String,
    removes_call: String,
    before_fix_tip: String,
    restores_call: String,
    tip: String,
    netns_waits: String,
    netns_fixed: String,
    netns_tip: String,
    ipc_waits: String,
    ipc_fixed: String,
    ipc_tip: String,
    mount_unlimited: String,
    mount_limited: String,
    mount_tip: String,
    _lock: Flock<File>,
}

fn edit(repo: &Path, file: &str, f: impl FnOnce(String) -> String) {
    let p = repo.join(file);
    let text = std::fs::read_to_string(&p).unwrap();
    let new = f(text.clone());
    assert_ne!(new, text, "editing {file} changed nothing");
    // A new file, not an in-place write: the tree's files are hard links to the cache's pristine copy.
    std::fs::remove_file(&p).unwrap();
    std::fs::write(&p, new).unwrap();
}

fn commit(repo: &Path, msg: &str) -> String {
    git(repo, &["commit", "-qam", msg]);
    git(repo, &["rev-parse", "HEAD"]).trim().to_string()
}

const CALL: &str = "\tproc_sys_invalidate_dcache(p);\n";
const REMOVES: &str = "proc: stop invalidating a dead namespace's sysctl dentries";
const RESTORES: &str = "proc: invalidate a dead namespace's sysctl dentries again";
const READER: &str = "\trv = down_read_killable(&pernet_ops_rwsem);\n";
const WRITER: &str = "\trv = down_write_killable(&pernet_ops_rwsem);\n";
const NETNS_WAITS: &str = "net: copy_net_ns() excludes cleanup_net() again, as net_mutex did before v4.17";
const NETNS_FIXED: &str = "net: copy_net_ns() reads pernet_ops_rwsem, as 885842d89a9b's series made it";
const IPC_WORK: &str = "\t\tif (llist_add(&ns->mnt_llist, &free_ipc_list))\n\t\t\tschedule_work(&free_ipc_work);\n";
const IPC_WAITS: &str = "ipc: free the namespace in the exiting task again, through kern_unmount()'s grace period";
const IPC_FIXED: &str = "ipc/namespace.c: use a work queue to free_ipc (as e1eb26fa62d0)";
const NETNS_TIP: &str = "kernel/sys.c: the netns history's last commit";
const IPC_TIP: &str = "kernel/sys.c: the ipc history's last commit";
const MOUNT_COUNT: &str =
    "\t/* Is there space to add these mounts to the mount namespace? */\n\tif (!moving) {\n\t\terr = count_mounts(ns, source_mnt);\n\t\tif (err)\n\t\t\tgoto out;\n\t}\n\n";
const MOUNT_UNLIMITED: &str = "mnt: attach propagated mounts uncounted again, as before v4.9";
const MOUNT_LIMITED: &str = "mnt: Add a per mount namespace limit on the number of mounts (as d29216842a85)";
const MOUNT_TIP: &str = "kernel/sys.c: the mount history's last commit";

/// A sibling bug's stretch of the history: `bring` makes the bug (committed
/// as `waits`), an unrelated commit to lib/string.c follows (`filler`),
/// the fix reverts the bug's commit (`fixed`), and a comment in
/// kernel/sys.c ends it (`tip`).
struct Stretch {
    waits: &'static str,
    fixed: &'static str,
    filler: &'static str,
    tip: &'static str,
}

impl Stretch {
    fn commit(&self, repo: &Path, filler_line: &str, bring: impl FnOnce(&Path)) {
        bring(repo);
        let waits = commit(repo, self.waits);
        edit(repo, "lib/string.c", |t| format!("{filler_line}{t}"));
        commit(repo, self.filler);
        git(repo, &["revert", "--no-edit", &waits]);
        git(repo, &["commit", "-q", "--amend", "-m", self.fixed]);
        let tip = self.tip.split(": ").nth(1).unwrap_or(self.tip);
        edit(repo, "kernel/sys.c", |t| format!("// bisect fixture: {tip}\n{t}"));
        commit(repo, self.tip);
    }
}

fn history() -> History {
    let root = cache_dir().join("fixtures/bisect-6.1");
    std::fs::create_dir_all(&root).unwrap();
    let lock = Flock::lock(File::create(root.join(".lock")).unwrap(), FlockArg::LockExclusive).unwrap();
    let repo = root.join("linux");
    let stamp = root.join("version");
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(FIXTURE_VERSION) {
        let _ = std::fs::remove_dir_all(&repo);
        let _ = std::fs::remove_file(&stamp);
        let tree = debian_tree();
        // Hard links: seconds and no space; every edit below writes a new file.
        let ok = StdCommand::new("cp").arg("-al").arg(&tree).arg(&repo).status().unwrap();
        assert!(ok.success());
        git(&repo, &["init", "-q", "-b", "main"]);
        // -f: Debian's .gitignore ignores everything at the top level (its packaging repository's view).
        git(&repo, &["add", "-f", "-A", "."]);
        git(&repo, &["commit", "-qm", "linux-source-6.1 as Debian ships it"]);
        edit(&repo, "Documentation/filesystems/proc.rst", |t| format!("{t}\n.. bisect fixture: a documentation change\n"));
        commit(&repo, "docs: a note in proc.rst");
        edit(&repo, "kernel/sys.c", |t| format!("// bisect fixture: an unrelated change that recompiles\n{t}"));
        commit(&repo, "kernel/sys.c: a comment");
        edit(&repo, "fs/proc/generic.c", |t| format!("#error bisect fixture: this revision does not build\n{t}"));
        commit(&repo, "proc: break the build");
        edit(&repo, "fs/proc/generic.c", |t| t.replacen("#error bisect fixture: this revision does not build\n", "", 1));
        commit(&repo, "proc: fix the build");
        edit(&repo, "fs/proc/proc_sysctl.c", |t| {
            t.replacen(CALL, "", 1).replacen(
                "static void proc_sys_invalidate_dcache(",
                "static void __maybe_unused proc_sys_invalidate_dcache(",
                1,
            )
        });
        let removes = commit(&repo, REMOVES);
        edit(&repo, "net/core/net_namespace.c", |t| format!("// bisect fixture: unrelated\n{t}"));
        commit(&repo, "net: a comment in net_namespace.c");
        edit(&repo, "lib/string.c", |t| format!("// bisect fixture: unrelated\n{t}"));
        commit(&repo, "lib: a comment in string.c");
        git(&repo, &["revert", "--no-edit", &removes]);
        git(&repo, &["commit", "-q", "--amend", "-m", RESTORES]);
        edit(&repo, "Documentation/filesystems/proc.rst", |t| format!("{t}\n.. bisect fixture: the last commit\n"));
        commit(&repo, "docs: the fixture's last commit");
        // The netns-lock sibling: a creation takes the lock for writing (waits), then reads it again (the fix).
        let netns = Stretch { waits: NETNS_WAITS, fixed: NETNS_FIXED, filler: "lib: another comment in string.c", tip: NETNS_TIP };
        netns.commit(&repo, "// bisect fixture: unrelated, again\n", |repo| {
            edit(repo, "net/core/net_namespace.c", |t| {
                t.replacen(READER, WRITER, 1).replacen(
                    "\tup_read(&pernet_ops_rwsem);\n\n\tif (rv < 0) {",
                    "\tup_write(&pernet_ops_rwsem);\n\n\tif (rv < 0) {",
                    1,
                )
            })
        });
        // The ipc-teardown sibling: the exiting task frees the namespace (waits), then a work item does (the fix).
        let ipc = Stretch { waits: IPC_WAITS, fixed: IPC_FIXED, filler: "lib: a third comment in string.c", tip: IPC_TIP };
        ipc.commit(&repo, "// bisect fixture: unrelated, a third time\n", |repo| {
            edit(repo, "ipc/namespace.c", |t| {
                t.replacen(IPC_WORK, "\t\tfree_ipc_ns(ns);\n", 1).replacen(
                    "static DECLARE_WORK(free_ipc_work, free_ipc);",
                    "static __maybe_unused DECLARE_WORK(free_ipc_work, free_ipc);",
                    1,
                )
            })
        });
        // The mount-limit sibling: nothing counts an attach's mounts (unbounded), then both counts return (the fix).
        let mounts = Stretch { waits: MOUNT_UNLIMITED, fixed: MOUNT_LIMITED, filler: "lib: a fourth comment in string.c", tip: MOUNT_TIP };
        mounts.commit(&repo, "// bisect fixture: unrelated, a fourth time\n", |repo| {
            edit(repo, "fs/namespace.c", |t| t.replacen(MOUNT_COUNT, "", 1));
            edit(repo, "fs/pnode.c", |t| t.replacen("\treturn count_mounts(m->mnt_ns, child);\n", "\treturn 0;\n", 1));
        });
        std::fs::write(&stamp, FIXTURE_VERSION).unwrap();
    }
    // A bisection or a build a killed test left behind is the fixture's, not a user's.
    git(&repo, &["bisect", "reset"]);
    git(&repo, &["checkout", "--", "."]);
    let log = git(&repo, &["log", "--format=%H %s", "--reverse"]);
    let id = |subject: &str| -> String {
        log.lines()
            .find(|l| l.ends_with(subject))
            .unwrap_or_else(|| panic!("no commit {subject:?} in\n{log}"))
            .split(' ')
            .next()
            .unwrap()
            .to_string()
    };
    History {
        base: id("linux-source-6.1 as Debian ships it"),
        breaks_build: id("proc: break the build"),
        removes_call: id(REMOVES),
        before_fix_tip: id("lib: a comment in string.c"),
        restores_call: id(RESTORES),
        tip: id("docs: the fixture's last commit"),
        netns_waits: id(NETNS_WAITS),
        netns_fixed: id(NETNS_FIXED),
        netns_tip: id(NETNS_TIP),
        ipc_waits: id(IPC_WAITS),
        ipc_fixed: id(IPC_FIXED),
        ipc_tip: id(IPC_TIP),
        mount_unlimited: id(MOUNT_UNLIMITED),
        mount_limited: id(MOUNT_LIMITED),
        mount_tip: id(MOUNT_TIP),
        repo,
        _lock: lock,
    }
}

fn bisect_state(out: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("bisect.json")).unwrap()).unwrap()
}

fn steps_summary(state: &Value) -> String {
    state["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{} {} {} (build {:.0}s)",
                &s["rev"].as_str().unwrap()[..12.min(s["rev"].as_str().unwrap().len())],
                s["subject"],
                s["answer"],
                s["build_s"].as_f64().unwrap()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `repro bisect` on the fixture with these ends (and options); it must exit 0. The state and a summary of its steps.
fn bisect_ok(repo: &Path, ends: &[&str], out: &Path) -> (Value, String) {
    let o = repro().args(["bisect", "--accel", "tcg", "-n", N]).args(ends).arg("--src").arg(repo).arg("--out").arg(out).output().unwrap();
    let state = bisect_state(out);
    let steps = steps_summary(&state);
    assert_eq!(o.status.code(), Some(0), "repro bisect {ends:?} failed:\n{}\nsteps:\n{steps}", stderr_of(&o));
    (state, steps)
}

#[test]
fn bisect_names_the_commit_that_removed_the_invalidate_call_and_the_one_that_restored_it() {
    let h = history();
    let d = tempfile::tempdir().unwrap();

    // Hunting the regression: base is good, the tip before the fix is bad.
    let out = d.path().join("regression");
    let (state, steps) = bisect_ok(&h.repo, &["--good", &h.base, "--bad", &h.before_fix_tip], &out);
    assert_eq!(state["result"]["first_new"], h.removes_call.as_str(), "steps:\n{steps}");
    assert_eq!(state["result"]["held"], true, "steps:\n{steps}");
    let report = std::fs::read_to_string(out.join("bisect.md")).unwrap();
    assert!(report.contains(REMOVES) && report.contains("The answer held."), "{report}");
    // The revision that does not compile was skipped, not blamed, if git picked it.
    for s in state["steps"].as_array().unwrap() {
        if s["rev"] == h.breaks_build.as_str() {
            assert_eq!(s["answer"], "skip", "{steps}");
            assert!(s["rule"].as_str().unwrap().starts_with("build failed"), "{steps}");
        }
    }
    // Given back on its branch.
    assert_eq!(git(&h.repo, &["rev-parse", "--abbrev-ref", "HEAD"]).trim(), "main");
    assert!(!h.repo.join(".git/BISECT_START").exists());

    // Hunting the fix: old = unfixed, new = fixed, git's own terms.
    let (state, steps) = bisect_ok(&h.repo, &["--unfixed", &h.removes_call, "--fixed", &h.tip], &d.path().join("fix"));
    assert_eq!(state["result"]["first_new"], h.restores_call.as_str(), "steps:\n{steps}");
    // Every revision decided (old = unfixed, new = fixed; git was told its own words).
    assert!(state["steps"].as_array().unwrap().iter().all(|s| ["old", "new"].contains(&s["answer"].as_str().unwrap())), "{steps}");
}

/// A sibling bug's fix, named by its own scenario's verdict (a ratio of
/// namespace lives, or a mount count; not dentries) over the same history.
fn bisect_names_a_sibling_fix(h: &History, scenario: &str, unfixed: &str, fixed: &str, tip: &str, subject: &str) {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join(scenario);
    let (state, steps) = bisect_ok(&h.repo, &["--scenario", scenario, "--unfixed", unfixed, "--fixed", tip], &out);
    assert_eq!(state["result"]["first_new"], fixed, "{scenario} steps:\n{steps}");
    assert_eq!(state["result"]["held"], true, "{scenario} steps:\n{steps}");
    let report = std::fs::read_to_string(out.join("bisect.md")).unwrap();
    assert!(report.contains(subject), "{report}");
}

#[test]
fn bisect_names_the_commit_that_fixed_the_ipc_teardown() {
    let h = history();
    bisect_names_a_sibling_fix(&h, "ipc-teardown", &h.ipc_waits, &h.ipc_fixed, &h.ipc_tip, IPC_FIXED);
}

#[test]
fn bisect_names_the_commit_that_fixed_the_netns_lock() {
    let h = history();
    bisect_names_a_sibling_fix(&h, "netns-lock", &h.netns_waits, &h.netns_fixed, &h.netns_tip, NETNS_FIXED);
}

#[test]
fn bisect_names_the_commit_that_limited_a_namespaces_mounts() {
    let h = history();
    bisect_names_a_sibling_fix(&h, "mount-propagation", &h.mount_unlimited, &h.mount_limited, &h.mount_tip, MOUNT_LIMITED);
}

#[test]
fn git_bisect_run_with_repro_check_build_gives_the_same_answer() {
    let h = history();
    let repo = &h.repo;
    git(repo, &["bisect", "reset"]); // a bisection a killed test left behind
    git(repo, &["bisect", "start", &h.before_fix_tip, &h.base]);
    let o = StdCommand::new("git")
        .arg("-C")
        .arg(repo)
        .args(["bisect", "run", REPRO, "-q", "check", "--build", ".", "--accel", "tcg", "-n", N])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let log = git(repo, &["bisect", "log"]);
    git(repo, &["bisect", "reset"]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "git bisect run failed:\n{stdout}\n{}", stderr_of(&o));
    assert!(stdout.contains(&format!("{} is the first bad commit", h.removes_call)), "{stdout}\n{log}");
}

#[test]
fn bisect_over_a_kernel_list_names_the_first_fixed_variant() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("list");
    let o = repro()
        .args(["bisect", "--accel", "tcg", "-n", N, "--kernels", "6.1-noprune,6.1-prune-aliases,6.1-src", "--fix", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let state = bisect_state(&out);
    assert_eq!(o.status.code(), Some(0), "{}\n{}", stderr_of(&o), steps_summary(&state));
    assert_eq!(state["result"]["first_new"], "6.1-prune-aliases");
    assert_eq!(state["result"]["held"], true);
}
