//! The file service across the published releases of its FAT crate: two
//! clients append to files with content they can check and verify every
//! read while the service is updated live from fs-v1 (embedded-sdmmc
//! 0.6.0) up to fs-v5 (0.10.0) and back down, twice. Then the clients stop,
//! close and re-check their files and log their models; the system halts;
//! Debian's `fsck.fat -n` must find nothing wrong with the disk image, and
//! every file on it must equal its client's model, read with the FAT crate
//! on the host.
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use system_tests::{client_totals, System};

/// Every client made progress since `before` (bounded wait), and none saw
/// a wrong reply or a failed call.
fn progress(sys: &mut System, before: &[(String, u64, u64, u64, u64)]) -> Vec<(String, u64, u64, u64, u64)> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = client_totals(&sys.status());
        assert_eq!(now.len(), 2, "two fs clients: {now:?}");
        for (name, _, wrong, failed, _) in &now {
            assert_eq!((*wrong, *failed), (0, 0), "{name}: no wrong replies and no failed calls");
        }
        if before.iter().zip(&now).all(|(b, n)| n.1 > b.1) {
            return now;
        }
        assert!(Instant::now() < deadline, "the clients made no progress in 20 s: {before:?} -> {now:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_fat_releases_replayed_live_up_and_down_keep_every_file_and_a_clean_disk() {
    let dir = std::env::temp_dir().join(format!("fs-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (image, stop) = (dir.join("disk.img"), dir.join("stop"));
    xtask::make_disk_image(&image).expect("making the disk image (dosfstools)");
    let system = xtask::workspace_root().join("tests/systems/fs.xml");
    let mut sys = System::boot_with(
        Some(&system),
        &["--disk".as_ref(), image.as_os_str()],
        &[("HOST_FS_STOP", stop.as_os_str())],
    );
    // No probation: every update, up and down, moves the state (the
    // probation's checkpoints are the next test's).
    assert!(sys.command("probation 0").contains("0 ms"));
    let start = client_totals(&sys.status());
    let mut seen = progress(&mut sys, &start);
    let versions = [2, 3, 4, 5, 4, 3, 2, 1, 2, 3, 4, 5, 4, 3, 2, 1];
    for v in versions {
        let out = sys.command(&format!("update fs fs-v{v}"));
        let schema = if v >= 4 { 2 } else { 1 };
        assert!(out.contains(&format!("done: fs0 runs fs-v{v} (v{v}, schema {schema})")), "{out}");
        // For the README's table: the blackout and the quiescence (which
        // syncs the open files) of each release pair.
        let phase = |p: &str| out.lines().find(|l| l.trim_start().starts_with(p)).map(|l| l.trim().to_owned());
        eprintln!("fs-v{v}: {:?} {:?}", phase("quiesce"), phase("blackout"));
        seen = progress(&mut sys, &seen);
    }
    let out = sys.command("log");
    assert!(out.contains(&format!("{} update(s) in all", versions.len() + 1)), "{out}");
    stop_and_judge(sys, &stop, &image);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Stops the clients (each closes its files, re-reads them through fresh
/// opens and logs its model), halts the system, and has the outside judge
/// look at the disk: a clean fsck, and every file on the disk is its
/// client's model, and nothing else is.
fn stop_and_judge(mut sys: System, stop: &Path, image: &Path) {
    let log = stop_clients(&sys, stop);
    let model = xtask::fs_image::models(log.iter().map(String::as_str)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(model.len(), 16, "two clients, eight files each: {model:?}");
    for (_, _, wrong, failed, _) in client_totals(&sys.status()) {
        assert_eq!((wrong, failed), (0, 0));
    }
    assert_eq!(sys.shutdown(), 0);
    xtask::fs_image::fsck(image).unwrap_or_else(|e| panic!("{e}"));
    xtask::fs_image::check_files(image, &model, checking_clients::fs::pattern).unwrap_or_else(|e| panic!("{e}"));
}

/// Stops the clients (each closes its files, re-reads them through fresh
/// opens and logs its model) and waits for both; neither may have logged
/// a failure or a wrong reply. Returns the log.
fn stop_clients(sys: &System, stop: &Path) -> Vec<String> {
    std::fs::write(stop, b"").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let log = loop {
        let log = sys.log.lock().unwrap().clone();
        if log.iter().filter(|l| l.contains("fs client done")).count() == 2 {
            break log;
        }
        assert!(Instant::now() < deadline, "the clients did not finish:\n{}", log.join("\n"));
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!log.iter().any(|l| l.contains("FAILED") || l.contains("wrong reply")), "{}", log.join("\n"));
    log
}

/// A fresh disk image in a temporary directory (`fs-{tag}-{pid}`), and on
/// it the fs system with the test image store, its clients told to stop
/// by the file `stop` and, with `dirs`, to make directories
/// (`HOST_FS_DIRS`). Returns the directory, the image, `stop` and the
/// system.
fn boot_on_fresh_disk(tag: &str, dirs: bool) -> (PathBuf, PathBuf, PathBuf, System) {
    let dir = std::env::temp_dir().join(format!("fs-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (image, stop) = (dir.join("disk.img"), dir.join("stop"));
    xtask::make_disk_image(&image).expect("making the disk image (dosfstools)");
    let system = fs_system_with_test_images(&dir);
    let mut env = vec![("HOST_FS_STOP", stop.as_os_str())];
    if dirs {
        env.push(("HOST_FS_DIRS", "1".as_ref()));
    }
    let sys = System::boot_with(Some(&system), &["--disk".as_ref(), image.as_os_str()], &env);
    (dir, image, stop, sys)
}

/// On probation, `update fs MODULE`, which faults in the middle of a
/// client's first write to a file: fs goes back to fs-v1 at the last
/// checkpoint. Prints the last fs-faulty line `is_failure` picks from the
/// log, for the record.
fn first_write_faults_back_to_v1(sys: &mut System, module: &str, is_failure: impl Fn(&str) -> bool) {
    assert!(sys.command("probation 120000").contains("120000 ms"));
    let out = sys.command(&format!("update fs {module}"));
    assert!(out.contains(&format!("done: fs0 runs {module}")), "{out}");
    let report = sys.wait_for("nothing was lost", Duration::from_secs(120));
    assert!(report.contains("fault: fs0_"), "{report}");
    assert!(report.contains("fs0: took over the checkpoint after"), "{report}");
    assert!(report.contains("runs fs-v1 (v1, schema 1)"), "{report}");
    let log = sys.log.lock().unwrap().clone();
    let failed = log.iter().rfind(|l| is_failure(l));
    eprintln!("{module}: {}\n{report}", failed.unwrap_or_else(|| panic!("{log:?}")));
    assert_eq!(fs_live_version(sys), "1");
}

/// Waits (20 s at most) until every client has done two more audits than
/// in `seen`, under `version`; returns the clients' totals then.
fn two_audits(
    sys: &mut System,
    seen: &[(String, u64, u64, u64, u64)],
    version: &str,
) -> Vec<(String, u64, u64, u64, u64)> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = progress(sys, seen);
        if seen.iter().zip(&now).all(|(b, n)| n.4 >= b.4 + 2) {
            return now;
        }
        assert!(Instant::now() < deadline, "no audits under {version}: {now:?}");
    }
}

/// `tests/systems/fs.xml` with the test image store (which also holds the
/// faulty fs modules), written to `dir`.
fn fs_system_with_test_images(dir: &Path) -> std::path::PathBuf {
    let xml = std::fs::read_to_string(xtask::workspace_root().join("tests/systems/fs.xml")).unwrap();
    let patched = xml.replace(r#"prefill_path="images.bin""#, r#"prefill_path="test-images.bin""#);
    assert_ne!(xml, patched, "fs.xml has an images.bin prefill");
    let path = dir.join("fs-test-images.xml");
    std::fs::write(&path, patched).unwrap();
    path
}

/// Both clients' verified calls per second over a second.
fn calls_per_second(sys: &mut System) -> f64 {
    let sum = |t: &[(String, u64, u64, u64, u64)]| t.iter().map(|c| c.1).sum::<u64>();
    let (before, t0) = (sum(&client_totals(&sys.status())), Instant::now());
    std::thread::sleep(Duration::from_secs(1));
    let after = sum(&client_totals(&sys.status()));
    (after - before) as f64 / t0.elapsed().as_secs_f64()
}

/// The live fs slot's module version, from a status table.
fn fs_live_version(sys: &mut System) -> String {
    let rows = sys.status();
    let live: Vec<_> = rows.iter().filter(|r| r.service == "fs" && r.state == "live").collect();
    assert_eq!(live.len(), 1, "one live fs slot: {rows:?}");
    live[0].version.clone()
}

/// The checkpoint probation (see the README): a version that fails in the
/// middle of a write while on probation, by a fault or a hang, is rolled
/// back to the old version, which takes over the state of its last
/// checkpoint; the client's retry of the write that failed rewrites the
/// same bytes at the same place. An operator's rollback on probation does
/// the same; an update whose probation passes is final. The clients see
/// no wrong reply and no failed call throughout, and the disk is clean
/// and holds exactly their files at the end.
#[test]
fn a_write_that_fails_half_way_on_probation_is_rolled_back_with_nothing_lost_and_a_clean_disk() {
    let (dir, image, stop, mut sys) = boot_on_fresh_disk("probation", false);
    // The version to go back to: fs-v3 (embedded-sdmmc 0.8.2, schema 1),
    // so that every checkpoint is a downgrade from schema 2.
    assert!(sys.command("probation 0").contains("0 ms"));
    let start = client_totals(&sys.status());
    let mut seen = progress(&mut sys, &start);
    assert!(sys.command("update fs fs-v3").contains("done: fs0 runs fs-v3 (v3, schema 1)"));
    seen = progress(&mut sys, &seen);

    assert!(sys.command("probation 120000").contains("120000 ms"));
    for (image, how) in [("fs-fault-write", "fault: fs0_"), ("fs-spin-write", "hung")] {
        let out = sys.command(&format!("update fs {image}"));
        assert!(out.contains(&format!("done: fs0 runs {image}")), "{out}");
        // It serves a few hundred writes, checkpointing after each call,
        // then fails in the middle of one. (No command until then: the
        // report comes between prompts.)
        let report = sys.wait_for("nothing was lost", Duration::from_secs(120));
        assert!(report.contains(how), "{report}");
        assert!(report.contains("fs0: took over the checkpoint after"), "{report}");
        assert!(report.contains("runs fs-v3 (v3, schema 1)"), "{report}");
        let log = sys.log.lock().unwrap().clone();
        let failed = log.iter().rfind(|l| l.contains("fs-faulty: wrote") && l.contains("failing now"));
        eprintln!("{image}: {}\n{report}", failed.unwrap_or_else(|| panic!("{log:?}")));
        assert_eq!(fs_live_version(&mut sys), "3");
        seen = progress(&mut sys, &seen);
        seen = progress(&mut sys, &seen);
    }

    // The operator's rollback on probation.
    let out = sys.command("update fs fs-v5");
    assert!(out.contains("done: fs0 runs fs-v5"), "{out}");
    seen = progress(&mut sys, &seen);
    let status = sys.command("status");
    assert!(status.contains("call(s) checkpointed"), "{status}");
    // For the README: the clients' calls per second while every call is
    // checkpointed (two files synced and the device flushed per write).
    let on_probation = calls_per_second(&mut sys);
    let out = sys.command("rollback fs");
    assert!(out.contains("takes over the new one's last checkpoint"), "{out}");
    assert!(out.contains("runs fs-v3 (v3, schema 1) again"), "{out}");
    seen = progress(&mut sys, &seen);

    // An update that passes its probation is final.
    assert!(sys.command("probation 1500").contains("1500 ms"));
    let out = sys.command("update fs fs-v4");
    assert!(out.contains("done: fs0 runs fs-v4"), "{out}");
    sys.wait_for("probation over: fs runs fs-v4 (v4) for good", Duration::from_secs(30));
    seen = progress(&mut sys, &seen);
    progress(&mut sys, &seen);
    assert_eq!(fs_live_version(&mut sys), "4");
    eprintln!(
        "calls/s of both clients: fs-v5 on probation {on_probation:.0}, fs-v4 final {:.0}",
        calls_per_second(&mut sys)
    );
    let log = sys.command("log all");
    assert!(!log.contains("state was lost"), "{log}");

    stop_and_judge(sys, &stop, &image);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 9: a version that faults *inside* the FAT crate's own work, on
/// probation, leaves the disk as the last checkpoint saw it.
/// `fs-fault-first-alloc` (fs-v5) faults in the block device during the
/// first write to a client's fresh `/CnD/INFO.TXT` (with `HOST_FS_DIRS`),
/// right after the crate wrote the FAT entry of the file's new first
/// cluster: its `write` has not returned and the file's directory entry
/// names no cluster. Were that FAT entry on the disk, the retry in the old
/// version would allocate another cluster and `fsck.fat` would find the
/// first one lost ("Reclaimed 1 unused cluster"); fs-core stages a call's
/// block writes and writes them to the driver only when the call is done,
/// so nothing of the failed call is on the disk.
#[test]
fn a_fault_inside_the_crates_first_write_on_probation_leaves_the_disk_as_the_checkpoint_saw_it() {
    first_write_fails_on_probation("fs-fault-first-alloc", "first-alloc", "failing at the crate's first block write");
}

/// The same fault right after that write's call is done, in the
/// checkpoint's `prepare` (`fs-fault-after-first-write`): the call's blocks
/// are on the disk and its reply has not left. The retry in the old
/// version finds the file's first cluster through its directory entry,
/// which fs-core writes in the same call as the data of a first write to
/// an empty file; without it the cluster would be lost as above.
#[test]
fn a_fault_right_after_a_first_write_on_probation_leaves_no_cluster_lost() {
    first_write_fails_on_probation("fs-fault-after-first-write", "after-first", "failing in the prepare after it");
}

/// On fs-v1 with `probation 120000`, `update fs MODULE`, which fails in
/// the first write to a client's fresh `INFO.TXT` and logs `what`; fs
/// goes back to fs-v1 at the last checkpoint (the file open and empty) and
/// the stub retries the write there. Then fs-v5, under which the other
/// client makes its directory if it had not (fs-v1 cannot; 0.10.0 writes a
/// `..` that `fsck.fat` accepts). The clients see no wrong reply and no
/// failed call; `fsck.fat -n` is clean and every file equals its model.
fn first_write_fails_on_probation(module: &str, tag: &str, what: &str) {
    let (dir, image, stop, mut sys) = boot_on_fresh_disk(tag, true);
    let mut seen = client_totals(&sys.status());
    seen = progress(&mut sys, &seen);
    first_write_faults_back_to_v1(&mut sys, module, |l| l.contains("fs-faulty: first write") && l.contains(what));
    seen = progress(&mut sys, &seen);
    assert!(sys.command("probation 0").contains("0 ms"));
    assert!(sys.command("update fs fs-v5").contains("done: fs0 runs fs-v5"));
    // Two audits each under fs-v5, so both clients have their directory.
    two_audits(&mut sys, &seen, "fs-v5");
    stop_and_judge(sys, &stop, &image);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_damaged_disk_gives_the_clients_errors_and_never_faults_the_service() {
    for how in xtask::fs_image::DAMAGES {
        let dir = std::env::temp_dir().join(format!("fs-damaged-{}-{how}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let image = dir.join("disk.img");
        xtask::make_disk_image(&image).expect("making the disk image (dosfstools)");
        xtask::fs_image::damage(&image, how).unwrap_or_else(|e| panic!("{e}"));
        let system = xtask::workspace_root().join("tests/systems/fs.xml");
        let mut sys = System::boot_with(Some(&system), &["--disk".as_ref(), image.as_os_str()], &[]);
        // No probation: its end would print while a command is typed.
        assert!(sys.command("probation 0").contains("0 ms"));
        // The clients get errors from the service, or (a FAT of garbage
        // read as cluster numbers) data that is not theirs; never a lost
        // service (the stub would say Unavailable after 10 s).
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            let totals = client_totals(&sys.status());
            if totals.iter().all(|t| t.2 + t.3 >= 4) {
                break;
            }
            assert!(Instant::now() < deadline, "{how}: the clients saw too few errors: {totals:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
        let log = sys.log.lock().unwrap().clone();
        assert!(!log.iter().any(|l| l.contains("Unavailable")), "{how}: the service never went away");
        // Still healthy: no fault, and it updates like any service.
        let out = sys.command("update fs fs-v5");
        assert!(out.contains("done: fs0 runs fs-v5"), "{how}: {out}");
        let rows = sys.status();
        for r in rows.iter().filter(|r| r.service == "fs" || r.pd == "blk") {
            assert_eq!(r.faults, 0, "{how}: {r:?}");
        }
        assert_eq!(sys.shutdown(), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn directories_are_made_listed_and_not_removed_while_full_across_releases() {
    let (dir, image, stop, mut sys) = boot_on_fresh_disk("dirs", true);
    let mut seen = client_totals(&sys.status());
    seen = progress(&mut sys, &seen);
    // A write that fails half way through the first write to an empty
    // file, on probation: `fs-fault-first-write` (fs-v5) lets the clients
    // make their directories (fs-v1 cannot) and faults in the middle of
    // the first write to a client's fresh `INFO.TXT` (which owns no
    // cluster before it); fs goes back to fs-v1 at the last checkpoint and
    // the stub retries the write there. (The clients' data files are
    // emptied only by truncation, which keeps their first cluster, so this
    // is the only write of the tests to a file that has none.) fs-core
    // stages the failed call's blocks (the new cluster's FAT entry, half
    // the data, the directory entry), which the fault drops, so the retry
    // starts from the disk the checkpoint saw; before fs-core made sure of
    // that, `fsck.fat` below found that cluster lost. (The fault inside
    // the crate's own allocation is the test above.)
    first_write_faults_back_to_v1(&mut sys, "fs-fault-first-write", |l| {
        l.contains("fs-faulty: wrote") && l.contains("of empty /C")
    });
    seen = progress(&mut sys, &seen);
    assert!(sys.command("probation 0").contains("0 ms"));
    // fs-v1 cannot make directories; from v2 on the clients make theirs,
    // and every release lists them, and refuses to remove them (not empty,
    // or no Rmdir before v5).
    for v in [2, 5, 1, 3, 4] {
        assert!(sys.command(&format!("update fs fs-v{v}")).contains(&format!("done: fs0 runs fs-v{v}")));
        // Two audits each, so each version checks the directories.
        seen = two_audits(&mut sys, &seen, &format!("fs-v{v}"));
    }
    stop_clients(&sys, &stop);
    for (_, _, wrong, failed, _) in client_totals(&sys.status()) {
        assert_eq!((wrong, failed), (0, 0));
    }
    assert_eq!(sys.shutdown(), 0);
    // fsck.fat finds exactly the releases' known fault: the `..` entry of a
    // directory made in the root of a FAT32 volume names the root's cluster
    // instead of 0. Nothing else. A directory made by
    // `fs-fault-first-write` (0.10.0) has a right `..` (seen so: the first
    // client to make its directory makes it there; the other, if it had
    // not yet, under fs-v2).
    let bad = xtask::fs_image::BAD_DOT_DOT;
    xtask::fs_image::fsck_tolerating(&image, &[("/C0D", bad), ("/C1D", bad)]).unwrap_or_else(|e| panic!("{e}"));
    let _ = std::fs::remove_dir_all(&dir);
}
