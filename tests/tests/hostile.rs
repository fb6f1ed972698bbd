//! Hostile clients: a client that writes the capability map faults (the
//! map is read-only in clients), the manager reports it and, when it keeps
//! faulting, leaves it stopped; nobody else notices. No client has a
//! channel to the manager, so none can reach its privileged operations.
use std::time::Duration;
use system_tests::{clients, System};

#[test]
fn a_client_writing_the_capability_map_faults_and_is_reported() {
    let xml = xtask::workspace_root().join("tests/systems/hostile-client.xml");
    let mut sys = System::boot(Some(&xml));
    let before = clients(&sys.status());
    // It faults, is restarted three times, faults again and is left stopped
    // (perhaps already while the system was booting).
    let stopped = "capwriter: exception 11; it faulted 4 times: left stopped";
    if !sys.transcript.contains(stopped) {
        sys.wait_for(stopped, Duration::from_secs(20));
    }
    assert_eq!(sys.transcript.matches("fault: capwriter: exception 11; restarting it").count(), 3);
    std::thread::sleep(Duration::from_millis(200));
    let rows = sys.status();
    let kv = rows.iter().find(|r| r.pd == "kv0_a").unwrap();
    assert_eq!((kv.state.as_str(), kv.detail.as_str()), ("live", "gen 1 image kv-v1"), "the map was not changed");
    assert_eq!(rows.iter().find(|r| r.pd == "capwriter").unwrap().faults, 4);
    let after = clients(&rows);
    assert!(after[0].detail_num("verified") > before[0].detail_num("verified"));
    assert_eq!((after[0].detail_num("wrong"), after[0].detail_num("failed")), (Some(0), Some(0)));
    assert!(!sys.log.lock().unwrap().iter().any(|l| l.contains("FAIL the capability map took a write")));
    assert_eq!(sys.shutdown(), 0);
}

#[test]
fn no_client_has_a_channel_to_the_manager() {
    for file in ["system.xml", "tests/systems/hostile-client.xml", "tests/systems/two-services.xml"] {
        let xml = std::fs::read_to_string(xtask::workspace_root().join(file)).unwrap();
        let sys = sdf::parse(&xml).unwrap();
        let manager = sys.pd("update_manager").unwrap();
        for (i, pd) in sys.pds.iter().enumerate() {
            let is_slot = sdf::topology::slot_of(&sys, i).is_some();
            if i == manager || is_slot || pd.name == "serial" || pd.name == "uart" {
                continue;
            }
            assert!(
                sys.ends_of(i).all(|(_, peer)| peer.pd != manager),
                "{file}: client {} has a channel to the manager",
                pd.name
            );
        }
    }
}
