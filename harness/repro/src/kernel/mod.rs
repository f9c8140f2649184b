//! Getting a bootable kernel image: `--kernel` parsed ([`spec`]), catalog
//! entries fetched through apt or downloaded and verified, or built by era;
//! everything cached.

pub(crate) mod apt;
pub(crate) mod build;
pub(crate) mod built;
pub(crate) mod bzimage;
pub(crate) mod cache;
pub(crate) mod catalog;
pub(crate) mod ci;
pub(crate) mod compat;
pub(crate) mod config;
pub(crate) mod deb;
pub(crate) mod download;
pub(crate) mod era;
pub(crate) mod make;
pub(crate) mod packaged;
pub(crate) mod patch;
pub(crate) mod plan;
pub(crate) mod rpm;
pub(crate) mod spec;
pub(crate) mod toolchain;
pub(crate) mod tree;
pub(crate) mod verify;
