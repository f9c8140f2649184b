//! Running the workload: the guest booted (initramfs, QEMU, accelerators)
//! or the host agent started, the message stream read into the recorder and
//! answered, one run executed end to end.

pub mod boot;
pub mod exec;
pub mod execute;
pub mod initramfs;
pub mod qemu;
pub mod request;
pub mod session;
