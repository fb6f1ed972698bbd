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
                let (hung, since) = match (busy, slot.watch) {
                    (None, _) => {
                        slot.watch = None;
                        (false, 0)
                    }
                    (Some(n), Some(w)) if n == w.event && progress == w.progress => {
                        (now.saturating_sub(w.since) >= HANG_NS, w.since)
                    }
                    // Moving, but an event that never ends is a livelock
                    // (a module calling out in a loop for ever).
                    (Some(n), Some(w)) if n == w.event => {
                        slot.watch = Some(Watch { progress, since: now, ..w });
                        (now.saturating_sub(w.began) >= EVENT_LIMIT_NS, w.began)
                    }
                    (Some(n), _) => {
                        slot.watch = Some(Watch { event: n, progress, since: now, began: now });
                        (false, 0)
                    }
                };
                if !hung {
                    continue;
                }
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
