//! PDs for the update benchmarks (tests/benches/updates.rs), chosen by PD
//! name; results are logged as `BENCH name: value` lines.
//! - `kvdirect`: hosts the kv module with no shell: its code region is
//!   prefilled with the module, which it loads and calls directly.
//! - `benchclient`: kv gets through the capability map and the shell
//!   (the client stub) against the same gets sent straight to `kvdirect`,
//!   in alternating batches; prints `updatable_ppc_ratio`.
//! - `blobfill<N>`: fills the blob service's state with N bytes, then keeps
//!   it in the caches while a "warm" generation is live.
//! - `blobcheck<N>`: fills the state and checks its checksum for ever.
//! - `blobwrite<N>`: the same, writing 8 bytes at a pseudo-random place
//!   between two checks (a state that changes while it is pre-copied).
//! - `capwriter`: a hostile client that writes the capability map.
//! - `probclient`: kv puts in batches, each logged with its start, end and
//!   cost per call (`BATCH start_ns end_ns ns_per_call`): the benchmark
//!   sorts them by whether a probation was on.
//! - `fsdirect`, `fsratio`, `fsdirty`: the file service's benchmarks
//!   (`fs.rs` here, driven by tests/benches/fs.rs).
//! - `hangclient`: kv puts and gets, each checked; a call that took over
//!   200 ms (it hit a slot that hung, and was answered after the rollback)
//!   is logged as `BENCH hang_recovery_ms: N`.
use domain_shell::{host_loader::SharedObjectLoader, ModuleLoader};
use host_runtime::HostPd;
use interfaces::abi::{ModuleEntry, RegionInfo, ShellEnv, ABI_VERSION};
use interfaces::kv::{KvReply, KvRequest};
use interfaces::Message;
use pd_api::{ChannelId, Handler, Pd};
use std::ffi::c_void;
use std::time::Instant;

#[path = "bench_pd/fs.rs"]
mod fs;
#[path = "bench_pd/placement.rs"]
mod placement;

struct Idle;
impl Handler<HostPd> for Idle {
    fn notified(&mut self, _pd: &HostPd, _ch: ChannelId) {}
}

struct Direct(&'static ModuleEntry);
impl Handler<HostPd> for Direct {
    fn notified(&mut self, _pd: &HostPd, _ch: ChannelId) {}
    fn protected(&mut self, _pd: &HostPd, ch: ChannelId, msg: &mut Message) {
        // SAFETY: the module's own entry point, one call at a time.
        unsafe { (self.0.protected)(ch, msg) }
    }
}

unsafe extern "C" fn no_notify(_: *mut c_void, _: u32) {}
unsafe extern "C" fn no_ppcall(_: *mut c_void, _: u32, _: *mut Message) -> i32 {
    -1
}
unsafe extern "C" fn no_channel(_: *mut c_void, _: *const u8, _: usize) -> i32 {
    -1
}
unsafe extern "C" fn no_region(_: *mut c_void, _: *const u8, _: usize, _: *mut RegionInfo) -> i32 {
    -1
}
unsafe extern "C" fn no_log(_: *mut c_void, _: *const u8, _: usize) {}
unsafe extern "C" fn abort(_: *mut c_void, _: *const u8, _: usize) -> ! {
    std::process::abort()
}

unsafe extern "C" fn no_published(_: *mut c_void, _: usize) {}
unsafe extern "C" fn no_wait(_: *mut c_void, _: usize) -> i64 {
    -1
}

/// Loads the module prefilled into `module_code` (not yet initialised).
fn load_prefilled(pd: &HostPd) -> (&'static ModuleEntry, interfaces::abi::ModuleDescriptor) {
    let code = pd.region("module_code").expect("module_code region");
    // SAFETY: prefilled by the runtime, read-only, never written again.
    let bytes = unsafe { code.as_slice() };
    let h = interfaces::elf::Elf::parse(bytes).expect("an ELF module").header;
    // The file ends with its section headers.
    let len = h.shoff as usize + h.shnum as usize * h.shentsize as usize;
    SharedObjectLoader.load(bytes, &[len as u64]).expect("load the prefilled module")
}

/// Loads the kv module prefilled into `module_code` and initialises it
/// with an environment that offers nothing (kv needs nothing).
fn load_direct(pd: &HostPd) -> &'static ModuleEntry {
    let (entry, _) = load_prefilled(pd);
    let env = Box::leak(Box::new(ShellEnv {
        abi_version: ABI_VERSION,
        // No streamed transfers: the stubs below are never called.
        features: 0,
        ctx: std::ptr::null_mut(),
        notify: no_notify,
        ppcall: no_ppcall,
        irq_ack: no_notify,
        channel: no_channel,
        region: no_region,
        log: no_log,
        abort,
        state_published: no_published,
        state_wait: no_wait,
    }));
    // SAFETY: a checked module; `env` lives for ever.
    assert_eq!(unsafe { (entry.init)(env) }, 0, "module init");
    entry
}

pub(crate) fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn bench_client(pd: &HostPd) {
    let direct = pd.channel("kvdirect").expect("channel to kvdirect");
    let mut kv = kv_api::KvClient::connect(pd, "kv").expect("kv instance");
    let mut out = [0u8; 128];
    kv.put(b"bench", b"value").expect("put");
    let mut msg = Message::default();
    KvRequest::Put { key: b"bench", value: b"value" }.encode(&mut msg).unwrap();
    pd.ppcall(direct, &mut msg).expect("direct put");
    let slot = pd.channel("kv0_a").expect("channel to kv0_a");
    match placement::client_and_servers(&["kv0_a", "kv0_b", "kvdirect"]) {
        Some((client, servers)) => {
            pd.log(format_args!("BENCH placement: client on cpu {client}, servers on cpu {servers}"))
        }
        None => pd.log(format_args!("BENCH placement: one core, nothing pinned")),
    }
    // The same client-side work as the stub does, minus the capability
    // map: encode, call, validate the reply, copy the value out.
    let mut plain_get = |ch: ChannelId| {
        KvRequest::Get { key: b"bench" }.encode(&mut msg).unwrap();
        pd.ppcall(ch, &mut msg).expect("plain get");
        let r = KvReply::parse(&msg).expect("a kv reply");
        assert_eq!(r.data, b"value", "the value put");
        out[..r.data.len()].copy_from_slice(r.data);
    };
    let mut stub_get = || {
        let mut value = [0u8; 128];
        assert_eq!(kv.get(b"bench", &mut value).expect("get"), Some(5), "the value put");
    };
    // Short batches, many rounds, the order of the sides rotated each
    // round, and the median of each round's own ratio: a shared machine's
    // drift (frequency, other load, where the scheduler put each process)
    // moves both sides of a round alike and cancels in its ratio.
    const BATCH: u32 = 2_000;
    const ROUNDS: usize = 15;
    let (mut upd, mut dir, mut raw, mut ratios) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS + 1 {
        let (mut u, mut d, mut r) = (0.0, 0.0, 0.0);
        for side in 0..3 {
            let t = Instant::now();
            match (side + round) % 3 {
                0 => (0..BATCH).for_each(|_| stub_get()),
                1 => (0..BATCH).for_each(|_| plain_get(direct)),
                // The live slot called directly: the shell without the stub.
                _ => (0..BATCH).for_each(|_| plain_get(slot)),
            }
            let ns = t.elapsed().as_nanos() as f64 / BATCH as f64;
            *[&mut u, &mut d, &mut r][(side + round) % 3] = ns;
        }
        if round > 0 {
            // The first round warms every path up.
            upd.push(u);
            dir.push(d);
            raw.push(r);
            ratios.push(u / d);
        }
    }
    let (u, d) = (median(&mut upd), median(&mut dir));
    pd.log(format_args!("BENCH shell_without_stub_ppc_ns: {:.0}", median(&mut raw)));
    pd.log(format_args!("BENCH updatable_ppc_ns: {u:.0}"));
    pd.log(format_args!("BENCH direct_ppc_ns: {d:.0}"));
    pd.log(format_args!("BENCH medians_ratio_updatable_over_direct: {:.3}", u / d));
    pd.log(format_args!("BENCH updatable_ppc_ratio: {:.3}", median(&mut ratios)));
}

/// The blob service's client: its requests are bare words.
struct BlobStub<'p>(service_stub::Stub<'p, HostPd>);

impl<'p> BlobStub<'p> {
    fn new(pd: &'p HostPd) -> BlobStub<'p> {
        BlobStub(service_stub::Stub::connect(pd, "blob").expect("a blob instance"))
    }

    fn binding(&self) -> Option<interfaces::capmap::Binding> {
        self.0.instance().binding()
    }

    /// One call, run exactly once in the live slot.
    fn call(&mut self, label: u64, words: &[u64]) -> Message {
        let mut msg = Message::default();
        let encode = |m: &mut Message| -> Result<(), ()> {
            *m = Message::with_words(label, words);
            Ok(())
        };
        self.0.call(&mut msg, encode).expect("blob call");
        msg
    }
}

/// Fills blob with `len` bytes; then, while the live generation is a warm
/// one, reads the state every millisecond, as a service in use would
/// (every cache line, not a checksum: only the caches matter here), and
/// writes 8 bytes of it, a page further each time (so an update's
/// pre-copy is stale by its stop, as a service's in use would be).
fn blob_fill(pd: &HostPd, len: u64) {
    let mut blob = BlobStub::new(pd);
    assert_eq!(blob.call(blob_core::FILL, &[len, 7]).word(0), len, "blob filled");
    pd.log(format_args!("FILLED {len}"));
    let mut at = 0;
    while !pd.halting() {
        if blob.binding().is_some_and(|b| system_tests::systems::warm_generation(b.generation)) {
            let msg = blob.call(blob_core::TOUCH, &[]);
            assert_eq!(msg.word(0), len, "blob touched");
            let msg = blob.call(blob_core::POKE, &[at, at]);
            assert_eq!((msg.label, msg.word(0)), (0, len), "blob written");
            at = (at + 4096) % (len & !7).max(8);
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// Fills blob with `len` bytes, then checks it for ever: each CHECKSUM
/// must give the length and the checksum of what the client wrote,
/// whichever slot answers. With `writes`, each check follows 8 POKEs at
/// pseudo-random 8-byte places (kept in a copy of the state here), so the
/// state changes between an update's pre-copy and its stop. Logs
/// `BLOBCHECK ok=N wrong=M` every 50 checks.
fn blob_check(pd: &HostPd, len: u64, writes: bool) {
    let mut blob = BlobStub::new(pd);
    let mut state = vec![0u8; len as usize];
    blob_core::fill(&mut state, 11);
    assert_eq!(blob.call(blob_core::FILL, &[len, 11]).word(0), len, "blob filled");
    pd.log(format_args!("FILLED {len}"));
    let (mut ok, mut wrong, mut x) = (0u64, 0u64, 0x9e37_79b9_7f4a_7c15u64);
    while !pd.halting() {
        for _ in 0..if writes { 8 } else { 0 } {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let at = (x % (len / 8)) * 8;
            let reply = blob.call(blob_core::POKE, &[at, x]);
            assert_eq!((reply.label, reply.word(0)), (0, len), "poke at {at}");
            state[at as usize..at as usize + 8].copy_from_slice(&x.to_le_bytes());
        }
        let want = interfaces::transfer::fnv1a(&state);
        let msg = blob.call(blob_core::CHECKSUM, &[]);
        if msg.label == 0 && msg.word(0) == len && msg.word(1) == want {
            ok += 1;
        } else {
            wrong += 1;
            pd.log(format_args!("BLOBCHECK wrong reply: label {} words {:?}", msg.label, msg.used_words()));
        }
        if (ok + wrong) % 50 == 0 {
            pd.log(format_args!("BLOBCHECK ok={ok} wrong={wrong}"));
        }
    }
}

enum Role {
    Direct(Direct),
    Idle(Idle),
}

impl Handler<HostPd> for Role {
    fn notified(&mut self, _pd: &HostPd, _ch: ChannelId) {}
    fn protected(&mut self, pd: &HostPd, ch: ChannelId, msg: &mut Message) {
        match self {
            Role::Direct(d) => d.protected(pd, ch, msg),
            Role::Idle(i) => i.protected(pd, ch, msg),
        }
    }
}

fn prob_client(pd: &HostPd) {
    let mut kv = kv_api::KvClient::connect(pd, "kv").expect("kv instance");
    // About a millisecond a batch: a 20 ms phase holds a dozen whole.
    const BATCH: u32 = 1_000;
    loop {
        let start = pd.now_ns();
        for i in 0..BATCH {
            kv.put(b"bench", &i.to_le_bytes()).expect("put");
        }
        let end = pd.now_ns();
        pd.log(format_args!("BATCH {start} {end} {:.1}", (end - start) as f64 / BATCH as f64));
        if pd.halting() {
            return;
        }
    }
}

fn hang_client(pd: &HostPd) {
    let mut kv = kv_api::KvClient::connect(pd, "kv").expect("kv instance");
    let mut out = [0u8; 16];
    let mut n = 0u64;
    loop {
        n += 1;
        let t = pd.now_ns();
        kv.put(b"hang", &n.to_le_bytes()).expect("put");
        let t2 = pd.now_ns();
        let got = kv.get(b"hang", &mut out).expect("get");
        let t3 = pd.now_ns();
        if got != Some(8) || out[..8] != n.to_le_bytes() {
            pd.log(format_args!("BENCH hang_client_wrong_reply: {n}"));
        }
        // Whichever of the two calls hit the slot that hung.
        let took = (t2 - t).max(t3 - t2);
        if took > 200_000_000 {
            pd.log(format_args!("BENCH hang_recovery_ms: {}", took / 1_000_000));
        }
        if pd.halting() {
            return;
        }
    }
}

fn main() {
    host_runtime::run(|pd| {
        let name = pd.name();
        if name == "kvdirect" {
            return Role::Direct(Direct(load_direct(pd)));
        }
        if name == "fsdirect" {
            return Role::Direct(Direct(fs::load_direct(pd)));
        }
        if name == "benchclient" {
            bench_client(pd);
        } else if name == "probclient" {
            prob_client(pd);
        } else if name == "hangclient" {
            hang_client(pd);
        } else if name == "fsratio" {
            fs::ratio_client(pd);
        } else if name == "fsdirty" {
            fs::dirty_client(pd);
        } else if name.starts_with("capwriter") {
            // A hostile client: tries to point kv0 at another slot by
            // writing the capability map, which is mapped read-only here.
            let map = pd.region("capmap").expect("capmap");
            pd.log(format_args!("writing the capability map"));
            // SAFETY: deliberately invalid: the mapping is read-only and
            // this write must fault.
            unsafe { map.base.add(16).write_volatile(0xff) };
            pd.log(format_args!("FAIL the capability map took a write"));
        } else if let Some(n) = name.strip_prefix("blobfill") {
            blob_fill(pd, n.parse().expect("blobfill<bytes>"));
        } else if let Some(n) = name.strip_prefix("blobcheck") {
            blob_check(pd, n.parse().expect("blobcheck<bytes>"), false);
        } else if let Some(n) = name.strip_prefix("blobwrite") {
            blob_check(pd, n.parse().expect("blobwrite<bytes>"), true);
        }
        Role::Idle(Idle)
    })
}
