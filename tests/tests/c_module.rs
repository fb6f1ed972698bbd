//! kv v3 written in C (pds/kv/c-v3, image kv-c3) against the generated
//! headers (interfaces/include):
//! - in this process, beside the Rust kv-v3 (both images loaded with
//!   `dlopen`, driven through their entry tables): the same reply, byte for
//!   byte, to thousands of requests, valid and malformed; each reads the
//!   other's state in both schemas; and the C import refuses every
//!   truncated or corrupted state it is handed, or takes exactly what Rust
//!   takes;
//! - in the running system, under the four clients' load: updates from
//!   Rust versions to the C one and back, rollbacks on and after
//!   probation, and a run of fast switches, with nothing lost.
use interfaces::abi::{status, ModuleEntry, RegionInfo, ShellEnv, ABI_VERSION, ENTRY_SYMBOL};
use interfaces::kv::{KvOp, KvRequest, MAX_KEY, MAX_VALUE};
use interfaces::{Message, MSG_WORDS};
use std::ffi::{c_void, CString};
use std::time::Duration;
use system_tests::{assert_clean_progress, client_totals, Rng, System};

// ---- The two modules in this process ----

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
unsafe extern "C" fn log(_: *mut c_void, text: *const u8, len: usize) {
    // SAFETY: the module passes its text and its length.
    eprintln!("[module] {}", String::from_utf8_lossy(unsafe { std::slice::from_raw_parts(text, len) }));
}
unsafe extern "C" fn abort(_: *mut c_void, _: *const u8, _: usize) -> ! {
    panic!("a module aborted")
}
unsafe extern "C" fn state_published(_: *mut c_void, _: usize) {}
unsafe extern "C" fn state_wait(_: *mut c_void, _: usize) -> i64 {
    -1
}

/// A shell environment offering no features: both modules then export
/// into, and import from, one whole buffer. Leaked: a module keeps it.
fn env() -> &'static ShellEnv {
    Box::leak(Box::new(ShellEnv {
        abi_version: ABI_VERSION,
        features: 0,
        ctx: std::ptr::null_mut(),
        notify,
        ppcall,
        irq_ack,
        channel,
        region,
        log,
        abort,
        state_published,
        state_wait,
    }))
}

/// A module image loaded into this process, initialised.
struct Loaded(&'static ModuleEntry);

impl Loaded {
    fn load(image: &str) -> Loaded {
        let bytes = xtask::build_module(image).unwrap_or_else(|e| panic!("{e}"));
        let dir = std::env::temp_dir().join(format!("c-module-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{image}.so"));
        std::fs::write(&path, bytes).unwrap();
        let c = CString::new(path.to_str().unwrap()).unwrap();
        let sym = CString::new(ENTRY_SYMBOL).unwrap();
        // SAFETY: a module image built by this workspace; never unloaded,
        // so its entry table lives for the rest of the test.
        let entry = unsafe {
            let h = libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
            assert!(!h.is_null(), "dlopen {image}");
            let e = libc::dlsym(h, sym.as_ptr()) as *const ModuleEntry;
            assert!(!e.is_null(), "{image} exports {ENTRY_SYMBOL}");
            &*e
        };
        // SAFETY: the entry points are called one at a time, as a shell does.
        assert_eq!(unsafe { (entry.init)(env()) }, status::OK, "{image} init");
        Loaded(entry)
    }

    fn call(&self, msg: &mut Message) {
        // SAFETY: as above; `msg` is a whole message.
        unsafe { (self.0.protected)(1, msg) }
    }

    fn export(&self, schema: u32) -> Result<Vec<u8>, i32> {
        let mut buf = vec![0u8; 128 * 1024];
        let mut n = 0usize;
        // SAFETY: as above; the buffer's length is passed.
        let rc = unsafe { (self.0.export_state)(schema, buf.as_mut_ptr(), buf.len(), &mut n) };
        if rc != status::OK {
            return Err(rc);
        }
        assert!(n <= buf.len());
        buf.truncate(n);
        Ok(buf)
    }

    fn import(&self, schema: u32, data: &[u8]) -> i32 {
        // SAFETY: as above.
        unsafe { (self.0.import_state)(schema, data.as_ptr(), data.len()) }
    }
}

/// A request, mostly well formed over a keyspace that fills the store
/// (so `Full` is reached), sometimes malformed in one field.
fn request(rng: &mut Rng) -> Message {
    let mut m = Message::default();
    // Filler the reply must not leak differently.
    for (i, w) in m.words.iter_mut().enumerate() {
        *w = 0x0101_0101_0101_0101u64.wrapping_mul(i as u64 + 1);
    }
    let key = format!("k{}", rng.below(300));
    let value = vec![b'a' + rng.below(26) as u8; rng.below(MAX_VALUE as u64 + 1) as usize];
    let req = match rng.below(10) {
        0..=3 => KvRequest::Put { key: key.as_bytes(), value: &value },
        4..=5 => KvRequest::Get { key: key.as_bytes() },
        6 => KvRequest::Delete { key: key.as_bytes() },
        7 => KvRequest::List { cursor: rng.below(300) as u32 },
        8 => KvRequest::Version,
        _ => KvRequest::Get { key: key.as_bytes() },
    };
    req.encode(&mut m).unwrap();
    // One request in ten is damaged the way a hostile client would.
    match rng.below(40) {
        0 => m.label = rng.below(10),
        1 => m.count = rng.below(3) as u32,
        2 => m.count = 1000,
        3 => m.bytes_mut()[0] = 0,                                       // empty key
        4 => m.bytes_mut()[0] = MAX_KEY as u8 + 1,                       // key too long
        5 => m.bytes_mut()[2..4].copy_from_slice(&200u16.to_le_bytes()), // value too long
        6 => m.bytes_mut()[2..4].copy_from_slice(&(MAX_VALUE as u16).to_le_bytes()), // value past count
        7 => {
            m.label = KvOp::List as u64;
            m.bytes_mut()[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        }
        _ => {}
    }
    m
}

/// The reply as a receiver reads it: the label and the words its count
/// covers.
fn reply_of(m: &Message) -> (u64, Vec<u64>) {
    (m.label, m.words[..(m.count as usize).min(MSG_WORDS)].to_vec())
}

#[test]
fn c_and_rust_v3_answer_alike_and_read_each_others_state() {
    let (rust, c) = (Loaded::load("kv-v3"), Loaded::load("kv-c3"));
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    for i in 0..20_000 {
        let req = request(&mut rng);
        let (mut a, mut b) = (req, req);
        rust.call(&mut a);
        c.call(&mut b);
        assert_eq!(reply_of(&a), reply_of(&b), "request {i}: {req:?}");
    }
    // The same state, in both schemas, byte for byte (v3's write counts too).
    for schema in [1, 2] {
        assert_eq!(rust.export(schema), c.export(schema), "schema {schema}");
    }
    let state2 = c.export(2).unwrap();
    let state1 = c.export(1).unwrap();
    assert!(state2.len() > 1000, "a store worth moving: {} bytes", state2.len());
    // Each reads the other's: C -> Rust -> C, in both schemas.
    for (schema, state) in [(2, &state2), (1, &state1)] {
        assert_eq!(rust.import(schema, state), status::OK);
        assert_eq!(rust.export(schema).as_ref(), Ok(state), "Rust re-exports what C exported (schema {schema})");
        assert_eq!(c.import(schema, &rust.export(schema).unwrap()), status::OK);
        assert_eq!(c.export(schema).as_ref(), Ok(state), "C re-exports what Rust exported (schema {schema})");
    }
    // Schema 1 carries no write counts: both start them at 0.
    assert_eq!(rust.import(1, &state1), status::OK);
    assert_eq!(c.import(1, &state1), status::OK);
    assert_eq!(rust.export(2), c.export(2));
    assert_eq!(c.import(3, &state2), status::UNSUPPORTED_SCHEMA);
    assert_eq!(c.export(3), Err(status::UNSUPPORTED_SCHEMA));
    // Too small a buffer is NO_SPACE, not an overrun.
    let mut small = [0u8; 16];
    let mut n = 0usize;
    // SAFETY: the buffer's length is passed.
    let rc = unsafe { (c.0.export_state)(2, small.as_mut_ptr(), small.len(), &mut n) };
    assert_eq!(rc, status::NO_SPACE);

    // Hostile state: every truncation, and single-byte corruptions. The C
    // import either refuses (and then holds nothing) or takes it, and then
    // Rust takes it too and both hold the same store.
    let empty = |m: &Loaded, schema| m.export(schema).map(|s| s.len());
    for (schema, state) in [(2u32, &state2), (1, &state1)] {
        let head = if schema == 2 { 8 } else { 4 };
        for cut in (0..state.len()).step_by(7).chain(state.len() - 1..state.len()) {
            let rc = c.import(schema, &state[..cut]);
            assert!(rc == status::BAD_STATE, "schema {schema} cut at {cut}: {rc}");
            assert_eq!(empty(&c, schema), Ok(head), "a refused import leaves nothing");
        }
        for k in 0..3000 {
            let mut bad = state.clone();
            let at = rng.below(bad.len() as u64) as usize;
            bad[at] = match k % 3 {
                0 => rng.next_u64() as u8,
                1 => bad[at] ^ 0x80,
                _ => 0xff,
            };
            let rc = c.import(schema, &bad);
            if rc == status::OK {
                assert_eq!(rust.import(schema, &bad), status::OK, "C took what Rust refuses (byte {at})");
                assert_eq!(rust.export(schema), c.export(schema), "schema {schema}, byte {at}");
            } else {
                assert!(rc == status::BAD_STATE || rc == status::NO_SPACE, "byte {at}: {rc}");
                assert_eq!(empty(&c, schema), Ok(head), "a refused import leaves nothing");
            }
        }
    }
    // A state claiming more entries than it holds, or a huge count.
    let mut lie = state2.clone();
    lie[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(c.import(2, &lie), status::BAD_STATE);
}

// ---- The C module in the running system ----

fn live(sys: &mut System) -> Vec<(String, String, String)> {
    sys.status()
        .into_iter()
        .filter(|r| r.service == "kv" && r.state == "live")
        .map(|r| (r.pd, r.version, r.detail))
        .collect()
}

/// Runs `update kv IMAGE` (or a rollback) and checks it committed on both
/// instances and the clients stayed clean.
fn switch(sys: &mut System, line: &str, runs: &str) {
    let before = sys.status();
    let out = sys.command(line);
    assert!(
        out.contains(&format!("done: kv0 runs {runs}")) && out.contains(&format!("kv1 runs {runs}")),
        "{line}:\n{out}"
    );
    assert_clean_progress(sys, &before);
    for (pd, _, detail) in live(sys) {
        assert!(detail.contains(&format!("image {}", runs.split(' ').next().unwrap())), "{pd}: {detail}");
    }
}

#[test]
fn kv_updates_from_rust_to_c_and_back_under_load_lose_nothing() {
    let mut sys = System::boot(None);
    std::thread::sleep(Duration::from_millis(300));
    let first = sys.status();
    // No probation first: every switch moves the state, so the C module
    // exports and imports both schemas, and no version floor rises.
    assert!(sys.command("probation 0").contains("0 ms"));
    switch(&mut sys, "update kv kv-c3", "kv-c3 (v3, schema 2)"); // v1 -> C: schema 1 in
    switch(&mut sys, "update kv kv-v2", "kv-v2 (v2, schema 2)"); // C -> Rust: schema 2 out
    switch(&mut sys, "update kv kv-c3", "kv-c3 (v3, schema 2)"); // Rust -> C: schema 2 in
    switch(&mut sys, "rollback kv", "kv-v2 (v2, schema 2)"); //     state moved back
    switch(&mut sys, "update kv kv-c3", "kv-c3 (v3, schema 2)");
    switch(&mut sys, "update kv kv-v1", "kv-v1 (v1, schema 1)"); // C -> v1: schema 1 out
    switch(&mut sys, "update kv kv-c3", "kv-c3 (v3, schema 2)");
    let rows = live(&mut sys);
    assert_eq!(rows.len(), 2);
    for (pd, version, detail) in &rows {
        assert_eq!(version, "3", "{pd}");
        assert!(detail.contains("image kv-c3"), "status shows the C image: {pd}: {detail}");
    }
    // Fast switches between C and Rust, typed ahead, under the same load.
    let before = sys.status();
    let mut lines = String::new();
    for k in 0..100 {
        lines.push_str(if k % 2 == 0 { "update kv kv-v3\n" } else { "update kv kv-c3\n" });
    }
    sys.type_bytes(lines.as_bytes());
    for k in 0..100 {
        let out = sys.next_output(Duration::from_secs(60));
        assert!(out.contains("done: kv0 runs") && out.contains("kv1 runs"), "switch {k} did not commit:\n{out}");
    }
    assert_clean_progress(&mut sys, &before);
    // With probation: the Rust version the update left takes over again
    // by replaying the calls the C version served (nothing moves back).
    assert!(sys.command("probation 60000").contains("60000 ms"));
    switch(&mut sys, "update kv kv-v3", "kv-v3 (v3, schema 2)");
    switch(&mut sys, "update kv kv-c3", "kv-c3 (v3, schema 2)");
    std::thread::sleep(Duration::from_millis(300));
    switch(&mut sys, "rollback kv", "kv-v3 (v3, schema 2)");
    let end = sys.status();
    let (b, a) = (client_totals(&first), client_totals(&end));
    for ((name, v0, ..), (_, v1, wrong, failed, _)) in b.iter().zip(&a) {
        assert!(v1 > v0, "{name}: verified replies grew ({v0} -> {v1})");
        assert_eq!((*wrong, *failed), (0, 0), "{name}");
    }
    let faults: u32 = end.iter().map(|r| r.faults).sum();
    assert_eq!(faults, 0, "no PD faulted: {end:?}");
    assert_eq!(sys.shutdown(), 0);
}
