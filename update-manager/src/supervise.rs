//! The manager as a supervisor that never blocks on a child.
//!
//! A slot is commanded through its control page (post, notify, then wait
//! for the reply *with a deadline*), never through a protected call. While
//! the manager waits, it keeps taking events itself: console input is
//! answered (commands that change something wait for the operation to
//! end), faults are noted with the incarnation they belong to, and a slot
//! that does not answer in time is stopped. A watchdog looks at every
//! slot's progress counters on a tick: a slot inside one event for longer
//! than [`HANG_NS`] hangs, and is handled like a fault.
use crate::manager::{Manager, Watch};
use crate::placer::ImagePlacer;
use alloc::{format, string::String};
use core::sync::atomic::Ordering::Relaxed;
use interfaces::capmap::Slot;
use interfaces::control::reply;
use interfaces::Message;
use pd_api::{ChildId, Event, Fault, Pd};

/// Deadline of one control step (load, init, activate, ...).
pub const STEP_NS: u64 = 3_000_000_000;
/// Deadline of an export or an import (they copy the state).
pub const TRANSFER_NS: u64 = 5_000_000_000;
/// A slot inside one event for this long hangs.
pub const HANG_NS: u64 = 1_000_000_000;
/// How often the watchdog looks.
pub const WATCH_PERIOD_NS: u64 = 50_000_000;
/// How often waiting console output is retried.
const OUTPUT_RETRY_NS: u64 = 1_000_000;

/// What went wrong with a child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trouble {
    Fault {
        child: ChildId,
        incarnation: u32,
        fault: Fault,
    },
    /// Stopped: inside one event past [`HANG_NS`] (the watchdog), or no
    /// answer to a command by its deadline. `since_ns`: when the watchdog
    /// first saw the slot inside that event (0: not known).
    Hang {
        child: ChildId,
        incarnation: u32,
        since_ns: u64,
    },
}

impl Trouble {
    pub fn child(&self) -> ChildId {
        match *self {
            Trouble::Fault { child, .. } | Trouble::Hang { child, .. } => child,
        }
    }
    pub fn incarnation(&self) -> u32 {
        match *self {
            Trouble::Fault { incarnation, .. } | Trouble::Hang { incarnation, .. } => incarnation,
        }
    }
    /// When a hang began, as far as the watchdog saw it.
    pub fn hang_began(&self) -> Option<u64> {
        match *self {
            Trouble::Hang { since_ns, .. } if since_ns != 0 => Some(since_ns),
            _ => None,
        }
    }
    pub fn describe(&self) -> String {
        match self {
            Trouble::Fault { fault, .. } => format!("{fault}"),
            Trouble::Hang { .. } => format!("hung (inside one event for over {} ms)", HANG_NS / 1_000_000),
        }
    }
}

/// Why a command got no answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandError {
    /// The slot answered with an error.
    Refused(String),
    /// The module is not quiescent yet (`PREPARE` only).
    NotReady,
    /// The slot faulted while the manager waited.
    Faulted(Fault),
    /// No answer by the deadline: the slot has been stopped.
    Hung,
    /// The watchdog saw the slot inside one event past [`HANG_NS`]: it
    /// has been stopped.
    HangSeen,
}

impl core::fmt::Display for CommandError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            CommandError::Refused(why) => f.write_str(why),
            CommandError::NotReady => f.write_str("not ready"),
            CommandError::Faulted(fault) => write!(f, "faulted ({fault})"),
            CommandError::Hung => f.write_str("did not answer in time (hung): stopped"),
            CommandError::HangSeen => write!(f, "hung (inside one event for over {} ms): stopped", HANG_NS / 1_000_000),
        }
    }
}

/// A slot's reply, by its label.
fn answer(msg: Message) -> Result<Message, CommandError> {
    match msg.label {
        reply::OK => Ok(msg),
        reply::NOT_READY => Err(CommandError::NotReady),
        _ => Err(CommandError::Refused(msg.text().unwrap_or("slot gave an unreadable error").into())),
    }
}

impl<P: Pd + 'static, L: ImagePlacer> Manager<P, L> {
    pub(crate) fn child_index(&self, child: ChildId) -> Option<usize> {
        self.children.iter().position(|(id, _, _)| *id == child)
    }

    fn incarnation_of(&self, child: ChildId) -> u32 {
        self.child_index(child).map_or(0, |i| self.incarnations[i])
    }

    /// Posts a command on a slot's control page and wakes the slot.
    pub(crate) fn post(&mut self, inst: usize, s: Slot, label: u64, words: &[u64]) -> u64 {
        let slot = &mut self.instances[inst].slots[s.index()];
        slot.seq += 1;
        slot.page.command.post(slot.seq, &Message::with_words(label, words));
        let (seq, ch) = (slot.seq, slot.channel);
        self.pd.notify(ch);
        seq
    }

    /// Waits for the answer to command `seq` until `deadline`, taking every
    /// other event meanwhile. A slot that faults or misses the deadline is
    /// left stopped (faulted, or stopped here) for the caller to reset.
    pub(crate) fn await_reply(
        &mut self,
        inst: usize,
        s: Slot,
        seq: u64,
        deadline: u64,
    ) -> Result<Message, CommandError> {
        // Whatever waits here is an operation: input typed meanwhile waits
        // for it (a command that only reads is answered at once).
        let was_busy = core::mem::replace(&mut self.busy, true);
        let result = self.await_reply_busy(inst, s, seq, deadline);
        self.busy = was_busy;
        result
    }

    fn await_reply_busy(&mut self, inst: usize, s: Slot, seq: u64, deadline: u64) -> Result<Message, CommandError> {
        let child = self.instances[inst].slots[s.index()].child;
        let incarnation = self.incarnation_of(child);
        loop {
            if let Some(msg) = self.instances[inst].slots[s.index()].page.reply.read(seq) {
                return answer(msg);
            }
            // A fault, or a hang the watchdog saw (and stopped), of the
            // incarnation asked.
            let trouble = self.troubles.iter().find(|t| t.child() == child && t.incarnation() == incarnation);
            match trouble {
                Some(&Trouble::Fault { fault, .. }) => return Err(CommandError::Faulted(fault)),
                Some(Trouble::Hang { .. }) => return Err(CommandError::HangSeen),
                None => {}
            }
            if self.pd.now_ns() >= deadline {
                self.pd.stop_child(child);
                // It may have answered just before it stopped.
                if let Some(msg) = self.instances[inst].slots[s.index()].page.reply.read(seq) {
                    self.pd.resume_child(child);
                    return answer(msg);
                }
                self.note(Trouble::Hang { child, incarnation, since_ns: 0 });
                return Err(CommandError::Hung);
            }
            self.wait_one(deadline);
        }
    }

    /// Posts a command and waits for its answer (see [`Self::await_reply`]).
    pub(crate) fn command(
        &mut self,
        inst: usize,
        s: Slot,
        label: u64,
        words: &[u64],
        within_ns: u64,
    ) -> Result<Message, CommandError> {
        let seq = self.post(inst, s, label, words);
        let deadline = self.pd.now_ns() + within_ns;
        self.await_reply(inst, s, seq, deadline)
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
    fn wait_one(&mut self, deadline: u64) {
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

    /// Makes a slot empty: stops it, clears its control page, and restarts
    /// it if anything was loaded since it last started (a module is never
    /// unloaded in place). Its earlier faults are no longer news.
    pub(crate) fn reset_slot(&mut self, inst: usize, s: Slot) -> Result<(), String> {
        let slot = &mut self.instances[inst].slots[s.index()];
        slot.held = None;
        slot.watch = None;
        if !slot.dirty {
            return Ok(());
        }
        let (child, page, name) = (slot.child, slot.page, slot.pd_name.clone());
        self.pd.stop_child(child);
        page.reset();
        self.bump_incarnation(child);
        if !self.pd.restart_child(child) {
            return Err(format!("slot {name} did not restart"));
        }
        self.instances[inst].slots[s.index()].dirty = false;
        Ok(())
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
    /// protected call returned), for over
    /// [`HANG_NS`], is stopped; if it is still inside that event once
    /// stopped, it hangs. (One that finished the event meanwhile is
    /// resumed: it was slow, not stuck.)
    pub(crate) fn watchdog(&mut self) {
        let now = self.pd.now_ns();
        self.watched_ns = now;
        for i in 0..self.instances.len() {
            for k in 0..2 {
                let slot = &mut self.instances[i].slots[k];
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
                    (Some(n), _) => {
                        slot.watch = Some(Watch { event: n, progress, since: now });
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
                    self.instances[i].slots[k].watch = None;
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
