//! A new version that misbehaves (spins, faults late, panics, floods its
//! log) never freezes the system or loses a request: the manager notices
//! within a deadline, stops the slot, and rolls the update back; the
//! console answers all along. Four clients check every reply meanwhile.
use std::time::{Duration, Instant};
use system_tests::{assert_clean_progress, system_with_store, Row, System};

fn boot() -> System {
    let mut sys = System::boot(Some(&system_with_store("test-images.bin")));
    // Let every client start before the first look.
    std::thread::sleep(Duration::from_millis(300));
    let _ = sys.status();
    sys
}

fn live_versions(rows: &[Row]) -> Vec<(String, String)> {
    rows.iter().filter(|r| r.service == "kv" && r.state == "live").map(|r| (r.pd.clone(), r.version.clone())).collect()
}

/// Times one `status` (the console must answer while a slot misbehaves).
fn timed_status(sys: &mut System) -> (Vec<Row>, Duration) {
    let t = Instant::now();
    let rows = sys.status();
    (rows, t.elapsed())
}

/// An update to `image` commits, then the new version misbehaves in a
/// call (or its first notification): the service must go back to kv-v2
/// with every client clean, and the console must answer meanwhile.
fn rolled_back_after_commit(image: &str) {
    let mut sys = boot();
    assert!(sys.command("update kv kv-v2").contains("done: kv0 runs kv-v2"));
    sys.command("accept kv");
    let before = sys.status();
    let out = sys.command(&format!("update kv {image}"));
    assert!(out.contains(&format!("done: kv0 runs {image}")), "{out}");
    // The console answers while the new version misbehaves.
    let (_, took) = timed_status(&mut sys);
    assert!(took < Duration::from_secs(10), "status took {took:?}");
    let report = sys.wait_for("rolled back on probation", Duration::from_secs(60));
    assert!(report.contains(image) || report.contains("kv0_") || report.contains("kv1_"), "{report}");
    let rest = sys.wait_for("nothing was lost", Duration::from_secs(10));
    assert!(rest.contains("runs kv-v2"), "{rest}");
    let after = assert_clean_progress(&mut sys, &before);
    for (pd, v) in live_versions(&after) {
        assert_eq!(v, "2", "{pd} is back on kv-v2");
    }
    // One fault (or hang) each at most: no crash loop.
    for r in after.iter().filter(|r| r.service == "kv") {
        assert!(r.faults <= 1, "{r:?}");
    }
    assert_eq!(sys.shutdown(), 0);
}

#[test]
fn a_version_that_spins_in_a_call_after_its_commit_is_rolled_back() {
    rolled_back_after_commit("kv-late-spin");
}

#[test]
fn a_version_that_faults_in_a_call_after_its_commit_is_rolled_back() {
    rolled_back_after_commit("kv-late-fault");
}

#[test]
fn a_version_that_panics_in_a_call_after_its_commit_is_rolled_back() {
    rolled_back_after_commit("kv-late-panic");
}

#[test]
fn a_version_that_spins_in_notified_is_rolled_back() {
    rolled_back_after_commit("kv-spin-notified");
}

/// Misbehaving before the commit: the update fails, the old version
/// never stopped serving for long, nothing is lost.
#[test]
fn a_version_that_spins_before_its_commit_is_refused() {
    let mut sys = boot();
    let before = sys.status();
    for (image, phase) in [("kv-spin-init", "build"), ("kv-spin-import", "transfer")] {
        let t = Instant::now();
        let out = sys.command(&format!("update kv {image}"));
        assert!(out.contains(&format!("{phase:<9} FAILED")), "{image}: {out}");
        // Caught by the watchdog (inside one event too long), not left to
        // the step's deadline: the old slots stand still meanwhile.
        assert!(out.contains("hung (inside one event"), "{image}: {out}");
        assert!(out.contains("nothing was lost"), "{image}: {out}");
        assert!(t.elapsed() < Duration::from_secs(30), "{image}: the update gave up in {:?}", t.elapsed());
    }
    let after = assert_clean_progress(&mut sys, &before);
    for (pd, v) in live_versions(&after) {
        assert_eq!(v, "1", "{pd} still runs kv-v1");
    }
    // The slots that hung were reset: empty, ready for the next update.
    assert!(sys.command("update kv kv-v2").contains("done: kv0 runs kv-v2"));
    assert_eq!(sys.shutdown(), 0);
}

/// Finding 4: a fault from a failed build, typed ahead of the next update,
/// is about the incarnation that faulted, never the slot's next module.
#[test]
fn a_fault_is_attributed_to_the_incarnation_that_faulted() {
    let mut sys = boot();
    let before = sys.status();
    sys.type_bytes(b"update kv kv-fault-init\nupdate kv kv-v3\n");
    let first = sys.next_output(Duration::from_secs(60));
    assert!(first.contains("build     FAILED"), "{first}");
    let second = sys.next_output(Duration::from_secs(60));
    assert!(second.contains("done: kv0 runs kv-v3"), "{second}");
    let after = assert_clean_progress(&mut sys, &before);
    assert!(!sys.command("log all").contains("state was lost"));
    for (pd, v) in live_versions(&after) {
        assert_eq!(v, "3", "{pd} runs kv-v3");
    }
    assert_eq!(sys.shutdown(), 0);
}

/// After its probation a version is final; one that then keeps faulting
/// is reloaded with a backoff and, after a few faults, held: no crash
/// loop, and the console says what was lost.
#[test]
fn a_final_version_that_keeps_faulting_is_held_not_restarted_for_ever() {
    let mut sys = boot();
    assert!(sys.command("probation 1 1").contains("probation for the next updates"));
    let out = sys.command("update kv kv-late-fault");
    assert!(out.contains("done: kv0 runs kv-late-fault"), "{out}");
    sys.wait_for("probation over", Duration::from_secs(30));
    sys.wait_for("its state was lost", Duration::from_secs(60));
    // Each instance (kv0, kv1) is held on its own.
    sys.wait_for("held, not restarted", Duration::from_secs(120));
    sys.wait_for("held, not restarted", Duration::from_secs(120));
    // Held: the fault counts stop growing.
    let rows = sys.status();
    std::thread::sleep(Duration::from_millis(1500));
    let later = sys.status();
    let faults = |rows: &[Row]| rows.iter().filter(|r| r.service == "kv").map(|r| r.faults).sum::<u32>();
    assert_eq!(faults(&rows), faults(&later), "no more restarts once held");
    assert!(faults(&later) <= 2 * 4 + 2, "a few faults, not a storm: {later:?}");
    // An operator update brings the service back (at or above the floor
    // that the final kv-late-fault, v102, raised).
    assert!(sys.command("update kv kv-v2").contains("below the version floor v102"));
    let out = sys.command("update kv kv-log-flood");
    assert!(out.contains("kv0 runs kv-log-flood") || out.contains("kv1 runs kv-log-flood"), "{out}");
    assert_eq!(sys.shutdown(), 0);
}

/// A version that logs a line per call: the shell rate-limits its log;
/// the console and the clients do not notice.
#[test]
fn a_version_that_floods_its_log_costs_nobody_else() {
    let mut sys = boot();
    let before = sys.status();
    assert!(sys.command("update kv kv-log-flood").contains("done: kv0 runs kv-log-flood"));
    for _ in 0..5 {
        let (_, took) = timed_status(&mut sys);
        assert!(took < Duration::from_secs(5), "status took {took:?}");
    }
    system_tests::systems::wait_log(&sys, "line(s) dropped", Duration::from_secs(20));
    assert_clean_progress(&mut sys, &before);
    assert_eq!(sys.shutdown(), 0);
}
