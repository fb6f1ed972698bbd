//! The update protocol, per service type (K42's factories: every instance
//! of the service is updated together, and all commit or none do).
//!
//! admit -> build (new module into each idle slot; the live slots keep
//! serving) -> quiesce (each live module prepares, may say not-ready and is
//! asked again; abort after the timeout) and export -> transfer (each new
//! slot imports, converting the schema) -> commit (one capability-map store
//! per instance) -> retire (old slots answer MOVED, modules kept for a
//! rollback). Any failure before commit thaws the old slots, whose state
//! never left them, and resets the new ones: nothing is lost.
use crate::history::{Phase, PHASES};
use crate::manager::{Held, Manager};
use crate::placer::{ImagePlacer, SlotCode};
use crate::supervise::{CommandError, Trouble, STEP_NS, TRANSFER_NS};
use alloc::{format, string::String, vec::Vec};
use interfaces::abi::ModuleDescriptor;
use interfaces::capmap::{Binding, Slot};
use interfaces::control::op;
use pd_api::Pd;

/// What an instance is switched to.
#[derive(Clone, Copy)]
pub enum Target {
    /// A module image from the store.
    Image(&'static str),
    /// The module kept in the retired slot (a rollback).
    Previous,
}

/// One instance's part in a switch.
struct Step {
    inst: usize,
    from: Option<Slot>,
    to: Slot,
    held: Held,
    /// The schema the state travels in.
    schema: u32,
    /// The target module is already in `to` (retired there): no build.
    reuse: bool,
    /// Names this switch's export, so an import takes no other.
    token: u64,
}

pub type Failure = (Phase, String);

impl<P: Pd + 'static, L: ImagePlacer> Manager<P, L> {
    /// Switches every instance in `insts` to `target`. Prints each phase as
    /// it completes (the output of the phases inside the blackout is sent
    /// after the commit); returns the phase times and the blackout in
    /// microseconds: from the moment the first old slot stopped serving to
    /// the moment the last new slot started, as the slots tell it.
    pub(crate) fn switch(
        &mut self,
        insts: &[usize],
        target: Target,
        timeout_ns: u64,
    ) -> Result<([u64; 5], u64), Failure> {
        let was_busy = core::mem::replace(&mut self.busy, true);
        let result = self.switch_inner(insts, target, timeout_ns);
        self.busy = was_busy;
        result
    }

    fn switch_inner(&mut self, insts: &[usize], target: Target, timeout_ns: u64) -> Result<([u64; 5], u64), Failure> {
        let mut times = [0u64; 5];
        let t = self.pd.now_ns();
        let steps = self.admit(insts, target).map_err(|e| (Phase::Admit, e))?;
        if let (Target::Image(_), Some(&i)) = (target, insts.first()) {
            // The version on probation is the one this update leaves: its
            // slot pair is needed for the new one.
            let service = self.instances[i].service.clone();
            self.make_final(&service, "made final by a new update", false);
        }
        self.phase_done(Phase::Admit, t, &mut times);

        let t = self.pd.now_ns();
        let mut built = Vec::new();
        for s in &steps {
            if !s.reuse {
                built.push(s.to_owned_key());
                if let Err(e) = self.build(s) {
                    self.abandon(&steps, &built, 0);
                    return Err((Phase::Build, e));
                }
            }
        }
        self.phase_done(Phase::Build, t, &mut times);
        self.flush();

        let t = self.pd.now_ns();
        let mut blackout_start = u64::MAX;
        if let Err((n, e)) = self.quiesce(&steps, timeout_ns, &mut blackout_start) {
            self.abandon(&steps, &built, n);
            return Err((Phase::Quiesce, e));
        }
        self.phase_done(Phase::Quiesce, t, &mut times);

        let t = self.pd.now_ns();
        for s in steps.iter() {
            let Some(from) = s.from else { continue };
            // The export and the import run together: the import streams
            // behind the export (on one core the export, posted first, runs
            // to its end first).
            let export = self.post(s.inst, from, op::EXPORT, &[]);
            let import = self.post(s.inst, s.to, op::IMPORT, &[s.token]);
            let deadline = self.pd.now_ns() + TRANSFER_NS;
            let imported = self.await_reply(s.inst, s.to, import, deadline);
            let exported = self.await_reply(s.inst, from, export, deadline);
            let name = &self.instances[s.inst].name;
            let failure = match (imported, exported) {
                (Ok(_), Ok(_)) => None,
                (_, Err(e)) => Some(format!("{name}: the export failed: {e}")),
                (Err(e), _) => Some(format!("{name}: {e}")),
            };
            if let Some(why) = failure {
                self.abandon(&steps, &built, steps.len());
                return Err((Phase::Transfer, why));
            }
        }
        self.phase_done(Phase::Transfer, t, &mut times);

        let t = self.pd.now_ns();
        // The point of no return: every new slot holds its state. One store
        // per instance commits it. Only then does each new slot start to
        // serve: a client with a binding from an older generation that
        // reached a new slot before the commit was bounced (NO_SERVICE), so
        // nothing ran in a slot that could still have been rolled back.
        for s in &steps {
            let inst = &mut self.instances[s.inst];
            inst.generation += 1;
            inst.live = Some(s.to);
            inst.slots[s.to.index()].held = Some(s.held);
            self.capmap.commit(inst.capmap_index, Binding { generation: inst.generation, live: Some(s.to) });
        }
        // Journaling starts before the new slot serves its first call.
        if matches!(target, Target::Image(_)) {
            for s in &steps {
                self.begin_probation(s.inst, s.to, s.from, s.token);
            }
        }
        let mut blackout_end = 0;
        for s in &steps {
            let asked = self.pd.now_ns();
            match self.command(s.inst, s.to, op::ACTIVATE, &[], STEP_NS) {
                Ok(msg) => {
                    let now = self.pd.now_ns();
                    blackout_end = blackout_end.max(slot_time(&msg, asked, now).unwrap_or(now));
                }
                // Only a slot that failed can refuse; the fault handler
                // deals with it once this switch is over.
                Err(e) => {
                    blackout_end = blackout_end.max(self.pd.now_ns());
                    self.say(&format!("  note: activating {}: {e}\n", self.instances[s.inst].name))
                }
            }
        }
        let blackout_us = blackout_end.max(blackout_start).saturating_sub(blackout_start) / 1000;
        // Kick each new slot: events that reached the old one while it
        // stood still (a device's notification, say) were not lost, but
        // nobody told the new one about them.
        for s in &steps {
            self.pd.notify(self.slot(s.inst, s.to).channel);
        }
        for s in &steps {
            if let Some(from) = s.from {
                if let Err(e) = self.command(s.inst, from, op::RETIRE, &[], STEP_NS) {
                    // Committed already; the old slot failing now only costs
                    // the rollback option.
                    self.say(&format!("  note: {}: {e}\n", self.instances[s.inst].name));
                }
            }
        }
        self.phase_done(Phase::Commit, t, &mut times);
        Ok((times, if blackout_start == u64::MAX { 0 } else { blackout_us }))
    }

    fn phase_done(&mut self, phase: Phase, start: u64, times: &mut [u64; 5]) {
        let us = (self.pd.now_ns() - start) / 1000;
        times[phase as usize] = us;
        if self.verbose {
            self.say(&format!("  {:<9} ok  {:>8} us\n", PHASES[phase as usize], us));
        }
    }

    fn admit(&self, insts: &[usize], target: Target) -> Result<Vec<Step>, String> {
        let mut steps = Vec::new();
        for &i in insts {
            let inst = &self.instances[i];
            let live = inst.live.and_then(|s| inst.slots[s.index()].held.map(|h| (s, h)));
            let to = inst.live.map_or(Slot::A, Slot::other);
            let (held, reuse) = match target {
                Target::Image(name) => {
                    let img = self
                        .images
                        .iter()
                        .find(|x| x.name == name)
                        .ok_or_else(|| format!("no image named '{name}'"))?;
                    let d = img.descriptor.as_ref().map_err(|e| format!("image '{name}' refused: {e}"))?;
                    if d.service() != inst.service {
                        return Err(format!("image '{name}' is service '{}', not '{}'", d.service(), inst.service));
                    }
                    if live.is_some_and(|(_, h)| h.image == name) {
                        return Err(format!("{} already runs {name}", inst.name));
                    }
                    let held = Held { image: img.name, descriptor: *d };
                    (held, inst.slots[to.index()].held.is_some_and(|h| h.image == name))
                }
                Target::Previous => {
                    if live.is_none() {
                        return Err(format!("{} has no live version", inst.name));
                    }
                    let prev = inst.slots[to.index()]
                        .held
                        .ok_or_else(|| format!("{} has no previous version to return to", inst.name))?;
                    (prev, true)
                }
            };
            self.check_floor(&held.descriptor)?;
            let schema = match live {
                None => held.descriptor.state_schema,
                Some((_, cur)) => cur
                    .descriptor
                    .transfer_schema(&held.descriptor)
                    .ok_or_else(|| incompatible(&cur.descriptor, &held.descriptor))?,
            };
            let token = (self.pd.now_ns() << 8) | i as u64;
            steps.push(Step { inst: i, from: live.map(|(s, _)| s), to, held, schema, reuse, token });
        }
        Ok(steps)
    }

    /// Loads the step's image into a freshly restarted idle slot and runs
    /// its `init`.
    fn build(&mut self, s: &Step) -> Result<(), String> {
        self.reset_slot(s.inst, s.to)?;
        let img = self.images.iter().find(|x| x.name == s.held.image).ok_or("image vanished")?;
        self.instances[s.inst].slots[s.to.index()].dirty = true;
        let slot = &self.instances[s.inst].slots[s.to.index()];
        let target = SlotCode { pd_name: &slot.pd_name, code: slot.code };
        let words = self.placer.place(img.bytes, &target)?;
        let name = self.instances[s.inst].name.clone();
        self.command(s.inst, s.to, op::LOAD, &words, STEP_NS).map_err(|e| format!("{name}: {e}"))?;
        self.command(s.inst, s.to, op::INIT, &[], STEP_NS).map_err(|e| format!("{name}: {e}"))?;
        Ok(())
    }

    /// Asks every live slot to prepare, polling the not-ready ones until
    /// the deadline. On failure returns how many steps were asked.
    fn quiesce(&mut self, steps: &[Step], timeout_ns: u64, blackout_start: &mut u64) -> Result<(), (usize, String)> {
        let deadline = self.pd.now_ns() + timeout_ns;
        for (n, s) in steps.iter().enumerate() {
            let Some(from) = s.from else { continue };
            let name = self.instances[s.inst].name.clone();
            loop {
                // A ready module stops serving while this runs: calls to it
                // are bounced from here on, until the commit.
                let asked = self.pd.now_ns();
                match self.command(s.inst, from, op::PREPARE, &[s.schema as u64, s.token], STEP_NS) {
                    Ok(msg) => {
                        let stopped = slot_time(&msg, asked, self.pd.now_ns()).unwrap_or(asked);
                        *blackout_start = (*blackout_start).min(stopped);
                        break;
                    }
                    Err(CommandError::NotReady) => {
                        if self.pd.now_ns() > deadline {
                            return Err((
                                n + 1,
                                format!("{name}: prepare not ready after {} ms", timeout_ns / 1_000_000),
                            ));
                        }
                        self.pause(POLL_NS);
                    }
                    Err(e) => return Err((n + 1, format!("{name}: the live slot failed while preparing: {e}"))),
                }
            }
        }
        Ok(())
    }

    /// Undoes a switch that did not commit: the first `asked` old slots are
    /// thawed (their state never left them), the slots built for it reset.
    /// An old slot that failed is left to the fault handler.
    fn abandon(&mut self, steps: &[Step], built: &[(usize, Slot)], asked: usize) {
        for s in steps.iter().take(asked) {
            let Some(from) = s.from else { continue };
            let child = self.slot(s.inst, from).child;
            if self.troubles.iter().any(|t: &Trouble| t.child() == child) {
                continue;
            }
            if let Err(e) = self.command(s.inst, from, op::THAW, &[], STEP_NS) {
                self.say(&format!("  note: thawing {}: {e}\n", self.instances[s.inst].name));
            }
        }
        for &(i, slot) in built {
            if let Err(e) = self.reset_slot(i, slot) {
                self.say(&format!("  note: {e}\n"));
            }
        }
    }
}

/// How often a not-ready module is asked again.
const POLL_NS: u64 = 200_000;

impl Step {
    fn to_owned_key(&self) -> (usize, Slot) {
        (self.inst, self.to)
    }
}

/// The time a slot stamped in word 0 of its reply (when it stopped or
/// started serving), if it lies within the call, `asked..=answered`: a
/// slot that cannot tell, or lies, is timed by the manager's clock instead.
fn slot_time(msg: &interfaces::Message, asked: u64, answered: u64) -> Option<u64> {
    Some(msg.word(0)).filter(|t| msg.count >= 1 && (asked..=answered).contains(t))
}

fn incompatible(from: &ModuleDescriptor, to: &ModuleDescriptor) -> String {
    format!(
        "{} v{} keeps state in schema {}, which {} v{} cannot import, and it cannot export schema {}",
        from.service(),
        from.module_version,
        from.state_schema,
        to.service(),
        to.module_version,
        to.state_schema
    )
}

impl<P: Pd + 'static, L: ImagePlacer> Manager<P, L> {
    /// "kv0 runs kv-v2 (v2, schema 2) in slot b (generation 2); kv1 ..."
    pub(crate) fn runs_summary(&self, insts: &[usize]) -> String {
        let mut parts = Vec::new();
        for &i in insts {
            let inst = &self.instances[i];
            let Some(live) = inst.live else {
                parts.push(format!("{} runs nothing", inst.name));
                continue;
            };
            let held = inst.slots[live.index()].held.map_or(String::from("-"), |h| describe(&h));
            parts.push(format!("{} runs {held} in slot {} (generation {})", inst.name, live.letter(), inst.generation));
        }
        parts.join("; ")
    }
}

pub(crate) fn describe(h: &Held) -> String {
    format!("{} (v{}, schema {})", h.image, h.descriptor.module_version, h.descriptor.state_schema)
}
