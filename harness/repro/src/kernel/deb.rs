//! Pulling the kernel image out of a Debian package: a .deb is an `ar`
//! archive whose `data.tar.xz` holds `./boot/vmlinuz-RELEASE`.

use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result};

use crate::error::{fail, Kind};

/// Call `f` with the decompressed data member of the .deb at `deb`:
/// `data.tar.xz` (Debian), `data.tar.zst` (Ubuntu since 21.10) or an
/// uncompressed `data.tar`.
fn with_data_tar<T>(deb: &Path, f: impl FnOnce(&mut dyn Read) -> Result<T>) -> Result<T> {
    let file = std::fs::File::open(deb).with_context(|| format!("opening {}", deb.display()))?;
    let mut ar = ar::Archive::new(std::io::BufReader::new(file));
    while let Some(member) = ar.next_entry() {
        let member = member.with_context(|| format!("reading {} as a .deb (ar archive)", deb.display()))?;
        let name = String::from_utf8_lossy(member.header().identifier()).into_owned();
        let member = std::io::BufReader::with_capacity(1 << 20, member);
        match name.as_str() {
            "data.tar.xz" => return f(&mut lzma_rust2::XzReader::new(member, true)),
            "data.tar.zst" => {
                let mut zst = ruzstd::decoding::StreamingDecoder::new(member)
                    .map_err(|e| anyhow::anyhow!("{}: data.tar.zst is not zstd: {e}", deb.display()))?;
                return f(&mut zst);
            }
            // Older packages (Debian 11's linux-source-5.10) use gzip.
            "data.tar.gz" => return f(&mut flate2::read::GzDecoder::new(member)),
            "data.tar" => return f(&mut { member }),
            n if n.starts_with("data.tar") => {
                return Err(fail(
                    Kind::KernelUnavailable,
                    format!("{}: member {n} is compressed in a way repro does not read (xz, zstd, gzip or none)", deb.display()),
                ))
            }
            _ => {}
        }
    }
    Err(fail(Kind::KernelUnavailable, format!("{}: no data.tar member: not a Debian package repro can read", deb.display())))
}

/// Copy the first `boot/vmlinuz-*` of `deb` to `out`; returns its release.
pub(crate) fn extract_vmlinuz(deb: &Path, out: &mut impl Write) -> Result<String> {
    with_data_tar(deb, |data| {
        let mut tar = tar::Archive::new(data);
        for entry in tar.entries()? {
            let mut entry = entry?;
            let path = entry.path()?.to_string_lossy().into_owned();
            if let Some(release) = vmlinuz_release(&path) {
                std::io::copy(&mut entry, out)?;
                return Ok(release);
            }
        }
        Err(fail(Kind::KernelUnavailable, format!("{}: no boot/vmlinuz-* nor usr/lib/modules/*/vmlinuz in the package", deb.display())))
    })
}

/// Kernel modules by name (`veth` finds `.../veth.ko`, `.ko.xz`) under
/// `lib/modules/` or `usr/lib/modules/` in a package, decompressed.
pub(crate) fn extract_modules(deb: &Path, names: &[String]) -> Result<Vec<(String, Vec<u8>)>> {
    with_data_tar(deb, |data| {
        let mut found = Vec::new();
        let mut tar = tar::Archive::new(data);
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
        Ok(found)
    })
}

/// The kernel release of a kernel image's path inside a package:
/// `boot/vmlinuz-R` (Debian up to trixie) or `usr/lib/modules/R/vmlinuz`
/// (sid's linux-binary-* packages since 7.x).
pub(crate) fn vmlinuz_release(path: &str) -> Option<String> {
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
pub(crate) fn extract_source_tarball(deb: &Path, dest: &Path) -> Result<()> {
    with_data_tar(deb, |data| {
        let mut outer = tar::Archive::new(data);
        for entry in outer.entries()? {
            let entry = entry?;
            let path = entry.path()?.to_string_lossy().into_owned();
            if path.contains("usr/src/linux-source") && path.ends_with(".tar.xz") {
                let inner = lzma_rust2::XzReader::new(std::io::BufReader::with_capacity(1 << 20, entry), true);
                return unpack_stripped(inner, dest, EscapingLinks::Refuse);
            }
        }
        Err(fail(
            Kind::KernelUnavailable,
            format!("{}: no usr/src/linux-source-*.tar.xz inside: not a linux-source package", deb.display()),
        ))
    })
}

/// What to do with a symbolic link whose target would leave the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EscapingLinks {
    /// Refuse the whole archive (source trees: nothing in them needs one).
    Refuse,
    /// Leave such links out (binary packages link into the system, e.g.
    /// libgcc_s.so -> /lib/..., which a kernel build never follows).
    Skip,
}

/// Unpack a tar stream into `dest` without its top directory
/// (`linux-4.9.119/Makefile` lands at `dest/Makefile`), never writing
/// outside `dest`: entry paths must be plain relative paths, no entry is
/// written through a symlink, symlinks must resolve inside the tree (see
/// [`link_stays_inside`]), hard links must name an earlier entry of the
/// tree, and device nodes and FIFOs are refused.
pub fn unpack_stripped(reader: impl Read, dest: &Path, links: EscapingLinks) -> Result<()> {
    unpack_tar(reader, dest, links, 1)
}

/// [`unpack_stripped`] dropping `strip` leading names (0 for packages,
/// whose paths are `./usr/...`).
fn unpack_tar(reader: impl Read, dest: &Path, links: EscapingLinks, strip: usize) -> Result<()> {
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_mtime(true);
    std::fs::create_dir_all(dest)?;
    for e in archive.entries()? {
        let mut e = e?;
        let p = e.path()?.into_owned();
        let rel = inside(&p, strip)?;
        if rel.as_os_str().is_empty() {
            continue;
        }
        make_parents(dest, &rel, &p)?;
        unpack_entry(&mut e, dest, &rel, &p, links, strip)?;
    }
    Ok(())
}

fn refused(p: &Path, why: String) -> anyhow::Error {
    fail(Kind::Unverified, format!("refusing to unpack {}: {why}", p.display()))
}

/// An archive path as a plain relative path with `strip` leading names
/// dropped; anything else names a place outside the tree. Judged before the
/// top directory is dropped: `/a/b` must not become `a/b` by losing its
/// root as if it were the top directory.
fn inside(p: &Path, strip: usize) -> Result<PathBuf> {
    if p.components().any(|c| !matches!(c, Component::Normal(_) | Component::CurDir)) {
        return Err(refused(p, "it names a place outside the tree".into()));
    }
    let rel: PathBuf = p.components().skip_while(|c| matches!(c, Component::CurDir)).skip(strip).collect();
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(refused(p, "it names a place outside the tree".into()));
    }
    Ok(rel)
}

/// Create `rel`'s directories under `dest`. Tarballs need not list a file's
/// directories before it; none of them may be a link, or the write would
/// land where it points.
fn make_parents(dest: &Path, rel: &Path, p: &Path) -> Result<()> {
    let mut dir = dest.to_path_buf();
    for c in rel.parent().into_iter().flat_map(|p| p.components()) {
        dir.push(c);
        match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(refused(p, format!("{} is a symbolic link in the archive", dir.strip_prefix(dest).unwrap_or(&dir).display())))
            }
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(refused(p, format!("{} is not a directory", dir.display()))),
            Err(_) => std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?,
        }
    }
    Ok(())
}

/// Write one entry at `dest/rel` by its kind: links checked to stay in the
/// tree, files never written through an earlier link, devices refused.
fn unpack_entry<R: Read>(e: &mut tar::Entry<R>, dest: &Path, rel: &Path, p: &Path, links: EscapingLinks, strip: usize) -> Result<()> {
    use tar::EntryType;
    let target = dest.join(rel);
    match e.header().entry_type() {
        EntryType::Symlink => {
            let to = e.link_name()?.context("a symlink entry without a target")?.into_owned();
            if !link_stays_inside(rel, &to) {
                match links {
                    EscapingLinks::Skip => return Ok(()),
                    EscapingLinks::Refuse => return Err(refused(p, format!("it is a link to {}, outside the tree", to.display()))),
                }
            }
            let _ = std::fs::remove_file(&target);
            std::os::unix::fs::symlink(&to, &target).with_context(|| format!("linking {}", rel.display()))?;
        }
        EntryType::Link => {
            let to = inside(&e.link_name()?.context("a hard link entry without a target")?, strip)?;
            let source = dest.join(&to);
            // Refusals of the archive, like every other (exit 3), not internal errors.
            let meta = std::fs::symlink_metadata(&source)
                .map_err(|_| refused(p, format!("its hard link target {} is not in the tree", to.display())))?;
            if !meta.is_file() {
                return Err(refused(p, format!("hard link to {}, which is not a plain file", to.display())));
            }
            let _ = std::fs::remove_file(&target);
            std::fs::hard_link(&source, &target).with_context(|| format!("linking {}", rel.display()))?;
        }
        EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse | EntryType::Directory => {
            if let Ok(m) = std::fs::symlink_metadata(&target) {
                // An earlier link of the same name is replaced, never followed.
                if m.file_type().is_symlink() {
                    std::fs::remove_file(&target)?;
                }
            }
            e.unpack(&target).with_context(|| format!("unpacking {}", rel.display()))?;
        }
        EntryType::XGlobalHeader | EntryType::XHeader | EntryType::GNULongName | EntryType::GNULongLink => {}
        other => return Err(refused(p, format!("a {other:?} entry has no place in a source tree or package"))),
    }
    Ok(())
}

/// Whether a symlink at `at` (relative to the tree) pointing to `to` stays
/// inside the tree. Only relative targets of the form `../../a/b` qualify:
/// leading `..`s that do not climb above the top, then plain names. A `..`
/// after a name is refused, since the name may itself be a link; with every
/// link held to this rule, no chain of them can leave the tree.
pub(crate) fn link_stays_inside(at: &Path, to: &Path) -> bool {
    use std::path::Component;
    let mut depth = at.parent().map_or(0, |p| p.components().count());
    let mut names_seen = false;
    for c in to.components() {
        match c {
            Component::ParentDir if !names_seen && depth > 0 => depth -= 1,
            Component::Normal(_) => names_seen = true,
            Component::CurDir => {}
            _ => return false,
        }
    }
    true
}

/// Unpack the whole data.tar.xz of a binary package into `dest` (package
/// paths like `./usr/bin/gcc-10` land at `dest/usr/bin/gcc-10`).
pub(crate) fn extract_package(deb: &Path, dest: &Path) -> Result<()> {
    with_data_tar(deb, |data| unpack_tar(data, dest, EscapingLinks::Skip, 0)).with_context(|| format!("unpacking {}", deb.display()))
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
        fake_deb_as(dir, payload, "data.tar.xz")
    }

    fn fake_deb_as(dir: &Path, payload: &[u8], member: &str) -> std::path::PathBuf {
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
        if member.ends_with(".gz") {
            let mut w = flate2::write::GzEncoder::new(&mut xz, flate2::Compression::fast());
            w.write_all(&tar_bytes).unwrap();
            w.finish().unwrap();
        } else {
            let mut w = lzma_rust2::XzWriter::new(&mut xz, lzma_rust2::XzOptions::default()).unwrap();
            w.write_all(&tar_bytes).unwrap();
            w.finish().unwrap();
        }
        let path = dir.join("linux-image-test.deb");
        let mut ar = ar::Builder::new(std::fs::File::create(&path).unwrap());
        for (name, data) in [("debian-binary", &b"2.0\n"[..]), ("control.tar.xz", &b""[..]), (member, &xz[..])] {
            ar.append(&ar::Header::new(name.as_bytes().to_vec(), data.len() as u64), data).unwrap();
        }
        path
    }

    #[test]
    fn vmlinuz_is_extracted_from_ubuntus_data_tar_zst() {
        let mut tar_bytes = Vec::new();
        {
            let mut b = tar::Builder::new(&mut tar_bytes);
            let mut h = tar::Header::new_gnu();
            h.set_size(5);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, "./boot/vmlinuz-6.8.0-49-generic", &b"image"[..]).unwrap();
            b.finish().unwrap();
        }
        let zst = ruzstd::encoding::compress_to_vec(&tar_bytes[..], ruzstd::encoding::CompressionLevel::Fastest);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("linux-image-6.8.0-49-generic.deb");
        let mut ar = ar::Builder::new(std::fs::File::create(&path).unwrap());
        for (name, data) in [("debian-binary", &b"2.0\n"[..]), ("control.tar.zst", &b""[..]), ("data.tar.zst", &zst[..])] {
            ar.append(&ar::Header::new(name.as_bytes().to_vec(), data.len() as u64), data).unwrap();
        }
        drop(ar);
        let mut out = Vec::new();
        assert_eq!(extract_vmlinuz(&path, &mut out).unwrap(), "6.8.0-49-generic");
        assert_eq!(out, b"image");
    }

    #[test]
    fn an_older_package_with_data_tar_gz_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let deb = fake_deb_as(dir.path(), b"bzImage-bytes", "data.tar.gz");
        let mut out = Vec::new();
        assert_eq!(extract_vmlinuz(&deb, &mut out).unwrap(), "6.1.0-9-cloud-amd64");
        assert_eq!(out, b"bzImage-bytes");
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

    /// A tar stream of (path, kind) entries: a file's data, or a link target.
    fn tar_of(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(0o644);
            if kind.is_file() {
                h.set_size(data.len() as u64);
                h.set_cksum();
                b.append_data(&mut h, path, data.as_bytes()).unwrap();
            } else {
                h.set_size(0);
                b.append_link(&mut h, path, data).unwrap();
            }
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn a_tarball_cannot_write_through_its_own_symlink_out_of_the_tree() {
        use tar::EntryType::{Regular, Symlink};
        let outside = tempfile::tempdir().unwrap();
        let dest = tempfile::tempdir().unwrap();
        let evil = tar_of(&[("top/evil", Symlink, outside.path().to_str().unwrap()), ("top/evil/pwned", Regular, "owned")]);
        let e = format!("{:#}", unpack_stripped(&evil[..], &dest.path().join("t"), EscapingLinks::Refuse).unwrap_err());
        assert!(e.contains("outside the tree"), "{e}");
        assert!(!outside.path().join("pwned").exists());
        // Even where escaping links are skipped, nothing lands outside.
        let _ = unpack_stripped(&evil[..], &dest.path().join("u"), EscapingLinks::Skip);
        assert!(!outside.path().join("pwned").exists());
        // A relative link that climbs out, then a write through it.
        let climb = tar_of(&[("top/a/up", Symlink, "../../.."), ("top/a/up/pwned", Regular, "x")]);
        assert!(unpack_stripped(&climb[..], &dest.path().join("v"), EscapingLinks::Refuse).is_err());
        assert!(!dest.path().join("pwned").exists());
    }

    #[test]
    fn an_absolute_member_is_refused_not_unpacked_without_its_root() {
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..4].copy_from_slice(b"/a/b");
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(1);
        h.set_cksum();
        let mut b = tar::Builder::new(Vec::new());
        b.append(&h, &b"x"[..]).unwrap();
        let t = b.into_inner().unwrap();
        let dest = tempfile::tempdir().unwrap();
        let e = unpack_stripped(&t[..], &dest.path().join("t"), EscapingLinks::Refuse).unwrap_err();
        assert_eq!(crate::error::kind_of(&e), Some(Kind::Unverified), "{e:#}");
        assert!(format!("{e:#}").contains("outside the tree"), "{e:#}");
        assert!(!dest.path().join("t/a/b").exists() && !dest.path().join("t/b").exists());
    }

    #[test]
    fn hard_links_must_name_a_file_already_in_the_tree() {
        use tar::EntryType::{Link, Regular};
        let dest = tempfile::tempdir().unwrap();
        let out = tar_of(&[("top/h", Link, "top/missing")]);
        let e = unpack_stripped(&out[..], &dest.path().join("a"), EscapingLinks::Refuse).unwrap_err();
        assert_eq!(crate::error::kind_of(&e), Some(Kind::Unverified), "a refusal of the archive, exit 3: {e:#}");
        let out = tar_of(&[("top/d/x", Regular, "x"), ("top/h", Link, "top/d")]);
        let e = unpack_stripped(&out[..], &dest.path().join("c"), EscapingLinks::Refuse).unwrap_err();
        assert_eq!(crate::error::kind_of(&e), Some(Kind::Unverified), "{e:#}");
        let ok = tar_of(&[("top/f", Regular, "data"), ("top/h", Link, "top/f")]);
        unpack_stripped(&ok[..], &dest.path().join("b"), EscapingLinks::Refuse).unwrap();
        assert_eq!(std::fs::read_to_string(dest.path().join("b/h")).unwrap(), "data");
    }

    #[test]
    fn links_inside_the_tree_are_kept() {
        use tar::EntryType::{Regular, Symlink};
        let dest = tempfile::tempdir().unwrap();
        let t = tar_of(&[("top/include/a.h", Regular, "a"), ("top/arch/x/b.h", Symlink, "../../include/a.h")]);
        unpack_stripped(&t[..], dest.path(), EscapingLinks::Refuse).unwrap();
        assert_eq!(std::fs::read_to_string(dest.path().join("arch/x/b.h")).unwrap(), "a");
    }

    #[test]
    fn link_targets_are_judged_without_touching_the_disk() {
        let inside = |at: &str, to: &str| link_stays_inside(Path::new(at), Path::new(to));
        assert!(inside("usr/bin/cc", "gcc-10"));
        assert!(inside("a/b/c", "../../x/y"));
        assert!(!inside("a/b", "../../x"));
        assert!(!inside("a", "/etc"));
        assert!(!inside("a/b/c", "x/../../../y"));
    }

    #[test]
    fn a_non_deb_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.deb");
        std::fs::write(&p, b"not an ar archive").unwrap();
        assert!(extract_vmlinuz(&p, &mut Vec::new()).is_err());
    }
}
