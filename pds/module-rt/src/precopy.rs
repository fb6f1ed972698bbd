//! Pre-copy, module side (`abi::features::PRECOPY`): the old version
//! exports its whole state while it still serves, and at the stop writes
//! only what changed since; the new version imports the whole state early
//! and at the stop only the changed ranges. A module opts in with
//! `Module::PRECOPY` and implements `Module::export_changes` and
//! `Module::import_changes`; a state kept as bytes at fixed places (an
//! array, a table of fixed records) marks what it writes in a
//! [`DirtyPages`] and lets it write the changes.
use interfaces::abi::{status, StateRange};

/// The changed ranges an incremental export lists, in the shell's buffer.
pub struct ChangeList<'a> {
    ranges: &'a mut [StateRange],
    n: usize,
}

impl<'a> ChangeList<'a> {
    pub fn new(ranges: &'a mut [StateRange]) -> Self {
        ChangeList { ranges, n: 0 }
    }

    /// Adds `start..start + len`, merged into the last range if it
    /// follows on; `NO_SPACE` when the list is full (the shell then
    /// exports the whole state).
    pub fn push(&mut self, start: usize, len: usize) -> Result<(), i32> {
        if len == 0 {
            return Ok(());
        }
        if let Some(last) = self.n.checked_sub(1).map(|i| &mut self.ranges[i]) {
            if last.start + last.len == start as u64 {
                last.len += len as u64;
                return Ok(());
            }
        }
        let slot = self.ranges.get_mut(self.n).ok_or(status::NO_SPACE)?;
        *slot = StateRange { start: start as u64, len: len as u64 };
        self.n += 1;
        Ok(())
    }

    /// The ranges listed so far.
    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }
}

/// Which pages (of [`DirtyPages::PAGE`] bytes) of a state of up to `WORDS
/// * 64` pages changed since its last export.
pub struct DirtyPages<const WORDS: usize> {
    bits: [u64; WORDS],
}

impl<const WORDS: usize> Default for DirtyPages<WORDS> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const WORDS: usize> DirtyPages<WORDS> {
    pub const PAGE: usize = 4096;
    /// The largest state it can track.
    pub const SPAN: usize = WORDS * 64 * Self::PAGE;

    pub const fn new() -> Self {
        DirtyPages { bits: [0; WORDS] }
    }

    /// Bytes `start..start + len` were written. A range past the span is
    /// marked up to its end: the state is never larger.
    pub fn mark(&mut self, start: usize, len: usize) {
        if len == 0 {
            return;
        }
        let last = (start.saturating_add(len - 1) / Self::PAGE).min(WORDS * 64 - 1);
        for page in start / Self::PAGE..=last {
            self.bits[page / 64] |= 1 << (page % 64);
        }
    }

    /// Everything is clean: the export now matches the state.
    pub fn clear(&mut self) {
        self.bits = [0; WORDS];
    }

    fn dirty(&self, page: usize) -> bool {
        self.bits[page / 64] & (1 << (page % 64)) != 0
    }

    /// An incremental export of a state kept as the bytes `state`, into
    /// `out`, which holds the last export (of `*len` bytes): copies every
    /// dirty page, and everything past the old length, lists each copied
    /// run in `changes`, sets `*len`, and starts afresh.
    pub fn export(
        &mut self,
        state: &[u8],
        out: &mut [u8],
        len: &mut usize,
        changes: &mut ChangeList<'_>,
    ) -> Result<(), i32> {
        if state.len() > out.len() || state.len() > Self::SPAN {
            return Err(status::NO_SPACE);
        }
        let old = (*len).min(state.len());
        self.mark(old, state.len() - old);
        let mut page = 0;
        while page * Self::PAGE < state.len() {
            if !self.dirty(page) {
                page += 1;
                continue;
            }
            let start = page * Self::PAGE;
            while page * Self::PAGE < state.len() && self.dirty(page) {
                page += 1;
            }
            let end = (page * Self::PAGE).min(state.len());
            out[start..end].copy_from_slice(&state[start..end]);
            changes.push(start, end - start)?;
        }
        *len = state.len();
        self.clear();
        Ok(())
    }
}

/// An incremental import into a state kept as bytes: copies each changed
/// range of `data` (every one within `data.len()`, as the shell checked)
/// into `state`; `BAD_STATE` if the state cannot hold `data`.
pub fn import_ranges(state: &mut [u8], data: &[u8], changes: &[StateRange]) -> Result<(), i32> {
    if data.len() > state.len() {
        return Err(status::BAD_STATE);
    }
    for c in changes {
        let r = c.within(data.len()).ok_or(status::BAD_STATE)?;
        state[r.clone()].copy_from_slice(&data[r]);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec;

    #[test]
    fn only_dirty_pages_and_growth_are_copied_and_listed() {
        const P: usize = DirtyPages::<1>::PAGE;
        let mut dirty = DirtyPages::<1>::new();
        let mut state = vec![1u8; 10 * P];
        let mut out = vec![1u8; 12 * P];
        let mut ranges = [StateRange::default(); 8];
        // Pages 2 and 3 (one run) and 7 change, and the state grows by
        // one page and a half.
        state[2 * P + 5] = 9;
        state[3 * P] = 9;
        state[7 * P + 1] = 9;
        dirty.mark(2 * P + 5, P);
        dirty.mark(7 * P + 1, 1);
        state.resize(11 * P + P / 2, 4);
        let mut len = 10 * P;
        let mut changes = ChangeList::new(&mut ranges);
        dirty.export(&state, &mut out, &mut len, &mut changes).unwrap();
        let n = changes.len();
        assert_eq!(len, state.len());
        assert_eq!(&out[..len], &state[..]);
        let listed: std::vec::Vec<_> = ranges[..n].iter().map(|r| (r.start as usize, r.len as usize)).collect();
        assert_eq!(listed, [(2 * P, 2 * P), (7 * P, P), (10 * P, P + P / 2)]);
        // The new side, which had the old image, takes the ranges over.
        let mut copy = vec![1u8; 12 * P];
        import_ranges(&mut copy, &out[..len], &ranges[..n]).unwrap();
        assert_eq!(&copy[..len], &state[..]);
        // Nothing changed since: nothing is listed.
        let mut ranges = [StateRange::default(); 1];
        let mut changes = ChangeList::new(&mut ranges);
        dirty.export(&state, &mut out, &mut len, &mut changes).unwrap();
        assert!(changes.is_empty());
    }

    #[test]
    fn a_full_list_or_a_range_outside_is_refused() {
        const P: usize = DirtyPages::<1>::PAGE;
        let mut dirty = DirtyPages::<1>::new();
        let state = vec![0u8; 8 * P];
        let mut out = vec![0u8; 8 * P];
        dirty.mark(0, 1);
        dirty.mark(2 * P, 1);
        dirty.mark(4 * P, 1);
        let mut ranges = [StateRange::default(); 2];
        let mut len = 8 * P;
        assert_eq!(dirty.export(&state, &mut out, &mut len, &mut ChangeList::new(&mut ranges)), Err(status::NO_SPACE));
        let bad = [StateRange { start: 7 * P as u64, len: 2 * P as u64 }];
        assert_eq!(import_ranges(&mut vec![0u8; 8 * P], &state, &bad), Err(status::BAD_STATE));
        let huge = [StateRange { start: u64::MAX, len: 2 }];
        assert_eq!(import_ranges(&mut vec![0u8; 8 * P], &state, &huge), Err(status::BAD_STATE));
    }
}
