//! Old kernels come from hosts this machine may not reach (CentOS vault,
//! kernel.org). These tests serve fixture archives on 127.0.0.1 through a
//! catalog of their own ($REPRO_CATALOG) and an empty cache, and walk every
//! path: download, verify, extract, build, boot, refuse, seed by hand.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use predicates::prelude::*;
use repro_proto::exit_codes;
use sha2::{Digest, Sha256};

use crate::helpers::*;

/// Serves `files` (name -> bytes) on 127.0.0.1 until dropped; 404 otherwise.
struct Server {
    url: String,
    server: Arc<tiny_http::Server>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start(files: Vec<(String, Vec<u8>)>) -> Server {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let url = format!("http://{}", server.server_addr().to_ip().unwrap());
        let s = server.clone();
        let thread = std::thread::spawn(move || {
            for req in s.incoming_requests() {
                let name = req.url().rsplit('/').next().unwrap_or("").to_string();
                let _ = match files.iter().find(|(n, _)| *n == name) {
                    Some((_, body)) => req.respond(tiny_http::Response::from_data(body.clone())),
                    None => req.respond(tiny_http::Response::empty(404)),
                };
            }
        });
        Server { url, server, thread: Some(thread) }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.server.unblock();
        let _ = self.thread.take().unwrap().join();
    }
}

fn sha256(b: &[u8]) -> String {
    format!("{:x}", Sha256::digest(b))
}

/// A catalog file and an empty cache for one test.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new(catalog: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("catalog.toml"), catalog).unwrap();
        Setup { dir }
    }
    fn cache(&self) -> PathBuf {
        self.dir.path().join("cache")
    }
    fn repro(&self) -> assert_cmd::Command {
        let mut c = repro();
        c.env("REPRO_CATALOG", self.dir.path().join("catalog.toml")).env("REPRO_CACHE_DIR", self.cache());
        c
    }
}

fn rpm_entry(url: &str, sha: Option<&str>) -> String {
    rpm_entry_with_key(url, sha, None)
}

fn rpm_entry_with_key(url: &str, sha: Option<&str>, key: Option<&Path>) -> String {
    format!(
        "[[kernel]]\nname = \"el7-fixture\"\ndescription = \"fixture rpm\"\nexpect = {{ seed = \"clean\" }}\nsource = {{ kind = \"rpm\", url = \"{url}\"{}{} }}\n",
        sha.map(|s| format!(", sha256 = \"{s}\"")).unwrap_or_default(),
        key.map(|k| format!(", key = \"{}\"", k.display())).unwrap_or_default()
    )
}

fn kernel_rpm() -> Vec<u8> {
    signed_kernel_rpm(None)
}

fn signed_kernel_rpm(key: Option<&TestKey>) -> Vec<u8> {
    let image = std::fs::read(debian_6_1()).unwrap();
    let files: &[(&str, &[u8])] = &[("./boot/config-3.10.0-0.el7.x86_64", b"# cfg"), ("./boot/vmlinuz-3.10.0-0.el7.x86_64", &image)];
    repro::testing::rpm_fixture(files, key.map(|k| k.secret_asc.as_str())).unwrap()
}

#[test]
fn rpm_kernel_is_downloaded_verified_cached_and_booted() {
    let rpm = kernel_rpm();
    let server = Server::start(vec![("kernel-3.10.0-0.el7.x86_64.rpm".into(), rpm.clone())]);
    let url = format!("{}/vault/kernel-3.10.0-0.el7.x86_64.rpm", server.url);
    let setup = Setup::new(&rpm_entry(&url, Some(&sha256(&rpm))));
    let out = setup.dir.path().join("run");
    setup
        .repro()
        .args(["run", "-q", "--kernel", "el7-fixture", "--accel", "tcg", "--cpus", "1", "-n", "40", "--out"])
        .arg(&out)
        .assert()
        .success();
    let s = read_summary(&out);
    assert!(s.complete);
    assert_eq!(s.kernel.source, "rpm:kernel-3.10.0-0.el7.x86_64.rpm");
    assert_eq!(s.kernel.verified.as_deref(), Some("sha256 pinned by the catalog"));
    assert!(s.kernel.release.as_deref().unwrap().starts_with("6.1."), "the fixture carries Debian's 6.1 image");
    // With the server gone, the cached image still serves.
    drop(server);
    setup.repro().args(["fetch", "el7-fixture"]).assert().success().stdout(predicate::str::contains("kernel-3.10.0-0.el7.x86_64"));
}

#[test]
fn an_unpinned_rpm_is_taken_on_its_own_signature_and_refused_without_one() {
    let key = TestKey::new();
    let signed = signed_kernel_rpm(Some(&key));
    let server = Server::start(vec![("kernel-3.10.0-0.el7.x86_64.rpm".into(), signed), ("kernel-u.rpm".into(), kernel_rpm())]);
    let dir = tempfile::tempdir().unwrap();
    let keyfile = key.public_file(dir.path());
    // Signed by the key the catalog names: used, and the summary says how.
    let setup = Setup::new(&rpm_entry_with_key(&format!("{}/kernel-3.10.0-0.el7.x86_64.rpm", server.url), None, Some(&keyfile)));
    setup.repro().args(["fetch", "el7-fixture"]).assert().success();
    let meta = std::fs::read_to_string(setup.cache().join("kernels/el7-fixture/kernel-3.10.0-0.el7.x86_64/source.json")).unwrap();
    assert!(meta.contains("RPM signature by /") && meta.contains(&keyfile.display().to_string()), "{meta}");
    // The same package checked against CentOS's key (the default) is refused.
    let setup = Setup::new(&rpm_entry(&format!("{}/kernel-3.10.0-0.el7.x86_64.rpm", server.url), None));
    setup.repro().args(["fetch", "el7-fixture"]).assert().code(exit_codes::KERNEL_UNAVAILABLE).stderr(
        predicate::str::contains("does not verify with key 6341ab2753d78a78a7c27bb124c6a8a7f4a80eb5")
            .and(predicate::str::contains("--insecure-download")),
    );
    assert!(!setup.cache().join("kernels/el7-fixture/kernel-3.10.0-0.el7.x86_64").exists(), "a refused package was extracted");
    // An unsigned one: refused, unless the user says so; then its hash is
    // kept as first seen, and a different file under that name is refused.
    let setup = Setup::new(&rpm_entry(&format!("{}/kernel-u.rpm", server.url), None));
    setup.repro().args(["fetch", "el7-fixture"]).assert().code(exit_codes::KERNEL_UNAVAILABLE);
    setup.repro().args(["fetch", "el7-fixture", "--insecure-download"]).assert().success();
    // Cached now, and still only with the flag: once is not for ever.
    setup
        .repro()
        .args(["fetch", "el7-fixture"])
        .assert()
        .code(exit_codes::KERNEL_UNAVAILABLE)
        .stderr(predicate::str::contains("accepted once under --insecure-download"));
    setup.repro().args(["fetch", "el7-fixture", "--insecure-download"]).assert().success();
    let seen = std::fs::read_to_string(setup.cache().join("downloads/first-seen.json")).unwrap();
    assert!(seen.contains(&sha256(&kernel_rpm())) || seen.contains("kernel-u.rpm"), "{seen}");
    let other = signed_kernel_rpm(Some(&key));
    std::fs::write(setup.cache().join("downloads/kernel-u.rpm"), &other).unwrap();
    std::fs::remove_dir_all(setup.cache().join("kernels")).unwrap();
    setup
        .repro()
        .args(["fetch", "el7-fixture", "--insecure-download"])
        .assert()
        .code(exit_codes::KERNEL_UNAVAILABLE)
        .stderr(predicate::str::contains("first seen here as"));
}

#[test]
fn download_with_the_wrong_sha256_is_refused_and_not_kept() {
    let server = Server::start(vec![("kernel-x.rpm".into(), kernel_rpm())]);
    let setup = Setup::new(&rpm_entry(&format!("{}/kernel-x.rpm", server.url), Some(&"0".repeat(64))));
    setup
        .repro()
        .args(["fetch", "el7-fixture"])
        .assert()
        .code(exit_codes::KERNEL_UNAVAILABLE)
        .stderr(predicate::str::contains("corrupt or was tampered with"));
    assert!(!setup.cache().join("downloads/kernel-x.rpm").exists());
    assert!(!setup.cache().join("downloads/kernel-x.part").exists());
}

/// A kernel.org-like tree: make targets that stand in for the real build
/// and produce Debian's 6.1 bzImage, so the whole build path runs in seconds.
fn fixture_tarball() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    synthetic_tree(&dir.path().join("linux-4.9.999"), "4.9.999", None, debian_6_1());
    let mut tar_bytes = Vec::new();
    {
        let mut b = tar::Builder::new(&mut tar_bytes);
        b.append_dir_all("linux-4.9.999", dir.path().join("linux-4.9.999")).unwrap();
        b.finish().unwrap();
    }
    let mut xz = Vec::new();
    let mut w = lzma_rust2::XzWriter::new(&mut xz, lzma_rust2::XzOptions::default()).unwrap();
    std::io::Write::write_all(&mut w, &tar_bytes).unwrap();
    w.finish().unwrap();
    xz
}

/// The fixture tarball and its sha256sums.asc, signed with a test key,
/// served on 127.0.0.1 beside `extra`; `catalog` is a `build` entry `name`
/// (expecting `expect` of seed) of that tree, verified with the test key.
struct SignedTree {
    server: Server,
    keydir: tempfile::TempDir,
    catalog: String,
}

fn signed_tree(name: &str, expect: &str, extra: Vec<(String, Vec<u8>)>) -> SignedTree {
    let tarball = fixture_tarball();
    let key = TestKey::new();
    let sums = key.clearsign(&format!("{}  linux-4.9.999.tar.xz\n", sha256(&tarball)));
    let mut files = vec![("linux-4.9.999.tar.xz".into(), tarball), ("sha256sums.asc".into(), sums.into_bytes())];
    files.extend(extra);
    let server = Server::start(files);
    let keydir = tempfile::tempdir().unwrap();
    let catalog = format!(
        "[[kernel]]\nname = \"{name}\"\ndescription = \"fixture tree\"\nexpect = {{ seed = \"{expect}\" }}\nsource = {{ kind = \"build\", tree = \"linux-4.9.999\", cc = \"gcc\" }}\n\n\
         [[tree]]\nname = \"linux-4.9.999\"\ndescription = \"fixture\"\nsource = {{ kind = \"tarball\", url = \"{}/pub/v4.x/linux-4.9.999.tar.xz\", key = \"{}\" }}\n",
        server.url,
        key.public_file(keydir.path()).display()
    );
    SignedTree { server, keydir, catalog }
}

#[test]
fn tarball_tree_is_verified_against_sha256sums_built_and_booted() {
    let SignedTree { server: _server, keydir, catalog } = signed_tree("4.9.999", "regressed", vec![]);
    // Checked against kernel.org's own key, the listing's signature fails.
    let kernel_org = catalog.replace(&format!(", key = \"{}\"", keydir.path().join("test-key.asc").display()), "");
    let refused = Setup::new(&kernel_org);
    refused
        .repro()
        .args(["image", "build", "4.9.999"])
        .assert()
        .code(exit_codes::KERNEL_UNAVAILABLE)
        .stderr(predicate::str::contains("signature of sha256sums.asc does not verify with key b8868c80ba62a1fffaf5fda9632d3a06589da6b1"));
    assert!(!refused.cache().join("src/linux-4.9.999").read_dir().is_ok_and(|mut d| d.any(|e| e.unwrap().path().join("linux").exists())));
    let setup = Setup::new(&catalog);
    let out = setup.dir.path().join("run");
    let o = setup
        .repro()
        .args(["run", "--kernel", "4.9.999", "--accel", "tcg", "--cpus", "1", "-n", "40", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let err = stderr_of(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("sha256sums.asc"), "the tarball was not checked against sha256sums.asc: {err}");
    let s = read_summary(&out);
    assert!(s.complete);
    assert!(s.kernel.source.starts_with("build:tarball:"), "{:?}", s.kernel);
    assert!(s.kernel.verified.as_deref().unwrap().starts_with("sha256sums.asc signed by "), "{:?}", s.kernel);
    // The tree was unpacked without its top directory.
    let src = std::fs::read_dir(setup.cache().join("src/linux-4.9.999")).unwrap().flatten().next().unwrap().path();
    assert!(src.join("linux/Makefile").exists());
}

/// A Debian kernel whose suite has left the mirror (buster: 404 for its
/// Release file, as bullseye's will) is replaced by the catalog's fallback,
/// a tree built from a (fixture) kernel.org tarball; the run keeps the
/// asked name and says what happened. A refused download never falls back.
#[test]
fn a_kernel_whose_suite_left_the_mirror_is_replaced_by_its_fallback_and_says_so() {
    let SignedTree { server, keydir: _keydir, catalog: fallback } =
        signed_tree("retired-fallback", "clean", vec![("kernel-x.rpm".into(), kernel_rpm())]);
    let retired =
        "[[kernel]]\nname = \"retired\"\ndescription = \"a Debian kernel of a suite no mirror has\"\nexpect = { seed = \"clean\" }\n\
        fallback = \"retired-fallback\"\nsource = { kind = \"debian\", suites = [\"buster\"], package = \"linux-image-cloud-amd64\" }\n\n";
    let setup = Setup::new(&format!("{retired}{fallback}"));
    let out = setup.dir.path().join("run");
    let o = setup
        .repro()
        .args(["run", "--kernel", "retired", "--accel", "tcg", "--cpus", "1", "-n", "40", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let err = stderr_of(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("using the catalog's fallback for retired: retired-fallback"), "{err}");
    let s = read_summary(&out);
    assert!(s.complete);
    assert_eq!(s.kernel.name, "retired", "the run keeps the asked name (the CI matrix row)");
    assert!(s.kernel.source.starts_with("build:tarball:"), "{:?}", s.kernel);
    assert!(
        s.kernel.fallback.as_deref().is_some_and(|f| f.contains("could not be had") && f.ends_with("its fallback retired-fallback")),
        "{:?}",
        s.kernel
    );

    // A download that is refused (a pinned hash that does not match) is not "cannot be had".
    let refused = format!(
        "[[kernel]]\nname = \"pinned\"\ndescription = \"fixture rpm\"\nfallback = \"retired-fallback\"\n\
         source = {{ kind = \"rpm\", url = \"{}/kernel-x.rpm\", sha256 = \"{}\" }}\n\n{fallback}",
        server.url,
        "0".repeat(64)
    );
    let setup = Setup::new(&refused);
    setup
        .repro()
        .args(["fetch", "pinned"])
        .assert()
        .code(exit_codes::KERNEL_UNAVAILABLE)
        .stderr(predicate::str::contains("corrupt or was tampered with").and(predicate::str::contains("fallback").not()));
}

#[test]
fn unreachable_host_fails_fast_and_a_seeded_cache_is_used_instead() {
    let rpm = kernel_rpm();
    // .invalid never resolves (RFC 2606): the same failure as an offline machine.
    let url = "https://vault.repro-test.invalid/7.3.1611/os/x86_64/Packages/kernel-3.10.0-514.el7.x86_64.rpm";
    let setup = Setup::new(&rpm_entry(url, Some(&sha256(&rpm))));
    let seed_path = setup.cache().join("downloads/kernel-3.10.0-514.el7.x86_64.rpm");
    setup.repro().args(["fetch", "el7-fixture"]).assert().code(exit_codes::KERNEL_UNAVAILABLE).stderr(
        predicate::str::contains(format!("cannot download {url}"))
            .and(predicate::str::contains(format!("copy it to {}", seed_path.display())))
            .and(predicate::str::contains("--kernel PATH")),
    );
    std::fs::create_dir_all(seed_path.parent().unwrap()).unwrap();
    std::fs::write(&seed_path, &rpm).unwrap();
    setup.repro().args(["fetch", "el7-fixture"]).assert().success();
    assert!(Path::new(&seed_path).exists());
}

/// A .deb (ar: debian-binary, control.tar.xz, data.tar.xz) holding `files`.
fn deb_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut tar_bytes = Vec::new();
    {
        let mut b = tar::Builder::new(&mut tar_bytes);
        for (path, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, path, *data).unwrap();
        }
        b.finish().unwrap();
    }
    let mut xz = Vec::new();
    let mut w = lzma_rust2::XzWriter::new(&mut xz, lzma_rust2::XzOptions::default()).unwrap();
    std::io::Write::write_all(&mut w, &tar_bytes).unwrap();
    w.finish().unwrap();
    let mut out = ar::Builder::new(Vec::new());
    for (name, data) in [("debian-binary", &b"2.0\n"[..]), ("control.tar.xz", &b""[..]), ("data.tar.xz", &xz[..])] {
        out.append(&ar::Header::new(name.as_bytes().to_vec(), data.len() as u64), data).unwrap();
    }
    out.into_inner().unwrap()
}

/// An Ubuntu kernel from an archive that is Ubuntu's as far as apt can tell:
/// suite noble, a linux-image-generic metapackage depending on the image
/// package, served on 127.0.0.1 to a machine whose only apt source it is
/// (trusted, since the fixture is unsigned). The path a runner's first
/// `repro check --kernel focal` takes: sources derived per distribution,
/// the metapackage followed, the image extracted, cached and booted.
#[test]
fn ubuntu_kernel_is_fetched_from_the_machines_ubuntu_archive_and_booted() {
    let image = std::fs::read(debian_6_1()).unwrap();
    let deb = deb_of(&[("./boot/config-6.1.0-99-generic", b"# cfg"), ("./boot/vmlinuz-6.1.0-99-generic", &image)]);
    let deb_name = "linux-image-6.1.0-99-generic_6.1.0-99.1_amd64.deb";
    let packages = format!(
        "Package: linux-image-generic\nArchitecture: amd64\nVersion: 6.1.0.99.1\nDepends: linux-image-6.1.0-99-generic, linux-firmware\n\
         Filename: pool/main/l/linux-meta/linux-image-generic_6.1.0.99.1_amd64.deb\nSize: 1000\nSHA256: {}\nDescription: fixture\n\n\
         Package: linux-image-6.1.0-99-generic\nArchitecture: amd64\nVersion: 6.1.0-99.1\n\
         Filename: pool/main/l/linux/{deb_name}\nSize: {}\nSHA256: {}\nDescription: fixture\n",
        "0".repeat(64),
        deb.len(),
        sha256(&deb)
    );
    let release = format!(
        "Origin: Ubuntu\nLabel: Ubuntu\nSuite: noble\nCodename: noble\nDate: Thu, 01 Jan 2026 00:00:00 UTC\nArchitectures: amd64\nComponents: main\n\
         SHA256:\n {} {} main/binary-amd64/Packages\n",
        sha256(packages.as_bytes()),
        packages.len()
    );
    let server =
        Server::start(vec![("Release".into(), release.into_bytes()), ("Packages".into(), packages.into_bytes()), (deb_name.into(), deb)]);
    let catalog =
        "[[kernel]]\nname = \"ubuntu-fixture\"\naliases = [\"fixture-noble\"]\ndescription = \"fixture\"\nexpect = { seed = \"clean\" }\n\
                   source = { kind = \"ubuntu\", suites = [\"noble\"], package = \"linux-image-generic\" }\n";
    let setup = Setup::new(catalog);
    let sources = format!("Types: deb\nURIs: {}/ubuntu\nSuites: noble\nComponents: main\nTrusted: yes\n", server.url);
    let env = |c: &mut std::process::Command| {
        c.env("REPRO_CATALOG", setup.dir.path().join("catalog.toml")).env("REPRO_CACHE_DIR", setup.cache());
    };
    let mut fetch = with_apt_sources(&sources, setup.dir.path(), Path::new(REPRO), &["fetch", "fixture-noble"]);
    env(&mut fetch);
    let o = fetch.output().unwrap();
    assert!(o.status.success(), "{}", stderr_of(&o));
    let line = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(line.contains("ubuntu:linux-image-6.1.0-99-generic_6.1.0-99.1_amd64.deb"), "{line}");
    assert!(line.contains(&sha256(&image)), "the image is not the package's vmlinuz: {line}");
    let out = setup.dir.path().join("run");
    let mut run = with_apt_sources(
        &sources,
        setup.dir.path(),
        Path::new(REPRO),
        &["run", "--kernel", "ubuntu-fixture", "--accel", "tcg", "--cpus", "1", "-n", "40", "--out", out.to_str().unwrap()],
    );
    env(&mut run);
    let o = run.output().unwrap();
    assert!(o.status.success(), "{}", stderr_of(&o));
    let s = read_summary(&out);
    assert!(s.complete);
    assert_eq!(s.kernel.name, "ubuntu-fixture");
    // A Debian machine has no Ubuntu mirror: a clear refusal, exit 3.
    let mut deb_machine = with_apt_sources(
        "Types: deb\nURIs: http://deb.invalid/debian\nSuites: bookworm\nComponents: main\n",
        &setup.dir.path().join("d"),
        Path::new(REPRO),
        &["fetch", "ubuntu-fixture", "--cache-dir", setup.dir.path().join("other-cache").to_str().unwrap()],
    );
    deb_machine.env("REPRO_CATALOG", setup.dir.path().join("catalog.toml"));
    let o = deb_machine.output().unwrap();
    assert_eq!(o.status.code(), Some(repro_proto::exit_codes::KERNEL_UNAVAILABLE), "{}", stderr_of(&o));
    assert!(stderr_of(&o).contains("no Ubuntu archive mirror"), "{}", stderr_of(&o));
}
