//! What makes a download trusted. A file from outside is verified before
//! anything reads it (a tarball's Makefile runs on this machine): by the
//! catalog's sha256 pin, by kernel.org's signed `sha256sums.asc`, or by its
//! own RPM signature, each against a key kept in vm-images/keys/. A file
//! none of these verifies is refused unless `--insecure-download` was
//! given; then its hash is kept as first seen and enforced on every later
//! use, and the run's summary says so.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use pgp::composed::{CleartextSignedMessage, Deserializable, SignedPublicKey};
use pgp::types::KeyDetails;
use serde::{Deserialize, Serialize};

use crate::error::{fail, Kind};
use crate::kernel::cache::Cache;

/// A signing key repro trusts, and the fingerprint its publisher states.
pub(crate) struct Key {
    pub name: &'static str,
    pub fingerprint: &'static str,
    pub armored: &'static str,
}

pub(crate) const KEYS: &[Key] = &[
    Key {
        name: "kernel.org",
        fingerprint: "b8868c80ba62a1fffaf5fda9632d3a06589da6b1",
        armored: include_str!("../../../../vm-images/keys/kernel.org-autosigner.asc"),
    },
    Key {
        name: "centos-7",
        fingerprint: "6341ab2753d78a78a7c27bb124c6a8a7f4a80eb5",
        armored: include_str!("../../../../vm-images/keys/centos-7.asc"),
    },
];

/// The key a catalog entry names: a compiled-in key by name, or (for a
/// catalog of one's own, `$REPRO_CATALOG`) the path of an armored key file.
pub(crate) fn key_text(name: &str) -> Result<String> {
    if let Some(k) = KEYS.iter().find(|k| k.name == name) {
        // The compiled-in key is the one its publisher states, or nothing.
        let (_, fp) = parse_key(k.armored)?;
        anyhow::ensure!(fp == k.fingerprint, "the built-in {name} key's fingerprint is {fp}, not the publisher's {}", k.fingerprint);
        return Ok(k.armored.to_string());
    }
    if name.starts_with('/') {
        return std::fs::read_to_string(name).with_context(|| format!("reading the signing key {name} the catalog names"));
    }
    Err(fail(
        Kind::Usage,
        format!(
            "the catalog names signing key {name:?}, which repro does not have: use one of {} or the absolute path of an armored key",
            KEYS.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
        ),
    ))
}

/// The primary key of an armored key block, and its fingerprint in hex.
pub(crate) fn parse_key(armored: &str) -> Result<(SignedPublicKey, String)> {
    let (key, _) = SignedPublicKey::from_string(armored).context("reading an OpenPGP public key")?;
    let fp = hex(key.fingerprint().as_bytes());
    Ok((key, fp))
}

pub(crate) use repro_proto::Verification;

/// The text of a cleartext-signed message (kernel.org's sha256sums.asc)
/// once its signature verifies with `armored_key`, and the key's fingerprint.
pub(crate) fn signed_text(message: &str, armored_key: &str) -> Result<(String, String)> {
    let (key, fp) = parse_key(armored_key)?;
    let (msg, _) = CleartextSignedMessage::from_string(message).context("sha256sums.asc is not an OpenPGP cleartext-signed message")?;
    msg.verify(&key).map_err(|e| {
        fail(
            Kind::Unverified,
            format!("the signature of sha256sums.asc does not verify with key {fp} ({e}): the file was altered, or signed by someone else"),
        )
    })?;
    Ok((msg.signed_text(), fp))
}

/// The hash of `name` in a `sha256sum`-style listing.
pub(crate) fn sums_entry(sums: &str, name: &str) -> Option<String> {
    sums.lines().find_map(|l| {
        let mut w = l.split_whitespace();
        let (h, n) = (w.next()?, w.next()?);
        (n.trim_start_matches('*') == name && h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit())).then(|| h.to_ascii_lowercase())
    })
}

/// Hashes first seen for files nothing could verify, kept in the cache, so
/// that the same name never silently turns into different bytes.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct FirstSeen {
    #[serde(flatten)]
    seen: BTreeMap<String, String>,
}

impl FirstSeen {
    pub(crate) fn path(downloads: &Path) -> PathBuf {
        downloads.join("first-seen.json")
    }

    pub(crate) fn load(downloads: &Path) -> Result<FirstSeen> {
        match std::fs::read_to_string(Self::path(downloads)) {
            Ok(t) => serde_json::from_str(&t).with_context(|| format!("{} is damaged: remove it", Self::path(downloads).display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(FirstSeen::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", Self::path(downloads).display())),
        }
    }

    /// Record `sha` for `name` the first time; refuse a different one later.
    pub(crate) fn check(&mut self, downloads: &Path, name: &str, sha: &str) -> Result<()> {
        match self.seen.get(name) {
            Some(first) if first == sha => Ok(()),
            Some(first) => Err(fail(
                Kind::Unverified,
                format!(
                    "{name} has sha256 {sha}, but it was first seen here as {first}: the file changed since. If that is expected, \
                     remove its line from {} and run again",
                    Self::path(downloads).display()
                ),
            )),
            None => {
                self.seen.insert(name.to_string(), sha.to_string());
                crate::atomic::write_json(&Self::path(downloads), self)
            }
        }
    }
}

/// The policy: a verified file is used; one that nothing verified (`why`)
/// is refused, unless the cache allows unverified downloads
/// (`--insecure-download`), and then only with the hash it was first seen
/// with.
/// The one gate every kernel image passes on its way to a boot
/// ([`crate::kernel::spec::KernelSpec::resolve`]): one that a download
/// nothing verified brought in was accepted under --insecure-download, and
/// needs the flag every time it is used, not only the first.
pub(crate) fn admit(cache: &Cache, image: &crate::kernel::cache::KernelImage) -> Result<()> {
    if matches!(image.verification, Some(Verification::Unverified { .. })) && !cache.insecure_download {
        return Err(fail(
            Kind::Unverified,
            format!(
                "{} ({}) comes from a download nothing verified, accepted once under --insecure-download: \
                 pass --insecure-download again to use it, or delete it from the cache to fetch one that verifies",
                image.name,
                image.path.display()
            ),
        ));
    }
    Ok(())
}

pub(crate) fn accept(cache: &Cache, name: &str, sha256: &str, verified: Result<Verification>) -> Result<Verification> {
    match verified {
        Ok(v) => Ok(v),
        Err(why) if cache.insecure_download => {
            let downloads = cache.root.join("downloads");
            std::fs::create_dir_all(&downloads)?;
            FirstSeen::load(&downloads)?.check(&downloads, name, sha256)?;
            tracing::warn!("using {name} UNVERIFIED (--insecure-download): {why:#}; its sha256 {sha256} is kept as first seen");
            Ok(Verification::Unverified { first_seen: sha256.to_string() })
        }
        Err(why) => Err(fail(
            Kind::Unverified,
            format!(
                "{why:#}. repro does not use a download it cannot verify (a source tree's Makefile runs on this machine): \
                 pin its sha256 in the catalog, or pass --insecure-download to use it anyway (its hash is then kept as first \
                 seen and enforced after, and the run's summary says UNVERIFIED)"
            ),
        )),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kept_keys_are_the_ones_their_publishers_name() {
        for k in KEYS {
            let (_, fp) = parse_key(k.armored).unwrap();
            assert_eq!(fp, k.fingerprint, "{}: vm-images/keys holds a different key than the publisher's", k.name);
        }
    }

    #[test]
    fn a_first_seen_hash_is_kept_and_enforced() {
        let d = tempfile::tempdir().unwrap();
        let mut seen = FirstSeen::load(d.path()).unwrap();
        seen.check(d.path(), "a.rpm", "11").unwrap();
        let mut again = FirstSeen::load(d.path()).unwrap();
        again.check(d.path(), "a.rpm", "11").unwrap();
        let e = again.check(d.path(), "a.rpm", "22").unwrap_err();
        assert_eq!(crate::error::kind_of(&e), Some(Kind::Unverified));
        assert!(format!("{e:#}").contains("first seen here as 11"), "{e:#}");
    }

    #[test]
    fn an_unsigned_listing_is_not_a_signed_one() {
        let e = signed_text("abc  linux-4.9.tar.xz\n", KEYS[0].armored).unwrap_err();
        assert!(format!("{e:#}").contains("cleartext-signed"), "{e:#}");
    }

    #[test]
    fn sums_name_their_files() {
        let sums = format!("{}  linux-4.9.119.tar.xz\n{}  linux-4.9.12.tar.xz\n", "a".repeat(64), "b".repeat(64));
        assert_eq!(sums_entry(&sums, "linux-4.9.12.tar.xz"), Some("b".repeat(64)));
        assert_eq!(sums_entry(&sums, "linux-4.9.1.tar.xz"), None);
    }
}
