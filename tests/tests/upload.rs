//! Updates arrive from outside after boot: kv v4, which is in no image
//! store, is built, signed, uploaded over the console of the running
//! system under load, and updated to, with nothing lost. Bundles that are
//! not genuine are refused and change nothing; the console keeps working.
use bundle::Target;
use std::time::Duration;
use system_tests::{clients, System};
use upload::send::{send_bundle, Outcome};

fn signed(package: &str, key: &std::path::Path) -> Vec<u8> {
    let dir = std::env::temp_dir().join(format!("upload-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let image = dir.join(format!("{package}.{}.so", key.file_stem().and_then(|s| s.to_str()).unwrap_or("key")));
    std::fs::write(&image, xtask::build_module(package).unwrap()).unwrap();
    let stem = key.file_stem().and_then(|s| s.to_str()).unwrap_or("key");
    let out = dir.join(format!("{package}.{stem}.bundle"));
    xtask::keys::sign(key, Target::Host, &image, &out).unwrap();
    std::fs::read(out).unwrap()
}

#[test]
fn a_bundle_uploaded_after_boot_is_admitted_and_updated_to_under_load() {
    let dev_key = xtask::workspace_root().join("keys/dev.key");
    let bundle = signed("kv-v4", &dev_key);
    let mut sys = System::boot(None);
    assert!(!sys.command("images").contains("kv-v4"), "not in the image store");
    let before = clients(&sys.status());
    let mut seen = Vec::new();
    let outcome = send_bundle(&mut sys, &bundle, |sent, total| seen.push((sent, total))).unwrap();
    assert!(outcome.admitted, "{outcome:?}");
    assert!(outcome.text.starts_with("admitted kv-v4 (kv v4, schema 2,"), "{}", outcome.text);
    assert_eq!(seen.last().map(|&(s, t)| s == t), Some(true), "progress reached the end");
    assert!(sys.command("images").contains("kv-v4"));
    let out = sys.command("update kv kv-v4");
    assert!(out.contains("done: kv0 runs kv-v4 (v4, schema 2)"), "{out}");
    std::thread::sleep(Duration::from_millis(300));
    let after = clients(&sys.status());
    for (b, a) in before.iter().zip(&after) {
        assert!(a.detail_num("verified") > b.detail_num("verified"), "{} keeps working", a.pd);
        assert_eq!((a.detail_num("wrong"), a.detail_num("failed")), (Some(0), Some(0)), "{a:?}");
    }
    // The same bundle again: refused, nothing changes.
    let again = send_bundle(&mut sys, &bundle, |_, _| {}).unwrap();
    assert_eq!(
        again,
        Outcome { admitted: false, text: "refused: the manager already holds an image named kv-v4".into() }
    );
    assert!(sys.command("log").contains("admitted kv-v4"));
    assert_eq!(sys.shutdown(), 0);
}

#[test]
fn bundles_that_are_not_genuine_are_refused_and_change_nothing() {
    let dir = std::env::temp_dir().join(format!("upload-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (stranger, _) = xtask::keys::keygen(&dir.join("stranger")).unwrap();
    let unknown = signed("kv-v4", &stranger);
    let mut sys = System::boot(None);
    let images = sys.command("images");
    let refused = send_bundle(&mut sys, &unknown, |_, _| {}).unwrap();
    assert!(!refused.admitted && refused.text.contains("unknown key"), "{refused:?}");
    let mut corrupt = signed("kv-v4", &xtask::workspace_root().join("keys/dev.key"));
    let mid = corrupt.len() / 2;
    corrupt[mid] ^= 1; // the sender's copy is damaged: the digest catches it
    let refused = send_bundle(&mut sys, &corrupt, |_, _| {}).unwrap();
    assert!(!refused.admitted && refused.text.contains("digest does not match"), "{refused:?}");
    let refused = send_bundle(&mut sys, b"this is not a bundle at all, just text", |_, _| {}).unwrap();
    assert!(!refused.admitted && refused.text.contains("not a well-formed bundle"), "{refused:?}");
    assert_eq!(sys.command("images"), images, "nothing entered the store");
    assert!(sys.command("version").contains("uploads enabled"));
    assert_eq!(sys.shutdown(), 0);
}
