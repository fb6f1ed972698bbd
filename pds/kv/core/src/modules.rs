//! The kv service modules, one type per version. Each version's crate
//! exports one of these with `export_module!`.
use crate::hashed::HashStore;
use crate::sorted::SortedStore;
use crate::{schema1, schema2, serve, KvStore};
use interfaces::abi::{status, ModuleDescriptor};
use interfaces::kv::{reply, KvOp, KvStatus, LIST_END};
use interfaces::Message;
use module_rt::{Env, Module};

/// v1: a sorted array; state schema 1.
pub struct KvV1 {
    store: SortedStore,
}

impl Module for KvV1 {
    const DESCRIPTOR: ModuleDescriptor = ModuleDescriptor::new("kv", 1, schema1::SCHEMA);

    fn init(_env: Env) -> Result<Self, &'static str> {
        Ok(KvV1 { store: SortedStore::new() })
    }

    fn protected(&mut self, _ch: u32, msg: &mut Message) {
        serve(&mut self.store, msg, None);
    }

    fn export_state(&mut self, schema: u32, out: &mut [u8]) -> Result<usize, i32> {
        match schema {
            schema1::SCHEMA => schema1::export(self.store.entries(), out),
            _ => Err(status::UNSUPPORTED_SCHEMA),
        }
    }

    fn import_state(&mut self, schema: u32, data: &[u8]) -> Result<(), i32> {
        if schema != schema1::SCHEMA {
            return Err(status::UNSUPPORTED_SCHEMA);
        }
        self.store.clear();
        schema1::import(data, &mut self.store).inspect_err(|_| self.store.clear())
    }
}

/// v2 and v3: a hash table counting writes per key; state schema 2; reads
/// schema 1 (converting: write counts start at 0) and can write schema 1
/// for a rollback to v1. Adds the `Version` operation. `FIXED` is v3's
/// code-only fix: v2 answers a `List` whose cursor is past the end with
/// `BadRequest` instead of an empty, final page.
pub struct KvHashed<const VERSION: u32, const FIXED: bool> {
    store: HashStore,
}

pub type KvV2 = KvHashed<2, false>;
pub type KvV3 = KvHashed<3, true>;
pub type KvV4 = KvHashed<4, true>;

impl<const VERSION: u32, const FIXED: bool> KvHashed<VERSION, FIXED> {
    pub fn store(&self) -> &HashStore {
        &self.store
    }
}

impl<const VERSION: u32, const FIXED: bool> Module for KvHashed<VERSION, FIXED> {
    const DESCRIPTOR: ModuleDescriptor =
        ModuleDescriptor::new("kv", VERSION, schema2::SCHEMA).imports(schema1::SCHEMA).exports(schema1::SCHEMA);

    fn init(_env: Env) -> Result<Self, &'static str> {
        Ok(KvHashed { store: HashStore::new() })
    }

    fn protected(&mut self, _ch: u32, msg: &mut Message) {
        if !FIXED && KvOp::from_label(msg.label) == Some(KvOp::List) && msg.word(0) >> 32 >= self.store.len() as u64 {
            // The v2 bug v3 fixes.
            return reply::status(msg, KvStatus::BadRequest);
        }
        serve(&mut self.store, msg, Some(VERSION));
        let _ = LIST_END;
    }

    fn export_state(&mut self, schema: u32, out: &mut [u8]) -> Result<usize, i32> {
        match schema {
            schema2::SCHEMA => schema2::export(&self.store, out),
            // Downgrade for a rollback to v1: write counts are dropped.
            schema1::SCHEMA => {
                let sorted = self.store.sorted();
                schema1::export(sorted.iter().map(|(k, v)| (*k, v.bytes.as_slice())), out)
            }
            _ => Err(status::UNSUPPORTED_SCHEMA),
        }
    }

    fn import_state(&mut self, schema: u32, data: &[u8]) -> Result<(), i32> {
        self.store.clear();
        let r = match schema {
            schema2::SCHEMA => schema2::import(data, &mut self.store),
            schema1::SCHEMA => {
                let mut old = SortedStore::new();
                schema1::import(data, &mut old).and_then(|()| {
                    old.entries().try_for_each(|(k, v)| self.store.insert(k, v, 0).map_err(|_| status::NO_SPACE))
                })
            }
            _ => Err(status::UNSUPPORTED_SCHEMA),
        };
        r.inspect_err(|_| self.store.clear())
    }
}
