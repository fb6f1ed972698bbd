//! Every program starts at sel4-pd's `__upd_entry`, which resets `.data`
//! and `.bss` when the PD is restarted (see build/sel4/pd/src/reset.rs).
fn main() {
    println!("cargo:rustc-link-arg-bins=--entry=__upd_entry");
    println!("cargo:rustc-link-arg-bins=--undefined=__upd_entry");
}
