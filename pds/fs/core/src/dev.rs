//! The block device every version's FAT crate runs on: requests through
//! the `blk` region's queues, rung with a protected call to the driver.
//! Everything the driver writes back is checked: a response must answer
//! the request just sent, and a bad one is an I/O error, never trusted.
use core::cell::{Cell, RefCell};
use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering::Relaxed};
use interfaces::blk::{self, op, status, Request, Response, BLOCK};
use interfaces::queue::{Consumer, Producer};
use interfaces::Message;
use module_rt::Env;

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

/// Called at the start of every service call (and import).
pub fn new_call(disk_blocks: u64) {
    BUDGET.store((disk_blocks / 128).saturating_add(4096), Relaxed);
}

/// Test modules only (`pds/fs/faulty`): a function called with the block
/// number after each block [`BlkDev::write`] has taken, so that a test can
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
    /// data area.
    fn run(&self, op: u32, block: u64, count: u32) -> Result<(), IoError> {
        let left = BUDGET.load(Relaxed);
        if left < count as u64 + 1 {
            return Err(IoError);
        }
        BUDGET.store(left - count as u64 - 1, Relaxed);
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

    /// Reads whole blocks from `start` into `out` (a multiple of BLOCK).
    pub fn read(&self, out: &mut [u8], start: u64) -> Result<(), IoError> {
        let mut block = start;
        for chunk in out.chunks_mut(self.max_count() * BLOCK) {
            let n = chunk.len().div_ceil(BLOCK);
            self.run(op::READ, block, n as u32)?;
            // SAFETY: `chunk.len() <= data_len`; the driver wrote the data
            // before it answered, and nobody writes it during the copy.
            unsafe { core::ptr::copy_nonoverlapping(self.data, chunk.as_mut_ptr(), chunk.len()) };
            block += n as u64;
        }
        Ok(())
    }

    pub fn write(&self, data: &[u8], start: u64) -> Result<(), IoError> {
        let mut block = start;
        for chunk in data.chunks(self.max_count() * BLOCK) {
            let n = chunk.len().div_ceil(BLOCK);
            // SAFETY: as in `read`; the driver reads only during the call.
            unsafe { core::ptr::copy_nonoverlapping(chunk.as_ptr(), self.data, chunk.len()) };
            self.run(op::WRITE, block, n as u32)?;
            (block..block + n as u64).for_each(write_hook);
            block += n as u64;
        }
        Ok(())
    }

    pub fn flush(&self) -> Result<(), IoError> {
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
