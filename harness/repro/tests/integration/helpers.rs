use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use assert_cmd::Command;
use serde_json::Value;

pub const REPRO: &str = env!("CARGO_BIN_EXE_repro");

/// `repro` with the shared kernel cache and no colour codes in its logs.
pub fn repro() -> Command {
    let mut c = Command::new(REPRO);
    c.env("NO_COLOR", "1").env_remove("REPRO_LOG");
    c
}

pub fn std_repro() -> StdCommand {
    let mut c = StdCommand::new(REPRO);
    c.env("NO_COLOR", "1").env_remove("REPRO_LOG");
    c
}

/// A file with a bzImage header that is not a kernel: passes the image
/// check, for tests that must fail later (missing QEMU, say).
pub fn fake_bzimage(dir: &Path) -> PathBuf {
    let mut b = vec![0u8; 4096];
    b[0x202..0x206].copy_from_slice(b"HdrS");
    let p = dir.join("bzImage");
    std::fs::write(&p, b).unwrap();
    p
}

/// The Debian 6.1 kernel, fetched once per test binary through `repro fetch`.
pub fn debian_6_1() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let out = std_repro().args(["fetch", "6.1"]).output().unwrap();
        assert!(out.status.success(), "repro fetch 6.1 failed: {}", String::from_utf8_lossy(&out.stderr));
        let line = String::from_utf8(out.stdout).unwrap();
        PathBuf::from(line.split('\t').next().unwrap().trim())
    })
}

/// A run directory's summary.json, checked against the schema and read as
/// the type the host wrote it from.
pub fn read_summary(dir: &Path) -> repro_proto::Summary {
    let text = std::fs::read_to_string(dir.join("summary.json")).unwrap_or_else(|e| panic!("no summary.json in {}: {e}", dir.display()));
    assert_schema_valid(&serde_json::from_str(&text).unwrap());
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}/summary.json is not a repro_proto::Summary: {e}", dir.display()))
}

pub fn assert_schema_valid(v: &Value) {
    let schema: Value = serde_json::from_str(repro_proto_schema()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator.iter_errors(v).map(|e| format!("{e} at {}", e.instance_path)).collect();
    assert!(errors.is_empty(), "summary.json violates the schema: {errors:#?}");
}

fn repro_proto_schema() -> &'static str {
    include_str!("../../../proto/schema/summary.schema.json")
}

/// Wait until `f` holds, or panic after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Lines of samples.jsonl of the given message type.
pub fn sample_lines(dir: &Path, kind: &str) -> usize {
    let needle = format!("\"type\":\"{kind}\"");
    std::fs::read_to_string(dir.join("samples.jsonl")).map_or(0, |t| t.lines().filter(|l| l.contains(&needle)).count())
}

/// Direct children of `pid`, from /proc.
pub fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // Fields after the command name (which may hold spaces) start after ')'.
        let rest = &stat[stat.rfind(')').map_or(0, |i| i + 2)..];
        if rest.split_whitespace().nth(1).and_then(|p| p.parse::<u32>().ok()) == Some(pid) {
            out.push(child);
        }
    }
    out
}

pub fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A synthetic kernel tree of `version` ("4.9.999"): a top Makefile with
/// VERSION/PATCHLEVEL/SUBLEVEL whose targets stand in for the real ones
/// (bzImage copies `image`, and records the CC and make variables it was
/// given in $(O)/make-vars), a merge_config.sh that appends the fragment,
/// and a Kconfig defining `symbols` (None: every option of repro's
/// fragments). Built in a second, without a compiler.
pub fn synthetic_tree(dir: &Path, version: &str, symbols: Option<&[&str]>, image: &Path) {
    let v: Vec<&str> = version.split('.').collect();
    let makefile = format!(
        "VERSION = {}\nPATCHLEVEL = {}\nSUBLEVEL = {}\nEXTRAVERSION =\nNAME = Synthetic\n\
         KBUILD_CFLAGS := -fno-PIE\n\n\
         tinyconfig alldefconfig:\n\tmkdir -p $(O) && echo '# $@' > $(O)/.config\n\
         olddefconfig:\n\t@true\n\
         bzImage:\n\tmkdir -p $(O)/arch/x86/boot && cp prebuilt-bzImage $(O)/arch/x86/boot/bzImage\n\
         \tprintf 'CC=%s\\nLD=%s\\nHOSTCC=%s\\n' '$(CC)' '$(LD)' '$(HOSTCC)' > $(O)/make-vars\n\
         kernelrelease:\n\t@echo {version}-synthetic\n",
        v[0],
        v[1],
        v.get(2).unwrap_or(&"0")
    );
    let all: Vec<String>;
    let symbols: Vec<&str> = match symbols {
        Some(s) => s.to_vec(),
        None => {
            let fragments = [
                include_str!("../../../../vm-images/config/minimal.config"),
                include_str!("../../../../vm-images/config/minimal-3.x.config"),
            ];
            all = fragments
                .iter()
                .flat_map(|f| f.lines())
                .filter_map(|l| l.strip_prefix("CONFIG_")?.split('=').next().map(String::from))
                .collect();
            all.iter().map(String::as_str).collect()
        }
    };
    let kconfig: String = symbols.iter().map(|s| format!("config {s}\n\tbool\n")).collect();
    std::fs::create_dir_all(dir.join("scripts/kconfig")).unwrap();
    std::fs::create_dir_all(dir.join("arch/x86")).unwrap();
    std::fs::write(dir.join("Makefile"), makefile).unwrap();
    // As trees from 4.16 (and stable backports) link it.
    std::fs::write(dir.join("arch/x86/Makefile"), "LDFLAGS += $(call ld-option, -z max-page-size=0x200000)\n").unwrap();
    std::fs::write(dir.join("Kconfig"), kconfig).unwrap();
    let merge = dir.join("scripts/kconfig/merge_config.sh");
    std::fs::write(
        &merge,
        "#!/bin/sh\n# -m -O OUT BASE FRAGMENT: append the fragment, as merge_config.sh would merge it\ncat \"$5\" >> \"$4\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&merge, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::copy(image, dir.join("prebuilt-bzImage")).unwrap();
}

/// `program args...` as it would run on a machine whose apt sources are
/// only `sources` (deb822 text): in a private mount namespace, a directory
/// holding them is bind-mounted over /etc/apt/sources.list.d and /dev/null
/// over /etc/apt/sources.list. Needs root, as CI has. An Ubuntu runner's
/// sources make this an Ubuntu machine as far as repro's apt use goes.
pub fn with_apt_sources(sources: &str, dir: &Path, program: &Path, args: &[&str]) -> StdCommand {
    let d = dir.join("sources.list.d");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("simulated.sources"), sources).unwrap();
    let mut c = StdCommand::new("unshare");
    c.args(["-m", "--", "sh", "-c"])
        .arg(
            "mount --bind \"$1\" /etc/apt/sources.list.d && \
             { [ ! -e /etc/apt/sources.list ] || mount --bind /dev/null /etc/apt/sources.list; } && shift && exec \"$@\"",
        )
        .arg("sh")
        .arg(&d)
        .arg(program)
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("REPRO_LOG");
    c
}

/// What a GitHub ubuntu-latest runner has in /etc/apt/sources.list.d.
pub const NOBLE_SOURCES: &str = "Types: deb\nURIs: http://archive.ubuntu.invalid/ubuntu/\nSuites: noble noble-updates noble-backports\n\
Components: main restricted universe multiverse\nSigned-By: /usr/share/keyrings/ubuntu-archive-keyring.gpg\n\n\
Types: deb\nURIs: http://security.ubuntu.invalid/ubuntu/\nSuites: noble-security\nComponents: main restricted universe multiverse\n\
Signed-By: /usr/share/keyrings/ubuntu-archive-keyring.gpg\n";

/// A throwaway OpenPGP key standing in for kernel.org's or CentOS's in the
/// fixture tests: its public half goes into the test catalog (`key = PATH`).
pub struct TestKey {
    pub secret: pgp::composed::SignedSecretKey,
    pub public_asc: String,
    pub secret_asc: String,
}

impl TestKey {
    pub fn new() -> TestKey {
        use pgp::composed::{ArmorOptions, KeyType, SecretKeyParamsBuilder};
        let mut b = SecretKeyParamsBuilder::default();
        b.key_type(KeyType::Ed25519Legacy).can_certify(true).can_sign(true).primary_user_id("repro test key <test@repro.invalid>".into());
        let secret = b.build().unwrap().generate(rand::thread_rng()).unwrap();
        let public_asc = secret.to_public_key().to_armored_string(ArmorOptions::default()).unwrap();
        let secret_asc = secret.to_armored_string(ArmorOptions::default()).unwrap();
        TestKey { secret, public_asc, secret_asc }
    }

    /// `text` cleartext-signed, as kernel.org signs sha256sums.asc.
    pub fn clearsign(&self, text: &str) -> String {
        use pgp::composed::{ArmorOptions, CleartextSignedMessage};
        let msg = CleartextSignedMessage::sign(rand::thread_rng(), text, &self.secret.primary_key, &pgp::types::Password::empty()).unwrap();
        msg.to_armored_string(ArmorOptions::default()).unwrap()
    }

    /// The public key written to `dir`, for a catalog's `key = "PATH"`.
    pub fn public_file(&self, dir: &Path) -> PathBuf {
        let p = dir.join("test-key.asc");
        std::fs::write(&p, &self.public_asc).unwrap();
        p
    }
}
