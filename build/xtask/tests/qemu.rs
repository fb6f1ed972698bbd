//! The system on seL4, booted in QEMU and driven over its serial console
//! as an operator would: the same scenarios as the host tests
//! (tests/tests/updates.rs), on the real kernel.
//! - boot: every PD is in the status table, kv is live in slot a, the
//!   clients' verified counts grow with no wrong reply;
//! - 200 updates and 200 rollbacks under the four clients' load, without
//!   probation (each rollback moves the state back; the target switches
//!   between kv-v2 and kv-v3, so the idle slot is sometimes restarted and
//!   rebuilt, sometimes reused), nothing lost;
//! - every failure before commit (test image store), each rolled back with
//!   nothing lost, including the slot faults the manager must recover from
//!   (panics and data aborts, in init and in import);
//! - new versions that misbehave (as tests/tests/misbehaving.rs on the
//!   host): spinning before the commit (the update fails, `hung`), and
//!   spinning, faulting or panicking after it (rolled back on probation),
//!   with the console answering all along;
//! - a chaos soak of random operator events (updates, rollbacks, the
//!   misbehaving modules, commands typed ahead) under the four clients;
//! - kv updated from Rust versions to the C one (kv-c3) and back, under
//!   load, with and without probation;
//! - kv keeps serving while blob is updated (tests/systems/two-services.xml,
//!   as tests/tests/isolation.rs on the host);
//! - the serial service updated under typing (tests/systems/serial-update.xml,
//!   as tests/tests/serial_update.rs on the host): the fixed `uart` PD owns
//!   the PL011 and its interrupt, the live serial slot moves the bytes, and
//!   20 switches with commands typed ahead lose or garble no byte;
//! - the virtio-blk driver serves a FAT32 image through the `blk` queues
//!   (tests/systems/blk-virtio.xml): the block self-test passes, and the
//!   image file then holds what was written and passes `fsck.fat -n`;
//! - the file service on that driver (tests/systems/fs-sel4.xml) updated
//!   live v1 -> v5 -> v1 twice under its two clients, nothing wrong or
//!   failed; the clients then stop cleanly (files closed, re-read, models
//!   printed), `fsck.fat -n` finds the image clean and every file in it
//!   equals its client's model (as tests/tests/fs.rs on the host);
//! - the file service's probation (as tests/tests/fs.rs on the host), with
//!   the same clean stop and judge: a new version that fails half way
//!   through a write, the operator's `rollback fs`, a probation that ends;
//!   the clients' directories across the releases; and damaged disks,
//!   which give the clients errors and fault nothing.
//!
//! Skipped (with a message on stderr, which the test harness does not
//! capture) when MICROKIT_SDK or QEMU is missing. Every wait is bounded; a
//! failure prints the whole console transcript. The tests run one at a
//! time (one QEMU, one image build at a time); each system's image is
//! built once per run.
//!
//! The transcript holds the kernel's debug output too (a slot's panic
//! message, the manager's fault decoding), and the manager echoes bytes
//! typed ahead while it runs a command (it takes console input meanwhile),
//! so a command's answer is found by what it prints, not by position.
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

const PROMPT: &str = "upd> ";
const BOOT_TIMEOUT: Duration = Duration::from_secs(90);
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

fn skip(why: &str) {
    // Straight to the process's stderr: a skip must be seen, not captured.
    let _ = writeln!(std::io::stderr(), "\nSKIPPED qemu test: {why}\n");
}

/// One test at a time: they share the image build and the CPU.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// system.xml, with its image built; `None` (after a skip message) when the
/// tools are missing.
fn image(store: Option<&str>) -> Option<(PathBuf, sdf::System)> {
    image_of(&xtask::workspace_root().join("system.xml"), store)
}

/// The system description `system` (with its image store swapped for
/// `store`), with its image built; `None` (after a skip message) when the
/// tools are missing.
fn image_of(system: &Path, store: Option<&str>) -> Option<(PathBuf, sdf::System)> {
    image_with(system, store, &[])
}

/// [`image_of`] with extra Cargo `features` of the build/sel4 programs
/// (e.g. `fs-client-sel4/dirs`). Such an image is built from a copy of the
/// description named for the features, so that it has an image directory
/// (and an entry in the cache below) of its own.
fn image_with(system: &Path, store: Option<&str>, features: &[&str]) -> Option<(PathBuf, sdf::System)> {
    if let Err(e) = xtask::sel4::qemu_ready() {
        skip(&e);
        return None;
    }
    let mut system = system.to_path_buf();
    if let Some(store) = store {
        system = xtask::sel4::system_with_store(&system, store).unwrap_or_else(|e| panic!("{e}"));
    }
    if !features.is_empty() {
        let stem = system.file_stem().unwrap().to_string_lossy().into_owned();
        let tag: String = features.join("-").chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
        let dir = xtask::sel4::out_dir().join("systems");
        std::fs::create_dir_all(&dir).unwrap();
        let copy = dir.join(format!("{stem}-{tag}.xml"));
        std::fs::copy(&system, &copy).unwrap_or_else(|e| panic!("{}: {e}", system.display()));
        system = copy;
    }
    // Each system's image has a directory of its own, so one built earlier
    // in this run is still good after another system was built.
    static BUILT: Mutex<Option<HashMap<PathBuf, PathBuf>>> = Mutex::new(None);
    let built = BUILT.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert_with(HashMap::new).get(&system).cloned();
    let loader = match built {
        Some(loader) => loader,
        None => {
            let t = Instant::now();
            let image = xtask::sel4::build_image_with(&system, features)
                .unwrap_or_else(|e| panic!("building the seL4 image: {e}"));
            let _ = writeln!(std::io::stderr(), "seL4 image of {} built in {:.1?}", system.display(), t.elapsed());
            BUILT
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert_with(HashMap::new)
                .insert(system.clone(), image.loader.clone());
            image.loader
        }
    };
    let sys = sdf::parse(&std::fs::read_to_string(&system).unwrap()).unwrap();
    Some((loader, sys))
}

struct Qemu {
    child: Child,
    out: Arc<Mutex<String>>,
    /// How much of the transcript earlier waits consumed.
    cursor: usize,
}

impl Qemu {
    fn boot(loader: &Path) -> Qemu {
        let mut q = Qemu::start(loader, &[]);
        q.wait_for(&[PROMPT], BOOT_TIMEOUT);
        q
    }

    /// QEMU booting `loader` with `extra` options, without waiting.
    fn start(loader: &Path, extra: &[std::ffi::OsString]) -> Qemu {
        let mut child = xtask::sel4::qemu(loader)
            .args(xtask::sel4::GUEST_CLOCK)
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting qemu-system-aarch64");
        let out = Arc::new(Mutex::new(String::new()));
        for pipe in
            [Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>, Box::new(child.stderr.take().unwrap())]
        {
            let out = out.clone();
            std::thread::spawn(move || {
                let mut pipe = pipe;
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    out.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
        }
        Qemu { child, out, cursor: 0 }
    }

    fn transcript(&self) -> String {
        self.out.lock().unwrap().replace('\r', "")
    }

    /// Waits until the unconsumed transcript holds one of `patterns`;
    /// consumes it and returns the text up to and including it. Fails with
    /// the transcript on timeout or if QEMU exits.
    fn wait_for(&mut self, patterns: &[&str], timeout: Duration) -> String {
        let start = Instant::now();
        loop {
            let t = self.transcript();
            let hit = patterns.iter().filter_map(|p| t[self.cursor..].find(p).map(|i| i + p.len())).min();
            if let Some(end) = hit {
                let got = t[self.cursor..self.cursor + end].to_owned();
                self.cursor += end;
                return got;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                self.fail(&format!("QEMU exited ({status}) while waiting for {patterns:?}"));
            }
            if start.elapsed() > timeout {
                self.fail(&format!("none of {patterns:?} within {timeout:?}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn send(&mut self, text: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(text.as_bytes()).unwrap();
        stdin.flush().unwrap();
    }

    /// Runs `update ...` or `rollback ...` and returns its report, from
    /// its header line to its last line (`done: ...` or `rolled back: ...`).
    /// Anything the PDs print on the debug console meanwhile (a slot's
    /// panic, the fault report that follows a failed step) is skipped.
    fn switch(&mut self, line: &str) -> String {
        self.send(&format!("{line}\n"));
        self.switch_answer(line)
    }

    /// The report of `update ...` or `rollback ...` typed earlier: its
    /// header (`update kv kv-v2: ...`, `rollback kv: ...`), then up to the
    /// end of its last line. Each of those lines is printed whole, so
    /// bytes echoed meanwhile cannot split them.
    fn switch_answer(&mut self, line: &str) -> String {
        let cmd: Vec<&str> = line.split_whitespace().take_while(|w| !w.starts_with("--")).collect();
        self.wait_for(&[&format!("{}: ", cmd.join(" "))], REPLY_TIMEOUT);
        let mut out = self.wait_for(&["done: ", "rolled back: ", "error: "], REPLY_TIMEOUT);
        out += &self.wait_for(&["\n"], REPLY_TIMEOUT);
        out
    }

    /// Where the transcript ends now (for [`Qemu::since`]).
    fn mark(&self) -> usize {
        self.transcript().len()
    }

    /// The transcript from `mark` on, consumed or not.
    fn since(&self, mark: usize) -> String {
        self.transcript()[mark..].to_owned()
    }

    /// Runs `status` and returns its rows (columns split on whitespace).
    fn status(&mut self) -> Vec<Vec<String>> {
        self.send("status\n");
        self.wait_for(&["\nPD "], REPLY_TIMEOUT);
        let table = self.wait_for(&[PROMPT], REPLY_TIMEOUT);
        table
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().map(String::from).collect::<Vec<_>>())
            .filter(|r| r.len() >= 7 && r[0] != PROMPT.trim_end())
            .collect()
    }

    fn command(&mut self, line: &str, end: &str) -> String {
        self.send(&format!("{line}\n"));
        self.wait_for(&[&format!("{line}\n")], REPLY_TIMEOUT);
        self.wait_for(&[end], REPLY_TIMEOUT)
    }

    fn fail(&mut self, why: &str) -> ! {
        let _ = self.child.kill();
        let _ = self.child.wait();
        panic!("{why}\n----- QEMU transcript -----\n{}\n----- end of transcript -----", self.transcript());
    }

    fn check(&mut self, ok: bool, why: impl FnOnce() -> String) {
        if !ok {
            self.fail(&why());
        }
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // QEMU_TRANSCRIPT=DIR keeps every run's transcript, failed or not.
        if let Some(dir) = std::env::var_os("QEMU_TRANSCRIPT") {
            let name = std::thread::current().name().unwrap_or("qemu").replace("::", "-");
            let _ = std::fs::write(Path::new(&dir).join(format!("{name}.txt")), self.transcript());
        }
    }
}

fn row<'a>(rows: &'a [Vec<String>], pd: &str) -> Option<&'a Vec<String>> {
    rows.iter().find(|r| r[0] == pd)
}

fn field(row: &[String], key: &str) -> Option<u64> {
    row.iter().find_map(|c| c.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
}

/// (client, verified, wrong, failed) of every client row.
fn clients(rows: &[Vec<String>]) -> Vec<(String, u64, u64, u64)> {
    rows.iter()
        .filter(|r| r[1] == "client")
        .map(|r| {
            let n = |k| field(r, k).unwrap_or(u64::MAX);
            (r[0].clone(), n("verified"), n("wrong"), n("failed"))
        })
        .collect()
}

/// Each client's audits (full checks of its keyspace), by client.
fn audits(rows: &[Vec<String>]) -> Vec<u64> {
    rows.iter().filter(|r| r[1] == "client").map(|r| field(r, "audits").unwrap_or(0)).collect()
}

/// Every client makes progress after `before`, including at least one full
/// audit of its keyspace against its model, and none saw a wrong reply or
/// a failed call. Polled: a client is the lowest priority and may not have
/// run for a while; only one that stays stuck for 30 s fails. Returns the
/// status it judged.
fn clean_progress(q: &mut Qemu, before: &[Vec<String>], what: &str) -> Vec<Vec<String>> {
    clean_progress_of(q, before, what, xtask::description().clients.len())
}

/// [`clean_progress`] in a system of `n` clients.
fn clean_progress_of(q: &mut Qemu, before: &[Vec<String>], what: &str, n: usize) -> Vec<Vec<String>> {
    let (b, b_audits) = (clients(before), audits(before));
    let deadline = Instant::now() + REPLY_TIMEOUT;
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let after = q.status();
        let (a, a_audits) = (clients(&after), audits(&after));
        q.check(a.len() == n, || format!("{what}: {n} clients expected, status shows {a:?}"));
        for (name, _, wrong, failed) in &a {
            q.check((*wrong, *failed) == (0, 0), || format!("{what}: {name}: wrong={wrong} failed={failed}"));
        }
        let stuck: Vec<_> = b
            .iter()
            .zip(&a)
            .zip(b_audits.iter().zip(&a_audits))
            .filter(|((x, y), (au0, au1))| y.1 <= x.1 || y.1 == u64::MAX || au1 <= au0)
            .map(|((x, y), (au0, au1))| (x.0.clone(), (x.1, y.1), (*au0, *au1)))
            .collect();
        if stuck.is_empty() {
            return after;
        }
        if Instant::now() > deadline {
            q.fail(&format!("{what}: verified replies and audits must grow (client, verified, audits): {stuck:?}"));
        }
    }
}

/// The kv slots' fault counts, by PD.
fn kv_faults(rows: &[Vec<String>]) -> HashMap<String, u64> {
    rows.iter().filter(|r| r[1] == "kv").map(|r| (r[0].clone(), r[6].parse().unwrap_or(u64::MAX))).collect()
}

/// The live kv slots' module versions.
fn live_kv_versions(rows: &[Vec<String>]) -> Vec<(String, String)> {
    live_versions(rows, "kv")
}

/// The live slots of `service` and their module versions.
fn live_versions(rows: &[Vec<String>], service: &str) -> Vec<(String, String)> {
    rows.iter().filter(|r| r[1] == service && r[4] == "live").map(|r| (r[0].clone(), r[2].clone())).collect()
}

/// Polls `status` until `pd`'s verified count exceeds `above` (a client is the
/// lowest priority and runs only when everything else is idle), and returns it.
fn wait_verified(q: &mut Qemu, pd: &str, above: u64) -> u64 {
    let deadline = Instant::now() + REPLY_TIMEOUT;
    loop {
        let rows = q.status();
        let r = row(&rows, pd).cloned().unwrap_or_default();
        // Until the client has started, its row says "no stats yet".
        let started = field(&r, "verified").is_some();
        q.check(!started || field(&r, "wrong") == Some(0), || format!("{pd} served with no wrong reply: {r:?}"));
        match field(&r, "verified") {
            Some(n) if n > above => return n,
            _ if Instant::now() > deadline => {
                q.fail(&format!("{pd}'s verified count stayed at or below {above}: {r:?}"))
            }
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// Polls `status` until every client has published its counters (a client
/// is the lowest priority: it starts once everything else is idle), and
/// returns that status.
fn all_started(q: &mut Qemu) -> Vec<Vec<String>> {
    let deadline = Instant::now() + REPLY_TIMEOUT;
    loop {
        let rows = q.status();
        let c = clients(&rows);
        if !c.is_empty() && c.iter().all(|(_, verified, ..)| *verified != u64::MAX) {
            return rows;
        }
        if Instant::now() > deadline {
            q.fail(&format!("a client never published its counters: {c:?}"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Every client made progress between two status tables, and none saw a
/// wrong reply or a failed call.
fn check_clean_progress(q: &mut Qemu, before: &[Vec<String>], after: &[Vec<String>], what: &str) {
    let (b, a) = (clients(before), clients(after));
    let n = xtask::description().clients.len();
    q.check(a.len() == n, || format!("{what}: {n} clients expected, status shows {a:?}"));
    for ((name, v0, _, _), (_, v1, wrong, failed)) in b.iter().zip(&a) {
        q.check(v1 > v0 && *v1 != u64::MAX, || format!("{what}: {name}: verified must grow ({v0} -> {v1})"));
        q.check((*wrong, *failed) == (0, 0), || format!("{what}: {name}: wrong={wrong} failed={failed}"));
    }
}

/// The block device on seL4 (tests/systems/blk-virtio.xml): the virtio-blk
/// driver PD serves a fresh FAT32 image (QEMU's virtio-blk-device on the
/// virtio-mmio bus) through the `blk` queues, and the test client's
/// self-test (`blk_driver::client::selftest`: the MBR and boot sector, blocks
/// written and read back, bad requests refused) passes. Afterwards, on the
/// host, the image file holds the blocks the client wrote, and
/// `fsck.fat -n` finds the file system clean.
#[test]
fn the_virtio_block_driver_serves_the_blk_queues_on_sel4() {
    let _one = serial();
    let system = xtask::workspace_root().join("tests/systems/blk-virtio.xml");
    let Some((loader, _)) = image_of(&system, None) else { return };
    let dir = xtask::target_dir().join("tmp");
    std::fs::create_dir_all(&dir).unwrap();
    let disk = dir.join("qemu-blk-virtio.img");
    xtask::make_disk_image(&disk).unwrap_or_else(|e| panic!("{e}"));
    let mut q = Qemu::start(&loader, &xtask::sel4::disk_args(&disk));
    q.wait_for(&["virtio-blk: device on transport"], BOOT_TIMEOUT);
    let out = q.wait_for(&["blk-test: PASS", "blk-test: FAIL", "panicked"], BOOT_TIMEOUT);
    q.check(out.ends_with("blk-test: PASS"), || format!("the block self-test did not pass: {out}"));
    q.wait_for(&["\n"], REPLY_TIMEOUT);
    let t = q.transcript();
    for l in t.lines().filter(|l| l.starts_with("virtio-blk:") || l.starts_with("blk-test:")) {
        let _ = writeln!(std::io::stderr(), "{l}");
    }
    drop(q);

    let bytes = std::fs::read(&disk).unwrap();
    let block = interfaces::blk::BLOCK;
    let blocks = (bytes.len() / block) as u64;
    let first = blocks - blk_driver::client::TEST_BLOCKS;
    let wrong = bytes[first as usize * block..]
        .iter()
        .enumerate()
        .filter(|&(i, &b)| b != blk_driver::client::pattern(first + (i / block) as u64, i % block))
        .count();
    assert_eq!(wrong, 0, "bytes of blocks {first}..{blocks} in the image differ from what the client wrote");
    let fsck = std::process::Command::new(xtask::dosfstools("fsck.fat").unwrap())
        .arg("-n")
        .arg(&disk)
        .output()
        .expect("running fsck.fat");
    assert!(
        fsck.status.success(),
        "fsck.fat -n: {}{}",
        String::from_utf8_lossy(&fsck.stdout),
        String::from_utf8_lossy(&fsck.stderr)
    );
    let _ = std::fs::remove_file(&disk);
}

/// What an fs client prints once it has stopped cleanly
/// (build/sel4/fs_client).
const FS_DONE: &str = "fs client done";
/// From the end of a scenario to both fs clients' clean stop.
const FS_STOP_TIMEOUT: Duration = Duration::from_secs(240);

/// A file-service system on seL4 (tests/systems/fs-sel4.xml with the image
/// store `store`, its programs built with `features`) booted in QEMU on a
/// fresh FAT32 image `<target>/tmp/<name>.img`, damaged first by
/// `xtask::fs_image::damage` if `damage` says how. Returns QEMU, the
/// image's path and the first status in which both clients have published
/// their counters; `None` (after a skip message) when the tools are
/// missing.
fn boot_fs(
    name: &str,
    store: Option<&str>,
    features: &[&str],
    damage: Option<&str>,
) -> Option<(Qemu, PathBuf, Vec<Vec<String>>)> {
    let system = xtask::workspace_root().join("tests/systems/fs-sel4.xml");
    let (loader, _) = image_with(&system, store, features)?;
    let dir = xtask::target_dir().join("tmp");
    std::fs::create_dir_all(&dir).unwrap();
    let disk = dir.join(format!("{name}.img"));
    xtask::make_disk_image(&disk).unwrap_or_else(|e| panic!("{e}"));
    if let Some(how) = damage {
        xtask::fs_image::damage(&disk, how).unwrap_or_else(|e| panic!("{e}"));
    }
    let mut q = Qemu::start(&loader, &xtask::sel4::disk_args(&disk));
    q.wait_for(&[PROMPT], BOOT_TIMEOUT);
    let started = all_started(&mut q);
    Some((q, disk, started))
}

/// [`clean_progress_of`] for the two fs clients, which must not have
/// stopped yet: the seL4 client stops after a fixed number of steps, and a
/// stop before the scenario's end would leave the rest of it untested.
fn fs_progress(q: &mut Qemu, before: &[Vec<String>], what: &str) -> Vec<Vec<String>> {
    let early = q.transcript().contains(FS_DONE);
    q.check(!early, || {
        format!("{what}: a client stopped before the scenario ended (raise STEPS in build/sel4/fs_client)")
    });
    clean_progress_of(q, before, what, 2)
}

/// The live fs slot's module version (one live slot).
fn live_fs_version(q: &mut Qemu, rows: &[Vec<String>]) -> String {
    let live = live_versions(rows, "fs");
    q.check(live.len() == 1, || format!("one live fs slot: {rows:?}"));
    live[0].1.clone()
}

/// No fs slot has faulted or hung, nor has the block driver faulted,
/// since the status table `earlier` (empty: ever), by the table `rows`.
fn fs_no_new_faults(q: &mut Qemu, earlier: &[Vec<String>], rows: &[Vec<String>], what: &str) {
    for r in rows.iter().filter(|r| r[1] == "fs" || r[0] == "blk") {
        let was = row(earlier, &r[0]).map_or("0", |e| e[6].as_str());
        q.check(r[6] == was, || format!("{what}: {} faulted or hung (faults {was} before): {r:?}", r[0]));
    }
}

/// Waits for both fs clients' clean stop: each closes its files, re-reads
/// them through fresh opens and prints its model (`fsmodel NAME GENERATION
/// LEN`), then `fs client done`. Neither may have seen a wrong reply or a
/// failed call, nor failed its final check. Returns their models.
fn fs_clean_stop(q: &mut Qemu) -> xtask::fs_image::Models {
    let deadline = Instant::now() + FS_STOP_TIMEOUT;
    while q.transcript().matches(FS_DONE).count() < 2 {
        if let Ok(Some(status)) = q.child.try_wait() {
            q.fail(&format!("QEMU exited ({status}) before both clients printed '{FS_DONE}'"));
        }
        if Instant::now() > deadline {
            q.fail(&format!("the clients did not both stop cleanly ('{FS_DONE}') within {FS_STOP_TIMEOUT:?}"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let transcript = q.transcript();
    // (The driver gives the device up for good when a request takes over
    // 5 s of guest time: a host that stalls QEMU's I/O, see the README.)
    q.check(!transcript.contains("the device is given up"), || {
        "the block driver gave the device up: every fs call failed from then on".into()
    });
    q.check(!transcript.contains("FAILED") && !transcript.contains("wrong reply"), || {
        "a client's final check failed, or a reply was wrong".into()
    });
    let model = xtask::fs_image::models(transcript.lines()).unwrap_or_else(|e| q.fail(&e));
    q.check(model.len() == 16, || format!("two clients, eight files each: {model:?}"));
    for (name, _, wrong, failed) in clients(&q.status()) {
        q.check((wrong, failed) == (0, 0), || format!("{name} after the stop: wrong={wrong} failed={failed}"));
    }
    model
}

/// With QEMU stopped, the outside judge, as on the host: `fsck` on the
/// image (`xtask::fs_image::fsck`, or a tolerant one), and the image's
/// root holds exactly the clients' files, each equal to its model byte for
/// byte (`xtask::fs_image`). Then the image is removed.
fn fs_judge(q: Qemu, disk: &Path, model: &xtask::fs_image::Models, fsck: impl FnOnce(&Path) -> Result<(), String>) {
    let transcript = q.transcript();
    drop(q);
    let judged = fsck(disk).and_then(|()| xtask::fs_image::check_files(disk, model, checking_clients::fs::pattern));
    if let Err(e) = judged {
        panic!("{e}\n----- QEMU transcript -----\n{transcript}\n----- end of transcript -----");
    }
    let _ = std::fs::remove_file(disk);
}

/// The file service on seL4 (tests/systems/fs-sel4.xml), as
/// tests/tests/fs.rs replays it on the host: fs on the virtio-blk driver,
/// with its two clients appending, reading back and auditing their files,
/// updated live across the five releases of embedded-sdmmc, v1 -> v5 -> v1
/// twice (without probation: fs has no journal), the clients making clean
/// progress (no wrong reply, no failed call) after each update, and no fs
/// slot ever faulting or hanging. Then the clients stop cleanly (the seL4
/// client makes a fixed number of steps, build/sel4/fs_client): each closes
/// its files, re-reads them through fresh opens and prints its model. With
/// QEMU stopped, `fsck.fat -n` must find nothing, and the image must hold
/// exactly the clients' files, each equal to its model byte for byte
/// (`xtask::fs_image`, the host test's judge).
#[test]
fn the_file_service_updates_live_across_the_fat_releases_on_sel4() {
    let _one = serial();
    let Some((mut q, disk, started)) = boot_fs("qemu-fs-sel4", None, &[], None) else { return };
    let mut before = fs_progress(&mut q, &started, "boot");
    q.command("probation 0", PROMPT);
    let mut blackouts = Vec::new();
    let start = Instant::now();
    for v in [2, 3, 4, 5, 4, 3, 2, 1, 2, 3, 4, 5, 4, 3, 2, 1] {
        let line = format!("update fs fs-v{v}");
        let out = q.switch(&line);
        q.check(out.contains(&format!("done: fs0 runs fs-v{v} ")), || format!("{line}:\n{out}"));
        if let Some(us) =
            out.lines().find_map(|l| l.trim().strip_prefix("blackout")?.trim().strip_suffix(" us")?.parse::<u64>().ok())
        {
            blackouts.push(us);
        }
        before = fs_progress(&mut q, &before, &line);
    }
    let updates = start.elapsed();
    fs_no_new_faults(&mut q, &[], &before, "the replay");
    let c = clients(&before);
    let model = fs_clean_stop(&mut q);
    let _ = writeln!(
        std::io::stderr(),
        "fs on seL4: 16 live updates v1 -> v5 -> v1 (twice) in {updates:?}, blackouts {blackouts:?} us; \
         clients (name, verified, wrong, failed): {c:?}; both stopped cleanly at {:?}",
        start.elapsed()
    );
    fs_judge(q, &disk, &model, xtask::fs_image::fsck);
}

/// The checkpoint probation on seL4 (see the README's *The file
/// service*): fs-v1 live, `fs-fault-write` and then `fs-spin-write` on
/// probation; each fails in the middle of a write (half its data and a new
/// cluster written through the crate, none of it on the disk: fs-core
/// stages a call's blocks until the call is done), is stopped (a fault; the watchdog) and rolled
/// back to fs-v1, which takes over its last checkpoint (schema 1); the
/// clients make clean progress after each, then stop cleanly, and the
/// disk is clean and holds exactly their files.
#[test]
fn a_write_that_fails_half_way_on_probation_is_rolled_back_on_sel4() {
    let _one = serial();
    let Some((mut q, disk, started)) = boot_fs("qemu-fs-probation", Some("test-images.bin"), &[], None) else {
        return;
    };
    let mut before = fs_progress(&mut q, &started, "boot");
    q.command("probation 600000", PROMPT);
    let mut reports = Vec::new();
    for (image, how) in [("fs-fault-write", "fault: fs0_"), ("fs-spin-write", "hung")] {
        let line = format!("update fs {image}");
        let out = q.switch(&line);
        q.check(out.contains(&format!("done: fs0 runs {image} ")), || format!("{line}:\n{out}"));
        let report = q.wait_for(&["nothing was lost"], Duration::from_secs(120));
        let early = q.transcript().contains(FS_DONE);
        q.check(!early, || format!("{line}: a client stopped before the fault"));
        q.check(report.contains(how) && report.contains("fs0: took over the checkpoint after"), || {
            format!("{line}: expected a rollback to the checkpoint: {report}")
        });
        q.check(report.contains("runs fs-v1 (v1, schema 1) again"), || format!("{line}: {report}"));
        reports.push(report.lines().filter(|l| l.contains("rolled back")).collect::<String>());
        before = fs_progress(&mut q, &before, &line);
    }
    let model = fs_clean_stop(&mut q);
    let _ = writeln!(std::io::stderr(), "fs on seL4, failures half way through a write on probation: {reports:?}");
    fs_judge(q, &disk, &model, xtask::fs_image::fsck);
}

/// The operator's `rollback fs` on seL4, as the host's probation test does
/// it: fs updated from fs-v1 to a newer release on probation (every call
/// checkpointed), then `rollback fs` typed on the console while the
/// clients write: fs-v1 takes over the new version's last checkpoint (from
/// schema 2 for fs-v5, schema 1 for fs-v3), the clients make clean
/// progress, and after their clean stop `fsck.fat -n` finds the image
/// clean and every file equals its client's model.
#[test]
fn the_operators_rollback_of_fs_keeps_every_file_on_sel4() {
    let _one = serial();
    let Some((mut q, disk, started)) = boot_fs("qemu-fs-rollback", None, &[], None) else { return };
    let mut before = fs_progress(&mut q, &started, "boot");
    q.command("probation 600000", PROMPT);
    let mut reports = Vec::new();
    for (v, schema) in [(5, 2), (3, 1)] {
        let line = format!("update fs fs-v{v}");
        let out = q.switch(&line);
        q.check(out.contains(&format!("done: fs0 runs fs-v{v} (v{v}, schema {schema})")), || format!("{line}:\n{out}"));
        before = fs_progress(&mut q, &before, &line);
        let on_probation = q.command("status", PROMPT);
        q.check(
            on_probation.contains(&format!("image fs-v{v} on probation")) && on_probation.contains("checkpointed"),
            || format!("{line}: fs-v{v} on probation, its calls checkpointed:\n{on_probation}"),
        );
        let out = q.switch("rollback fs");
        q.check(out.contains("on probation: the old version takes over the new one's last checkpoint"), || {
            format!("rollback fs after {line}: a rollback on probation:\n{out}")
        });
        q.check(
            out.contains("(operator's rollback)")
                && out.contains("runs fs-v1 (v1, schema 1) again")
                && out.contains("fs0: took over the checkpoint after")
                && out.contains("nothing was lost")
                && out.contains("done: fs0 runs fs-v1 (v1, schema 1)"),
            || format!("rollback fs after {line}: back on fs-v1 at the checkpoint:\n{out}"),
        );
        reports.extend(out.lines().filter(|l| l.starts_with("rolled back on probation")).map(str::to_owned));
        before = fs_progress(&mut q, &before, &format!("rollback fs after {line}"));
        let live = live_fs_version(&mut q, &before);
        q.check(live == "1", || format!("rollback fs after {line}: fs-v1 is live again, not v{live}"));
    }
    fs_no_new_faults(&mut q, &[], &before, "the rollbacks");
    let log = q.command("log all", PROMPT);
    q.check(!log.contains("state was lost"), || format!("state was lost:\n{log}"));
    let model = fs_clean_stop(&mut q);
    let _ = writeln!(std::io::stderr(), "fs on seL4, the operator's rollbacks: {reports:?}");
    fs_judge(q, &disk, &model, xtask::fs_image::fsck);
}

/// A probation that ends on seL4, as the host's probation test does it:
/// fs updated from fs-v1 to fs-v4 with a 3 s window; the clients progress
/// on probation, the manager says the probation is over and fs-v4 stays
/// (no rollback), the clients make clean progress on it, and after their
/// clean stop `fsck.fat -n` finds the image clean and every file equals
/// its client's model.
#[test]
fn an_fs_update_whose_probation_ends_stays_live_on_sel4() {
    const OVER: &str = "probation over: fs runs fs-v4 (v4) for good";
    let _one = serial();
    let Some((mut q, disk, started)) = boot_fs("qemu-fs-probation-ends", None, &[], None) else { return };
    let mut before = fs_progress(&mut q, &started, "boot");
    q.command("probation 3000", PROMPT);
    let mark = q.mark();
    let out = q.switch("update fs fs-v4");
    q.check(out.contains("done: fs0 runs fs-v4 (v4, schema 2)"), || format!("update fs fs-v4:\n{out}"));
    // Progress on probation (every call checkpointed); the end of the
    // probation may be printed meanwhile, between two status tables, so it
    // is looked for in the transcript since the update, not waited for.
    before = fs_progress(&mut q, &before, "fs-v4 on probation");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !q.since(mark).contains(OVER) {
        if Instant::now() > deadline {
            q.fail(&format!("no '{OVER}' within 60 s of the update"));
        }
        if let Ok(Some(status)) = q.child.try_wait() {
            q.fail(&format!("QEMU exited ({status}) while fs-v4 was on probation"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    q.cursor = q.transcript().len();
    let since = q.since(mark);
    q.check(!since.contains("rolled back"), || format!("fs-v4 was rolled back:\n{since}"));
    for what in ["fs-v4 for good", "fs-v4 for good, again"] {
        before = fs_progress(&mut q, &before, what);
        let live = live_fs_version(&mut q, &before);
        q.check(live == "4", || format!("{what}: fs-v4 is live, not v{live}"));
        q.check(before.iter().all(|r| r[1] != "fs" || !r.iter().any(|c| c == "probation:")), || {
            format!("{what}: fs is no longer on probation: {before:?}")
        });
    }
    fs_no_new_faults(&mut q, &[], &before, "the probation");
    let model = fs_clean_stop(&mut q);
    fs_judge(q, &disk, &model, xtask::fs_image::fsck);
}

/// The directories test of tests/tests/fs.rs on seL4: the clients built
/// with `fs-client-sel4/dirs` also make `/CnD` in their audits (once a
/// version can: fs-v1 answers `Unsupported`), put `INFO.TXT` in it, check
/// both by `Stat` and `List`, and check that `Rmdir` refuses (`NotEmpty`
/// on fs-v5, `Unsupported` before). First, on fs-v1 with a long probation,
/// `fs-fault-first-write` (fs-v5's adapter) lets them make their
/// directories and faults half way through the first write to a fresh
/// `INFO.TXT`; fs goes back to fs-v1 at the last checkpoint, and the stub
/// retries the write there. Then fs goes through v2, v5, v1, v3, v4, each
/// with two audits of both clients, no wrong reply, no failed call. After
/// the clients' clean stop, `fsck.fat -n` finds only the releases' known
/// `..` fault of a directory made in the root (and nothing else), and
/// every file in the root equals its client's model.
#[test]
fn directories_are_made_listed_and_not_removed_while_full_across_releases_on_sel4() {
    let _one = serial();
    let store = Some("test-images.bin");
    let Some((mut q, disk, started)) = boot_fs("qemu-fs-dirs", store, &["fs-client-sel4/dirs"], None) else {
        return;
    };
    let mut before = fs_progress(&mut q, &started, "boot");
    q.command("probation 600000", PROMPT);
    let out = q.switch("update fs fs-fault-first-write");
    q.check(out.contains("done: fs0 runs fs-fault-first-write "), || format!("update fs fs-fault-first-write:\n{out}"));
    let report = q.wait_for(&["nothing was lost"], Duration::from_secs(120));
    q.check(
        report.contains("fault: fs0_")
            && report.contains("fs0: took over the checkpoint after")
            && report.contains("runs fs-v1 (v1, schema 1) again"),
        || format!("fs-fault-first-write: expected a rollback to the checkpoint: {report}"),
    );
    let failed = q
        .transcript()
        .lines()
        .find_map(|l| Some(l[l.find("fs-faulty: wrote")?..].to_owned()).filter(|l| l.contains("of empty /C")));
    q.check(failed.is_some(), || "fs-fault-first-write failed in the first write to an empty file".into());
    before = fs_progress(&mut q, &before, "fs-fault-first-write rolled back");
    // Its one fault, and no other from here on.
    let after_the_fault = before.clone();
    q.command("probation 0", PROMPT);
    for v in [2, 5, 1, 3, 4] {
        let line = format!("update fs fs-v{v}");
        let out = q.switch(&line);
        q.check(out.contains(&format!("done: fs0 runs fs-v{v} ")), || format!("{line}:\n{out}"));
        // Two audits each (each of clean progress), so that each version
        // checks the directories.
        before = fs_progress(&mut q, &before, &line);
        before = fs_progress(&mut q, &before, &line);
    }
    fs_no_new_faults(&mut q, &after_the_fault, &before, "the directories");
    let model = fs_clean_stop(&mut q);
    let _ = writeln!(std::io::stderr(), "fs on seL4, directories: {}\n{report}", failed.unwrap_or_default());
    // Besides the clients' files in the root, each client's directory
    // holds its INFO.TXT and nothing else.
    let bad = xtask::fs_image::BAD_DOT_DOT;
    fs_judge(q, &disk, &model, |disk| {
        xtask::fs_image::fsck_tolerating(disk, &[("/C0D", bad), ("/C1D", bad)])?;
        for dir in ["C0D", "C1D"] {
            let files: Vec<_> = xtask::fs_image::files_in(disk, Some(dir))?.into_iter().collect();
            if files != [("INFO.TXT".to_owned(), checking_clients::fs::DIR_INFO.to_vec())] {
                return Err(format!(
                    "/{dir} should hold INFO.TXT ({:?}) only: {files:?}",
                    checking_clients::fs::DIR_INFO
                ));
            }
        }
        Ok(())
    });
}

/// The damaged-disk test of tests/tests/fs.rs on seL4, one boot for each
/// damage of `xtask::fs_image::damage`: a root directory whose cluster
/// chain loops, a zeroed boot sector, a FAT of pseudo-random bytes. The
/// clients get errors from the service (or data that is not theirs),
/// never a lost service (their stub would say `Unavailable`); the fs slot
/// and the block driver never fault, the console keeps answering, and fs
/// still updates like any service.
#[test]
fn a_damaged_disk_gives_the_clients_errors_and_never_faults_the_service_on_sel4() {
    let _one = serial();
    let mut seen = Vec::new();
    for how in xtask::fs_image::DAMAGES {
        let Some((mut q, disk, _)) = boot_fs(&format!("qemu-fs-damaged-{how}"), None, &[], Some(how)) else {
            return;
        };
        // No probation: the update below is final at once.
        q.command("probation 0", PROMPT);
        let deadline = Instant::now() + Duration::from_secs(120);
        let rows = loop {
            let rows = q.status();
            let c = clients(&rows);
            if c.len() == 2 && c.iter().all(|(_, _, wrong, failed)| wrong.saturating_add(*failed) >= 4) {
                break rows;
            }
            if Instant::now() > deadline {
                q.fail(&format!("{how}: the clients saw too few errors: {c:?}"));
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        fs_no_new_faults(&mut q, &[], &rows, how);
        let t = q.transcript();
        q.check(!t.contains("Unavailable"), || format!("{how}: the service never went away"));
        // Still healthy: it updates like any service, and nothing faulted.
        let out = q.switch("update fs fs-v5");
        q.check(out.contains("done: fs0 runs fs-v5 "), || format!("{how}: update fs fs-v5:\n{out}"));
        let rows = q.status();
        fs_no_new_faults(&mut q, &[], &rows, how);
        let live = live_fs_version(&mut q, &rows);
        q.check(live == "5", || format!("{how}: fs-v5 is live, not v{live}"));
        let first = q
            .transcript()
            .lines()
            .find_map(|l| Some(l[l.find("fsc")?..].to_owned()).filter(|l| l.contains(" failed: ")));
        seen.push(format!("{how}: {:?}; {}", clients(&rows), first.unwrap_or_default()));
        drop(q);
        let _ = std::fs::remove_file(&disk);
    }
    let _ = writeln!(std::io::stderr(), "fs on seL4, damaged disks:\n{}", seen.join("\n"));
}

#[test]
fn boots_on_sel4_and_serves_the_client() {
    let _one = serial();
    let Some((loader, sys)) = image(None) else { return };
    let mut q = Qemu::boot(&loader);
    all_started(&mut q);
    let mut counts = Vec::new();
    for _ in 0..2 {
        // The clients start their load once the services are up.
        std::thread::sleep(Duration::from_secs(1));
        let rows = q.status();
        for pd in &sys.pds {
            q.check(row(&rows, &pd.name).is_some(), || format!("PD {} is missing from the status table", pd.name));
        }
        let kv = row(&rows, "kv0_a").unwrap().clone();
        q.check(kv.get(4).map(String::as_str) == Some("live"), || format!("kv0_a is not live: {kv:?}"));
        let c = row(&rows, "client0").unwrap().clone();
        match (field(&c, "verified"), field(&c, "wrong")) {
            (Some(n), Some(0)) if n > 0 => counts.push(n),
            other => q.fail(&format!("client0 should have verified>0 and wrong=0, has {other:?}")),
        }
    }
    q.check(counts[1] > counts[0], || format!("client0's verified count did not grow: {counts:?}"));
    let _ = writeln!(std::io::stderr(), "seL4 system on QEMU: client0 verified {} -> {}", counts[0], counts[1]);
}

#[test]
fn the_counter_service_updates_under_its_client_on_sel4() {
    // The guide's example (README: 'Adding a new service type'), built for
    // seL4 from services.toml like every service: v1 -> v2 (state schema
    // 1 -> 2) and back, moving the state, then again within a probation
    // (the rollback replays v2's calls on v1).
    let _one = serial();
    let Some((loader, _)) = image(None) else { return };
    let mut q = Qemu::boot(&loader);
    let mut before = all_started(&mut q);
    for (line, runs) in [
        ("probation 0", None),
        ("update counter counter-v2", Some("counter-v2")),
        ("rollback counter", Some("counter-v1")),
        ("probation 60000", None),
        ("update counter counter-v2", Some("counter-v2")),
        ("rollback counter", Some("counter-v1")),
    ] {
        let Some(runs) = runs else {
            q.command(line, PROMPT);
            continue;
        };
        let out = q.switch(line);
        q.check(out.contains(&format!("done: counter0 runs {runs}")), || format!("{line}: {out}"));
        std::thread::sleep(Duration::from_millis(500));
        let after = q.status();
        check_clean_progress(&mut q, &before, &after, line);
        before = after;
    }
    let c = row(&before, "counter_client0").cloned().unwrap_or_default();
    let _ = writeln!(std::io::stderr(), "counter on seL4: counter_client0 {}", c.join(" "));
}

#[test]
fn hundreds_of_updates_and_rollbacks_under_load_lose_nothing_on_sel4() {
    const TOTAL: usize = 400;
    let _one = serial();
    let Some((loader, _)) = image(None) else { return };
    let mut q = Qemu::boot(&loader);
    // Rollbacks here move the state back (the cold path); the hot path,
    // within a probation, is in the misbehaving tests and the chaos soak.
    let out = q.command("probation 0", PROMPT);
    q.check(out.contains("probation for the next updates: 0 ms"), || format!("probation 0: {out}"));
    let before = all_started(&mut q);
    let start = Instant::now();
    for k in 0..TOTAL {
        // update, rollback, update, rollback...; the target switches
        // between v2 and v3 every 10 pairs: a new target means the idle
        // slot (retired, holding the other one) is restarted and rebuilt.
        let line = if k % 2 == 0 {
            format!("update kv {}", if (k / 20) % 2 == 0 { "kv-v2" } else { "kv-v3" })
        } else {
            "rollback kv".to_owned()
        };
        let out = q.switch(&line);
        q.check(out.contains("done: kv0 runs") && out.contains("kv1 runs"), || {
            format!("operation {k} ({line}) did not commit:\n{out}")
        });
    }
    let elapsed = start.elapsed();
    // Let every client finish a full audit after the last switch.
    std::thread::sleep(Duration::from_secs(1));
    let after = q.status();
    check_clean_progress(&mut q, &before, &after, "after the updates");
    for r in after.iter().filter(|r| r[1] == "kv" && r[4] == "live") {
        q.check(r[2] == "1", || format!("every instance back on kv-v1: {r:?}"));
    }
    let faults: u64 = after.iter().map(|r| r[6].parse::<u64>().unwrap_or(1)).sum();
    q.check(faults == 0, || format!("no PD faulted: {after:?}"));
    let log = q.command("log", "update(s) in all)");
    // Plus the boot of each instance (serial0, kv0, kv1, ...); no probation.
    let boots = xtask::description().instances().count();
    q.check(log.contains(&format!(" {} update(s) in all)", TOTAL + boots)), || format!("log: {log}"));
    let c0 = clients(&after)[0].clone();
    let _ = writeln!(
        std::io::stderr(),
        "seL4: {TOTAL} updates and rollbacks under load in {elapsed:.1?} ({:.1} ms each); client0 verified {}",
        elapsed.as_secs_f64() * 1e3 / TOTAL as f64,
        c0.1
    );
}

#[test]
fn every_failure_before_commit_rolls_back_with_nothing_lost_on_sel4() {
    let _one = serial();
    let Some((loader, _)) = image(Some("test-images.bin")) else { return };
    let mut q = Qemu::boot(&loader);
    all_started(&mut q);
    // Start from v2 so there is state to carry and converted state to check.
    let out = q.switch("update kv kv-v2");
    q.check(out.contains("done:"), || format!("update to kv-v2: {out}"));
    let cases = [
        ("kv-needs-timer", "build", "needs channel 'timer', which slot kv0_a lacks"),
        ("kv-fault-init", "build", "faulted"),
        ("kv-bad-import", "transfer", "module import failed with status -3"),
        ("kv-fault-import", "transfer", "faulted"),
        // Hardware faults (data aborts), not panics: the slot cannot answer
        // for itself; the manager, which commands it through its control
        // page and never waits on it without a deadline, hears of the
        // fault and resets it.
        ("kv-abort-init", "build", "faulted"),
        ("kv-abort-import", "transfer", "faulted"),
    ];
    for (image, phase, why) in cases {
        let before = q.status();
        let t = Instant::now();
        let out = q.switch(&format!("update kv {image}"));
        let took = t.elapsed();
        q.check(out.contains(&format!("  {phase:<9} FAILED: ")) && out.contains(why), || {
            format!("{image}: expected {phase} to fail with '{why}':\n{out}")
        });
        q.check(out.contains("rolled back"), || format!("{image}: not rolled back:\n{out}"));
        let _ = writeln!(
            std::io::stderr(),
            "seL4: update kv {image} ({took:.1?}): {}",
            out.lines().rev().nth(1).unwrap_or("")
        );
        std::thread::sleep(Duration::from_millis(500));
        let after = q.status();
        check_clean_progress(&mut q, &before, &after, image);
        for r in after.iter().filter(|r| r[1] == "kv" && r[4] == "live") {
            q.check((r[3].as_str(), r[2].as_str()) == ("b", "2"), || format!("{image}: v2 still live in b: {r:?}"));
        }
    }
    // A module that never quiesces: updating to it works (v2 quiesces; it
    // is built into the slots restarted after the faults above), updating
    // away from it times out and rolls back.
    let out = q.switch("update kv kv-never-ready");
    q.check(out.contains("done: kv0 runs kv-never-ready (v94, schema 2) in slot a"), || {
        format!("update to kv-never-ready: {out}")
    });
    let before = q.status();
    let t = Instant::now();
    let out = q.switch("update kv kv-v3 --timeout 300");
    let took = t.elapsed();
    q.check(out.contains("  quiesce   FAILED: kv0: prepare not ready after 300 ms"), || out.clone());
    q.check(took < Duration::from_secs(10), || format!("the timeout bounds the attempt: {took:?}"));
    std::thread::sleep(Duration::from_millis(500));
    let after = q.status();
    check_clean_progress(&mut q, &before, &after, "kv-never-ready");
    // A failing switch stops at the first instance: each faulting module
    // was loaded (and faulted) once, and the manager heard of every fault.
    let faults: u64 = after.iter().map(|r| r[6].parse::<u64>().unwrap_or(100)).sum();
    q.check(faults == 4, || format!("the four faulting modules faulted once each: {after:?}"));
    let log = q.command("log", "update(s) in all)");
    for p in ["build failed", "transfer failed", "quiesce failed"] {
        q.check(log.contains(p), || format!("log names '{p}':\n{log}"));
    }
}

#[test]
fn serial_service_updates_under_typing_lose_no_byte_on_sel4() {
    const SWITCHES: usize = 20;
    let _one = serial();
    let sys_xml = xtask::workspace_root().join("tests/systems/serial-update.xml");
    let Some((loader, _)) = image_of(&sys_xml, Some("test-images.bin")) else { return };
    let mut q = Qemu::boot(&loader);
    let served_before = wait_verified(&mut q, "client0", 0);
    // Every command typed ahead in one write: bytes are in flight in both
    // directions while the slots change. (Each `rollback` comes within the
    // update's probation: it is a hot rollback.)
    let mut script = String::new();
    for round in 0..SWITCHES {
        let cmd = if round % 2 == 0 { "update serial serial-v2" } else { "rollback serial" };
        let query = format!("version{}", " ".repeat(round % 5));
        for line in [cmd, &query] {
            script.push_str(line);
            script.push('\n');
        }
    }
    let mark = q.mark();
    let start = Instant::now();
    q.send(&script);
    // Every command is answered. The manager takes console input while a
    // switch runs, so the echo of the lines typed ahead is interleaved with
    // the answers, and a `version` that arrives while a switch runs with
    // no line waiting is answered at once: count the answers.
    let deadline = Instant::now() + REPLY_TIMEOUT * 2;
    loop {
        let t = q.since(mark);
        let versions = t.matches("update manager 0.1.0, module ABI v1").count();
        let switches = t.matches("done: serial0 runs serial-v").count();
        q.check(!t.contains("error:"), || "no command arrived garbled".into());
        if (versions, switches) == (SWITCHES, SWITCHES) {
            break;
        }
        if Instant::now() > deadline {
            q.fail(&format!("{versions} version and {switches} switch answers of {SWITCHES} each"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let elapsed = start.elapsed();
    let t = q.since(mark);
    // Every byte typed was echoed, in order, whatever came between.
    let mut hay = t.chars();
    let lost = script.chars().position(|c| !hay.any(|h| h == c));
    q.check(lost.is_none(), || format!("the echo lost the typed byte at offset {lost:?} of {script:?}"));
    let mut blackouts: Vec<u64> = t
        .lines()
        .filter_map(|l| l.trim().strip_prefix("blackout")?.trim().strip_suffix("us")?.trim().parse().ok())
        .collect();
    q.cursor = q.transcript().len();
    let rows = q.status();
    let live = rows.iter().find(|r| r[1] == "serial" && r[4] == "live").cloned();
    q.check(live.as_ref().is_some_and(|r| r.join(" ").contains("gen 21")), || {
        format!("a live serial slot after {SWITCHES} switches from boot (gen 21): {live:?}")
    });
    // The whole script takes well under a second, most of it at a higher
    // priority than the client: its progress is checked after.
    wait_verified(&mut q, "client0", served_before);
    let faults: u64 = rows.iter().map(|r| r[6].parse::<u64>().unwrap_or(1)).sum();
    q.check(faults == 0, || format!("no PD faulted: {rows:?}"));
    blackouts.sort_unstable();
    let _ = writeln!(
        std::io::stderr(),
        "seL4: {SWITCHES} serial switches under typing in {elapsed:.1?}, every byte echoed; update blackout median {} us, \
         max {} us",
        blackouts.get(blackouts.len() / 2).copied().unwrap_or(0),
        blackouts.last().copied().unwrap_or(0)
    );
}

/// Runs `line` (an update or rollback of kv) and checks that both
/// instances run `runs` (`kv-c3 (v3, schema 2)`) from the image named
/// first in it, with the clients clean.
fn switch_kv(q: &mut Qemu, line: &str, runs: &str) {
    let before = q.status();
    let out = q.switch(line);
    q.check(out.contains(&format!("done: kv0 runs {runs}")) && out.contains(&format!("kv1 runs {runs}")), || {
        format!("{line}: expected both instances on {runs}:\n{out}")
    });
    let after = clean_progress(q, &before, line);
    let image = format!("image {}", runs.split(' ').next().unwrap_or(""));
    for r in after.iter().filter(|r| r[1] == "kv" && r[4] == "live") {
        q.check(r.join(" ").contains(&image), || format!("{line}: status shows {image}: {r:?}"));
    }
}

#[test]
fn kv_updates_from_rust_to_c_and_back_on_sel4() {
    let _one = serial();
    let Some((loader, _)) = image(None) else { return };
    let mut q = Qemu::boot(&loader);
    all_started(&mut q);
    // kv v3 written in C (pds/kv/c-v3), built with aarch64-linux-gnu-gcc
    // and linked to the slot addresses. No probation first: every switch
    // moves the state, in both of its schemas.
    let out = q.command("probation 0", PROMPT);
    q.check(out.contains("probation for the next updates: 0 ms"), || format!("probation 0: {out}"));
    switch_kv(&mut q, "update kv kv-c3", "kv-c3 (v3, schema 2)"); // v1 -> C: schema 1 in
    switch_kv(&mut q, "update kv kv-v2", "kv-v2 (v2, schema 2)"); // C -> Rust: schema 2 out
    switch_kv(&mut q, "update kv kv-c3", "kv-c3 (v3, schema 2)"); // Rust -> C: schema 2 in
    switch_kv(&mut q, "rollback kv", "kv-v2 (v2, schema 2)");
    switch_kv(&mut q, "update kv kv-c3", "kv-c3 (v3, schema 2)");
    switch_kv(&mut q, "update kv kv-v1", "kv-v1 (v1, schema 1)"); // C -> v1: schema 1 out
    for k in 0..10 {
        let (line, runs) = if k % 2 == 0 {
            ("update kv kv-c3", "kv-c3 (v3, schema 2)")
        } else {
            ("update kv kv-v3", "kv-v3 (v3, schema 2)")
        };
        switch_kv(&mut q, line, runs);
    }
    // With probation: the Rust version takes over again by replaying the
    // calls the C version served.
    let out = q.command("probation 60000", PROMPT);
    q.check(out.contains("60000 ms"), || format!("probation 60000: {out}"));
    switch_kv(&mut q, "update kv kv-c3", "kv-c3 (v3, schema 2)");
    switch_kv(&mut q, "rollback kv", "kv-v3 (v3, schema 2)");
    let rows = q.status();
    let faults: u64 = rows.iter().map(|r| r[6].parse::<u64>().unwrap_or(1)).sum();
    q.check(faults == 0, || format!("no PD faulted: {rows:?}"));
    let c0 = clients(&rows)[0].clone();
    let _ = writeln!(std::io::stderr(), "seL4: kv moved between Rust and C 18 times; client0 verified {}", c0.1);
}

#[test]
fn kv_keeps_serving_while_blob_is_updated_on_sel4() {
    const ROUNDS: usize = 20;
    const PER_ROUND: usize = 4;
    let _one = serial();
    // tests/systems/two-services.xml (as tests/tests/isolation.rs on the
    // host): kv with two clients, and blob, whose slots are updated again
    // and again; kv is never touched and its clients never stall.
    let sys_xml = xtask::workspace_root().join("tests/systems/two-services.xml");
    let Some((loader, _)) = image_of(&sys_xml, Some("test-images.bin")) else { return };
    let mut q = Qemu::boot(&loader);
    let mut last = clients(&all_started(&mut q));
    q.check(last.len() == 2, || format!("two clients expected: {last:?}"));
    let start = Instant::now();
    let mut updates = 0;
    for round in 0..ROUNDS {
        for _ in 0..PER_ROUND {
            let line = if updates % 2 == 0 { "update blob blob-v2" } else { "rollback blob" };
            let out = q.switch(line);
            q.check(out.contains("done: blob0 runs"), || format!("{line}: {out}"));
            // Blob pre-copies: its state left the old slot while it served,
            // and only the changes since moved at the stop. (A rollback on
            // probation replays the journal: no state moves.)
            let moved = out.contains("  precopy ") && out.contains("  stop-copy ");
            q.check(moved || !line.starts_with("update"), || format!("{line}: no pre-copy: {out}"));
            updates += 1;
        }
        let rows = q.status();
        let now = clients(&rows);
        for ((name, v0, _, _), (_, v1, wrong, failed)) in last.iter().zip(&now) {
            q.check(v1 > v0 && *v1 != u64::MAX, || {
                format!("round {round}: {name} made no progress ({v0} -> {v1}) while blob was updated")
            });
            q.check((*wrong, *failed) == (0, 0), || format!("round {round}: {name}: wrong={wrong} failed={failed}"));
        }
        for r in rows.iter().filter(|r| r[1] == "client") {
            q.check(field(r, "retried") == Some(0), || format!("kv was never moved: {r:?}"));
        }
        let kv = row(&rows, "kv0_a").cloned().unwrap_or_default();
        q.check(kv.get(4).map(String::as_str) == Some("live") && kv.join(" ").ends_with("gen 1 image kv-v1"), || {
            format!("kv was not touched: {kv:?}")
        });
        last = now;
    }
    let elapsed = start.elapsed();
    let _ = writeln!(
        std::io::stderr(),
        "seL4: {updates} blob updates and rollbacks in {elapsed:.1?}; kv's clients progressed in all {ROUNDS} rounds \
         (client0 verified {})",
        last[0].1
    );
}

#[test]
fn blob_state_written_after_its_precopy_arrives_whole_on_sel4() {
    let _one = serial();
    // tests/systems/blob-writer.xml (as tests/tests/streamed_transfer.rs
    // on the host): blob's client rewrites a word in each of 64 pages in
    // turn and audits the whole 256 KiB state every 16 steps; every update
    // pre-copies, so each stop must carry exactly the pages written since.
    let sys_xml = xtask::workspace_root().join("tests/systems/blob-writer.xml");
    let Some((loader, _)) = image_of(&sys_xml, Some("test-images.bin")) else { return };
    let mut q = Qemu::boot(&loader);
    let mut last = clients(&all_started(&mut q));
    q.check(last.len() == 1, || format!("one client expected: {last:?}"));
    // Every switch moves the state (a rollback on probation replays a
    // journal instead).
    q.command("probation 0", PROMPT);
    let audits = |q: &mut Qemu| {
        let rows = q.status();
        row(&rows, "blobwriter0").and_then(|r| field(r, "audits")).unwrap_or(0)
    };
    let mut audited = 0;
    let mut stop_copy = Vec::new();
    for round in 0..12 {
        let deadline = Instant::now() + Duration::from_secs(60);
        while audits(&mut q) <= audited {
            q.check(Instant::now() < deadline, || format!("round {round}: no audit past {audited}"));
            std::thread::sleep(Duration::from_millis(100));
        }
        audited = audits(&mut q);
        let now = clients(&q.status());
        let (_, _, wrong, failed) = &now[0];
        q.check((*wrong, *failed) == (0, 0), || format!("round {round}: wrong={wrong} failed={failed}: {now:?}"));
        last = now;
        if round == 11 {
            break;
        }
        let line = if round % 2 == 0 { "update blob blob-v2" } else { "rollback blob" };
        let out = q.switch(line);
        q.check(out.contains("done: blob0 runs"), || format!("{line}: {out}"));
        let bytes = out.lines().find_map(|l| l.trim_start().strip_prefix("stop-copy "));
        let bytes: Option<u64> = bytes.and_then(|b| b.split_whitespace().next()?.parse().ok());
        q.check(bytes.is_some(), || format!("{line}: no stop-copy: {out}"));
        stop_copy.extend(bytes);
    }
    let _ = writeln!(
        std::io::stderr(),
        "seL4: 11 pre-copied blob updates and rollbacks under a writing client, {audited} audits passed; \
         bytes moved at the stops: {stop_copy:?}; {last:?}"
    );
}

/// Boots the test image store with the clients started; returns the
/// first status.
fn boot_test_store(q: &mut Option<Qemu>) -> Option<Vec<Vec<String>>> {
    let (loader, _) = image(Some("test-images.bin"))?;
    let q = q.insert(Qemu::boot(&loader));
    Some(all_started(q))
}

/// Misbehaving before the commit (as misbehaving.rs on the host): a module
/// that spins in `init` or in its import never answers; the manager stops
/// the slot at the command's deadline (or the watchdog's), the update fails
/// saying so, and the old version never stopped serving for long.
#[test]
fn a_version_that_spins_before_its_commit_is_refused_on_sel4() {
    let _one = serial();
    let mut q = None;
    let Some(before) = boot_test_store(&mut q) else { return };
    let q = q.as_mut().unwrap();
    let mut took = Vec::new();
    for (image, phase) in [("kv-spin-init", "build"), ("kv-spin-import", "transfer")] {
        let t = Instant::now();
        let out = q.switch(&format!("update kv {image}"));
        let elapsed = t.elapsed();
        q.check(out.contains(&format!("  {phase:<9} FAILED: ")) && out.contains("hung"), || {
            format!("{image}: {phase} must fail, hung:\n{out}")
        });
        q.check(out.contains("nothing was lost"), || format!("{image}: not rolled back:\n{out}"));
        q.check(elapsed < Duration::from_secs(10), || format!("{image}: the update gave up after {elapsed:?}"));
        took.push(format!("{image} {elapsed:.1?}"));
    }
    let after = clean_progress(q, &before, "after the spinning builds");
    for (pd, v) in live_kv_versions(&after) {
        q.check(v == "1", || format!("{pd} still runs kv-v1: {after:?}"));
    }
    // The slots that hung were reset: empty, ready for the next update.
    let out = q.switch("update kv kv-v2");
    q.check(out.contains("done: kv0 runs kv-v2"), || format!("update after the hangs: {out}"));
    let _ = writeln!(std::io::stderr(), "seL4: spinning updates refused (time to give up): {}", took.join(", "));
}

/// What one misbehaving version after its commit cost: how long the
/// console took to answer meanwhile, and the recovery the manager reports
/// for a hang.
struct LateOutcome {
    statuses: usize,
    worst_status: Duration,
    recovery_ms: Option<u64>,
}

/// The service runs kv-v2 (final); `update kv <image>` commits, then the
/// new version misbehaves after a few thousand calls (or at its first
/// notification). The console must answer `status` all along, the update
/// must be rolled back on probation with nothing lost, and the service must
/// be back on kv-v2 with every client clean.
fn rolled_back_after_commit(q: &mut Qemu, image: &str, hang: bool) -> LateOutcome {
    let before = q.status();
    let faults_before = kv_faults(&before);
    let mark = q.mark();
    let out = q.switch(&format!("update kv {image}"));
    q.check(out.contains(&format!("done: kv0 runs {image}")), || format!("update to {image}: {out}"));
    // Ask for the status until the rollback is reported, and time each.
    let (mut statuses, mut worst) = (0, Duration::ZERO);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let t = Instant::now();
        q.status();
        worst = worst.max(t.elapsed());
        statuses += 1;
        let text = q.since(mark);
        if let Some(i) = text.find("rolled back on probation (") {
            if text[i..].contains("done: ") && (!hang || text[i..].contains("after the hang began\n")) {
                break;
            }
        }
        if Instant::now() > deadline {
            q.fail(&format!("{image}: no rollback on probation within 60 s"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let text = q.since(mark);
    let report = &text[text.find("rolled back on probation (").unwrap()..];
    q.check(report.contains("runs kv-v2 (v2, schema 2) again") && report.contains("nothing was lost"), || {
        format!("{image}: back on kv-v2 with nothing lost:\n{report}")
    });
    q.check(!text.contains("state was lost"), || format!("{image}: state was lost:\n{text}"));
    let recovery_ms =
        report.split("serving again ").nth(1).and_then(|t| t.split(' ').next()).and_then(|n| n.parse().ok());
    q.check(!hang || recovery_ms.is_some(), || format!("{image}: no recovery time in:\n{report}"));
    q.cursor = q.transcript().len();
    let after = clean_progress(q, &before, image);
    for (pd, v) in live_kv_versions(&after) {
        q.check(v == "2", || format!("{image}: {pd} is back on kv-v2: {after:?}"));
    }
    // One fault (or hang) per slot at most: no crash loop.
    for (pd, n) in kv_faults(&after) {
        let n0 = faults_before.get(&pd).copied().unwrap_or(0);
        q.check(n <= n0 + 1, || format!("{image}: {pd} faulted {} times", n - n0));
    }
    LateOutcome { statuses, worst_status: worst, recovery_ms }
}

/// Misbehaving after the commit (as misbehaving.rs on the host), one boot
/// for the four ways: spinning in a call, a data abort in a call, a panic
/// in a call, spinning in `notified`; then a version that floods its log.
#[test]
fn a_version_that_misbehaves_after_its_commit_is_rolled_back_on_sel4() {
    let _one = serial();
    let mut q = None;
    if boot_test_store(&mut q).is_none() {
        return;
    }
    let q = q.as_mut().unwrap();
    let out = q.switch("update kv kv-v2");
    q.check(out.contains("done: kv0 runs kv-v2"), || format!("update to kv-v2: {out}"));
    let out = q.command("accept kv", "for good");
    q.check(out.contains("accepted by the operator"), || format!("accept kv: {out}"));
    let mut report = Vec::new();
    for (image, hang) in
        [("kv-late-spin", true), ("kv-late-fault", false), ("kv-late-panic", false), ("kv-spin-notified", true)]
    {
        let t = Instant::now();
        let o = rolled_back_after_commit(q, image, hang);
        q.check(o.worst_status < Duration::from_secs(5), || format!("{image}: status took {:?}", o.worst_status));
        report.push(format!(
            "{image}: {:.1?}, {} status answered meanwhile (worst {:.0?}){}",
            t.elapsed(),
            o.statuses,
            o.worst_status,
            o.recovery_ms.map_or(String::new(), |ms| format!(", serving again {ms} ms after the hang began"))
        ));
    }
    // A version that logs a line per call: the shell rate-limits its log
    // (the lines go to the kernel's debug console, the same UART), and the
    // console and the clients do not notice.
    let before = q.status();
    let mark = q.mark();
    let out = q.switch("update kv kv-log-flood");
    q.check(out.contains("done: kv0 runs kv-log-flood"), || format!("update to kv-log-flood: {out}"));
    let mut worst = Duration::ZERO;
    for _ in 0..5 {
        let t = Instant::now();
        q.status();
        worst = worst.max(t.elapsed());
        std::thread::sleep(Duration::from_millis(100));
    }
    q.check(worst < Duration::from_secs(5), || format!("kv-log-flood: status took {worst:?}"));
    q.check(q.since(mark).contains("line(s) dropped (more than 20 in 100 ms)"), || "the log is rate-limited".into());
    let out = q.switch("rollback kv");
    q.check(out.contains("done: kv0 runs kv-v2"), || format!("rollback from kv-log-flood: {out}"));
    clean_progress(q, &before, "kv-log-flood");
    report.push(format!("kv-log-flood: rate-limited, status answered within {worst:.0?}"));
    let _ = writeln!(std::io::stderr(), "seL4: misbehaving after the commit:\n  {}", report.join("\n  "));
}

/// xorshift64*: a fixed sequence per seed, so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What a chaos event expects of the console's answer.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Committed (a `done:` line), or refused as already running.
    Done,
    /// Failed before the commit and rolled back; `hang`: the module spun.
    RolledBack { hang: bool },
    /// Committed, then rolled back on probation when the new version
    /// misbehaved; `hang`: it spun (the watchdog found it).
    Late { hang: bool },
    /// `rollback kv`: done, or refused (nothing to go back to).
    Rollback,
    /// `accept kv`: accepted, or nothing on probation.
    Accept,
    /// `status`: the table.
    Status,
}

/// Failures before the commit, and whether the module spins. (Not
/// kv-never-ready and kv-spin-prepare: they fail only when an update
/// leaves them, which the other tests cover.)
const FAIL_BEFORE_COMMIT: &[(&str, bool)] = &[
    ("kv-fault-init", false),
    ("kv-abort-init", false),
    ("kv-bad-import", false),
    ("kv-fault-import", false),
    ("kv-abort-import", false),
    ("kv-needs-timer", false),
    ("kv-spin-init", true),
    ("kv-spin-import", true),
];

/// A random event; `late`: it may be a version that misbehaves after its
/// commit, or a `status` (neither is typed ahead: the next line could roll
/// a late one back before it misbehaves, and a `status` typed while a
/// switch runs is answered at once, out of order).
fn pick(rng: &mut Rng, late: bool) -> (String, Expect) {
    match rng.below(if late { 100 } else { 70 }) {
        0..=29 => (format!("update kv kv-v{}", 2 + rng.below(2)), Expect::Done),
        30..=44 => ("rollback kv".into(), Expect::Rollback),
        45..=49 => ("accept kv".into(), Expect::Accept),
        50..=69 => {
            let (img, hang) = FAIL_BEFORE_COMMIT[rng.below(FAIL_BEFORE_COMMIT.len() as u64) as usize];
            (format!("update kv {img}"), Expect::RolledBack { hang })
        }
        70..=77 => (
            format!("update kv {}", ["kv-late-fault", "kv-late-panic"][rng.below(2) as usize]),
            Expect::Late { hang: false },
        ),
        78..=82 => (
            format!("update kv {}", ["kv-late-spin", "kv-spin-notified"][rng.below(2) as usize]),
            Expect::Late { hang: true },
        ),
        _ => ("status".into(), Expect::Status),
    }
}

/// Counts of what the soak did, and what it measured.
#[derive(Default)]
struct Chaos {
    committed: usize,
    refused: usize,
    spun_before_commit: Vec<Duration>,
    late: usize,
    hang_recoveries_ms: Vec<u64>,
    other: usize,
    typed_ahead: usize,
    worst_answer: Duration,
}

/// Waits for the answer to `line` (typed already) and checks it.
fn chaos_answer(q: &mut Qemu, k: usize, line: &str, expect: Expect, c: &mut Chaos) {
    let t = Instant::now();
    let ctx = |out: &str| format!("event {k}: '{line}':\n{out}");
    match expect {
        Expect::Status => {
            q.wait_for(&["\nPD "], REPLY_TIMEOUT);
            q.wait_for(&[PROMPT], REPLY_TIMEOUT);
            c.worst_answer = c.worst_answer.max(t.elapsed());
            c.other += 1;
        }
        Expect::Accept => {
            let mut out = q.wait_for(&["accepted by the operator: ", "error: "], REPLY_TIMEOUT);
            out += &q.wait_for(&["\n"], REPLY_TIMEOUT);
            q.check(out.contains("accepted by the operator: ") || out.contains("no update on probation"), || ctx(&out));
            c.worst_answer = c.worst_answer.max(t.elapsed());
            c.other += 1;
        }
        Expect::Rollback => {
            let out = q.switch_answer(line);
            q.check(
                out.contains("done: kv0 runs")
                    || out.contains("has no previous version")
                    || out.contains("below the version floor"),
                || ctx(&out),
            );
            q.check(!out.contains("state was lost"), || ctx(&out));
            c.other += 1;
        }
        Expect::Done => {
            let out = q.switch_answer(line);
            // A version whose probation ended raised the floor.
            if out.contains("already runs") || out.contains("below the version floor") {
                c.other += 1;
            } else {
                q.check(out.contains("done: kv0 runs") && out.contains("kv1 runs"), || ctx(&out));
                c.committed += 1;
            }
        }
        Expect::RolledBack { hang } => {
            let out = q.switch_answer(line);
            q.check(out.contains("FAILED") && out.contains("nothing was lost"), || ctx(&out));
            q.check(!hang || out.contains("hung"), || ctx(&out));
            if hang {
                c.spun_before_commit.push(t.elapsed());
            }
            c.refused += 1;
        }
        Expect::Late { hang } => {
            let mark = q.mark();
            let out = q.switch_answer(line);
            q.check(out.contains("done: kv0 runs"), || ctx(&out));
            // The misbehaviour comes after a few thousand calls (or at the
            // first notification); its report follows on its own.
            let report = q.wait_for(&["rolled back on probation ("], Duration::from_secs(60));
            let rest = q.wait_for(&["done: "], REPLY_TIMEOUT) + &q.wait_for(&["\n"], REPLY_TIMEOUT);
            q.check(rest.contains("nothing was lost"), || ctx(&(report.clone() + &rest)));
            if hang {
                let tail = q.wait_for(&["after the hang began"], REPLY_TIMEOUT);
                match tail
                    .rsplit("serving again ")
                    .next()
                    .and_then(|t| t.split(' ').next())
                    .and_then(|n| n.parse().ok())
                {
                    Some(ms) => c.hang_recoveries_ms.push(ms),
                    None => q.fail(&format!("event {k}: no recovery time in: {tail}")),
                }
            }
            let all = q.since(mark);
            q.check(!all.contains("state was lost"), || ctx(&all));
            c.late += 1;
        }
    }
}

/// The chaos soak on seL4 (as tests/tests/chaos.rs on the host, shorter):
/// random operator events under the four clients, which check every reply.
/// Updates, rollbacks (on probation and after), acceptances, every way a
/// new version can misbehave before its commit (faults, aborts, spins) and
/// after it (spinning, faulting, panicking), and commands typed ahead of
/// each other. Nothing may be lost: 0 wrong and 0 failed calls, and full
/// audits at the end. `QEMU_CHAOS_EVENTS` (default 120) and
/// `QEMU_CHAOS_SEED` change the run.
#[test]
fn chaos_soak_under_load_loses_nothing_on_sel4() {
    let events: usize = std::env::var("QEMU_CHAOS_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(120);
    let seed: u64 = std::env::var("QEMU_CHAOS_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x0005_e14c_4a05);
    let _one = serial();
    let mut q = None;
    let Some(_) = boot_test_store(&mut q) else { return };
    let q = q.as_mut().unwrap();
    // A window long enough that every misbehaving version misbehaves while
    // on probation.
    let out = q.command("probation 60000", PROMPT);
    q.check(out.contains("probation for the next updates: 60000 ms"), || format!("probation: {out}"));
    let before = q.status();
    let mut rng = Rng(seed | 1);
    let mut c = Chaos::default();
    let start = Instant::now();
    let mut done = 0;
    while done < events {
        if rng.below(10) == 0 {
            // Type-ahead: three lines in one write, answered in order.
            let picks: Vec<(String, Expect)> = (0..3).map(|_| pick(&mut rng, false)).collect();
            let text: String = picks.iter().map(|(l, _)| format!("{l}\n")).collect();
            q.send(&text);
            for (line, expect) in &picks {
                chaos_answer(q, done, line, *expect, &mut c);
                done += 1;
            }
            c.typed_ahead += 3;
            continue;
        }
        let (line, expect) = pick(&mut rng, true);
        q.send(&format!("{line}\n"));
        chaos_answer(q, done, &line, expect, &mut c);
        done += 1;
        if done % 25 == 0 {
            let t = Instant::now();
            let rows = q.status();
            c.worst_answer = c.worst_answer.max(t.elapsed());
            for (name, _, wrong, failed) in clients(&rows) {
                q.check((wrong, failed) == (0, 0), || {
                    format!("after event {done}: {name}: wrong={wrong} failed={failed}")
                });
            }
        }
    }
    let elapsed = start.elapsed();
    q.cursor = q.transcript().len();
    let end = q.status();
    let after = clean_progress(q, &end, "after the soak");
    for ((name, v0, ..), (_, v1, ..)) in clients(&before).iter().zip(&clients(&after)) {
        q.check(v1 > v0, || format!("{name}: verified replies grew ({v0} -> {v1})"));
    }
    c.hang_recoveries_ms.sort_unstable();
    c.spun_before_commit.sort_unstable();
    let _ = writeln!(
        std::io::stderr(),
        "seL4 chaos: {done} events in {elapsed:.1?} (seed {seed:#x}): {} committed, {} refused or failed before the \
         commit ({} spun: given up after {:.1?}), {} rolled back on probation ({} hangs), {} other commands; {} typed \
         ahead; console's worst answer {:.0?}; hang recovery (ms from the hang's start to serving again): {:?}; \
         client0 verified {}",
        c.committed,
        c.refused,
        c.spun_before_commit.len(),
        c.spun_before_commit,
        c.late,
        c.hang_recoveries_ms.len(),
        c.other,
        c.typed_ahead,
        c.worst_answer,
        c.hang_recoveries_ms,
        clients(&after)[0].1,
    );
    q.check(c.late > 0 && !c.hang_recoveries_ms.is_empty(), || "the run covered misbehaviour after the commit".into());
}
