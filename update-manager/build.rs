//! The manager's trusted public keys are fixed at build time: the files
//! named by `UPD_TRUSTED_KEYS` (comma-separated `.pub` files written by
//! `cargo xtask keygen`), or else the repository's development key. So
//! are the initial version floors: `UPD_VERSION_FLOORS`, e.g.
//! `kv=2,serial=1` (none if unset).
extern crate alloc;

use std::path::PathBuf;

#[path = "src/floor_spec.rs"]
mod floor_spec;

fn main() {
    version_floors();
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

fn version_floors() {
    println!("cargo:rerun-if-env-changed=UPD_VERSION_FLOORS");
    let spec = std::env::var("UPD_VERSION_FLOORS").unwrap_or_default();
    let floors = floor_spec::parse_floors(&spec).unwrap_or_else(|e| panic!("UPD_VERSION_FLOORS: {e}"));
    let items: Vec<String> = floors.iter().map(|(s, v)| format!("    ({s:?}, {v}),\n")).collect();
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("version_floors.rs");
    std::fs::write(
        out,
        format!(
            "/// Each service's version floor when the manager starts (`UPD_VERSION_FLOORS`).\n\
             pub const VERSION_FLOORS: &[(&str, u32)] = &[\n{}];\n",
            items.concat()
        ),
    )
    .unwrap();
}
