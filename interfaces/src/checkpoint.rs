//! The probation checkpoint: the new version's state after the last call
//! it completed, in the schema the old version imports, so that the old
//! version can take over from there if the new one fails while on
//! probation. The alternative to the journal (`journal`) for a service
//! whose calls cannot be run again on top of the old state: a file
//! service's writes are on the disk already, and their data is in a client
//! buffer that has been reused since.
//!
//! A region shared by the two slots of one instance. During probation the
//! new slot, after each call its module completed and *before the reply
//! leaves*, has the module make its effects durable (`prepare`) and export
//! its state into the half of the body that is not published, then
//! publishes that half (one store, Release, after the bytes). A slot that
//! faults or is stopped while writing a half never published it, and the
//! call it was serving got no reply: its retry runs in the old version,
//! from the state of the published half. On a rollback the old slot
//! imports the published half (or keeps its own state if there is none).
//!
//! Layout: a 64-byte header (magic, the probation's token, the published
//! half: 0 none, 1 or 2), then two halves of equal size, each a 32-byte
//! header (schema, length in bytes, calls completed when it was taken)
//! and the exported bytes. The reader trusts nothing: the token must be
//! its probation's, and the half's header is checked against the region.
use core::sync::atomic::{AtomicU64, Ordering};

pub const CHECKPOINT_MAGIC: u64 = 0x4350_4f49_4e54_0001; // "CPOINT" v1
pub const CHECKPOINT_HEADER: usize = 64;
const HALF_HEADER: usize = 32;

/// A checkpoint region.
pub struct Checkpoint {
    base: *mut u8,
    size: usize,
}

/// The published checkpoint, as the reader found it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub schema: u32,
    /// Calls the writer had completed during the probation.
    pub calls: u64,
    /// The exported state: `len` bytes from `data`, inside the region.
    pub data: *const u8,
    pub len: usize,
}

/// Why a checkpoint cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckpointError {
    /// It belongs to another probation (or to none).
    WrongToken,
    /// The published half's header does not fit the region.
    Corrupt,
}

impl core::fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            CheckpointError::WrongToken => "the checkpoint belongs to another probation",
            CheckpointError::Corrupt => "the checkpoint is corrupt",
        })
    }
}

impl Checkpoint {
    /// # Safety
    /// `base..base + size` is a mapped checkpoint region, 8-byte aligned,
    /// that lives as long as the returned value. Only the two slots of one
    /// instance map it; one of them writes it at a time (the slot on
    /// probation), and the other reads it only once that one has stopped.
    pub unsafe fn new(base: *mut u8, size: usize) -> Option<Checkpoint> {
        let c = Checkpoint { base, size };
        ((base as usize).is_multiple_of(8) && size > CHECKPOINT_HEADER && c.capacity() > 0).then_some(c)
    }

    fn u64_at(&self, offset: usize) -> &AtomicU64 {
        // SAFETY: a header field (the region's or a half's): inside the
        // region and 8-aligned (halves start at multiples of 8); header
        // fields are accessed only atomically.
        unsafe { AtomicU64::from_ptr(self.base.add(offset).cast()) }
    }
    fn magic(&self) -> &AtomicU64 {
        self.u64_at(0)
    }
    fn token(&self) -> &AtomicU64 {
        self.u64_at(8)
    }
    fn published(&self) -> &AtomicU64 {
        self.u64_at(16)
    }

    /// Bytes from one half's start to the next's (a multiple of 8).
    fn half_size(&self) -> usize {
        (self.size.saturating_sub(CHECKPOINT_HEADER) / 2) & !7
    }

    fn half(&self, which: u64) -> usize {
        CHECKPOINT_HEADER + (which as usize - 1) * self.half_size()
    }

    /// The most state bytes one checkpoint holds.
    pub fn capacity(&self) -> usize {
        self.half_size().saturating_sub(HALF_HEADER)
    }

    /// Starts the probation named `token`, with nothing published.
    pub fn start(&self, token: u64) {
        self.published().store(0, Ordering::Relaxed);
        self.magic().store(CHECKPOINT_MAGIC, Ordering::Relaxed);
        self.token().store(token, Ordering::Release);
    }

    /// Writer side: where the next checkpoint's bytes go (the half that is
    /// not published, which no reader looks at), and its capacity.
    pub fn spare(&self) -> (*mut u8, usize) {
        let next = if self.published().load(Ordering::Relaxed) == 1 { 2 } else { 1 };
        // SAFETY: the half lies inside the region (`half_size` fits twice).
        (unsafe { self.base.add(self.half(next) + HALF_HEADER) }, self.capacity())
    }

    /// Writer side: the spare half holds `len` bytes of state in `schema`,
    /// taken after `calls` calls; publish it. False, changing nothing, if
    /// `len` exceeds the capacity.
    pub fn publish(&self, schema: u32, len: usize, calls: u64) -> bool {
        if len > self.capacity() {
            return false;
        }
        let next = if self.published().load(Ordering::Relaxed) == 1 { 2 } else { 1 };
        let at = self.half(next);
        self.u64_at(at).store(schema as u64, Ordering::Relaxed);
        self.u64_at(at + 8).store(len as u64, Ordering::Relaxed);
        self.u64_at(at + 16).store(calls, Ordering::Relaxed);
        // Release: the half's bytes and header are visible to whoever sees
        // it published.
        self.published().store(next, Ordering::Release);
        true
    }

    /// Reader side: the checkpoint of probation `token`, `None` if none
    /// was published. Checks the half before handing it out.
    pub fn latest(&self, token: u64) -> Result<Option<Snapshot>, CheckpointError> {
        if self.magic().load(Ordering::Relaxed) != CHECKPOINT_MAGIC || self.token().load(Ordering::Acquire) != token {
            return Err(CheckpointError::WrongToken);
        }
        let which = match self.published().load(Ordering::Acquire) {
            0 => return Ok(None),
            w @ (1 | 2) => w,
            _ => return Err(CheckpointError::Corrupt),
        };
        let at = self.half(which);
        let schema = u32::try_from(self.u64_at(at).load(Ordering::Relaxed)).map_err(|_| CheckpointError::Corrupt)?;
        let len = usize::try_from(self.u64_at(at + 8).load(Ordering::Relaxed)).map_err(|_| CheckpointError::Corrupt)?;
        if len > self.capacity() {
            return Err(CheckpointError::Corrupt);
        }
        let calls = self.u64_at(at + 16).load(Ordering::Relaxed);
        // SAFETY: inside the region: the half's body, `len` checked above.
        let data = unsafe { self.base.add(at + HALF_HEADER) };
        Ok(Some(Snapshot { schema, calls, data, len }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;

    #[repr(align(64))]
    struct Region([u8; 512]);

    fn write(c: &Checkpoint, schema: u32, bytes: &[u8], calls: u64) -> bool {
        let (at, cap) = c.spare();
        if bytes.len() <= cap {
            // SAFETY: the spare half has room for `cap` bytes.
            unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), at, bytes.len()) };
        }
        c.publish(schema, bytes.len(), calls)
    }

    fn read(c: &Checkpoint, token: u64) -> Result<Option<(u32, u64, std::vec::Vec<u8>)>, CheckpointError> {
        Ok(c.latest(token)?.map(|s| {
            // SAFETY: `latest` checked the range against the region.
            let bytes = unsafe { core::slice::from_raw_parts(s.data, s.len) };
            (s.schema, s.calls, bytes.to_vec())
        }))
    }

    #[test]
    fn the_last_published_checkpoint_of_its_probation_is_read() {
        let mut r = Region([0; 512]);
        // SAFETY: the region outlives the checkpoint in this test.
        let c = unsafe { Checkpoint::new(r.0.as_mut_ptr(), r.0.len()) }.unwrap();
        assert_eq!(c.capacity(), (512 - 64) / 2 - 32);
        assert_eq!(read(&c, 1), Err(CheckpointError::WrongToken));
        c.start(7);
        assert_eq!(read(&c, 7), Ok(None), "nothing published yet");
        assert!(write(&c, 2, b"first", 1));
        assert!(write(&c, 1, b"second!", 2));
        assert_eq!(read(&c, 7), Ok(Some((1, 2, b"second!".to_vec()))));
        // A write that does not fit changes nothing; neither does one that
        // is never published (the writer died): the other half is read.
        let (at, cap) = c.spare();
        assert!(!c.publish(2, cap + 1, 3));
        // SAFETY: inside the spare half.
        unsafe { at.write(b'X') };
        assert_eq!(read(&c, 7), Ok(Some((1, 2, b"second!".to_vec()))));
        assert_eq!(read(&c, 8), Err(CheckpointError::WrongToken));
        c.start(8);
        assert_eq!(read(&c, 8), Ok(None), "a new probation starts empty");
    }

    #[test]
    fn a_corrupt_checkpoint_is_refused() {
        let mut r = Region([0; 512]);
        // SAFETY: as above.
        let c = unsafe { Checkpoint::new(r.0.as_mut_ptr(), r.0.len()) }.unwrap();
        c.start(1);
        assert!(write(&c, 2, b"state", 1));
        c.published().store(3, Ordering::Relaxed);
        assert_eq!(read(&c, 1), Err(CheckpointError::Corrupt));
        c.published().store(1, Ordering::Relaxed);
        c.u64_at(CHECKPOINT_HEADER + 8).store(10_000, Ordering::Relaxed);
        assert_eq!(read(&c, 1), Err(CheckpointError::Corrupt), "longer than a half");
        c.u64_at(CHECKPOINT_HEADER + 8).store(5, Ordering::Relaxed);
        c.u64_at(CHECKPOINT_HEADER).store(1 << 40, Ordering::Relaxed);
        assert_eq!(read(&c, 1), Err(CheckpointError::Corrupt), "no such schema");
        // SAFETY: a region too small for two halves.
        assert!(unsafe { Checkpoint::new(r.0.as_mut_ptr(), 64 + 64) }.is_none());
    }
}
