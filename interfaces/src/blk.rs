//! The block device's shared-memory protocol (sDDF style): one region,
//! `blk`, holds a request queue (client to driver), a response queue
//! (driver to client) and a data area. Requests and responses are
//! fixed-size records in the byte queues of [`crate::queue`]; a request
//! names its data by offset into the data area, never by pointer. The
//! client rings the driver with a protected call (the FAT crates' block
//! interface is synchronous), and the driver answers once every queued
//! request has its response.
//!
//! Both ends validate what the other wrote: the driver checks every
//! block range and data range against the disk and the region, the client
//! checks that each response answers the request it is waiting for.
use crate::queue::{Consumer, PeerMisbehaved, Producer};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// The block size of the protocol (FAT's sector size).
pub const BLOCK: usize = 512;
/// Offset and size of the request queue in the `blk` region.
pub const REQ_QUEUE: (usize, usize) = (0, 0x1000);
/// Offset and size of the response queue.
pub const RESP_QUEUE: (usize, usize) = (0x1000, 0x1000);
/// Where the data area starts; it runs to the end of the region.
pub const DATA: usize = 0x2000;

/// The label of the doorbell call.
pub const KICK: u64 = 0x424c_4b31;

pub mod op {
    pub const READ: u32 = 1;
    pub const WRITE: u32 = 2;
    /// Makes every completed write durable (fsync on the host).
    pub const FLUSH: u32 = 3;
}

pub mod status {
    pub const OK: u32 = 0;
    /// A malformed request: unknown op, data outside the data area.
    pub const BAD_REQUEST: u32 = 1;
    /// Blocks beyond the end of the disk.
    pub const OUT_OF_RANGE: u32 = 2;
    /// The device failed.
    pub const IO_ERROR: u32 = 3;
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct Request {
    pub id: u32,
    pub op: u32,
    pub block: u64,
    pub count: u32,
    /// Byte offset of the data in the data area.
    pub data_off: u32,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct Response {
    pub id: u32,
    pub status: u32,
    /// Blocks on the disk (answered to every request, so a client learns
    /// the size without an operation of its own).
    pub disk_blocks: u64,
}

/// Pushes `rec` whole, or nothing: `Ok(false)` when it does not fit.
pub fn push<T: IntoBytes + Immutable>(q: &mut Producer, rec: &T) -> Result<bool, PeerMisbehaved> {
    let bytes = rec.as_bytes();
    if q.free()? < bytes.len() {
        return Ok(false);
    }
    Ok(q.push(bytes)? == bytes.len())
}

/// Pops one whole record, if one is there.
pub fn pop<T: FromBytes + IntoBytes>(q: &mut Consumer) -> Result<Option<T>, PeerMisbehaved> {
    let mut rec = T::new_zeroed();
    let n = core::mem::size_of::<T>();
    if q.available()? < n {
        return Ok(None);
    }
    if q.pop(rec.as_mut_bytes())? != n {
        return Err(PeerMisbehaved);
    }
    Ok(Some(rec))
}

/// The byte range `[off, off + count * BLOCK)` of a data area of
/// `data_len` bytes, if the request's numbers fit it (no overflow).
pub fn data_range(req: &Request, data_len: usize) -> Option<core::ops::Range<usize>> {
    let len = (req.count as usize).checked_mul(BLOCK)?;
    let start = req.data_off as usize;
    let end = start.checked_add(len)?;
    (end <= data_len && req.count > 0).then_some(start..end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_ranges_are_checked() {
        let r = |data_off, count| Request { id: 0, op: op::READ, block: 0, count, data_off };
        assert_eq!(data_range(&r(0, 2), 1024), Some(0..1024));
        assert_eq!(data_range(&r(512, 2), 1024), None);
        assert_eq!(data_range(&r(0, 0), 1024), None);
        assert_eq!(data_range(&r(u32::MAX, u32::MAX), 1 << 20), None);
    }
}
