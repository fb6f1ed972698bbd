//! The probation journal: the calls a new version completed since its
//! commit, so that the old version can take them over if the new one
//! fails while on probation.
//!
//! A region shared by the two slots of one instance. During probation the
//! new slot appends each protected call its module completed (the request,
//! as it arrived) *before* the reply leaves: it stages the entry before the
//! module runs and commits it when the module returns. A call in flight
//! when the slot faults or is stopped was never journaled (staged bytes past
//! the committed length are no entry) and its caller gets an error,
//! so its retry runs exactly once, in the old version. On a rollback the
//! old slot replays the entries on top of the state it exported, which it
//! kept untouched, and ends in the state the new version had.
//!
//! Layout: a 64-byte header (magic, the probation's token, the committed
//! length in bytes, written with Release after the entry's bytes), then
//! entries `{channel: u32, count: u32, label: u64, words: [u64; count]}`.
//! The reader trusts nothing: the token must be its probation's, and every
//! entry is bounds-checked against the committed length.
use crate::message::{Message, MSG_WORDS};
use core::sync::atomic::{AtomicU64, Ordering};

pub const JOURNAL_MAGIC: u64 = 0x4a52_4e4c_0000_0001; // "JRNL" v1
pub const JOURNAL_HEADER: usize = 64;
const ENTRY_HEADER: usize = 16;

/// A journal region.
pub struct Journal {
    base: *mut u8,
    size: usize,
}

/// An entry written but not yet committed (see [`Journal::stage`]).
#[must_use]
pub struct StagedEntry {
    /// The committed length once it is committed; `None`: it did not fit.
    end: Option<u64>,
}

impl StagedEntry {
    /// An entry that was not written: its commit keeps nothing.
    pub const NOT_KEPT: StagedEntry = StagedEntry { end: None };
}

/// Why a journal cannot be replayed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JournalError {
    /// It holds another probation's entries (or none).
    WrongToken,
    /// An entry runs past the committed length or claims too many words.
    Corrupt,
}

impl core::fmt::Display for JournalError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            JournalError::WrongToken => "the journal holds another probation's calls",
            JournalError::Corrupt => "the journal is corrupt",
        })
    }
}

impl Journal {
    /// # Safety
    /// `base..base + size` is a mapped journal region, 8-byte aligned, that
    /// lives as long as the returned value. Only the two slots of one
    /// instance map it; one of them writes it at a time (the slot on
    /// probation), and the other reads it only once that one has stopped.
    pub unsafe fn new(base: *mut u8, size: usize) -> Option<Journal> {
        (size > JOURNAL_HEADER && (base as usize).is_multiple_of(8)).then_some(Journal { base, size })
    }

    fn u64_at(&self, offset: usize) -> &AtomicU64 {
        // SAFETY: a header field: inside the region and 8-aligned; header
        // fields are accessed only atomically.
        unsafe { AtomicU64::from_ptr(self.base.add(offset).cast()) }
    }
    fn magic(&self) -> &AtomicU64 {
        self.u64_at(0)
    }
    fn token(&self) -> &AtomicU64 {
        self.u64_at(8)
    }
    fn committed(&self) -> &AtomicU64 {
        self.u64_at(16)
    }

    fn capacity(&self) -> usize {
        self.size - JOURNAL_HEADER
    }

    /// Starts an empty journal for the probation named `token`.
    pub fn start(&self, token: u64) {
        self.committed().store(0, Ordering::Relaxed);
        self.magic().store(JOURNAL_MAGIC, Ordering::Relaxed);
        self.token().store(token, Ordering::Release);
    }

    /// Writer side, first half: writes `request` as the next entry, past
    /// the committed length, where no reader looks. It is not part of the
    /// journal until [`Journal::commit`]: the slot stages a call's request
    /// before the module runs (the module writes its reply over the
    /// message) and commits it once the call completed, so a call that
    /// faults or is stopped leaves no entry.
    pub fn stage(&self, channel: u32, request: &Message) -> StagedEntry {
        let n = (request.count as usize).min(MSG_WORDS);
        let at = self.committed().load(Ordering::Relaxed) as usize;
        let len = ENTRY_HEADER + 8 * n;
        if at.checked_add(len).is_none_or(|end| end > self.capacity()) {
            return StagedEntry::NOT_KEPT;
        }
        let head = [channel as u64 | (n as u64) << 32, request.label];
        // SAFETY: `at..at + len` lies inside the body (checked above) and
        // beyond the committed length, where no reader looks; the body is
        // 8-aligned and entries are whole words.
        unsafe {
            let dst = self.base.add(JOURNAL_HEADER + at).cast::<u64>();
            core::ptr::copy_nonoverlapping(head.as_ptr(), dst, 2);
            core::ptr::copy_nonoverlapping(request.words.as_ptr(), dst.add(2), n);
        }
        StagedEntry { end: Some((at + len) as u64) }
    }

    /// Writer side, second half: makes the staged entry part of the
    /// journal. Returns false, changing nothing, when it did not fit.
    /// Nothing else may be staged or started in between.
    pub fn commit(&self, entry: StagedEntry) -> bool {
        let Some(end) = entry.end else { return false };
        // Release: the entry's bytes are visible to whoever sees the length.
        self.committed().store(end, Ordering::Release);
        true
    }

    /// `stage` then `commit`, for the tests: the shell stages before the
    /// module runs and commits after.
    #[cfg(test)]
    fn append(&self, channel: u32, request: &Message) -> bool {
        self.commit(self.stage(channel, request))
    }

    /// Reader side: calls `f` with each entry of probation `token`, in
    /// order. Checks every entry before handing it out.
    pub fn replay(&self, token: u64, mut f: impl FnMut(u32, &Message)) -> Result<usize, JournalError> {
        if self.magic().load(Ordering::Relaxed) != JOURNAL_MAGIC || self.token().load(Ordering::Acquire) != token {
            return Err(JournalError::WrongToken);
        }
        let end = usize::try_from(self.committed().load(Ordering::Acquire)).map_err(|_| JournalError::Corrupt)?;
        if end > self.capacity() {
            return Err(JournalError::Corrupt);
        }
        let (mut at, mut count) = (0usize, 0usize);
        let mut msg = Message::default();
        while at < end {
            if end - at < ENTRY_HEADER {
                return Err(JournalError::Corrupt);
            }
            let mut head = [0u64; 2];
            // SAFETY: below the committed length (Acquire above), inside
            // the body, 8-aligned.
            unsafe {
                let src = self.base.add(JOURNAL_HEADER + at).cast::<u64>();
                core::ptr::copy_nonoverlapping(src, head.as_mut_ptr(), 2);
            }
            let n = (head[0] >> 32) as usize;
            if n > MSG_WORDS || end - at - ENTRY_HEADER < 8 * n {
                return Err(JournalError::Corrupt);
            }
            msg.label = head[1];
            msg.count = n as u32;
            // SAFETY: as above; `n` words lie below the committed length.
            unsafe {
                let src = self.base.add(JOURNAL_HEADER + at + ENTRY_HEADER).cast::<u64>();
                core::ptr::copy_nonoverlapping(src, msg.words.as_mut_ptr(), n);
            }
            f(head[0] as u32, &msg);
            at += ENTRY_HEADER + 8 * n;
            count += 1;
        }
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::vec::Vec;

    #[repr(align(64))]
    struct Region([u8; 512]);

    /// A journal over `r`, which each test keeps alive as long as it.
    fn journal_in(r: &mut Region) -> Journal {
        // SAFETY: 512 bytes, 64-aligned; the caller keeps `r` alive and
        // untouched while the journal is used.
        unsafe { Journal::new(r.0.as_mut_ptr(), r.0.len()) }.unwrap()
    }

    #[test]
    fn entries_replay_in_order_under_their_token_only() {
        let mut r = Region([0; 512]);
        let j = journal_in(&mut r);
        assert_eq!(j.replay(1, |_, _| {}), Err(JournalError::WrongToken));
        j.start(9);
        assert!(j.append(3, &Message::with_words(10, &[1, 2])));
        assert!(j.append(4, &Message::with_words(11, &[])));
        let mut seen = Vec::new();
        assert_eq!(j.replay(9, |ch, m| seen.push((ch, m.label, m.used_words().to_vec()))), Ok(2));
        assert_eq!(seen, [(3, 10, std::vec![1, 2]), (4, 11, std::vec![])]);
        assert_eq!(j.replay(8, |_, _| {}), Err(JournalError::WrongToken));
        // Full: an entry that does not fit changes nothing.
        let big = Message::with_words(12, &[7; 64]);
        assert!(!j.append(5, &big));
        assert_eq!(j.replay(9, |_, _| {}), Ok(2));
    }

    #[test]
    fn a_staged_entry_is_invisible_until_committed() {
        let mut r = Region([0; 512]);
        let j = journal_in(&mut r);
        j.start(2);
        assert!(j.append(1, &Message::with_words(7, &[1])));
        // Staged but never committed (the call faulted): not replayed, and
        // the next stage writes over it.
        let _ = j.stage(2, &Message::with_words(8, &[2, 2]));
        assert_eq!(j.replay(2, |_, _| {}), Ok(1));
        let staged = j.stage(3, &Message::with_words(9, &[3]));
        assert_eq!(j.replay(2, |_, _| {}), Ok(1));
        assert!(j.commit(staged));
        let mut seen = Vec::new();
        assert_eq!(j.replay(2, |ch, m| seen.push((ch, m.label, m.used_words().to_vec()))), Ok(2));
        assert_eq!(seen, [(1, 7, std::vec![1]), (3, 9, std::vec![3])]);
        // One that does not fit commits nothing.
        assert!(!j.commit(j.stage(4, &Message::with_words(10, &[0; 64]))));
        assert_eq!(j.replay(2, |_, _| {}), Ok(2));
    }

    #[test]
    fn a_corrupt_journal_is_refused_before_any_entry_is_used() {
        let mut r = Region([0; 512]);
        let j = journal_in(&mut r);
        j.start(1);
        assert!(j.append(0, &Message::with_words(1, &[5])));
        j.committed().store(4000, Ordering::Relaxed);
        assert_eq!(j.replay(1, |_, _| {}), Err(JournalError::Corrupt));
        j.committed().store(24, Ordering::Relaxed);
        // The first entry claims 1 word; make it claim 60.
        j.u64_at(JOURNAL_HEADER).store(60 << 32, Ordering::Relaxed);
        assert_eq!(j.replay(1, |_, _| {}), Err(JournalError::Corrupt));
    }
}
