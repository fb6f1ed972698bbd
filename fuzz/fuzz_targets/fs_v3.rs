//! fs v3's adapter over damaged disks (see `fs/harness.rs`).
#![no_main]
#[path = "fs/harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run::<fs_v3::Sdmmc, 3, 1>(data));
