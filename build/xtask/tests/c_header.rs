//! The committed C headers (interfaces/include) are exactly what
//! `cargo xtask c-header` generates from the Rust definitions: a change to
//! the module ABI or the kv wire format that is not carried into them
//! fails here, so C modules cannot silently drift from the Rust side.
#[test]
fn committed_c_headers_match_the_rust_definitions() {
    let root = xtask::workspace_root();
    for h in xtask::cheader::generate().unwrap() {
        let committed = std::fs::read_to_string(root.join(h.path)).unwrap_or_default();
        assert!(
            committed == h.text,
            "{} differs from what the Rust definitions generate: run `cargo xtask c-header` and commit it",
            h.path
        );
    }
}

/// The headers stand on their own in a freestanding C11 build, warnings as
/// errors (the layout assertions in them run here too).
#[test]
fn c_headers_compile_on_their_own() {
    let dir = std::env::temp_dir().join(format!("c-header-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("both.c");
    std::fs::write(&src, "#include \"upd_kv.h\"\n#include \"upd_module.h\"\n#include \"upd_kv.h\"\nint x;\n").unwrap();
    let out = std::process::Command::new(xtask::cmodule::host_cc())
        .args(["-std=c11", "-Wall", "-Wextra", "-Wpedantic", "-Werror", "-ffreestanding", "-c", "-o"])
        .arg(dir.join("both.o"))
        .arg(format!("-I{}", xtask::workspace_root().join(xtask::cheader::INCLUDE_DIR).display()))
        .arg(&src)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
