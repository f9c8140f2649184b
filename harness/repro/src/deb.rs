//! Pulling the kernel image out of a Debian package: a .deb is an `ar`
//! archive whose `data.tar.xz` holds `./boot/vmlinuz-RELEASE`.

use std::io::{Read, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};

/// Copy the first `boot/vmlinuz-*` of `deb` to `out`; returns its release.
pub fn extract_vmlinuz(deb: &Path, out: &mut impl Write) -> Result<String> {
    let file = std::fs::File::open(deb).with_context(|| format!("opening {}", deb.display()))?;
    let mut ar = ar::Archive::new(std::io::BufReader::new(file));
    while let Some(member) = ar.next_entry() {
        let member = member.with_context(|| format!("reading {} as a .deb (ar archive)", deb.display()))?;
        let name = String::from_utf8_lossy(member.header().identifier()).into_owned();
        if !name.starts_with("data.tar") {
            continue;
        }
        let data: Box<dyn Read> = match name.as_str() {
            "data.tar.xz" => Box::new(lzma_rust2::XzReader::new(member, true)),
            "data.tar" => Box::new(member),
            other => bail!("{}: member {other} is compressed in a way repro does not read (xz or none)", deb.display()),
        };
        let mut tar = tar::Archive::new(data);
        for entry in tar.entries()? {
            let mut entry = entry?;
            let path = entry.path()?.to_string_lossy().into_owned();
            if let Some(release) = vmlinuz_release(&path) {
                std::io::copy(&mut entry, out)?;
                return Ok(release);
            }
        }
        bail!("{}: no boot/vmlinuz-* nor usr/lib/modules/*/vmlinuz in {name}", deb.display());
    }
    bail!("{}: no data.tar member: not a Debian package", deb.display())
}

/// Kernel modules by name (`veth` finds `.../veth.ko`, `.ko.xz`) under
/// `lib/modules/` or `usr/lib/modules/` in a package, decompressed.
pub fn extract_modules(deb: &Path, names: &[String]) -> Result<Vec<(String, Vec<u8>)>> {
    let file = std::fs::File::open(deb).with_context(|| format!("opening {}", deb.display()))?;
    let mut ar = ar::Archive::new(std::io::BufReader::new(file));
    let mut found = Vec::new();
    while let Some(member) = ar.next_entry() {
        let member = member.with_context(|| format!("reading {} as a .deb", deb.display()))?;
        if member.header().identifier() != b"data.tar.xz" {
            continue;
        }
        let mut tar = tar::Archive::new(lzma_rust2::XzReader::new(member, true));
        for entry in tar.entries()? {
            let mut entry = entry?;
            let path = entry.path()?.to_string_lossy().into_owned();
            let p = path.trim_start_matches("./");
            if !(p.starts_with("lib/modules/") || p.starts_with("usr/lib/modules/")) {
                continue;
            }
            let file = p.rsplit('/').next().unwrap_or("");
            let Some(name) = names.iter().find(|n| file == format!("{n}.ko") || file == format!("{n}.ko.xz")) else { continue };
            let mut bytes = Vec::new();
            if file.ends_with(".xz") {
                std::io::copy(&mut lzma_rust2::XzReader::new(&mut entry, true), &mut bytes)?;
            } else {
                std::io::copy(&mut entry, &mut bytes)?;
            }
            found.push((name.clone(), bytes));
        }
    }
    Ok(found)
}

/// The kernel release of a kernel image's path inside a package:
/// `boot/vmlinuz-R` (Debian up to trixie) or `usr/lib/modules/R/vmlinuz`
/// (sid's linux-binary-* packages since 7.x).
pub fn vmlinuz_release(path: &str) -> Option<String> {
    let p = path.trim_start_matches("./");
    if let Some(r) = p.strip_prefix("boot/vmlinuz-") {
        return (!r.is_empty() && !r.contains('/')).then(|| r.to_string());
    }
    let r = p.strip_prefix("usr/lib/modules/")?.strip_suffix("/vmlinuz")?;
    (!r.is_empty() && !r.contains('/')).then(|| r.to_string())
}

/// Unpack the kernel source tarball that a linux-source-X package ships
/// (`usr/src/linux-source-X.tar.xz` inside its data.tar.xz) into `dest`,
/// without its top directory. Streams both layers: no temporary tarball.
pub fn extract_source_tarball(deb: &Path, dest: &Path) -> Result<()> {
    let file = std::fs::File::open(deb).with_context(|| format!("opening {}", deb.display()))?;
    let mut ar = ar::Archive::new(std::io::BufReader::new(file));
    while let Some(member) = ar.next_entry() {
        let member = member.with_context(|| format!("reading {} as a .deb", deb.display()))?;
        if member.header().identifier() != b"data.tar.xz" {
            continue;
        }
        let mut outer = tar::Archive::new(lzma_rust2::XzReader::new(member, true));
        for entry in outer.entries()? {
            let entry = entry?;
            let path = entry.path()?.to_string_lossy().into_owned();
            if !(path.contains("usr/src/linux-source") && path.ends_with(".tar.xz")) {
                continue;
            }
            unpack_stripped(lzma_rust2::XzReader::new(std::io::BufReader::with_capacity(1 << 20, entry), true), dest)?;
            return Ok(());
        }
        bail!("{}: no usr/src/linux-source-*.tar.xz inside", deb.display());
    }
    bail!("{}: no data.tar.xz member: not a linux-source package", deb.display())
}

/// Unpack a tar stream into `dest` without its top directory
/// (`linux-4.9.119/Makefile` lands at `dest/Makefile`).
pub fn unpack_stripped(reader: impl Read, dest: &Path) -> Result<()> {
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_mtime(true);
    std::fs::create_dir_all(dest)?;
    for e in archive.entries()? {
        let mut e = e?;
        let p = e.path()?.into_owned();
        let rel: std::path::PathBuf = p.components().skip(1).collect();
        if rel.as_os_str().is_empty() {
            continue;
        }
        if rel.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
            bail!("refusing to unpack {} outside the tree", p.display());
        }
        let target = dest.join(&rel);
        // Tarballs need not list a file's directories before it.
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        e.unpack(&target).with_context(|| format!("unpacking {}", rel.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_paths_of_old_and_new_debian_layouts() {
        assert_eq!(vmlinuz_release("./boot/vmlinuz-6.1.0-56-cloud-amd64").as_deref(), Some("6.1.0-56-cloud-amd64"));
        assert_eq!(vmlinuz_release("./usr/lib/modules/7.2.13+deb14-cloud-amd64/vmlinuz").as_deref(), Some("7.2.13+deb14-cloud-amd64"));
        assert_eq!(vmlinuz_release("./boot/config-6.1.0-56-cloud-amd64"), None);
        assert_eq!(vmlinuz_release("./usr/lib/modules/7.2.13/kernel/vmlinuz"), None);
    }

    /// Build a small .deb the way dpkg-deb lays it out.
    fn fake_deb(dir: &Path, payload: &[u8]) -> std::path::PathBuf {
        let mut tar_bytes = Vec::new();
        {
            let mut b = tar::Builder::new(&mut tar_bytes);
            for (path, data) in [("./boot/config-6.1.0-9-cloud-amd64", &b"CONFIG_X=y"[..]), ("./boot/vmlinuz-6.1.0-9-cloud-amd64", payload)]
            {
                let mut h = tar::Header::new_gnu();
                h.set_size(data.len() as u64);
                h.set_mode(0o644);
                h.set_cksum();
                b.append_data(&mut h, path, data).unwrap();
            }
            b.finish().unwrap();
        }
        let mut xz = Vec::new();
        {
            let mut w = lzma_rust2::XzWriter::new(&mut xz, lzma_rust2::XzOptions::default()).unwrap();
            w.write_all(&tar_bytes).unwrap();
            w.finish().unwrap();
        }
        let path = dir.join("linux-image-test.deb");
        let mut ar = ar::Builder::new(std::fs::File::create(&path).unwrap());
        for (name, data) in [("debian-binary", &b"2.0\n"[..]), ("control.tar.xz", &b""[..]), ("data.tar.xz", &xz[..])] {
            ar.append(&ar::Header::new(name.as_bytes().to_vec(), data.len() as u64), data).unwrap();
        }
        path
    }

    #[test]
    fn vmlinuz_is_extracted_from_data_tar_xz() {
        let dir = tempfile::tempdir().unwrap();
        let deb = fake_deb(dir.path(), b"bzImage-bytes");
        let mut out = Vec::new();
        let release = extract_vmlinuz(&deb, &mut out).unwrap();
        assert_eq!(release, "6.1.0-9-cloud-amd64");
        assert_eq!(out, b"bzImage-bytes");
    }

    #[test]
    fn a_non_deb_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.deb");
        std::fs::write(&p, b"not an ar archive").unwrap();
        assert!(extract_vmlinuz(&p, &mut Vec::new()).is_err());
    }
}
