//! blob: a service whose state is one byte array. This crate is its wire
//! format (the module is `blob-core`), the client stub (over
//! `service-stub`), and a client PD that writes the state as it goes and
//! checks every reply and, every few steps, the whole state.
//!
//! Calls: [`FILL`] (word 0 = length, word 1 = seed) sets the state to that
//! many bytes of [`fill`]; [`CHECKSUM`] answers the length and the FNV-1a
//! of the state; [`TOUCH`] reads one byte of every cache line and answers
//! their sum; [`POKE`] (word 0 = offset, word 1 = value) writes 8 bytes,
//! little-endian, and answers the length. A reply's label is 0, or a
//! status code (`NO_SPACE` for a length or offset out of range).
#![no_std]

use interfaces::stats::ClientStats;
use interfaces::transfer::fnv1a;
use interfaces::Message;
use pd_api::Pd;
use service_stub::{CallError, Stub};

pub const FILL: u64 = 1;
pub const CHECKSUM: u64 = 2;
pub const TOUCH: u64 = 3;
pub const POKE: u64 = 4;

/// The state FILL makes of `seed`: xorshift bytes.
pub fn fill(bytes: &mut [u8], seed: u64) {
    let mut x = seed | 1;
    for b in bytes {
        *b = next(&mut x);
    }
}

fn next(x: &mut u64) -> u8 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x as u8
}

/// A blob instance, called through the stub: each request runs once.
pub struct Blob<'p, P: Pd + ?Sized> {
    stub: Stub<'p, P>,
    msg: Message,
}

impl<'p, P: Pd + ?Sized> Blob<'p, P> {
    pub fn connect(pd: &'p P) -> Result<Self, &'static str> {
        Ok(Blob { stub: Stub::connect(pd, "blob")?, msg: Message::default() })
    }

    /// One call; its reply's words, or why it failed.
    pub fn call(&mut self, label: u64, words: &[u64]) -> Result<[u64; 2], CallError<()>> {
        self.stub.call(&mut self.msg, |m| {
            *m = Message::with_words(label, words);
            Ok(())
        })?;
        match self.msg.label {
            0 => Ok([self.msg.word(0), self.msg.word(1)]),
            _ => Err(CallError::Encode(())),
        }
    }
}

/// The client PD's state: 256 KiB (it fits blob's state on seL4), of which
/// it rewrites one 8-byte word in each of 64 pages, in turn.
pub const CLIENT_STATE: usize = 256 << 10;
const WORDS: usize = 64;
const SEED: u64 = 11;

fn word_at(i: usize) -> usize {
    i * 4096 + (i % 8) * 8
}

/// The checksum of the filled state with the words `model` wrote over it;
/// computed as the bytes go by (no copy of the state: the seL4 client's
/// heap is small).
fn expected(model: &[Option<u64>; WORDS]) -> u64 {
    let mut x = SEED | 1;
    let mut h = fnv1a(&[]);
    let mut i = 0;
    for at in 0..CLIENT_STATE {
        let mut b = next(&mut x);
        if let Some(start) = (i < WORDS).then(|| word_at(i)).filter(|&s| at >= s) {
            if let Some(v) = model[i] {
                b = v.to_le_bytes()[at - start];
            }
            if at + 1 == start + 8 {
                i += 1;
            }
        }
        h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// The client PD: fills the state, then writes a word a step, checking
/// each reply, and every 16th step the whole state's checksum against its
/// model (an audit). A failed call may or may not have run, so the client
/// fills the state afresh after one.
pub fn run<P: Pd + ?Sized>(pd: &P) {
    use core::sync::atomic::Ordering::Relaxed;
    // SAFETY: a writable page used through atomics; the manager only reads it.
    let Some(stats) = pd.region("stats").filter(|r| r.writable).map(|r| unsafe { &*(r.base as *const ClientStats) })
    else {
        return pd.log(format_args!("no writable 'stats' region"));
    };
    stats.init();
    let mut blob = match Blob::connect(pd) {
        Ok(b) => b,
        Err(e) => return pd.log(format_args!("cannot reach the blob service: {e}")),
    };
    let len = CLIENT_STATE as u64;
    let mut model = [None; WORDS];
    let mut filled = false;
    for seq in 0u64.. {
        if pd.halting() {
            break;
        }
        let step = if !filled {
            blob.call(FILL, &[len, SEED]).map(|r| (r[0] == len, false))
        } else if seq % 16 == 0 {
            blob.call(CHECKSUM, &[]).map(|r| (r == [len, expected(&model)], true))
        } else {
            let i = (seq as usize) % WORDS;
            let v = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let r = blob.call(POKE, &[word_at(i) as u64, v]);
            if r.is_ok() {
                model[i] = Some(v);
            }
            r.map(|r| (r[0] == len, false))
        };
        match step {
            Ok((true, audit)) => {
                if !filled {
                    (model, filled) = ([None; WORDS], true);
                }
                if audit {
                    stats.audits.fetch_add(1, Relaxed);
                }
                stats.verified.fetch_add(1, Relaxed);
            }
            Ok((false, _)) => {
                pd.log(format_args!("wrong reply at step {seq}"));
                stats.wrong.fetch_add(1, Relaxed);
                filled = false;
            }
            Err(_) => {
                stats.failed.fetch_add(1, Relaxed);
                filled = false;
            }
        }
        stats.retried.store(blob.stub.retried, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    #[test]
    fn the_streamed_checksum_matches_the_state_it_models() {
        let mut state = std::vec![0u8; CLIENT_STATE];
        fill(&mut state, SEED);
        let mut model = [None; WORDS];
        assert_eq!(expected(&model), fnv1a(&state));
        for i in [0, 5, 63] {
            let v = 0x0102_0304_0506_0708 * (i as u64 + 1);
            model[i] = Some(v);
            state[word_at(i)..word_at(i) + 8].copy_from_slice(&v.to_le_bytes());
        }
        assert_eq!(expected(&model), fnv1a(&state));
    }
}
