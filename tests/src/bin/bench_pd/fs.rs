//! The file service's benchmark PDs (driven by tests/benches/fs.rs); a
//! failure is logged as `FSBENCH FAILED: why`.
//! - `fsdirect`: the fs module prefilled into its code region, hosted with
//!   no shell on its own block driver (`blkdirect`) and disk: the baseline.
//! - `fsratio`: 4 KiB and 64 KiB reads and writes through the client stub,
//!   the capability map and the shell (fs0) against the same through
//!   `fsdirect`, alternating call by call in passes over a file; every byte
//!   read back is checked. Logs `BENCH fs_updatable_*`.
//! - `fsdirty`: keeps 16 files open with written, unsynced data at each
//!   update, and reads each back whole after it (`FSDIRTY n` when round n's
//!   data is written, `FSCHECKED n` when it was read back right).
use super::{load_prefilled, median};
use domain_shell::env::{shell_env, EnvCtx, SharedCtx};
use fs_api::FsClient;
use host_runtime::HostPd;
use interfaces::abi::ModuleEntry;
use interfaces::capmap::CapMap;
use interfaces::fs::{FsOp, FsRequest, FsStatus, OpenMode};
use interfaces::Message;
use pd_api::{ChannelId, ChildId, Pd, PpcError, Region};
use std::time::{Duration, Instant};

/// `fsdirect` as its module sees it: the channel to its own driver,
/// `blkdirect`, answers to `blk`, the name the module asks for (a slot's
/// driver is `blk`). Everything else is the PD's.
struct Renamed(&'static HostPd);

impl Pd for Renamed {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn notify(&self, ch: ChannelId) {
        self.0.notify(ch)
    }
    fn ppcall(&self, ch: ChannelId, msg: &mut Message) -> Result<(), PpcError> {
        self.0.ppcall(ch, msg)
    }
    fn irq_ack(&self, ch: ChannelId) {
        self.0.irq_ack(ch)
    }
    fn channel(&self, peer: &str) -> Option<ChannelId> {
        self.0.channel(if peer == "blk" { "blkdirect" } else { peer })
    }
    fn peer_name(&self, ch: ChannelId) -> Option<&str> {
        self.0.peer_name(ch)
    }
    fn region(&self, name: &str) -> Option<Region> {
        self.0.region(name)
    }
    fn log(&self, args: core::fmt::Arguments) {
        self.0.log(args)
    }
    fn child(&self, name: &str) -> Option<ChildId> {
        self.0.child(name)
    }
    fn for_each_child(&self, f: &mut dyn FnMut(ChildId, &str)) {
        self.0.for_each_child(f)
    }
    fn stop_child(&self, child: ChildId) {
        self.0.stop_child(child)
    }
    fn restart_child(&self, child: ChildId) -> bool {
        self.0.restart_child(child)
    }
    fn now_ns(&self) -> u64 {
        self.0.now_ns()
    }
    fn shutdown(&self) {
        self.0.shutdown()
    }
    fn yield_now(&self) {
        self.0.yield_now()
    }
    fn halting(&self) -> bool {
        self.0.halting()
    }
}

/// Loads the fs module prefilled into `module_code` and initialises it
/// with the shell's own environment (the same trampolines a slot's module
/// gets, limited to the channels it declared).
pub fn load_direct(pd: &'static HostPd) -> &'static ModuleEntry {
    let (entry, d) = load_prefilled(pd);
    let renamed: &'static Renamed = Box::leak(Box::new(Renamed(pd)));
    let mut allowed = 0u64;
    for name in d.channels() {
        let name = name.as_str().unwrap_or("");
        let id = renamed.channel(name).unwrap_or_else(|| panic!("fsdirect has no channel for '{name}'"));
        allowed |= 1 << id;
    }
    let ctx = SharedCtx::new(EnvCtx {
        pd: renamed,
        allowed_channels: allowed,
        descriptor: Some(d),
        stream: None,
        checkpoint: None,
        page: None,
    });
    let env = Box::leak(Box::new(shell_env::<Renamed>(ctx.as_ptr())));
    // The module keeps `env` (and through it the context) for ever.
    std::mem::forget(ctx);
    // SAFETY: a checked module, initialised once; `env` lives for ever.
    assert_eq!(unsafe { (entry.init)(env) }, 0, "fs module init");
    entry
}

/// What a pass needs of either side.
trait Files {
    fn open(&mut self, path: &str, mode: OpenMode) -> Result<u64, String>;
    fn seek(&mut self, h: u64, pos: u32) -> Result<(), String>;
    fn read(&mut self, h: u64, len: usize) -> Result<usize, String>;
    fn write(&mut self, h: u64, len: usize) -> Result<(), String>;
    fn close(&mut self, h: u64) -> Result<(), String>;
    fn version(&mut self) -> Result<u64, String>;
    fn buffer(&mut self) -> &mut [u8];
}

/// The updatable service: the stub, through the capability map, to the
/// live slot's shell.
struct Updatable<'p>(FsClient<'p, HostPd>);

impl Files for Updatable<'_> {
    fn open(&mut self, path: &str, mode: OpenMode) -> Result<u64, String> {
        self.0.open(path, mode).map_err(|e| format!("open {path}: {e:?}"))
    }
    fn seek(&mut self, h: u64, pos: u32) -> Result<(), String> {
        self.0.seek(h, pos).map_err(|e| format!("seek: {e:?}"))
    }
    fn read(&mut self, h: u64, len: usize) -> Result<usize, String> {
        self.0.read(h, len).map_err(|e| format!("read: {e:?}"))
    }
    fn write(&mut self, h: u64, len: usize) -> Result<(), String> {
        self.0.write(h, len).map_err(|e| format!("write: {e:?}"))
    }
    fn close(&mut self, h: u64) -> Result<(), String> {
        self.0.close(h).map_err(|e| format!("close: {e:?}"))
    }
    fn version(&mut self) -> Result<u64, String> {
        self.0.version().map(|v| v.0).map_err(|e| format!("version: {e:?}"))
    }
    fn buffer(&mut self) -> &mut [u8] {
        self.0.buffer()
    }
}

/// The baseline: the same requests sent straight to `fsdirect`, with the
/// client-side work the stub does (encode, call, check the status and the
/// length) minus the capability map.
struct Direct {
    pd: &'static HostPd,
    ch: ChannelId,
    buf: &'static mut [u8],
}

impl Direct {
    fn new(pd: &'static HostPd) -> Result<Direct, String> {
        let ch = pd.channel("fsdirect").ok_or("no channel to fsdirect")?;
        let b = pd.region("directbuf").filter(|r| r.writable).ok_or("no writable 'directbuf' region")?;
        // SAFETY: mapped for the PD's life, used only by this PD between
        // its calls (and by fsdirect during them).
        let buf = unsafe { std::slice::from_raw_parts_mut(b.base, b.size) };
        Ok(Direct { pd, ch, buf })
    }

    fn call(&mut self, op: FsOp, handle: u64, arg: u64, path: &str) -> Result<(u64, u64), String> {
        let mut msg = Message::default();
        FsRequest { op, handle, arg, path }.encode(&mut msg).map_err(|s| format!("{op:?}: {s:?}"))?;
        self.pd.ppcall(self.ch, &mut msg).map_err(|e| format!("{op:?}: {e:?}"))?;
        match FsStatus::from_label(msg.label) {
            Some(FsStatus::Ok) => Ok((msg.word(0), msg.word(1))),
            s => Err(format!("{op:?}: {s:?}")),
        }
    }
}

impl Files for Direct {
    fn open(&mut self, path: &str, mode: OpenMode) -> Result<u64, String> {
        self.call(FsOp::Open, 0, mode as u64, path).map(|r| r.0)
    }
    fn seek(&mut self, h: u64, pos: u32) -> Result<(), String> {
        self.call(FsOp::Seek, h, pos as u64, "").map(|_| ())
    }
    fn read(&mut self, h: u64, len: usize) -> Result<usize, String> {
        let n = self.call(FsOp::Read, h, len as u64, "")?.0 as usize;
        if n > len.min(self.buf.len()) {
            return Err(format!("read: {n} bytes for {len}"));
        }
        Ok(n)
    }
    fn write(&mut self, h: u64, len: usize) -> Result<(), String> {
        self.call(FsOp::Write, h, len as u64, "").map(|_| ())
    }
    fn close(&mut self, h: u64) -> Result<(), String> {
        self.call(FsOp::Close, h, 0, "").map(|_| ())
    }
    fn version(&mut self) -> Result<u64, String> {
        self.call(FsOp::Version, 0, 0, "").map(|r| r.0)
    }
    fn buffer(&mut self) -> &mut [u8] {
        self.buf
    }
}

/// One pass of both sides over their files from the start, in
/// `chunk`-byte calls: writes of `data` (`write`), or reads checked
/// against it. The sides alternate call by call (which goes first
/// alternates too), so that both see the same load on this shared machine
/// (it drifts over seconds); each call's time (ns) goes to its side's
/// list in `ns`, if given.
fn pass(
    mut sides: [&mut dyn Files; 2],
    handles: [u64; 2],
    data: &[u8],
    chunk: usize,
    write: bool,
    mut ns: Option<&mut [Vec<f64>; 2]>,
) -> Result<(), String> {
    for (fs, h) in sides.iter_mut().zip(handles) {
        fs.seek(h, 0)?;
    }
    for (i, c) in data.chunks(chunk).enumerate() {
        for side in [i % 2, 1 - i % 2] {
            let (fs, h) = (&mut *sides[side], handles[side]);
            let t = Instant::now();
            if write {
                fs.buffer()[..c.len()].copy_from_slice(c);
                fs.write(h, c.len())?;
            } else {
                let n = fs.read(h, c.len())?;
                if n != c.len() || fs.buffer()[..n] != *c {
                    return Err(format!("side {side}: read at {}: {n} bytes, not the {} written", i * chunk, c.len()));
                }
            }
            if let Some(ns) = ns.as_mut() {
                ns[side].push(t.elapsed().as_nanos() as f64);
            }
        }
    }
    Ok(())
}

/// The bytes of a round: a different file content each round, so a read
/// that returned a previous round's data would be caught.
fn round_data(round: usize, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u32).wrapping_mul(2_654_435_761).wrapping_add(round as u32 * 97).to_le_bytes()[3]).collect()
}

/// Bytes per file, per pass.
const FILE: usize = 1 << 20;
/// Passes of each kind and side; the first warms up (and allocates the
/// files' clusters) and is not counted.
const ROUNDS: usize = 31;
const CHUNKS: [usize; 2] = [4 << 10, 64 << 10];

/// Polls (bounded) until `fs` runs module version `v`: the harness updates
/// fs0 to the version fsdirect hosts.
fn wait_version(pd: &HostPd, fs: &mut impl Files, v: u64) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = fs.version()?;
        if got == v {
            return Ok(());
        }
        if Instant::now() > deadline || pd.halting() {
            return Err(format!("fs0 still runs v{got}, not v{v}"));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

pub fn ratio_client(pd: &'static HostPd) {
    if let Err(why) = ratio(pd) {
        pd.log(format_args!("FSBENCH FAILED: {why}"));
    }
}

fn ratio(pd: &'static HostPd) -> Result<(), String> {
    let mut direct = Direct::new(pd)?;
    let mut upd = Updatable(FsClient::connect(pd, "fs")?);
    let v = direct.version()?;
    wait_version(pd, &mut upd, v)?;
    let mut handles = [[0u64; 2]; 2];
    for (i, chunk) in CHUNKS.iter().enumerate() {
        let path = format!("/F{}K.BIN", chunk >> 10);
        handles[i] = [upd.open(&path, OpenMode::Append)?, direct.open(&path, OpenMode::Append)?];
    }
    // [chunk][write, read][updatable, direct]: ns per call.
    let mut ns = vec![[[Vec::new(), Vec::new()], [Vec::new(), Vec::new()]]; CHUNKS.len()];
    for round in 0..ROUNDS {
        let data = round_data(round, FILE);
        for (i, &chunk) in CHUNKS.iter().enumerate() {
            // A 64 KiB pass is only 16 calls: four of them a round give its
            // median more samples. A side's reads follow its own writes of
            // this round's data.
            for _ in 0..if chunk >= 64 << 10 { 4 } else { 1 } {
                for (op, times) in ns[i].iter_mut().enumerate() {
                    pass([&mut upd, &mut direct], handles[i], &data, chunk, op == 0, (round > 0).then_some(times))?;
                }
            }
        }
    }
    for [u, d] in handles {
        upd.close(u)?;
        direct.close(d)?;
    }
    let mut product = 1.0;
    for (i, chunk) in CHUNKS.iter().enumerate() {
        for (op, what) in ["write", "read"].iter().enumerate() {
            let [u, d] = ns[i][op].each_mut().map(|v| median(v));
            // A side's throughput from its median call: robust to the
            // preemptions by other work on this shared machine, which hit
            // either side at random.
            let mib_s = |t: f64| *chunk as f64 / (1 << 20) as f64 / (t / 1e9);
            let k = chunk >> 10;
            pd.log(format_args!("BENCH fs_updatable_{what}_{k}k_mib_s: {:.1}", mib_s(u)));
            pd.log(format_args!("BENCH fs_direct_{what}_{k}k_mib_s: {:.1}", mib_s(d)));
            // Throughput through the updatable service over the direct one.
            pd.log(format_args!("BENCH fs_updatable_{what}_{k}k_ratio: {:.3}", d / u));
            product *= d / u;
        }
    }
    // The geometric mean of the four.
    pd.log(format_args!("BENCH fs_updatable_ratio: {:.3}", product.powf(0.25)));
    Ok(())
}

/// Files the dirty client keeps open, and bytes it writes to each per round.
const DIRTY_FILES: usize = 16;
const DIRTY_BYTES: usize = 8 << 10;

fn dirty_byte(k: usize, off: usize) -> u8 {
    (off as u32).wrapping_mul(2_654_435_761).to_le_bytes()[2] ^ (k as u8).wrapping_mul(37)
}

pub fn dirty_client(pd: &'static HostPd) {
    if let Err(why) = dirty(pd) {
        pd.log(format_args!("FSBENCH FAILED: {why}"));
    }
}

fn dirty(pd: &'static HostPd) -> Result<(), String> {
    let rounds: usize =
        std::env::var("FS_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).ok_or("no FS_BENCH_ROUNDS")?;
    let map = pd.region("capmap").ok_or("no capmap")?;
    // SAFETY: the read-only capability map, mapped for the PD's life and
    // read through atomics.
    let capmap = unsafe { &*(map.base as *const CapMap) };
    let mut fs = Updatable(FsClient::connect(pd, "fs")?);
    let index = capmap.find("fs0").ok_or("no fs0 in the capability map")?;
    let generation = || capmap.binding(index).map_or(0, |b| b.generation);
    let mut handles = [0u64; DIRTY_FILES];
    for (k, h) in handles.iter_mut().enumerate() {
        *h = fs.open(&format!("/D{k:02}.BIN"), OpenMode::Create)?;
    }
    let mut len = 0;
    for round in 0..rounds {
        // Appended and not synced: dirty at the update.
        for (k, &h) in handles.iter().enumerate() {
            for (i, b) in fs.buffer()[..DIRTY_BYTES].iter_mut().enumerate() {
                *b = dirty_byte(k, len + i);
            }
            fs.write(h, DIRTY_BYTES)?;
        }
        len += DIRTY_BYTES;
        let before = generation();
        pd.log(format_args!("FSDIRTY {round}"));
        let deadline = Instant::now() + Duration::from_secs(120);
        while generation() == before {
            if Instant::now() > deadline || pd.halting() {
                return Err(format!("round {round}: no update came"));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        // Every file whole, through the new version.
        for (k, &h) in handles.iter().enumerate() {
            fs.seek(h, 0)?;
            let mut at = 0;
            loop {
                let want = fs.buffer().len().min(len + 1 - at);
                let n = fs.read(h, want)?;
                if n == 0 {
                    break;
                }
                if let Some(i) = fs.buffer()[..n].iter().enumerate().position(|(i, &b)| b != dirty_byte(k, at + i)) {
                    return Err(format!("round {round}: /D{k:02}.BIN: wrong byte at {}", at + i));
                }
                at += n;
            }
            if at != len {
                return Err(format!("round {round}: /D{k:02}.BIN holds {at} bytes, not {len}"));
            }
        }
        pd.log(format_args!("FSCHECKED {round}"));
    }
    for h in handles {
        fs.close(h)?;
    }
    pd.log(format_args!("FSDIRTY done"));
    Ok(())
}
