//! A run's record: the scenario it runs, its summary and run directory,
//! the recorder that keeps them on disk as messages arrive, the progress
//! shown meanwhile; and `watch`, the host monitor that needs no VM.

pub mod progress;
pub mod projection;
pub mod record;
pub mod scenario;
pub mod summary;
pub mod watch;
