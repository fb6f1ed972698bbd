//! The file service's client stub. As kv's: every call reads the
//! instance's binding from the capability map, calls the live slot, and on
//! `MOVED`, `NO_SERVICE` or a failed slot re-reads the map and calls again,
//! so each request runs once. File data moves through the client's buffer
//! (its `fsbuf` region, mapped in both slots), never through the message.
#![no_std]

use interfaces::capmap::CapMap;
use interfaces::control::{region, shell_label};
use interfaces::fs::{FsOp, FsRequest, FsStatus, OpenMode};
use interfaces::Message;
use pd_api::{ChannelId, Pd, PpcError};

/// How long a call waits for its instance to become live again.
pub const UNAVAILABLE_AFTER_NS: u64 = 10_000_000_000;
const MOVED_PATIENCE: u32 = 200;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsError {
    Status(FsStatus),
    /// No slot became live in time.
    Unavailable,
    /// The reply was malformed (an unknown status, a length beyond the
    /// buffer).
    BadReply,
}

pub struct FsClient<'p, P: Pd + ?Sized> {
    pd: &'p P,
    capmap: &'p CapMap,
    index: usize,
    slots: [ChannelId; 2],
    buf: &'p mut [u8],
    pub retried: u64,
}

impl<'p, P: Pd + ?Sized> FsClient<'p, P> {
    /// Connects to the `service` instance this PD has channels to, with
    /// its buffer in the region `fsbuf`.
    pub fn connect(pd: &'p P, service: &str) -> Result<Self, &'static str> {
        let map = pd.region(region::CAPMAP).ok_or("no 'capmap' region")?;
        if map.size < core::mem::size_of::<CapMap>() || map.base.align_offset(8) != 0 {
            return Err("'capmap' region is too small");
        }
        let b = pd.region("fsbuf").filter(|r| r.writable).ok_or("no writable 'fsbuf' region")?;
        // SAFETY: both regions stay mapped for the PD's life; the map is
        // read only through atomics, the buffer only by this PD between
        // its calls (and by the service during them).
        let (capmap, buf) = unsafe { (&*(map.base as *const CapMap), core::slice::from_raw_parts_mut(b.base, b.size)) };
        let start = pd.now_ns();
        loop {
            let n = capmap.instances.load(core::sync::atomic::Ordering::Relaxed) as usize;
            let found = (0..n.min(interfaces::capmap::MAX_INSTANCES)).find_map(|i| {
                let name = capmap.entries[i].name.as_str()?;
                if name.trim_end_matches(|c: char| c.is_ascii_digit()) != service || capmap.find(name) != Some(i) {
                    return None;
                }
                let mut s = [0u8; 40];
                let a = pd.channel(concat(&mut s, name, "_a")?)?;
                let b = pd.channel(concat(&mut s, name, "_b")?)?;
                Some((i, [a, b]))
            });
            if let Some((index, slots)) = found {
                return Ok(FsClient { pd, capmap, index, slots, buf, retried: 0 });
            }
            if pd.now_ns() - start > UNAVAILABLE_AFTER_NS {
                return Err("no instance of the service appeared in the capability map");
            }
            pd.yield_now();
        }
    }

    /// The buffer the next call's data goes in (or came out of).
    pub fn buffer(&mut self) -> &mut [u8] {
        self.buf
    }

    fn call(&mut self, op: FsOp, handle: u64, arg: u64, path: &str) -> Result<(u64, u64), FsError> {
        let req = FsRequest { op, handle, arg, path };
        let mut msg = Message::default();
        let mut start = None;
        loop {
            let binding = self.capmap.binding(self.index);
            if let Some(slot) = binding.and_then(|b| b.live) {
                req.encode(&mut msg).map_err(FsError::Status)?;
                let bounced = match self.pd.ppcall(self.slots[slot.index()], &mut msg) {
                    Ok(()) => match msg.label {
                        shell_label::MOVED | shell_label::NO_SERVICE | shell_label::FAILED => true,
                        label => {
                            return match FsStatus::from_label(label).ok_or(FsError::BadReply)? {
                                FsStatus::Ok => Ok((msg.word(0), msg.word(1))),
                                s => Err(FsError::Status(s)),
                            }
                        }
                    },
                    Err(PpcError::CalleeFaulted) => true,
                    Err(PpcError::NotDelivered) => false,
                    Err(PpcError::NoSuchChannel) => return Err(FsError::Unavailable),
                };
                self.retried += 1;
                if bounced {
                    // Give way until the manager commits a new binding.
                    let generation = binding.map_or(0, |b| b.generation);
                    for _ in 0..MOVED_PATIENCE {
                        if self.capmap.binding(self.index).is_some_and(|b| b.generation != generation) {
                            break;
                        }
                        self.pd.yield_now();
                    }
                }
            }
            let now = self.pd.now_ns();
            if now - *start.get_or_insert(now) > UNAVAILABLE_AFTER_NS || self.pd.halting() {
                return Err(FsError::Unavailable);
            }
            self.pd.yield_now();
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

fn concat<'b>(buf: &'b mut [u8; 40], a: &str, b: &str) -> Option<&'b str> {
    let n = a.len() + b.len();
    buf.get_mut(..a.len())?.copy_from_slice(a.as_bytes());
    buf.get_mut(a.len()..n)?.copy_from_slice(b.as_bytes());
    core::str::from_utf8(&buf[..n]).ok()
}
