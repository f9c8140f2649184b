//! Reading files repro did not write: a scenario, an --include, a private
//! catalog, a bisect state, the summaries a report reads, an RPM. Each is
//! read with a stated cap for its kind, and anything that is not a regular
//! file (a device such as /dev/zero, a FIFO, a directory) is refused before
//! a byte is read, so no input can exhaust the machine's memory.

use std::io::Read;
use std::path::Path;

use anyhow::Result;

use crate::error::{fail, Kind};

/// The one rule for a name-or-path argument (`--kernel`, `--scenario`): one
/// with a `/` in it, or naming something that exists, is a path; anything
/// else is a name.
pub(crate) fn names_a_path(arg: &std::ffi::OsStr) -> bool {
    arg.as_encoded_bytes().contains(&b'/') || Path::new(arg).exists()
}

/// The kinds of outside file, each with its cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Input {
    /// --scenario PATH (scenarios/*.toml are a few KiB).
    Scenario,
    /// REPRO_CATALOG (the built-in catalog is ~10 KiB).
    Catalog,
    /// A run's summary.json (10,000 windows: a few MiB).
    Summary,
    /// bisect.json (one step per revision).
    BisectState,
    /// `repro report --expect` (a GitHub Actions matrix).
    Matrix,
    /// --include HOST (a static program for the guest's initramfs).
    Include,
    /// A kernel RPM (CentOS 7's are ~50 MiB).
    Rpm,
    /// A checkpoint's state.json (`repro resume`): repro wrote it, and it is
    /// still checked, since anything may have touched it since.
    Checkpoint,
    /// A kernel image carried in a checkpoint (bzImages are 5-15 MiB).
    KernelImage,
}

impl Input {
    pub(crate) fn cap(self) -> u64 {
        match self {
            Input::Scenario | Input::Catalog | Input::Checkpoint => 1 << 20,
            Input::Summary | Input::BisectState | Input::Matrix => 64 << 20,
            Input::Include | Input::KernelImage => 256 << 20,
            Input::Rpm => 512 << 20,
        }
    }

    fn what(self) -> &'static str {
        match self {
            Input::Scenario => "scenario file",
            Input::Catalog => "catalog (REPRO_CATALOG)",
            Input::Summary => "summary.json",
            Input::BisectState => "bisect state",
            Input::Matrix => "matrix file",
            Input::Include => "--include file",
            Input::Rpm => "RPM package",
            Input::Checkpoint => "checkpoint state",
            Input::KernelImage => "kernel image",
        }
    }

    fn refuse(self, path: &Path, why: String) -> anyhow::Error {
        fail(Kind::Usage, format!("{} {}: {why}; pass a regular file of at most {} MiB", self.what(), path.display(), self.cap() >> 20))
    }

    /// `path` opened for reading, refused (exit 2) unless it is a regular
    /// file within the cap. Opened non-blocking, so that a FIFO is refused
    /// instead of waiting forever for a writer; the type is checked on the
    /// file opened, so nothing can swap it in between.
    pub(crate) fn open(self, path: &Path) -> Result<(std::fs::File, u64)> {
        use std::os::unix::fs::OpenOptionsExt;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| self.refuse(path, format!("cannot open it ({e})")))?;
        let meta = f.metadata().map_err(|e| self.refuse(path, format!("cannot stat it ({e})")))?;
        if !meta.is_file() {
            let kind = if meta.is_dir() { "a directory" } else { "not a regular file (a device, FIFO or socket)" };
            return Err(self.refuse(path, format!("it is {kind}")));
        }
        if meta.len() > self.cap() {
            return Err(self.refuse(path, format!("it holds {} MiB", meta.len() >> 20)));
        }
        Ok((f, meta.len()))
    }

    /// The sha256 of `path`, read by the same rule (and cap) as [`Input::read`].
    pub(crate) fn sha256(self, path: &Path) -> Result<String> {
        use sha2::Digest;
        let (f, _) = self.open(path)?;
        let mut h = sha2::Sha256::new();
        let mut r = f.take(self.cap() + 1);
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = r.read(&mut buf).map_err(|e| self.refuse(path, format!("reading it failed ({e})")))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        Ok(format!("{:x}", h.finalize()))
    }

    /// The bytes of `path`, refused (exit 2) unless it is a regular file
    /// within the cap.
    pub(crate) fn read(self, path: &Path) -> Result<Vec<u8>> {
        let refuse = |why: String| self.refuse(path, why);
        let (f, len) = self.open(path)?;
        let mut bytes = Vec::with_capacity(len as usize);
        // Bounded even if the file grows while it is read.
        f.take(self.cap() + 1).read_to_end(&mut bytes).map_err(|e| refuse(format!("reading it failed ({e})")))?;
        if bytes.len() as u64 > self.cap() {
            return Err(refuse("it grew past the cap while being read".into()));
        }
        Ok(bytes)
    }

    /// As [`Input::read`], as text (invalid UTF-8 is refused).
    pub(crate) fn read_text(self, path: &Path) -> Result<String> {
        String::from_utf8(self.read(path)?).map_err(|_| fail(Kind::Usage, format!("{} {} is not UTF-8 text", self.what(), path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_fifos_directories_and_oversized_files_are_refused_with_exit_2() {
        let d = tempfile::tempdir().unwrap();
        for p in [Path::new("/dev/zero"), d.path()] {
            let e = Input::Scenario.read(p).unwrap_err();
            assert_eq!(crate::error::kind_of(&e), Some(Kind::Usage), "{e:#}");
        }
        let fifo = d.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        // No writer ever comes: a blocking open would wait forever.
        let e = format!("{:#}", Input::Scenario.read(&fifo).unwrap_err());
        assert!(e.contains("not a regular file"), "{e}");
        assert!(format!("{:#}", Input::KernelImage.sha256(Path::new("/dev/zero")).unwrap_err()).contains("not a regular file"));
        let big = d.path().join("big.toml");
        std::fs::File::create(&big).unwrap().set_len(Input::Scenario.cap() + 1).unwrap();
        assert!(format!("{:#}", Input::Scenario.read(&big).unwrap_err()).contains("1 MiB"));
        std::fs::write(d.path().join("ok.toml"), "name = \"x\"\n").unwrap();
        assert_eq!(Input::Scenario.read_text(&d.path().join("ok.toml")).unwrap(), "name = \"x\"\n");
    }
}
