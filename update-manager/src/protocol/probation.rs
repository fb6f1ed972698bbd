//! Probation: after its commit, an update is not yet final.
//!
//! The new slot journals every call its module completes (see
//! `interfaces::journal`), or, if its slots map a checkpoint region instead
//! (a service whose calls cannot run twice: the file service), checkpoints
//! its state after every call in the schema the old version imports (see
//! `interfaces::checkpoint`); the old slot keeps its module and the state it
//! exported. If the new version faults or hangs while on probation, or the
//! operator rolls back, every instance of the service goes back to the old
//! version together: the old slots replay the journal on top of their state
//! (or import the last checkpoint), and nothing a client was told happened
//! is lost. A probation ends (the update is final, the version floor may
//! rise) when its window has passed, when the new slots have journaled (or
//! checkpointed) the set number of calls, or when a journal is full or a
//! checkpoint fails, whichever comes first.
use super::{describe, runs_summary, Finalized, SlotAt, SlotControl, STEP_NS, TRANSFER_NS};
use alloc::{format, string::String, vec::Vec};
use interfaces::capmap::{Binding, Slot};
use interfaces::control::{op, probation_kind};

/// How long an update stays on probation, by default.
pub const DEFAULT_WINDOW_MS: u64 = 5_000;

/// The operator's probation settings for the next updates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    pub window_ms: u64,
    /// End probation once a slot has journaled this many calls (0: only
    /// the window and the journal's room bound it).
    pub calls: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy { window_ms: DEFAULT_WINDOW_MS, calls: 0 }
    }
}

/// One instance's probation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probation {
    /// The slot holding the version to go back to.
    pub old: Slot,
    /// Names this probation's journal.
    pub token: u64,
    pub until_ns: u64,
    pub calls: u64,
    /// The new slot checkpoints its state (else it journals its calls).
    pub checkpoint: bool,
}

impl Probation {
    /// What the new slot keeps: "journaled" or "checkpointed".
    pub fn kept(&self) -> &'static str {
        if self.checkpoint {
            "checkpointed"
        } else {
            "journaled"
        }
    }
}

/// A new slot that just committed starts journaling or checkpointing
/// (before it serves). A checkpoint is in the schema the old version
/// imports, as a rollback after the probation would move the state.
pub fn begin_probation<C: SlotControl>(ctl: &mut C, new: SlotAt, old: Option<Slot>, token: u64) {
    let policy = ctl.probation_policy();
    let Some(old) = old.filter(|_| policy.window_ms > 0) else { return };
    let held = ctl.instances()[new.inst].held;
    let schema = match (held[new.slot.index()], held[old.index()]) {
        (Some(n), Some(o)) => n.descriptor.transfer_schema(&o.descriptor).unwrap_or(0),
        _ => 0,
    };
    let checkpoint = match ctl.command(new, op::PROBATION, &[token, schema as u64], STEP_NS) {
        Ok(m) => m.word(0) == probation_kind::CHECKPOINT,
        Err(e) => {
            let name = ctl.instances()[new.inst].name.clone();
            ctl.say(&format!("  note: {name}: no probation: {e}\n"));
            return;
        }
    };
    let until_ns = ctl.now_ns() + policy.window_ms * 1_000_000;
    ctl.instances_mut()[new.inst].probation = Some(Probation { old, token, until_ns, calls: policy.calls, checkpoint });
}

/// Why the probation of `inst` ended, if it did at `now`.
pub fn probation_end_reason<C: SlotControl>(ctl: &C, inst: usize, now: u64) -> Option<&'static str> {
    let i = &ctl.instances()[inst];
    let p = i.probation?;
    let journaled = i.live.map_or(0, |l| ctl.journal(SlotAt::new(inst, l)).journaled);
    if journal_overflowed(ctl, inst) {
        Some(if p.checkpoint {
            "probation over: a checkpoint failed (see the slot's log), so the old version could not catch up"
        } else {
            "probation over: the journal is full"
        })
    } else if p.calls > 0 && journaled >= p.calls {
        Some("probation over: its calls were served")
    } else if now >= p.until_ns {
        Some("probation over")
    } else {
        None
    }
}

/// The live slot's journal ran out of room: the old version can no longer
/// catch up with it.
pub fn journal_overflowed<C: SlotControl>(ctl: &C, inst: usize) -> bool {
    ctl.instances()[inst].live.is_some_and(|l| ctl.journal(SlotAt::new(inst, l)).overflowed)
}

/// When the first probation ends, if one runs.
pub fn next_probation_end<C: SlotControl>(ctl: &C) -> Option<u64> {
    ctl.instances().iter().filter_map(|i| i.probation.map(|p| p.until_ns)).min()
}

/// Makes the live version of every instance of `service` final; with
/// `raise`, its version becomes the service's floor (not when a new update
/// cuts the probation short: that version is being left, not endorsed).
pub fn make_final<C: SlotControl>(ctl: &mut C, service: &str, why: &str, raise: bool) {
    let insts: Vec<usize> = (0..ctl.instances().len())
        .filter(|&i| ctl.instances()[i].service == service && ctl.instances()[i].probation.is_some())
        .collect();
    if insts.is_empty() {
        return;
    }
    let mut version = None;
    for &i in &insts {
        ctl.instances_mut()[i].probation = None;
        let Some(live) = ctl.instances()[i].live else { continue };
        version = ctl.instances()[i].held[live.index()].map(|h| (h.image, h.descriptor.module_version));
        if let Err(e) = ctl.command(SlotAt::new(i, live), op::PROBATION, &[0], STEP_NS) {
            let name = ctl.instances()[i].name.clone();
            ctl.say(&format!("  note: {name}: ending probation: {e}\n"));
        }
    }
    if let Some((image, version)) = version {
        ctl.finalized(Finalized { service, image, version, why, raise });
    }
}

/// A rollback on probation, for the console and the log.
pub struct Rollback {
    /// The console's report.
    pub report: String,
    /// What each instance's old version replayed (or imported).
    pub replayed: String,
}

/// Every instance of `service` goes back to the version it ran before the
/// update on probation: the new slots stop (or have stopped: `failed`), the
/// old ones replay the journal and take over.
pub fn hot_rollback<C: SlotControl>(ctl: &mut C, service: &str, failed: Option<SlotAt>, why: &str) -> Rollback {
    let t0 = ctl.now_ns();
    let insts: Vec<(usize, Probation)> = (0..ctl.instances().len())
        .filter(|&i| ctl.instances()[i].service == service)
        .filter_map(|i| ctl.instances()[i].probation.map(|p| (i, p)))
        .collect();
    let mut report = String::new();
    // 1. Every new slot stops serving: a healthy one between two events
    // (its journal is then complete); one that does not answer is stopped,
    // and what it was running was never journaled.
    for &(i, p) in &insts {
        let new = SlotAt::new(i, p.old.other());
        if failed == Some(new) || ctl.failed(new) {
            continue; // stopped already (faulted, or hung)
        }
        if let Err(e) = ctl.command(new, op::FREEZE, &[], STEP_NS) {
            report.push_str(&format!("  note: {}: freezing the new slot: {e}\n", ctl.instances()[i].name));
        }
    }
    // 2. Every old slot replays its journal (or imports the checkpoint).
    let mut replayed = Vec::new();
    for &(i, p) in &insts {
        let name = ctl.instances()[i].name.clone();
        let old = SlotAt::new(i, p.old);
        match ctl.command(old, op::REPLAY, &[p.token], TRANSFER_NS) {
            Ok(m) if m.word(1) == probation_kind::CHECKPOINT => {
                replayed.push(format!("{name}: took over the checkpoint after {} call(s)", m.word(0)))
            }
            Ok(m) => replayed.push(format!("{name}: {} call(s) replayed", m.word(0))),
            Err(e) => {
                // The old version cannot take over: nothing to go back to
                // for this instance. Reload it empty.
                let what = if p.checkpoint { "take over the checkpoint" } else { "replay its journal" };
                report.push_str(&format!(
                    "  {name}: the old version failed to {what}: {e}; reloading, its state is lost\n"
                ));
                ctl.instances_mut()[i].held[p.old.index()] = None;
                let _ = ctl.restart(old);
            }
        }
    }
    // 3. Commit, activate, and reset the new slots.
    for &(i, p) in &insts {
        let (old, new) = (SlotAt::new(i, p.old), SlotAt::new(i, p.old.other()));
        let inst = &mut ctl.instances_mut()[i];
        inst.probation = None;
        let back = inst.held[p.old.index()].is_some();
        inst.generation += 1;
        inst.live = back.then_some(p.old);
        let (index, binding) = (inst.capmap_index, Binding { generation: inst.generation, live: inst.live });
        ctl.commit(index, binding);
        if back {
            if let Err(e) = ctl.command(old, op::ACTIVATE, &[], STEP_NS) {
                report.push_str(&format!("  note: activating {}: {e}\n", ctl.instances()[i].name));
            }
            ctl.kick(old);
        }
        ctl.instances_mut()[i].held[new.slot.index()] = None;
        if let Err(e) = ctl.restart(new) {
            report.push_str(&format!("  note: {e}\n"));
        }
    }
    let us = (ctl.now_ns() - t0) / 1000;
    let back_to =
        insts.first().and_then(|&(i, _)| ctl.instances()[i].live_held()).map_or(String::from("-"), |h| describe(&h));
    let replayed = replayed.join(", ");
    report.push_str(&format!(
        "rolled back on probation ({why}): every instance of '{service}' runs {back_to} again; {replayed}; nothing was lost ({us} us)\n",
    ));
    let all: Vec<usize> = insts.iter().map(|&(i, _)| i).collect();
    report.push_str(&format!("done: {}\n", runs_summary(ctl.instances(), &all)));
    Rollback { report, replayed }
}
