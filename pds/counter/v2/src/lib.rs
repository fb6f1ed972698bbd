//! counter v2: each total also counts the adds that made it, and `adds(key)`
//! answers that count. State schema 2 (`key: u64, total: u64, adds: u64`);
//! it imports v1's schema 1 (adds start at 0) and exports it for a rollback.
#![no_std]

use counter_api::{ADD, ADDS, FULL, GET, OK, UNKNOWN_OP};
use module_rt::interfaces::{abi::ModuleDescriptor, Message};
use module_rt::schema::{self, Older, RecordState, Schema};
use module_rt::{state_record, Env, Module};

state_record! {
    pub struct Total1 { pub key: u64, pub total: u64 }
}
pub struct Schema1;
impl Schema for Schema1 {
    const ID: u32 = 1;
    const MAX_RECORDS: u32 = 32;
    type Record<'a> = Total1;
}

state_record! {
    pub struct Total2 { pub key: u64, pub total: u64, pub adds: u32 }
}
pub struct Schema2;
impl Schema for Schema2 {
    const ID: u32 = 2;
    const TAG: &'static [u8] = b"CNT2";
    const MAX_RECORDS: u32 = 32;
    type Record<'a> = Total2;
}

impl Older<'_, Schema2> for Schema1 {
    fn upgrade(r: Total1) -> Result<Total2, i32> {
        Ok(Total2 { key: r.key, total: r.total, adds: 0 })
    }
    fn downgrade(r: Total2) -> Result<Total1, i32> {
        Ok(Total1 { key: r.key, total: r.total })
    }
}

#[derive(Default)]
pub struct Counter {
    totals: [(u64, u64, u32); 32],
    len: usize,
}

impl RecordState for Counter {
    type Newest = Schema2;
    type Olders = (Schema1,);
    fn clear(&mut self) {
        self.len = 0;
    }
    fn insert(&mut self, r: Total2) -> Result<(), i32> {
        let slot = self.totals.get_mut(self.len).ok_or(module_rt::interfaces::abi::status::NO_SPACE)?;
        *slot = (r.key, r.total, r.adds);
        self.len += 1;
        Ok(())
    }
    fn each(&self, f: &mut dyn FnMut(Total2) -> Result<(), i32>) -> Result<(), i32> {
        self.totals[..self.len].iter().try_for_each(|&(key, total, adds)| f(Total2 { key, total, adds }))
    }
}

impl Module for Counter {
    const DESCRIPTOR: ModuleDescriptor = schema::descriptor::<Counter>("counter", 2);
    fn init(_: Env) -> Result<Self, &'static str> {
        Ok(Counter::default())
    }
    fn protected(&mut self, _ch: u32, msg: &mut Message) {
        let (key, n) = (msg.word(0), msg.word(1));
        let i = self.totals[..self.len].iter().position(|t| t.0 == key);
        let reply = match (msg.label, i) {
            (GET, i) => (OK, i.map_or(0, |i| self.totals[i].1)),
            (ADDS, i) => (OK, i.map_or(0, |i| self.totals[i].2 as u64)),
            (ADD, None) if self.len == self.totals.len() => (FULL, 0),
            (ADD, i) => {
                let i = i.unwrap_or_else(|| {
                    self.totals[self.len] = (key, 0, 0);
                    self.len += 1;
                    self.len - 1
                });
                let t = &mut self.totals[i];
                (t.1, t.2) = (t.1.wrapping_add(n), t.2.wrapping_add(1));
                (OK, t.1)
            }
            _ => (UNKNOWN_OP, 0),
        };
        *msg = Message::with_words(reply.0, &[reply.1]);
    }
    fn export_state(&mut self, schema: u32, out: &mut [u8]) -> Result<usize, i32> {
        schema::export(self, schema, out)
    }
    fn import_state(&mut self, schema: u32, data: &[u8]) -> Result<(), i32> {
        schema::import(self, schema, data)
    }
}

module_rt::export_module!(Counter);
