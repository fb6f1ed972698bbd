//! Test module: fs-v5 that faults half way through the first write to an
//! empty file in a directory (after its first byte and directory entry,
//! which fs-core writes first, and part of the rest).
#![no_std]

module_rt::export_module!(fs_faulty::Faulty<{ fs_faulty::mode::FAULT_FIRST_WRITE }>);
