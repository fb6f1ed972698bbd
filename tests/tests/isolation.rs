//! Services that are not being updated never pause: while blob is updated
//! and rolled back again and again, the kv clients' verified replies grow
//! in every 50 ms window (a shorter window would measure the 2-core
//! machine's scheduler, which can leave any one of 8 busy processes off the
//! CPU for a few milliseconds, update or not).
use std::time::{Duration, Instant};
use system_tests::{clients, System};

#[test]
fn kv_keeps_serving_while_blob_is_updated() {
    let sys_xml = xtask::workspace_root().join("tests/systems/two-services.xml");
    let mut sys = System::boot(Some(&sys_xml));
    std::thread::sleep(Duration::from_millis(200));
    let mut last = clients(&sys.status());
    assert_eq!(last.len(), 2);
    let mut updates = 0;
    for round in 0..40 {
        let window = Instant::now();
        while window.elapsed() < Duration::from_millis(50) {
            let cmd = if updates % 2 == 0 { "update blob blob-v2" } else { "rollback blob" };
            let out = sys.command(cmd);
            assert!(out.contains("done: blob0 runs"), "{out}");
            updates += 1;
        }
        let now = clients(&sys.status());
        for (before, after) in last.iter().zip(&now) {
            let (v0, v1) = (before.detail_num("verified").unwrap(), after.detail_num("verified").unwrap());
            assert!(v1 > v0, "round {round}: {} made no progress ({v0} -> {v1}) while blob was updated", after.pd);
            assert_eq!(after.detail_num("wrong"), Some(0));
            assert_eq!(after.detail_num("retried"), Some(0), "kv was never moved");
        }
        last = now;
    }
    assert!(updates >= 80, "at least two blob updates per window ({updates})");
    let kv = sys.status().into_iter().find(|r| r.pd == "kv0_a").unwrap();
    assert_eq!((kv.state.as_str(), kv.detail.as_str()), ("live", "gen 1 image kv-v1"), "kv was not touched");
    assert_eq!(sys.shutdown(), 0);
}

#[test]
fn the_test_systems_pass_the_checker() {
    let dir = system_tests::host_image();
    for xml in ["system.xml", "tests/systems/two-services.xml"] {
        xtask::check(&xtask::workspace_root().join(xml), &[dir.to_owned()]).unwrap_or_else(|e| panic!("{xml}: {e}"));
    }
}
