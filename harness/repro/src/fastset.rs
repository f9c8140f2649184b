//! The test suite's fast set boots no kernel, and repro itself keeps that
//! promise: `.config/nextest.toml` gives every test outside the kernel
//! modules `REPRO_FORBID_BOOT=1` (a nextest setup script), and a guest that
//! says hello under it ends the command with an error naming the rule. A
//! new test that boots a kernel therefore fails where it is written, instead
//! of quietly making `cargo nextest run` take minutes.

use crate::error::{fail, Kind};

const VAR: &str = "REPRO_FORBID_BOOT";

/// Refuse to go on with a booted guest where booting is forbidden.
pub(crate) fn refuse_boot() -> anyhow::Result<()> {
    if std::env::var_os(VAR).is_some_and(|v| v == "1") {
        return Err(fail(
            Kind::Internal,
            format!(
                "a kernel booted, and {VAR}=1 forbids it: this test is in the fast set, which boots no kernel; move it into one \
                 of the kernel-booting modules named in .config/nextest.toml (their tests run under --ignore-default-filter)"
            ),
        ));
    }
    Ok(())
}
