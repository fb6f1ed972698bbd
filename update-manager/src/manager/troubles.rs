//! What the manager does about a child that faulted or hung, and the work
//! that waits for a time (probations that end, reloads that back off).
//!
//! A fault is noted with the incarnation of the child it came from and
//! handled once no operation is in progress; by then a restart may have
//! dealt with it (a fault of an incarnation that no longer runs is stale,
//! and dropped). Then, by what the child was:
//! - the live slot of a service on probation: every instance of the service
//!   goes back to the previous version, nothing lost (`protocol::probation`);
//! - the live slot of a final version: it is reloaded (its state is lost,
//!   and the console says so), after a backoff (`faults`); after
//!   [`MAX_RESTARTS`] the instance is held;
//! - an idle or retired slot: it is reset (a kept module is dropped, and
//!   with it the option to roll back to it);
//! - any other PD: restarted, until it has faulted [`MAX_RESTARTS`] times.
use super::Manager;
use crate::console::PROMPT;
use crate::faults::{Reload, Trouble, MAX_RESTARTS, RESTART_WINDOW_NS};
use crate::placer::ImagePlacer;
use crate::protocol::{self, SlotAt, SlotControl, Target};
use alloc::format;
use interfaces::capmap::{Binding, Slot};
use pd_api::{ChildId, Fault, FaultAction, Pd};

impl<P: Pd + 'static, L: ImagePlacer> Manager<P, L> {
    /// A fault from the event loop: noted, handled after the event.
    pub(crate) fn on_fault_event(&mut self, child: ChildId, fault: Fault) -> FaultAction {
        let Some(i) = self.child_index(child) else { return FaultAction::Stop };
        let incarnation = self.incarnations[i];
        self.note(Trouble::Fault { child, incarnation, fault });
        FaultAction::Stop
    }

    /// Handles every trouble noted, oldest first.
    pub(crate) fn handle_troubles(&mut self) {
        while !self.troubles.is_empty() {
            let t = self.troubles.remove(0);
            let Some(c) = self.child_index(t.child()) else { continue };
            if t.incarnation() != self.incarnations[c] {
                continue; // a restart since dealt with it
            }
            self.handle_trouble(t, c);
            // Input typed meanwhile brings its own prompt.
            if self.deferred.is_empty() {
                self.say(PROMPT);
            }
        }
    }

    fn slot_named(&self, name: &str) -> Option<SlotAt> {
        self.slots.iter().enumerate().find_map(|(i, pair)| {
            pair.iter().position(|s| s.pd_name == name).map(|k| SlotAt::new(i, if k == 0 { Slot::A } else { Slot::B }))
        })
    }

    fn handle_trouble(&mut self, t: Trouble, c: usize) {
        let name = self.children[c].1.clone();
        let what = t.describe();
        let Some(at) = self.slot_named(&name) else {
            let faults = self.children[c].2;
            if faults > MAX_RESTARTS {
                self.pd.stop_child(t.child());
                self.say(&format!("\nfault: {name}: {what}; it faulted {faults} times: left stopped\n"));
            } else {
                self.say(&format!("\nfault: {name}: {what}; restarting it\n"));
                self.bump_incarnation(t.child());
                self.pd.restart_child(t.child());
            }
            return;
        };
        let (i, k) = (at.inst, at.slot);
        let live = self.instances[i].live == Some(k);
        let held = self.instances[i].held[k.index()];
        self.say(&format!("\nfault: {name}: {what}\n"));
        if live && self.instances[i].probation.is_some() && !protocol::journal_overflowed(self, i) {
            let service = self.instances[i].service.clone();
            let mut text = self.hot_rollback(&service, Some(at), &format!("{name} {what}"));
            if let Some(began) = t.hang_began() {
                let ms = self.pd.now_ns().saturating_sub(began) / 1_000_000;
                text.push_str(&format!("recovered: serving again {ms} ms after the hang began\n"));
            }
            self.say(&text);
            return;
        }
        // A faulted slot is always restarted, loaded or not.
        self.instances[i].held[k.index()] = None;
        if let Err(e) = self.restart(at) {
            self.say(&format!("fault: {e}\n"));
        }
        match (live, held) {
            (true, Some(h)) => self.reload_after_fault(i, h.image),
            (false, Some(h)) => {
                if self.instances[i].probation.as_ref().is_some_and(|p| p.old == k) {
                    // The version to go back to is gone: the probation
                    // cannot end in a rollback any more.
                    self.instances[i].probation = None;
                    self.say(&format!("fault: {name} held {} for a rollback; that option is gone\n", h.image));
                } else {
                    self.say(&format!("fault: {name} held {} for a rollback; dropped\n", h.image));
                }
            }
            _ => {}
        }
    }

    /// The live slot of a final version failed: its state is gone. Reload
    /// the image after a backoff, or hold the instance if it keeps failing.
    fn reload_after_fault(&mut self, i: usize, image: &'static str) {
        let now = self.pd.now_ns();
        let inst = &mut self.instances[i];
        inst.live = None;
        inst.probation = None;
        inst.generation += 1;
        self.capmap.commit(inst.capmap_index, Binding { generation: inst.generation, live: None });
        let name = inst.name.clone();
        match self.restarts[i].on_fault(image, now) {
            Reload::Held { faults } => self.say(&format!(
                "fault: {name} faulted {faults} times in {} s: held, not restarted; its state was lost and its clients get no service until an update\n",
                RESTART_WINDOW_NS / 1_000_000_000
            )),
            Reload::At { at_ns, nth } => {
                self.say(&format!(
                    "fault: {name}: its state was lost; {image} reloads in {} ms (fault {nth} of {MAX_RESTARTS} before it is held)\n",
                    (at_ns - now) / 1_000_000
                ));
                self.timed_work();
            }
        }
    }

    /// Reloads whose backoff has passed.
    fn run_due_reloads(&mut self) {
        let now = self.pd.now_ns();
        for i in 0..self.instances.len() {
            let Some(image) = self.restarts[i].take_due(now) else { continue };
            let name = self.instances[i].name.clone();
            let text = match self.switch(&[i], Target::Image(image), protocol::STEP_NS) {
                Ok(_) => format!("fault: {name}: {image} reloaded, empty\n"),
                Err((_, e)) => format!("fault: {name} could not be reloaded: {e}\n"),
            };
            self.say(&text);
            self.say(PROMPT);
        }
    }

    /// Ends every probation that is over: the service's instances become
    /// final together.
    fn end_due_probations(&mut self) {
        let now = self.pd.now_ns();
        for i in 0..self.instances.len() {
            if let Some(why) = protocol::probation_end_reason(self, i, now) {
                let service = self.instances[i].service.clone();
                self.say("\n");
                protocol::make_final(self, &service, why, true);
                self.say(PROMPT);
            }
        }
    }

    /// Work that waits for a time: probations that end, reloads that back
    /// off.
    pub(crate) fn timed_work(&mut self) {
        if self.busy {
            return;
        }
        self.end_due_probations();
        self.run_due_reloads();
    }

    /// When the next timed work is due.
    pub(crate) fn next_timed_work(&self) -> Option<u64> {
        let reload = self.restarts.iter().filter_map(|r| r.pending.map(|(_, at)| at)).min();
        match (protocol::next_probation_end(self), reload) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}
