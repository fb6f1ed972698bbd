//! The file service's adapters over damaged disks: one fs version (a FAT
//! crate release behind `fs_core::Fat`) hosted as the shell hosts it, its
//! block device served from memory by the block driver's own server
//! (`blk_driver::Server`), on a FAT16 or FAT32 image that `mkfs.fat` made and the
//! service filled, then damaged where the input says (boot sector, FATs,
//! directories). A fixed script of calls (list, stat, read whole files,
//! create and write, make a directory, remove) must answer each with a
//! status or data, never a fault; the per-call block budget
//! (`fs_core::dev`) must end any loop a damaged chain makes, well inside
//! libFuzzer's timeout.
//!
//! Input: byte 0 picks the image (even: FAT16, odd: FAT32); then 4-byte
//! patches `offset: u24 LE, value: u8`, the offset taken modulo the image's
//! metadata window (its first 512 KiB: MBR, boot sector, FATs, root
//! directory, the first data clusters).
use fs_core::{Fat, FsModule};
use interfaces::abi::{RegionInfo, ShellEnv, ABI_VERSION};
use interfaces::blk::BLOCK;
use interfaces::fs::{FsOp, FsRequest, FsStatus, OpenMode};
use interfaces::Message;
use module_rt::{Env, Module};
use std::alloc::Layout;
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::OnceLock;

const WINDOW: usize = 512 << 10;
const BLK_CHANNEL: u32 = 7;
const CLIENT: u32 = 1;
const BLK_REGION: usize = 64 << 10;
const BUF: usize = 16 << 10;

/// A pristine image shared by every run, and the blocks this run changed.
struct Disk {
    base: &'static [u8],
    changed: HashMap<u64, [u8; BLOCK]>,
}

impl blk_driver::Disk for Disk {
    fn blocks(&self) -> u64 {
        (self.base.len() / BLOCK) as u64
    }
    fn read(&mut self, block: u64, out: &mut [u8]) -> Result<(), blk_driver::DeviceError> {
        for (i, b) in out.chunks_mut(BLOCK).enumerate() {
            let n = block + i as u64;
            match self.changed.get(&n) {
                Some(c) => b.copy_from_slice(c),
                None => b.copy_from_slice(&self.base[n as usize * BLOCK..][..BLOCK]),
            }
        }
        Ok(())
    }
    fn write(&mut self, block: u64, data: &[u8]) -> Result<(), blk_driver::DeviceError> {
        for (i, b) in data.chunks(BLOCK).enumerate() {
            self.changed.insert(block + i as u64, b.try_into().map_err(|_| blk_driver::DeviceError)?);
        }
        Ok(())
    }
    fn flush(&mut self) -> Result<(), blk_driver::DeviceError> {
        Ok(())
    }
}

/// Memory the shell would map: aligned as a page is.
struct Region(&'static mut [u8]);

impl Region {
    fn new(size: usize) -> Region {
        let layout = Layout::from_size_align(size, 4096).expect("a page-aligned layout");
        // SAFETY: a non-zero size; leaked: each region lives as long as the
        // process (one set per fuzzing thread).
        let p = unsafe { std::alloc::alloc_zeroed(layout) };
        assert!(!p.is_null(), "out of memory");
        Region(unsafe { std::slice::from_raw_parts_mut(p, size) })
    }
    fn info(&mut self) -> RegionInfo {
        RegionInfo { base: self.0.as_mut_ptr(), size: self.0.len(), writable: 1, _reserved: 0 }
    }
}

/// What the shell gives one slot: the `blk` region and channel (served
/// here), two client buffers.
struct Slot {
    blk: Region,
    buf1: Region,
    buf2: Region,
    server: Option<blk_driver::Server>,
    disk: Option<Disk>,
}

thread_local! {
    static SLOT: RefCell<Option<&'static mut Slot>> = const { RefCell::new(None) };
}

fn slot() -> &'static mut Slot {
    SLOT.with_borrow_mut(|s| {
        let s = s.get_or_insert_with(|| {
            Box::leak(Box::new(Slot {
                blk: Region::new(BLK_REGION),
                buf1: Region::new(BUF),
                buf2: Region::new(BUF),
                server: None,
                disk: None,
            }))
        });
        // SAFETY: one fuzzing thread; the shell's callbacks and the runs
        // below use the slot one at a time, never across a call.
        unsafe { &mut *(*s as *mut Slot) }
    })
}

unsafe extern "C" fn notify(_: *mut c_void, _: u32) {}
unsafe extern "C" fn irq_ack(_: *mut c_void, _: u32) {}
unsafe extern "C" fn log(_: *mut c_void, _: *const u8, _: usize) {}
unsafe extern "C" fn abort(_: *mut c_void, _: *const u8, _: usize) -> ! {
    std::process::abort()
}
unsafe extern "C" fn no_published(_: *mut c_void, _: usize) {}
unsafe extern "C" fn no_wait(_: *mut c_void, _: usize) -> i64 {
    -1
}

/// The doorbell: the driver's server answers every queued request.
unsafe extern "C" fn ppcall(_: *mut c_void, ch: u32, msg: *mut Message) -> i32 {
    let s = slot();
    let (Some(server), Some(disk), true) = (s.server.as_mut(), s.disk.as_mut(), ch == BLK_CHANNEL) else {
        return -1;
    };
    // SAFETY: the module passes its own message.
    let msg = unsafe { &mut *msg };
    let (label, _) = server.kick(disk, msg.label);
    *msg = Message::new(label, 0);
    0
}

unsafe extern "C" fn channel(_: *mut c_void, name: *const u8, len: usize) -> i32 {
    // SAFETY: the module passes a string it owns.
    let name = unsafe { std::slice::from_raw_parts(name, len) };
    if name == b"blk" {
        BLK_CHANNEL as i32
    } else {
        -1
    }
}

unsafe extern "C" fn region(_: *mut c_void, name: *const u8, len: usize, out: *mut RegionInfo) -> i32 {
    let s = slot();
    // SAFETY: as in `channel`; `out` is the module's.
    let info = match unsafe { std::slice::from_raw_parts(name, len) } {
        b"blk" => s.blk.info(),
        b"buf1" => s.buf1.info(),
        b"buf2" => s.buf2.info(),
        _ => return -1,
    };
    unsafe { out.write(info) };
    0
}

/// The shell's table, shared by every instance.
struct Table(ShellEnv);
// SAFETY: its `ctx` is null and never used; the functions touch only the
// fuzzing thread's `SLOT`.
unsafe impl Sync for Table {}

fn env() -> Env {
    static TABLE: Table = Table(ShellEnv {
        abi_version: ABI_VERSION,
        features: 0,
        ctx: std::ptr::null_mut(),
        notify,
        ppcall,
        irq_ack,
        channel,
        region,
        log,
        abort,
        state_published: no_published,
        state_wait: no_wait,
    });
    // SAFETY: a static table.
    unsafe { Env::from_raw(&TABLE.0) }.expect("non-null")
}

/// Serves `disk` to a fresh instance of the module, as a fresh slot would.
fn host<F: Fat + 'static, const V: u32, const S: u32>(disk: Disk) -> FsModule<F, V, S> {
    let s = slot();
    s.blk.0.fill(0);
    // SAFETY: the region lives for the process; this is its only server.
    s.server = Some(unsafe { blk_driver::Server::new(s.blk.0.as_mut_ptr(), s.blk.0.len()) }.expect("a blk region"));
    s.disk = Some(disk);
    FsModule::init(env()).expect("fs init touches no disk")
}

/// One call from client 1, with `data` in its buffer first; the reply's
/// status, its two words, and the buffer.
fn call<M: Module>(m: &mut M, op: FsOp, handle: u64, arg: u64, path: &str) -> (FsStatus, u64, u64) {
    let mut msg = Message::default();
    FsRequest { op, handle, arg, path }.encode(&mut msg).expect("a valid request");
    m.protected(CLIENT, &mut msg);
    let status = FsStatus::from_label(msg.label).expect("every reply has a known status");
    (status, msg.word(0), msg.word(1))
}

/// Reads a whole file (bounded); checks every length the service reports.
fn read_all<M: Module>(m: &mut M, path: &str) {
    let (st, handle, _) = call(m, FsOp::Open, 0, OpenMode::Read as u64, path);
    if st != FsStatus::Ok {
        return;
    }
    for _ in 0..64 {
        let (st, n, _) = call(m, FsOp::Read, handle, 4096, "");
        assert!(st != FsStatus::Ok || n <= 4096, "read {n} bytes of 4096 asked");
        if st != FsStatus::Ok || n == 0 {
            break;
        }
    }
    let _ = call(m, FsOp::Close, handle, 0, "");
}

/// The calls every run makes, whatever the disk holds.
fn script<M: Module>(m: &mut M) {
    let mut cursor = 0;
    for _ in 0..16 {
        let (st, n, next) = call(m, FsOp::List, 0, cursor, "/");
        if st != FsStatus::Ok {
            break;
        }
        let listed = interfaces::fs::entries(&slot().buf1.0[..], n as usize).count();
        assert_eq!(listed as u64, n, "the buffer holds every entry the reply counts");
        if next == interfaces::fs::LIST_END || next <= cursor {
            break;
        }
        cursor = next;
    }
    for path in ["/A.TXT", "/DIR/B.TXT", "/DIR"] {
        let _ = call(m, FsOp::Stat, 0, 0, path);
        read_all(m, path);
    }
    let (st, handle, _) = call(m, FsOp::Open, 0, OpenMode::Create as u64, "/C.TXT");
    if st == FsStatus::Ok {
        slot().buf1.0[..4096].fill(0x5a);
        let _ = call(m, FsOp::Write, handle, 4096, "");
        let _ = call(m, FsOp::Sync, handle, 0, "");
        let _ = call(m, FsOp::Close, handle, 0, "");
        read_all(m, "/C.TXT");
    }
    let _ = call(m, FsOp::Mkdir, 0, 0, "/NEW");
    let _ = call(m, FsOp::Remove, 0, 0, "/A.TXT");
    let _ = m.prepare();
}

/// A FAT image by `mkfs.fat` (dosfstools), filled through the service.
fn pristine<F: Fat + 'static, const V: u32, const S: u32>(fat32: bool) -> &'static [u8] {
    let dir = std::env::temp_dir().join(format!("upd-fuzz-fs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let path = dir.join(if fat32 { "fat32.img" } else { "fat16.img" });
    let _ = std::fs::remove_file(&path);
    let mkfs = ["/usr/sbin/mkfs.fat", "/sbin/mkfs.fat", "mkfs.fat"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("mkfs.fat");
    let (fat, kib) = if fat32 { ("32", "34000") } else { ("16", "4096") };
    let out = std::process::Command::new(mkfs)
        .args(["-C", "-F", fat, "-f", "1", "-s", "1", "--mbr=y", "-n", "FUZZ"])
        .arg(&path)
        .arg(kib)
        .output()
        .expect("mkfs.fat runs (dosfstools)");
    assert!(out.status.success(), "mkfs.fat: {}", String::from_utf8_lossy(&out.stderr));
    let mut bytes = std::fs::read(&path).expect("the image");
    if !fat32 {
        // mkfs.fat marks a small FAT16 partition 0x04, which embedded-sdmmc
        // 0.6 does not mount; 0x06 is FAT16 too.
        bytes[446 + 4] = 0x06;
    }
    let image = Box::into_raw(bytes.into_boxed_slice());
    let _ = std::fs::remove_dir_all(&dir);
    // SAFETY: from `Box::into_raw`, never freed; shared until the disk
    // below is dropped, then written once, then shared for ever.
    let base: &'static [u8] = unsafe { &*image };
    let mut m = host::<F, V, S>(Disk { base, changed: HashMap::new() });
    // fs v1 cannot make a directory (`Unsupported`): it gets no /DIR/B.TXT.
    let dir = call(&mut m, FsOp::Mkdir, 0, 0, "/DIR").0;
    assert!(matches!(dir, FsStatus::Ok | FsStatus::Unsupported), "mkdir on a fresh image: {dir:?}");
    for (path, len) in [("/A.TXT", 3000), ("/DIR/B.TXT", 10_000)] {
        let (st, handle, _) = call(&mut m, FsOp::Open, 0, OpenMode::Create as u64, path);
        if path.starts_with("/DIR") && dir != FsStatus::Ok {
            continue;
        }
        // The pristine image must work, or every run only meets `Corrupt`.
        assert_eq!(st, FsStatus::Ok, "creating {path} on a fresh image");
        for (i, b) in slot().buf1.0[..len].iter_mut().enumerate() {
            *b = i as u8;
        }
        assert_eq!(call(&mut m, FsOp::Write, handle, len as u64, "").0, FsStatus::Ok, "filling {path}");
        assert_eq!(call(&mut m, FsOp::Close, handle, 0, "").0, FsStatus::Ok, "closing {path}");
    }
    drop(m);
    let disk = slot().disk.take().expect("the disk");
    let Disk { changed, .. } = disk;
    // SAFETY: the module and the disk, the only readers of `base`, are
    // gone; nothing else refers to the image.
    let image = unsafe { &mut *image };
    for (n, b) in changed {
        image[n as usize * BLOCK..][..BLOCK].copy_from_slice(&b);
    }
    image
}

pub fn run<F: Fat + 'static, const V: u32, const S: u32>(data: &[u8]) {
    static IMAGES: OnceLock<[usize; 4]> = OnceLock::new();
    // (address, length) of the two pristine images, made once per process.
    let images = IMAGES.get_or_init(|| {
        let (a, b) = (pristine::<F, V, S>(false), pristine::<F, V, S>(true));
        [a.as_ptr() as usize, a.len(), b.as_ptr() as usize, b.len()]
    });
    let Some((&pick, patches)) = data.split_first() else { return };
    let i = (pick as usize & 1) * 2;
    // SAFETY: leaked, never written again.
    let base = unsafe { std::slice::from_raw_parts(images[i] as *const u8, images[i + 1]) };
    let mut disk = Disk { base, changed: HashMap::new() };
    for p in patches.chunks_exact(4) {
        let at = (u32::from_le_bytes([p[0], p[1], p[2], 0]) as usize) % WINDOW.min(base.len());
        let n = (at / BLOCK) as u64;
        let mut block = [0u8; BLOCK];
        blk_driver::Disk::read(&mut disk, n, &mut block).expect("memory");
        block[at % BLOCK] = p[3];
        disk.changed.insert(n, block);
    }
    let mut m = host::<F, V, S>(disk);
    script(&mut m);
}
