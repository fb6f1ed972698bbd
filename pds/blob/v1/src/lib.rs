//! Blob service, version 1.
#![no_std]

module_rt::export_module!(blob_core::Blob<1>);
