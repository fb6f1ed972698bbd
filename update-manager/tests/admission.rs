//! The manager reads a module's descriptor out of the image before loading
//! it; anything that is not a module for this system is refused, saying why.
use interfaces::abi::DESCRIPTOR_MAGIC;
use update_manager::image::descriptor;

fn kv_v1() -> Vec<u8> {
    xtask::build_module("kv-v1").expect("build kv-v1")
}

#[test]
fn reads_the_descriptor_of_a_real_module() {
    let d = descriptor(&kv_v1()).unwrap();
    assert_eq!((d.service(), d.module_version, d.state_schema), ("kv", 1, 1));
}

#[test]
fn refuses_wrong_architecture_corruption_and_truncation() {
    let img = kv_v1();
    let mut arm = img.clone();
    arm[18..20].copy_from_slice(&interfaces::elf::EM_AARCH64.to_le_bytes());
    assert!(descriptor(&arm).unwrap_err().contains("built for Aarch64, not X86_64"), "wrong target");
    let mut bad = img.clone();
    let at = bad.windows(8).position(|w| w == DESCRIPTOR_MAGIC).unwrap();
    bad[at + 8..at + 12].copy_from_slice(&7u32.to_le_bytes());
    assert!(descriptor(&bad).unwrap_err().contains("ABI version 7"));
    assert!(descriptor(&img[..img.len() / 2]).unwrap_err().contains("outside the image"));
}
