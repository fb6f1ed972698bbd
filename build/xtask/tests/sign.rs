//! `cargo xtask keygen` and `cargo xtask sign`: keys are made safely, and a
//! module signed with the development key verifies under the keys the
//! manager trusts by default, while one signed with another key does not.
use bundle::{verify, BundleError, Target};
use std::os::unix::fs::PermissionsExt;

fn scratch() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("xtask-sign-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn keygen_writes_a_private_pair_and_never_overwrites() {
    let stem = scratch().join("release");
    let (secret, public) = xtask::keys::keygen(&stem).unwrap();
    assert_eq!(std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777, 0o600, "secret key is private");
    let key = xtask::keys::load_key(&secret).unwrap();
    assert_eq!(std::fs::read_to_string(&public).unwrap(), xtask::keys::public_of(&key));
    assert!(xtask::keys::keygen(&stem).unwrap_err().contains("refusing to overwrite"));
}

#[test]
fn signed_modules_verify_only_under_trusted_keys() {
    let dir = scratch();
    let image = dir.join("kv-v2.so");
    std::fs::write(&image, xtask::build_module("kv-v2").unwrap()).unwrap();
    let root = xtask::workspace_root();
    let dev = dir.join("kv-v2.dev.bundle");
    xtask::keys::sign(&root.join("keys/dev.key"), Target::Host, &image, &dev).unwrap();
    let bytes = std::fs::read(&dev).unwrap();
    let read = |img: &[u8]| update_manager::image::descriptor(img).ok();
    let v = verify(&bytes, Target::Host, update_manager::TRUSTED_KEYS, read).expect("dev-signed bundle verifies");
    assert_eq!(v.header.module_version, 2);

    let (other_key, _) = xtask::keys::keygen(&dir.join("other")).unwrap();
    let other = dir.join("kv-v2.other.bundle");
    xtask::keys::sign(&other_key, Target::Host, &image, &other).unwrap();
    let bytes = std::fs::read(&other).unwrap();
    assert!(matches!(
        verify(&bytes, Target::Host, update_manager::TRUSTED_KEYS, read),
        Err(BundleError::UnknownKey(_))
    ));
    // An x86-64 image cannot be signed as an aarch64 one.
    let err = xtask::keys::sign(&root.join("keys/dev.key"), Target::Aarch64Sel4, &image, &dir.join("x")).unwrap_err();
    assert!(err.contains("not Aarch64"), "{err}");
}
