//! The block device every version's FAT crate runs on: requests through
//! the `blk` region's queues, rung with a protected call to the driver.
//! Everything the driver writes back is checked: a response must answer
//! the request just sent, and a bad one is an I/O error, never trusted.
//!
//! **A call's writes reach the disk together, after the crate is done.**
//! Every block the crate writes during one service call (or an import, or
//! a `prepare`) is staged in module memory ([`STAGE_BLOCKS`] blocks) and
//! read back from there; the service writes the staged blocks to the
//! driver only at the end of the call ([`BlkDev::commit`], before the reply
//! leaves and so before the probation's checkpoint), in ascending block
//! order, adjacent blocks in one request. A version that faults or hangs
//! anywhere inside the crate's work therefore leaves the disk as the last
//! completed call (and its checkpoint) left it: the slot's memory, staged
//! blocks and all, is dropped with it. A `FLUSH` writes the staged blocks
//! first.
use core::cell::{Cell, RefCell, UnsafeCell};
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering::*};
use interfaces::blk::{self, op, status, Request, Response, BLOCK};
use interfaces::queue::{Consumer, Producer};
use interfaces::Message;
use module_rt::Env;

/// The blocks one call can stage. The largest call is a `Write` of a whole
/// client buffer (the protocol bounds it only by the buffer region's size,
/// which is the system's: 16 KiB in `tests/systems/fs.xml`, 64 KiB in the
/// benchmarks' system, the largest a shipped system maps): 64 KiB at any
/// offset is 129 data blocks; the FAT blocks of its new clusters (16 with
/// 4 KiB clusters: one or two FAT blocks, times two FATs for releases that
/// write both), FSInfo and, for a first write, the file's directory entry
/// add a handful. A `Mkdir` zeroes its new cluster (8 blocks here, at most
/// 128 with 64 KiB clusters). 192 blocks (96 KiB of module memory) hold
/// all of these with room to spare. A call that stages more (a larger
/// buffer, or a badly fragmented FAT) writes its staged blocks out early,
/// each time the overlay is full: its atomicity is then per overflow, not
/// per call (what every write was before staging).
pub const STAGE_BLOCKS: usize = 192;

/// The staged blocks: `keys` ascending by block number, each naming the
/// slot of `data` that holds the block (slots are taken in staging order
/// and all freed at once, at a commit).
struct Overlay {
    keys: [(u64, u16); STAGE_BLOCKS],
    len: usize,
    data: [[u8; BLOCK]; STAGE_BLOCKS],
}

impl Overlay {
    /// Where block `n` is, or would go, in `keys`.
    fn find(&self, n: u64) -> Result<usize, usize> {
        self.keys[..self.len].binary_search_by_key(&n, |k| k.0)
    }

    /// Stages block `n`; false when it is new and the overlay is full.
    fn stage(&mut self, n: u64, bytes: &[u8]) -> bool {
        let at = match self.find(n) {
            Ok(i) => {
                self.data[self.keys[i].1 as usize].copy_from_slice(bytes);
                return true;
            }
            Err(_) if self.len == STAGE_BLOCKS => return false,
            Err(at) => at,
        };
        let slot = self.len;
        self.data[slot].copy_from_slice(bytes);
        self.keys.copy_within(at..self.len, at + 1);
        self.keys[at] = (n, slot as u16);
        self.len += 1;
        true
    }

    /// The `keys` range of the staged blocks in `[start, start + count)`.
    fn range(&self, start: u64, count: u64) -> core::ops::Range<usize> {
        let keys = &self.keys[..self.len];
        keys.partition_point(|k| k.0 < start)..keys.partition_point(|k| k.0 < start.saturating_add(count))
    }
}

/// The one overlay of the module (one module instance per slot, as with
/// [`BUDGET`]), behind a flag that makes each use exclusive.
struct Staged {
    busy: AtomicBool,
    overlay: UnsafeCell<Overlay>,
}

// SAFETY: `overlay` is reached only through `staged`, which holds `busy`
// for the whole use (a second user, another thread or a reentrant call,
// gets an error instead).
unsafe impl Sync for Staged {}

static STAGED: Staged = Staged {
    busy: AtomicBool::new(false),
    overlay: UnsafeCell::new(Overlay { keys: [(0, 0); STAGE_BLOCKS], len: 0, data: [[0; BLOCK]; STAGE_BLOCKS] }),
};

/// Runs `f` on the overlay, exclusively.
fn staged<R>(f: impl FnOnce(&mut Overlay) -> R) -> Result<R, IoError> {
    if STAGED.busy.compare_exchange(false, true, Acquire, Relaxed).is_err() {
        return Err(IoError);
    }
    // SAFETY: `busy` was false and is now ours: no other reference to the
    // overlay exists until we clear it below (`f` cannot reach it again).
    let r = f(unsafe { &mut *STAGED.overlay.get() });
    STAGED.busy.store(false, Release);
    Ok(r)
}

/// Drops the staged blocks unwritten: at a module's start and at an
/// import, where whatever this module knew of the disk is stale.
pub fn discard() {
    let _ = staged(|o| o.len = 0);
}

/// Block requests the current service call may still make. A damaged
/// disk can hold a loop (a cluster chain or a directory that leads back
/// to itself) that a FAT crate would follow for ever. A call gets 4096
/// block requests plus one per 128 blocks of the disk; past that the
/// device answers errors and the call fails instead of hanging the service
/// (on the 300 MiB test disk a looping call ends in about 0.1 s, 0.3 s on
/// a loaded machine: well inside the manager's 1 s hang rule). The price:
/// a longer chain walk fails too (these releases read the FAT once per
/// cluster, so on that disk a file past ~34 MiB with 4 KiB clusters).
static BUDGET: AtomicU64 = AtomicU64::new(u64::MAX);

/// Called at the start of every service call (and import). Staged blocks
/// stay: a call's writes are committed by [`BlkDev::commit`] only.
pub fn new_call(disk_blocks: u64) {
    BUDGET.store((disk_blocks / 128).saturating_add(4096), Relaxed);
}

/// Test modules only (`pds/fs/faulty`): a function called with the block
/// number after each block [`BlkDev::write`] has staged, so that a test can
/// fail inside the crate's own operation. Null (no hook) in every real
/// version; it holds nothing but a `fn(u64)` (see [`set_write_hook`]).
static WRITE_HOOK: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());

/// Sets (or with None clears) the test hook of [`BlkDev::write`].
pub fn set_write_hook(hook: Option<fn(u64)>) {
    WRITE_HOOK.store(hook.map_or(core::ptr::null_mut(), |f| f as *mut ()), Relaxed);
}

fn write_hook(block: u64) {
    let p = WRITE_HOOK.load(Relaxed);
    if !p.is_null() {
        // SAFETY: a non-null value was stored by `set_write_hook` from a
        // `fn(u64)`, and nothing else stores to it.
        let f = unsafe { core::mem::transmute::<*mut (), fn(u64)>(p) };
        f(block);
    }
}

pub struct BlkDev {
    env: Env,
    ch: u32,
    requests: RefCell<Producer>,
    responses: RefCell<Consumer>,
    data: *mut u8,
    data_len: usize,
    next_id: Cell<u32>,
    blocks: Cell<u64>,
}

/// The device failed or its driver misbehaved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoError;

impl core::fmt::Display for IoError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("block device error")
    }
}

// embedded-sdmmc 0.10 wants a device error to be an Error.
impl core::error::Error for IoError {}

impl BlkDev {
    /// The driver end found by the channel `blk` and the region `blk`.
    pub fn attach(env: Env) -> Result<BlkDev, &'static str> {
        let ch = env.channel("blk").ok_or("no channel to the block driver")?;
        let r = env.region("blk").filter(|r| r.writable != 0).ok_or("no writable 'blk' region")?;
        if r.size <= blk::DATA + BLOCK {
            return Err("the 'blk' region is too small");
        }
        let (rq, rs) = (blk::REQ_QUEUE, blk::RESP_QUEUE);
        // SAFETY: the region stays mapped while the module is hosted; the
        // live slot is the only producer of requests and consumer of
        // responses (the other slot touches them only after this one has
        // quiesced: the disk is used from the first call or the import on).
        let (p, c) = unsafe { (Producer::new(r.base.add(rq.0), rq.1), Consumer::new(r.base.add(rs.0), rs.1)) };
        let (Some(p), Some(c)) = (p, c) else { return Err("the 'blk' queues are misaligned") };
        Ok(BlkDev {
            env,
            ch,
            requests: RefCell::new(p),
            responses: RefCell::new(c),
            // SAFETY: inside the region, checked above.
            data: unsafe { r.base.add(blk::DATA) },
            data_len: r.size - blk::DATA,
            next_id: Cell::new(1),
            blocks: Cell::new(0),
        })
    }

    /// One request of `count` blocks with its data at the start of the
    /// data area, counted against the call's budget.
    fn run(&self, op: u32, block: u64, count: u32) -> Result<(), IoError> {
        let left = BUDGET.load(Relaxed);
        if left < count as u64 + 1 {
            return Err(IoError);
        }
        BUDGET.store(left - count as u64 - 1, Relaxed);
        self.request(op, block, count)
    }

    /// One request, whatever the budget: the commit of staged blocks
    /// (bounded by the overlay; refusing it would leave a call's effects
    /// half written).
    fn request(&self, op: u32, block: u64, count: u32) -> Result<(), IoError> {
        let id = self.next_id.get();
        self.next_id.set(id.wrapping_add(1));
        let req = Request { id, op, block, count, data_off: 0 };
        let mut rq = self.requests.try_borrow_mut().map_err(|_| IoError)?;
        let mut rs = self.responses.try_borrow_mut().map_err(|_| IoError)?;
        // Responses left over from a driver that answered twice are stale.
        while blk::pop::<Response>(&mut rs).map_err(|_| IoError)?.is_some() {}
        if !blk::push(&mut rq, &req).map_err(|_| IoError)? {
            return Err(IoError);
        }
        let mut msg = Message::new(blk::KICK, 0);
        self.env.ppcall(self.ch, &mut msg).map_err(|_| IoError)?;
        let resp = blk::pop::<Response>(&mut rs).map_err(|_| IoError)?.ok_or(IoError)?;
        if resp.id != id || resp.status != status::OK {
            return Err(IoError);
        }
        self.blocks.set(resp.disk_blocks);
        Ok(())
    }

    /// The most blocks one request moves.
    fn max_count(&self) -> usize {
        self.data_len / BLOCK
    }

    /// Reads whole blocks from `start` into `out` (a multiple of BLOCK):
    /// staged blocks from the overlay, the others from the driver.
    pub fn read(&self, out: &mut [u8], start: u64) -> Result<(), IoError> {
        let count = out.len().div_ceil(BLOCK) as u64;
        if staged(|o| o.range(start, count).len())? < count as usize {
            let mut block = start;
            for chunk in out.chunks_mut(self.max_count() * BLOCK) {
                let n = chunk.len().div_ceil(BLOCK);
                self.run(op::READ, block, n as u32)?;
                // SAFETY: `chunk.len() <= data_len`; the driver wrote the data
                // before it answered, and nobody writes it during the copy.
                unsafe { core::ptr::copy_nonoverlapping(self.data, chunk.as_mut_ptr(), chunk.len()) };
                block += n as u64;
            }
        }
        staged(|o| {
            for &(n, slot) in &o.keys[o.range(start, count)] {
                let at = (n - start) as usize * BLOCK;
                let end = out.len().min(at + BLOCK);
                out[at..end].copy_from_slice(&o.data[slot as usize][..end - at]);
            }
        })
    }

    /// Stages whole blocks from `start` (`data` a multiple of BLOCK); the
    /// driver sees them at the next [`commit`](Self::commit) (early, if the
    /// overlay fills up).
    pub fn write(&self, data: &[u8], start: u64) -> Result<(), IoError> {
        if !data.len().is_multiple_of(BLOCK) {
            return Err(IoError);
        }
        for (b, n) in data.chunks(BLOCK).zip(start..) {
            if !staged(|o| o.stage(n, b))? {
                // Full: this call's writes so far go out now (see
                // STAGE_BLOCKS), and staging starts afresh.
                self.commit()?;
                if !staged(|o| o.stage(n, b))? {
                    return Err(IoError);
                }
            }
            write_hook(n);
        }
        Ok(())
    }

    /// Writes the staged blocks to the driver, in ascending block order,
    /// each run of adjacent blocks in as few requests as the data area
    /// allows, then drops them. On an error they stay staged (and reads
    /// still see them): the next commit writes them again.
    pub fn commit(&self) -> Result<(), IoError> {
        let max = self.max_count();
        staged(|o| {
            let mut i = 0;
            while i < o.len {
                let first = o.keys[i].0;
                let mut n = 0;
                while i + n < o.len && n < max && o.keys[i + n].0 == first + n as u64 {
                    let slot = o.keys[i + n].1 as usize;
                    // SAFETY: `(n + 1) * BLOCK <= max * BLOCK <= data_len`;
                    // the driver reads the data area only during a request.
                    unsafe { core::ptr::copy_nonoverlapping(o.data[slot].as_ptr(), self.data.add(n * BLOCK), BLOCK) };
                    n += 1;
                }
                self.request(op::WRITE, first, n as u32)?;
                i += n;
            }
            o.len = 0;
            Ok(())
        })?
    }

    /// Commits the staged blocks, then makes every write durable.
    pub fn flush(&self) -> Result<(), IoError> {
        self.commit()?;
        self.run(op::FLUSH, 0, 0)
    }

    /// Blocks on the disk (asks the driver the first time).
    pub fn blocks(&self) -> Result<u64, IoError> {
        if self.blocks.get() == 0 {
            self.flush()?;
        }
        Ok(self.blocks.get())
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    fn empty() -> Overlay {
        Overlay { keys: [(0, 0); STAGE_BLOCKS], len: 0, data: [[0; BLOCK]; STAGE_BLOCKS] }
    }

    #[test]
    fn staged_blocks_are_kept_in_block_order_and_rewritten_in_place() {
        let mut o = empty();
        for (n, v) in [(9, 1), (3, 2), (7, 3), (3, 4), (100, 5)] {
            assert!(o.stage(n, &[v; BLOCK]));
        }
        assert_eq!(o.len, 4, "block 3 was staged twice");
        let order: Vec<u64> = o.keys[..o.len].iter().map(|k| k.0).collect();
        assert_eq!(order, [3, 7, 9, 100]);
        assert_eq!(o.data[o.keys[0].1 as usize][0], 4, "the later write of block 3 wins");
        assert_eq!(o.range(4, 6), 1..3);
        assert_eq!(o.range(0, 3), 0..0);
        assert_eq!(o.range(100, u64::MAX), 3..4);
    }

    #[test]
    fn a_full_overlay_takes_only_blocks_it_holds() {
        let mut o = empty();
        for n in 0..STAGE_BLOCKS as u64 {
            assert!(o.stage(n * 2, &[1; BLOCK]));
        }
        assert!(!o.stage(1, &[2; BLOCK]), "full");
        assert!(o.stage(4, &[3; BLOCK]), "staged already: rewritten in place");
    }
}
