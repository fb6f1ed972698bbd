//! counter v1: up to 32 totals, state schema 1 (`key: u64, total: u64`).
#![no_std]

use counter_api::{ADD, FULL, GET, OK, UNKNOWN_OP};
use module_rt::interfaces::{abi::ModuleDescriptor, Message};
use module_rt::schema::{self, RecordState, Schema};
use module_rt::{state_record, Env, Module};

state_record! {
    pub struct Total { pub key: u64, pub total: u64 }
}
pub struct Schema1;
impl Schema for Schema1 {
    const ID: u32 = 1;
    const MAX_RECORDS: u32 = 32;
    type Record<'a> = Total;
}

#[derive(Default)]
pub struct Counter {
    totals: [(u64, u64); 32],
    len: usize,
}

impl RecordState for Counter {
    type Newest = Schema1;
    type Olders = ();
    fn clear(&mut self) {
        self.len = 0;
    }
    fn insert(&mut self, r: Total) -> Result<(), i32> {
        let slot = self.totals.get_mut(self.len).ok_or(module_rt::interfaces::abi::status::NO_SPACE)?;
        *slot = (r.key, r.total);
        self.len += 1;
        Ok(())
    }
    fn each(&self, f: &mut dyn FnMut(Total) -> Result<(), i32>) -> Result<(), i32> {
        self.totals[..self.len].iter().try_for_each(|&(key, total)| f(Total { key, total }))
    }
}

impl Module for Counter {
    const DESCRIPTOR: ModuleDescriptor = schema::descriptor::<Counter>("counter", 1);
    fn init(_: Env) -> Result<Self, &'static str> {
        Ok(Counter::default())
    }
    fn protected(&mut self, _ch: u32, msg: &mut Message) {
        let (key, n) = (msg.word(0), msg.word(1));
        let i = self.totals[..self.len].iter().position(|t| t.0 == key);
        let reply = match (msg.label, i) {
            (GET, i) => (OK, i.map_or(0, |i| self.totals[i].1)),
            (ADD, None) if self.len == self.totals.len() => (FULL, 0),
            (ADD, i) => {
                let i = i.unwrap_or_else(|| {
                    self.totals[self.len] = (key, 0);
                    self.len += 1;
                    self.len - 1
                });
                self.totals[i].1 = self.totals[i].1.wrapping_add(n);
                (OK, self.totals[i].1)
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
