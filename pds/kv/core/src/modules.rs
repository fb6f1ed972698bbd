//! The kv service modules, one type per version. Each version's crate
//! exports one of these with `export_module!`.
use crate::hashed::HashStore;
use crate::sorted::SortedStore;
use crate::{serve, KvStore};
use interfaces::abi::ModuleDescriptor;
use interfaces::kv::{reply, KvOp, KvStatus, LIST_END};
use interfaces::Message;
use module_rt::schema::{descriptor, export, import};
use module_rt::{Env, Module};

/// v1: a sorted array; state schema 1.
pub struct KvV1 {
    store: SortedStore,
}

impl Module for KvV1 {
    const DESCRIPTOR: ModuleDescriptor = descriptor::<SortedStore>("kv", 1);

    fn init(_env: Env) -> Result<Self, &'static str> {
        Ok(KvV1 { store: SortedStore::new() })
    }

    fn protected(&mut self, _ch: u32, msg: &mut Message) {
        serve(&mut self.store, msg, None);
    }

    fn export_state(&mut self, schema: u32, out: &mut [u8]) -> Result<usize, i32> {
        export(&self.store, schema, out)
    }

    fn import_state(&mut self, schema: u32, data: &[u8]) -> Result<(), i32> {
        import(&mut self.store, schema, data)
    }
}

/// v2 and v3: a hash table counting writes per key; state schema 2; reads
/// schema 1 and writes it for a rollback to v1 (`schema::Older`). Adds the `Version` operation. `FIXED` is v3's
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
    const DESCRIPTOR: ModuleDescriptor = descriptor::<HashStore>("kv", VERSION);

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
        export(&self.store, schema, out)
    }

    fn import_state(&mut self, schema: u32, data: &[u8]) -> Result<(), i32> {
        import(&mut self.store, schema, data)
    }
}
