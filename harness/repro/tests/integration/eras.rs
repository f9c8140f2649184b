//! A tree of any era builds with one command: repro reads its version,
//! picks the era's fragments and compiler, reports the options the tree
//! does not have, and refuses trees it cannot make a guest of. Synthetic
//! trees (a Makefile with VERSION/PATCHLEVEL and Kconfig stubs) stand in
//! for real ones, so this runs without a compiler or a network.

use std::path::Path;

use predicates::prelude::*;
use repro_proto::exit_codes;

use crate::helpers::*;

struct Tree {
    dir: tempfile::TempDir,
}

impl Tree {
    fn new(version: &str, symbols: Option<&[&str]>) -> Tree {
        let dir = tempfile::tempdir().unwrap();
        synthetic_tree(&dir.path().join("linux"), version, symbols, &fake_bzimage(dir.path()));
        Tree { dir }
    }

    fn src(&self) -> std::path::PathBuf {
        self.dir.path().join("linux")
    }

    fn build(&self, extra: &[&str]) -> assert_cmd::assert::Assert {
        repro()
            .args(["image", "build", "--src"])
            .arg(self.src())
            .args(extra)
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .env("REPRO_LOG", "info")
            .assert()
    }

    /// The make variables the synthetic tree's bzImage target was given.
    fn make_vars(&self) -> String {
        let build = self.dir.path().join("cache/build");
        let tree = std::fs::read_dir(&build).unwrap().flatten().next().unwrap().path();
        let out = std::fs::read_dir(&tree).unwrap().flatten().find(|e| e.file_name().to_string_lossy().starts_with("out-")).unwrap().path();
        std::fs::read_to_string(out.join("make-vars")).unwrap()
    }

    fn build_json(&self) -> serde_json::Value {
        let images = self.dir.path().join("cache/images");
        let entry =
            std::fs::read_dir(&images).unwrap().flatten().find(|e| !e.file_name().to_string_lossy().starts_with('.')).unwrap().path();
        serde_json::from_str(&std::fs::read_to_string(entry.join("build.json")).unwrap()).unwrap()
    }
}

#[test]
fn a_4_9_tree_skips_the_options_it_predates_and_says_so() {
    let t = Tree::new("4.9.115", None);
    // The synthetic 4.9 Kconfig has every option; a real 4.9 lacks these.
    let symbols: Vec<String> = std::fs::read_to_string(t.src().join("Kconfig"))
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("config ").map(String::from))
        .collect();
    let old: Vec<&str> = symbols.iter().map(String::as_str).filter(|s| !["PVH", "KPROBE_EVENTS", "POSIX_TIMERS"].contains(s)).collect();
    let t = Tree::new("4.9.115", Some(&old));
    t.build(&["--cc", "gcc"]).success().stderr(predicate::str::contains(
        "skipped, not defined by this 4.9.115 tree's Kconfig: CONFIG_KPROBE_EVENTS, CONFIG_POSIX_TIMERS, CONFIG_PVH",
    ));
    let info = t.build_json();
    assert_eq!(info["version"], "4.9.115");
    assert_eq!(info["era"], "4.x");
    assert_eq!(info["config"], "minimal");
    assert_eq!(info["config_skipped"], serde_json::json!(["KPROBE_EVENTS", "POSIX_TIMERS", "PVH"]));
    assert!(t.make_vars().contains("CC=gcc\n"), "{}", t.make_vars());
}

#[test]
fn a_3_10_tree_gets_the_3_x_fragment_and_flags_and_only_the_fixes_its_files_need() {
    // A synthetic 3.10 tree with the old constructs of two fixes: no run
    // bits on merge_config.sh, and a Makefile without -fno-PIE or the
    // linker's page size. Everything else is "not needed": it has no files.
    let t = Tree::new("3.10.0", None);
    let merge = t.src().join("scripts/kconfig/merge_config.sh");
    std::fs::set_permissions(&merge, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    std::fs::write(t.src().join("arch/x86/Makefile"), "LDFLAGS := -m elf_x86_64\n").unwrap();
    let mk = std::fs::read_to_string(t.src().join("Makefile")).unwrap().replace("KBUILD_CFLAGS := -fno-PIE\n", "");
    std::fs::write(t.src().join("Makefile"), mk).unwrap();
    t.build(&["--cc", "gcc"])
        .success()
        .stderr(predicate::str::contains("compatibility fix run-bits: 1 scripts without run bits, e.g. scripts/kconfig/merge_config.sh"));
    let vars = t.make_vars();
    assert!(vars.starts_with("CC=gcc -fcommon -Wa,-mrelax-relocations=no -fgnu89-inline -fno-pie\n"), "{vars}");
    assert!(vars.contains("LD=ld -z max-page-size=0x200000\n") && vars.contains("HOSTCC=gcc -fcommon"), "{vars}");
    let info = t.build_json();
    assert_eq!(info["era"], "3.x");
    assert_eq!(info["patches"], serde_json::json!(["run-bits", "no-pie", "max-page-size"]));
    let fixes: Vec<String> = serde_json::from_value(info["fixes"].clone()).unwrap();
    assert!(fixes.iter().any(|f| f.starts_with("early-idt-jump: not needed")), "{fixes:?}");
    // The tree is given back as it came: its mode too.
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&merge).unwrap().permissions().mode() & 0o777, 0o644);
}

#[test]
fn a_tree_without_an_option_the_probe_needs_fails_naming_it() {
    let t = Tree::new("5.4.0", Some(&["IPV6", "NET"]));
    t.build(&["--cc", "gcc"])
        .code(exit_codes::BUILD_FAILED)
        .stderr(predicate::str::contains("CONFIG_NET_NS").and(predicate::str::contains("churn and probe need")));
    assert!(
        !t.dir.path().join("cache/images").exists()
            || std::fs::read_dir(t.dir.path().join("cache/images"))
                .unwrap()
                .flatten()
                .all(|e| e.file_name().to_string_lossy().starts_with('.')),
        "a failed build left an image in the cache"
    );
}

#[test]
fn a_tree_whose_version_cannot_be_read_is_a_build_failure() {
    let t = Tree::new("6.1.0", None);
    std::fs::write(t.src().join("Makefile"), "all:\n\ttrue\n").unwrap();
    t.build(&["--cc", "gcc"]).code(exit_codes::BUILD_FAILED).stderr(predicate::str::contains("cannot read the kernel version"));
    let t = Tree::new("2.6.32", None);
    t.build(&[]).code(exit_codes::BUILD_FAILED).stderr(predicate::str::contains("does not know how to build a 2.6.32 tree"));
}

#[test]
fn a_compiler_that_cannot_be_had_is_a_build_failure_naming_it() {
    let t = Tree::new("6.1.0", None);
    t.build(&["--cc", "gcc-0-none"])
        .code(exit_codes::BUILD_FAILED)
        .stderr(predicate::str::contains("gcc-0-none").and(predicate::str::contains("gcc-12")));
}

/// A directory of links to everything on PATH except `gcc-12` (and its
/// triplet name): PATH for a machine that does not have it.
fn path_without_gcc_12(dir: &Path) -> std::ffi::OsString {
    std::fs::create_dir_all(dir).unwrap();
    for d in std::env::split_paths(&std::env::var_os("PATH").unwrap()) {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let name = e.file_name();
            let n = name.to_string_lossy();
            if n == "gcc-12" || n.ends_with("-gcc-12") || dir.join(&name).exists() {
                continue;
            }
            let _ = std::os::unix::fs::symlink(e.path(), dir.join(&name));
        }
    }
    dir.as_os_str().to_owned()
}

#[test]
fn a_current_tree_builds_with_the_hosts_gcc_and_an_old_one_with_gcc_12_from_path_or_fetched() {
    let t = Tree::new("6.1.0", None);
    t.build(&[]).success();
    assert!(t.make_vars().starts_with("CC=gcc\n"), "{}", t.make_vars());
    assert_eq!(t.build_json()["cc_origin"], "host");

    // 4.x: gcc-12, as it is where PATH has it (Debian 12)...
    let t = Tree::new("4.4.178", None);
    t.build(&[]).success();
    let vars = t.make_vars();
    let cc = vars.lines().next().unwrap().strip_prefix("CC=").unwrap().to_string();
    assert!(cc.ends_with("gcc-12"), "{vars}");
    assert!(t.build_json()["cc"].as_str().unwrap().contains(" 12."), "{}", t.build_json());

    // ...and fetched with apt into the cache where it does not (Ubuntu
    // 24.04 without gcc-12, a Debian 12 with only gcc): the same compiler.
    let t = Tree::new("4.4.178", None);
    let path = path_without_gcc_12(&t.dir.path().join("bin"));
    repro()
        .args(["image", "build", "--src"])
        .arg(t.src())
        .arg("--cache-dir")
        .arg(t.dir.path().join("cache"))
        .env("PATH", &path)
        .assert()
        .success();
    let vars = t.make_vars();
    let cc = vars.lines().next().unwrap().strip_prefix("CC=").unwrap().to_string();
    assert!(cc.starts_with(t.dir.path().join("cache/toolchains").to_str().unwrap()) && cc.ends_with("gcc-12"), "{vars}");
    let info = t.build_json();
    assert!(info["cc"].as_str().unwrap().contains(" 12."), "{info}");
    assert!(info["cc_origin"].as_str().unwrap().contains("fetched with apt"), "{info}");
}

/// GNU89 inline semantics for the whole 3.x era (issue 33): a header's
/// plain `inline` stub, called where it is not inlined (sentelic.h's
/// fsp_detect in a configuration without that driver, from
/// psmouse-base.c), links only when the compiler emits an out-of-line copy,
/// as GNU89 did. Compiled here with the era's own flags it links and runs;
/// without them (GCC's gnu11 default) it fails to link, as kernel.org 3.14
/// and 3.16 did.
#[test]
fn the_3x_era_links_plain_inline_stubs_as_gnu89_did() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("sentelic.h"), "inline int fsp_detect(void *psmouse, int set_properties) { return -19; }\n").unwrap();
    std::fs::write(d.path().join("psmouse.c"), "#include \"sentelic.h\"\nint probe(void) { return fsp_detect(0, 0); }\n").unwrap();
    std::fs::write(d.path().join("main.c"), "int probe(void);\nint main(void) { return probe() == -19 ? 0 : 1; }\n").unwrap();
    let link = |flags: &[String]| {
        let exe = d.path().join("a.out");
        let _ = std::fs::remove_file(&exe);
        let o = std::process::Command::new("gcc")
            .args(["-O0", "-o"])
            .arg(&exe)
            .arg(d.path().join("psmouse.c"))
            .arg(d.path().join("main.c"))
            .args(flags)
            .output()
            .unwrap();
        o.status.success() && std::process::Command::new(&exe).status().unwrap().success()
    };
    assert!(!link(&[]), "gcc's own default links it: the fixture no longer shows the C99 inline semantics");
    let eras = repro::testing::Eras::builtin();
    for v in ["3.10.108", "3.12.0", "3.14.40", "3.16.0", "3.19.8"] {
        let makefile = {
            let p: Vec<&str> = v.split('.').collect();
            format!("VERSION = {}\nPATCHLEVEL = {}\nSUBLEVEL = {}\n", p[0], p[1], p[2])
        };
        let era = eras.for_version(&repro::testing::KernelVersion::from_makefile(&makefile).unwrap()).unwrap();
        assert!(link(&era.cc_flags), "{v}: the {} era's flags {:?} do not link a plain inline stub", era.name, era.cc_flags);
    }
}
