//! One build's plan, decided once its tree is at hand (version, era,
//! compiler, config fragments, make variables, compatibility fixes), and
//! the configure step that turns it into the O= directory's .config.

use std::path::Path;

use anyhow::Result;

use crate::error::{fail, Kind};
use crate::kernel::cache::{hex_sha256 as hex, Cache};
use crate::kernel::compat::Assessment;
use crate::kernel::config::{kconfig_symbols, ConfigPlan, Fragment};
use crate::kernel::era::{config_text, Eras, KernelVersion};
use crate::kernel::make::{make, run_logged};
use crate::kernel::toolchain::Compiler;

/// Everything decided about one build once its tree is at hand.
pub(crate) struct BuildPlan {
    pub(super) version: KernelVersion,
    pub(super) era: String,
    /// The make target the fragments are merged onto (tinyconfig).
    pub(super) base: String,
    pub(super) compiler: Compiler,
    pub(super) config: ConfigPlan,
    /// `NAME=value` arguments for every make call.
    pub(super) make_vars: Vec<String>,
    /// What the compatibility fixes found in this tree.
    pub(super) fixes: Assessment,
}

impl BuildPlan {
    /// `cc` and `config` are the recipe's: a compiler and named config
    /// fragments instead of the era's; `extra` fragments go after either.
    pub(super) fn new(
        cc: Option<&str>,
        config: Option<&[String]>,
        extra: &[String],
        src: &Path,
        eras: &Eras,
        cache: &Cache,
    ) -> Result<BuildPlan> {
        let version = KernelVersion::of_tree(src)?;
        let era = eras.for_version(&version)?;
        let compiler = Compiler::resolve(cc.unwrap_or(&era.cc), eras, cache)?;
        let names: Vec<&String> = match config {
            Some(names) => names.iter().collect(),
            None => {
                let vendor = eras.vendor_of(src);
                if let Some(v) = vendor {
                    tracing::info!("a {} tree: adding config {} ({})", v.name, v.config.join(", "), v.why);
                }
                era.config.iter().chain(vendor.into_iter().flat_map(|v| &v.config)).collect()
            }
        };
        let extra: Vec<&String> = extra.iter().filter(|e| !names.contains(e)).collect();
        if !extra.is_empty() {
            tracing::info!("adding config {} for the scenario", extra.iter().map(|e| e.as_str()).collect::<Vec<_>>().join(", "));
        }
        let fragments =
            names.into_iter().chain(extra).map(|n| Ok((n.as_str(), Fragment::parse(config_text(n)?)))).collect::<Result<Vec<_>>>()?;
        let config = ConfigPlan::new(&fragments, &kconfig_symbols(src)?)?;
        if !config.skipped.is_empty() {
            tracing::info!(
                "config {}: skipped, not defined by this {version} tree's Kconfig: {}",
                config.name,
                config.skipped.iter().map(|s| format!("CONFIG_{s}")).collect::<Vec<_>>().join(", ")
            );
        }
        let fixes = Assessment::of_tree(src, &compiler.toolchain()?)?;
        let cc_flags: Vec<String> = era.cc_flags.iter().cloned().chain(fixes.cc_flags()).collect();
        let mut make_vars = vec![format!("CC={}", compiler.make_cc(&cc_flags))];
        let ld_flags = fixes.ld_flags();
        if !ld_flags.is_empty() {
            make_vars.push(format!("LD=ld {}", ld_flags.join(" ")));
        }
        make_vars.extend(era.make.iter().map(|(k, v)| format!("{k}={v}")));
        Ok(BuildPlan { version, era: era.name.clone(), base: era.base.clone(), compiler, config, make_vars, fixes })
    }
}

/// The era's base config (tinyconfig) + the planned fragment +
/// olddefconfig, then check that the
/// options the churn and probe need survived (others that did not are
/// reported). Skipped when fragment and make variables have not changed
/// since the last configure of this output directory.
pub(super) fn configure(src: &Path, out: &Path, plan: &BuildPlan, log: &Path) -> Result<()> {
    let stamp = out.join(".repro-config");
    let fragment_text = plan.config.fragment_text();
    let want = hex(format!("{}\n{fragment_text}\n{}", plan.base, plan.make_vars.join("\n")).as_bytes());
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(want.as_str()) && out.join(".config").exists() {
        return Ok(());
    }
    let fragment = out.join("repro.config");
    std::fs::write(&fragment, &fragment_text)?;
    make(src, out, &plan.make_vars, &[plan.base.as_str()], log)?;
    run_logged(
        crate::kernel::make::script(src, "scripts/kconfig/merge_config.sh")
            .args(["-m", "-O"])
            .arg(out)
            .arg(out.join(".config"))
            .arg(&fragment)
            .current_dir(src),
        log,
        "merge_config.sh",
    )?;
    make(src, out, &plan.make_vars, &["olddefconfig"], log)?;
    let merged = std::fs::read_to_string(out.join(".config"))?;
    let (required, other) = plan.config.check(&merged);
    if !other.is_empty() {
        tracing::warn!(
            "config {}: olddefconfig dropped {} (unmet dependencies in this {} tree; repro does not need them)",
            plan.config.name,
            other.iter().map(|s| format!("CONFIG_{s}")).collect::<Vec<_>>().join(", "),
            plan.version
        );
    }
    if !required.is_empty() {
        return Err(fail(
            Kind::BuildFailed,
            format!(
                "config {}: {} did not survive olddefconfig in this {} tree, and repro's churn and probe need them \
                 (unmet dependencies in the tree's Kconfig; see {} and adjust vm-images/config/)",
                plan.config.name,
                required.iter().map(|s| format!("CONFIG_{s}")).collect::<Vec<_>>().join(", "),
                plan.version,
                out.join(".config").display()
            ),
        ));
    }
    std::fs::write(&stamp, want)?;
    Ok(())
}
