//! The mount-limit bug's measurement (CVE-2016-6213): how many mounts one
//! mount namespace reaches when a shared mount is bound into itself, and
//! the rule that judges it. A count, never a time: it reads the same under
//! TCG, under KVM and on a busy host.

use serde::{Deserialize, Serialize};

use crate::verdict::{Outcome, Rule};

/// What the agent does once per settled window, in a child with a mount
/// namespace of its own: a tmpfs, made shared, is bind-mounted onto a
/// directory inside itself `binds` times. Propagation copies each bind to
/// every peer, and each copy joins the peer group, so each bind doubles the
/// tree: `binds` of them make 2^binds - 1 mounts where nothing limits them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Propagation {
    pub binds: u32,
}

impl Propagation {
    /// The most binds asked for: 2^18 mounts (262,144) is within a 1 GiB
    /// guest's memory, and past the limit by a margin.
    pub const MAX_BINDS: u32 = 18;

    /// Whether it can tell the kernels apart: enough binds to pass
    /// [`MountReach::FIX_LIMIT`], no more than [`Propagation::MAX_BINDS`].
    pub fn fits(&self) -> bool {
        Self::mounts_after(self.binds) > MountReach::FIX_LIMIT && self.binds <= Self::MAX_BINDS
    }

    /// The mounts `binds` doublings make, where nothing refuses one.
    pub fn mounts_after(binds: u32) -> u64 {
        (1u64 << binds.min(63)) - 1
    }
}

/// How far one mount namespace grew: what [`Propagation`] measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountReach {
    /// Bind mounts that succeeded.
    pub binds: u32,
    /// Mounts the binds added, counted in /proc/self/mountinfo after them
    /// (before, less after).
    pub mounts: u64,
    /// The errno of the bind that failed, if one did (ENOSPC: the limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<i32>,
}

impl MountReach {
    /// The limit d29216842a85 puts on one namespace by default: fs.mount-max,
    /// 100,000 (the guest's, which repro never changes).
    pub const FIX_LIMIT: u64 = 100_000;
    /// What count_mounts() returns past the limit.
    pub const ENOSPC: i32 = 28;

    /// Whether it is a reach `asked` could have produced: outside data,
    /// checked where it enters.
    pub fn check(&self, asked: &Propagation) -> Result<(), String> {
        if self.binds > asked.binds {
            return Err(format!("{} binds of a propagation that asked {}", self.binds, asked.binds));
        }
        // The tree's count plus what else mounts or unmounts beside it: a
        // guest says at most what the binds could make.
        if self.mounts > Propagation::mounts_after(self.binds) {
            return Err(format!("{} mounts from {} binds (at most {})", self.mounts, self.binds, Propagation::mounts_after(self.binds)));
        }
        match self.refused {
            Some(e) if !(1..4096).contains(&e) => Err(format!("errno {e} is not one")),
            Some(_) if self.binds == asked.binds => Err("a refused bind though every bind succeeded".into()),
            None if self.binds < asked.binds => Err(format!("{} of {} binds and none refused", self.binds, asked.binds)),
            _ => Ok(()),
        }
    }

    /// The rule: past the limit the fix sets, the kernel has the bug; a
    /// bind refused with ENOSPC at or under it is the fix at work. Anything
    /// else (another errno, too few binds) decides nothing.
    pub fn judge(&self) -> (Outcome, Rule) {
        if self.mounts > Self::FIX_LIMIT {
            (Outcome::Regressed, Rule::MountsRegressed)
        } else if self.refused == Some(Self::ENOSPC) {
            (Outcome::Clean, Rule::MountsClean)
        } else {
            (Outcome::Inconclusive, Rule::NoEvidence)
        }
    }

    /// What it shows, in a few words.
    pub fn brief(&self) -> String {
        match self.refused {
            Some(Self::ENOSPC) => format!("refused at {} mounts (ENOSPC)", self.mounts),
            Some(e) => format!("{} mounts, then errno {e}", self.mounts),
            None => format!("{} mounts in one namespace", self.mounts),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reach_past_the_limit_is_the_bug_and_enospc_under_it_the_fix() {
        let asked = Propagation { binds: 17 };
        assert!(asked.fits() && !Propagation { binds: 16 }.fits() && !Propagation { binds: 19 }.fits());
        // What the host kernel (6.18) did: the 17th bind refused at 2^16 - 1.
        let fixed = MountReach { binds: 16, mounts: 65_535, refused: Some(MountReach::ENOSPC) };
        let unbounded = MountReach { binds: 17, mounts: 131_071, refused: None };
        assert_eq!((fixed.check(&asked), unbounded.check(&asked)), (Ok(()), Ok(())));
        assert_eq!(fixed.judge(), (Outcome::Clean, Rule::MountsClean));
        assert_eq!(unbounded.judge(), (Outcome::Regressed, Rule::MountsRegressed));
        let eperm = MountReach { binds: 0, mounts: 0, refused: Some(1) };
        assert_eq!(eperm.judge().0, Outcome::Inconclusive, "not allowed to mount: no evidence either way");
    }

    #[test]
    fn a_guest_cannot_claim_more_than_its_binds_make() {
        let asked = Propagation { binds: 17 };
        for (bad, why) in [
            (MountReach { binds: 18, mounts: 10, refused: None }, "more binds than asked"),
            (MountReach { binds: 3, mounts: 8, refused: Some(28) }, "more mounts than three binds make"),
            (MountReach { binds: 17, mounts: 5, refused: Some(28) }, "refused though all succeeded"),
            (MountReach { binds: 5, mounts: 31, refused: None }, "stopped with no error"),
            (MountReach { binds: 5, mounts: 31, refused: Some(-3) }, "not an errno"),
        ] {
            assert!(bad.check(&asked).is_err(), "{why}");
        }
    }
}
