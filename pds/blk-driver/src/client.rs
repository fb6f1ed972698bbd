//! The client end of the `blk` queues, one request at a time, each
//! response checked against the request it answers; and [`selftest`], the
//! block device's end-to-end check, run by the seL4 test client
//! (`build/sel4/blk_test_client`) against the virtio-blk driver and by
//! this crate's tests against [`Server`](crate::Server) over memory. (The
//! file service has its own client, `pds/fs/core/src/dev.rs`, which also
//! budgets a call's requests.)
use core::fmt;
use interfaces::blk::{self, op, status, Request, Response, BLOCK};
use interfaces::queue::{Consumer, Producer};

/// Why a request got no trustworthy answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientError {
    /// The doorbell call failed or its reply label was not `KICK_OK`.
    Kick(Option<u64>),
    /// The request queue had no room (a response was left unread).
    QueueFull,
    /// No response, a response to another request, or impossible indices.
    BadResponse,
}

/// The doorbell: a protected call to the driver with this label; the
/// reply's label, or `None` when the call itself failed.
pub type Kick<'a> = &'a mut dyn FnMut(u64) -> Option<u64>;

pub struct Client {
    requests: Producer,
    responses: Consumer,
    data: *mut u8,
    data_len: usize,
    next_id: u32,
}

impl Client {
    /// # Safety
    /// `base` and `size` describe the `blk` region, mapped read-write for
    /// the PD's life and aligned to 64; this PD is the only producer of its
    /// request queue and the only consumer of its response queue.
    pub unsafe fn new(base: *mut u8, size: usize) -> Option<Client> {
        if size <= blk::DATA + BLOCK {
            return None;
        }
        let (rq, rs) = (blk::REQ_QUEUE, blk::RESP_QUEUE);
        // SAFETY: the caller's contract; both queues lie inside the region.
        let mut requests = unsafe { Producer::new(base.add(rq.0), rq.1)? };
        let responses = unsafe { Consumer::new(base.add(rs.0), rs.1)? };
        requests.reset();
        // SAFETY: the data area is the rest of the region.
        let data = unsafe { base.add(blk::DATA) };
        Some(Client { requests, responses, data, data_len: size - blk::DATA, next_id: 1 })
    }

    /// The data area. The driver touches it only during a call.
    pub fn data(&mut self) -> &mut [u8] {
        // SAFETY: `new`'s contract: the area is mapped for the PD's life and
        // the driver uses it only while `call` (which takes `&mut self`) runs.
        unsafe { core::slice::from_raw_parts_mut(self.data, self.data_len) }
    }

    /// Sends `req` (with the next id in place of its own), rings the
    /// driver, and returns the response, which must answer it.
    pub fn call(&mut self, kick: Kick, mut req: Request) -> Result<Response, ClientError> {
        req.id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        // A response left from an earlier, failed exchange is stale.
        while blk::pop::<Response>(&mut self.responses).map_err(|_| ClientError::BadResponse)?.is_some() {}
        if !blk::push(&mut self.requests, &req).map_err(|_| ClientError::BadResponse)? {
            return Err(ClientError::QueueFull);
        }
        match kick(blk::KICK) {
            Some(crate::KICK_OK) => {}
            other => return Err(ClientError::Kick(other)),
        }
        let resp = blk::pop::<Response>(&mut self.responses)
            .map_err(|_| ClientError::BadResponse)?
            .ok_or(ClientError::BadResponse)?;
        if resp.id != req.id {
            return Err(ClientError::BadResponse);
        }
        Ok(resp)
    }
}

/// Blocks the self-test writes: the last ones of the disk (free space at
/// the end of a fresh FAT image), left holding [`pattern`] so that the
/// test on the host can check the image file.
pub const TEST_BLOCKS: u64 = 16;

/// Byte `i` of block `block` as the self-test writes it.
pub fn pattern(block: u64, i: usize) -> u8 {
    (block.wrapping_mul(0x9e37_79b9) >> 7) as u8 ^ (i as u8).wrapping_mul(13) ^ (i >> 8) as u8
}

/// What [`selftest`] saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The disk's size, as the driver answers it.
    pub disk_blocks: u64,
    /// Requests answered as expected (good and bad ones).
    pub requests: u32,
    /// Bad requests refused with the expected status.
    pub refused: u32,
}

/// A request of `count` blocks from `block` with its data at `data_off`.
fn req(op: u32, block: u64, count: u32, data_off: u32) -> Request {
    Request { id: 0, op, block, count, data_off }
}

fn expect(c: &mut Client, kick: Kick, r: Request, want: u32, what: &'static str) -> Result<Response, &'static str> {
    let resp = c.call(kick, r).map_err(|_| what)?;
    if resp.status != want {
        return Err(what);
    }
    Ok(resp)
}

/// The block device end to end, through the queues: the disk's size; its
/// first block (an MBR whose partition 0 is FAT32, as
/// `xtask::make_disk_image` makes it) and the partition's boot sector;
/// [`TEST_BLOCKS`] blocks written at the end of the disk in one request,
/// read back in two (at other data offsets) and checked; a flush; then
/// bad requests (blocks beyond the disk, an overflowing block number, data
/// outside the data area, no blocks, an unknown op, a wrong doorbell
/// label), each refused with its status, and the device still serving
/// after them. `log` says what each step saw; `Err` names the step that
/// failed.
pub fn selftest(c: &mut Client, kick: Kick, log: &mut dyn FnMut(fmt::Arguments)) -> Result<Outcome, &'static str> {
    let mut out = Outcome::default();
    let blocks = expect(c, kick, req(op::FLUSH, 0, 0, 0), status::OK, "flush")?.disk_blocks;
    out.disk_blocks = blocks;
    out.requests += 1;
    log(format_args!("disk of {blocks} blocks ({} MiB)", (blocks * BLOCK as u64) >> 20));
    if blocks < TEST_BLOCKS + 2 || c.data_len < TEST_BLOCKS as usize * BLOCK {
        return Err("disk or data area too small for the test");
    }

    // The MBR and the boot sector of its partition 0.
    expect(c, kick, req(op::READ, 0, 1, 0), status::OK, "read block 0")?;
    out.requests += 1;
    let mbr = &c.data()[..BLOCK];
    if mbr[510..512] != [0x55, 0xaa] {
        return Err("block 0 has no 0x55aa signature");
    }
    let p0 = &mbr[446..462];
    let (kind, start) = (p0[4], u32::from_le_bytes([p0[8], p0[9], p0[10], p0[11]]) as u64);
    if kind != 0x0b && kind != 0x0c {
        return Err("partition 0 is not FAT32");
    }
    if start >= blocks {
        return Err("partition 0 starts beyond the disk");
    }
    expect(c, kick, req(op::READ, start, 1, BLOCK as u32), status::OK, "read the boot sector")?;
    out.requests += 1;
    let boot = &c.data()[BLOCK..2 * BLOCK];
    if boot[510..512] != [0x55, 0xaa] || &boot[82..90] != b"FAT32   " {
        return Err("partition 0 has no FAT32 boot sector");
    }
    log(format_args!("MBR: partition 0 is FAT32 from block {start}; its boot sector says FAT32"));

    // Write, read back, check.
    let first = blocks - TEST_BLOCKS;
    let len = TEST_BLOCKS as usize * BLOCK;
    for (i, b) in c.data()[..len].iter_mut().enumerate() {
        *b = pattern(first + (i / BLOCK) as u64, i % BLOCK);
    }
    expect(c, kick, req(op::WRITE, first, TEST_BLOCKS as u32, 0), status::OK, "write the test blocks")?;
    c.data()[..len + BLOCK].fill(0);
    let half = TEST_BLOCKS as u32 / 2;
    let off = BLOCK as u32;
    expect(c, kick, req(op::READ, first + half as u64, half, off), status::OK, "read the test blocks (2nd half)")?;
    expect(
        c,
        kick,
        req(op::READ, first, half, off + half * BLOCK as u32),
        status::OK,
        "read the test blocks (1st half)",
    )?;
    expect(c, kick, req(op::FLUSH, 0, 0, 0), status::OK, "flush after writing")?;
    out.requests += 4;
    let data = c.data();
    let (second, first_half) = data[BLOCK..BLOCK + len].split_at(len / 2);
    let good =
        first_half.iter().chain(second).enumerate().all(|(i, &b)| b == pattern(first + (i / BLOCK) as u64, i % BLOCK));
    if !good {
        return Err("the test blocks read back differ from what was written");
    }
    log(format_args!("wrote blocks {first}..{blocks} in one request, read them back in two: equal"));

    // Bad requests.
    let data_len = c.data_len as u32;
    let bad: [(Request, u32, &'static str); 9] = [
        (req(op::READ, blocks, 1, 0), status::OUT_OF_RANGE, "a block past the end"),
        (req(op::WRITE, blocks - 1, 2, 0), status::OUT_OF_RANGE, "a write over the end"),
        (req(op::READ, u64::MAX, 1, 0), status::OUT_OF_RANGE, "block u64::MAX"),
        (req(op::READ, u64::MAX - 1, u32::MAX, 0), status::BAD_REQUEST, "an overflowing block range"),
        (req(op::READ, 0, 1, data_len), status::BAD_REQUEST, "data past the data area"),
        (req(op::WRITE, 0, 2, data_len - BLOCK as u32), status::BAD_REQUEST, "data over the data area's end"),
        (req(op::READ, 0, u32::MAX, u32::MAX), status::BAD_REQUEST, "an overflowing data range"),
        (req(op::READ, 0, 0, 0), status::BAD_REQUEST, "no blocks"),
        (req(99, 0, 1, 0), status::BAD_REQUEST, "an unknown op"),
    ];
    for (r, want, what) in bad {
        expect(c, kick, r, want, what)?;
        out.requests += 1;
        out.refused += 1;
    }
    if kick(blk::KICK ^ 1) != Some(crate::KICK_REFUSED) {
        return Err("a doorbell with a wrong label was not refused");
    }
    out.refused += 1;
    log(format_args!("{} bad requests refused with their status", out.refused));

    // Still serving, and the disk unchanged by the refused requests.
    expect(c, kick, req(op::READ, 0, 1, 0), status::OK, "read block 0 again")?;
    expect(c, kick, req(op::READ, blocks - 1, 1, BLOCK as u32), status::OK, "read the last block again")?;
    out.requests += 2;
    let data = c.data();
    if data[510..512] != [0x55, 0xaa] || (0..BLOCK).any(|i| data[BLOCK + i] != pattern(blocks - 1, i)) {
        return Err("the disk changed under refused requests");
    }
    Ok(out)
}
