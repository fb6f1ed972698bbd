//! A large state moves between slots as a stream (the import reads behind
//! the export): it arrives intact, update after update, while a client
//! checks it; an export or an import that breaks off half way rolls back
//! with the old slot's state intact. Blob pre-copies: its state moves
//! while the old slot serves, and only what a writing client changed since
//! moves at the stop.
use std::time::{Duration, Instant};
use system_tests::systems::{one_client_system, wait_log};
use system_tests::System;

/// 2 MiB: 32 progress reports of 64 KiB per transfer.
const STATE: u64 = 2 << 20;

fn boot() -> System {
    boot_with("blobcheck")
}

/// Blob with client `client` (`blobcheck` or `blobwrite`) on its state.
fn boot_with(client: &str) -> System {
    let transfer = STATE + 0x10000;
    let sys_xml = one_client_system("test-images.bin", "blob", "blob0", transfer, &format!("{client}{STATE}"));
    let mut sys = System::boot(Some(&sys_xml));
    wait_log(&sys, &format!("FILLED {STATE}"), Duration::from_secs(60));
    // Rollbacks here stream the state back (no probation: a rollback on
    // probation replays a journal instead, tests/tests/misbehaving.rs).
    assert!(sys.command("probation 0").contains("0 ms"));
    sys
}

/// The checker's latest (ok, wrong) counts.
fn checks(sys: &System) -> (u64, u64) {
    let log = sys.log.lock().unwrap();
    let last = log.iter().rev().find_map(|l| l.split_once("BLOBCHECK ok=")).map(|(_, r)| r.to_owned());
    let Some(rest) = last else { return (0, 0) };
    let (ok, wrong) = rest.split_once(" wrong=").expect("ok=N wrong=M");
    (ok.parse().unwrap(), wrong.trim().parse().unwrap())
}

/// Waits for the checker to pass more checks than `after`; none wrong.
fn checks_pass(sys: &System, after: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (ok, wrong) = checks(sys);
        assert_eq!(wrong, 0, "the state changed:\n{}", sys.log.lock().unwrap().join("\n"));
        if ok > after {
            return ok;
        }
        assert!(Instant::now() < deadline, "the checker made no progress past {after} checks");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_large_state_streams_intact_through_updates_and_rollbacks() {
    let mut sys = boot();
    let mut ok = checks_pass(&sys, 0);
    for round in 0..20 {
        let cmd = if round % 2 == 0 { "update blob blob-v2" } else { "rollback blob" };
        let out = sys.command(cmd);
        assert!(out.contains("done: blob0 runs"), "{cmd}:\n{out}");
        ok = checks_pass(&sys, ok);
    }
    assert_eq!(sys.shutdown(), 0);
}

#[test]
fn a_state_written_after_its_precopy_arrives_whole_with_only_its_changes_moved_at_the_stop() {
    // The client writes 8 bytes at a random place between two checksums,
    // so every update's pre-copy is stale by its stop: the new slot must
    // end up with the pre-copy plus exactly the pages written since.
    let mut sys = boot_with("blobwrite");
    let mut ok = checks_pass(&sys, 0);
    let mut stop_copies = Vec::new();
    for round in 0..20 {
        let cmd = if round % 2 == 0 { "update blob blob-v2" } else { "rollback blob" };
        let out = sys.command(cmd);
        assert!(out.contains("done: blob0 runs"), "{cmd}:\n{out}");
        assert!(out.lines().any(|l| l.trim_start().starts_with("precopy ")), "no pre-copy in:\n{out}");
        let line = out.lines().find(|l| l.trim_start().starts_with("stop-copy ")).expect("a stop-copy line");
        let bytes: u64 = line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("stop-copy N bytes");
        assert!(bytes <= STATE, "{out}");
        stop_copies.push(bytes);
        ok = checks_pass(&sys, ok);
    }
    // The client writes a few pages between a pre-copy and its stop; on a
    // loaded machine it may write many more, so only some stops need to
    // be small (a whole state's worth is still correct, and checked).
    assert!(stop_copies.iter().any(|&b| b < STATE / 2), "every stop moved most of the state: {stop_copies:?}");
    // Each stop moved the changes, never the whole state instead.
    let log = sys.log.lock().unwrap().join("\n");
    assert!(!log.contains("the whole state"), "a transfer fell back to the whole state:\n{log}");
    assert_eq!(sys.shutdown(), 0);
}

#[test]
fn a_transfer_that_breaks_off_half_way_rolls_back_with_the_state_intact() {
    let mut sys = boot();
    let mut ok = checks_pass(&sys, 0);
    // The new module reads the first part of the stream, then fails.
    let out = sys.command("update blob blob-cut-import");
    assert!(out.contains("  transfer  FAILED: blob0: module import failed with status -3"), "{out}");
    assert!(out.contains("rolled back"), "{out}");
    ok = checks_pass(&sys, ok);
    // An old module whose export stops half way: the importer sees the
    // export fail and the update rolls back to it, its state whole.
    let out = sys.command("update blob blob-cut-export");
    assert!(out.contains("done: blob0 runs blob-cut-export"), "{out}");
    ok = checks_pass(&sys, ok);
    let out = sys.command("update blob blob-v2");
    assert!(out.contains("  transfer  FAILED: blob0: the export failed"), "{out}");
    assert!(out.contains("rolled back"), "{out}");
    ok = checks_pass(&sys, ok);
    let status = sys.status();
    let live = status.iter().find(|r| r.service == "blob" && r.state == "live").expect("a live blob slot");
    assert_eq!(live.version, "91", "blob-cut-export serves again: {live:?}");
    assert!(status.iter().all(|r| r.faults == 0), "nothing faulted: {status:?}");
    // The checker still passes against the thawed slot.
    checks_pass(&sys, ok);
    assert_eq!(sys.shutdown(), 0);
}

/// The blob client's (audits, wrong, failed), from the status table.
fn writer_counts(sys: &mut System) -> (u64, u64, u64) {
    let rows = system_tests::clients(&sys.status());
    let r = rows.iter().find(|r| r.pd == "blobwriter0").expect("the blob client's row");
    let n = |k| r.detail_num(k).unwrap_or_else(|| panic!("no {k} in {r:?}"));
    (n("audits"), n("wrong"), n("failed"))
}

#[test]
fn the_blob_clients_writes_survive_precopied_updates_and_rollbacks() {
    // The client PD the seL4 suite runs too (pds/blob/api): it rewrites a
    // word in each of 64 pages in turn and audits the whole state.
    let sys_xml = xtask::workspace_root().join("tests/systems/blob-writer.xml");
    let mut sys = System::boot(Some(&sys_xml));
    assert!(sys.command("probation 0").contains("0 ms"));
    let mut audits = 0;
    for round in 0..11 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (a, wrong, failed) = writer_counts(&mut sys);
            assert_eq!((wrong, failed), (0, 0), "round {round}");
            if a > audits {
                audits = a;
                break;
            }
            assert!(Instant::now() < deadline, "round {round}: no audit past {audits}");
            std::thread::sleep(Duration::from_millis(20));
        }
        if round == 10 {
            break;
        }
        let cmd = if round % 2 == 0 { "update blob blob-v2" } else { "rollback blob" };
        let out = sys.command(cmd);
        assert!(out.contains("done: blob0 runs") && out.contains("  stop-copy "), "{cmd}:\n{out}");
    }
    assert_eq!(sys.shutdown(), 0);
}
