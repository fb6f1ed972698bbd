//! kv v1: the first version of the key-value service.
#![no_std]

use kv_core::{schema1, sorted::SortedStore, KvStore};
use module_rt::interfaces::{abi::ModuleDescriptor, Message};
use module_rt::{Env, Module};

pub struct KvV1 {
    store: SortedStore,
}

impl Module for KvV1 {
    const DESCRIPTOR: ModuleDescriptor = ModuleDescriptor::new("kv", 1, schema1::SCHEMA);

    fn init(_env: Env) -> Result<Self, &'static str> {
        Ok(KvV1 { store: SortedStore::new() })
    }

    fn protected(&mut self, _ch: u32, msg: &mut Message) {
        kv_core::serve(&mut self.store, msg, None);
    }

    fn export_state(&mut self, out: &mut [u8]) -> Result<usize, i32> {
        schema1::export(self.store.entries(), out)
    }

    fn import_state(&mut self, schema: u32, data: &[u8]) -> Result<(), i32> {
        if schema != schema1::SCHEMA {
            return Err(module_rt::interfaces::abi::status::UNSUPPORTED_SCHEMA);
        }
        self.store.clear();
        schema1::import(data, &mut self.store).inspect_err(|_| self.store.clear())
    }
}

impl KvV1 {
    pub fn len(&self) -> usize {
        self.store.len()
    }
    pub fn is_empty(&self) -> bool {
        self.store.is_empty()
    }
}

module_rt::export_module!(KvV1);
