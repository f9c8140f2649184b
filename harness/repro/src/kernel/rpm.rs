//! The kernel image out of an RPM: lead, signature header, header, then a
//! compressed cpio payload holding `./boot/vmlinuz-RELEASE`.
//!
//! Written here rather than taken from the `rpm` crate: all that is needed
//! is where the payload starts (two header sizes) and its compressor, which
//! is a few dozen lines against a crate built for writing and signing
//! packages.

use std::io::{BufReader, Read};
use std::path::Path;

use anyhow::{ensure, Context, Result};

use crate::error::{fail, Kind};

const LEAD_LEN: usize = 96;
const LEAD_MAGIC: [u8; 4] = [0xed, 0xab, 0xee, 0xdb];
const HEADER_MAGIC: [u8; 3] = [0x8e, 0xad, 0xe8];

/// Byte offset of the payload: after the lead, the signature header (padded
/// to 8 bytes) and the main header.
pub fn payload_offset(head: &[u8]) -> Result<usize> {
    ensure!(head.len() >= LEAD_LEN && head[..4] == LEAD_MAGIC, "not an RPM (no lead magic)");
    let header_len = |at: usize| -> Result<usize> {
        let h = head.get(at..at + 16).context("RPM truncated inside a header")?;
        ensure!(h[..3] == HEADER_MAGIC, "RPM header magic missing at byte {at}");
        let n = u32::from_be_bytes(h[8..12].try_into().unwrap()) as usize;
        let size = u32::from_be_bytes(h[12..16].try_into().unwrap()) as usize;
        // Sizes come from the file: no arithmetic on them may wrap, and
        // the header must lie inside the file.
        let len = n.checked_mul(16).and_then(|i| i.checked_add(16)).and_then(|l| l.checked_add(size));
        let len = len.filter(|l| at.checked_add(*l).is_some_and(|end| end <= head.len()));
        len.with_context(|| {
            format!("RPM header at byte {at} claims {n} entries and {size} bytes, past the end of the file ({} bytes)", head.len())
        })
    };
    let sig = header_len(LEAD_LEN)?;
    let main_at = LEAD_LEN + sig.div_ceil(8) * 8;
    Ok(main_at + header_len(main_at)?)
}

/// Copy the first `boot/vmlinuz-*` of the RPM at `path` to `out`; returns
/// the release it names.
pub fn extract_vmlinuz(path: &Path, out: &mut impl std::io::Write) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let at = payload_offset(&bytes).with_context(|| format!("{} is not a readable RPM", path.display()))?;
    let payload = bytes.get(at..).with_context(|| format!("{} ends before its payload", path.display()))?;
    let reader: Box<dyn Read + '_> = match payload {
        [0xfd, b'7', b'z', b'X', b'Z', 0, ..] => Box::new(lzma_rust2::XzReader::new(payload, true)),
        [0x1f, 0x8b, ..] => Box::new(flate2::read::GzDecoder::new(payload)),
        [b'0', b'7', b'0', b'7', b'0', b'1', ..] => Box::new(payload),
        _ => {
            return Err(fail(Kind::KernelUnavailable, format!("{}: payload compression not supported (xz, gzip or none)", path.display())))
        }
    };
    let mut rest: Box<dyn Read + '_> = Box::new(BufReader::new(reader));
    loop {
        let mut entry = cpio::NewcReader::new(rest).with_context(|| format!("{}: reading the cpio payload", path.display()))?;
        if entry.entry().is_trailer() {
            return Err(fail(Kind::KernelUnavailable, format!("{}: no boot/vmlinuz-* in the package", path.display())));
        }
        let name = entry.entry().name().to_string();
        let file = name.rsplit('/').next().unwrap_or("").to_string();
        if name.trim_start_matches("./").starts_with("boot/") && file.starts_with("vmlinuz-") {
            std::io::copy(&mut entry, out)?;
            return Ok(file.trim_start_matches("vmlinuz-").to_string());
        }
        rest = Box::new(entry.finish()?);
    }
}

/// A minimal, structurally valid RPM holding `files` (lead, a signature
/// header that needs padding, a main header, an xz cpio payload): the
/// fixture that tests serve in place of a CentOS kernel package.
#[doc(hidden)]
pub fn fixture(files: &[(&str, &[u8])]) -> Result<Vec<u8>> {
    use std::io::Write;
    fn header(entries: u32, data: &[u8]) -> Vec<u8> {
        let mut h = vec![0x8e, 0xad, 0xe8, 0x01, 0, 0, 0, 0];
        h.extend(entries.to_be_bytes());
        h.extend((data.len() as u32).to_be_bytes());
        h.extend(std::iter::repeat_n(0u8, entries as usize * 16));
        h.extend(data);
        h
    }
    let mut cpio_bytes = Vec::new();
    for (i, (name, data)) in files.iter().enumerate() {
        let mut w = cpio::NewcBuilder::new(name).ino(i as u32 + 1).mode(0o100644).nlink(1).write(cpio_bytes, data.len() as u32);
        w.write_all(data)?;
        cpio_bytes = w.finish()?;
    }
    cpio_bytes = cpio::newc::trailer(cpio_bytes)?;
    let mut xz = Vec::new();
    let mut w = lzma_rust2::XzWriter::new(&mut xz, lzma_rust2::XzOptions::default())?;
    w.write_all(&cpio_bytes)?;
    w.finish()?;
    let mut rpm = LEAD_MAGIC.to_vec();
    rpm.resize(LEAD_LEN, 0);
    let sig = header(2, b"sig-data-13");
    rpm.extend(&sig);
    rpm.resize(LEAD_LEN + sig.len().div_ceil(8) * 8, 0);
    rpm.extend(header(3, b"name\0version\0release\0"));
    rpm.extend(xz);
    Ok(rpm)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture_rpm(files: &[(&str, &[u8])]) -> Vec<u8> {
        fixture(files).unwrap()
    }

    #[test]
    fn vmlinuz_is_extracted_from_an_xz_payload() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("kernel.rpm");
        std::fs::write(
            &p,
            fixture_rpm(&[("./boot/config-3.10.0-514.el7.x86_64", b"cfg"), ("./boot/vmlinuz-3.10.0-514.el7.x86_64", b"bzImage")]),
        )
        .unwrap();
        let mut out = Vec::new();
        assert_eq!(extract_vmlinuz(&p, &mut out).unwrap(), "3.10.0-514.el7.x86_64");
        assert_eq!(out, b"bzImage");
    }

    #[test]
    fn rpms_without_a_kernel_or_with_bad_headers_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.rpm");
        std::fs::write(&p, fixture_rpm(&[("./usr/bin/true", b"x")])).unwrap();
        assert!(format!("{:#}", extract_vmlinuz(&p, &mut Vec::new()).unwrap_err()).contains("no boot/vmlinuz"));
        let mut broken = fixture_rpm(&[]);
        broken[LEAD_LEN] = 0;
        std::fs::write(&p, broken).unwrap();
        assert!(format!("{:#}", extract_vmlinuz(&p, &mut Vec::new()).unwrap_err()).contains("header magic"));
    }
}
