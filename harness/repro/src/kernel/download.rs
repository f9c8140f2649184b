//! Downloads by URL, verified by sha256, kept in the cache.
//!
//! Old kernels (CentOS 7 RPMs, kernel.org tarballs) come from hosts that
//! networked machines reach and this one may not. A download lands in
//! `cache/downloads/<file name>`; a file placed there by hand (fetched
//! elsewhere) is used as is, after the same check. The hash is the
//! catalog's pin when it has one; else the `sha256sums.asc` published
//! beside the file (kernel.org does); else it is recorded as first seen
//! and said so.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use crate::error::{fail, Kind};
use crate::kernel::cache::{sha256_file, Cache};

/// A verified file in the cache, and how its hash was established.
#[derive(Debug)]
pub struct Fetched {
    pub path: PathBuf,
    pub sha256: String,
    /// `pinned`, `sha256sums.asc` or `unverified (first seen)`.
    pub verified_by: String,
}

pub fn file_name(url: &str) -> &str {
    url.rsplit('/').next().filter(|n| !n.is_empty()).unwrap_or("download")
}

/// Where a download of `url` is kept (and where a user may seed it).
pub fn cache_path(cache: &Cache, url: &str) -> PathBuf {
    cache.root.join("downloads").join(file_name(url))
}

pub fn fetch(url: &str, pinned: Option<&str>, cache: &Cache) -> Result<Fetched> {
    let path = cache_path(cache, url);
    let unavailable = |what: String| {
        fail(
            Kind::KernelUnavailable,
            format!(
                "{what}. On a machine that reaches that host repro downloads it by itself; here, download it elsewhere and copy it to {} \
                 (it is checked against {}), or boot an image you have with --kernel PATH",
                path.display(),
                pinned.map_or("the published sha256 where there is one".to_string(), |p| format!("sha256 {p}"))
            ),
        )
    };
    let expected = || -> Result<Option<(String, String)>> {
        if let Some(p) = pinned {
            return Ok(Some((p.to_ascii_lowercase(), "pinned".into())));
        }
        // kernel.org publishes sha256sums.asc beside its tarballs.
        let sums_url = format!("{}/sha256sums.asc", url.rsplit_once('/').map_or(url, |(d, _)| d));
        match get_text(&sums_url) {
            Ok(sums) => match sums_entry(&sums, file_name(url)) {
                Some(h) => Ok(Some((h, "sha256sums.asc".into()))),
                None => Err(unavailable(format!("{sums_url} lists no {}", file_name(url)))),
            },
            Err(_) => Ok(None),
        }
    };

    if path.exists() {
        let have = sha256_file(&path)?;
        // A seeded or earlier download: check it before trusting it.
        match expected().ok().flatten() {
            Some((w, by)) if w == have => return Ok(Fetched { path, sha256: have, verified_by: by }),
            Some((w, _)) => {
                tracing::warn!("{} has sha256 {have}, expected {w}: downloading it again", path.display());
                std::fs::remove_file(&path)?;
            }
            None => return Ok(Fetched { path, sha256: have, verified_by: "unverified (first seen)".into() }),
        }
    }

    let want = expected()?;
    std::fs::create_dir_all(path.parent().unwrap())?;
    let part = path.with_extension("part");
    tracing::info!("downloading {url}");
    let got = download(url, &part).map_err(|e| {
        let _ = std::fs::remove_file(&part);
        // ureq's message starts with the URL, which is said already.
        unavailable(format!("cannot download {url}: {}", format!("{e:#}").replace(&format!("{url}: "), "")))
    })?;
    let verified_by = match want {
        Some((w, by)) if w == got => by,
        Some((w, by)) => {
            let _ = std::fs::remove_file(&part);
            return Err(fail(
                Kind::ImageInvalid,
                format!("{url} has sha256 {got}, but {by} says {w}: the download is corrupt or was tampered with; nothing was kept"),
            ));
        }
        None => {
            tracing::warn!("{url} has no published or pinned sha256; recording {got} as first seen");
            "unverified (first seen)".into()
        }
    };
    std::fs::rename(&part, &path)?;
    Ok(Fetched { path, sha256: got, verified_by })
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(15))
        .timeout_read(Duration::from_secs(60))
        .user_agent(concat!("repro/", env!("CARGO_PKG_VERSION")))
        .build()
}

fn get_text(url: &str) -> Result<String> {
    Ok(agent().get(url).call()?.into_string()?)
}

/// Stream `url` into `out`, hashing as it goes; returns the sha256.
fn download(url: &str, out: &Path) -> Result<String> {
    let resp = agent().get(url).call()?;
    let mut reader = resp.into_reader();
    let mut file = std::io::BufWriter::new(std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?);
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        file.write_all(&buf[..n])?;
    }
    file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(format!("{:x}", hash.finalize()))
}

/// The hash of `name` in a `sha256sum`-style listing (as kernel.org's
/// sha256sums.asc, whose PGP armour lines do not match).
pub fn sums_entry(sums: &str, name: &str) -> Option<String> {
    sums.lines().find_map(|l| {
        let mut w = l.split_whitespace();
        let (h, n) = (w.next()?, w.next()?);
        (n.trim_start_matches('*') == name && h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit())).then(|| h.to_ascii_lowercase())
    })
}

/// Unpack a .tar.xz or .tar.gz into `dest`, dropping its top directory.
pub fn extract_tarball(archive: &Path, dest: &Path) -> Result<()> {
    let f = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(archive)?);
    let name = archive.to_string_lossy();
    let reader: Box<dyn Read> = if name.ends_with(".tar.xz") {
        Box::new(lzma_rust2::XzReader::new(f, true))
    } else if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
        Box::new(flate2::read::GzDecoder::new(f))
    } else {
        return Err(fail(Kind::KernelUnavailable, format!("{name}: repro unpacks .tar.xz and .tar.gz tarballs")));
    };
    crate::kernel::deb::unpack_stripped(reader, dest, crate::kernel::deb::EscapingLinks::Refuse)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256sums_listing_is_parsed_past_the_pgp_armour() {
        let h = "a".repeat(64);
        let sums = format!("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n{h}  linux-4.9.119.tar.xz\n{}  linux-4.9.119.tar.gz\n-----BEGIN PGP SIGNATURE-----\n", "b".repeat(64));
        assert_eq!(sums_entry(&sums, "linux-4.9.119.tar.xz"), Some(h));
        assert_eq!(sums_entry(&sums, "linux-4.9.120.tar.xz"), None);
    }

    #[test]
    fn cache_path_is_the_url_file_name() {
        let c = Cache { root: "/c".into() };
        assert_eq!(cache_path(&c, "https://h.example/a/kernel-3.10.rpm"), Path::new("/c/downloads/kernel-3.10.rpm"));
    }
}
