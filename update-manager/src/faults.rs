//! What the manager does about a child that faulted or hung.
//!
//! A fault is noted with the incarnation of the child it came from and
//! handled once no operation is in progress; by then a restart may have
//! dealt with it (a fault of an incarnation that no longer runs is stale,
//! and dropped). Then, by what the child was:
//! - the live slot of a service on probation: every instance of the service
//!   goes back to the previous version, nothing lost (`probation`);
//! - the live slot of a final version: it is reloaded (its state is lost,
//!   and the console says so), after a backoff that grows with each fault
//!   in [`RESTART_WINDOW_NS`]; after [`MAX_RESTARTS`] the instance is held;
//! - an idle or retired slot: it is reset (a kept module is dropped, and
//!   with it the option to roll back to it);
//! - any other PD: restarted, until it has faulted [`MAX_RESTARTS`] times.
use crate::console::PROMPT;
use crate::manager::Manager;
use crate::placer::ImagePlacer;
use crate::supervise::Trouble;
use crate::update::Target;
use alloc::{format, vec::Vec};
use interfaces::capmap::{Binding, Slot};
use pd_api::{ChildId, Fault, FaultAction, Pd};

/// Restarts of a PD (or reloads of a service instance) before it is held.
pub const MAX_RESTARTS: u32 = 3;
/// Faults further apart than this do not add up.
pub const RESTART_WINDOW_NS: u64 = 30_000_000_000;
/// The wait before the n-th reload within the window (n = 1, 2, 3).
const BACKOFF_NS: [u64; 3] = [0, 100_000_000, 1_000_000_000];

/// An instance's recent faults after its version became final.
#[derive(Default)]
pub struct Restarts {
    /// When each fault in the window happened.
    recent: Vec<u64>,
    /// A reload that waits for its backoff: the image and when.
    pub pending: Option<(&'static str, u64)>,
    /// Held: faulted too often; not reloaded until an operator update.
    pub held: bool,
}

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

    fn slot_of(&self, name: &str) -> Option<(usize, Slot)> {
        self.instances.iter().enumerate().find_map(|(i, inst)| {
            inst.slots.iter().position(|s| s.pd_name == name).map(|k| (i, if k == 0 { Slot::A } else { Slot::B }))
        })
    }

    fn handle_trouble(&mut self, t: Trouble, c: usize) {
        let name = self.children[c].1.clone();
        let what = t.describe();
        let Some((i, k)) = self.slot_of(&name) else {
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
        let live = self.instances[i].live == Some(k);
        let held = self.instances[i].slots[k.index()].held;
        self.say(&format!("\nfault: {name}: {what}\n"));
        if live && self.instances[i].probation.is_some() && !self.journal_overflowed(i) {
            let service = self.instances[i].service.clone();
            let mut text = self.hot_rollback(&service, Some((i, k)), &format!("{name} {what}"));
            if let Some(began) = t.hang_began() {
                let ms = self.pd.now_ns().saturating_sub(began) / 1_000_000;
                text.push_str(&format!("recovered: serving again {ms} ms after the hang began\n"));
            }
            self.say(&text);
            return;
        }
        if let Err(e) = self.reset_slot_for_fault(i, k) {
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

    fn reset_slot_for_fault(&mut self, i: usize, k: Slot) -> Result<(), alloc::string::String> {
        // A faulted slot is always restarted, loaded or not.
        self.instances[i].slots[k.index()].dirty = true;
        self.reset_slot(i, k)
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
        let r = &mut inst.restarts;
        r.recent.retain(|&t| now.saturating_sub(t) < RESTART_WINDOW_NS);
        r.recent.push(now);
        let n = r.recent.len();
        let name = inst.name.clone();
        if n > MAX_RESTARTS as usize {
            r.held = true;
            r.pending = None;
            self.say(&format!(
                "fault: {name} faulted {n} times in {} s: held, not restarted; its state was lost and its clients get no service until an update\n",
                RESTART_WINDOW_NS / 1_000_000_000
            ));
            return;
        }
        let at = now + BACKOFF_NS[(n - 1).min(BACKOFF_NS.len() - 1)];
        r.pending = Some((image, at));
        self.say(&format!(
            "fault: {name}: its state was lost; {image} reloads in {} ms (fault {n} of {MAX_RESTARTS} before it is held)\n",
            (at - now) / 1_000_000
        ));
        self.timed_work();
    }

    /// Reloads whose backoff has passed.
    pub(crate) fn run_due_reloads(&mut self) {
        let now = self.pd.now_ns();
        for i in 0..self.instances.len() {
            let Some((image, at)) = self.instances[i].restarts.pending else { continue };
            if at > now {
                continue;
            }
            self.instances[i].restarts.pending = None;
            let name = self.instances[i].name.clone();
            let text = match self.switch(&[i], Target::Image(image), crate::supervise::STEP_NS) {
                Ok(_) => format!("fault: {name}: {image} reloaded, empty\n"),
                Err((_, e)) => format!("fault: {name} could not be reloaded: {e}\n"),
            };
            self.say(&text);
            self.say(PROMPT);
        }
    }

    pub(crate) fn next_reload(&self) -> Option<u64> {
        self.instances.iter().filter_map(|i| i.restarts.pending.map(|(_, at)| at)).min()
    }
}
