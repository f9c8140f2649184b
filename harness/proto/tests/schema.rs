//! summary.json against its schema: a summary built from the types must
//! validate, and the schema must reject what breaks the format.

use repro_proto::*;

fn sample_summary() -> Summary {
    let window = Window {
        iteration: 100,
        elapsed_s: 1.0,
        churn_rate: 90.0,
        churn_errors: 0,
        nr_dentry: 11_000,
        nr_unused: 200,
        probes: vec![ProbeStats::from_samples_ns("ipv6", &mut [40_000, 50_000], 0)],
        chain_walk: Some(3),
        mem_free_kib: None,
        slab_kib: None,
    };
    Summary {
        format_version: FORMAT_VERSION,
        provenance: Provenance {
            repro_version: "0.1.0".into(),
            date: "2026-11-26T12:00:00Z".into(),
            host_cpu: "AMD EPYC".into(),
            host_kernel: "6.18".into(),
            qemu_version: Some("QEMU emulator version 7.2".into()),
            command: Some("repro run --kernel 6.1".into()),
        },
        kernel: KernelInfo {
            name: "6.1".into(),
            release: Some("6.1.0-56-cloud-amd64".into()),
            image: Some("/cache/vmlinuz".into()),
            image_sha256: Some("a".repeat(64)),
            source: "debian:x.deb".into(),
            verified: Some("RPM signature by centos-7 6341ab27".into()),
            build: Some(repro_proto::BuildProvenance {
                version: "4.4.1".into(),
                era: "4.x".into(),
                cc: "gcc-10 (Debian 10.2.1-6) 10.2.1 20210110 (PATH)".into(),
                make_vars: vec!["CC=gcc-10 -fno-pie".into()],
                fixes: vec!["no-pie: applied (a PIE-by-default compiler)".into()],
            }),
            source_fix: Some(repro_proto::SourceFix::Absent),
            source_bugs: repro_proto::SourceBugs { ipc_teardown: Some(true), netns_lock: Some(false), mount_limit: Some(false) },
            fallback: None,
        },
        backend: repro_proto::Backend::Qemu,
        accel: Some(repro_proto::Accel::Tcg),
        accel_fallback_reason: Some("KVM did not work".into()),
        guest_cpus: Some(2),
        phases: Some(repro_proto::Phases {
            prepare_s: 0.1,
            kvm_proof_s: 0.0,
            boot_s: 2.0,
            guest_uptime_at_hello_s: Some(1.2),
            baseline_s: 0.5,
            churn_s: 6.0,
            settle_s: 0.5,
        }),
        guest_cpu_model: Some("max".into()),
        guest_memory_mib: Some(1024),
        scenario: "seed".into(),
        scenario_definition: Scenario {
            name: "seed".into(),
            bug: repro_proto::Bug::ProcSysDentries,
            description: String::new(),
            touch: vec!["/proc/sys/net/core/somaxconn".into()],
            read_all: None,
            hold: None,
            drop_caches_every: None,
            veth: false,
            modules: vec![],
            propagation: Some(repro_proto::Propagation { binds: 17 }),
            probes: vec![ProbePath {
                name: "ipv6".into(),
                path: "/proc/sys/net/ipv6/neigh/lo/mtu".into(),
                control: false,
                op: Default::default(),
            }],
            probe: ProbeSettings { samples: 10, budget_ms: 100, min_samples: 1 },
            settle: SettleSettings {
                poll_ms: 100,
                stable_polls: 2,
                max_ms: 1000,
                baseline_tolerance: 0.1,
                flat_ms: 3000,
                flat_factor: 3.0,
            },
            verdict: VerdictSettings::default(),
            kernel_args: vec![],
            config: vec![],
        },
        iterations_requested: 100,
        iterations_done: 100,
        workers: 1,
        window: 100,
        complete: true,
        error: None,
        baseline: Some(DentryState { nr_dentry: 10_000, nr_unused: 100 }),
        chain_counter: Some("kprobe on proc_sys_compare".into()),
        windows: vec![window.clone()],
        settled: Some(Settled {
            settle_s: 2.0,
            stable: true,
            ended: Some(SettleEnd::Flat),
            trace: vec![SettlePoint { t_s: 0.0, nr_dentry: 10_050 }],
            window,
            barrier_failed: Some("adding veth rbar0/rbar0p: Operation not supported".into()),
            mounts: Some(repro_proto::MountReach { binds: 16, mounts: 65_535, refused: Some(28) }),
        }),
        residual: Residual::compute(10_000, 10_050, 100),
        duration_s: 12.0,
        rounds: vec![Round {
            iteration: 50,
            settle_s: 3.0,
            ended: Some(SettleEnd::Flat),
            residual: Residual::compute(10_000, 10_020, 50),
            stop: false,
        }],
        stopped_early: true,
        projection: Some(Projection { at_iteration: 100, t0_s: 0.01, per_entry_s: 7e-6, finish_s: 120.0, writeup_chain_s: 2.2e6 }),
        checkpoints: vec![Checkpoint {
            iteration: 50,
            saved_at: "2026-11-27T19:00:00Z".into(),
            state_bytes: 30 << 20,
            save_s: 0.7,
            restore_s: Some(0.8),
            stopped: true,
        }],
    }
}

fn validator() -> jsonschema::Validator {
    let schema: serde_json::Value = serde_json::from_str(SUMMARY_SCHEMA).unwrap();
    jsonschema::validator_for(&schema).expect("the schema itself is valid")
}

#[test]
fn summary_from_the_types_satisfies_the_schema() {
    let v = serde_json::to_value(sample_summary()).unwrap();
    let errors: Vec<String> = validator().iter_errors(&v).map(|e| format!("{} at {}", e, e.instance_path)).collect();
    assert!(errors.is_empty(), "{errors:#?}");
}

#[test]
fn schema_rejects_missing_provenance_and_bad_hashes() {
    let mut v = serde_json::to_value(sample_summary()).unwrap();
    v["provenance"].as_object_mut().unwrap().remove("qemu_version");
    assert!(!validator().is_valid(&v));
    let mut v = serde_json::to_value(sample_summary()).unwrap();
    v["kernel"]["image_sha256"] = "not-a-hash".into();
    assert!(!validator().is_valid(&v));
    let mut v = serde_json::to_value(sample_summary()).unwrap();
    v["format_version"] = 2.into();
    assert!(!validator().is_valid(&v));
}
