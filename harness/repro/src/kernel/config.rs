//! The config fragments (vm-images/config/*.config) and the plan of a
//! tree's .config: the options a tree's Kconfig does not define are dropped
//! (reported as skipped: a 4.9 tree has no PVH), and after `olddefconfig`
//! the options the churn and the probe need must have survived
//! (`# repro-require:` lines). Which fragments a tree gets is its era's
//! ([`crate::kernel::era`]).

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context, Result};

use crate::error::{fail, Kind};

/// One fragment's options and requirements.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fragment {
    /// `CONFIG_X=v` lines, in order.
    pub options: Vec<(String, String)>,
    /// Options that must exist in the tree and survive.
    pub require: Vec<String>,
    /// Options that must survive where the tree defines them.
    pub require_if_present: Vec<String>,
}

impl Fragment {
    /// Options are `CONFIG_X=v` lines; `# repro-require: X Y` and
    /// `# repro-require-if-present: X` lines name symbols without CONFIG_.
    pub fn parse(text: &str) -> Fragment {
        let mut f = Fragment::default();
        for line in text.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("# repro-require-if-present:") {
                f.require_if_present.extend(rest.split_whitespace().map(String::from));
            } else if let Some(rest) = line.strip_prefix("# repro-require:") {
                f.require.extend(rest.split_whitespace().map(String::from));
            } else if let Some((k, v)) = line.strip_prefix("CONFIG_").and_then(|l| l.split_once('=')) {
                f.options.push((k.to_string(), v.to_string()));
            }
        }
        f
    }
}

/// The symbols a tree's Kconfig files define (`config X` / `menuconfig X`).
pub(crate) fn kconfig_symbols(src: &Path) -> Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?.flatten() {
            let Ok(ft) = e.file_type() else { continue };
            let name = e.file_name();
            let name = name.to_string_lossy();
            if ft.is_dir() && !name.starts_with('.') {
                stack.push(e.path());
            } else if ft.is_file() && name.starts_with("Kconfig") {
                let text = std::fs::read(e.path()).unwrap_or_default();
                for line in String::from_utf8_lossy(&text).lines() {
                    let mut w = line.split_whitespace();
                    if let (Some("config" | "menuconfig"), Some(sym)) = (w.next(), w.next()) {
                        out.insert(sym.to_string());
                    }
                }
            }
        }
    }
    Ok(out)
}

/// The merged fragment for one tree: what is applied, what was skipped.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ConfigPlan {
    /// The fragment names, joined: `minimal+minimal-3.x`.
    pub name: String,
    /// The `CONFIG_X=v` lines applied (symbols the tree defines).
    pub applied: Vec<(String, String)>,
    /// Options the tree's Kconfig does not define: not applied.
    pub skipped: Vec<String>,
    /// Must be in `applied` and survive olddefconfig.
    pub required: Vec<String>,
}

impl ConfigPlan {
    /// Merge `fragments` for a tree defining `symbols`. A required option
    /// the tree does not define is an error that names it.
    pub(crate) fn new(fragments: &[(&str, Fragment)], symbols: &BTreeSet<String>) -> Result<ConfigPlan> {
        let mut applied: Vec<(String, String)> = Vec::new();
        let mut skipped = Vec::new();
        let mut required = Vec::new();
        let mut absent_required = Vec::new();
        for (_, f) in fragments {
            for (k, v) in &f.options {
                if !symbols.contains(k) {
                    skipped.push(k.clone());
                    continue;
                }
                // A later fragment overrides an earlier one.
                match applied.iter_mut().find(|(a, _)| a == k) {
                    Some(slot) => slot.1 = v.clone(),
                    None => applied.push((k.clone(), v.clone())),
                }
            }
            for r in &f.require {
                if symbols.contains(r) {
                    required.push(r.clone());
                } else {
                    absent_required.push(r.clone());
                }
            }
            required.extend(f.require_if_present.iter().filter(|r| symbols.contains(*r)).cloned());
        }
        if !absent_required.is_empty() {
            return Err(fail(
                Kind::BuildFailed,
                format!(
                    "this tree's Kconfig does not define {}, which repro's churn and probe need: it cannot be built as repro's guest",
                    absent_required.iter().map(|s| format!("CONFIG_{s}")).collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        let missing_value: Vec<String> = required.iter().filter(|r| !applied.iter().any(|(k, _)| k == *r)).cloned().collect();
        anyhow::ensure!(missing_value.is_empty(), "required options {missing_value:?} have no CONFIG_ line in the fragments");
        required.sort();
        required.dedup();
        skipped.sort();
        skipped.dedup();
        Ok(ConfigPlan { name: fragments.iter().map(|(n, _)| *n).collect::<Vec<_>>().join("+"), applied, skipped, required })
    }

    /// The fragment file handed to merge_config.sh.
    pub(crate) fn fragment_text(&self) -> String {
        self.applied.iter().map(|(k, v)| format!("CONFIG_{k}={v}\n")).collect()
    }

    /// After olddefconfig: (required options that did not survive, other
    /// applied options that did not).
    pub(crate) fn check(&self, merged: &str) -> (Vec<String>, Vec<String>) {
        let have: BTreeSet<&str> = merged.lines().map(str::trim).collect();
        // `=n` survives as "is not set", or as no line at all.
        let kept = |k: &str, v: &str| match v {
            "n" => !merged.lines().any(|l| l.trim().strip_prefix(&format!("CONFIG_{k}=")).is_some_and(|x| x != "n")),
            _ => have.contains(format!("CONFIG_{k}={v}").as_str()),
        };
        let lost: Vec<&String> = self.applied.iter().filter(|(k, v)| !kept(k, v)).map(|(k, _)| k).collect();
        let (req, other): (Vec<&String>, Vec<&String>) = lost.into_iter().partition(|k| self.required.contains(k));
        (req.into_iter().cloned().collect(), other.into_iter().cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragment_directives_and_options_parse() {
        let f = Fragment::parse("# c\n# repro-require: IPV6 NET_NS\n# repro-require-if-present: KPROBE_EVENTS KPROBE_EVENT\nCONFIG_IPV6=y\nCONFIG_NET_NS=y\nCONFIG_KPROBE_EVENTS=y\nCONFIG_KPROBE_EVENT=y\n# CONFIG_X is not set\n");
        assert_eq!(f.require, ["IPV6", "NET_NS"]);
        assert_eq!(f.require_if_present, ["KPROBE_EVENTS", "KPROBE_EVENT"]);
        assert_eq!(f.options.len(), 4);
    }

    fn symbols(s: &[&str]) -> BTreeSet<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn options_the_tree_lacks_are_skipped_and_kprobe_events_go_by_either_name() {
        let f = Fragment::parse("# repro-require: IPV6\n# repro-require-if-present: KPROBE_EVENTS KPROBE_EVENT\nCONFIG_IPV6=y\nCONFIG_PVH=y\nCONFIG_KPROBE_EVENTS=y\nCONFIG_KPROBE_EVENT=y\n");
        // A 4.9 tree: the old kprobe option name, no PVH.
        let p = ConfigPlan::new(&[("minimal", f.clone())], &symbols(&["IPV6", "KPROBE_EVENT"])).unwrap();
        assert_eq!(p.skipped, ["KPROBE_EVENTS", "PVH"]);
        assert_eq!(p.required, ["IPV6", "KPROBE_EVENT"]);
        assert_eq!(p.fragment_text(), "CONFIG_IPV6=y\nCONFIG_KPROBE_EVENT=y\n");
        // A tree with neither kprobe option builds without them.
        let p = ConfigPlan::new(&[("minimal", f)], &symbols(&["IPV6"])).unwrap();
        assert_eq!(p.required, ["IPV6"]);
    }

    #[test]
    fn a_required_option_the_tree_does_not_define_fails_naming_it() {
        let f = Fragment::parse("# repro-require: IPV6 NET_NS\nCONFIG_IPV6=y\nCONFIG_NET_NS=y\n");
        let e = ConfigPlan::new(&[("minimal", f)], &symbols(&["IPV6"])).unwrap_err();
        assert_eq!(crate::error::kind_of(&e), Some(Kind::BuildFailed));
        assert!(format!("{e:#}").contains("CONFIG_NET_NS"), "{e:#}");
    }

    #[test]
    fn after_olddefconfig_lost_required_options_are_told_apart_from_the_rest() {
        let f = Fragment::parse("# repro-require: IPV6\nCONFIG_IPV6=y\nCONFIG_VETH=y\nCONFIG_TMPFS=y\n");
        let p = ConfigPlan::new(&[("minimal", f)], &symbols(&["IPV6", "VETH", "TMPFS"])).unwrap();
        let (req, other) = p.check("# CONFIG_IPV6 is not set\nCONFIG_VETH=m\nCONFIG_TMPFS=y\n");
        let off = ConfigPlan::new(&[("v", Fragment::parse("CONFIG_XEN_PCI=n\n"))], &symbols(&["XEN_PCI"])).unwrap();
        assert_eq!(off.check("# CONFIG_XEN_PCI is not set\n"), (vec![], vec![]));
        assert_eq!(off.check(""), (vec![], vec![]), "an option off by its dependencies has no line");
        assert_eq!(off.check("CONFIG_XEN_PCI=m\n").1, ["XEN_PCI"]);
        assert_eq!((req, other), (vec!["IPV6".to_string()], vec!["VETH".to_string()]));
        assert_eq!(p.check("CONFIG_IPV6=y\nCONFIG_VETH=y\nCONFIG_TMPFS=y\n"), (vec![], vec![]));
    }

    #[test]
    fn a_later_fragment_overrides_an_earlier_value() {
        let a = Fragment::parse("CONFIG_MODULES=n\n");
        let b = Fragment::parse("CONFIG_MODULES=y\n");
        let p = ConfigPlan::new(&[("a", a), ("b", b)], &symbols(&["MODULES"])).unwrap();
        assert_eq!((p.name.as_str(), p.applied), ("a+b", vec![("MODULES".to_string(), "y".to_string())]));
    }

    #[test]
    fn kconfig_symbols_are_read_from_every_kconfig_file() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("net/ipv6")).unwrap();
        std::fs::write(d.path().join("Kconfig"), "mainmenu \"x\"\nconfig NET\n\tbool \"net\"\nmenuconfig NETDEVICES\n").unwrap();
        std::fs::write(d.path().join("net/ipv6/Kconfig"), "config IPV6\n\ttristate\n# config NOT_ME\n").unwrap();
        std::fs::write(d.path().join("net/ipv6/Makefile"), "config FAKE\n").unwrap();
        assert_eq!(kconfig_symbols(d.path()).unwrap(), symbols(&["IPV6", "NET", "NETDEVICES"]));
    }
}
