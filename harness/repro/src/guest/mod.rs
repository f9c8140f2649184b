//! Running the workload: the guest booted (initramfs, QEMU, accelerators)
//! or the host agent started, the message stream read into the recorder and
//! answered, one run executed end to end.

pub(crate) mod boot;
pub(crate) mod checkpoint;
pub(crate) mod drive;
pub(crate) mod execute;
pub(crate) mod guard;
pub(crate) mod initramfs;
pub(crate) mod kvm_memo;
pub(crate) mod lines;
pub(crate) mod qemu;
pub(crate) mod qmp;
pub(crate) mod request;
pub(crate) mod resume;
pub(crate) mod session;
pub(crate) mod stream;
