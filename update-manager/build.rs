//! The manager's trusted public keys are fixed at build time: the files
//! named by `UPD_TRUSTED_KEYS` (comma-separated `.pub` files written by
//! `cargo xtask keygen`), or else the repository's development key.
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=UPD_TRUSTED_KEYS");
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("..");
    let files: Vec<PathBuf> = match std::env::var("UPD_TRUSTED_KEYS") {
        Ok(list) if !list.trim().is_empty() => list.split(',').map(|p| PathBuf::from(p.trim())).collect(),
        _ => vec![root.join("keys/dev.pub")],
    };
    let mut keys = String::new();
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
        let text = std::fs::read_to_string(f).unwrap_or_else(|e| panic!("trusted key {}: {e}", f.display()));
        let hex = text.split_whitespace().next().unwrap_or("");
        assert!(
            hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
            "{}: not a 32-byte hex public key",
            f.display()
        );
        let bytes: Vec<String> = (0..32).map(|i| format!("0x{}", &hex[2 * i..2 * i + 2])).collect();
        keys.push_str(&format!("    bundle::TrustedKey([{}]),\n", bytes.join(", ")));
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("trusted_keys.rs");
    std::fs::write(out, format!("/// Public keys whose bundles the manager admits.\npub const TRUSTED_KEYS: &[bundle::TrustedKey] = &[\n{keys}];\n")).unwrap();
}
