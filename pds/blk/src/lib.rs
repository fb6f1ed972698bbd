//! The block driver's device-independent part: it owns the driver end of
//! the `blk` region's queues (see `interfaces::blk`) and serves every
//! queued request from a [`Disk`]. The driver is fixed, not updatable: it
//! holds no state between calls but the device, every request is answered
//! before the doorbell call returns (so none is in flight across an update
//! of its client), and its logic is a bounds check and a copy.
#![no_std]

use interfaces::blk::{self, op, status, Request, Response, BLOCK};
use interfaces::queue::{Consumer, Producer};

/// The device failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceError;

/// A device of `blocks()` blocks of [`BLOCK`] bytes.
pub trait Disk {
    fn blocks(&self) -> u64;
    fn read(&mut self, block: u64, out: &mut [u8]) -> Result<(), DeviceError>;
    fn write(&mut self, block: u64, data: &[u8]) -> Result<(), DeviceError>;
    fn flush(&mut self) -> Result<(), DeviceError>;
}

pub struct Server {
    requests: Consumer,
    responses: Producer,
    data: &'static mut [u8],
    /// Requests served since boot.
    pub served: u64,
}

impl Server {
    /// # Safety
    /// `base` and `size` describe the `blk` region, mapped read-write for
    /// the PD's life and aligned to 64; this PD is the only consumer of its
    /// request queue and the only producer of its response queue.
    pub unsafe fn new(base: *mut u8, size: usize) -> Option<Server> {
        if size <= blk::DATA {
            return None;
        }
        let (rq, rs) = (blk::REQ_QUEUE, blk::RESP_QUEUE);
        let mut responses = unsafe { Producer::new(base.add(rs.0), rs.1)? };
        let requests = unsafe { Consumer::new(base.add(rq.0), rq.1)? };
        responses.reset();
        // SAFETY: the data area is the rest of the region (the caller's
        // contract); the client writes it only between its calls.
        let data = unsafe { core::slice::from_raw_parts_mut(base.add(blk::DATA), size - blk::DATA) };
        Some(Server { requests, responses, data, served: 0 })
    }

    /// Serves every request queued; `Err` when the client broke the queue
    /// protocol (its indices are impossible), which ends its session.
    pub fn serve<D: Disk>(&mut self, disk: &mut D) -> Result<(), interfaces::queue::PeerMisbehaved> {
        while let Some(req) = blk::pop::<Request>(&mut self.requests)? {
            let status = self.run(disk, &req);
            let resp = Response { id: req.id, status, disk_blocks: disk.blocks() };
            // The client keeps at most one request per response slot in
            // flight; a full response queue is its mistake.
            if !blk::push(&mut self.responses, &resp)? {
                return Err(interfaces::queue::PeerMisbehaved);
            }
            self.served += 1;
        }
        Ok(())
    }

    fn run<D: Disk>(&mut self, disk: &mut D, req: &Request) -> u32 {
        if req.op == op::FLUSH {
            return if disk.flush().is_ok() { status::OK } else { status::IO_ERROR };
        }
        let Some(range) = blk::data_range(req, self.data.len()) else { return status::BAD_REQUEST };
        if req.block.checked_add(req.count as u64).is_none_or(|end| end > disk.blocks()) {
            return status::OUT_OF_RANGE;
        }
        let buf = &mut self.data[range];
        let ok = match req.op {
            op::READ => buf.chunks_mut(BLOCK).zip(req.block..).all(|(b, n)| disk.read(n, b).is_ok()),
            op::WRITE => buf.chunks(BLOCK).zip(req.block..).all(|(b, n)| disk.write(n, b).is_ok()),
            _ => return status::BAD_REQUEST,
        };
        if ok {
            status::OK
        } else {
            status::IO_ERROR
        }
    }
}
