//! Updates arrive from outside after boot: kv v4, which is in no image
//! store, is built, signed, uploaded over the console of the running
//! system under load, and updated to, with nothing lost. Bundles that are
//! not genuine are refused and change nothing; the console keeps working.
use bundle::Target;
use std::time::Duration;
use system_tests::{clients, System};
use upload::send::{send_bundle, Outcome};

fn signed(package: &str, key: &std::path::Path) -> Vec<u8> {
    // Files of their own for every call: the tests run in parallel.
    static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("upload-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let stem = key.file_stem().and_then(|s| s.to_str()).unwrap_or("key");
    let image = dir.join(format!("{package}.{stem}.{call}.so"));
    std::fs::write(&image, xtask::build_module(package).unwrap()).unwrap();
    let out = dir.join(format!("{package}.{stem}.{call}.bundle"));
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

/// system.xml with an image store holding only kv-v1 and serial-v1, so
/// that kv-v2, -v3, -v4 and serial-v2 can all be uploaded.
fn system_with_small_store(dir: &std::path::Path) -> std::path::PathBuf {
    let images: Vec<(&str, Vec<u8>)> =
        ["kv-v1", "serial-v1"].iter().map(|&p| (p, xtask::build_module(p).unwrap())).collect();
    let store = dir.join("small-store.bin");
    xtask::write_store(&store, &images).unwrap();
    let xml = std::fs::read_to_string(xtask::workspace_root().join("system.xml")).unwrap();
    let patched = xml.replace(r#"prefill_path="images.bin""#, &format!(r#"prefill_path="{}""#, store.display()));
    assert_ne!(xml, patched);
    let path = dir.join("system-small-store.xml");
    std::fs::write(&path, patched).unwrap();
    path
}

/// The version each live slot of `service` runs, as its shell reports it
/// (the module's own descriptor, not the manager's idea of it).
fn live_versions(sys: &mut System, service: &str) -> Vec<String> {
    let rows = sys.status();
    rows.iter().filter(|r| r.service == service && r.state == "live").map(|r| r.version.clone()).collect()
}

fn update_runs(sys: &mut System, service: &str, image: &str, version: &str) {
    let out = sys.command(&format!("update {service} {image}"));
    assert!(out.contains(&format!("runs {image} (v{version},")), "{out}");
    let live = live_versions(sys, service);
    assert!(!live.is_empty() && live.iter().all(|v| v == version), "{image}: the slots run {live:?}, not v{version}");
}

#[test]
fn a_full_upload_store_refuses_more_and_every_listed_image_runs_its_own_code() {
    let dir = std::env::temp_dir().join(format!("upload-full-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let dev = xtask::workspace_root().join("keys/dev.key");
    let (stranger, _) = xtask::keys::keygen(&dir.join("stranger")).unwrap();
    // kv-v4 first: the largest, so that on a system that received the
    // next upload over it, its listed length would hold the forged image.
    let genuine: Vec<(&str, Vec<u8>)> =
        ["kv-v4", "kv-v2", "kv-v3", "serial-v2"].iter().map(|&p| (p, signed(p, &dev))).collect();
    let forged = signed("kv-v1", &stranger);
    let mut sys = System::boot(Some(&system_with_small_store(&dir)));
    for (name, bundle) in &genuine {
        let out = send_bundle(&mut sys, bundle, |_, _| {}).unwrap();
        assert!(out.admitted && out.text.starts_with(&format!("admitted {name} ")), "{out:?}");
    }
    let images = sys.command("images");
    // Every upload slot holds a listed image: the forged bundle is refused
    // at its first frame, before any of its bytes is stored.
    let refused = send_bundle(&mut sys, &forged, |_, _| {}).unwrap();
    assert!(!refused.admitted && refused.text.starts_with("refused: the upload store is full"), "{refused:?}");
    assert_eq!(sys.command("images"), images, "the refusal changed nothing");
    assert!(sys.command("log 1").contains("refused: the upload store is full"));
    // Every listed image runs its own code.
    update_runs(&mut sys, "kv", "kv-v4", "4");
    update_runs(&mut sys, "kv", "kv-v2", "2");
    update_runs(&mut sys, "kv", "kv-v3", "3");
    update_runs(&mut sys, "serial", "serial-v2", "2");

    // Forgetting: only an uploaded image that no slot holds.
    assert_eq!(
        sys.command("forget kv-v1").trim(),
        "refused: kv-v1 is built into the image store; it cannot be forgotten"
    );
    assert!(sys.command("forget kv-v3").starts_with("refused: kv-v3 is live in kv0 (slot"));
    assert!(sys.command("forget kv-v2").contains("refused: kv-v2 is kept in slot kv0_"), "kept for a rollback");
    assert!(sys.command("forget serial-v2").starts_with("refused: serial-v2 is live in serial0"));
    assert!(sys.command("forget kv-v9").contains("error: no image named 'kv-v9'"));
    assert_eq!(sys.command("forget kv-v4").trim(), "forgot kv-v4: upload slot 0 takes the next upload");
    assert!(!sys.command("images").contains("kv-v4"));
    // The freed slot takes uploads again: a forged one is refused for what
    // it is, one broken off half way is dropped, and neither leaves a
    // trace; a genuine one is admitted and runs.
    let refused = send_bundle(&mut sys, &forged, |_, _| {}).unwrap();
    assert!(!refused.admitted && refused.text.contains("unknown key"), "{refused:?}");
    break_off_upload(&mut sys, &forged);
    let out = send_bundle(&mut sys, &genuine[0].1, |_, _| {}).unwrap();
    assert!(out.admitted, "{out:?}");
    update_runs(&mut sys, "kv", "kv-v4", "4");
    update_runs(&mut sys, "kv", "kv-v2", "2");
    let rows = sys.status();
    for c in rows.iter().filter(|r| r.service == "client") {
        assert_eq!((c.detail_num("wrong"), c.detail_num("failed")), (Some(0), Some(0)), "{c:?}");
    }
    assert_eq!(sys.shutdown(), 0);
}

/// Sends the first frames of an upload of `bundle` and then nothing more.
fn break_off_upload(sys: &mut System, bundle: &[u8]) {
    use upload::send::Line;
    let mut begin = (bundle.len() as u64).to_le_bytes().to_vec();
    begin.extend_from_slice(&bundle[..bundle::HEADER_LEN]);
    let mut data = 0u32.to_le_bytes().to_vec();
    data.extend_from_slice(&bundle[..800]);
    for (seq, (kind, payload)) in [(upload::Kind::Begin, begin), (upload::Kind::Data, data)].into_iter().enumerate() {
        let mut buf = [0u8; upload::MAX_PAYLOAD + upload::FRAME_OVERHEAD];
        let n = upload::encode(kind, 100 + seq as u16, &payload, &mut buf).unwrap();
        sys.send(&buf[..n]).unwrap();
        let answer = sys.recv_frame(Duration::from_secs(10)).unwrap();
        assert!(matches!(answer, Some((upload::Kind::Ack, s, _)) if s == 100 + seq as u16), "{answer:?}");
    }
}

#[test]
fn uploads_updates_and_rollbacks_below_the_version_floor_are_refused() {
    let dir = std::env::temp_dir().join(format!("upload-floor-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let dev = xtask::workspace_root().join("keys/dev.key");
    let (v3, v2) = (signed("kv-v3", &dev), signed("kv-v2", &dev));
    let mut sys = System::boot(Some(&system_with_small_store(&dir)));
    assert!(send_bundle(&mut sys, &v3, |_, _| {}).unwrap().admitted);
    update_runs(&mut sys, "kv", "kv-v3", "3");
    // Final, so that a rollback is the cold one, checked at admission (a
    // rollback on probation replays the journal into the version left).
    // Its acceptance raises the floor to v3.
    assert!(sys.command("accept kv").contains("the version floor of kv is now v3"));
    assert_eq!(sys.command("floor kv 3").trim(), "the version floor of service kv is v3 already");
    // A genuine bundle below the floor: refused, nothing stored.
    let images = sys.command("images");
    let floors = images.lines().last().unwrap_or_default();
    assert!(floors.starts_with("version floors: ") && floors.contains(" kv v3"), "{images}");
    let refused = send_bundle(&mut sys, &v2, |_, _| {}).unwrap();
    assert_eq!(
        refused,
        Outcome { admitted: false, text: "refused: kv v2 is below the version floor v3 of service kv".into() }
    );
    assert_eq!(sys.command("images"), images);
    // An update to a built-in image below it, and a cold rollback to the
    // version kept in the other slot: refused at admission.
    let why = "  admit     FAILED: kv v1 is below the version floor v3 of service kv";
    let out = sys.command("update kv kv-v1");
    assert!(out.contains(why) && out.contains("rolled back"), "{out}");
    let out = sys.command("rollback kv");
    assert!(out.contains(why), "{out}");
    assert_eq!(live_versions(&mut sys, "kv"), ["3", "3"]);
    // The floor never falls.
    assert_eq!(sys.command("floor kv 2").trim(), "refused: the version floor of service kv is v3; it only rises");
    let floors = sys.command("floor");
    assert!(floors.starts_with("SERVICE          FLOOR\nserial           none\nkv               v3\n"), "{floors}");
    assert_eq!(sys.shutdown(), 0);
}
