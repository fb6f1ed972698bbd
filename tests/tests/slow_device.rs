//! A slot waiting on a slow device is not a hung slot. The fs slot makes
//! one protected call to the block driver per block; when the driver
//! stalls (here: its process stopped for 2.5 s, as a starved QEMU once
//! stalled it for over a second on a loaded machine), that time is the
//! driver's, not the slot's: the manager's 1 s hang rule must not stop
//! the fs slot, reload it empty and lose its clients' open files.
use std::time::Duration;
use system_tests::{client_totals, clients_progressed, System};

/// The pid of the PD process named `pd` (the host runtime sets a PD's
/// argv[0] to its name).
fn pd_pid(sys: &System, pd: &str) -> i32 {
    let runtime = sys.pid();
    let children = std::fs::read_to_string(format!("/proc/{runtime}/task/{runtime}/children")).unwrap();
    children
        .split_whitespace()
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.split(|&b| b == 0).next() == Some(pd.as_bytes()))
        })
        .unwrap_or_else(|| panic!("no PD process named {pd}"))
        .parse()
        .unwrap()
}

#[test]
fn a_stalled_block_driver_does_not_make_the_file_service_hang() {
    let dir = std::env::temp_dir().join(format!("slow-device-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let image = dir.join("disk.img");
    xtask::make_disk_image(&image).expect("making the disk image (dosfstools)");
    let system = xtask::workspace_root().join("tests/systems/fs.xml");
    let mut sys = System::boot_with(Some(&system), &["--disk".as_ref(), image.as_os_str()], &[]);
    let start = client_totals(&sys.status());
    let seen = clients_progressed(&mut sys, &start, 2, Duration::from_secs(30));

    let blk = pd_pid(&sys, "blk");
    // SAFETY: signals to a child process of the runtime this test started.
    assert_eq!(unsafe { libc::kill(blk, libc::SIGSTOP) }, 0);
    // The stall itself is the stimulus: 2.5 times the hang rule.
    std::thread::sleep(Duration::from_millis(2_500));
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(blk, libc::SIGCONT) }, 0);

    clients_progressed(&mut sys, &seen, 2, Duration::from_secs(30));
    let fs_rows: Vec<_> = sys.status().into_iter().filter(|r| r.pd.starts_with("fs0_")).collect();
    assert!(fs_rows.iter().all(|r| r.faults == 0), "no fault or hang of an fs slot: {fs_rows:?}");
    let log = sys.log.lock().unwrap().join("\n");
    assert!(!log.contains("hung") && !log.contains("state was lost"), "{log}");
    assert_eq!(sys.shutdown(), 0);
    let _ = std::fs::remove_dir_all(&dir);
}
