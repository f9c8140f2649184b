//! Where a kernel image came from, as summaries and caches record it: how
//! repro built it, and how its download was trusted.

use serde::{Deserialize, Serialize};

/// How a kernel was built from source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildProvenance {
    /// The tree's version, from its Makefile.
    pub version: String,
    /// The era of vm-images/eras.toml it was built by.
    pub era: String,
    /// The compiler's `--version` line and where it came from.
    pub cc: String,
    /// The make variables (CC with its flags, LD, HOSTCC).
    pub make_vars: Vec<String>,
    /// Every compatibility fix: applied (with what it found) or not needed (why).
    pub fixes: Vec<String>,
}

/// How a file came to be trusted, as the summary's provenance says it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum Verification {
    /// The catalog pins its sha256.
    Pinned,
    /// Listed in a sha256sums.asc whose signature this key verified.
    SignedSums { key: String },
    /// Its own RPM signature verified with this key, and the image's digest
    /// matched the signed header's.
    RpmSignature { key: String },
    /// Nothing verified it; `--insecure-download` let it through, and this
    /// is the hash first seen for the file.
    Unverified { first_seen: String },
}

impl std::fmt::Display for Verification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verification::Pinned => write!(f, "sha256 pinned by the catalog"),
            Verification::SignedSums { key } => write!(f, "sha256sums.asc signed by {key}"),
            Verification::RpmSignature { key } => write!(f, "RPM signature by {key}"),
            Verification::Unverified { first_seen } => write!(f, "UNVERIFIED (--insecure-download; first seen as sha256 {first_seen})"),
        }
    }
}
