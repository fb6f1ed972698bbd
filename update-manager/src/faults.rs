//! The manager as fault handler of every PD (it is their parent).
use crate::console::PROMPT;
use crate::manager::Manager;
use crate::placer::ImagePlacer;
use crate::update::Target;
use alloc::format;
use interfaces::capmap::Slot;
use pd_api::{ChildId, Fault, FaultAction, Pd};

/// Restarts of a PD that is not a service slot before it is left stopped.
const MAX_RESTARTS: u32 = 3;

impl<P: Pd + 'static, L: ImagePlacer> Manager<P, L> {
    /// A child faulted: a slot is restarted (and, if it was live, its
    /// service reloaded, its state lost); any other PD is restarted until
    /// it has faulted [`MAX_RESTARTS`] times, then left stopped.
    pub(crate) fn on_fault(&mut self, pd: &P, child: ChildId, fault: Fault) -> FaultAction {
        let Some(idx) = self.children.iter().position(|(id, _, _)| *id == child) else { return FaultAction::Stop };
        self.children[idx].2 += 1;
        let name = self.children[idx].1.clone();
        let slot = self
            .instances
            .iter()
            .enumerate()
            .find_map(|(i, inst)| inst.slots.iter().position(|s| s.pd_name == name).map(|k| (i, k)));
        let Some((i, k)) = slot else {
            // A PD that keeps faulting is left stopped rather than
            // restarted for ever (a restart storm takes the CPU from the
            // PDs that work).
            let faults = self.children[idx].2;
            if faults > MAX_RESTARTS {
                self.say(&format!("\nfault: {name}: {fault}; it faulted {faults} times: left stopped\n{PROMPT}"));
                self.flush();
                return FaultAction::Stop;
            }
            self.say(&format!("\nfault: {name}: {fault}; restarting it\n{PROMPT}"));
            self.flush();
            return FaultAction::Restart;
        };
        let was_live = self.instances[i].live.map(Slot::index) == Some(k);
        let held = self.instances[i].slots[k].held;
        self.say(&format!("\nfault: {name}: {fault}; restarting it\n"));
        if !pd.restart_child(child) {
            self.say(&format!("fault: {name} did not restart\n{PROMPT}"));
            self.flush();
            return FaultAction::Stop;
        }
        let slot = &mut self.instances[i].slots[k];
        slot.held = None;
        slot.dirty = false;
        if let (true, Some(h)) = (was_live, held) {
            // A live slot that died lost its state; bring the service back.
            self.instances[i].live = None;
            let text = match self.switch(&[i], Target::Image(h.image), 2_000_000_000) {
                Ok(_) => format!("fault: {name}: {} reloaded; its state was lost\n", h.image),
                Err((_, e)) => format!("fault: {name} could not be reloaded: {e}\n"),
            };
            self.say(&text);
        }
        self.say(PROMPT);
        self.flush();
        FaultAction::Stop
    }
}
