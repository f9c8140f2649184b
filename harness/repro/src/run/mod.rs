//! run
pub mod exec;
pub mod execute;
pub mod progress;
pub mod record;
pub mod scenario;
pub mod summary;
pub mod watch;
