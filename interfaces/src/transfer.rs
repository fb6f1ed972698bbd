//! The transfer region: the state one slot exports and the other imports.
//!
//! The header names the schema, the export's token and how far the export
//! has got. The manager gives each quiescence a fresh token and the
//! importer must present the same one, so a stale or half-overwritten
//! export is refused without reading the state (a pass over the data would
//! cost as much as the copy the blackout budget allows). The state's own
//! structure is validated by the importing module.
//!
//! The export is *streamed*: the exporter publishes how many bytes are in
//! place as it writes them, and an importer that can stream reads up to
//! that mark while the rest is still being written. On a multicore machine
//! the two copies then overlap; on one core the exporter (which runs first)
//! has sealed the state before the importer looks. Every field is written
//! by one side and read by the other, so each is read once, through an
//! atomic, and checked against the region's size before use.
//!
//! **Invariant: whatever length an importer can observe, the state bytes
//! below it are visible to it.** The state bytes are plain memory, written
//! before the length that covers them is stored, so every store of a
//! length (`published`, by [`Transfer::publish`] and [`Transfer::seal`]) is
//! a Release store, and every load of it ([`Transfer::poll`]) an Acquire
//! load: a load that reads a length synchronises with the store that wrote
//! it, and the byte writes before that store happen before the importer's
//! reads. The status is stored with Release after the final length, so a
//! `SEALED` status read with Acquire also makes the final length visible.
//! (A Relaxed store of the final length, as `seal` once did, let an importer
//! still seeing `EXPORTING` read that length without the last bytes.)
//!
//! **Pre-copy** (`abi::features::PRECOPY`). The old slot exports the whole
//! state under one token while it still serves, and the new slot imports
//! it then. At the stop the old slot's export is *incremental*: it
//! rewrites in place only what changed, so the region again holds the
//! whole current state, and lists the ranges it rewrote after the state,
//! naming the earlier export (`base`). A new slot that imported that
//! export takes over only those ranges; any other imports the whole state,
//! which is there as after any export.
use crate::abi::StateRange;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

pub const TRANSFER_MAGIC: u32 = 0x5846_4552; // "XFER"

/// The header's layout. The fields are accessed as atomics, through
/// [`Transfer`]; the struct documents the layout and sizes it.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct TransferHeader {
    pub magic: u32,
    /// One of [`export_status`].
    pub status: u32,
    /// The token of the quiescence that produced this export.
    pub token: u64,
    /// Schema of the exported state.
    pub schema: u32,
    /// A pre-copy's final export: how many changed ranges
    /// ([`StateRange`]) follow the state, at its length rounded up to 8.
    pub changes: u32,
    /// Bytes in place so far (the final length once sealed).
    pub published: u64,
    /// A pre-copy's final export: the token of the earlier, whole export
    /// the changes are against; 0 for a whole export.
    pub base: u64,
}

/// Where an export stands.
pub mod export_status {
    /// The exporter is writing; `published` bytes are in place.
    pub const EXPORTING: u32 = 1;
    /// Complete: `published` is the state's length.
    pub const SEALED: u32 = 2;
    /// The export failed; nothing in the region is state.
    pub const FAILED: u32 = 3;
}

/// Where the state starts: the header padded to a cache line, so that a
/// page-aligned state is copied cache line to cache line (a state starting
/// right after a 24-byte header made every copy straddle lines).
pub const TRANSFER_HEADER: usize = 64;
const _: () = assert!(core::mem::size_of::<TransferHeader>() <= TRANSFER_HEADER);

/// FNV-1a, for checksums of small things (tests, service replies).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

/// What an importer sees of an export.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Still being written; this many bytes are in place.
    Exporting(usize),
    /// Complete, this long.
    Sealed(usize),
    /// The exporter gave up.
    Failed,
}

/// A transfer region, shared by the two slots of one instance.
pub struct Transfer {
    base: *mut u8,
    size: usize,
}

impl Transfer {
    /// # Safety
    /// `base..base + size` is a mapped transfer region, 8-byte aligned,
    /// that lives as long as the returned value. Only the two slots of one
    /// instance map it, and by the update protocol at most one of them
    /// writes it at a time (the exporter, between [`begin`](Self::begin)
    /// and [`seal`](Self::seal)/[`fail`](Self::fail)).
    pub unsafe fn new(base: *mut u8, size: usize) -> Option<Transfer> {
        (size > TRANSFER_HEADER && (base as usize).is_multiple_of(8)).then_some(Transfer { base, size })
    }

    /// Room for state after the header.
    pub fn capacity(&self) -> usize {
        self.size - TRANSFER_HEADER
    }

    /// The state bytes' start.
    pub fn body(&self) -> *mut u8 {
        // SAFETY: within the region (size > TRANSFER_HEADER).
        unsafe { self.base.add(TRANSFER_HEADER) }
    }

    fn u32_at(&self, offset: usize) -> &AtomicU32 {
        // SAFETY: offset is a field of the header, inside the region and
        // aligned (the region is 8-aligned, the fields naturally); shared
        // memory is accessed only atomically here.
        unsafe { AtomicU32::from_ptr(self.base.add(offset).cast()) }
    }

    fn u64_at(&self, offset: usize) -> &AtomicU64 {
        // SAFETY: as in `u32_at`.
        unsafe { AtomicU64::from_ptr(self.base.add(offset).cast()) }
    }

    fn magic(&self) -> &AtomicU32 {
        self.u32_at(0)
    }
    fn status(&self) -> &AtomicU32 {
        self.u32_at(4)
    }
    fn token(&self) -> &AtomicU64 {
        self.u64_at(8)
    }
    fn schema(&self) -> &AtomicU32 {
        self.u32_at(16)
    }
    fn changes(&self) -> &AtomicU32 {
        self.u32_at(20)
    }
    fn published(&self) -> &AtomicU64 {
        self.u64_at(24)
    }
    fn base(&self) -> &AtomicU64 {
        self.u64_at(32)
    }

    /// Where the list of changed ranges starts, after a state of `len`.
    fn changes_at(len: usize) -> usize {
        len.next_multiple_of(8)
    }

    /// The exporter starts an export for `token`: nothing is in place yet.
    /// The token is stored last, so an importer that finds its token also
    /// finds this export's status and schema.
    pub fn begin(&self, schema: u32, token: u64) {
        self.status().store(export_status::EXPORTING, Ordering::Relaxed);
        // Publishes no bytes; ordered before the token's Release store.
        self.published().store(0, Ordering::Relaxed);
        self.changes().store(0, Ordering::Relaxed);
        self.base().store(0, Ordering::Relaxed);
        self.schema().store(schema, Ordering::Relaxed);
        self.magic().store(TRANSFER_MAGIC, Ordering::Relaxed);
        self.token().store(token, Ordering::Release);
    }

    /// The first `n` state bytes are in place (their stores happen before
    /// an importer's read of this mark: Release, see the module's invariant).
    pub fn publish(&self, n: usize) {
        self.published().store(n.min(self.capacity()) as u64, Ordering::Release);
    }

    /// The export is complete and `len` bytes long.
    pub fn seal(&self, len: usize) -> Result<(), &'static str> {
        if len > self.capacity() {
            self.fail();
            return Err("state does not fit the transfer region");
        }
        // Release: this publishes the bytes written since the last
        // `publish`, to an importer that reads the length before it sees
        // the status (see the module's invariant).
        self.published().store(len as u64, Ordering::Release);
        self.status().store(export_status::SEALED, Ordering::Release);
        Ok(())
    }

    /// An incremental export is complete: `len` bytes of state, of which
    /// `changes` were rewritten since the export of token `base`. The list
    /// goes after the state; if it does not fit, the export is sealed as a
    /// whole one (an importer then takes all of it) and `false` returned.
    pub fn seal_changes(&self, len: usize, base: u64, changes: &[StateRange]) -> Result<bool, &'static str> {
        let at = Self::changes_at(len);
        let listed = at
            .checked_add(core::mem::size_of_val(changes))
            .is_some_and(|end| end <= self.capacity() && changes.len() <= u32::MAX as usize);
        if listed {
            // SAFETY: `at..at + size_of_val(changes)` is inside the body
            // (checked above) and 8-aligned (the body is); the exporter is
            // this region's one writer until the seal below publishes it.
            unsafe { core::ptr::copy_nonoverlapping(changes.as_ptr(), self.body().add(at).cast(), changes.len()) };
            // Published by `seal`'s Release stores, before the status.
            self.changes().store(changes.len() as u32, Ordering::Relaxed);
            self.base().store(base, Ordering::Relaxed);
        }
        self.seal(len)?;
        Ok(listed)
    }

    /// A sealed export's changes against an earlier one: `Some((base,
    /// n))` where it lists `n` ranges against the export of token `base`,
    /// `None` for a whole export. Read only after [`poll`](Self::poll) saw
    /// it sealed (whose Acquire load of the status makes these visible).
    pub fn changes_against(&self) -> Option<(u64, usize)> {
        let base = self.base().load(Ordering::Relaxed);
        (base != 0).then(|| (base, self.changes().load(Ordering::Relaxed) as usize))
    }

    /// The `i`th of the `n` changed ranges of a sealed state of `len`
    /// bytes, if the list lies in the region and the range in the state.
    pub fn change(&self, len: usize, n: usize, i: usize) -> Option<core::ops::Range<usize>> {
        let at = Self::changes_at(len);
        let end = n.checked_mul(core::mem::size_of::<StateRange>())?.checked_add(at)?;
        if i >= n || end > self.capacity() {
            return None;
        }
        // SAFETY: entry `i` lies inside the body (checked above) and is
        // 8-aligned; the exporter sealed the region and writes no more.
        // Any bit pattern is a `StateRange`; it is checked before use.
        let r = unsafe { self.body().add(at).cast::<StateRange>().add(i).read() };
        r.within(len)
    }

    pub fn fail(&self) {
        self.status().store(export_status::FAILED, Ordering::Release);
    }

    /// The export this importer was told of (`token`): its schema and how
    /// far it has got. Refuses another update's export, and a length the
    /// region cannot hold.
    pub fn poll(&self, token: u64) -> Result<(u32, Progress), &'static str> {
        if self.magic().load(Ordering::Relaxed) != TRANSFER_MAGIC {
            return Err("transfer region holds no exported state");
        }
        if self.token().load(Ordering::Acquire) != token {
            return Err("transfer region holds another export than this update's");
        }
        let schema = self.schema().load(Ordering::Relaxed);
        // Status before the mark: a SEALED status makes the final length
        // visible (seal stores it first). Both Acquire: whatever length
        // this reads, the bytes below it are visible (the module's
        // invariant).
        let status = self.status().load(Ordering::Acquire);
        let published = self.published().load(Ordering::Acquire);
        let n = usize::try_from(published).ok().filter(|&n| n <= self.capacity());
        let progress = match (status, n) {
            (_, None) => return Err("exported state is longer than the transfer region"),
            (export_status::EXPORTING, Some(n)) => Progress::Exporting(n),
            (export_status::SEALED, Some(n)) => Progress::Sealed(n),
            (export_status::FAILED, _) => Progress::Failed,
            _ => return Err("transfer region header is corrupt"),
        };
        Ok((schema, progress))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[repr(align(64))]
    struct Region([u8; 256]);

    fn region(r: &mut Region) -> Transfer {
        unsafe { Transfer::new(r.0.as_mut_ptr(), r.0.len()) }.unwrap()
    }

    #[test]
    fn an_export_streams_then_seals_and_stale_exports_are_refused() {
        let mut r = Region([0; 256]);
        let t = region(&mut r);
        assert_eq!(t.poll(7), Err("transfer region holds no exported state"));
        t.begin(2, 77);
        assert_eq!(t.poll(77), Ok((2, Progress::Exporting(0))));
        t.publish(100);
        assert_eq!(t.poll(77), Ok((2, Progress::Exporting(100))));
        assert!(t.poll(76).is_err(), "another update's export");
        t.seal(150).unwrap();
        assert_eq!(t.poll(77), Ok((2, Progress::Sealed(150))));
        assert!(t.seal(t.capacity() + 1).is_err());
        assert_eq!(t.poll(77), Ok((2, Progress::Failed)), "an oversized seal fails the export");
    }

    /// The exporter writes the state in chunks, publishing all but the last
    /// before it seals; the importer polls meanwhile and checks every byte
    /// below each length it observes. Each round writes a different
    /// pattern, so a byte not yet visible shows. On x86 the hardware keeps
    /// stores in order, so the check bites on weakly ordered machines
    /// (aarch64) and under Miri, whose data-race detector and weak-memory
    /// emulation reject the read of a byte that no Acquire load ordered
    /// after its write (`cargo +nightly miri test -p interfaces --lib
    /// published_bytes`: it failed with a Relaxed store in `seal`).
    #[test]
    fn published_bytes_are_visible_below_every_length_an_importer_sees() {
        extern crate std;
        use core::sync::atomic::AtomicU32;
        use std::{boxed::Box, sync::Arc, thread};

        const CAP: usize = 192;
        const CHUNK: usize = 48;
        let rounds: u32 = if cfg!(miri) { 40 } else { 2_000 };
        #[repr(align(64))]
        struct Mem([u8; TRANSFER_HEADER + CAP]);
        /// The region's address, handed to the importer's thread.
        #[derive(Clone, Copy)]
        struct Base(*mut u8);
        // SAFETY: the region outlives the importer (joined below); its
        // shared use is what the test is about.
        unsafe impl Send for Base {}
        let mut mem = Box::new(Mem([0; TRANSFER_HEADER + CAP]));
        let base = Base(mem.0.as_mut_ptr());
        let pattern = |round: u32, i: usize| (round as usize * 31 + i) as u8;
        // The importer's "round done" (Release/Acquire): the exporter
        // writes the next round only after the importer has read this one.
        let done = Arc::new(AtomicU32::new(0));
        let d = done.clone();
        let importer = thread::spawn(move || {
            let base = base;
            // SAFETY: the region outlives this thread (joined below).
            let t = unsafe { Transfer::new(base.0, TRANSFER_HEADER + CAP) }.unwrap();
            for round in 1..=rounds {
                let token = round as u64;
                loop {
                    let Ok((_, progress)) = t.poll(token) else { continue };
                    let (n, sealed) = match progress {
                        Progress::Exporting(n) => (n, false),
                        Progress::Sealed(n) => (n, true),
                        Progress::Failed => panic!("round {round}: failed"),
                    };
                    for i in 0..n {
                        // SAFETY: inside the region; below a length this
                        // thread observed (the invariant under test).
                        let b = unsafe { t.body().add(i).read() };
                        assert_eq!(b, pattern(round, i), "round {round}: byte {i} of {n} published");
                    }
                    if sealed {
                        assert_eq!(n, CAP);
                        break;
                    }
                    thread::yield_now();
                }
                d.store(round, Ordering::Release);
            }
        });
        // SAFETY: as above.
        let t = unsafe { Transfer::new(base.0, TRANSFER_HEADER + CAP) }.unwrap();
        for round in 1..=rounds {
            while done.load(Ordering::Acquire) != round - 1 {
                thread::yield_now();
            }
            t.begin(1, round as u64);
            for chunk in 0..CAP / CHUNK {
                for i in chunk * CHUNK..(chunk + 1) * CHUNK {
                    // SAFETY: inside the region; not yet published, so the
                    // importer does not read it.
                    unsafe { t.body().add(i).write(pattern(round, i)) };
                }
                // Every chunk but the last is published; seal publishes it.
                if chunk + 1 < CAP / CHUNK {
                    t.publish((chunk + 1) * CHUNK);
                }
            }
            t.seal(CAP).unwrap();
        }
        importer.join().unwrap();
        drop(mem);
    }

    #[test]
    fn an_incremental_export_lists_its_changes_after_the_state() {
        let mut r = Region([0; 256]);
        let t = region(&mut r);
        t.begin(1, 8);
        t.seal(100).unwrap();
        assert_eq!(t.changes_against(), None, "a whole export");
        t.begin(1, 9);
        let changes = [StateRange { start: 0, len: 4 }, StateRange { start: 96, len: 5 }];
        assert_eq!(t.seal_changes(101, 8, &changes), Ok(true));
        assert_eq!(t.poll(9), Ok((1, Progress::Sealed(101))));
        assert_eq!(t.changes_against(), Some((8, 2)));
        assert_eq!(t.change(101, 2, 0), Some(0..4));
        assert_eq!(t.change(101, 2, 1), Some(96..101));
        assert_eq!(t.change(101, 2, 2), None, "past the list");
        assert_eq!(t.change(100, 2, 1), None, "a range past the state is refused");
        assert_eq!(t.change(101, 1 << 60, 0), None, "a list past the region is refused");
        // No room for the list after a state that fills the region: sealed
        // whole, and the importer takes all of it.
        t.begin(1, 10);
        assert_eq!(t.seal_changes(t.capacity(), 9, &changes), Ok(false));
        assert_eq!(t.changes_against(), None);
        assert_eq!(t.poll(10), Ok((1, Progress::Sealed(t.capacity()))));
    }

    #[test]
    fn a_corrupt_header_is_refused() {
        let mut r = Region([0; 256]);
        let t = region(&mut r);
        t.begin(1, 5);
        // A peer writing a length beyond the region, or a status no one
        // defined, is caught before any state byte is read.
        t.published().store(1000, Ordering::Relaxed);
        assert!(t.poll(5).is_err());
        t.publish(3);
        t.status().store(9, Ordering::Relaxed);
        assert_eq!(t.poll(5), Err("transfer region header is corrupt"));
        assert!(unsafe { Transfer::new(r.0.as_mut_ptr(), TRANSFER_HEADER) }.is_none(), "no room for state");
    }
}
