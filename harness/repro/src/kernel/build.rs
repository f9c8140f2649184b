//! Building guest kernels from source.
//!
//! A catalog entry of kind `build` names a source tree, patches and a config
//! fragment. The image is cached under a key that hashes all three (plus the
//! compiler and this recipe's version), so a second run boots it at once.
//!
//! One work tree per source tree, under a lock: patches are applied with
//! `git apply` after saving pristine copies of the files they touch, and the
//! copies are put back before the next build (also after an interrupted
//! one). Objects go to one O= directory per config and compiler, shared by
//! the variants, so switching variant recompiles only the patched files.
//! The finished bzImage is renamed into its cache entry: an interrupted
//! build never leaves a half-written entry.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use crate::error::{fail, Kind};
use crate::kernel::built::{load_built, newest_built, sweep_abandoned, BuildInfo, ABANDONED_AFTER};
use crate::kernel::cache::{hex_sha256 as hex, Cache, KernelImage};
use crate::kernel::catalog::{BuildSource, Catalog, TreeKind, PATCHES};
use crate::kernel::era::Eras;
use crate::kernel::make::{check_build_tools, make, make_output};
use crate::kernel::patch::{apply_edits, apply_patch, restore_pristine};
use crate::kernel::plan::{configure, BuildPlan};
use crate::kernel::toolchain;
use crate::kernel::tree::{ensure_tree, local_tree_state, tree_identity};
use repro_proto::{SourceBugs, SourceFix};

/// Bump when the build steps change in a way that changes the image (the
/// compatibility fixes' text is in the key by itself: `compat::RULES`).
const RECIPE_VERSION: u32 = 3;

/// What to build.
#[derive(Debug, Clone)]
pub(crate) struct Recipe {
    /// The catalog name, or `local` for `--src`.
    pub name: String,
    pub tree: TreeSpec,
    pub patches: Vec<(String, String)>,
    /// Config fragments to use instead of the era's (catalog `config`).
    pub config: Option<Vec<String>>,
    /// Fragments merged after those: what the scenario a tree on disk is
    /// built for needs (`config` in its file: ipc-teardown's `mqueue`).
    pub extra_config: Vec<String>,
    /// A compiler instead of the era's (`--cc`, catalog `cc`).
    pub cc: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) enum TreeSpec {
    /// A tree from the catalog's `[[tree]]` table.
    Catalog { name: String, kind: TreeKind },
    /// A kernel tree on disk (`--src DIR`), built in place with O= output.
    Local(PathBuf),
}

impl Recipe {
    /// A catalog `build` entry.
    pub(crate) fn catalog(catalog: &Catalog, name: &str, source: &BuildSource, cc: Option<&str>) -> Result<Recipe> {
        let t = catalog.tree(&source.tree)?;
        let patches = source
            .patches
            .iter()
            .map(|p| {
                PATCHES
                    .iter()
                    .find(|(n, _)| n == p)
                    .map(|(n, t)| (n.to_string(), t.to_string()))
                    .with_context(|| format!("catalog entry {name} names patch {p}, which is not in vm-images/patches/"))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Recipe {
            name: name.to_string(),
            tree: TreeSpec::Catalog { name: t.name.clone(), kind: t.kind.clone() },
            patches,
            config: source.config.clone(),
            extra_config: Vec::new(),
            cc: cc.map(str::to_string).or_else(|| source.cc.clone()),
        })
    }

    /// A tree on disk (`--src`, `--build`, bisect), built by its era's rules.
    /// The image's key: a hash of everything that makes it. `tree` is the
    /// tree's identity as far as the caller can know it (the build: the exact
    /// source package or the git state; CI, before any fetch: the catalog's
    /// tree entry) and `host_cc` the host compiler's version (the compiler of
    /// current trees; fetched ones are pinned by the era rules). The one
    /// function behind the cache entry and CI's cache key.
    pub(crate) fn key(&self, tree: &str, host_cc: &str) -> String {
        let mut h = Sha256::new();
        h.update(format!(
            "recipe {RECIPE_VERSION}\ntree {tree}\nhost cc {host_cc}\ncc {:?}\nconfig {:?}\n{}\n",
            self.cc,
            self.config,
            Eras::fingerprint()
        ));
        // Only when set, so that every key made before it stays the same.
        if !self.extra_config.is_empty() {
            h.update(format!("extra config {:?}\n", self.extra_config));
        }
        h.update(crate::kernel::compat::RULES);
        for (n, t) in &self.patches {
            h.update(format!("patch {n}\n{t}\n"));
        }
        format!("{:x}", h.finalize())
    }

    /// The tree's identity and the image's key, as exact as the machine
    /// can know them before building: a catalog tree's source package
    /// version (asked of apt, nothing downloaded) or a tree's git state, and
    /// the host compiler. The one place the cache entry's name comes from:
    /// the build and `repro image key` (CI's cache key) both call it.
    pub(crate) fn resolve(&self, cache: &Cache) -> Result<Resolved> {
        let (tree_id, tree_key) = match &self.tree {
            TreeSpec::Catalog { name, kind } => (name.clone(), tree_identity(name, kind, cache)?),
            TreeSpec::Local(dir) => {
                let dir = dir.canonicalize().with_context(|| format!("kernel source {}", dir.display()))?;
                if !dir.join("Makefile").exists() || !dir.join("arch/x86").is_dir() {
                    return Err(fail(
                        Kind::KernelUnavailable,
                        format!("{} is not a Linux kernel source tree (no Makefile or arch/x86)", dir.display()),
                    ));
                }
                (format!("local-{}", &hex(dir.to_string_lossy().as_bytes())[..12]), local_tree_state(&dir)?)
            }
        };
        // What the image depends on, known before the tree is at hand (a
        // cache hit needs no tree): the tree, the era rules with every
        // fragment and compatibility fix, the overrides, and the host's
        // compiler (the compiler of current trees; fetched ones are pinned
        // by the rules).
        let host_cc = toolchain::version_of(Path::new("gcc")).unwrap_or_default();
        let key = self.key(&tree_key, &host_cc);
        Ok(Resolved { tree_id, tree_key, key })
    }

    /// A catalog build entry's own name (an alias resolved) and the cache
    /// entry its image has (or would have) on this machine: what CI keys
    /// its kernel cache on.
    pub(crate) fn cache_entry_of(catalog: &Catalog, name: &str, cache: &Cache) -> Result<(String, String)> {
        let (e, b) = catalog.build_entry(name)?;
        let recipe = Recipe::catalog(catalog, &e.name, b, None)?;
        let resolved = recipe.resolve(cache)?;
        Ok((e.name.clone(), recipe.entry_name(&resolved.key)))
    }

    /// The cache entry (directory under images/) of the image with `key`.
    pub(crate) fn entry_name(&self, key: &str) -> String {
        format!("{}-{}", self.name, &key[..16])
    }

    /// `extra_config`: the fragments the run's scenario needs.
    pub(crate) fn local(dir: &Path, cc: Option<&str>, extra_config: &[String]) -> Recipe {
        Recipe {
            name: "local".into(),
            tree: TreeSpec::Local(dir.to_path_buf()),
            patches: Vec::new(),
            config: None,
            extra_config: extra_config.to_vec(),
            cc: cc.map(str::to_string),
        }
    }
}

/// A recipe's tree and key, resolved on this machine ([`Recipe::resolve`]).
pub(crate) struct Resolved {
    /// The build tree's name under build/.
    pub tree_id: String,
    /// The tree's exact identity (source package version, git state).
    pub tree_key: String,
    pub key: String,
}

/// Build (or find in the cache) the image for `recipe`.
pub(crate) fn build(recipe: &Recipe, cache: &Cache) -> Result<KernelImage> {
    check_build_tools()?;
    let eras = Eras::builtin();
    let images = cache.root.join("images");
    let Resolved { tree_id, tree_key, key } = match recipe.resolve(cache) {
        Ok(r) => r,
        Err(e) if matches!(recipe.tree, TreeSpec::Catalog { .. }) => {
            // The tree cannot be had (apt cannot be set up here, no
            // network): an image built before, or restored from CI's
            // build job, is still that kernel.
            return match newest_built(&images, &recipe.name)? {
                Some(img) => {
                    tracing::warn!("{e:#}; using the cached build {}", img.path.display());
                    Ok(img)
                }
                None => Err(e),
            };
        }
        Err(e) => return Err(e),
    };
    let entry = images.join(recipe.entry_name(&key));
    if let Some(mut img) = load_built(&entry, &recipe.name)? {
        tracing::info!("using the cached build of {} ({})", recipe.name, entry.display());
        // An entry built before repro read the sibling bugs: a tree on disk
        // is read now (its compatibility fixes touch none of those files).
        if let (TreeSpec::Local(src), true) = (&recipe.tree, img.source_bugs.is_empty()) {
            img.source_bugs = read_source_bugs(src);
        }
        return Ok(img);
    }

    let build_root = cache.root.join("build").join(&tree_id);
    std::fs::create_dir_all(&build_root).with_context(|| format!("creating {}", build_root.display()))?;
    let _lock = crate::lockfile::lock(&build_root.join(".lock"), &format!("the build tree of {tree_id}"))?;
    sweep_abandoned(&images, ABANDONED_AFTER);
    // Someone may have built it while we waited.
    if let Some(img) = load_built(&entry, &recipe.name)? {
        return Ok(img);
    }

    let src = match &recipe.tree {
        TreeSpec::Catalog { name, kind } => ensure_tree(name, kind, &tree_key, cache)?,
        TreeSpec::Local(dir) => dir.canonicalize()?,
    };
    // The tree as fetched (an interrupted build may have left fixes in
    // it), then what it needs is read from it.
    let pristine = build_root.join("pristine");
    restore_pristine(&src, &pristine)?;
    let plan = BuildPlan::new(recipe.cc.as_deref(), recipe.config.as_deref(), &recipe.extra_config, &src, &eras, cache)?;
    // From here on Ctrl-C/SIGTERM (the process-wide interrupt) stop make
    // and put the tree back.
    let t0 = Instant::now();
    let result = compile(recipe, &plan, &src, &pristine, &build_root, &tree_key);
    // Leave the tree as it was fetched, whatever happened.
    let restored = restore_pristine(&src, &pristine);
    // Whatever goes wrong with the tree is this kernel's problem ("cannot
    // test", 125 under git bisect run), unless it already says otherwise
    // (a full disk, an interrupt).
    let compiled = result
        .map_err(|e| match crate::error::kind_of(&e) {
            Some(Kind::BuildFailed) => with_vendor_advice(e, &src),
            Some(_) => e,
            None => with_vendor_advice(fail(Kind::BuildFailed, format!("{e:#}")), &src),
        })
        .with_context(|| format!("building kernel {}", recipe.name))?;
    restored?;
    let bz = compiled.bz.clone();
    compiled.into_info(recipe, &plan, &src, tree_key, key, t0.elapsed().as_secs_f64()).install(&images, &entry, &bz)?;
    load_built(&entry, &recipe.name)?.context("the image just built cannot be read back")
}

/// A failed build of a vendor's tree says what the user can do: a Red Hat
/// tree's headers assume parts of Red Hat's own configuration (RHEL 7.9's
/// need 128 or more CPUs, dynamic debug, DAX, crash dumps...), which the
/// `rhel-7` vendor fragment holds as far as RHEL 7.3 and 7.9 need; a
/// release that needs more still runs as a bzImage built the vendor's way.
fn with_vendor_advice(e: anyhow::Error, src: &Path) -> anyhow::Error {
    let text = std::fs::read_to_string(src.join("Makefile")).unwrap_or_default();
    match crate::kernel::era::KernelVersion::red_hat_release(&text) {
        Some(release) => fail(
            Kind::BuildFailed,
            format!(
                "{e:#}\nThis is Red Hat's tree of RHEL {release}, whose headers assume Red Hat's own kernel configuration; repro \
                 adds the parts of it RHEL 7.3 and 7.9 need (vm-images/config/rhel-7.config), and this release needs more. \
                 Build it with Red Hat's configuration (make olddefconfig on the release's config, make bzImage) and judge \
                 the image: repro check --kernel PATH/arch/x86/boot/bzImage"
            ),
        ),
        None => e,
    }
}

/// What a build of the tree produced.
struct Compiled {
    bz: PathBuf,
    release: String,
    /// The compatibility fixes and patches applied, by name.
    applied: Vec<String>,
    source_fix: Option<SourceFix>,
    source_bugs: SourceBugs,
}

impl Compiled {
    /// What the cache records beside the image this compile made.
    fn into_info(self, recipe: &Recipe, plan: &BuildPlan, src: &Path, tree_key: String, key: String, build_seconds: f64) -> BuildInfo {
        BuildInfo {
            tree_verified: crate::kernel::tree::verified(src),
            tree_verification: crate::kernel::tree::verification(src),
            name: recipe.name.clone(),
            tree: tree_key,
            version: plan.version.to_string(),
            era: plan.era.clone(),
            patches: self.applied,
            fixes: plan.fixes.lines(),
            source_fix: self.source_fix,
            source_bugs: self.source_bugs,
            config: plan.config.name.clone(),
            config_skipped: plan.config.skipped.clone(),
            cc: plan.compiler.version.clone(),
            cc_origin: plan.compiler.origin.clone(),
            make_vars: plan.make_vars.clone(),
            release: self.release,
            key,
            image_sha256: String::new(),
            build_seconds,
        }
    }
}

/// Apply the plan's fixes and the recipe's patches to `src`, configure and
/// make bzImage in the O= directory for this configuration. The caller puts
/// the tree back from `pristine`, whatever happened.
fn compile(recipe: &Recipe, plan: &BuildPlan, src: &Path, pristine: &Path, build_root: &Path, tree_key: &str) -> Result<Compiled> {
    let mut applied = Vec::new();
    for (fix, found, repair) in plan.fixes.needed() {
        tracing::info!("compatibility fix {}: {found}", fix.name());
        apply_edits(src, pristine, &repair.edits)?;
        applied.push(fix.name().to_string());
    }
    for (name, text) in &recipe.patches {
        apply_patch(src, pristine, name, text)?;
        applied.push(name.clone());
    }
    let source_fix = read_source_fix(src);
    let source_bugs = read_source_bugs(src);
    let cfg_key =
        &hex(format!("{}\n{}\n{}", plan.config.fragment_text(), plan.make_vars.join("\n"), plan.compiler.version).as_bytes())[..16];
    let out = build_root.join(format!("out-{}-{cfg_key}", plan.config.name));
    if crate::kernel::tree::out_dir_is_stale(&out, tree_key, src) {
        tracing::warn!(
            "{} changed, but no file is newer than the last build: make would not see it, so this build starts clean",
            src.display()
        );
        std::fs::remove_dir_all(&out)?;
    }
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join(".repro-tree"), tree_key)?;
    let log = out.join("build.log");
    configure(src, &out, plan, &log)?;
    tracing::info!(
        "building {} ({} tree, era {}, {}; make bzImage; log: {})",
        recipe.name,
        plan.version,
        plan.era,
        plan.compiler.version,
        log.display()
    );
    make(src, &out, &plan.make_vars, &["bzImage"], &log)?;
    let release = make_output(src, &out, &plan.make_vars, &["-s", "kernelrelease"])?;
    Ok(Compiled { bz: out.join("arch/x86/boot/bzImage"), release: release.trim().to_string(), applied, source_fix, source_bugs })
}

/// The fix the tree at `src` has, read from its source as it will be built
/// (and before, for a run whose build fails: the expectation is the
/// source's, built or not).
pub(crate) fn read_source_fix(src: &Path) -> Option<SourceFix> {
    let read = |rel: &str| crate::kernel::compat::read_source(src, rel);
    let fix = SourceFix::of_source(&read("fs/proc/proc_sysctl.c")?, &read("fs/proc/inode.c").unwrap_or_default());
    match fix {
        Some(f) => tracing::info!("fs/proc/proc_sysctl.c: {}", f.describe()),
        None => tracing::warn!("fs/proc/proc_sysctl.c: a form of the dentry prune repro does not recognise; no expected verdict"),
    }
    fix
}

/// Whether the tree at `src` has each sibling bug, read as
/// [`read_source_fix`] reads the dentry bug's fix.
pub(crate) fn read_source_bugs(src: &Path) -> SourceBugs {
    let bugs = SourceBugs::read(|rel| crate::kernel::compat::read_source(src, rel));
    for bug in repro_proto::Bug::ALL {
        if let Some(has) = bugs.has(bug) {
            tracing::info!("{}: {}", bug.name(), bug.describe_source(has));
        }
    }
    bugs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::patch::patched_files;

    /// CI's cache key is this key (through `repro image key`): a new source
    /// package version or host compiler must be a new key, or CI restores
    /// the old images forever (an exact hit never saves again).
    #[test]
    fn a_new_source_version_or_compiler_is_a_new_key() {
        let c = Catalog::builtin().unwrap();
        let crate::kernel::catalog::Source::Build(b) = &c.lookup("6.1-src").unwrap().source else { panic!("6.1-src is built") };
        let r = Recipe::catalog(&c, "6.1-src", b, None).unwrap();
        let key = |tree: &str, cc: &str| r.key(tree, cc);
        let (v1, v2) = ("debian:linux-source-6.1=6.1.192-2", "debian:linux-source-6.1=6.1.193-1");
        let gcc12 = "gcc (Debian 12.2.0-14+deb12u1) 12.2.0";
        assert_eq!(key(v1, gcc12), key(v1, gcc12));
        assert_ne!(key(v1, gcc12), key(v2, gcc12), "a bookworm-security update of linux-source");
        assert_ne!(key(v1, gcc12), key(v1, "gcc (Debian 12.2.0-14+deb12u2) 12.2.0"), "a compiler update");
        assert_eq!(r.entry_name(&key(v1, gcc12)), format!("6.1-src-{}", &key(v1, gcc12)[..16]));
        // A scenario's fragments make another image; none leave the key as it was.
        let local = |extra: &[String]| Recipe::local(Path::new("/t"), None, extra).key(v1, gcc12);
        assert_ne!(local(&["mqueue".to_string()]), local(&[]));
        let before = Recipe { extra_config: Vec::new(), ..Recipe::local(Path::new("/t"), None, &["mqueue".to_string()]) };
        assert_eq!(before.key(v1, gcc12), local(&[]));
    }

    #[test]
    fn every_catalog_patch_in_vm_images_is_compiled_in() {
        let on_disk: Vec<String> = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../vm-images/patches"))
            .unwrap()
            .flatten()
            .filter(|e| e.path().is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        for f in &on_disk {
            assert!(PATCHES.iter().any(|(n, _)| n == f), "vm-images/patches/{f} is not in the table");
        }
    }

    #[test]
    fn patches_name_the_upstream_commit_they_undo_or_emulate() {
        // A 12-digit abbreviated commit id in the header (before the first file).
        let names_a_commit = |header: &str| {
            header
                .split(|c: char| !c.is_ascii_alphanumeric())
                .any(|w| w.len() == 12 && w.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
        };
        for (name, text) in PATCHES {
            let header = text.split("\n--- ").next().unwrap();
            assert!(names_a_commit(header), "{name} has no header naming the upstream commit");
            assert!(!patched_files(text).is_empty(), "{name} touches no file");
        }
        assert_eq!(patched_files(PATCHES[0].1), ["fs/proc/proc_sysctl.c"]);
    }

    fn fixture_tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("src/fs/proc")).unwrap();
        std::fs::write(d.path().join("src/fs/proc/a.c"), "one\ntwo\nthree\n").unwrap();
        d
    }

    const PATCH: &str = "header text\n\n--- a/fs/proc/a.c\n+++ b/fs/proc/a.c\n@@ -1,3 +1,3 @@\n one\n-two\n+TWO\n three\n--- /dev/null\n+++ b/fs/proc/new.c\n@@ -0,0 +1 @@\n+new\n";

    #[test]
    fn patches_apply_and_pristine_restores_the_tree() {
        let d = fixture_tree();
        let (src, pristine) = (d.path().join("src"), d.path().join("pristine"));
        // An old tree's files, as a tarball leaves them.
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_400_000_000);
        std::fs::OpenOptions::new().write(true).open(src.join("fs/proc/a.c")).unwrap().set_modified(old).unwrap();
        let before = crate::kernel::tree::Listing::of(&src).hash;
        apply_patch(&src, &pristine, "t.patch", PATCH).unwrap();
        assert_eq!(std::fs::read_to_string(src.join("fs/proc/a.c")).unwrap(), "one\nTWO\nthree\n");
        assert!(src.join("fs/proc/new.c").exists());
        restore_pristine(&src, &pristine).unwrap();
        assert_eq!(std::fs::read_to_string(src.join("fs/proc/a.c")).unwrap(), "one\ntwo\nthree\n");
        assert!(!src.join("fs/proc/new.c").exists() && !pristine.exists());
        // Given back as it was: a tree without git keys its cache entry on
        // its files' mtimes, and a new one made every build a full rebuild.
        assert_eq!(std::fs::metadata(src.join("fs/proc/a.c")).unwrap().modified().unwrap(), old);
        assert_eq!(crate::kernel::tree::Listing::of(&src).hash, before, "the tree's cache key changed");
    }

    #[test]
    fn a_patch_that_no_longer_applies_names_the_patch_and_the_file() {
        let d = fixture_tree();
        let src = d.path().join("src");
        std::fs::write(src.join("fs/proc/a.c"), "one\nchanged upstream\nthree\n").unwrap();
        let e = format!("{:#}", apply_patch(&src, &d.path().join("pristine"), "t.patch", PATCH).unwrap_err());
        assert!(e.contains("t.patch no longer applies") && e.contains("fs/proc/a.c"), "{e}");
    }
}
