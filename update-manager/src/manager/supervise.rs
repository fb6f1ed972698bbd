//! The manager as a supervisor that never blocks on a child.
//!
//! A slot is commanded through its control page (post, notify, then wait
//! for the reply *with a deadline*, see `slots`), never through a protected
//! call. While the manager waits, it keeps taking events itself: console input is
//! answered (commands that change something wait for the operation to
//! end), faults are noted with the incarnation they belong to, and a slot
//! that does not answer in time is stopped. A watchdog looks at every
//! slot's progress counters on a tick: a slot inside one event for longer
//! than [`HANG_NS`] hangs, and is handled like a fault.
use super::{Manager, Watch};
use crate::faults::Trouble;
use crate::placer::ImagePlacer;
use crate::protocol::{EVENT_LIMIT_NS, HANG_NS};

use core::sync::atomic::Ordering::Relaxed;
use pd_api::{ChildId, Event, Pd};

/// How often the watchdog looks.
pub const WATCH_PERIOD_NS: u64 = 50_000_000;
/// How often waiting console output is retried.
const OUTPUT_RETRY_NS: u64 = 1_000_000;

impl<P: Pd + 'static, L: ImagePlacer> Manager<P, L> {
    pub(crate) fn child_index(&self, child: ChildId) -> Option<usize> {
        self.children.iter().position(|(id, _, _)| *id == child)
    }

    pub(super) fn incarnation_of(&self, child: ChildId) -> u32 {
        self.child_index(child).map_or(0, |i| self.incarnations[i])
    }

    /// Lets `ns` pass, taking events meanwhile (as an operation: see
    /// [`Self::await_reply`]).
    pub(crate) fn pause(&mut self, ns: u64) {
        let was_busy = core::mem::replace(&mut self.busy, true);
        let deadline = self.pd.now_ns() + ns;
        while self.pd.now_ns() < deadline {
            self.wait_one(deadline);
        }
        self.busy = was_busy;
    }

    /// Takes one event (or none by `deadline`) while busy: console input is
    /// served, a fault noted; and console output that waits is retried.
    pub(super) fn wait_one(&mut self, deadline: u64) {
        let now = self.pd.now_ns();
        let watch_at = self.watched_ns + WATCH_PERIOD_NS;
        if now >= watch_at {
            self.watchdog();
            return;
        }
        let soon = if self.output_waiting() { now + OUTPUT_RETRY_NS } else { u64::MAX };
        match self.pd.wait_event(deadline.min(soon).min(watch_at)) {
            Some(Event::Notified(ch)) if self.is_console_channel(ch) => self.console_input(),
            Some(Event::Notified(_)) => {}
            Some(Event::Fault(child, fault)) => {
                let incarnation = self.incarnation_of(child);
                self.note(Trouble::Fault { child, incarnation, fault });
            }
            None => {}
        }
        self.flush();
    }

    /// A restart begins a new incarnation: troubles of the old one are
    /// dropped (the restart dealt with them).
    pub(crate) fn bump_incarnation(&mut self, child: ChildId) {
        if let Some(i) = self.child_index(child) {
            self.incarnations[i] = self.incarnations[i].wrapping_add(1);
        }
        self.troubles.retain(|t| t.child() != child);
        self.noted.retain(|&(c, _)| c != child);
    }

    /// Notes a fault or a hang, once per incarnation: it counts in the
    /// child's faults and is handled after the operation. (A stopped or dead
    /// slot stays inside its last event: the watchdog must not report it
    /// again while its trouble is being dealt with.)
    pub(crate) fn note(&mut self, t: Trouble) {
        let key = (t.child(), t.incarnation());
        if self.noted.contains(&key) {
            return;
        }
        self.noted.push(key);
        if let Some(c) = self.child_index(t.child()) {
            self.children[c].2 += 1;
        }
        self.troubles.push(t);
    }

    /// The watchdog: a slot whose module is inside the same event as at
    /// the last look, with no progress in it (a transfer's bytes, a
    /// replayed journal entry, a protected call of the module returned),
    /// for over [`HANG_NS`], or inside one event for over
    /// [`EVENT_LIMIT_NS`] whatever its progress, is stopped; if it is still
    /// inside that event once stopped, it hangs. (One that finished the event meanwhile is
    /// resumed: it was slow, not stuck.)
    pub(crate) fn watchdog(&mut self) {
        let now = self.pd.now_ns();
        self.watched_ns = now;
        for i in 0..self.slots.len() {
            for k in 0..2 {
                let slot = &mut self.slots[i][k];
                if !slot.dirty {
                    slot.watch = None;
                    continue;
                }
                let busy = slot.page.busy_in();
                let progress = slot.page.counters.progress.load(Relaxed);
                let waiting = slot.page.is_calling_out();
                let (watch, verdict) = Watch::look(slot.watch, busy, progress, waiting, now);
                slot.watch = watch;
                let Some(since) = verdict else { continue };
                let (child, page) = (slot.child, slot.page);
                let incarnation = self.incarnation_of(child);
                if self.noted.contains(&(child, incarnation)) {
                    continue; // stopped or dead already, maybe being dealt with
                }
                self.pd.stop_child(child);
                if page.busy_in() != busy {
                    self.pd.resume_child(child);
                    self.slots[i][k].watch = None;
                    continue;
                }
                self.note(Trouble::Hang { child, incarnation, since_ns: since });
            }
        }
    }

    pub(crate) fn schedule_tick(&self) {
        let now = self.pd.now_ns();
        let mut at = now + WATCH_PERIOD_NS;
        if self.output_waiting() {
            at = at.min(now + OUTPUT_RETRY_NS);
        }
        if let Some(t) = self.next_timed_work() {
            at = at.min(t.max(now + 1));
        }
        self.pd.set_tick(at);
    }

    pub(crate) fn on_tick(&mut self) {
        self.flush();
        self.watchdog();
    }

    /// After every event at the top level: deal with what was noted, run
    /// the command lines that waited, then ask for the next tick.
    pub(crate) fn after_event(&mut self) {
        if self.busy {
            return;
        }
        self.handle_troubles();
        self.timed_work();
        self.run_deferred();
        self.flush();
        self.maybe_halt();
        self.schedule_tick();
    }
}

impl Watch {
    /// One look of the watchdog at a slot: `busy` is the event the slot's
    /// module is inside (if any), `progress` its progress counter,
    /// `waiting` whether it waits in a protected call to another PD (time
    /// that is not the slot's own), `now` the clock. Returns the watch to
    /// keep and, if the slot hangs, since when: inside the same event
    /// with no progress and no call out for [`HANG_NS`], or inside one
    /// event for [`EVENT_LIMIT_NS`] however it progresses (a module
    /// calling out in a loop for ever, or in a call that never returns).
    pub(crate) fn look(
        watch: Option<Watch>,
        busy: Option<u64>,
        progress: u64,
        waiting: bool,
        now: u64,
    ) -> (Option<Watch>, Option<u64>) {
        match (busy, watch) {
            (None, _) => (None, None),
            (Some(n), Some(w)) if n == w.event && progress == w.progress && !waiting => {
                (Some(w), (now.saturating_sub(w.since) >= HANG_NS).then_some(w.since))
            }
            (Some(n), Some(w)) if n == w.event => (
                Some(Watch { progress, since: now, ..w }),
                (now.saturating_sub(w.began) >= EVENT_LIMIT_NS).then_some(w.began),
            ),
            (Some(n), _) => (Some(Watch { event: n, progress, since: now, began: now }), None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    /// Looks every 50 ms from `t0` to `t1` at a slot inside `event`, whose
    /// progress `step` gives at each look; returns the first hang verdict.
    fn watch_over(t0: u64, t1: u64, event: u64, step: impl Fn(u64) -> u64) -> Option<(u64, u64)> {
        let mut w = None;
        let mut t = t0;
        while t <= t1 {
            let (next, verdict) = Watch::look(w, Some(event), step(t), false, t);
            if let Some(since) = verdict {
                return Some((t, since));
            }
            w = next;
            t += WATCH_PERIOD_NS;
        }
        None
    }

    #[test]
    fn a_slot_stuck_in_one_event_hangs_after_the_hang_time() {
        let (at, since) = watch_over(10 * MS, 10_000 * MS, 7, |_| 3).expect("a hang");
        assert_eq!(since, 10 * MS);
        assert!(at >= since + HANG_NS && at < since + HANG_NS + WATCH_PERIOD_NS, "seen at {at}");
    }

    #[test]
    fn progress_defers_the_hang_but_not_past_the_event_limit() {
        // Progress at every look (a transfer's bytes, calls out returning).
        let (at, since) = watch_over(0, 2 * EVENT_LIMIT_NS, 7, |t| t / WATCH_PERIOD_NS).expect("a livelock");
        assert_eq!(since, 0, "counted from the event's start");
        assert!((EVENT_LIMIT_NS..EVENT_LIMIT_NS + WATCH_PERIOD_NS).contains(&at), "seen at {at}");
        // Progress that stops: a hang one hang time after the last move.
        let last_move = 5_000 * MS;
        let (at, since) = watch_over(0, EVENT_LIMIT_NS, 7, |t| t.min(last_move) / WATCH_PERIOD_NS).expect("a hang");
        assert_eq!(since, last_move);
        assert!(at >= last_move + HANG_NS && at < last_move + HANG_NS + WATCH_PERIOD_NS);
    }

    #[test]
    fn time_in_a_call_out_is_not_the_slots_but_counts_to_the_event_limit() {
        // One block request that takes 5 s (a starved device), then a hang.
        let (mut w, mut t) = (None, 0);
        let (at, since) = loop {
            let waiting = t < 5_000 * MS;
            let (next, verdict) = Watch::look(w, Some(7), u64::from(!waiting), waiting, t);
            if let Some(since) = verdict {
                break (t, since);
            }
            assert!(t < EVENT_LIMIT_NS, "no hang");
            w = next;
            t += WATCH_PERIOD_NS;
        };
        assert!(since >= 5_000 * MS && at >= since + HANG_NS, "since {since} at {at}");
        // A call that never returns: the limit on one event's length.
        let (mut w, mut t) = (None, 0);
        let at = loop {
            let (next, verdict) = Watch::look(w, Some(7), 0, true, t);
            if verdict.is_some() {
                break t;
            }
            w = next;
            t += WATCH_PERIOD_NS;
        };
        assert!((EVENT_LIMIT_NS..EVENT_LIMIT_NS + WATCH_PERIOD_NS).contains(&at), "seen at {at}");
    }

    #[test]
    fn a_slot_that_moves_between_events_or_idles_never_hangs() {
        let mut w = None;
        for k in 0..2_000u64 {
            let t = k * WATCH_PERIOD_NS;
            // A new event at every look, or no event at all.
            let busy = (k % 3 != 0).then_some(k);
            let (next, verdict) = Watch::look(w, busy, 0, false, t);
            assert_eq!(verdict, None, "look {k}");
            w = next;
        }
    }
}
