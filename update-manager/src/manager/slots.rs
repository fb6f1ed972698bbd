//! The manager's slots behind the update protocol's [`SlotControl`]: each
//! slot is commanded through its control page (post, notify, then wait for
//! the reply *with a deadline*), restarted through its TCB, and bound in
//! the capability map the manager alone writes.
use super::Manager;
use crate::faults::Trouble;
use crate::image::Image;
use crate::placer::{ImagePlacer, SlotCode};
use crate::protocol::{
    self, CommandError, Failure, Finalized, Instance, JournalCounters, Policy, SlotAt, SlotControl, Switched, Target,
};
use alloc::{format, string::String, vec::Vec};
use core::sync::atomic::Ordering::Relaxed;
use interfaces::abi::ModuleDescriptor;
use interfaces::capmap::Binding;
use interfaces::control::reply;
use interfaces::Message;
use pd_api::Pd;

/// A slot's reply, by its label.
fn answer(msg: Message) -> Result<Message, CommandError> {
    match msg.label {
        reply::OK => Ok(msg),
        reply::NOT_READY => Err(CommandError::NotReady),
        _ => Err(CommandError::Refused(msg.text().unwrap_or("slot gave an unreadable error").into())),
    }
}

impl<P: Pd + 'static, L: ImagePlacer> Manager<P, L> {
    /// Switches every instance in `insts` to `target` (see
    /// [`protocol::switch`]), as one operation: events that arrive
    /// meanwhile wait for it to end.
    pub(crate) fn switch(&mut self, insts: &[usize], target: Target, timeout_ns: u64) -> Result<Switched, Failure> {
        let was_busy = core::mem::replace(&mut self.busy, true);
        let result = protocol::switch(self, insts, target, timeout_ns);
        self.busy = was_busy;
        result
    }

    /// Every instance of `service` goes back to the version on probation's
    /// predecessor (see [`protocol::hot_rollback`]), as one operation, and
    /// the log says so. Returns the console's report.
    pub(crate) fn hot_rollback(&mut self, service: &str, failed: Option<SlotAt>, why: &str) -> String {
        let was_busy = core::mem::replace(&mut self.busy, true);
        let done = protocol::hot_rollback(self, service, failed, why);
        let outcome = Ok(format!("{why}; {}", done.replayed));
        self.record(format!("rollback {service} (probation)"), [None; 5], outcome);
        self.busy = was_busy;
        done.report
    }

    /// Makes a slot empty: stops it, clears its control page, and restarts
    /// it if anything was loaded since it last started (a module is never
    /// unloaded in place). Its earlier faults are no longer news.
    fn reset_slot(&mut self, at: SlotAt) -> Result<(), String> {
        self.instances[at.inst].held[at.slot.index()] = None;
        let slot = &mut self.slots[at.inst][at.slot.index()];
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
        self.slots[at.inst][at.slot.index()].dirty = false;
        Ok(())
    }

    fn await_reply_busy(&mut self, at: SlotAt, seq: u64, deadline: u64) -> Result<Message, CommandError> {
        let (child, page) = {
            let slot = &self.slots[at.inst][at.slot.index()];
            (slot.child, slot.page)
        };
        let incarnation = self.incarnation_of(child);
        loop {
            if let Some(msg) = page.reply.read(seq) {
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
                if let Some(msg) = page.reply.read(seq) {
                    self.pd.resume_child(child);
                    return answer(msg);
                }
                self.note(Trouble::Hang { child, incarnation, since_ns: 0 });
                return Err(CommandError::Hung);
            }
            self.wait_one(deadline);
        }
    }
}

impl<P: Pd + 'static, L: ImagePlacer> SlotControl for Manager<P, L> {
    fn instances(&self) -> &[Instance] {
        &self.instances
    }

    fn instances_mut(&mut self) -> &mut [Instance] {
        &mut self.instances
    }

    fn image(&self, name: &str) -> Option<&Image> {
        self.images.get(name)
    }

    fn check_floor(&self, d: &ModuleDescriptor) -> Result<(), String> {
        Manager::check_floor(self, d)
    }

    fn probation_policy(&self) -> Policy {
        self.probation_policy
    }

    fn precopy_enabled(&self) -> bool {
        self.precopy
    }

    fn now_ns(&self) -> u64 {
        self.pd.now_ns()
    }

    fn pause(&mut self, ns: u64) {
        Manager::pause(self, ns)
    }

    fn load(&mut self, at: SlotAt, image: &Image) -> Result<Vec<u64>, String> {
        let slot = &mut self.slots[at.inst][at.slot.index()];
        slot.dirty = true;
        let target = SlotCode { pd_name: &slot.pd_name, code: slot.code };
        self.placer.place(image.bytes, &target)
    }

    fn post(&mut self, at: SlotAt, label: u64, words: &[u64]) -> u64 {
        let slot = &mut self.slots[at.inst][at.slot.index()];
        slot.seq += 1;
        slot.page.command.post(slot.seq, &Message::with_words(label, words));
        let (seq, ch) = (slot.seq, slot.channel);
        self.pd.notify(ch);
        seq
    }

    fn await_reply(&mut self, at: SlotAt, seq: u64, deadline: u64) -> Result<Message, CommandError> {
        // Whatever waits here is an operation: input typed meanwhile waits
        // for it (a command that only reads is answered at once).
        let was_busy = core::mem::replace(&mut self.busy, true);
        let result = self.await_reply_busy(at, seq, deadline);
        self.busy = was_busy;
        result
    }

    fn journal(&self, at: SlotAt) -> JournalCounters {
        let counters = &self.slots[at.inst][at.slot.index()].page.counters;
        JournalCounters {
            journaled: counters.journaled.load(Relaxed),
            overflowed: counters.journal_overflow.load(Relaxed) != 0,
        }
    }

    fn failed(&self, at: SlotAt) -> bool {
        let child = self.slots[at.inst][at.slot.index()].child;
        self.troubles.iter().any(|t| t.child() == child)
    }

    fn reset(&mut self, at: SlotAt) -> Result<(), String> {
        self.reset_slot(at)
    }

    fn restart(&mut self, at: SlotAt) -> Result<(), String> {
        self.slots[at.inst][at.slot.index()].dirty = true;
        self.reset_slot(at)
    }

    fn kick(&mut self, at: SlotAt) {
        self.pd.notify(self.slots[at.inst][at.slot.index()].channel);
    }

    fn commit(&mut self, capmap_index: usize, binding: Binding) {
        self.capmap.commit(capmap_index, binding);
    }

    fn open(&mut self, at: SlotAt, token: u64) {
        self.slots[at.inst][at.slot.index()].page.open(token);
    }

    fn say(&mut self, text: &str) {
        Manager::say(self, text)
    }

    fn progress(&mut self, text: &str) {
        if self.verbose {
            Manager::say(self, text)
        }
    }

    fn flush(&mut self) {
        Manager::flush(self)
    }

    fn finalized(&mut self, f: Finalized<'_>) {
        let Finalized { service, image, version, why, raise } = f;
        self.say(&format!("{why}: {service} runs {image} (v{version}) for good\n"));
        // A version that passed its probation is the least any later update
        // may bring back.
        if raise && self.floor(service).is_some_and(|floor| floor < version) {
            match self.raise_floor(service, version) {
                Ok(()) => self.say(&format!("the version floor of {service} is now v{version}\n")),
                Err(e) => self.say(&format!("  note: the version floor of {service} stays: {e}\n")),
            }
        }
        self.record(format!("final {service}"), [None; 5], Ok(format!("{image} final ({why})")));
    }
}
