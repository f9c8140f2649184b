//! What a kernel's source says about the bug: the fix its
//! fs/proc/proc_sysctl.c has, and the verdict each scenario should give
//! on it. Shared by the host's builds (which read it) and the reports
//! (which expect by it).

use serde::{Deserialize, Serialize};

use crate::scenario::Scenario;

/// What a verdict is expected to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    Regressed,
    Clean,
}

impl Expect {
    pub fn as_str(self) -> &'static str {
        match self {
            Expect::Regressed => "regressed",
            Expect::Clean => "clean",
        }
    }
}

/// How a kernel's fs/proc/proc_sysctl.c treats a dead namespace's
/// dentries (shared/reference/kernel-history.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceFix {
    /// No prune at unregister (before v4.11, and trees without a backport).
    Absent,
    /// d_prune_aliases() at unregister (d6cffbbe9a7e, v4.11 to v5.6, 4.9.y
    /// and RHEL 7 backports): unused dentries go, held ones stay hashed.
    Prune,
    /// d_invalidate() at unregister (f90f3cafe8d5, v5.7+): even held ones go.
    Invalidate,
}

impl SourceFix {
    /// Read from the text of fs/proc/proc_sysctl.c (and, where the prune
    /// lives there since 5.7, fs/proc/inode.c): the pruner it defines must
    /// also be called. None: a form this rule does not know.
    pub fn of_source(proc_sysctl: &str, proc_inode: &str) -> Option<SourceFix> {
        let code = strip_c_comments(proc_sysctl);
        let Some((name, body)) = ["proc_sys_prune_dcache", "proc_sys_invalidate_dcache"].iter().find_map(|n| {
            let def = code.find(&format!("{n}(struct"))?;
            let open = def + code[def..].find('{')?;
            Some((*n, c_block(&code[open..])?))
        }) else {
            return (!code.contains("d_prune_aliases") && !code.contains("d_invalidate")).then_some(SourceFix::Absent);
        };
        let calls = code.matches(&format!("{name}(")).count();
        if calls < 2 {
            return Some(SourceFix::Absent); // defined, never called
        }
        if body.contains("d_prune_aliases") {
            return Some(SourceFix::Prune);
        }
        if body.contains("d_invalidate") {
            return Some(SourceFix::Invalidate);
        }
        // 5.7+: the body calls a sibling helper of fs/proc/inode.c.
        let inode = strip_c_comments(proc_inode);
        let helper =
            ["proc_invalidate_siblings_dcache", "proc_prune_siblings_dcache"].into_iter().find(|h| body.contains(&format!("{h}(")))?;
        let def = inode.find(&format!("void {helper}("))?;
        let helper_body = c_block(&inode[def + inode[def..].find('{')?..])?;
        if helper_body.contains("d_prune_aliases") {
            Some(SourceFix::Prune)
        } else if helper_body.contains("d_invalidate") {
            Some(SourceFix::Invalidate)
        } else {
            None
        }
    }

    /// The verdict a scenario should give on such a kernel: plain churn
    /// piles up only without a fix; a dentry held through the teardown and
    /// never released survives the prune, not d_invalidate (released, it
    /// dies at its last dput). A scenario that drops caches on purpose has
    /// no expectation.
    pub fn expect(self, scenario: &Scenario) -> Option<Expect> {
        if scenario.drop_caches_every.is_some() {
            return None;
        }
        let held_forever = scenario.hold.as_ref().is_some_and(|h| h.release_after_ms.is_none());
        Some(match (self, held_forever) {
            (SourceFix::Absent, _) | (SourceFix::Prune, true) => Expect::Regressed,
            (SourceFix::Prune, false) | (SourceFix::Invalidate, _) => Expect::Clean,
        })
    }

    pub fn describe(self) -> &'static str {
        match self {
            SourceFix::Absent => "no prune at unregister (as before v4.11)",
            SourceFix::Prune => "the prune of d6cffbbe9a7e (v4.11-5.6, or a backport)",
            SourceFix::Invalidate => "d_invalidate of f90f3cafe8d5 (v5.7+)",
        }
    }
}

/// C source without its comments (string literals are not special-cased:
/// the rules above look for identifiers).
pub(crate) fn strip_c_comments(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("/*").into_iter().chain(rest.find("//")).min() {
        out.push_str(&rest[..i]);
        if rest[i..].starts_with("/*") {
            rest = rest[i + 2..].find("*/").map_or("", |j| &rest[i + 2 + j + 2..]);
        } else {
            rest = rest[i..].find('\n').map_or("", |j| &rest[i + j..]);
        }
    }
    out.push_str(rest);
    out
}

/// The `{...}` block at the start of `s`, braces balanced.
pub(crate) fn c_block(s: &str) -> Option<&str> {
    let mut depth = 0usize;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(&s[..=i]);
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{Hold, ProbeSettings, SettleSettings, VerdictSettings};

    // Synthetic proc_sysctl.c / inode.c fragments: the shape of each era's
    // pruner, written here (no kernel code).
    const PRUNE_411: &str = "static void proc_sys_prune_dcache(struct ctl_table_header *head)\n{\n\twhile (x) {\n\t\td_prune_aliases(inode);\n\t}\n}\nstatic void start_unregistering(struct ctl_table_header *p)\n{\n\tproc_sys_prune_dcache(p);\n}\n";
    const INV_57: &str = "static void proc_sys_invalidate_dcache(struct ctl_table_header *head)\n{\n\tproc_invalidate_siblings_dcache(&head->inodes, &sysctl_lock);\n}\nstatic void start_unregistering(struct ctl_table_header *p)\n{\n\tproc_sys_invalidate_dcache(p);\n}\n";
    const INODE_57: &str =
        "void proc_invalidate_siblings_dcache(struct hlist_head *inodes, spinlock_t *lock)\n{\n\tif (d) {\n\t\td_invalidate(d);\n\t}\n}\n";
    const INODE_PRUNE_VARIANT: &str =
        "void proc_prune_siblings_dcache(struct hlist_head *inodes, spinlock_t *lock)\n{\n\td_prune_aliases(inode);\n}\n";

    #[test]
    fn the_fix_is_read_from_the_source_in_each_form() {
        assert_eq!(SourceFix::of_source("static int proc_sys_compare(...)\n{\n}\n", ""), Some(SourceFix::Absent));
        assert_eq!(SourceFix::of_source(PRUNE_411, ""), Some(SourceFix::Prune));
        assert_eq!(SourceFix::of_source(INV_57, INODE_57), Some(SourceFix::Invalidate));
        // The 6.1 variants: the call removed, or the helper swapped for the prune.
        let removed = INV_57.replace("\tproc_sys_invalidate_dcache(p);\n", "\t/* proc_sys_invalidate_dcache(p); */\n");
        assert_eq!(SourceFix::of_source(&removed, INODE_57), Some(SourceFix::Absent));
        let pruned = INV_57.replace("proc_invalidate_siblings_dcache(", "proc_prune_siblings_dcache(");
        assert_eq!(SourceFix::of_source(&pruned, INODE_PRUNE_VARIANT), Some(SourceFix::Prune));
        // A form the rule does not know: no guess.
        assert_eq!(SourceFix::of_source(&INV_57.replace("proc_invalidate_siblings_dcache", "mystery"), INODE_57), None);
    }

    #[test]
    fn the_expected_verdict_follows_the_fix_and_whether_the_scenario_holds_a_dentry() {
        let mut plain = Scenario {
            name: "seed".into(),
            bug: crate::Bug::ProcSysDentries,
            description: String::new(),
            touch: vec![],
            read_all: None,
            hold: None,
            drop_caches_every: None,
            veth: false,
            modules: vec![],
            propagation: None,
            probes: vec![],
            probe: ProbeSettings { samples: 1, budget_ms: 1, min_samples: 1 },
            settle: SettleSettings { poll_ms: 1, stable_polls: 1, max_ms: 1, baseline_tolerance: 0.1, flat_ms: 1, flat_factor: 1.0 },
            verdict: VerdictSettings::default(),
            kernel_args: vec![],
            config: vec![],
        };
        assert_eq!(SourceFix::Absent.expect(&plain), Some(Expect::Regressed));
        assert_eq!(SourceFix::Prune.expect(&plain), Some(Expect::Clean));
        assert_eq!(SourceFix::Invalidate.expect(&plain), Some(Expect::Clean));
        plain.hold = Some(Hold { paths: vec!["/x".into()], release_after_ms: None });
        assert_eq!(SourceFix::Prune.expect(&plain), Some(Expect::Regressed));
        assert_eq!(SourceFix::Invalidate.expect(&plain), Some(Expect::Clean));
        plain.hold = Some(Hold { paths: vec!["/x".into()], release_after_ms: Some(10) });
        assert_eq!(SourceFix::Prune.expect(&plain), Some(Expect::Clean));
        plain.drop_caches_every = Some(100);
        assert_eq!(SourceFix::Absent.expect(&plain), None);
    }
}
