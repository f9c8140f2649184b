//! The known namespace-churn regressions repro tests for (README, "Sibling
//! bugs"), what a scenario is about, and what a tree's source says of the
//! siblings of the dentry bug (whose reading is source.rs's).

use serde::{Deserialize, Serialize};

use crate::scenario::Scenario;
use crate::source::{c_block, strip_c_comments, Expect, SourceFix};
use crate::summary::KernelInfo;

/// A known regression: what a scenario tests (`bug` in its file).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Bug {
    /// A dead network namespace's /proc/sys/net dentries stay on one hash
    /// chain (before d6cffbbe9a7e, v4.11): the write-up's bug.
    #[default]
    ProcSysDentries,
    /// An IPC namespace's exit waits an RCU grace period (kern_unmount's
    /// synchronize_rcu from v3.13 to e1eb26fa62d0, v5.7).
    IpcTeardown,
    /// A network namespace's creation waits for cleanup_net (net_mutex,
    /// before the series merged as 885842d89a9b, v4.17).
    NetnsLock,
    /// Mount propagation grows one mount namespace without bound (CVE-2016-6213,
    /// before d29216842a85, v4.9, and its stable backports).
    MountLimit,
}

impl Bug {
    pub const ALL: [Bug; 4] = [Bug::ProcSysDentries, Bug::IpcTeardown, Bug::NetnsLock, Bug::MountLimit];

    /// Its name in scenario files and tables.
    pub fn name(self) -> &'static str {
        match self {
            Bug::ProcSysDentries => "proc-sys-dentries",
            Bug::IpcTeardown => "ipc-teardown",
            Bug::NetnsLock => "netns-lock",
            Bug::MountLimit => "mount-limit",
        }
    }

    /// What it is and where it was fixed, in a line (report sections, README).
    pub fn title(self) -> &'static str {
        match self {
            Bug::ProcSysDentries => "a dead network namespace's /proc/sys/net dentries stay on one hash chain (fixed by d6cffbbe9a7e, v4.11)",
            Bug::IpcTeardown => {
                "an IPC namespace's exit waits an RCU grace period to unmount its mqueue (v3.13; fixed by e1eb26fa62d0, v5.7)"
            }
            Bug::NetnsLock => {
                "a network namespace's creation waits for the cleanup of dead ones under net_mutex (fixed by the series merged as 885842d89a9b, v4.17)"
            }
            Bug::MountLimit => {
                "bind mounts of a shared mount multiply through propagation with no limit per mount namespace (CVE-2016-6213; fixed by d29216842a85, v4.9, and stable backports)"
            }
        }
    }

    pub fn is_default(&self) -> bool {
        *self == Bug::default()
    }

    /// What a tree whose source has (or has not) the bug does.
    pub fn describe_source(self, has: bool) -> &'static str {
        match (self, has) {
            (Bug::ProcSysDentries, _) => "see the fix its fs/proc/proc_sysctl.c has",
            (Bug::IpcTeardown, true) => "put_ipc_ns() frees in the exiting task, and kern_unmount() waits a grace period (v3.13 to v5.6)",
            (Bug::IpcTeardown, false) => {
                "no grace period in the exiting task (kern_unmount() without one, before v3.13; or freed by a work item, e1eb26fa62d0, v5.7+)"
            }
            (Bug::NetnsLock, true) => "copy_net_ns() takes the lock cleanup_net() holds exclusively (net_mutex, before v4.17)",
            (Bug::NetnsLock, false) => "copy_net_ns() is a reader of pernet_ops_rwsem, as cleanup_net() is (v4.17+)",
            (Bug::MountLimit, true) => "attach_recursive_mnt() attaches every propagated copy without counting them (before v4.9)",
            (Bug::MountLimit, false) => {
                "attach_recursive_mnt() counts the copies against fs.mount-max, 100,000 by default (d29216842a85, v4.9, and backports)"
            }
        }
    }
}

/// Whether a tree's source has each sibling bug, read where repro builds
/// it (None: not read, or a form these rules do not know: no guess).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceBugs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipc_teardown: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns_lock: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_limit: Option<bool>,
}

impl SourceBugs {
    pub fn is_empty(&self) -> bool {
        *self == SourceBugs::default()
    }

    /// Read from a tree's files, `file(relative path)` giving their text.
    pub fn read(file: impl Fn(&str) -> Option<String>) -> SourceBugs {
        SourceBugs {
            ipc_teardown: file("ipc/namespace.c").zip(file("fs/namespace.c")).and_then(|(i, f)| ipc_teardown_of(&i, &f)),
            netns_lock: file("net/core/net_namespace.c").and_then(|n| netns_lock_of(&n)),
            mount_limit: file("fs/namespace.c").and_then(|f| mount_limit_of(&f)),
        }
    }

    /// Whether the tree has `bug`; None for the dentry bug (source.rs's) or unread.
    pub fn has(&self, bug: Bug) -> Option<bool> {
        match bug {
            Bug::ProcSysDentries => None,
            Bug::IpcTeardown => self.ipc_teardown,
            Bug::NetnsLock => self.netns_lock,
            Bug::MountLimit => self.mount_limit,
        }
    }
}

/// The body of the C function whose definition starts with `signature`.
fn body<'a>(code: &'a str, signature: &str) -> Option<&'a str> {
    let def = code.find(signature)?;
    c_block(&code[def + code[def..].find('{')?..])
}

/// ipc/namespace.c and fs/namespace.c: the exiting task waits when
/// kern_unmount() waits a grace period and put_ipc_ns() frees the namespace
/// itself instead of handing it to a work item.
fn ipc_teardown_of(ipc_namespace: &str, fs_namespace: &str) -> Option<bool> {
    let unmount = strip_c_comments(fs_namespace);
    if !body(&unmount, "void kern_unmount(struct vfsmount")?.contains("synchronize_rcu") {
        return Some(false);
    }
    let ipc = strip_c_comments(ipc_namespace);
    let put = body(&ipc, "void put_ipc_ns(struct ipc_namespace")?;
    if put.contains("schedule_work") || put.contains("queue_work") {
        Some(false)
    } else if put.contains("free_ipc_ns(") {
        Some(true)
    } else {
        None
    }
}

/// net/core/net_namespace.c: copy_net_ns() waits for cleanup_net() when it
/// takes net_mutex, or pernet_ops_rwsem for writing; as a reader it does not.
fn netns_lock_of(net_namespace: &str) -> Option<bool> {
    let code = strip_c_comments(net_namespace);
    let copy = body(&code, "struct net *copy_net_ns(")?;
    if copy.contains("&net_mutex") || copy.contains("down_write") {
        Some(true)
    } else if copy.contains("down_read") {
        Some(false)
    } else {
        None
    }
}

/// fs/namespace.c: attach_recursive_mnt() refuses an attach that would take
/// a namespace past fs.mount-max where it calls count_mounts() (defined in
/// the same file); where it propagates without, every copy is attached.
fn mount_limit_of(fs_namespace: &str) -> Option<bool> {
    let code = strip_c_comments(fs_namespace);
    let attach = body(&code, "static int attach_recursive_mnt(")?;
    if attach.contains("count_mounts(") && body(&code, "int count_mounts(struct mnt_namespace").is_some() {
        Some(false)
    } else if attach.contains("propagate_mnt(") {
        Some(true)
    } else {
        None
    }
}

impl KernelInfo {
    /// The verdict `scenario` should give on this kernel by what its source
    /// says (a kernel repro built), and why; None where nothing was read.
    pub fn expect_from_source(&self, scenario: &Scenario) -> Option<(Expect, String)> {
        match scenario.bug {
            Bug::ProcSysDentries => {
                let fix: SourceFix = self.source_fix?;
                fix.expect(scenario).map(|x| (x, format!("its source: {}", fix.describe())))
            }
            bug => {
                let has = self.source_bugs.has(bug)?;
                Some((if has { Expect::Regressed } else { Expect::Clean }, format!("its source: {}", bug.describe_source(has))))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Synthetic fragments in the shape of each era's functions, written here
    // (no kernel code).
    const UNMOUNT_312: &str =
        "void kern_unmount(struct vfsmount *mnt)\n{\n\tif (!IS_ERR_OR_NULL(mnt)) {\n\t\tmnt->mnt_ns = NULL;\n\t\tmntput(mnt);\n\t}\n}\n";
    const UNMOUNT_313: &str = "void kern_unmount(struct vfsmount *mnt)\n{\n\tif (!IS_ERR_OR_NULL(mnt)) {\n\t\treal_mount(mnt)->mnt_ns = NULL;\n\t\tsynchronize_rcu();\t/* yecchhh... */\n\t\tmntput(mnt);\n\t}\n}\n";
    const PUT_SYNC: &str = "void put_ipc_ns(struct ipc_namespace *ns)\n{\n\tif (atomic_dec_and_lock(&ns->count, &mq_lock)) {\n\t\tmq_clear_sbinfo(ns);\n\t\tspin_unlock(&mq_lock);\n\t\tmq_put_mnt(ns);\n\t\tfree_ipc_ns(ns);\n\t}\n}\n";
    const PUT_WORK: &str = "void put_ipc_ns(struct ipc_namespace *ns)\n{\n\tif (refcount_dec_and_lock(&ns->ns.count, &mq_lock)) {\n\t\tmq_clear_sbinfo(ns);\n\t\tspin_unlock(&mq_lock);\n\t\tif (llist_add(&ns->mnt_llist, &free_ipc_list))\n\t\t\tschedule_work(&free_ipc_work);\n\t}\n}\n";
    const COPY_MUTEX: &str = "struct net *copy_net_ns(unsigned long flags,\n\t\t\tstruct user_namespace *user_ns, struct net *old_net)\n{\n\tmutex_lock(&net_mutex);\n\trv = setup_net(net, user_ns);\n\tmutex_unlock(&net_mutex);\n}\n";
    const COPY_RWSEM: &str = "struct net *copy_net_ns(unsigned long flags,\n\t\t\tstruct user_namespace *user_ns, struct net *old_net)\n{\n\trv = down_read_killable(&pernet_ops_rwsem);\n\t/* not net_mutex any more */\n\trv = setup_net(net, user_ns);\n\tup_read(&pernet_ops_rwsem);\n}\n";

    #[test]
    fn the_ipc_teardown_is_read_from_put_ipc_ns_and_kern_unmount() {
        assert_eq!(ipc_teardown_of(PUT_SYNC, UNMOUNT_312), Some(false), "3.12: no grace period to wait");
        assert_eq!(ipc_teardown_of(PUT_SYNC, UNMOUNT_313), Some(true), "3.13 to 5.6");
        assert_eq!(ipc_teardown_of(PUT_WORK, UNMOUNT_313), Some(false), "5.7+: a work item");
        // 6.1-ipc-sync: the work item declared, no longer used.
        let undone =
            PUT_WORK.replace("if (llist_add(&ns->mnt_llist, &free_ipc_list))\n\t\t\tschedule_work(&free_ipc_work);", "free_ipc_ns(ns);");
        assert_eq!(ipc_teardown_of(&undone, UNMOUNT_313), Some(true));
        assert_eq!(ipc_teardown_of("void put_ipc_ns(struct ipc_namespace *ns)\n{\n\tmystery(ns);\n}\n", UNMOUNT_313), None);
        assert_eq!(ipc_teardown_of(PUT_SYNC, "int other(void)\n{\n}\n"), None);
    }

    #[test]
    fn the_netns_lock_is_read_from_the_lock_copy_net_ns_takes() {
        assert_eq!(netns_lock_of(COPY_MUTEX), Some(true), "before v4.17");
        assert_eq!(netns_lock_of(COPY_RWSEM), Some(false), "v4.17+ (a comment naming net_mutex is not code)");
        assert_eq!(netns_lock_of(&COPY_RWSEM.replace("down_read_killable", "down_write_killable")), Some(true), "6.1-netns-lock");
        assert_eq!(netns_lock_of("struct net *copy_net_ns(void)\n{\n\treturn old;\n}\n"), None);
    }

    const ATTACH_OPEN: &str = "static int attach_recursive_mnt(struct mount *source_mnt,\n\t\t\tstruct mount *dest_mnt)\n{\n\tif (IS_MNT_SHARED(dest_mnt)) {\n\t\terr = propagate_mnt(dest_mnt, dest_mp, source_mnt, &tree_list);\n\t}\n}\n";
    const COUNT: &str =
        "int count_mounts(struct mnt_namespace *ns, struct mount *mnt)\n{\n\tif (ns->mounts >= max)\n\t\treturn -ENOSPC;\n}\n";

    #[test]
    fn the_mount_limit_is_read_from_what_attach_recursive_mnt_counts() {
        assert_eq!(mount_limit_of(ATTACH_OPEN), Some(true), "before v4.9: every copy attached");
        let counted = ATTACH_OPEN.replace("\tif (IS_MNT_SHARED", "\terr = count_mounts(ns, source_mnt);\n\tif (IS_MNT_SHARED");
        assert_eq!(mount_limit_of(&format!("{COUNT}{counted}")), Some(false), "v4.9+ and backports");
        // A comment naming the call is not the call (6.1-mount-nolimit leaves none).
        let commented = ATTACH_OPEN.replace("\tif (IS_MNT_SHARED", "\t/* count_mounts(ns, source_mnt); */\n\tif (IS_MNT_SHARED");
        assert_eq!(mount_limit_of(&format!("{COUNT}{commented}")), Some(true));
        assert_eq!(mount_limit_of("static int attach_recursive_mnt(void)\n{\n\treturn 0;\n}\n"), None, "a form not known");
    }

    #[test]
    fn a_kernel_is_expected_by_the_bug_its_scenario_tests() {
        let files = |name: &str| match name {
            "ipc/namespace.c" => Some(PUT_WORK.to_string()),
            "fs/namespace.c" => Some(UNMOUNT_313.to_string()),
            "net/core/net_namespace.c" => Some(COPY_MUTEX.to_string()),
            _ => None,
        };
        let bugs = SourceBugs::read(files);
        assert_eq!(bugs, SourceBugs { ipc_teardown: Some(false), netns_lock: Some(true), mount_limit: None });
        let mut k: KernelInfo =
            serde_json::from_str(r#"{"name":"src:/t","release":null,"image":null,"image_sha256":null,"source":"x"}"#).unwrap();
        k.source_fix = Some(SourceFix::Absent);
        k.source_bugs = bugs;
        let mut s: Scenario = serde_json::from_value(serde_json::json!({
            "name": "seed", "touch": [], "probes": [],
            "probe": { "samples": 1, "budget_ms": 1, "min_samples": 1 },
            "settle": { "poll_ms": 1, "stable_polls": 1, "max_ms": 1, "baseline_tolerance": 0.1 },
        }))
        .unwrap();
        assert_eq!(k.expect_from_source(&s).unwrap().0, Expect::Regressed);
        s.bug = Bug::IpcTeardown;
        assert_eq!(k.expect_from_source(&s).unwrap().0, Expect::Clean);
        s.bug = Bug::NetnsLock;
        let (x, why) = k.expect_from_source(&s).unwrap();
        assert_eq!((x, why.contains("net_mutex")), (Expect::Regressed, true));
        k.source_bugs = SourceBugs::default();
        assert_eq!(k.expect_from_source(&s), None);
    }
}
