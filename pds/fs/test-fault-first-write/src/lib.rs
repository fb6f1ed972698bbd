//! Test module: fs-v5 that faults half way through the first write to an
//! empty file in a directory (after the crate wrote half of it and fs-core
//! the file's directory entry; staged, so none of it reaches the disk).
#![no_std]

module_rt::export_module!(fs_faulty::Faulty<{ fs_faulty::mode::FAULT_FIRST_WRITE }>);
