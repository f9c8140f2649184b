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
/// hashes are written through here.
pub(crate) fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut f = BufWriter::new(File::create(&tmp)?);
        serde_json::to_writer_pretty(&mut f, value)?;
        f.write_all(b"\n")?;
        f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    };
    write().map_err(|e| {
        // A full disk must not also lose the previous, complete file.
        let _ = std::fs::remove_file(&tmp);
        anyhow::Error::from(e).context(format!("writing {}", path.display()))
    })
}
