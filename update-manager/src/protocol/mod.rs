//! The update protocol, behind the [`SlotControl`] trait.
//!
//! Everything the protocol does to a slot (load an image, post a control
//! command and wait for its answer with a deadline, read its counters,
//! restart it, point the capability map at it) goes through the trait, and
//! everything it decides is kept in the plain [`Instance`] records. The
//! manager implements the trait on its real slots (`manager::slots`);
//! the unit tests implement it on fake slots that script each answer and
//! log each operation (`tests`).
#[cfg(test)]
mod fake_slots;
mod probation;
mod switch;
#[cfg(test)]
mod tests;

use crate::image::Image;
use alloc::{format, string::String, vec::Vec};
use interfaces::abi::ModuleDescriptor;
use interfaces::capmap::{Binding, Slot};
use interfaces::Message;
use pd_api::Fault;

pub use probation::{
    begin_probation, hot_rollback, journal_overflowed, make_final, next_probation_end, probation_end_reason, Policy,
    Probation,
};
pub use switch::{switch, Failure, Switched, Target};

/// Deadline of one control step (load, init, activate, ...).
pub const STEP_NS: u64 = 3_000_000_000;
/// Deadline of an export or an import (they copy the state).
pub const TRANSFER_NS: u64 = 5_000_000_000;
/// A slot inside one event for this long with no progress in it hangs
/// (the watchdog's limit).
pub const HANG_NS: u64 = 1_000_000_000;
/// A slot inside one event for this long hangs even if it makes progress:
/// far above any real event (a 4 MiB journal replayed in QEMU on a loaded
/// machine), it stops a module that calls out in a loop for ever.
pub const EVENT_LIMIT_NS: u64 = 30_000_000_000;

/// One slot of one service instance: the instance's index and A or B.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotAt {
    pub inst: usize,
    pub slot: Slot,
}

impl SlotAt {
    pub fn new(inst: usize, slot: Slot) -> SlotAt {
        SlotAt { inst, slot }
    }
}

/// A module held by a slot (live or retired), and where it came from.
#[derive(Clone, Copy, Debug)]
pub struct Held {
    pub image: &'static str,
    pub descriptor: ModuleDescriptor,
}

/// What the protocol knows of one service instance: its slot pair's
/// modules and binding. No slot access: that is [`SlotControl`]'s.
pub struct Instance {
    pub name: String,
    pub service: String,
    pub capmap_index: usize,
    /// The slot the capability map names, if any.
    pub live: Option<Slot>,
    pub generation: u64,
    /// The module loaded in each slot (A, B), if any.
    pub held: [Option<Held>; 2],
    /// The live version's probation, until the update is final.
    pub probation: Option<Probation>,
}

impl Instance {
    pub fn new(name: String, service: String, capmap_index: usize) -> Instance {
        Instance { name, service, capmap_index, live: None, generation: 0, held: [None, None], probation: None }
    }

    /// The module of the live slot.
    pub fn live_held(&self) -> Option<Held> {
        self.live.and_then(|s| self.held[s.index()])
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

/// A slot's journal counters, as its control page shows them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JournalCounters {
    /// Calls journaled since probation began.
    pub journaled: u64,
    /// The journal ran out of room (the old version can no longer replay).
    pub overflowed: bool,
}

/// The update of a service became final: its owner says so, logs it, and
/// (with `raise`) lifts the version floor to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finalized<'a> {
    pub service: &'a str,
    pub image: &'static str,
    pub version: u32,
    pub why: &'a str,
    pub raise: bool,
}

/// What the update protocol needs from the slot pairs it switches, and
/// from their owner.
pub trait SlotControl {
    /// The protocol's records of every instance.
    fn instances(&self) -> &[Instance];
    fn instances_mut(&mut self) -> &mut [Instance];
    /// The image store: an image by name.
    fn image(&self, name: &str) -> Option<&Image>;
    /// Refuses a module below its service's version floor.
    fn check_floor(&self, d: &ModuleDescriptor) -> Result<(), String>;
    /// The probation settings for the updates that commit now.
    fn probation_policy(&self) -> Policy;
    /// Whether updates pre-copy the state of a module that can.
    fn precopy_enabled(&self) -> bool {
        true
    }

    /// Monotonic time.
    fn now_ns(&self) -> u64;
    /// Lets `ns` pass (taking other events meanwhile).
    fn pause(&mut self, ns: u64);

    /// Writes `image` into the slot's code region; returns the words of
    /// its `LOAD` command. The slot counts as loaded from then on.
    fn load(&mut self, at: SlotAt, image: &Image) -> Result<Vec<u64>, String>;
    /// Posts a control command and wakes the slot; returns its sequence
    /// number.
    fn post(&mut self, at: SlotAt, label: u64, words: &[u64]) -> u64;
    /// Waits for the answer to command `seq` until `deadline`. A slot that
    /// faults or misses the deadline is left stopped.
    fn await_reply(&mut self, at: SlotAt, seq: u64, deadline: u64) -> Result<Message, CommandError>;
    /// The slot's journal counters.
    fn journal(&self, at: SlotAt) -> JournalCounters;
    /// The slot faulted or hung, and its trouble is not dealt with yet.
    fn failed(&self, at: SlotAt) -> bool;
    /// Makes the slot empty: restarts it if anything was loaded since it
    /// last started (a module is never unloaded in place).
    fn reset(&mut self, at: SlotAt) -> Result<(), String>;
    /// Restarts the slot whatever it holds (it failed, or its module must
    /// go).
    fn restart(&mut self, at: SlotAt) -> Result<(), String>;
    /// Tells the slot events may be waiting for it.
    fn kick(&mut self, at: SlotAt);
    /// One atomic store in the capability map.
    fn commit(&mut self, capmap_index: usize, binding: Binding);
    /// Lets the new slot serve the import `token` it holds from now on:
    /// one store on its control page, no wake-up (a call reaching it does).
    fn open(&mut self, at: SlotAt, token: u64);

    /// Console output.
    fn say(&mut self, text: &str);
    /// A phase's progress line (shown only when the owner is verbose).
    fn progress(&mut self, text: &str);
    /// Sends the output said so far.
    fn flush(&mut self);
    /// An update became final.
    fn finalized(&mut self, f: Finalized<'_>);

    /// Posts a command and waits for its answer, within `within_ns`.
    fn command(&mut self, at: SlotAt, label: u64, words: &[u64], within_ns: u64) -> Result<Message, CommandError> {
        let seq = self.post(at, label, words);
        let deadline = self.now_ns() + within_ns;
        self.await_reply(at, seq, deadline)
    }
}

/// "kv0 runs kv-v2 (v2, schema 2) in slot b (generation 2); kv1 ..."
pub fn runs_summary(instances: &[Instance], insts: &[usize]) -> String {
    let mut parts = Vec::new();
    for &i in insts {
        let inst = &instances[i];
        let Some(live) = inst.live else {
            parts.push(format!("{} runs nothing", inst.name));
            continue;
        };
        let held = inst.held[live.index()].map_or(String::from("-"), |h| describe(&h));
        parts.push(format!("{} runs {held} in slot {} (generation {})", inst.name, live.letter(), inst.generation));
    }
    parts.join("; ")
}

pub fn describe(h: &Held) -> String {
    format!("{} (v{}, schema {})", h.image, h.descriptor.module_version, h.descriptor.state_schema)
}
