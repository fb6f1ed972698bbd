//! Test module: fs-v5 that faults in the `prepare` (the probation's
//! checkpoint) right after the first write to an empty file in a
//! directory completed: that call's blocks are on the disk, and must hold
//! the file's directory entry with its new cluster.
#![no_std]

module_rt::export_module!(fs_faulty::Faulty<{ fs_faulty::mode::FAULT_AFTER_FIRST_WRITE }>);
