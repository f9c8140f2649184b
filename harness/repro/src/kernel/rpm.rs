//! A binary kernel RPM (CentOS 7): its signature checked with the `rpm`
//! crate against the key the catalog names, and `boot/vmlinuz-*` taken out
//! of its payload only if the file's digest matches the one its (signed)
//! header lists: the signature covers the header, the header the files.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use crate::error::{fail, Kind};

/// A package read once: its signature checked and its image taken from
/// the same bytes.
pub(crate) struct Rpm {
    path: PathBuf,
    pkg: rpm::Package,
}

impl Rpm {
    pub(crate) fn open(path: &Path) -> Result<Rpm> {
        let bytes = crate::input::Input::Rpm.read(path)?;
        let unreadable = |e: String| fail(Kind::KernelUnavailable, format!("{} is not a readable RPM: {e}", path.display()));
        check_headers(&bytes).map_err(unreadable)?;
        let pkg = rpm::Package::parse(&mut &bytes[..]).map_err(|e| unreadable(e.to_string()))?;
        Ok(Rpm { path: path.to_path_buf(), pkg })
    }

    /// Check the package's signature with `armored_key`; the key's
    /// fingerprint when it verifies.
    pub(crate) fn verify_signature(&self, armored_key: &str) -> Result<String> {
        let (_, fp) = crate::kernel::verify::parse_key(armored_key)?;
        let verifier = rpm::signature::pgp::Verifier::from_asc(armored_key).context("loading the signing key")?;
        self.pkg.verify_signature(verifier).map_err(|e| {
            fail(
                Kind::Unverified,
                format!(
                    "{}: its RPM signature does not verify with key {fp} ({e}): the package was altered, or is not the distribution's",
                    self.path.display()
                ),
            )
        })?;
        Ok(fp)
    }

    /// VERSION-RELEASE from the header, e.g. `3.10.0-514.el7`.
    pub(crate) fn version(&self) -> String {
        let m = &self.pkg.metadata;
        format!("{}-{}", m.get_version().unwrap_or("?"), m.get_release().unwrap_or("?"))
    }

    /// Copy the package's `boot/vmlinuz-*` to `out`; returns the release it
    /// names. The image must match the sha256 its header lists for it.
    pub(crate) fn extract_vmlinuz(&self, out: &mut impl Write) -> Result<String> {
        let path = &self.path;
        let files =
            self.pkg.files().map_err(|e| fail(Kind::KernelUnavailable, format!("{}: cannot read its payload: {e}", path.display())))?;
        for f in files {
            let f = f.map_err(|e| fail(Kind::KernelUnavailable, format!("{}: a damaged payload: {e}", path.display())))?;
            let p = f.metadata.path();
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if !(p.starts_with("/boot") || p.starts_with("boot") || p.starts_with("./boot")) || !name.starts_with("vmlinuz-") {
                continue;
            }
            let want = f.metadata.digest().map(|d| (d.algorithm(), d.as_hex().to_ascii_lowercase()));
            let content = f.into_content().unwrap_or_default();
            match want {
                Some((rpm::DigestAlgorithm::Sha2_256, hex)) if hex == format!("{:x}", Sha256::digest(&content)) => {}
                Some((rpm::DigestAlgorithm::Sha2_256, hex)) => {
                    return Err(fail(
                        Kind::Unverified,
                        format!(
                            "{}: {} does not match the sha256 its header lists ({hex}): the payload was altered",
                            path.display(),
                            p.display()
                        ),
                    ))
                }
                other => {
                    return Err(fail(
                        Kind::Unverified,
                        format!(
                            "{}: the header lists no sha256 for {} ({other:?}), so the image cannot be tied to it",
                            path.display(),
                            p.display()
                        ),
                    ))
                }
            }
            out.write_all(&content)?;
            return Ok(name.trim_start_matches("vmlinuz-").to_string());
        }
        Err(fail(Kind::KernelUnavailable, format!("{}: no boot/vmlinuz-* in the package", path.display())))
    }
}

const LEAD_LEN: usize = 96;
const LEAD_MAGIC: [u8; 4] = [0xed, 0xab, 0xee, 0xdb];
const HEADER_MAGIC: [u8; 3] = [0x8e, 0xad, 0xe8];

/// The two headers' sizes checked against the file before the `rpm` crate
/// sees them: it sizes its buffers from their counts unchecked (a bit
/// flipped in a count overflowed its u32 arithmetic and panicked, found by
/// the property test; in a release build it would allocate up to 4 GiB),
/// slices its data store at each entry's offset unchecked (an offset past
/// the store panicked, found by the fuzzer: rpm 0.30.2, headers/header.rs:111)
/// and reserves room for each entry's count of items unchecked (a string
/// array claiming 2^31 items asked for 37 GB and aborted, found by the
/// fuzzer: header.rs:379). The checks are here, not in a fork of the crate,
/// because they are a few lines of the format's own layout.
fn check_headers(bytes: &[u8]) -> std::result::Result<(), String> {
    if bytes.len() < LEAD_LEN || bytes[..4] != LEAD_MAGIC {
        return Err("no RPM lead".into());
    }
    let header_len = |at: usize| -> std::result::Result<usize, String> {
        let h = bytes.get(at..at + 16).ok_or(format!("truncated inside the header at byte {at}"))?;
        if h[..3] != HEADER_MAGIC {
            return Err(format!("no header magic at byte {at}"));
        }
        let n = u32::from_be_bytes([h[8], h[9], h[10], h[11]]) as usize;
        let size = u32::from_be_bytes([h[12], h[13], h[14], h[15]]) as usize;
        let len = n
            .checked_mul(16)
            .and_then(|i| i.checked_add(16 + size))
            .filter(|len| at.checked_add(*len).is_some_and(|end| end <= bytes.len()))
            .ok_or(format!(
                "the header at byte {at} claims {n} entries and {size} bytes, past the end of the file ({} bytes)",
                bytes.len()
            ))?;
        // Each index entry: tag, type, offset into the data store, count of
        // items, each of which takes at least its type's size in the store.
        for (i, e) in bytes[at + 16..at + 16 + n * 16].chunks_exact(16).enumerate() {
            let word = |k: usize| u32::from_be_bytes([e[k], e[k + 1], e[k + 2], e[k + 3]]) as usize;
            let (kind, offset, count) = (word(4), word(8), word(12));
            let item = match kind {
                0 => 0,
                3 => 2,
                4 => 4,
                5 => 8,
                _ => 1,
            };
            if offset > size || count.saturating_mul(item) > size - offset {
                return Err(format!(
                    "entry {i} of the header at byte {at} claims {count} items at byte {offset} of a {size}-byte data store"
                ));
            }
        }
        Ok(len)
    };
    let main_at = LEAD_LEN + header_len(LEAD_LEN)?.div_ceil(8) * 8;
    header_len(main_at).map(drop)
}

/// [`Rpm::extract_vmlinuz`] of the package at `path`.
pub fn extract_vmlinuz(path: &Path, out: &mut impl Write) -> Result<String> {
    Rpm::open(path)?.extract_vmlinuz(out)
}

/// A kernel package holding `files` (path, bytes), signed with
/// `secret_key` if given: the fixture that tests serve in place of a
/// CentOS kernel package.
#[cfg(any(test, feature = "fixtures"))]
pub fn fixture(files: &[(&str, &[u8])], secret_key: Option<&str>) -> Result<Vec<u8>> {
    let mut b = rpm::PackageBuilder::new("kernel", "3.10.0", "GPLv2", "x86_64", "repro test fixture");
    // CentOS 7's format: v4 headers, an xz payload.
    b.using_config(rpm::BuildConfig::v4().compression(rpm::CompressionType::Xz));
    for (path, data) in files {
        b.with_file_contents(data.to_vec(), rpm::FileOptions::new(format!("/{}", path.trim_start_matches("./"))))?;
    }
    let pkg = match secret_key {
        Some(k) => b.build_and_sign(rpm::signature::pgp::Signer::from_asc(k)?)?,
        None => b.build()?,
    };
    let mut bytes = Vec::new();
    pkg.write(&mut bytes)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vmlinuz_is_extracted_from_an_xz_payload() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("kernel.rpm");
        let rpm = fixture(&[("./boot/config-3.10.0-514.el7.x86_64", b"cfg"), ("./boot/vmlinuz-3.10.0-514.el7.x86_64", b"bzImage")], None);
        std::fs::write(&p, rpm.unwrap()).unwrap();
        let mut out = Vec::new();
        assert_eq!(extract_vmlinuz(&p, &mut out).unwrap(), "3.10.0-514.el7.x86_64");
        assert_eq!(out, b"bzImage");
        assert_eq!(Rpm::open(&p).unwrap().version(), "3.10.0-1");
    }

    #[test]
    fn rpms_without_a_kernel_or_that_are_not_rpms_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.rpm");
        std::fs::write(&p, fixture(&[("./usr/bin/true", b"x")], None).unwrap()).unwrap();
        assert!(format!("{:#}", extract_vmlinuz(&p, &mut Vec::new()).unwrap_err()).contains("no boot/vmlinuz"));
        std::fs::write(&p, b"not an rpm at all").unwrap();
        let e = extract_vmlinuz(&p, &mut Vec::new()).unwrap_err();
        assert_eq!(crate::error::kind_of(&e), Some(Kind::KernelUnavailable));
    }

    #[test]
    fn an_unsigned_package_does_not_verify_with_centos_key() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("k.rpm");
        std::fs::write(&p, fixture(&[("./boot/vmlinuz-3.10.0-1.el7.x86_64", b"bz")], None).unwrap()).unwrap();
        let key = crate::kernel::verify::KEYS.iter().find(|k| k.name == "centos-7").unwrap();
        let e = Rpm::open(&p).unwrap().verify_signature(key.armored).unwrap_err();
        assert_eq!(crate::error::kind_of(&e), Some(Kind::Unverified), "{e:#}");
    }
}
