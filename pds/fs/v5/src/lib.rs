//! fs v5: the file service on embedded-sdmmc 0.10.0 (block types in
//! `embedded-sdmmc-types`, directory iteration that can stop, and
//! `delete_entry_in_dir`, which also removes empty directories: the first
//! release with which the service can `Rmdir`). State schema 2.
#![no_std]

mod adapter;
pub use adapter::*;

module_rt::export_module!(fs_core::FsModule<Sdmmc, 5, 2>);
