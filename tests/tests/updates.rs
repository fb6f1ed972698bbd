//! The update protocol under load: 4 clients (2 per kv instance) run and
//! check every reply while the service is updated and rolled back.
use std::time::{Duration, Instant};
use system_tests::{assert_clean_progress, client_totals, System};

#[test]
fn ten_thousand_updates_and_rollbacks_under_load_lose_nothing() {
    const TOTAL: usize = 10_000;
    const BATCH: usize = 50;
    let mut sys = System::boot(None);
    // Rollbacks here move the state back (the cold path); the hot path,
    // within a probation, has its own soak (tests/tests/chaos.rs).
    assert!(sys.command("probation 0").contains("0 ms"));
    std::thread::sleep(Duration::from_millis(300));
    let before = sys.status();
    let start = Instant::now();
    let mut done = 0;
    while done < TOTAL {
        let n = BATCH.min(TOTAL - done);
        let mut lines = String::new();
        for k in done..done + n {
            // update, rollback, update, rollback...; the target alternates
            // between v2 and v3 every 100 pairs, so the idle slot is
            // sometimes rebuilt and sometimes reused.
            if k % 2 == 0 {
                let target = if (k / 200) % 2 == 0 { "kv-v2" } else { "kv-v3" };
                lines.push_str(&format!("update kv {target}\n"));
            } else {
                lines.push_str("rollback kv\n");
            }
        }
        sys.type_bytes(lines.as_bytes());
        for k in done..done + n {
            let out = sys.next_output(Duration::from_secs(60));
            assert!(out.contains("done: kv0 runs") && out.contains("kv1 runs"), "operation {k} did not commit:\n{out}");
        }
        done += n;
    }
    let elapsed = start.elapsed();
    eprintln!(
        "{TOTAL} updates and rollbacks in {elapsed:.1?} ({:.2} ms each)",
        elapsed.as_secs_f64() * 1e3 / TOTAL as f64
    );
    // Every client finishes a full audit after the last switch: its whole
    // keyspace equals its model of the requests it made.
    let end = sys.status();
    let after = assert_clean_progress(&mut sys, &end);
    let (b, a) = (client_totals(&before), client_totals(&after));
    for ((name, v0, ..), (_, v1, ..)) in b.iter().zip(&a) {
        assert!(v1 > v0, "{name}: verified replies grew over the run ({v0} -> {v1})");
    }
    let log = sys.command("log");
    // Plus the boot of each instance (serial0, kv0, kv1, ...); no probation.
    let boots = xtask::description().instances().count();
    assert!(log.contains(&format!("{} update(s) in all", TOTAL + boots)), "{log}");
    // Back where it started: both instances on kv-v1.
    for r in after.iter().filter(|r| r.service == "kv" && r.state == "live") {
        assert_eq!(r.version, "1", "{r:?}");
    }
    assert_eq!(sys.shutdown(), 0);
}

#[test]
fn update_changes_the_data_structure_and_v1_clients_keep_working() {
    let mut sys = System::boot(None);
    // No probation: no version becomes final on its own, so the version
    // floor stays where it is and v3 -> v1 (a downgrade) is allowed.
    assert!(sys.command("probation 0").contains("0 ms"));
    let before = sys.status();
    let out = sys.command("update kv kv-v2");
    for phase in ["admit", "build", "quiesce", "transfer", "commit"] {
        assert!(out.contains(&format!("  {phase:<9} ok")), "phase {phase} printed:\n{out}");
    }
    assert!(out.contains("done: kv0 runs kv-v2 (v2, schema 2) in slot b (generation 2)"), "{out}");
    let out = sys.command("update kv kv-v3");
    assert!(out.contains("kv0 runs kv-v3 (v3, schema 2) in slot a (generation 3)"), "{out}");
    // v3 -> v1 is a downgrade: v3 writes schema 1 for it.
    let out = sys.command("update kv kv-v1");
    assert!(out.contains("kv0 runs kv-v1 (v1, schema 1) in slot b (generation 4)"), "{out}");
    let after = assert_clean_progress(&mut sys, &before);
    let kv0_b = after.iter().find(|r| r.pd == "kv0_b").unwrap();
    assert_eq!((kv0_b.state.as_str(), kv0_b.version.as_str()), ("live", "1"));
    assert!(kv0_b.detail.contains("gen 4"), "{kv0_b:?}");
    let kv0_a = after.iter().find(|r| r.pd == "kv0_a").unwrap();
    assert_eq!((kv0_a.state.as_str(), kv0_a.version.as_str()), ("retired", "3"), "kept for rollback");
    // Refusals change nothing and say why.
    assert_eq!(
        sys.command("update kv kv-v1").trim(),
        "update kv kv-v1: 2 instance(s)\n  admit     FAILED: kv0 already runs kv-v1\n\
         rolled back: every instance of 'kv' still runs its previous version; nothing was lost"
    );
    assert!(sys.command("update kv kv-v9").contains("error: no image named 'kv-v9'"));
    assert!(sys.command("update db kv-v2").contains("error: no instance of service 'db'"));
    let log = sys.command("log");
    assert!(log.contains("admit failed: kv0 already runs kv-v1; rolled back"), "{log}");
    assert_eq!(sys.shutdown(), 0);
}

#[test]
fn every_failure_before_commit_rolls_back_with_nothing_lost() {
    let mut sys = System::boot(Some(&system_tests::system_with_store("test-images.bin")));
    // Start from v2 so there is state to carry and converted state to check.
    assert!(sys.command("update kv kv-v2").contains("done:"));
    let cases = [
        ("kv-needs-timer", "", "build", "needs channel 'timer', which slot kv0_a lacks"),
        ("kv-fault-init", "", "build", "faulted"),
        ("kv-bad-import", "", "transfer", "module import failed with status -3"),
        ("kv-fault-import", "", "transfer", "faulted"),
        // Hardware faults, not panics: the slot process dies of SIGSEGV.
        ("kv-abort-init", "", "build", "faulted"),
        ("kv-abort-import", "", "transfer", "faulted"),
    ];
    for (image, args, phase, why) in cases {
        let before = sys.status();
        let out = sys.command(&format!("update kv {image}{args}"));
        assert!(
            out.contains(&format!("  {phase:<9} FAILED: ")) && out.contains(why),
            "{image}: expected {phase} to fail with '{why}':\n{out}"
        );
        assert!(out.contains("rolled back"), "{out}");
        let after = assert_clean_progress(&mut sys, &before);
        for r in after.iter().filter(|r| r.service == "kv" && r.state == "live") {
            assert_eq!((r.slot.as_str(), r.version.as_str()), ("b", "2"), "{image}: v2 still live in b: {r:?}");
        }
    }
    // A module that never quiesces: updating to it works (v2 quiesces),
    // updating away from it times out and rolls back.
    assert!(sys.command("update kv kv-never-ready").contains("done:"));
    let before = sys.status();
    let t = Instant::now();
    let out = sys.command("update kv kv-v3 --timeout 300");
    assert!(out.contains("  quiesce   FAILED: kv0: prepare not ready after 300 ms"), "{out}");
    assert!(t.elapsed() < Duration::from_secs(5), "the timeout bounds the attempt");
    let after = assert_clean_progress(&mut sys, &before);
    let faults: u32 = after.iter().map(|r| r.faults).sum();
    // A failing switch stops at the first instance: each faulting module
    // was loaded (and faulted) once.
    assert_eq!(faults, 4, "the four faulting modules faulted once each: {after:?}");
    let log = sys.command("log");
    for p in ["build failed", "transfer failed", "quiesce failed"] {
        assert!(log.contains(p), "log names '{p}':\n{log}");
    }
    assert_eq!(sys.shutdown(), 0);
}
