//! `cargo bench -p system-tests --bench fs`: the cost of updatability for
//! the file service, on the host runtime with the real manager, shell,
//! fs modules and block driver, each disk a fresh image
//! (`xtask::make_disk_image`). Prints `name: value` lines:
//! - `fs_updatable_{write,read}_{4,64}k_ratio`: the throughput of passes
//!   over a 1 MiB file in 4 KiB or 64 KiB calls through the client stub,
//!   the capability map and the shell (fs0, fs-v5), over the throughput of
//!   the same passes sent to the same module hosted with no shell
//!   (`fsdirect`) on its own block driver and disk. Within each pass the
//!   sides alternate call by call; each side's median call over 30 rounds
//!   (a pass of 4 KiB calls a round, four of 64 KiB calls) gives its
//!   throughput (goal >= 0.95). The whole system runs pinned to
//!   one core (see `updatable_ratio`);
//!   `fs_updatable_ratio` is the geometric mean of the four. Every byte
//!   read back is checked, and `fsck.fat` checks both disks afterwards.
//! - `fs_blackout_us`: the blackout (export start to capability-map
//!   commit, as the manager prints it) of fs updates between fs-v4 and
//!   fs-v5 while a client holds 16 files open with written, unsynced data;
//!   after each update the client reads every file back whole. Median and
//!   max of 12 updates (the first, from fs-v1 into a freshly built slot,
//!   is printed apart), with the quiescence (which syncs the files) beside.
#[path = "support/report.rs"]
mod report;

use report::{blackout_of, median, number_after};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use system_tests::systems::fs_system;
use system_tests::System;

/// A scratch directory with `n` fresh disk images, in memory (tmpfs) where
/// there is one: the benchmarks measure the service, not the writeback of
/// a disk shared with other work, which stalls the driver's writes now and
/// then; past 1 s the manager takes the fs slot waiting on it for hung
/// and reloads it empty (most likely what made fs0 lose its open files in
/// 2 of about 40 runs on disk images: see the README).
fn disks(name: &str, n: usize) -> (PathBuf, Vec<PathBuf>) {
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() { shm.to_owned() } else { std::env::temp_dir() };
    let dir = base.join(format!("fs-bench-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let images: Vec<PathBuf> = (0..n).map(|i| dir.join(format!("disk{i}.img"))).collect();
    for image in &images {
        xtask::make_disk_image(image).expect("making a disk image (dosfstools)");
    }
    (dir, images)
}

/// Waits until a PD logged a line containing `pattern`; fails at once on
/// a bench PD's `FSBENCH FAILED`, with what the console says of the
/// system.
fn wait_log(sys: &mut System, pattern: &str, timeout: Duration) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let lines = sys.log.lock().unwrap().clone();
        if let Some(l) = lines.iter().find(|l| l.contains("FSBENCH FAILED")) {
            let (status, log) = (sys.command("status"), sys.command("log"));
            panic!("{l}\n{status}\n{log}\n--- console ---\n{}\n--- log ---\n{}", sys.transcript, lines.join("\n"));
        }
        if lines.iter().any(|l| l.contains(pattern)) {
            return lines;
        }
        assert!(Instant::now() < deadline, "no '{pattern}' in the log:\n{}", lines.join("\n"));
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Debian's `fsck.fat -n` finds nothing wrong with `image`.
fn fsck(image: &Path) {
    let out = std::process::Command::new(xtask::dosfstools("fsck.fat").unwrap()).arg("-n").arg(image).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "fsck.fat -n {}:\n{text}", image.display());
}

/// Runs `f` with this process pinned to the core it is on; what it
/// starts inherits the pin.
fn on_one_core<R>(f: impl FnOnce() -> R) -> R {
    // SAFETY: plain syscalls on this process's own affinity mask.
    unsafe {
        let mut all: libc::cpu_set_t = std::mem::zeroed();
        assert_eq!(libc::sched_getaffinity(0, std::mem::size_of_val(&all), &mut all), 0);
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(libc::sched_getcpu().max(0) as usize, &mut one);
        assert_eq!(libc::sched_setaffinity(0, std::mem::size_of_val(&one), &one), 0);
        let r = f();
        assert_eq!(libc::sched_setaffinity(0, std::mem::size_of_val(&all), &all), 0);
        r
    }
}

fn updatable_ratio() {
    let (dir, images) = disks("ratio", 2);
    // Every PD of this system on one core: on two cores shared with other
    // work, where the scheduler happens to place the PDs of each side's
    // call chain decides a call's cost more than anything else, and that
    // placement differs between the sides for a whole run (unpinned, the
    // ratio ranged 0.3 to 2.3 between runs at a load average of 7).
    let mut sys = on_one_core(|| {
        System::boot_with(
            Some(&fs_system("fsratio", Some("fs-v5.so"))),
            &["--disk".as_ref(), images[0].as_os_str()],
            &[("HOST_DISK_blkdirect", images[1].as_os_str())],
        )
    });
    // No probation: the throughput of the service itself, not of its
    // probation checkpoints (and this system maps no checkpoint region).
    assert!(sys.command("probation 0").contains("0 ms"));
    // The release fsdirect hosts; fsratio waits for it.
    let out = sys.command("update fs fs-v5");
    assert!(out.contains("done: fs0 runs fs-v5"), "{out}");
    let lines = wait_log(&mut sys, "BENCH fs_updatable_ratio", Duration::from_secs(600));
    for l in lines.iter().filter_map(|l| l.split("BENCH ").nth(1)) {
        println!("{l}");
    }
    assert_eq!(sys.shutdown(), 0);
    images.iter().for_each(|i| fsck(i));
    let _ = std::fs::remove_dir_all(dir);
}

fn blackout() {
    const ROUNDS: usize = 13;
    let (dir, images) = disks("blackout", 1);
    let rounds = ROUNDS.to_string();
    let mut sys = System::boot_with(
        Some(&fs_system("fsdirty", None)),
        &["--disk".as_ref(), images[0].as_os_str()],
        &[("FS_BENCH_ROUNDS", rounds.as_ref())],
    );
    // Every update moves the state: no probation (this system maps no
    // checkpoint region).
    assert!(sys.command("probation 0").contains("0 ms"));
    let (mut blackouts, mut quiesce) = (Vec::new(), Vec::new());
    let mut first = 0.0;
    for round in 0..ROUNDS {
        wait_log(&mut sys, &format!("FSDIRTY {round}"), Duration::from_secs(120));
        let v = if round % 2 == 0 { 5 } else { 4 };
        let out = sys.command(&format!("update fs fs-v{v}"));
        assert!(out.contains(&format!("done: fs0 runs fs-v{v}")), "{out}");
        wait_log(&mut sys, &format!("FSCHECKED {round}"), Duration::from_secs(120));
        if round == 0 {
            first = blackout_of(&out);
            continue;
        }
        blackouts.push(blackout_of(&out));
        quiesce.push(number_after(&out, "quiesce"));
    }
    wait_log(&mut sys, "FSDIRTY done", Duration::from_secs(60));
    let max = blackouts.iter().copied().fold(0.0, f64::max);
    println!("fs_blackout_us_rounds: {blackouts:?}");
    println!("fs_blackout_us: {:.0}", median(&mut blackouts));
    println!("fs_blackout_max_us: {max:.0}");
    println!("fs_quiesce_us: {:.0} (syncs the 16 files)", median(&mut quiesce));
    println!("fs_blackout_first_us: {first:.0} (fs-v1 to fs-v5, into a freshly built slot)");
    assert_eq!(sys.shutdown(), 0);
    fsck(&images[0]);
    let _ = std::fs::remove_dir_all(dir);
}

fn main() {
    let only = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let run = |name: &str| only.as_deref().is_none_or(|o| name.contains(o));
    if run("fs_updatable_ratio") {
        updatable_ratio();
    }
    if run("fs_blackout") {
        blackout();
    }
}
