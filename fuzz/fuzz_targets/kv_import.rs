//! Every kv version's state import: the derived schema readers
//! (`module_rt::schema`) into each version's store, the module types' own `import_state` (v1..v4, each schema), and a
//! round trip: what imports exports, and the export imports to the same
//! entries.
#![no_main]
use interfaces::abi::{RegionInfo, ShellEnv, ABI_VERSION};
use interfaces::Message;
use kv_core::hashed::HashStore;
use kv_core::modules::{KvV1, KvV2, KvV3, KvV4};
use kv_core::sorted::SortedStore;
use kv_core::KvStore;
use libfuzzer_sys::fuzz_target;
use module_rt::schema::{export, import};
use module_rt::{Env, Module};
use std::ffi::c_void;

/// Room for a full store in either schema (256 entries of 32 + 128 bytes).
const OUT: usize = 64 << 10;

// The kv modules never call their shell; a table of stubs is enough to
// build them through `Module::init`.
unsafe extern "C" fn notify(_: *mut c_void, _: u32) {}
unsafe extern "C" fn ppcall(_: *mut c_void, _: u32, _: *mut Message) -> i32 {
    -1
}
unsafe extern "C" fn irq_ack(_: *mut c_void, _: u32) {}
unsafe extern "C" fn channel(_: *mut c_void, _: *const u8, _: usize) -> i32 {
    -1
}
unsafe extern "C" fn region(_: *mut c_void, _: *const u8, _: usize, _: *mut RegionInfo) -> i32 {
    -1
}
unsafe extern "C" fn log(_: *mut c_void, _: *const u8, _: usize) {}
unsafe extern "C" fn abort(_: *mut c_void, _: *const u8, _: usize) -> ! {
    std::process::abort()
}

unsafe extern "C" fn no_published(_: *mut c_void, _: usize) {}
unsafe extern "C" fn no_wait(_: *mut c_void, _: usize) -> i64 {
    -1
}

fn env() -> Env {
    let table = Box::leak(Box::new(ShellEnv {
        abi_version: ABI_VERSION,
        // No streamed transfers: the stubs below are never called.
        features: 0,
        ctx: std::ptr::null_mut(),
        notify,
        ppcall,
        irq_ack,
        channel,
        region,
        log,
        abort,
        state_published: no_published,
        state_wait: no_wait,
    }));
    // SAFETY: a leaked, never-freed table of functions that touch nothing.
    unsafe { Env::from_raw(table) }.expect("non-null")
}

fn sorted_entries(s: &SortedStore) -> Vec<(Vec<u8>, Vec<u8>)> {
    s.entries().map(|(k, v)| (k.to_vec(), v.to_vec())).collect()
}

fn hashed_entries(s: &HashStore) -> Vec<(Vec<u8>, Vec<u8>, u32)> {
    s.sorted().iter().map(|(k, v)| (k.to_vec(), v.bytes.to_vec(), v.writes)).collect()
}

/// Two export buffers, allocated once: zeroing fresh 64 KiB buffers for
/// every export was most of an execution's time. Only the `..n` an export
/// reports is ever read, so what an earlier input left beyond it is inert.
struct Bufs {
    out: Vec<u8>,
    out2: Vec<u8>,
}

/// A module's import, then its export in `schema` re-imported by a fresh
/// instance gives the same export again.
fn module_round_trip<M: Module>(b: &mut Bufs, schema: u32, data: &[u8], exports: &[u32]) {
    let Bufs { out, out2 } = b;
    let mut m = M::init(env()).expect("kv init needs nothing");
    if m.import_state(schema, data).is_err() {
        // A refused import leaves an empty store.
        let own = M::DESCRIPTOR.state_schema;
        let n = m.export_state(own, out).expect("empty export");
        let mut empty = M::init(env()).unwrap();
        let n2 = empty.export_state(own, out2).unwrap();
        assert_eq!(out[..n], out2[..n2], "a refused import left state behind");
        return;
    }
    for &s in exports {
        let n = m.export_state(s, out).expect("export of imported state fits");
        let mut again = M::init(env()).unwrap();
        again.import_state(s, &out[..n]).expect("an export imports");
        let n2 = again.export_state(s, out2).unwrap();
        assert_eq!(out[..n], out2[..n2], "schema {s} export changed across a round trip");
    }
}

thread_local! {
    static BUFS: std::cell::RefCell<Bufs> =
        std::cell::RefCell::new(Bufs { out: vec![0u8; OUT], out2: vec![0u8; OUT] });
}

fuzz_target!(|data: &[u8]| {
    // Schema 1 into v1's sorted store; round trip.
    BUFS.with_borrow_mut(|b| run(b, data));
});

fn run(b: &mut Bufs, data: &[u8]) {
    let out = &mut b.out;
    let mut s = SortedStore::new();
    if import(&mut s, 1, data).is_ok() {
        assert!(s.len() <= kv_core::sorted::CAPACITY);
        let n = export(&s, 1, out).expect("fits");
        let mut t = SortedStore::new();
        import(&mut t, 1, &out[..n]).expect("export re-imports");
        assert_eq!(sorted_entries(&s), sorted_entries(&t));
        // Schema 1 into the hash store (v2+'s upgrade) keeps every entry.
        let mut h = HashStore::new();
        import(&mut h, 1, data).expect("same entries fit the hash store");
        let conv: Vec<_> = hashed_entries(&h).into_iter().map(|(k, v, _)| (k, v)).collect();
        assert_eq!(conv, sorted_entries(&s));
    } else {
        assert!(s.is_empty(), "a refused import left entries behind");
    }
    // Schema 2 into the hash store; round trip keeps write counts.
    let mut h = HashStore::new();
    if import(&mut h, 2, data).is_ok() {
        let n = export(&h, 2, out).expect("fits");
        let mut g = HashStore::new();
        import(&mut g, 2, &out[..n]).expect("export re-imports");
        assert_eq!(hashed_entries(&h), hashed_entries(&g));
    }
    // Through the module types, every schema (and one none of them reads).
    for schema in [1, 2, 3] {
        module_round_trip::<KvV1>(b, schema, data, &[1]);
        module_round_trip::<KvV2>(b, schema, data, &[1, 2]);
        module_round_trip::<KvV3>(b, schema, data, &[1, 2]);
        module_round_trip::<KvV4>(b, schema, data, &[1, 2]);
    }
}
