//! Every parser of outside data, fed what proptest makes of it: each must
//! return an error or a value, never panic, never write or hold beyond its
//! bound. Case counts and findings are in TESTING.md.

use std::path::Path;

use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() }
}

/// A structurally valid RPM, the base that truncation and bit flips start from.
fn rpm_bytes() -> Vec<u8> {
    repro::testing::rpm_fixture(&[("./boot/vmlinuz-3.10.0-0.el7.x86_64", b"bzImage bytes")], None).unwrap()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_bytes_as_an_rpm_are_an_error_not_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("k.rpm");
        std::fs::write(&p, &bytes).unwrap();
        prop_assert!(repro::testing::extract_vmlinuz(&p, &mut Vec::new()).is_err());
    }

    #[test]
    fn truncated_or_flipped_rpms_are_refused_not_a_panic(cut in 0usize..400, flip in 0usize..400, bit in 0u8..8) {
        let mut b = rpm_bytes();
        if flip < b.len() {
            b[flip] ^= 1 << bit;
        }
        let truncated = cut < b.len();
        b.truncate(cut.min(b.len()));
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("k.rpm");
        std::fs::write(&p, &b).unwrap();
        let got = repro::testing::extract_vmlinuz(&p, &mut Vec::new());
        // A package that lost its tail never yields an image; a flipped bit
        // alone may land where nothing checks it, and must only not panic.
        prop_assert!(!truncated || got.is_err(), "an RPM cut at {cut} of its bytes was accepted");
    }

    #[test]
    fn apt_sources_of_any_text_parse_without_panicking(text in "\\PC{0,200}", prefix in prop::sample::select(vec!["deb ", "deb [", "Types: deb\nURIs: ", ""])) {
        let t = format!("{prefix}{text}");
        let one = repro::testing::parse_one_line(&t);
        let many = repro::testing::parse_deb822(&t);
        let _ = repro::testing::derive_sources(&[one, many].concat(), &["bookworm".into(), "noble-security".into()]);
    }

    #[test]
    fn makefile_versions_of_any_text_parse_without_panicking(text in "\\PC{0,300}") {
        let _ = repro::testing::KernelVersion::from_makefile(&text);
        let _ = repro::testing::Fragment::parse(&text);
    }

    #[test]
    fn agent_lines_of_any_text_are_a_message_or_an_error(text in "\\PC{0,400}") {
        let _ = serde_json::from_str::<repro_proto::Message>(&text);
        let _ = serde_json::from_str::<repro_proto::Summary>(&text);
    }

    #[test]
    fn scenario_and_catalog_toml_of_any_text_are_an_error_or_a_value(text in "\\PC{0,300}") {
        let _ = repro::testing::parse_scenario("prop.toml", &text);
        let _ = repro::testing::Catalog::parse(&text);
        let _ = repro::testing::Eras::parse(&text);
    }

    #[test]
    fn git_bisect_output_of_any_text_is_read_without_panicking(text in "\\PC{0,300}") {
        let _ = repro::testing::parse_git_bisect(&text, "fixed");
    }

    #[test]
    fn tarballs_of_any_entries_never_write_outside_their_tree(
        entries in proptest::collection::vec((
            prop::sample::select(vec!["top/a", "top/a/b", "top/../x", "/abs", "top/l", "top/l/p", "top/./c", "top/d/../../e"]),
            0u8..3,
            prop::sample::select(vec!["../../..", "/etc", "a", "../a", "l/../..", "."]),
        ), 1..6)
    ) {
        let root = tempfile::tempdir().unwrap();
        let dest = root.path().join("tree");
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, target) in &entries {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o644);
            h.set_size(0);
            let kind = [tar::EntryType::Regular, tar::EntryType::Symlink, tar::EntryType::Link][*kind as usize];
            h.set_entry_type(kind);
            if kind == tar::EntryType::Regular {
                h.set_size(1);
                // set_path refuses '..'; write the raw name as a hostile archive would.
                let name = path.as_bytes();
                h.as_old_mut().name[..name.len()].copy_from_slice(name);
                h.set_cksum();
                b.append(&h, &b"x"[..]).unwrap();
            } else {
                let name = path.as_bytes();
                h.as_old_mut().name[..name.len()].copy_from_slice(name);
                let t = target.as_bytes();
                h.as_old_mut().linkname[..t.len()].copy_from_slice(t);
                h.set_cksum();
                b.append(&h, &b""[..]).unwrap();
            }
        }
        let bytes = b.into_inner().unwrap();
        for links in [repro::testing::EscapingLinks::Refuse, repro::testing::EscapingLinks::Skip] {
            let _ = repro::testing::unpack_stripped(&bytes[..], &dest, links);
            // Nothing appeared beside the tree, in its parent.
            let beside: Vec<String> = std::fs::read_dir(root.path()).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n != "tree").collect();
            prop_assert!(beside.is_empty(), "{beside:?} written outside the tree by {entries:?}");
            let _ = std::fs::remove_dir_all(&dest);
        }
        prop_assert!(!Path::new("/abs").exists() && !Path::new("/x").exists());
    }

    #[test]
    fn a_guests_mount_count_is_accepted_only_as_binds_could_make_it(
        asked in 17u32..=18, binds in 0u32..24, mounts in 0u64..300_000, refused in proptest::option::of(prop_oneof![Just(28i32), any::<i32>()]),
    ) {
        use repro_proto::{MountReach, Outcome, Propagation};
        let asked = Propagation { binds: asked };
        let reach = MountReach { binds, mounts, refused };
        if reach.check(&asked).is_ok() {
            prop_assert!(binds <= asked.binds && mounts <= Propagation::mounts_after(binds));
            prop_assert!(refused.is_some() == (binds < asked.binds), "{reach:?}");
            // Only a count past the limit is the bug; the fix shows only as ENOSPC.
            match reach.judge().0 {
                Outcome::Regressed => prop_assert!(mounts > MountReach::FIX_LIMIT),
                Outcome::Clean => prop_assert!(refused == Some(MountReach::ENOSPC) && mounts <= MountReach::FIX_LIMIT),
                Outcome::Inconclusive => {}
            }
        }
        // What a kernel does, limited or not, always passes.
        let limited = MountReach { binds: 16, mounts: Propagation::mounts_after(16), refused: Some(MountReach::ENOSPC) };
        let unbounded = MountReach { binds: asked.binds, mounts: Propagation::mounts_after(asked.binds), refused: None };
        prop_assert!(limited.check(&asked).is_ok() && unbounded.check(&asked).is_ok());
    }
}
