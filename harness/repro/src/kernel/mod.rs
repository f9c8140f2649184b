//! Getting a bootable kernel image: `--kernel` parsed ([`spec`]), catalog
//! entries fetched through apt or downloaded and verified, or built by era;
//! everything cached.

pub mod apt;
pub mod build;
pub mod bzimage;
pub mod cache;
pub mod catalog;
pub mod ci;
pub mod compat;
pub mod deb;
pub mod download;
pub mod era;
pub mod make;
pub mod packaged;
pub mod patch;
pub mod rpm;
pub mod spec;
pub mod toolchain;
pub mod tree;
pub mod verify;
