//! Probation: after its commit, an update is not yet final.
//!
//! The new slot journals every call its module completes (see
//! `interfaces::journal`); the old slot keeps its module and the state it
//! exported. If the new version faults or hangs while on probation, or the
//! operator rolls back, every instance of the service goes back to the old
//! version together: the old slots replay the journal on top of their state,
//! and nothing a client was told happened is lost. A probation ends (the
//! update is final, the version floor may rise) when its window has passed,
//! when the new slots have journaled the set number of calls, or when a
//! journal is full, whichever comes first.
use crate::manager::Manager;
use crate::placer::ImagePlacer;
use crate::supervise::{STEP_NS, TRANSFER_NS};
use alloc::{format, string::String, vec::Vec};
use core::sync::atomic::Ordering::Relaxed;
use interfaces::capmap::{Binding, Slot};
use interfaces::control::op;
use pd_api::Pd;

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
#[derive(Clone, Copy, Debug)]
pub struct Probation {
    /// The slot holding the version to go back to.
    pub old: Slot,
    /// Names this probation's journal.
    pub token: u64,
    pub until_ns: u64,
    pub calls: u64,
}

impl<P: Pd + 'static, L: ImagePlacer> Manager<P, L> {
    /// A new slot that just committed starts journaling (before it serves).
    pub(crate) fn begin_probation(&mut self, inst: usize, new: Slot, old: Option<Slot>, token: u64) {
        let policy = self.probation_policy;
        let Some(old) = old.filter(|_| policy.window_ms > 0) else { return };
        if let Err(e) = self.command(inst, new, op::PROBATION, &[token], STEP_NS) {
            let name = self.instances[inst].name.clone();
            self.say(&format!("  note: {name}: no probation: {e}\n"));
            return;
        }
        let until_ns = self.pd.now_ns() + policy.window_ms * 1_000_000;
        self.instances[inst].probation = Some(Probation { old, token, until_ns, calls: policy.calls });
    }

    pub(crate) fn journal_overflowed(&self, inst: usize) -> bool {
        let i = &self.instances[inst];
        i.live.is_some_and(|l| i.slots[l.index()].page.counters.journal_overflow.load(Relaxed) != 0)
    }

    fn probation_over(&self, inst: usize, now: u64) -> bool {
        let i = &self.instances[inst];
        let Some(p) = i.probation else { return false };
        let journaled = i.live.map_or(0, |l| i.slots[l.index()].page.counters.journaled.load(Relaxed));
        now >= p.until_ns || (p.calls > 0 && journaled >= p.calls) || self.journal_overflowed(inst)
    }

    /// Ends every probation that is over: the service's instances become
    /// final together.
    pub(crate) fn end_due_probations(&mut self) {
        let now = self.pd.now_ns();
        for i in 0..self.instances.len() {
            if self.probation_over(i, now) {
                let service = self.instances[i].service.clone();
                self.say("\n");
                self.make_final(&service, "probation over", true);
                self.say(crate::console::PROMPT);
            }
        }
    }

    pub(crate) fn next_probation_end(&self) -> Option<u64> {
        self.instances.iter().filter_map(|i| i.probation.map(|p| p.until_ns)).min()
    }

    /// Makes the live version of every instance of `service` final; with
    /// `raise`, its version becomes the service's floor (not when a new
    /// update cuts the probation short: that version is being left, not
    /// endorsed).
    pub(crate) fn make_final(&mut self, service: &str, why: &str, raise: bool) {
        let insts: Vec<usize> = (0..self.instances.len())
            .filter(|&i| self.instances[i].service == service && self.instances[i].probation.is_some())
            .collect();
        if insts.is_empty() {
            return;
        }
        let mut version = None;
        for &i in &insts {
            self.instances[i].probation = None;
            let Some(live) = self.instances[i].live else { continue };
            version = self.instances[i].slots[live.index()].held.map(|h| (h.image, h.descriptor.module_version));
            if let Err(e) = self.command(i, live, op::PROBATION, &[0], STEP_NS) {
                let name = self.instances[i].name.clone();
                self.say(&format!("  note: {name}: ending probation: {e}\n"));
            }
        }
        if let Some((image, v)) = version {
            self.say(&format!("{why}: {service} runs {image} (v{v}) for good\n"));
            // A version that passed its probation is the least any later
            // update may bring back.
            if raise && self.floor(service).is_some_and(|f| f < v) {
                match self.raise_floor(service, v) {
                    Ok(()) => self.say(&format!("the version floor of {service} is now v{v}\n")),
                    Err(e) => self.say(&format!("  note: the version floor of {service} stays: {e}\n")),
                }
            }
            self.record(format!("final {service}"), [None; 5], Ok(format!("{image} final ({why})")));
        }
    }

    /// Every instance of `service` goes back to the version it ran before
    /// the update on probation: the new slots stop (or have stopped:
    /// `failed`), the old ones replay the journal and take over. Returns
    /// the console's report.
    pub(crate) fn hot_rollback(&mut self, service: &str, failed: Option<(usize, Slot)>, why: &str) -> String {
        let was_busy = core::mem::replace(&mut self.busy, true);
        let t0 = self.pd.now_ns();
        let insts: Vec<(usize, Probation)> = (0..self.instances.len())
            .filter(|&i| self.instances[i].service == service)
            .filter_map(|i| self.instances[i].probation.map(|p| (i, p)))
            .collect();
        let mut report = String::new();
        // 1. Every new slot stops serving: a healthy one between two events
        // (its journal is then complete); one that does not answer is
        // stopped, and what it was running was never journaled.
        for &(i, p) in &insts {
            let new = p.old.other();
            let child = self.instances[i].slots[new.index()].child;
            if failed == Some((i, new)) || self.troubles.iter().any(|t| t.child() == child) {
                continue; // stopped already (faulted, or hung)
            }
            if let Err(e) = self.command(i, new, op::FREEZE, &[], STEP_NS) {
                report.push_str(&format!("  note: {}: freezing the new slot: {e}\n", self.instances[i].name));
            }
        }
        // 2. Every old slot replays its journal.
        let mut replayed = Vec::new();
        for &(i, p) in &insts {
            let name = self.instances[i].name.clone();
            match self.command(i, p.old, op::REPLAY, &[p.token], TRANSFER_NS) {
                Ok(m) => replayed.push(format!("{name}: {} call(s) replayed", m.word(0))),
                Err(e) => {
                    // The old version cannot take over: nothing to go back
                    // to for this instance. Reload it empty.
                    report.push_str(&format!(
                        "  {name}: the old version failed to replay its journal: {e}; reloading, its state is lost\n"
                    ));
                    self.instances[i].slots[p.old.index()].dirty = true;
                    let _ = self.reset_slot(i, p.old);
                }
            }
        }
        // 3. Commit, activate, and reset the new slots.
        for &(i, p) in &insts {
            let new = p.old.other();
            let inst = &mut self.instances[i];
            inst.probation = None;
            let back = inst.slots[p.old.index()].held.is_some();
            inst.generation += 1;
            inst.live = back.then_some(p.old);
            self.capmap.commit(inst.capmap_index, Binding { generation: inst.generation, live: inst.live });
            if back {
                if let Err(e) = self.command(i, p.old, op::ACTIVATE, &[], STEP_NS) {
                    report.push_str(&format!("  note: activating {}: {e}\n", self.instances[i].name));
                }
                self.pd.notify(self.instances[i].slots[p.old.index()].channel);
            }
            self.instances[i].slots[new.index()].dirty = true;
            if let Err(e) = self.reset_slot(i, new) {
                report.push_str(&format!("  note: {e}\n"));
            }
        }
        let us = (self.pd.now_ns() - t0) / 1000;
        let back_to = insts
            .first()
            .and_then(|&(i, _)| self.instances[i].live.and_then(|l| self.instances[i].slots[l.index()].held))
            .map_or(String::from("-"), |h| crate::update::describe(&h));
        report.push_str(&format!(
            "rolled back on probation ({why}): every instance of '{service}' runs {back_to} again; {}; nothing was lost ({us} us)\n",
            replayed.join(", ")
        ));
        let all: Vec<usize> = insts.iter().map(|&(i, _)| i).collect();
        report.push_str(&format!("done: {}\n", self.runs_summary(&all)));
        self.record(
            format!("rollback {service} (probation)"),
            [None; 5],
            Ok(format!("{why}; {}", replayed.join(", "))),
        );
        self.busy = was_busy;
        report
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

    pub(crate) fn next_timed_work(&self) -> Option<u64> {
        match (self.next_probation_end(), self.next_reload()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}
