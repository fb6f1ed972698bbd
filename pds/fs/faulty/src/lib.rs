//! Deliberately faulty fs modules: fs-v5 (embedded-sdmmc 0.10.0, state
//! schema 2) that, after [`AFTER_WRITES`] writes, fails in the middle of
//! one: it writes the first half of the client's data through the crate
//! (the data blocks, and the cluster the crate allocates and links into
//! the file's chain when the half crosses a cluster's end) and then
//! faults, or spins until the manager's watchdog stops it. The file's
//! directory entry (its size) is not written: the crate defers it to the
//! file's flush, which the failed call never reaches. (fs-core stages a
//! call's block writes and writes them to the driver only when the call
//! is done, so none of the failed call's blocks reach the disk.) Another mode
//! ([`mode::FAULT_FIRST_WRITE`]) fails half way through the first write to
//! an empty file instead, and [`mode::FAULT_FIRST_ALLOC`] inside the
//! crate's own first write to an empty file, in the block device, right
//! after the crate wrote the FAT entry of the file's new first cluster,
//! and [`mode::FAULT_AFTER_FIRST_WRITE`] in the `prepare` (the probation's
//! checkpoint) right after such a write completed. Never in the
//! production image store.
#![no_std]

// fs-v5's own adapter, the same source (not a copy).
#[path = "../../v5/src/adapter.rs"]
mod v5;

use core::sync::atomic::{AtomicBool, Ordering::Relaxed};
use fs_core::FsModule;
use module_rt::interfaces::abi::ModuleDescriptor;
use module_rt::interfaces::Message;
use module_rt::{Env, Module};
pub use v5::Sdmmc;

pub mod mode {
    /// A wild read after the partial write.
    pub const FAULT: u8 = 1;
    /// A spin after the partial write.
    pub const SPIN: u8 = 2;
    /// A wild read half way through the first write to an empty file in a
    /// directory (the clients' `/CnD/INFO.TXT` with `HOST_FS_DIRS`: a file
    /// created fresh, which owns no cluster before its first write; the
    /// clients' data files are emptied by truncation, which keeps their
    /// first cluster), from the first such write on.
    pub const FAULT_FIRST_WRITE: u8 = 3;
    /// A wild read inside the crate's first write to an empty file in a
    /// directory (as [`FAULT_FIRST_WRITE`]), from fs-core's block device
    /// (its test hook, `fs_core::dev::set_write_hook`): right after the
    /// first block the crate writes in that call, which is the FAT block
    /// with the end-of-chain mark of the file's new first cluster (every
    /// release's `write` allocates the first cluster, `alloc_cluster`,
    /// before it writes any data). The crate's write has not returned,
    /// and the file's directory entry still names no cluster.
    pub const FAULT_FIRST_ALLOC: u8 = 4;
    /// A wild read in the `prepare` right after a first write to an empty
    /// file in a directory (as [`FAULT_FIRST_WRITE`]) completed: on
    /// probation, before the checkpoint of that call, and before the sync
    /// that `prepare` does. The call's blocks are on the disk; the file's
    /// directory entry must be among them, or its new cluster is lost.
    pub const FAULT_AFTER_FIRST_WRITE: u8 = 5;
}

/// The writes served well before one fails.
pub const AFTER_WRITES: u64 = 200;
/// The disk's cluster size (`xtask::make_disk_image`: `-s 8`): the failing
/// write is one whose first half crosses a cluster's end, so that the
/// part that reaches the disk includes a cluster allocation.
const CLUSTER: u32 = 4096;

/// Never returns, and the compiler may not assume it does not.
fn spin() -> ! {
    loop {
        core::hint::spin_loop();
        // SAFETY: a volatile read of a local: keeps the loop from being
        // optimised into something else.
        unsafe { core::ptr::read_volatile(&0u8) };
    }
}

/// Reads an address no PD maps (the first page is never mapped).
fn read_unmapped() -> u64 {
    // SAFETY: none: this is the deliberate fault (aligned and non-null,
    // so only the hardware objects).
    unsafe { core::ptr::read_volatile(0x10 as *const u64) }
}

pub struct Faulty<const MODE: u8> {
    fs: FsModule<Sdmmc, 95, 2>,
    env: Env,
    writes: u64,
    /// [`mode::FAULT_AFTER_FIRST_WRITE`]: the next `prepare` faults.
    fail_prepare: bool,
}

/// The block device's test hook of [`mode::FAULT_FIRST_ALLOC`]: faults at
/// the first block written once armed.
static ARMED: AtomicBool = AtomicBool::new(false);

fn fault_if_armed(_block: u64) {
    if ARMED.load(Relaxed) {
        read_unmapped();
    }
}

impl<const MODE: u8> Faulty<MODE> {
    /// If `msg` is the first write to an empty file in a directory, logs
    /// that the module fails `how` because of it, and says so.
    fn announce_first_write(&mut self, ch: u32, msg: &Message, len: usize, how: &str) -> bool {
        let path = self.fs.0.pending_first_write(ch, msg).filter(|p| p.matches('/').count() >= 2);
        let Some(path) = path else { return false };
        let mut line: heapless::String<160> = heapless::String::new();
        let _ = core::fmt::write(
            &mut line,
            format_args!("fs-faulty: first write of {len} bytes to empty {path}: failing {how}"),
        );
        self.env.log(&line);
        true
    }

    /// Fails half way through the first write to an empty file in a
    /// directory: after the crate wrote half of it and fs-core the file's
    /// directory entry (all staged: none of it reaches the disk).
    fn first_write(&mut self, ch: u32, msg: &Message, len: usize) {
        let Some(path) = self.fs.0.pending_first_write(ch, msg) else { return };
        if path.matches('/').count() < 2 {
            return;
        }
        let half = len / 2;
        let done = self.fs.0.write_prefix(ch, msg, half);
        let mut line: heapless::String<160> = heapless::String::new();
        let _ = core::fmt::write(
            &mut line,
            format_args!("fs-faulty: wrote {half} of {len} bytes at 0 of empty {path} ({done:?}); failing now"),
        );
        self.env.log(&line);
        read_unmapped();
    }
}

impl<const MODE: u8> Module for Faulty<MODE> {
    const DESCRIPTOR: ModuleDescriptor = ModuleDescriptor::new("fs", 90 + MODE as u32, 2)
        .channel("blk")
        .region("blk")
        .region("buf1")
        .region("buf2")
        .imports(1)
        .exports(1);

    fn init(env: Env) -> Result<Self, &'static str> {
        if MODE == mode::FAULT_FIRST_ALLOC {
            fs_core::dev::set_write_hook(Some(fault_if_armed));
        }
        Ok(Faulty { fs: FsModule::init(env)?, env, writes: 0, fail_prepare: false })
    }

    fn protected(&mut self, ch: u32, msg: &mut Message) {
        if let Some((pos, len)) = self.fs.0.pending_write(ch, msg) {
            self.writes += 1;
            if MODE == mode::FAULT_AFTER_FIRST_WRITE {
                if self.announce_first_write(ch, msg, len, "in the prepare after it") {
                    self.fail_prepare = true;
                }
                return self.fs.protected(ch, msg);
            }
            if MODE == mode::FAULT_FIRST_ALLOC {
                let how = "at the crate's first block write (its new cluster's FAT entry)";
                if self.announce_first_write(ch, msg, len, how) {
                    ARMED.store(true, Relaxed);
                }
                return self.fs.protected(ch, msg);
            }
            if MODE == mode::FAULT_FIRST_WRITE {
                if pos == 0 && len >= 4 {
                    self.first_write(ch, msg, len);
                }
                return self.fs.protected(ch, msg);
            }
            let half = (len / 2) as u32;
            // A write into a file that has data (its first cluster is in
            // its directory entry) whose first half ends in the next
            // cluster.
            let crosses = pos > 0 && half > 0 && pos / CLUSTER != (pos + half - 1) / CLUSTER;
            if self.writes > AFTER_WRITES && crosses {
                let done = self.fs.0.write_prefix(ch, msg, half as usize);
                let mut line: heapless::String<120> = heapless::String::new();
                let _ = core::fmt::write(
                    &mut line,
                    format_args!("fs-faulty: wrote {half} of {len} bytes at {pos} ({done:?}); failing now"),
                );
                self.env.log(&line);
                match MODE {
                    mode::SPIN => spin(),
                    _ => {
                        read_unmapped();
                    }
                }
            }
        }
        self.fs.protected(ch, msg)
    }

    fn prepare(&mut self) -> bool {
        if self.fail_prepare {
            read_unmapped();
        }
        self.fs.prepare()
    }

    fn export_state(&mut self, schema: u32, out: &mut [u8]) -> Result<usize, i32> {
        self.fs.export_state(schema, out)
    }

    fn import_state(&mut self, schema: u32, data: &[u8]) -> Result<(), i32> {
        self.fs.import_state(schema, data)
    }
}
