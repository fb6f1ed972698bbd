//! counter: a service of named running totals. `add(key, n)` adds `n` to
//! `key`'s total and answers the new total; `get(key)` answers it; v2 adds
//! `adds(key)`, how many adds made it. This crate is the wire format, the
//! client stub (over `service-stub`) and a client PD that checks every
//! reply against its own model.
#![no_std]

use interfaces::stats::ClientStats;
use interfaces::Message;
use pd_api::Pd;
use service_stub::{CallError, Stub};

/// Request labels; the words are `[key, n]`.
pub const ADD: u64 = 1;
pub const GET: u64 = 2;
/// v2 on.
pub const ADDS: u64 = 3;
/// Reply labels; word 0 is the answer.
pub const OK: u64 = 0;
pub const UNKNOWN_OP: u64 = 1;
pub const FULL: u64 = 2;

/// A counter instance, called through the stub: each request runs once.
pub struct Counter<'p, P: Pd + ?Sized> {
    stub: Stub<'p, P>,
    msg: Message,
}

impl<'p, P: Pd + ?Sized> Counter<'p, P> {
    pub fn connect(pd: &'p P) -> Result<Self, &'static str> {
        Ok(Counter { stub: Stub::connect(pd, "counter")?, msg: Message::default() })
    }

    fn call(&mut self, op: u64, key: u64, n: u64) -> Result<u64, CallError<()>> {
        self.stub.call(&mut self.msg, |m| {
            *m = Message::with_words(op, &[key, n]);
            Ok(())
        })?;
        match self.msg.label {
            OK => Ok(self.msg.word(0)),
            _ => Err(CallError::Encode(())),
        }
    }

    pub fn add(&mut self, key: u64, n: u64) -> Result<u64, CallError<()>> {
        self.call(ADD, key, n)
    }

    pub fn get(&mut self, key: u64) -> Result<u64, CallError<()>> {
        self.call(GET, key, 0)
    }
}

/// The client PD: adds to its own key (its name's hash) and checks each
/// new total, and every 8th step reads the total back. A failed call may
/// or may not have run, so the next step learns the total again.
pub fn run<P: Pd + ?Sized>(pd: &P) {
    use core::sync::atomic::Ordering::Relaxed;
    // SAFETY: a writable page used through atomics; the manager only reads it.
    let Some(stats) = pd.region("stats").filter(|r| r.writable).map(|r| unsafe { &*(r.base as *const ClientStats) })
    else {
        return pd.log(format_args!("no writable 'stats' region"));
    };
    stats.init();
    let mut c = match Counter::connect(pd) {
        Ok(c) => c,
        Err(e) => return pd.log(format_args!("cannot reach the counter service: {e}")),
    };
    let key = pd.name().bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    let (mut model, mut known) = (0u64, false);
    for seq in 0u64.. {
        if pd.halting() {
            break;
        }
        let n = seq % 7 + 1;
        let read_back = !known || seq % 8 == 0;
        let got = if read_back { c.get(key).map(|t| (t, model)) } else { c.add(key, n).map(|t| (t, model + n)) };
        match got {
            Ok((total, want)) if total == want || !known => {
                if known && read_back {
                    stats.audits.fetch_add(1, Relaxed); // the whole state of this client checked
                }
                (model, known) = (total, true);
                stats.verified.fetch_add(1, Relaxed);
            }
            Ok((total, want)) => {
                pd.log(format_args!("wrong reply at step {seq}: total {total}, want {want}"));
                (model, known) = (total, true);
                stats.wrong.fetch_add(1, Relaxed);
            }
            Err(_) => {
                known = false;
                stats.failed.fetch_add(1, Relaxed);
            }
        }
        stats.retried.store(c.stub.retried, Relaxed);
    }
}
