fn main() {
    println!("cargo:rustc-link-arg-bins=--entry=__upd_entry"); // as every program: see build/sel4/kv_client
    println!("cargo:rustc-link-arg-bins=--undefined=__upd_entry");
}
