//! A blob module (version 92) whose import breaks off part way: a streamed
//! transfer that fails in the middle must roll back with nothing lost.
#![no_std]

module_rt::export_module!(blob::Blob<92, { blob::fault::CUT_IMPORT }>);
