//! What can be checked about a bzImage without booting it, for a guest
//! that printed nothing: the boot header (protocol, alignment, load
//! address) and, inside the compressed payload, how vmlinux was linked.
//!
//! The header fields are read by offset as Documentation/x86/boot.rst
//! lists them; the payload's ELF program headers with the `object` crate.

use std::io::Read;
use std::path::Path;

/// The boot header fields a silent boot is checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header {
    /// Boot protocol, e.g. 0x020d.
    pub protocol: u16,
    pub relocatable: bool,
    /// kernel_alignment (2.05+).
    pub alignment: u32,
    /// pref_address (2.10+): where the kernel wants to run.
    pub pref_address: Option<u64>,
    /// The compressed vmlinux (2.08+): offset after the setup sectors, length.
    pub payload: Option<(u64, u64)>,
}

/// The kernel release a bzImage states in its setup code (the header's
/// kernel_version field, boot protocol 2.00+, offset from 0x200), e.g.
/// `6.1.0-28-cloud-amd64 (debian-kernel@lists.debian.org) #1 SMP ...`.
pub(crate) fn release(image: &Path) -> Option<String> {
    // The setup code, where the string lives, is within its first 64 KiB.
    let mut bytes = Vec::new();
    std::fs::File::open(image).ok()?.take(64 << 10).read_to_end(&mut bytes).ok()?;
    release_in(&bytes)
}

fn release_in(bytes: &[u8]) -> Option<String> {
    if bytes.get(0x202..0x206) != Some(b"HdrS") {
        return None;
    }
    let offset = usize::from(u16::from_le_bytes(bytes.get(0x20e..0x210)?.try_into().ok()?));
    if offset == 0 {
        return None;
    }
    let text = bytes.get(offset + 0x200..)?;
    let end = text.iter().take(256).position(|b| *b == 0)?;
    std::str::from_utf8(&text[..end]).ok().map(str::to_string)
}

/// The largest payload repro decompresses to look at (a real one is tens of MiB).
const MAX_PAYLOAD: u64 = 256 << 20;

impl Header {
    /// None if `bytes` is no bzImage (no "HdrS").
    pub(crate) fn parse(bytes: &[u8]) -> Option<Header> {
        let u16_at = |o: usize| bytes.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
        let u32_at = |o: usize| bytes.get(o..o + 4).map(|b| u32::from_le_bytes(b.try_into().unwrap()));
        let u64_at = |o: usize| bytes.get(o..o + 8).map(|b| u64::from_le_bytes(b.try_into().unwrap()));
        if bytes.get(0x202..0x206) != Some(b"HdrS") {
            return None;
        }
        let protocol = u16_at(0x206)?;
        let setup_sects = match *bytes.get(0x1f1)? {
            0 => 4,
            n => u64::from(n),
        };
        let payload =
            (protocol >= 0x208).then(|| Some(((setup_sects + 1) * 512 + u64::from(u32_at(0x248)?), u64::from(u32_at(0x24c)?)))).flatten();
        Some(Header {
            protocol,
            relocatable: protocol >= 0x205 && bytes.get(0x234).is_some_and(|b| *b != 0),
            alignment: if protocol >= 0x205 { u32_at(0x230).unwrap_or(0) } else { 0 },
            pref_address: if protocol >= 0x20a { u64_at(0x258) } else { None },
            payload,
        })
    }
}

/// The alignment of vmlinux's LOAD segments (the linker's max-page-size),
/// from a gzip payload; None where it cannot be told (another compression).
pub(crate) fn load_alignment(image: &[u8], header: &Header) -> Option<u64> {
    let (off, len) = header.payload?;
    let data = image.get(usize::try_from(off).ok()?..usize::try_from(off.checked_add(len)?).ok()?)?;
    if !data.starts_with(&[0x1f, 0x8b]) {
        return None;
    }
    let mut elf = Vec::new();
    flate2::read::GzDecoder::new(data).take(MAX_PAYLOAD).read_to_end(&mut elf).ok()?;
    use object::read::elf::{FileHeader, ProgramHeader};
    let hdr = object::elf::FileHeader64::<object::Endianness>::parse(elf.as_slice()).ok()?;
    let endian = hdr.endian().ok()?;
    hdr.program_headers(endian, elf.as_slice())
        .ok()?
        .iter()
        .filter(|p| p.p_type(endian) == object::elf::PT_LOAD)
        .map(|p| p.p_align(endian))
        .min()
}

/// What to say about a kernel that printed nothing on its console.
pub(crate) fn silent_boot_advice(image: &Path, cmdline: &str) -> String {
    let mut notes = Vec::new();
    let bytes = std::fs::File::open(image).and_then(|f| {
        let mut v = Vec::new();
        f.take(MAX_PAYLOAD).read_to_end(&mut v).map(|_| v)
    });
    match bytes.as_deref().ok().and_then(|b| Header::parse(b).map(|h| (b, h))) {
        None => notes.push(format!("{} has no readable x86 boot header", image.display())),
        Some((b, h)) => {
            notes.push(format!(
                "its boot header is protocol {}.{:02}, {}relocatable, aligned to {:#x}{}",
                h.protocol >> 8,
                h.protocol & 0xff,
                if h.relocatable { "" } else { "not " },
                h.alignment,
                h.pref_address.map(|a| format!(", preferring {a:#x}")).unwrap_or_default()
            ));
            match load_alignment(b, &h) {
                Some(a) if a < 0x20_0000 => notes.push(format!(
                    "its vmlinux was linked with {a:#x}-byte segment alignment: the kernel's layout wants 2 MiB, which trees before 4.16 \
                     (without the stable backport) do not ask the linker for, and binutils 2.31 and later no longer default to; \
                     `repro --src` adds -z max-page-size=0x200000 where the tree lacks it (fix max-page-size), or relink with it"
                )),
                Some(a) => notes.push(format!("its vmlinux segments are aligned to {a:#x}")),
                None => {}
            }
        }
    }
    if !cmdline.split_whitespace().any(|w| w.starts_with("earlyprintk")) {
        notes.push("to see how far it gets, run again with --append earlyprintk=serial,ttyS0,115200".into());
    }
    notes.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_release_is_read_from_the_setup_header() {
        let mut b = vec![0u8; 0x1000];
        b[0x202..0x206].copy_from_slice(b"HdrS");
        b[0x20e..0x210].copy_from_slice(&0x0300u16.to_le_bytes());
        let text = b"3.10.0-514.el7.x86_64 (mockbuild@x86-017) #1 SMP\0";
        b[0x500..0x500 + text.len()].copy_from_slice(text);
        assert_eq!(release_in(&b).as_deref(), Some("3.10.0-514.el7.x86_64 (mockbuild@x86-017) #1 SMP"));
        b[0x20e..0x210].copy_from_slice(&0u16.to_le_bytes());
        assert_eq!(release_in(&b), None, "no kernel_version field");
        b[0x202] = b'X';
        assert_eq!(release_in(&b), None, "no bzImage");
    }

    /// A bzImage-shaped file: a 2.13 header and a gzip payload holding a
    /// minimal ELF64 with one LOAD segment of the given alignment.
    fn image(align: u64) -> Vec<u8> {
        let mut elf = vec![0u8; 64 + 56];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2; // 64-bit
        elf[5] = 1; // little-endian
        elf[6] = 1;
        elf[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        elf[18..20].copy_from_slice(&62u16.to_le_bytes()); // x86-64
        elf[20..24].copy_from_slice(&1u32.to_le_bytes());
        elf[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
        elf[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
        elf[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
        elf[56..58].copy_from_slice(&1u16.to_le_bytes()); // e_phnum
        elf[64..68].copy_from_slice(&object::elf::PT_LOAD.to_le_bytes());
        elf[64 + 48..64 + 56].copy_from_slice(&align.to_le_bytes());
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &elf).unwrap();
        let payload = gz.finish().unwrap();
        let mut img = vec![0u8; 5 * 512];
        img[0x1f1] = 4;
        img[0x202..0x206].copy_from_slice(b"HdrS");
        img[0x206..0x208].copy_from_slice(&0x020du16.to_le_bytes());
        img[0x230..0x234].copy_from_slice(&0x20_0000u32.to_le_bytes());
        img[0x234] = 1;
        img[0x248..0x24c].copy_from_slice(&0u32.to_le_bytes());
        img[0x24c..0x250].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        img[0x258..0x260].copy_from_slice(&0x100_0000u64.to_le_bytes());
        img.extend_from_slice(&payload);
        img
    }

    #[test]
    fn the_header_and_the_payloads_segment_alignment_are_read() {
        let img = image(0x1000);
        let h = Header::parse(&img).unwrap();
        assert_eq!(h.protocol, 0x020d);
        assert!(h.relocatable);
        assert_eq!((h.alignment, h.pref_address), (0x20_0000, Some(0x100_0000)));
        assert_eq!(load_alignment(&img, &h), Some(0x1000));
        assert_eq!(load_alignment(&image(0x20_0000), &h), Some(0x20_0000));
        assert_eq!(Header::parse(b"not a kernel"), None);
    }

    #[test]
    fn a_silent_4k_aligned_kernel_is_told_about_max_page_size_and_earlyprintk() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("bzImage");
        std::fs::write(&p, image(0x1000)).unwrap();
        let a = silent_boot_advice(&p, "console=ttyS0");
        assert!(a.contains("max-page-size") && a.contains("0x1000-byte") && a.contains("earlyprintk"), "{a}");
        std::fs::write(&p, image(0x20_0000)).unwrap();
        let a = silent_boot_advice(&p, "console=ttyS0 earlyprintk=serial");
        assert!(!a.contains("max-page-size") && !a.contains("earlyprintk=serial,"), "{a}");
        // Truncated or hostile payload lengths say nothing, and do not panic.
        let mut bad = image(0x1000);
        bad[0x24c..0x250].copy_from_slice(&u32::MAX.to_le_bytes());
        let h = Header::parse(&bad).unwrap();
        assert_eq!(load_alignment(&bad, &h), None);
    }
}
