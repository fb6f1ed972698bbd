//! The file service's client stub: fs requests and replies over the
//! common stub (`service-stub`), which finds the live slot through the
//! capability map and runs each request exactly once. File data moves
//! through the client's buffer (its `fsbuf` region, mapped in both
//! slots), never through the message.
#![no_std]

use interfaces::fs::{FsOp, FsRequest, FsStatus, OpenMode};
use interfaces::Message;
use pd_api::Pd;
use service_stub::{CallError, Stub};

pub use service_stub::UNAVAILABLE_AFTER_NS;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsError {
    Status(FsStatus),
    /// No slot became live in time.
    Unavailable,
    /// The reply was malformed (an unknown status, a length beyond the
    /// buffer).
    BadReply,
}

impl From<CallError<FsStatus>> for FsError {
    fn from(e: CallError<FsStatus>) -> Self {
        match e {
            CallError::Encode(s) => FsError::Status(s),
            CallError::Unavailable => FsError::Unavailable,
        }
    }
}

pub struct FsClient<'p, P: Pd + ?Sized> {
    stub: Stub<'p, P>,
    buf: &'p mut [u8],
}

impl<'p, P: Pd + ?Sized> FsClient<'p, P> {
    /// Connects to the `service` instance this PD has channels to, with
    /// its buffer in the region `fsbuf`.
    pub fn connect(pd: &'p P, service: &str) -> Result<Self, &'static str> {
        let b = pd.region("fsbuf").filter(|r| r.writable).ok_or("no writable 'fsbuf' region")?;
        // SAFETY: the region stays mapped for the PD's life and is used
        // only by this PD between its calls (and by the service during
        // them).
        let buf = unsafe { core::slice::from_raw_parts_mut(b.base, b.size) };
        Ok(FsClient { stub: Stub::connect(pd, service)?, buf })
    }

    /// Calls bounced by a slot and retried.
    pub fn retried(&self) -> u64 {
        self.stub.retried
    }

    /// The buffer the next call's data goes in (or came out of).
    pub fn buffer(&mut self) -> &mut [u8] {
        self.buf
    }

    fn call(&mut self, op: FsOp, handle: u64, arg: u64, path: &str) -> Result<(u64, u64), FsError> {
        let req = FsRequest { op, handle, arg, path };
        let mut msg = Message::default();
        self.stub.call(&mut msg, |msg| req.encode(msg))?;
        match FsStatus::from_label(msg.label).ok_or(FsError::BadReply)? {
            FsStatus::Ok => Ok((msg.word(0), msg.word(1))),
            s => Err(FsError::Status(s)),
        }
    }

    pub fn open(&mut self, path: &str, mode: OpenMode) -> Result<u64, FsError> {
        self.call(FsOp::Open, 0, mode as u64, path).map(|r| r.0)
    }

    /// Reads up to `len` bytes at the handle's position into the buffer;
    /// returns how many.
    pub fn read(&mut self, handle: u64, len: usize) -> Result<usize, FsError> {
        let n = self.call(FsOp::Read, handle, len as u64, "")?.0 as usize;
        if n > len.min(self.buf.len()) {
            return Err(FsError::BadReply);
        }
        Ok(n)
    }

    /// Writes the buffer's first `len` bytes at the handle's position.
    pub fn write(&mut self, handle: u64, len: usize) -> Result<(), FsError> {
        self.call(FsOp::Write, handle, len as u64, "").map(|_| ())
    }

    pub fn seek(&mut self, handle: u64, pos: u32) -> Result<(), FsError> {
        self.call(FsOp::Seek, handle, pos as u64, "").map(|_| ())
    }

    /// Makes the file durable; returns the bytes written through the
    /// handle (0 from versions before fs v4, whose state does not count).
    pub fn sync(&mut self, handle: u64) -> Result<u64, FsError> {
        self.call(FsOp::Sync, handle, 0, "").map(|r| r.0)
    }

    pub fn close(&mut self, handle: u64) -> Result<(), FsError> {
        self.call(FsOp::Close, handle, 0, "").map(|_| ())
    }

    /// (size, is_dir).
    pub fn stat(&mut self, path: &str) -> Result<(u64, bool), FsError> {
        self.call(FsOp::Stat, 0, 0, path).map(|(s, d)| (s, d == 1))
    }

    /// Lists `path` from `cursor` into the buffer; returns (entries, next
    /// cursor), the entries read with `interfaces::fs::entries`.
    pub fn list(&mut self, path: &str, cursor: u64) -> Result<(usize, u64), FsError> {
        self.call(FsOp::List, 0, cursor, path).map(|(n, c)| (n as usize, c))
    }

    pub fn mkdir(&mut self, path: &str) -> Result<(), FsError> {
        self.call(FsOp::Mkdir, 0, 0, path).map(|_| ())
    }

    pub fn remove(&mut self, path: &str) -> Result<(), FsError> {
        self.call(FsOp::Remove, 0, 0, path).map(|_| ())
    }

    pub fn rmdir(&mut self, path: &str) -> Result<(), FsError> {
        self.call(FsOp::Rmdir, 0, 0, path).map(|_| ())
    }

    /// (module version, FAT crate version).
    pub fn version(&mut self) -> Result<(u64, u64), FsError> {
        self.call(FsOp::Version, 0, 0, "")
    }
}
