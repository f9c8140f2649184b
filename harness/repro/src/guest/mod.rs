//! guest
pub mod boot;
pub mod initramfs;
pub mod qemu;
pub mod session;
