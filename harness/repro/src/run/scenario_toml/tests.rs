//! scenario_toml's tests: every rule a scenario file must follow.

use super::*;

const SEED: &str = include_str!("../../../../../scenarios/seed.toml");

fn err_of(text: &str) -> String {
    format!("{:#}", parse("x.toml", text).unwrap_err())
}

/// The seed scenario with its control probe timing namespaces instead.
fn lifecycle(unshare: &str) -> String {
    SEED.replace("path = \"net/ipv4/neigh/lo/retrans_time_ms\"", &format!("unshare = {unshare}"))
}

#[test]
fn a_probe_times_an_open_or_a_namespaces_life() {
    let s = parse("x.toml", &lifecycle("[\"ipc\", \"uts\"]")).unwrap();
    assert_eq!(s.probes[0].op, ProbeOp::Open);
    assert_eq!(s.probes[1].op, ProbeOp::Lifecycle { unshare: vec![Namespace::Ipc, Namespace::Uts], after: None });
    assert_eq!((s.probes[1].path.as_str(), s.op_of("ipv4").timed()), ("", "namespace life"));
    // A plain fork: the control whose cost no namespace changes.
    assert_eq!(parse("x.toml", &lifecycle("[]")).unwrap().probes[1].op, ProbeOp::Lifecycle { unshare: vec![], after: None });
}

#[test]
fn a_scenario_names_the_bug_it_tests() {
    assert_eq!(parse("x.toml", SEED).unwrap().bug, repro_proto::Bug::ProcSysDentries);
    assert_eq!(parse("x.toml", &format!("bug = \"netns-lock\"\n{SEED}")).unwrap().bug, repro_proto::Bug::NetnsLock);
    let e = err_of(&format!("bug = \"mount-storm\"\n{SEED}"));
    assert!(e.starts_with("x.toml:1:") && e.contains("ipc-teardown"), "{e}");
}

#[test]
fn a_scenario_names_the_config_fragments_its_workload_needs() {
    let with = |c: &str| format!("config = {c}\n{SEED}");
    assert_eq!(parse("x.toml", &with("[\"mqueue\"]")).unwrap().config, ["mqueue"]);
    assert!(parse("x.toml", SEED).unwrap().config.is_empty());
    let e = err_of(&with("[\"bpf\"]"));
    assert!(e.starts_with("x.toml:1:") && e.contains("no fragment \"bpf\"") && e.contains("mqueue"), "{e}");
    assert!(err_of(&with("[\"mqueue\", \"mqueue\"]")).contains("twice"));
}

#[test]
fn a_namespace_life_may_follow_a_teardown_of_many_within_the_fd_bound() {
    let with = |t: &str| lifecycle(&format!("[\"net\"]\nafter_teardown = {t}"));
    let s = parse("x.toml", &with("{ unshare = [\"net\"], count = 32 }")).unwrap();
    let after = Some(Teardown { unshare: vec![Namespace::Net], count: 32 });
    assert_eq!(s.probes[1].op, ProbeOp::Lifecycle { unshare: vec![Namespace::Net], after });
    for bad in ["{ unshare = [\"net\"], count = 0 }", "{ unshare = [], count = 3 }", "{ unshare = [\"net\", \"ipc\"], count = 300 }"] {
        let e = err_of(&with(bad));
        assert!(e.starts_with("x.toml:") && e.contains("at most 512"), "{bad}: {e}");
    }
    assert!(err_of(&with("{ unshare = [\"pid\"], count = 1 }")).contains("no namespace \"pid\""));
    // An open has no namespace to follow a teardown with.
    let open = SEED.replace(
        "path = \"net/ipv4/neigh/lo/retrans_time_ms\"",
        "path = \"net/ipv4/neigh/lo/retrans_time_ms\"\nafter_teardown = { unshare = [\"net\"], count = 1 }",
    );
    assert!(err_of(&open).contains("not an open"), "{}", err_of(&open));
}

#[test]
fn a_probe_names_one_thing_to_time_and_known_namespaces() {
    let both =
        SEED.replace("path = \"net/ipv4/neigh/lo/retrans_time_ms\"", "path = \"net/ipv4/neigh/lo/retrans_time_ms\"\nunshare = [\"ipc\"]");
    assert!(err_of(&both).contains("either a path"), "{}", err_of(&both));
    let e = err_of(&lifecycle("[\"pid\"]"));
    assert!(e.contains("no namespace \"pid\"") && e.contains("net, ipc, uts, mnt") && e.starts_with("x.toml:"), "{e}");
    assert!(err_of(&lifecycle("[\"ipc\", \"ipc\"]")).contains("twice"));
}

#[test]
fn kernel_args_are_words_and_leave_repros_own_alone() {
    let with = |args: &str| SEED.replace("[churn]", &format!("kernel_args = {args}\n\n[churn]"));
    assert_eq!(parse("x.toml", &with("[\"rcupdate.rcu_expedited=0\"]")).unwrap().kernel_args, ["rcupdate.rcu_expedited=0"]);
    assert!(parse("x.toml", SEED).unwrap().kernel_args.is_empty());
    for bad in ["[\"a b\"]", "[\"\"]", "[\"x=\\\"y\\\"\"]"] {
        assert!(err_of(&with(bad)).contains("one word of printable ASCII"), "{bad}: {}", err_of(&with(bad)));
    }
    for owned in ["rdinit=/bin/sh", "console=tty0", "init=/x", "panic=0"] {
        let e = err_of(&with(&format!("[\"{owned}\"]")));
        assert!(e.contains("is repro's own") && e.starts_with("x.toml:"), "{e}");
    }
    let many = format!("[{}]", vec!["\"quiet\""; 17].join(", "));
    assert!(err_of(&with(&many)).contains("at most 16"));
}

#[test]
fn a_propagation_passes_the_fixs_limit_and_the_mounts_basis_needs_one() {
    let with =
        |p: &str, basis: &str| SEED.replace("[churn]", &format!("{p}\n[churn]")).replace("[verdict]", &format!("[verdict]\n{basis}"));
    let s = parse("x.toml", &with("[propagation]\nbinds = 17\n", "basis = \"mounts\"")).unwrap();
    assert_eq!((s.propagation, s.verdict.basis), (Some(Propagation { binds: 17 }), repro_proto::VerdictBasis::Mounts));
    for binds in [16, 19] {
        let e = err_of(&with(&format!("[propagation]\nbinds = {binds}\n"), ""));
        assert!(e.starts_with("x.toml:") && e.contains("17 or 18"), "{binds}: {e}");
    }
    let e = err_of(&with("", "basis = \"mounts\""));
    assert!(e.contains("has none") && e.contains("binds = 17"), "{e}");
}

#[test]
fn lives_after_a_teardown_are_paced_and_their_control_sampled_first() {
    let netns = parse("netns-lock.toml", include_str!("../../../../../scenarios/netns-lock.toml")).unwrap();
    assert!(netns.lives_paced_by_teardown());
    // The control ("alone", second in the file) while nothing is dying, then the timed lives.
    assert_eq!(netns.probe_phases(), [vec![1], vec![0]]);
    // Where the bug is in the release, each life is its own: interleaved, unpaced.
    let ipc = parse("ipc-teardown.toml", include_str!("../../../../../scenarios/ipc-teardown.toml")).unwrap();
    assert!(!ipc.lives_paced_by_teardown());
    assert_eq!(ipc.probe_phases(), [vec![0, 1]]);
    assert_eq!(parse("x.toml", SEED).unwrap().probe_phases(), [vec![0, 1]]);
}
