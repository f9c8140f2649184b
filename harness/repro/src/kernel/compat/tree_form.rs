//! A fix for how a tree arrived (a snapshot without run bits).

use std::path::PathBuf;

use super::{needed, not_needed, Edit, Finding, Repair, Tree};

/// The directories whose scripts a build runs: top-level helpers, Kbuild's
/// own, the architecture's and the initramfs generator.
const SCRIPT_DIRS: &[&str] = &["scripts", "arch/x86", "usr", "tools"];

pub(super) fn run_bits(t: &Tree) -> Finding {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    // Upstream keeps some scripts 0644 on purpose (make runs them through
    // the shell); a tree that lost its run bits has none left under scripts/.
    let mut executable = 0usize;
    let mut missing = Vec::new();
    let mut stack: Vec<PathBuf> = SCRIPT_DIRS.iter().map(|d| t.root.join(d)).collect();
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(e.path());
                continue;
            }
            let Ok(meta) = e.metadata() else { continue };
            if !ft.is_file() {
                continue;
            }
            let mut head = [0u8; 2];
            let is_script = std::fs::File::open(e.path()).and_then(|mut f| f.read_exact(&mut head)).is_ok() && &head == b"#!";
            let rel = e.path().strip_prefix(t.root).unwrap_or(&e.path()).to_path_buf();
            if !is_script {
                continue;
            }
            if meta.permissions().mode() & 0o111 != 0 {
                executable += usize::from(rel.starts_with("scripts"));
            } else {
                missing.push(rel);
            }
        }
    }
    if missing.is_empty() {
        return not_needed("every script under scripts/, arch/x86/, usr/ and tools/ has its run bits");
    }
    if executable > 0 {
        return not_needed(format!("the tree keeps its run bits ({executable} scripts under scripts/ are executable)"));
    }
    missing.sort();
    let found = format!("{} scripts without run bits, e.g. {}", missing.len(), missing[0].display());
    needed(found, Repair { edits: missing.into_iter().map(|path| Edit::MakeExecutable { path }).collect(), ..Repair::default() })
}
