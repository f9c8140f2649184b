//! Files written so that a reader, a crash or a full disk only ever sees the
//! old version or the new one.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::Result;

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

fn write_with(path: &Path, fill: impl FnOnce(&mut BufWriter<tempfile::NamedTempFile>) -> std::io::Result<()>) -> Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let write = || -> std::io::Result<()> {
        // Dropped on an error: a full disk must not also lose the previous, complete file.
        let tmp = tempfile::Builder::new().prefix(".repro-").suffix(".tmp").tempfile_in(dir)?;
        let mut f = BufWriter::new(tmp);
        fill(&mut f)?;
        let tmp = f.into_inner().map_err(|e| e.into_error())?;
        tmp.as_file().sync_all()?;
        tmp.persist(path).map_err(|e| e.error)?;
        File::open(dir)?.sync_all()
    };
    write().map_err(|e| anyhow::Error::from(e).context(format!("writing {}", path.display())))
}
