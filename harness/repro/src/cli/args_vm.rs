//! The clap arguments every command that boots or builds a kernel shares:
//! the guest (`VmArgs`), the kernel cache (`CacheArgs`), and the value
//! parsers they use.

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::{OsStringValueParser, TypedValueParser};
use clap::Args;

use crate::guest::qemu::AccelChoice;
use crate::kernel::cache::Cache;
use crate::kernel::spec::KernelSpec;
pub(crate) use repro_proto::Backend;

pub(crate) fn backend() -> impl TypedValueParser<Value = Backend> {
    clap::builder::PossibleValuesParser::new([Backend::Qemu.as_str(), Backend::Host.as_str()]).map(|s| {
        if s == Backend::Host.as_str() {
            Backend::Host
        } else {
            Backend::Qemu
        }
    })
}

/// `--accel`'s values, with the help clap shows for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AccelArg {
    /// KVM if /dev/kvm opens and a guest boots on it within --kvm-timeout; else TCG.
    Auto,
    Kvm,
    Tcg,
}

impl From<AccelArg> for AccelChoice {
    fn from(a: AccelArg) -> AccelChoice {
        match a {
            AccelArg::Auto => AccelChoice::Auto,
            AccelArg::Kvm => AccelChoice::Kvm,
            AccelArg::Tcg => AccelChoice::Tcg,
        }
    }
}

/// `--kernel`'s parser: the one name-or-path rule, [`KernelSpec::parse`],
/// on the argument as the OS gave it (paths need not be UTF-8). A
/// directory is no bzImage: it says how to build one.
pub(crate) fn kernel_spec() -> impl TypedValueParser<Value = KernelSpec> {
    OsStringValueParser::new().try_map(|s| match KernelSpec::from(s) {
        // No catalog name is that long, and no path is longer than PATH_MAX:
        // refused here, it is never echoed into a report or a bisect log.
        KernelSpec::Catalog(n) if n.len() > 128 => {
            Err(format!("{} is not a kernel name (`repro kernels` lists them)", crate::text::clip(&n, 40)))
        }
        KernelSpec::Image(p) if p.as_os_str().len() > 4096 => {
            Err(format!("{} is longer than any path", crate::text::clip(&p.to_string_lossy(), 40)))
        }
        KernelSpec::Image(p) if p.is_dir() => {
            Err(format!("{} is a directory, not a bzImage: to build a kernel source tree pass --src {}", p.display(), p.display()))
        }
        k => Ok(k),
    })
}

/// `--src`: a directory that exists (a kernel tree is checked further by the build).
pub(crate) fn source_dir() -> impl TypedValueParser<Value = PathBuf> {
    OsStringValueParser::new().try_map(|s| {
        let p = PathBuf::from(s);
        if p.is_dir() {
            Ok(p)
        } else {
            Err(format!("{} is not a directory: pass the top of a Linux kernel source tree", p.display()))
        }
    })
}

/// `--cache-dir`: a directory, or a path one can be made at; never a file,
/// nor a pseudo-filesystem.
pub(crate) fn cache_dir() -> impl TypedValueParser<Value = PathBuf> {
    OsStringValueParser::new().try_map(|s| {
        let p = PathBuf::from(s);
        if p.exists() && !p.is_dir() {
            return Err(format!("{} exists and is not a directory", p.display()));
        }
        let abs = std::path::absolute(&p).unwrap_or_else(|_| p.clone());
        if ["/proc", "/sys", "/dev"].iter().any(|pseudo| abs.starts_with(pseudo)) {
            return Err(format!("{} is on a pseudo-filesystem: pick a directory on a disk", p.display()));
        }
        Ok(p)
    })
}

/// A ratio or a cost: a finite number above zero.
pub(crate) fn positive(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 => Ok(x),
        _ => Err(format!("{s:?} is not a number above zero")),
    }
}

/// The longest duration any option takes: a year. Longer ones are never
/// meant, and overflow the clock arithmetic they feed (a deadline is now
/// plus the duration).
const MAX_DURATION: Duration = Duration::from_secs(366 * 86400);

/// A duration as humantime reads it ("90s", "2h30m"), at most a year: the
/// parser of every duration option.
pub(crate) fn duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{s:?} is not a duration such as 90s, 30m or 2h ({e})"))?;
    if d > MAX_DURATION {
        return Err(format!("{s:?} is longer than a year, the most any duration option takes"));
    }
    Ok(d)
}

/// A duration above zero (how often to save: zero would save at every window).
pub(crate) fn nonzero_duration(s: &str) -> Result<Duration, String> {
    match duration(s)? {
        d if d.is_zero() => Err(format!("{s:?} is zero: give an interval such as 30m")),
        d => Ok(d),
    }
}

/// How to boot the guest: shared by `run` and `exec`.
#[derive(Debug, Clone, Args)]
pub struct VmArgs {
    /// Kernel to boot: a catalog name (see `repro kernels`) or the path of a bzImage (anything
    /// with a `/` in it, or a file that exists, is a path).
    #[arg(short, long, default_value = "6.1", value_name = "NAME|PATH", value_parser = kernel_spec())]
    pub kernel: KernelSpec,
    /// Accelerator. auto proves KVM with a boot handshake and falls back to TCG.
    #[arg(long, value_enum, default_value_t = AccelArg::Auto)]
    pub accel: AccelArg,
    /// Guest vCPUs.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub cpus: u32,
    /// Guest memory, e.g. 2G, 1536M [default: enough to keep every stale dentry cached].
    #[arg(long, value_parser = parse_size_mib, value_name = "SIZE")]
    pub memory: Option<u64>,
    /// How long the guest may take to boot and say hello under TCG.
    #[arg(long, default_value = "2m", value_parser = duration)]
    pub boot_timeout: Duration,
    /// How long --accel auto waits for a KVM guest before falling back to TCG.
    #[arg(long, default_value = "20s", value_parser = duration)]
    pub kvm_timeout: Duration,
    /// Extra guest kernel command-line arguments.
    #[arg(long, default_value = "", value_name = "ARGS")]
    pub append: String,
    /// QEMU binary [default: $REPRO_QEMU, else qemu-system-x86_64 on PATH].
    #[arg(long, value_name = "PATH")]
    pub qemu: Option<PathBuf>,
    #[command(flatten)]
    pub cache: CacheArgs,
    /// Build the kernel from this source tree (minimal config fragment, incremental O= build in the cache)
    /// instead of --kernel; `--build .` inside a kernel git tree is what `git bisect run` wants.
    #[arg(long, visible_alias = "build", value_name = "DIR", value_parser = source_dir())]
    pub src: Option<PathBuf>,
    /// C compiler for kernel builds [default: by the tree's version: the host's gcc from 5.x on, a
    /// gcc-12 (from PATH, else fetched with apt) for 3.x and 4.x; see vm-images/eras.toml]. A name on PATH or a path.
    #[arg(long, value_name = "CC")]
    pub cc: Option<String>,
}

/// Where kernels are cached, and which downloads may enter: shared by every
/// command that fetches or builds one.
#[derive(Debug, Clone, Args)]
pub struct CacheArgs {
    /// Cache for fetched and built kernels [default: $REPRO_CACHE_DIR, else ~/.cache/repro].
    #[arg(long, value_name = "DIR", value_parser = cache_dir())]
    pub cache_dir: Option<PathBuf>,
    /// Use a kernel download that nothing verifies (no sha256 pin, no signed sha256sums.asc, no RPM
    /// signature repro can check): its hash is kept as first seen and enforced after, and the summary
    /// records it as UNVERIFIED.
    #[arg(long)]
    pub insecure_download: bool,
}

impl CacheArgs {
    /// The cache, and whether it may take unverified downloads.
    pub fn cache(&self) -> Cache {
        Cache::new(self.cache_dir.clone()).allowing_unverified(self.insecure_download)
    }
}

/// Sizes as QEMU's -m reads them: a bare number is MiB, K/M/G/T suffixes
/// (optionally followed by "iB" or "B") are binary. Hand-written because
/// size crates read "2G" as 10^9 bytes, which is not what QEMU users mean.
pub(crate) fn parse_size_mib(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("bad size {s:?}: write e.g. 2G, 1536M"))?;
    let unit = unit.trim().to_ascii_uppercase();
    let mib = match unit.trim_end_matches("IB").trim_end_matches('B') {
        "" | "M" => n,
        "K" => n / 1024.0,
        "G" => n * 1024.0,
        "T" => n * 1024.0 * 1024.0,
        _ => return Err(format!("bad size unit in {s:?}: use K, M, G or T")),
    };
    if mib < 1.0 {
        return Err(format!("size {s:?} is under 1 MiB"));
    }
    // QEMU's x86-64 guests top out at a few TiB; a guest bigger than the
    // machine is refused by QEMU with a message that blames the kernel.
    if !mib.is_finite() || mib > 4.0 * 1024.0 * 1024.0 {
        return Err(format!("size {s:?} is more than 4T: give the guest what this machine has, e.g. 8G"));
    }
    Ok(mib.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_binary_like_qemu() {
        assert_eq!(parse_size_mib("2G"), Ok(2048));
        assert_eq!(parse_size_mib("2GiB"), Ok(2048));
        assert_eq!(parse_size_mib("1536M"), Ok(1536));
        assert_eq!(parse_size_mib("512"), Ok(512));
        assert_eq!(parse_size_mib("1.5g"), Ok(1536));
        assert!(parse_size_mib("lots").is_err());
        assert!(parse_size_mib("2X").is_err());
        assert!(parse_size_mib("10K").is_err());
        assert!(parse_size_mib("99999999999999999999T").is_err());
        assert!(parse_size_mib("5T").is_err());
    }
}
