//! The block driver's device-independent part: it owns the driver end of
//! the `blk` region's queues (see `interfaces::blk`) and serves every
//! queued request from a [`Disk`]. The driver is fixed, not updatable: it
//! holds no state between calls but the device, every request is answered
//! before the doorbell call returns (so none is in flight across an update
//! of its client), and its logic is a bounds check and a copy.
//!
//! Both drivers serve through [`Server::kick`]: the host one
//! (`blk_driver`, a disk image file) and the seL4 one
//! (`build/sel4/virtio_blk_driver`, a virtio-blk device through
//! [`virtio`]). [`client`] is the other end, as a test
//! client uses it (`build/sel4/blk_test_client`, and the tests here).
#![no_std]

pub mod cache;
pub mod client;
pub mod virtio;

use interfaces::blk::{self, op, status, Request, Response};
use interfaces::queue::{Consumer, Producer};

/// The device failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceError;

/// A device of `blocks()` blocks of 512 bytes. `read` and `write`
/// move whole blocks from `block` on (the buffer's length is a non-zero
/// multiple of [`BLOCK`](interfaces::blk::BLOCK)); the server has checked the range against
/// `blocks()` before it calls them.
pub trait Disk {
    fn blocks(&self) -> u64;
    fn read(&mut self, block: u64, out: &mut [u8]) -> Result<(), DeviceError>;
    fn write(&mut self, block: u64, data: &[u8]) -> Result<(), DeviceError>;
    fn flush(&mut self) -> Result<(), DeviceError>;
}

/// What a doorbell call's reply label says: [`KICK_OK`] when every queued
/// request has its response, [`KICK_REFUSED`] for another label or a
/// client whose session ended.
pub const KICK_OK: u64 = 0;
pub const KICK_REFUSED: u64 = 1;

pub struct Server {
    requests: Consumer,
    responses: Producer,
    data: &'static mut [u8],
    /// Requests served since boot.
    pub served: u64,
    /// Set once the client broke the queue protocol: it is not served again.
    pub broken: bool,
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
        Some(Server { requests, responses, data, served: 0, broken: false })
    }

    /// A protected call with `label`: serves every queued request when it
    /// is [`interfaces::blk::KICK`]; returns the reply label, and whether
    /// this call ended the client's session (to be logged once).
    pub fn kick<D: Disk>(&mut self, disk: &mut D, label: u64) -> (u64, bool) {
        if label != blk::KICK || self.broken {
            return (KICK_REFUSED, false);
        }
        if self.serve(disk).is_err() {
            self.broken = true;
            return (KICK_REFUSED, true);
        }
        (KICK_OK, false)
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
            op::READ => disk.read(req.block, buf).is_ok(),
            op::WRITE => disk.write(req.block, buf).is_ok(),
            _ => return status::BAD_REQUEST,
        };
        if ok {
            status::OK
        } else {
            status::IO_ERROR
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use client::{selftest, Client, TEST_BLOCKS};
    use interfaces::blk::BLOCK;
    use std::vec::Vec;

    /// A disk in memory: an MBR whose partition 0 (FAT32, from block 0)
    /// starts with its boot sector, as `mkfs.fat --mbr=y` makes it.
    struct MemDisk(Vec<u8>);

    impl MemDisk {
        fn fat(blocks: usize) -> MemDisk {
            let mut d = std::vec![0u8; blocks * BLOCK];
            d[82..90].copy_from_slice(b"FAT32   ");
            d[446 + 4] = 0x0c;
            d[510] = 0x55;
            d[511] = 0xaa;
            MemDisk(d)
        }
    }

    impl Disk for MemDisk {
        fn blocks(&self) -> u64 {
            (self.0.len() / BLOCK) as u64
        }
        fn read(&mut self, block: u64, out: &mut [u8]) -> Result<(), DeviceError> {
            let at = block as usize * BLOCK;
            out.copy_from_slice(&self.0[at..at + out.len()]);
            Ok(())
        }
        fn write(&mut self, block: u64, data: &[u8]) -> Result<(), DeviceError> {
            let at = block as usize * BLOCK;
            self.0[at..at + data.len()].copy_from_slice(data);
            Ok(())
        }
        fn flush(&mut self) -> Result<(), DeviceError> {
            Ok(())
        }
    }

    /// A `blk` region (as in tests/systems/fs.xml), aligned to 64.
    fn region() -> &'static mut [u8] {
        #[derive(Clone, Copy)]
        #[repr(C, align(64))]
        struct Line([u8; 64]);
        let lines: &'static mut [Line] = std::vec![Line([0; 64]); 0x12000 / 64].leak();
        // SAFETY: the same memory, as bytes; leaked, so it lives for ever.
        unsafe { core::slice::from_raw_parts_mut(lines.as_mut_ptr().cast(), 0x12000) }
    }

    fn run(disk: &mut MemDisk) -> Result<client::Outcome, &'static str> {
        let r = region();
        // SAFETY: the region lives for ever; each side is its queues' only
        // producer and consumer (one thread plays both, one at a time).
        let (mut server, mut c) =
            unsafe { (Server::new(r.as_mut_ptr(), r.len()).unwrap(), Client::new(r.as_mut_ptr(), r.len()).unwrap()) };
        let mut kick = |label| Some(server.kick(disk, label).0);
        selftest(&mut c, &mut kick, &mut |a| std::println!("{a}"))
    }

    #[test]
    fn the_self_test_passes_against_the_server_and_leaves_its_pattern() {
        let mut disk = MemDisk::fat(1024);
        let out = run(&mut disk).unwrap();
        assert_eq!(out.disk_blocks, 1024);
        assert_eq!(out.refused, 10);
        let first = 1024 - TEST_BLOCKS;
        for (i, &b) in disk.0[first as usize * BLOCK..].iter().enumerate() {
            assert_eq!(b, client::pattern(first + (i / BLOCK) as u64, i % BLOCK));
        }
        assert_eq!(&disk.0[82..90], b"FAT32   ");
    }

    #[test]
    fn the_self_test_fails_on_a_disk_that_is_not_fat32() {
        let mut disk = MemDisk::fat(1024);
        disk.0[511] = 0;
        assert_eq!(run(&mut disk), Err("block 0 has no 0x55aa signature"));
        let mut disk = MemDisk::fat(1024);
        disk.0[82] = b'X';
        assert_eq!(run(&mut disk), Err("partition 0 has no FAT32 boot sector"));
    }

    #[test]
    fn a_client_that_breaks_the_queue_is_no_longer_served() {
        let r = region();
        let mut disk = MemDisk::fat(64);
        // SAFETY: as in `run`.
        let mut server = unsafe { Server::new(r.as_mut_ptr(), r.len()).unwrap() };
        // An impossible request queue tail (the first word of the queue's
        // header): far more bytes than the queue holds.
        r[blk::REQ_QUEUE.0..blk::REQ_QUEUE.0 + 4].copy_from_slice(&0xffff_0000u32.to_le_bytes());
        let first = server.kick(&mut disk, blk::KICK);
        assert!(server.broken);
        assert_eq!(first, (KICK_REFUSED, true));
        assert_eq!(server.kick(&mut disk, blk::KICK), (KICK_REFUSED, false));
    }
}
