//! Downloads by URL, verified by sha256, kept in the cache.
//!
//! Old kernels (CentOS 7 RPMs, kernel.org tarballs) come from hosts that
//! networked machines reach and this one may not. A download lands in
//! `cache/downloads/<file name>`; a file placed there by hand (fetched
//! elsewhere) goes through the same check. The hash is the catalog's pin
//! when it has one, else the `sha256sums.asc` published beside the file
//! when its signature verifies (kernel.org's); what is left unverified is
//! the caller's to verify or refuse ([`verify::accept`]).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use crate::error::{fail, Kind};
use crate::kernel::cache::{sha256_file, Cache};
use crate::kernel::verify::{self, Verification};

/// A downloaded file in the cache, and what verified its hash, if anything
/// did (the caller may verify it further, e.g. by its RPM signature, and
/// then applies [`verify::accept`]).
#[derive(Debug)]
pub(crate) struct Fetched {
    pub path: PathBuf,
    pub sha256: String,
    pub verified: Result<Verification>,
}

pub(crate) fn file_name(url: &str) -> &str {
    url.rsplit('/').next().filter(|n| !n.is_empty()).unwrap_or("download")
}

/// Where a download of `url` is kept (and where a user may seed it).
pub(crate) fn cache_path(cache: &Cache, url: &str) -> PathBuf {
    cache.root.join("downloads").join(file_name(url))
}

/// Download `url` into the cache (or take the copy already there), checked
/// against the catalog's `pinned` sha256, else against the sha256sums.asc
/// beside it when `sums_key` (armored) verifies its signature.
pub(crate) fn fetch(url: &str, pinned: Option<&str>, sums_key: Option<&str>, cache: &Cache) -> Result<Fetched> {
    let path = cache_path(cache, url);
    let unavailable = |what: String| {
        fail(
            Kind::KernelUnavailable,
            format!(
                "{what}. On a machine that reaches that host repro downloads it by itself; here, download it elsewhere and copy it to {} \
                 (it is checked like a download), or boot an image you have with --kernel PATH",
                path.display(),
            ),
        )
    };
    // The hash the file must have, and what vouches for it; Err when
    // nothing does (no pin, no signed listing reachable).
    let expected = || -> Result<(String, Verification)> {
        if let Some(p) = pinned {
            return Ok((p.to_ascii_lowercase(), Verification::Pinned));
        }
        let Some(key) = sums_key else { anyhow::bail!("the catalog pins no sha256 for {}", file_name(url)) };
        let sums_url = format!("{}/sha256sums.asc", url.rsplit_once('/').map_or(url, |(d, _)| d));
        let sums = get_text(&sums_url).with_context(|| format!("no sha256 pinned, and {sums_url} cannot be fetched"))?;
        let (text, fp) = verify::signed_text(&sums, key)?;
        match verify::sums_entry(&text, file_name(url)) {
            Some(h) => Ok((h, Verification::SignedSums { key: fp })),
            None => Err(fail(Kind::Unverified, format!("the signed {sums_url} lists no {}", file_name(url)))),
        }
    };

    if path.exists() {
        let have = sha256_file(&path)?;
        // A seeded or earlier download: check it before trusting it.
        match expected() {
            Ok((w, by)) if w == have => return Ok(Fetched { path, sha256: have, verified: Ok(by) }),
            Ok((w, _)) => {
                tracing::warn!("{} has sha256 {have}, expected {w}: downloading it again", path.display());
                std::fs::remove_file(&path)?;
            }
            Err(why) => return Ok(Fetched { path, sha256: have, verified: Err(why) }),
        }
    }

    let want = expected();
    std::fs::create_dir_all(path.parent().unwrap())?;
    let part = path.with_extension("part");
    tracing::info!("downloading {url}");
    let got = download(url, &part).map_err(|e| {
        let _ = std::fs::remove_file(&part);
        // ureq's message starts with the URL, which is said already.
        unavailable(format!("cannot download {url}: {}", format!("{e:#}").replace(&format!("{url}: "), "")))
    })?;
    let verified = match want {
        Ok((w, by)) if w == got => Ok(by),
        Ok((w, by)) => {
            let _ = std::fs::remove_file(&part);
            // A refused download, like an unsigned or wrongly signed one (exit 3).
            return Err(fail(
                Kind::Unverified,
                format!("{url} has sha256 {got}, but the {by} says {w}: the download is corrupt or was tampered with; nothing was kept"),
            ));
        }
        Err(why) => Err(why),
    };
    std::fs::rename(&part, &path)?;
    Ok(Fetched { path, sha256: got, verified })
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

/// Unpack a .tar.xz or .tar.gz into `dest`, dropping its top directory.
pub(crate) fn extract_tarball(archive: &Path, dest: &Path) -> Result<()> {
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
    fn cache_path_is_the_url_file_name() {
        let c = Cache { root: "/c".into(), insecure_download: false };
        assert_eq!(cache_path(&c, "https://h.example/a/kernel-3.10.rpm"), Path::new("/c/downloads/kernel-3.10.rpm"));
    }
}
