//! What the agent and the host read from /proc, parsed once for both:
//! dentry-state (the churn's evidence) and meminfo (a guest's memory, and
//! the host's when it sizes one).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DentryState {
    pub nr_dentry: u64,
    pub nr_unused: u64,
}

impl DentryState {
    /// The first two fields of /proc/sys/fs/dentry-state.
    pub fn parse(text: &str) -> Option<DentryState> {
        let mut f = text.split_whitespace().map(|x| x.parse::<u64>());
        Some(DentryState { nr_dentry: f.next()?.ok()?, nr_unused: f.next()?.ok()? })
    }

    /// This kernel's, now.
    pub fn read() -> Result<DentryState, String> {
        let text = std::fs::read_to_string("/proc/sys/fs/dentry-state").map_err(|e| format!("reading /proc/sys/fs/dentry-state: {e}"))?;
        DentryState::parse(&text).ok_or_else(|| format!("unexpected /proc/sys/fs/dentry-state: {text:?}"))
    }
}

/// One `Name: N kB` field of /proc/meminfo's text, in KiB: the agent
/// reads the guest's (windows, hello), the host its own (sizing a guest).
pub fn meminfo_kib(text: &str, field: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.split(':').next() == Some(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_fields_are_read_by_their_whole_name() {
        let text = "MemTotal:        1003456 kB\nMemFree:          964612 kB\nMemAvailable:     970000 kB\nSlab:              32868 kB\n";
        assert_eq!(meminfo_kib(text, "MemFree"), Some(964_612));
        assert_eq!(meminfo_kib(text, "Slab"), Some(32_868));
        assert_eq!(meminfo_kib(text, "Mem"), None);
        assert_eq!(meminfo_kib("MemFree: lots\n", "MemFree"), None);
    }
}
