//! Files written so that a reader, a crash or a full disk only ever sees the
//! old version or the new one, and only where repro was told to write.
//!
//! The one rule for every output file repro is given or writes into a
//! directory it was given (summary.json, verdict.json, bisect.json, a
//! report's files, `--junit FILE`): it is created new, or replaces a
//! regular file. Anything else at that path (a device such as /dev/null, a
//! FIFO, a socket, a directory, a symbolic link) is refused with exit 2
//! before anything is written, since renaming over it would replace it
//! (breaking /dev/null for the whole machine) or writing through it would
//! land outside the paths repro was given. A missing parent directory is
//! created by the command that writes into it.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::error::{fail, Kind};

/// Write `value` as pretty JSON to `path` so that a reader (or a crash, or
/// a full disk) only ever sees the old file or the new one: a temporary
/// file beside it, synced, renamed over it, and the directory synced so the
/// rename itself survives a power cut. Every JSON file of a run directory
/// (summary.json, verdict.json, bisect.json) and the cache's first-seen
/// hashes are written through here. The temporary file has an
/// unpredictable name and is created exclusively (the `tempfile` crate), so
/// a link planted in the directory is never written through.
pub(crate) fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    write_with(path, |f| {
        serde_json::to_writer_pretty(&mut *f, value)?;
        f.write_all(b"\n")
    })
}

/// `bytes` to `path`, the same way (reports, JUnit files).
pub(crate) fn write_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
    write_with(path, |f| f.write_all(bytes))
}

/// A file that a library writes by path itself (a PNG from the plotting
/// crate): `draw` writes the temporary path given to it (which ends like
/// `path`, so an encoder that goes by the extension picks the same format),
/// then it is renamed into place by the same rule.
pub(crate) fn write_by_path(path: &Path, draw: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let dir = output_parent(path)?;
    let suffix = path.extension().map(|e| format!(".{}", e.to_string_lossy())).unwrap_or_default();
    let tmp = tempfile::Builder::new().prefix(".repro-").suffix(&suffix).tempfile_in(&dir).map_err(|e| unwritable(path, e.into()))?;
    draw(tmp.path())?;
    tmp.as_file().sync_all().map_err(|e| unwritable(path, e.into()))?;
    tmp.persist(path).map_err(|e| unwritable(path, e.error.into()))?;
    Ok(())
}

/// Refuse (exit 2) an output path that exists and is not a regular file:
/// the check every write makes, and that a command makes early for a path
/// it will write only at the end (`--junit` after a long run).
pub(crate) fn check_target(path: &Path) -> Result<()> {
    let Ok(meta) = std::fs::symlink_metadata(path) else { return Ok(()) };
    let ft = meta.file_type();
    if ft.is_file() {
        return Ok(());
    }
    use std::os::unix::fs::FileTypeExt;
    let what = if ft.is_dir() {
        "a directory"
    } else if ft.is_symlink() {
        "a symbolic link"
    } else if ft.is_char_device() || ft.is_block_device() {
        "a device"
    } else if ft.is_fifo() {
        "a FIFO"
    } else {
        "a socket or other special file"
    };
    Err(fail(
        Kind::Usage,
        format!(
            "{} is {what}: repro writes its output files new or over a regular file only; give a path to a new file \
             (or to a regular file it may replace)",
            path.display()
        ),
    ))
}

/// The parent directory of an output file, created if missing; the path
/// itself checked by [`check_target`].
fn output_parent(path: &Path) -> Result<PathBuf> {
    check_target(path)?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
    std::fs::create_dir_all(&dir).map_err(|e| unwritable(path, anyhow::Error::from(e).context(format!("creating {}", dir.display()))))?;
    Ok(dir)
}

/// A write that failed for the path's sake (no permission, a parent that
/// is a file, a filesystem such as /proc that takes no new files) is the
/// command line's fault, exit 2; a full or read-only disk stays that
/// (error::kind_of finds it first in the chain).
fn unwritable(path: &Path, err: anyhow::Error) -> anyhow::Error {
    if crate::error::kind_of(&err) == Some(Kind::DiskFull) {
        return err.context(format!("writing {}", path.display()));
    }
    fail(Kind::Usage, format!("cannot write {} ({err:#}): choose a path in a directory you can write to", path.display()))
}

fn write_with(path: &Path, fill: impl FnOnce(&mut BufWriter<tempfile::NamedTempFile>) -> std::io::Result<()>) -> Result<()> {
    let dir = output_parent(path)?;
    let write = || -> std::io::Result<()> {
        // Dropped on an error: a full disk must not also lose the previous, complete file.
        let tmp = tempfile::Builder::new().prefix(".repro-").suffix(".tmp").tempfile_in(&dir)?;
        let mut f = BufWriter::new(tmp);
        fill(&mut f)?;
        let tmp = f.into_inner().map_err(|e| e.into_error())?;
        tmp.as_file().sync_all()?;
        tmp.persist(path).map_err(|e| e.error)?;
        File::open(&dir)?.sync_all()
    };
    write().map_err(|e| unwritable(path, e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::kind_of;

    #[test]
    fn devices_fifos_directories_and_links_are_refused_and_left_alone() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let target = d.path().join("target");
        std::fs::write(&target, "keep").unwrap();
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        for p in [Path::new("/dev/null"), d.path(), &fifo, &link] {
            let e = write_bytes(p, b"x").unwrap_err();
            assert_eq!(kind_of(&e), Some(Kind::Usage), "{}: {e:#}", p.display());
        }
        use std::os::unix::fs::FileTypeExt;
        assert!(std::fs::metadata("/dev/null").unwrap().file_type().is_char_device());
        assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    }

    #[test]
    fn missing_parents_are_created_and_unwritable_places_are_bad_input() {
        let d = tempfile::tempdir().unwrap();
        let deep = d.path().join("report/sub/junit.xml");
        write_bytes(&deep, b"<x/>").unwrap();
        assert_eq!(std::fs::read(&deep).unwrap(), b"<x/>");
        write_bytes(&deep, b"<y/>").unwrap();
        assert_eq!(std::fs::read(&deep).unwrap(), b"<y/>", "a regular file is replaced");
        let e = write_bytes(Path::new("/proc/repro-junit.xml"), b"x").unwrap_err();
        assert_eq!(kind_of(&e), Some(Kind::Usage), "{e:#}");
        let file = d.path().join("file");
        std::fs::write(&file, "").unwrap();
        let e = write_bytes(&file.join("under-a-file.xml"), b"x").unwrap_err();
        assert_eq!(kind_of(&e), Some(Kind::Usage), "{e:#}");
    }

    #[test]
    fn a_file_written_by_path_lands_by_the_same_rule() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("plots/a.png");
        write_by_path(&p, |tmp| {
            assert!(tmp.to_string_lossy().ends_with(".png"));
            Ok(std::fs::write(tmp, b"png")?)
        })
        .unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"png");
        let e = write_by_path(Path::new("/dev/null"), |_| unreachable!()).unwrap_err();
        assert_eq!(kind_of(&e), Some(Kind::Usage));
    }
}
