//! Blob service, version 2.
#![no_std]

module_rt::export_module!(blob::Blob<2>);
