//! The guide's example (README: 'Adding a new service type'): the counter
//! service, declared in services.toml, boots with system.xml and is
//! updated v1 -> v2 (state schema 1 -> 2) and back under its client, which
//! checks every reply.
use std::time::Duration;
use system_tests::{assert_clean_progress, System};

#[test]
fn the_counter_service_updates_to_v2_and_back_under_its_client() {
    let mut sys = System::boot(None);
    std::thread::sleep(Duration::from_millis(300));
    let rows = sys.status();
    let live = |rows: &[system_tests::Row]| {
        rows.iter().find(|r| r.service == "counter" && r.state == "live").map(|r| r.version.clone())
    };
    assert_eq!(live(&rows).as_deref(), Some("1"), "counter0 boots on v1: {rows:?}");
    let mut before = rows;
    // Without a probation the state moves each time (v2 imports schema 1,
    // and exports it for v1); with one, the rollback replays v2's calls on v1.
    let steps = [
        ("probation 0", None, true),
        ("update counter counter-v2", Some("2"), true),
        ("rollback counter", Some("1"), true),
        ("probation 60000", None, true),
        // Rolled back at once, before the probation's journal fills.
        ("update counter counter-v2", Some("2"), false),
        ("rollback counter", Some("1"), true),
    ];
    let mut end = before.clone();
    for (line, version, wait) in steps {
        let out = sys.command(line);
        let Some(v) = version else { continue };
        assert!(out.contains(&format!("done: counter0 runs counter-v{v}")), "{line}: {out}");
        if wait {
            end = assert_clean_progress(&mut sys, &before);
            assert_eq!(live(&end).as_deref(), Some(v), "after {line}: {end:?}");
            before = end.clone();
        }
    }
    assert!(sys.command("log 1").contains("replayed"), "the last rollback replayed v2's calls");
    let c = end.iter().find(|r| r.pd == "counter_client0").expect("the counter client's row");
    assert_eq!((c.detail_num("wrong"), c.detail_num("failed")), (Some(0), Some(0)), "{c:?}");
    assert!(c.detail_num("verified").unwrap() > 100, "{c:?}");
    assert_eq!(sys.shutdown(), 0);
}
