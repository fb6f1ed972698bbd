//! Test module: fs-v5 that faults inside the crate's own first write to an
//! empty file in a directory, in the block device, right after the crate
//! wrote the FAT entry of the file's new first cluster (before any data,
//! and before the file's directory entry names the cluster).
#![no_std]

module_rt::export_module!(fs_faulty::Faulty<{ fs_faulty::mode::FAULT_FIRST_ALLOC }>);
