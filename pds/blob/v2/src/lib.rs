//! Blob service, version 2.
#![no_std]

module_rt::export_module!(blob_core::Blob<2>);
