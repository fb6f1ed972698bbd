//! A blob module (version 91) whose export breaks off part way: a streamed
//! transfer that fails in the middle must roll back with nothing lost.
#![no_std]

module_rt::export_module!(blob_core::Blob<91, { blob_core::fault::CUT_EXPORT }>);
