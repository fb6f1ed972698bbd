//! fs v4's adapter over damaged disks (see `fs/harness.rs`).
#![no_main]
#[path = "fs/harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run::<fs_v4::Sdmmc, 4, 2>(data));
