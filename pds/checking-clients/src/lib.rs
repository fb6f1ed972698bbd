//! The client PD's logic: a load generator that checks every reply.
//!
//! It keeps its own model of what the store must hold for its keys (each
//! client uses keys prefixed with its PD name, so clients never share
//! keys), writes a value carrying its sequence number, reads it back and
//! compares, and now and then deletes a key and checks it is gone. Every
//! [`AUDIT_EVERY`] steps it reads back all its keys and compares the whole
//! keyspace with the model. A request lost, or an older one run again,
//! shows as a value with the wrong sequence number. Counts are published in
//! its `stats` region for the manager's `status`.
#![no_std]

pub mod fs;

use core::fmt::Write;
use heapless::String;
use interfaces::stats::ClientStats;
use kv_api::{KvClient, KvError};
use pd_api::Pd;

/// Keys each client cycles through.
pub const KEYS: usize = 16;
/// Steps between two full read-backs of the client's keys.
pub const AUDIT_EVERY: u64 = 64;

type Value = String<64>;

/// What the client believes its keys hold.
pub struct Model {
    values: [Option<Value>; KEYS],
    /// False for a key whose last write failed: it may or may not have
    /// run, so any answer is right until the next write succeeds.
    known: [bool; KEYS],
}

impl Default for Model {
    fn default() -> Self {
        Model { values: core::array::from_fn(|_| None), known: [true; KEYS] }
    }
}

impl Model {
    /// Whether `got` (the length of the value read into `buf`) is what key
    /// `i` must hold.
    fn matches(&self, i: usize, got: Option<usize>, buf: &[u8]) -> bool {
        match (&self.values[i], got) {
            _ if !self.known[i] => true,
            (Some(want), Some(n)) => want.as_bytes() == &buf[..n],
            (None, None) => true,
            _ => false,
        }
    }

    /// After a failed write to key `i`.
    pub fn forget(&mut self, i: usize) {
        self.known[i] = false;
    }
}

fn key(pd_name: &str, i: usize) -> String<32> {
    let mut k = String::new();
    let _ = write!(k, "{}/{i}", &pd_name[..pd_name.len().min(24)]);
    k
}

/// Runs one step `seq` against the store; returns whether every reply in it
/// matched the model, or the call error.
pub fn step<P: Pd + ?Sized>(
    kv: &mut KvClient<'_, P>,
    model: &mut Model,
    name: &str,
    seq: u64,
) -> Result<bool, KvError> {
    let i = (seq as usize) % KEYS;
    let k = key(name, i);
    let mut ok = true;
    if seq % 7 == 3 {
        let existed = kv.delete(k.as_bytes())?;
        ok &= !model.known[i] || existed == model.values[i].is_some();
        model.values[i] = None;
        model.known[i] = true;
    } else {
        let mut v = Value::new();
        let _ = write!(v, "{name}:{seq}");
        kv.put(k.as_bytes(), v.as_bytes())?;
        model.values[i] = Some(v);
        model.known[i] = true;
    }
    let mut buf = [0u8; interfaces::kv::MAX_VALUE];
    let got = kv.get(k.as_bytes(), &mut buf)?;
    ok &= model.matches(i, got, &buf);
    Ok(ok)
}

/// Reads back every key of the client and compares with the model.
pub fn audit<P: Pd + ?Sized>(kv: &mut KvClient<'_, P>, model: &Model, name: &str) -> Result<bool, KvError> {
    let mut buf = [0u8; interfaces::kv::MAX_VALUE];
    for i in 0..KEYS {
        let got = kv.get(key(name, i).as_bytes(), &mut buf)?;
        if !model.matches(i, got, &buf) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The client's main loop; returns only when the system halts.
pub fn run<P: Pd + ?Sized>(pd: &P) {
    let stats = match pd.region("stats") {
        // SAFETY: a writable region at least a page long, used through
        // atomics; the manager only reads it.
        Some(r) if r.writable && r.size >= core::mem::size_of::<ClientStats>() => unsafe {
            &*(r.base as *const ClientStats)
        },
        _ => {
            pd.log(format_args!("no writable 'stats' region: not counting"));
            return;
        }
    };
    stats.init();
    let mut kv = match KvClient::connect(pd, "kv") {
        Ok(kv) => kv,
        Err(e) => {
            pd.log(format_args!("cannot reach the kv service: {e}"));
            return;
        }
    };
    let mut model = Model::default();
    let name = pd.name();
    let mut seq = 0u64;
    use core::sync::atomic::Ordering::Relaxed;
    while !pd.halting() {
        let result = if seq % AUDIT_EVERY == AUDIT_EVERY - 1 {
            audit(&mut kv, &model, name).inspect(|&ok| {
                if ok {
                    stats.audits.fetch_add(1, Relaxed);
                }
            })
        } else {
            step(&mut kv, &mut model, name, seq)
        };
        match result {
            Ok(true) => stats.verified.fetch_add(1, Relaxed),
            Ok(false) => {
                pd.log(format_args!("wrong reply at step {seq} (audit: {})", seq % AUDIT_EVERY == AUDIT_EVERY - 1));
                stats.wrong.fetch_add(1, Relaxed)
            }
            Err(e) => {
                pd.log(format_args!("step {seq} failed: {e:?} (binding now {:?})", kv.binding()));
                // A failed write may or may not have run: forget the key
                // (an audit only reads).
                if seq % AUDIT_EVERY != AUDIT_EVERY - 1 {
                    model.forget((seq as usize) % KEYS);
                }
                stats.failed.fetch_add(1, Relaxed)
            }
        };
        stats.retried.store(kv.retried(), Relaxed);
        seq += 1;
    }
}
