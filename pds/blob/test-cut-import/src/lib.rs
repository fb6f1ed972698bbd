//! A blob module (version 92) whose import breaks off part way: a streamed
//! transfer that fails in the middle must roll back with nothing lost.
#![no_std]

module_rt::export_module!(blob_core::Blob<92, { blob_core::fault::CUT_IMPORT }>);
