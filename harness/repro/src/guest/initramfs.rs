//! The initramfs repro boots: a newc cpio archive holding the static agent as
//! /init, the job, and /dev/console (the kernel opens it for init's stdio
//! before anything is mounted). No busybox, no files from the host's root.

use std::io::Write;

use anyhow::{Context, Result};
use cpio::newc::{trailer, Builder};

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Entry {
    Dir { path: String },
    File { path: String, mode: u32, data: Vec<u8> },
    CharDev { path: String, major: u32, minor: u32 },
}

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFCHR: u32 = 0o020000;

/// The entries of repro's initramfs, parents before children.
pub(crate) fn entries(agent: Vec<u8>, job_json: Vec<u8>) -> Vec<Entry> {
    let dir = |p: &str| Entry::Dir { path: p.into() };
    vec![
        dir("dev"),
        Entry::CharDev { path: "dev/console".into(), major: 5, minor: 1 },
        dir("proc"),
        dir("sys"),
        dir("repro"),
        Entry::File { path: "init".into(), mode: 0o755, data: agent },
        Entry::File { path: repro_proto::GUEST_JOB_PATH.trim_start_matches('/').into(), mode: 0o644, data: job_json },
    ]
}

/// Write `entries` as an uncompressed newc archive (every kernel with
/// BLK_DEV_INITRD reads it, whatever decompressors it was built with).
pub(crate) fn write<W: Write>(mut out: W, entries: &[Entry]) -> Result<W> {
    for (ino, e) in entries.iter().enumerate() {
        let ino = ino as u32 + 1;
        out = match e {
            Entry::Dir { path } => Builder::new(path).ino(ino).mode(S_IFDIR | 0o755).nlink(2).write(out, 0).finish(),
            Entry::CharDev { path, major, minor } => {
                Builder::new(path).ino(ino).mode(S_IFCHR | 0o600).nlink(1).rdev_major(*major).rdev_minor(*minor).write(out, 0).finish()
            }
            Entry::File { path, mode, data } => {
                let size = u32::try_from(data.len()).context("initramfs file over 4 GiB")?;
                let mut w = Builder::new(path).ino(ino).mode(S_IFREG | mode).nlink(1).write(out, size);
                w.write_all(data)?;
                w.finish()
            }
        }
        .with_context(|| format!("writing initramfs entry {e:?}"))?;
    }
    Ok(trailer(out)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cpio::NewcReader;

    fn read_back(bytes: &[u8]) -> Vec<(String, u32, u32, u32, Vec<u8>)> {
        let mut out = Vec::new();
        let mut rest = bytes;
        loop {
            let mut r = NewcReader::new(rest).unwrap();
            if r.entry().is_trailer() {
                break;
            }
            let (name, mode, maj, min) = (r.entry().name().to_string(), r.entry().mode(), r.entry().rdev_major(), r.entry().rdev_minor());
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut r, &mut data).unwrap();
            out.push((name, mode, maj, min, data));
            rest = r.finish().unwrap();
        }
        out
    }

    #[test]
    fn initramfs_has_executable_init_job_and_console() {
        let bytes = write(Vec::new(), &entries(b"\x7fELF-agent".to_vec(), b"{}".to_vec())).unwrap();
        let got = read_back(&bytes);
        let init = got.iter().find(|e| e.0 == "init").expect("init");
        assert_eq!(init.1, S_IFREG | 0o755);
        assert_eq!(init.4, b"\x7fELF-agent");
        let job = got.iter().find(|e| e.0 == "repro/job.json").expect("job");
        assert_eq!(job.4, b"{}");
        let console = got.iter().find(|e| e.0 == "dev/console").expect("console");
        assert_eq!((console.1, console.2, console.3), (S_IFCHR | 0o600, 5, 1));
        // Parents come before children, as the kernel's unpacker needs.
        let pos = |n: &str| got.iter().position(|e| e.0 == n).unwrap();
        assert!(pos("dev") < pos("dev/console") && pos("repro") < pos("repro/job.json"));
    }

    #[test]
    fn archive_is_newc_and_4_byte_aligned() {
        let bytes = write(Vec::new(), &entries(vec![1, 2, 3], b"{}".to_vec())).unwrap();
        assert!(bytes.starts_with(b"070701"));
        assert_eq!(bytes.len() % 4, 0);
    }
}
