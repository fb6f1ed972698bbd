//! Test module: fs-v5 that, after a few hundred writes, performs part of a
//! write (data and a cluster allocation reach the disk) and then faults.
#![no_std]

module_rt::export_module!(fs_faulty::Faulty<{ fs_faulty::mode::FAULT }>);
