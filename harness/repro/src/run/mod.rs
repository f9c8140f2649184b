//! A run's record: the scenario it runs, its summary and run directory,
//! the recorder that keeps them on disk as messages arrive, the progress
//! shown meanwhile; and `watch`, the host monitor that needs no VM.

pub(crate) mod progress;
pub(crate) mod projection;
pub(crate) mod record;
pub(crate) mod scenario;
pub(crate) mod scenario_toml;
pub(crate) mod summary;
pub(crate) mod watch;
