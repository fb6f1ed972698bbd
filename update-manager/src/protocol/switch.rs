//! The switch, per service type (K42's factories: every instance of the
//! service is updated together, and all commit or none do).
//!
//! admit -> build (new module into each idle slot; the live slots keep
//! serving; a module that can pre-copies its state into it) -> quiesce (each live module prepares, may say not-ready and is
//! asked again; abort after the timeout) and export -> transfer (each new
//! slot imports, converting the schema) -> commit (one capability-map store
//! per instance) -> retire (old slots answer MOVED, modules kept for a
//! rollback). Any failure before commit thaws the old slots, whose state
//! never left them, and resets the new ones: nothing is lost.
use super::{begin_probation, make_final, CommandError, Held, SlotAt, SlotControl, STEP_NS, TRANSFER_NS};
use crate::history::{Phase, PHASES};
use alloc::{format, string::String, vec::Vec};
use interfaces::abi::ModuleDescriptor;
use interfaces::capmap::{Binding, Slot};
use interfaces::control::op;

/// What an instance is switched to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// A module image from the store.
    Image(&'static str),
    /// The module kept in the retired slot (a rollback).
    Previous,
}

/// The phase that failed, and why.
pub type Failure = (Phase, String);

/// A switch that committed: each phase's time and the blackout, in
/// microseconds.
#[derive(Clone, Copy, Debug)]
pub struct Switched {
    pub times_us: [u64; 5],
    /// From the moment the first old slot stopped serving to the moment
    /// the last new slot started, as the slots tell it.
    pub blackout_us: u64,
    /// After a pre-copy: the longest its export held a live slot (which
    /// answered no call meanwhile); `None` when no module pre-copied.
    pub precopy_pause_us: Option<u64>,
    /// The bytes the new slots took at the stop, where they took only the
    /// changes since a pre-copy; `None` when none did.
    pub stop_copy_bytes: Option<u64>,
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
    /// The token of the old slot's pre-copy (0: none): its export at the
    /// stop writes only what changed since.
    base: u64,
    /// The old slot exported as it stopped (the changes since the
    /// pre-copy): no `EXPORT` follows.
    exported: bool,
}

impl Step {
    fn old_at(&self) -> Option<SlotAt> {
        self.from.map(|s| SlotAt::new(self.inst, s))
    }
    fn new_at(&self) -> SlotAt {
        SlotAt::new(self.inst, self.to)
    }
}

/// How often a not-ready module is asked again.
const POLL_NS: u64 = 200_000;

/// Switches every instance in `insts` to `target`. Says each phase as it
/// completes (the output of the phases inside the blackout is sent after
/// the commit).
pub fn switch<C: SlotControl>(
    ctl: &mut C,
    insts: &[usize],
    target: Target,
    timeout_ns: u64,
) -> Result<Switched, Failure> {
    let mut times = [0u64; 5];
    let t = ctl.now_ns();
    let mut steps = admit(ctl, insts, target).map_err(|e| (Phase::Admit, e))?;
    if let (Target::Image(_), Some(&i)) = (target, insts.first()) {
        // The version on probation is the one this update leaves: its slot
        // pair is needed for the new one.
        let service = ctl.instances()[i].service.clone();
        make_final(ctl, &service, "made final by a new update", false);
    }
    phase_done(ctl, Phase::Admit, t, &mut times);

    let t = ctl.now_ns();
    let mut built = Vec::new();
    for s in &steps {
        if !s.reuse {
            built.push(s.new_at());
            if let Err(e) = build(ctl, s) {
                abandon(ctl, &steps, &built, 0);
                return Err((Phase::Build, e));
            }
        }
    }
    let precopy_pause_ns = match precopy(ctl, &mut steps) {
        Ok(pause) => pause,
        Err(e) => {
            abandon(ctl, &steps, &built, 0);
            return Err((Phase::Build, e));
        }
    };
    phase_done(ctl, Phase::Build, t, &mut times);
    ctl.flush();

    let t = ctl.now_ns();
    let mut blackout_start = u64::MAX;
    if let Err((n, e)) = quiesce(ctl, &mut steps, timeout_ns, &mut blackout_start) {
        abandon(ctl, &steps, &built, n);
        return Err((Phase::Quiesce, e));
    }
    phase_done(ctl, Phase::Quiesce, t, &mut times);

    let t = ctl.now_ns();
    let stop_copy_bytes = match transfer(ctl, &steps) {
        Ok(bytes) => bytes,
        Err(why) => {
            abandon(ctl, &steps, &built, steps.len());
            return Err((Phase::Transfer, why));
        }
    };
    phase_done(ctl, Phase::Transfer, t, &mut times);

    let t = ctl.now_ns();
    let blackout_end = commit(ctl, &steps, target);
    let blackout_us = blackout_end.max(blackout_start).saturating_sub(blackout_start) / 1000;
    phase_done(ctl, Phase::Commit, t, &mut times);
    Ok(Switched {
        times_us: times,
        blackout_us: if blackout_start == u64::MAX { 0 } else { blackout_us },
        precopy_pause_us: precopy_pause_ns.map(|ns| ns / 1000),
        stop_copy_bytes,
    })
}

fn phase_done<C: SlotControl>(ctl: &mut C, phase: Phase, start: u64, times: &mut [u64; 5]) {
    let us = (ctl.now_ns() - start) / 1000;
    times[phase as usize] = us;
    ctl.progress(&format!("  {:<9} ok  {:>8} us\n", PHASES[phase as usize], us));
}

fn admit<C: SlotControl>(ctl: &C, insts: &[usize], target: Target) -> Result<Vec<Step>, String> {
    let mut steps = Vec::new();
    for &i in insts {
        let inst = &ctl.instances()[i];
        let live = inst.live.and_then(|s| inst.held[s.index()].map(|h| (s, h)));
        let to = inst.live.map_or(Slot::A, Slot::other);
        let (held, reuse) = match target {
            Target::Image(name) => {
                let img = ctl.image(name).ok_or_else(|| format!("no image named '{name}'"))?;
                let d = img.descriptor.as_ref().map_err(|e| format!("image '{name}' refused: {e}"))?;
                if d.service() != inst.service {
                    return Err(format!("image '{name}' is service '{}', not '{}'", d.service(), inst.service));
                }
                if live.is_some_and(|(_, h)| h.image == name) {
                    return Err(format!("{} already runs {name}", inst.name));
                }
                let held = Held { image: img.name, descriptor: *d };
                (held, inst.held[to.index()].is_some_and(|h| h.image == name))
            }
            Target::Previous => {
                if live.is_none() {
                    return Err(format!("{} has no live version", inst.name));
                }
                let prev = inst.held[to.index()]
                    .ok_or_else(|| format!("{} has no previous version to return to", inst.name))?;
                (prev, true)
            }
        };
        ctl.check_floor(&held.descriptor)?;
        let schema = match live {
            None => held.descriptor.state_schema,
            Some((_, cur)) => cur
                .descriptor
                .transfer_schema(&held.descriptor)
                .ok_or_else(|| incompatible(&cur.descriptor, &held.descriptor))?,
        };
        let token = (ctl.now_ns() << 8) | i as u64;
        steps.push(Step {
            inst: i,
            from: live.map(|(s, _)| s),
            to,
            held,
            schema,
            reuse,
            token,
            base: 0,
            exported: false,
        });
    }
    Ok(steps)
}

/// Empties a slot: its module is forgotten and the slot restarted if
/// anything was loaded into it.
fn reset<C: SlotControl>(ctl: &mut C, at: SlotAt) -> Result<(), String> {
    ctl.instances_mut()[at.inst].held[at.slot.index()] = None;
    ctl.reset(at)
}

/// Loads the step's image into a freshly restarted idle slot and runs its
/// `init`.
fn build<C: SlotControl>(ctl: &mut C, s: &Step) -> Result<(), String> {
    reset(ctl, s.new_at())?;
    let img = ctl.image(s.held.image).ok_or("image vanished")?.clone();
    let words = ctl.load(s.new_at(), &img)?;
    let name = ctl.instances()[s.inst].name.clone();
    ctl.command(s.new_at(), op::LOAD, &words, STEP_NS).map_err(|e| format!("{name}: {e}"))?;
    ctl.command(s.new_at(), op::INIT, &[], STEP_NS).map_err(|e| format!("{name}: {e}"))?;
    Ok(())
}

/// Pre-copy: each old slot whose module can exports its whole state now,
/// while it serves, and its new slot imports it, so that at the stop only
/// what changed since travels. A module that cannot, or refuses, costs
/// nothing: its state travels whole at the stop. Returns the longest time
/// an export held a slot, if any pre-copied.
fn precopy<C: SlotControl>(ctl: &mut C, steps: &mut [Step]) -> Result<Option<u64>, String> {
    let mut pause_ns = None;
    if !ctl.precopy_enabled() {
        return Ok(None);
    }
    for s in steps.iter_mut() {
        let Some(from) = s.old_at() else { continue };
        let name = ctl.instances()[s.inst].name.clone();
        // Another token than the stop's: an import of the pre-copy is
        // never mistaken for the final one, nor the other way round.
        let token = ((ctl.now_ns() << 8) | s.inst as u64) ^ 0x80;
        match ctl.command(from, op::PRECOPY, &[s.schema as u64, token], TRANSFER_NS) {
            Ok(msg) if msg.word(0) == 1 => pause_ns = pause_ns.max(Some(msg.word(2))),
            Ok(_) => continue,
            Err(CommandError::Refused(why)) => {
                ctl.say(&format!("  note: {name}: no pre-copy: {why}\n"));
                continue;
            }
            Err(e) => return Err(format!("{name}: the live slot failed in its pre-copy: {e}")),
        }
        match ctl.command(s.new_at(), op::IMPORT, &[token, 1], TRANSFER_NS) {
            // Imported, or the new module takes the whole state at the
            // stop (which the old one's changes bring up to date).
            Ok(_) => {}
            Err(CommandError::Refused(why)) => ctl.say(&format!("  note: {name}: pre-copy not imported: {why}\n")),
            Err(e) => return Err(format!("{name}: the new slot failed importing the pre-copy: {e}")),
        }
        s.base = token;
    }
    Ok(pause_ns)
}

/// Asks every live slot to prepare, polling the not-ready ones until the
/// deadline. On failure returns how many steps were asked.
fn quiesce<C: SlotControl>(
    ctl: &mut C,
    steps: &mut [Step],
    timeout_ns: u64,
    blackout_start: &mut u64,
) -> Result<(), (usize, String)> {
    let deadline = ctl.now_ns() + timeout_ns;
    for (n, s) in steps.iter_mut().enumerate() {
        let Some(from) = s.old_at() else { continue };
        let name = ctl.instances()[s.inst].name.clone();
        loop {
            // A ready module stops serving while this runs: calls to it are
            // bounced from here on, until the commit.
            let asked = ctl.now_ns();
            // After a pre-copy the slot exports as it stops: an export's
            // deadline (the whole state, when its changes cannot be listed).
            let within = if s.base != 0 { TRANSFER_NS } else { STEP_NS };
            match ctl.command(from, op::PREPARE, &[s.schema as u64, s.token, s.base], within) {
                Ok(msg) => {
                    let stopped = slot_time(&msg, asked, ctl.now_ns()).unwrap_or(asked);
                    *blackout_start = (*blackout_start).min(stopped);
                    s.exported = msg.count >= 2 && msg.word(1) == 1;
                    break;
                }
                Err(CommandError::NotReady) => {
                    if ctl.now_ns() > deadline {
                        return Err((n + 1, format!("{name}: prepare not ready after {} ms", timeout_ns / 1_000_000)));
                    }
                    ctl.pause(POLL_NS);
                }
                Err(e) => return Err((n + 1, format!("{name}: the live slot failed while preparing: {e}"))),
            }
        }
    }
    Ok(())
}

/// Each old slot exports while its new slot imports. Returns the bytes
/// taken by the new slots that took only the changes since a pre-copy.
fn transfer<C: SlotControl>(ctl: &mut C, steps: &[Step]) -> Result<Option<u64>, String> {
    let mut changes: Option<u64> = None;
    for s in steps {
        let Some(from) = s.old_at() else { continue };
        // The export and the import run together: the import streams behind
        // the export (on one core the export, posted first, runs to its end
        // first). An old slot that exported the changes as it stopped has
        // sealed them already.
        let export = (!s.exported).then(|| ctl.post(from, op::EXPORT, &[s.base]));
        let import = ctl.post(s.new_at(), op::IMPORT, &[s.token]);
        let deadline = ctl.now_ns() + TRANSFER_NS;
        let imported = ctl.await_reply(s.new_at(), import, deadline);
        let exported = match export {
            Some(seq) => ctl.await_reply(from, seq, deadline).map(|_| ()),
            None => Ok(()),
        };
        let name = &ctl.instances()[s.inst].name;
        match (imported, exported) {
            (Ok(msg), Ok(_)) if msg.word(0) == 1 => *changes.get_or_insert(0) += msg.word(1),
            (Ok(_), Ok(_)) => {}
            (_, Err(e)) => return Err(format!("{name}: the export failed: {e}")),
            (Err(e), _) => return Err(format!("{name}: {e}")),
        }
    }
    Ok(changes)
}

/// The point of no return: every new slot holds its state. One store per
/// instance commits it. Only then does each new slot start to serve: a
/// client with a binding from an older generation that reached a new slot
/// before the commit was bounced (NO_SERVICE), so nothing ran in a slot
/// that could still have been rolled back. Each new slot is opened (one
/// store on its page: it serves the next call that reaches it) and then
/// activated (it serves from then on even if no call came). Returns when
/// the last new slot was opened: the end of the blackout.
fn commit<C: SlotControl>(ctl: &mut C, steps: &[Step], target: Target) -> u64 {
    for s in steps {
        let inst = &mut ctl.instances_mut()[s.inst];
        inst.generation += 1;
        inst.live = Some(s.to);
        inst.held[s.to.index()] = Some(s.held);
        let (index, binding) = (inst.capmap_index, Binding { generation: inst.generation, live: Some(s.to) });
        ctl.commit(index, binding);
    }
    // Journaling starts before the new slot serves its first call.
    if matches!(target, Target::Image(_)) {
        for s in steps {
            begin_probation(ctl, s.new_at(), s.from, s.token);
        }
    }
    // A step with no old slot imported nothing: it serves from `ACTIVATE`.
    let mut blackout_end = 0;
    for s in steps.iter().filter(|s| s.from.is_some()) {
        ctl.open(s.new_at(), s.token);
        blackout_end = ctl.now_ns();
    }
    for s in steps {
        // Only a slot that failed can refuse; the fault handler deals with
        // it once this switch is over.
        if let Err(e) = ctl.command(s.new_at(), op::ACTIVATE, &[], STEP_NS) {
            let name = ctl.instances()[s.inst].name.clone();
            ctl.say(&format!("  note: activating {name}: {e}\n"))
        }
    }
    // Kick each new slot: events that reached the old one while it stood
    // still (a device's notification, say) were not lost, but nobody told
    // the new one about them.
    for s in steps {
        ctl.kick(s.new_at());
    }
    for s in steps {
        if let Some(from) = s.old_at() {
            if let Err(e) = ctl.command(from, op::RETIRE, &[], STEP_NS) {
                // Committed already; the old slot failing now only costs
                // the rollback option.
                let name = ctl.instances()[s.inst].name.clone();
                ctl.say(&format!("  note: {name}: {e}\n"));
            }
        }
    }
    blackout_end
}

/// Undoes a switch that did not commit: the first `asked` old slots are
/// thawed (their state never left them), the slots built for it reset. An
/// old slot that failed is left to the fault handler.
fn abandon<C: SlotControl>(ctl: &mut C, steps: &[Step], built: &[SlotAt], asked: usize) {
    for s in steps.iter().take(asked) {
        let Some(from) = s.old_at() else { continue };
        if ctl.failed(from) {
            continue;
        }
        if let Err(e) = ctl.command(from, op::THAW, &[], STEP_NS) {
            let name = ctl.instances()[s.inst].name.clone();
            ctl.say(&format!("  note: thawing {name}: {e}\n"));
        }
    }
    for &at in built {
        if let Err(e) = reset(ctl, at) {
            ctl.say(&format!("  note: {e}\n"));
        }
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
