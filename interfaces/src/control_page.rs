//! The control page: how the update manager commands a slot without ever
//! waiting on it.
//!
//! One page per slot, mapped read/write in the manager and in the slot. The
//! manager never makes a protected call to a slot (a call into a module
//! that spins would block it for ever, and on seL4 a parent blocked in a
//! call cannot even receive its child's fault). Instead:
//!
//! - **Command**: the manager writes a [`Message`] into `command`, then
//!   stores its sequence number (Release) and notifies the slot. The shell
//!   runs it between two events and writes the reply into `reply`, then
//!   stores the same sequence number there (Release) and notifies the
//!   manager. The manager waits for that with a deadline; a slot that does
//!   not answer in time is stopped.
//! - **Progress**: the shell counts the events it begins and ends. A slot
//!   whose count of begun events has not moved while one is unfinished is
//!   inside one event: past the watchdog's deadline, it hangs.
//! - **Counters** for `status` (state, version, calls), written by the
//!   slot, read by the manager.
//! - **Open**: at an update's commit the manager stores the token of the
//!   import it committed, with no wake-up. A new slot that holds that
//!   import serves the first call reaching it from then on, without
//!   waiting for its `ACTIVATE`: the blackout ends at the store, not one
//!   wake-up later.
//!
//! Everything here is written by one side and read by the other through
//! atomics; what the slot writes is untrusted and the manager validates it
//! (a reply's sequence number must be the one it sent; the label and word
//! count are checked; the text is checked UTF-8).
use crate::message::{Message, MSG_WORDS};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

pub const CONTROL_MAGIC: u64 = 0x4354_524c_5047_3031; // "CTRLPG01"
/// The page's size (one page on both backends).
pub const CONTROL_PAGE_SIZE: usize = 4096;

/// A message slot written by one side, read by the other.
#[repr(C, align(64))]
pub struct Mailbox {
    /// The sequence number of the message below; 0 = none yet. Stored
    /// last, with Release: a reader that loads it with Acquire sees the
    /// whole message.
    seq: AtomicU64,
    label: AtomicU64,
    count: AtomicU32,
    _pad: AtomicU32,
    words: [AtomicU64; MSG_WORDS],
}

impl Mailbox {
    /// Writes `msg` and publishes it under `seq`.
    pub fn post(&self, seq: u64, msg: &Message) {
        let n = (msg.count as usize).min(MSG_WORDS);
        for (dst, &w) in self.words.iter().zip(&msg.words[..n]) {
            dst.store(w, Ordering::Relaxed);
        }
        self.label.store(msg.label, Ordering::Relaxed);
        self.count.store(n as u32, Ordering::Relaxed);
        self.seq.store(seq, Ordering::Release);
    }

    /// The sequence number last published (Acquire: the message is visible).
    pub fn seq(&self) -> u64 {
        self.seq.load(Ordering::Acquire)
    }

    /// Reads the message published under `seq`, if that is still the one
    /// in place before and after the read (a peer that rewrites it while
    /// we read gets `None`). The count is clamped.
    pub fn read(&self, seq: u64) -> Option<Message> {
        if self.seq() != seq {
            return None;
        }
        let mut m = Message::new(self.label.load(Ordering::Relaxed), 0);
        let n = (self.count.load(Ordering::Relaxed) as usize).min(MSG_WORDS);
        m.count = n as u32;
        for (dst, src) in m.words[..n].iter_mut().zip(&self.words) {
            *dst = src.load(Ordering::Relaxed);
        }
        // Acquire fence: the loads above happen before the re-check.
        core::sync::atomic::fence(Ordering::Acquire);
        (self.seq.load(Ordering::Relaxed) == seq).then_some(m)
    }

    /// Forgets any message (only while the peer cannot run).
    pub fn clear(&self) {
        self.seq.store(0, Ordering::Release);
    }
}

/// Counters the slot publishes (Relaxed: each is a value on its own).
#[repr(C, align(64))]
pub struct SlotCounters {
    /// Events (notifications, calls, commands) the shell started.
    pub events_begun: AtomicU64,
    /// Events it finished. `begun != ended`: it is inside one now.
    pub events_ended: AtomicU64,
    /// A [`crate::control::SlotState`] as a word.
    pub state: AtomicU64,
    pub module_version: AtomicU64,
    pub calls_served: AtomicU64,
    pub calls_bounced: AtomicU64,
    /// Calls journaled during the current probation.
    pub journaled: AtomicU64,
    /// Nonzero once a call could not be journaled (the journal was full, or
    /// the slot has none): from then on this version cannot be rolled back
    /// without losing calls, so its probation is over.
    pub journal_overflow: AtomicU64,
    /// Bumped as a long event moves on (state bytes published by an
    /// export, or received by an import; a protected call of the module
    /// returned, e.g. a block request of the fs slot): the watchdog's sign
    /// that a slot inside one event for long is slow, not stuck.
    pub progress: AtomicU64,
    /// Nonzero while the module waits in a protected call to another PD
    /// (the fs slot on its block driver): that time is the callee's, not
    /// the slot's, so the watchdog's hang rule does not run on it (only
    /// the limit on one event's length does).
    pub calling_out: AtomicU64,
}

#[repr(C)]
pub struct ControlPage {
    pub magic: AtomicU64,
    /// Bumped by the shell each time it (re)starts: a slot restarted
    /// behind the manager's back shows here.
    pub shell_starts: AtomicU64,
    pub command: Mailbox,
    pub reply: Mailbox,
    pub counters: SlotCounters,
    /// The token of the import the manager committed (0: none). Written by
    /// the manager only (Release), after the capability map's store.
    open: AtomicU64,
}

const _: () = assert!(core::mem::size_of::<ControlPage>() <= CONTROL_PAGE_SIZE);

impl ControlPage {
    /// The control page at `base`.
    ///
    /// # Safety
    /// `base` is mapped read/write for at least `size` bytes for as long as
    /// the reference lives, aligned to 64 bytes; every access goes through
    /// atomics, so a peer writing concurrently is a race on values, never
    /// undefined behaviour.
    pub unsafe fn at(base: *mut u8, size: usize) -> Option<&'static ControlPage> {
        (size >= core::mem::size_of::<ControlPage>() && base.align_offset(64) == 0)
            // SAFETY: as the caller promised; all fields are atomics.
            .then(|| unsafe { &*(base as *const ControlPage) })
    }

    /// Manager side, with the slot stopped: an empty page.
    pub fn reset(&self) {
        self.command.clear();
        self.reply.clear();
        let c = &self.counters;
        for a in [
            &c.events_begun,
            &c.events_ended,
            &c.state,
            &c.module_version,
            &c.calls_served,
            &c.calls_bounced,
            &c.journaled,
            &c.journal_overflow,
            &c.progress,
            &c.calling_out,
        ] {
            a.store(0, Ordering::Relaxed);
        }
        self.open.store(0, Ordering::Relaxed);
        self.magic.store(CONTROL_MAGIC, Ordering::Release);
    }

    /// Manager side, at the commit: the slot may serve the state of import
    /// `token` from now on. Release: the commit's stores before it (the
    /// capability map, the probation's start) are visible to a slot that
    /// sees the token.
    pub fn open(&self, token: u64) {
        self.open.store(token, Ordering::Release);
    }

    /// Slot side: the manager committed import `token` (never token 0).
    pub fn is_open(&self, token: u64) -> bool {
        token != 0 && self.open.load(Ordering::Acquire) == token
    }

    /// Slot side: an event begins (Relaxed; the manager only compares).
    #[inline]
    pub fn begin_event(&self) -> u64 {
        let c = &self.counters.events_begun;
        let n = c.load(Ordering::Relaxed) + 1;
        c.store(n, Ordering::Relaxed);
        n
    }

    /// Slot side: the event ends. Release: whatever the event published
    /// (a journal entry) is visible to a manager that sees the count.
    #[inline]
    pub fn end_event(&self, n: u64) {
        self.counters.events_ended.store(n, Ordering::Release);
    }

    /// Slot side: the event in progress moved on (Relaxed; the manager only
    /// compares).
    #[inline]
    pub fn note_progress(&self) {
        let c = &self.counters.progress;
        c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
    }

    /// Slot side: the module starts (`true`) or ends (`false`) waiting in
    /// a protected call to another PD; a call that returned is progress.
    #[inline]
    pub fn calling_out(&self, calling: bool) {
        self.counters.calling_out.store(calling as u64, Ordering::Relaxed);
        if !calling {
            self.note_progress();
        }
    }

    /// Manager side: the slot's module waits in a call to another PD.
    pub fn is_calling_out(&self) -> bool {
        self.counters.calling_out.load(Ordering::Relaxed) != 0
    }

    /// Manager side: `Some(n)` while the slot is inside event `n`.
    pub fn busy_in(&self) -> Option<u64> {
        let ended = self.counters.events_ended.load(Ordering::Acquire);
        let begun = self.counters.events_begun.load(Ordering::Relaxed);
        (begun != ended).then_some(begun)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;

    fn page() -> std::boxed::Box<[u64; 512]> {
        std::boxed::Box::new([0u64; 512])
    }

    #[test]
    fn a_posted_message_reads_back_under_its_sequence_number_only() {
        let mut mem = page();
        // SAFETY: 4 KiB, 8-aligned... the page needs 64: use an aligned offset.
        let base = mem.as_mut_ptr() as *mut u8;
        let off = base.align_offset(64);
        // SAFETY: the box outlives the page reference within this test.
        let p = unsafe { ControlPage::at(base.add(off), 4096 - off) }.unwrap_or_else(|| {
            // 4096 - 63 may be too small for the whole page: shrink-proof.
            panic!("page too small")
        });
        p.reset();
        assert_eq!(p.command.read(1), None);
        p.command.post(1, &Message::with_words(7, &[1, 2, 3]));
        let m = p.command.read(1).expect("posted");
        assert_eq!((m.label, m.used_words()), (7, &[1u64, 2, 3][..]));
        assert_eq!(p.command.read(2), None);
        assert_eq!(p.busy_in(), None);
        let n = p.begin_event();
        assert_eq!(p.busy_in(), Some(n));
        p.end_event(n);
        assert_eq!(p.busy_in(), None);
        assert!(!p.is_open(0) && !p.is_open(5));
        p.open(5);
        assert!(p.is_open(5) && !p.is_open(6) && !p.is_open(0));
        p.reset();
        assert!(!p.is_open(5), "a reset page is closed");
    }
}
