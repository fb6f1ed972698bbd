//! Fake slots for the protocol's unit tests: each command is answered as
//! the test scripted it (by slot and label; OK by default), every slot
//! operation is logged in order ("0b LOAD": instance 0, slot B), and each
//! slot's state is one number that `EXPORT`/`IMPORT` carry through the
//! instance's transfer region, under the token `PREPARE` was given, so
//! a test sees the state move (or not).
use super::{CommandError, Finalized, Instance, JournalCounters, Policy, SlotAt, SlotControl, Switched, Target};
use crate::image::Image;
use alloc::collections::BTreeMap;
use alloc::{format, string::String, vec, vec::Vec};
use interfaces::abi::ModuleDescriptor;
use interfaces::capmap::{Binding, Slot};
use interfaces::control::{op, probation_kind, reply};
use interfaces::Message;
use pd_api::Fault;

/// How a fake slot answers one kind of command.
#[derive(Clone, Copy, Debug)]
pub enum Answer {
    /// Answers with an error.
    Refuse(&'static str),
    /// Says not-ready this many times, then OK.
    NotReady(u32),
    /// Never answers: the wait runs to its deadline.
    Silent,
    /// Faults while the manager waits.
    Fault,
}

/// A slot, as a map key: (instance, slot index).
type Key = (usize, usize);

fn key(at: SlotAt) -> Key {
    (at.inst, at.slot.index())
}

pub struct FakeSlots {
    pub instances: Vec<Instance>,
    pub images: Vec<Image>,
    pub policy: Policy,
    pub now: u64,
    /// Every slot operation, in order.
    pub ops: Vec<String>,
    /// What each slot's module holds.
    state: BTreeMap<Key, u64>,
    /// Calls each slot journaled (or checkpointed) on probation.
    journaled: BTreeMap<Key, u64>,
    /// The slots map a checkpoint region instead of a journal: a
    /// rollback takes over the new slot's state (`checkpointed`).
    pub checkpoints: bool,
    /// The slots' modules pre-copy (`op::PRECOPY` answers that it did).
    pub precopies: bool,
    /// The new slot's checkpointed state, if any.
    checkpointed: BTreeMap<Key, u64>,
    /// The words of each PROBATION command.
    pub probation_words: Vec<Vec<u64>>,
    /// Every slot's journal is full (or its checkpoint failed).
    pub overflowed: bool,
    /// The capability map.
    pub capmap: BTreeMap<usize, Binding>,
    /// Slots that faulted or hung and were not reset since.
    pub failed: Vec<SlotAt>,
    /// What the protocol said on the console.
    pub said: String,
    /// Each update that became final: "kv kv-v2 v2 (probation over) raise".
    pub finalized: Vec<String>,
    answers: BTreeMap<(Key, u64), Answer>,
    /// The token each slot was prepared under, and each transfer region's
    /// content: (token, state).
    prepared: BTreeMap<Key, u64>,
    transfer: BTreeMap<usize, (u64, u64)>,
    /// Posted commands' answers by sequence number (`None`: silence).
    posted: BTreeMap<u64, Option<Result<Message, CommandError>>>,
    seq: u64,
}

/// Images of service `kv`: v1 keeps schema 1; v2 keeps schema 2 and
/// converts from and to 1; v9 shares no schema with v1; and one image of
/// service `fs`.
pub fn images() -> Vec<Image> {
    let image = |name, d| Image { name, bytes: b"", descriptor: Ok(d) };
    vec![
        image("kv-v1", ModuleDescriptor::new("kv", 1, 1)),
        image("kv-v2", ModuleDescriptor::new("kv", 2, 2).imports(1).exports(1)),
        image("kv-v9", ModuleDescriptor::new("kv", 9, 9)),
        image("fs-v1", ModuleDescriptor::new("fs", 1, 1)),
    ]
}

fn label(l: u64) -> &'static str {
    match l {
        op::LOAD => "LOAD",
        op::INIT => "INIT",
        op::ACTIVATE => "ACTIVATE",
        op::PREPARE => "PREPARE",
        op::IMPORT => "IMPORT",
        op::THAW => "THAW",
        op::RETIRE => "RETIRE",
        op::EXPORT => "EXPORT",
        op::PROBATION => "PROBATION",
        op::FREEZE => "FREEZE",
        op::REPLAY => "REPLAY",
        op::PRECOPY => "PRECOPY",
        _ => "?",
    }
}

fn at_name(at: SlotAt) -> String {
    format!("{}{}", at.inst, at.slot.letter())
}

impl FakeSlots {
    /// Instances `names` of service `kv`, each booted with kv-v1 into
    /// slot A and holding state `state`; the log starts empty.
    pub fn booted(names: &[&str], state: u64) -> FakeSlots {
        let mut f = FakeSlots {
            instances: names.iter().enumerate().map(|(i, n)| Instance::new((*n).into(), "kv".into(), i)).collect(),
            images: images(),
            policy: Policy::default(),
            now: 1_000_000,
            ops: Vec::new(),
            state: BTreeMap::new(),
            journaled: BTreeMap::new(),
            checkpoints: false,
            precopies: false,
            checkpointed: BTreeMap::new(),
            probation_words: Vec::new(),
            overflowed: false,
            capmap: BTreeMap::new(),
            failed: Vec::new(),
            said: String::new(),
            finalized: Vec::new(),
            answers: BTreeMap::new(),
            prepared: BTreeMap::new(),
            transfer: BTreeMap::new(),
            posted: BTreeMap::new(),
            seq: 0,
        };
        let all: Vec<usize> = (0..names.len()).collect();
        f.switch(&all, Target::Image("kv-v1")).expect("boot");
        for i in all {
            f.state.insert((i, 0), state);
        }
        f.ops.clear();
        f
    }

    /// Scripts how slot `at` answers command `label` from now on.
    pub fn script(&mut self, at: SlotAt, label: u64, answer: Answer) {
        self.answers.insert((key(at), label), answer);
    }

    /// What the module in slot `at` holds.
    pub fn state(&self, at: SlotAt) -> Option<u64> {
        self.state.get(&key(at)).copied()
    }

    /// Slot `at` journaled `calls` calls on probation.
    pub fn set_journaled(&mut self, at: SlotAt, calls: u64) {
        self.journaled.insert(key(at), calls);
    }

    /// Slot `at` checkpointed `state` after `calls` calls on probation.
    pub fn set_checkpointed(&mut self, at: SlotAt, calls: u64, state: u64) {
        self.journaled.insert(key(at), calls);
        self.checkpointed.insert(key(at), state);
    }

    pub fn switch(&mut self, insts: &[usize], target: Target) -> Result<Switched, super::Failure> {
        super::switch(self, insts, target, 10_000_000)
    }

    /// Runs a command as the slot would (at post time: on one core the
    /// export posted first runs first); `None`: the slot stays silent.
    fn run(&mut self, at: SlotAt, l: u64, words: &[u64]) -> Option<Result<Message, CommandError>> {
        let slot = key(at);
        match self.answers.get(&(slot, l)).copied() {
            Some(Answer::Refuse(why)) => return Some(Err(CommandError::Refused(why.into()))),
            Some(Answer::NotReady(n)) if n > 0 => {
                self.answers.insert((slot, l), Answer::NotReady(n - 1));
                return Some(Err(CommandError::NotReady));
            }
            Some(Answer::Silent) => return None,
            Some(Answer::Fault) => {
                self.failed.push(at);
                return Some(Err(CommandError::Faulted(Fault::Abort)));
            }
            _ => {}
        }
        let mut word = self.now;
        let mut kind = probation_kind::JOURNAL;
        match l {
            op::PROBATION => {
                self.probation_words.push(words.to_vec());
                word = if self.checkpoints { probation_kind::CHECKPOINT } else { probation_kind::JOURNAL };
            }
            op::PREPARE => {
                self.prepared.insert(slot, words[1]);
                // After its pre-copy (word 2) a module exports the changes
                // as it stops.
                let exported = self.precopies && words.get(2).is_some_and(|&base| base != 0);
                if exported {
                    self.transfer.insert(at.inst, (words[1], self.state.get(&slot).copied().unwrap_or(0)));
                }
                return Some(Ok(Message::with_words(reply::OK, &[self.now, exported as u64])));
            }
            op::EXPORT => {
                let token = self.prepared.get(&slot).copied().unwrap_or(0);
                self.transfer.insert(at.inst, (token, self.state.get(&slot).copied().unwrap_or(0)));
            }
            op::PRECOPY if !self.precopies => word = 0,
            op::PRECOPY => {
                self.transfer.insert(at.inst, (words[1], self.state.get(&slot).copied().unwrap_or(0)));
                // Did it, 8 bytes, held the slot 5 us.
                return Some(Ok(Message::with_words(reply::OK, &[1, 8, 5_000])));
            }
            op::IMPORT => match self.transfer.get(&at.inst) {
                Some(&(token, state)) if token == words[0] => {
                    self.state.insert(slot, state);
                    // A pre-copy's import is done; at the stop, a module
                    // that pre-copies takes 8 bytes of changes.
                    if words.get(1) == Some(&1) || self.precopies {
                        return Some(Ok(Message::with_words(reply::OK, &[1, 8])));
                    }
                    word = 0;
                }
                _ => return Some(Err(CommandError::Refused("no export under this token".into()))),
            },
            op::REPLAY => {
                let new = key(SlotAt::new(at.inst, at.slot.other()));
                let calls = self.journaled.get(&new).copied().unwrap_or(0);
                match self.checkpointed.get(&new) {
                    Some(&state) if self.checkpoints => {
                        self.state.insert(slot, state);
                        kind = probation_kind::CHECKPOINT;
                    }
                    _ => *self.state.entry(slot).or_default() += calls,
                }
                word = calls;
            }
            _ => {}
        }
        Some(Ok(Message::with_words(reply::OK, &[word, kind])))
    }
}

impl SlotControl for FakeSlots {
    fn instances(&self) -> &[Instance] {
        &self.instances
    }

    fn instances_mut(&mut self) -> &mut [Instance] {
        &mut self.instances
    }

    fn image(&self, name: &str) -> Option<&Image> {
        self.images.iter().find(|i| i.name == name)
    }

    fn check_floor(&self, _: &ModuleDescriptor) -> Result<(), String> {
        Ok(())
    }

    fn probation_policy(&self) -> Policy {
        self.policy
    }

    fn now_ns(&self) -> u64 {
        self.now
    }

    fn pause(&mut self, ns: u64) {
        self.now += ns;
    }

    fn load(&mut self, at: SlotAt, image: &Image) -> Result<Vec<u64>, String> {
        self.ops.push(format!("{} load {}", at_name(at), image.name));
        Ok(vec![image.bytes.len() as u64])
    }

    fn post(&mut self, at: SlotAt, l: u64, words: &[u64]) -> u64 {
        let what = match l {
            op::PREPARE if words.get(2).is_some_and(|&base| base != 0) => format!(" s{} after pre-copy", words[0]),
            op::PREPARE => format!(" s{}", words[0]),
            op::IMPORT if words.get(1) == Some(&1) => String::from(" pre-copy"),
            op::EXPORT if words.first().is_some_and(|&base| base != 0) => String::from(" changes"),
            op::PROBATION if words == [0] => String::from(" end"),
            _ => String::new(),
        };
        self.ops.push(format!("{} {}{what}", at_name(at), label(l)));
        self.seq += 1;
        let answer = self.run(at, l, words);
        self.posted.insert(self.seq, answer);
        self.seq
    }

    fn await_reply(&mut self, at: SlotAt, seq: u64, deadline: u64) -> Result<Message, CommandError> {
        self.now += 10_000;
        match self.posted.remove(&seq).expect("a posted command") {
            Some(answer) => answer,
            None => {
                self.now = self.now.max(deadline);
                self.ops.push(format!("{} hung", at_name(at)));
                self.failed.push(at);
                Err(CommandError::Hung)
            }
        }
    }

    fn journal(&self, at: SlotAt) -> JournalCounters {
        JournalCounters { journaled: self.journaled.get(&key(at)).copied().unwrap_or(0), overflowed: self.overflowed }
    }

    fn failed(&self, at: SlotAt) -> bool {
        self.failed.contains(&at)
    }

    fn reset(&mut self, at: SlotAt) -> Result<(), String> {
        self.ops.push(format!("{} reset", at_name(at)));
        self.failed.retain(|&f| f != at);
        self.state.remove(&key(at));
        Ok(())
    }

    fn restart(&mut self, at: SlotAt) -> Result<(), String> {
        self.ops.push(format!("{} restart", at_name(at)));
        self.failed.retain(|&f| f != at);
        self.state.remove(&key(at));
        Ok(())
    }

    fn kick(&mut self, at: SlotAt) {
        self.ops.push(format!("{} kick", at_name(at)));
    }

    fn commit(&mut self, capmap_index: usize, binding: Binding) {
        let live = binding.live.map_or('-', Slot::letter);
        self.ops.push(format!("commit {capmap_index} gen{} {live}", binding.generation));
        self.capmap.insert(capmap_index, binding);
    }

    fn open(&mut self, at: SlotAt, _token: u64) {
        self.ops.push(format!("{} open", at_name(at)));
    }

    fn say(&mut self, text: &str) {
        self.said.push_str(text);
    }

    fn progress(&mut self, text: &str) {
        self.said.push_str(text);
    }

    fn flush(&mut self) {}

    fn finalized(&mut self, f: Finalized<'_>) {
        let raise = if f.raise { " raise" } else { "" };
        self.finalized.push(format!("{} {} v{} ({}){raise}", f.service, f.image, f.version, f.why));
    }
}
