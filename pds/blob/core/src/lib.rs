//! The blob service: its whole state is one byte array, so exporting and
//! importing it are one copy each, and an update's blackout can be compared
//! with a plain `memcpy` of the same size. Used by the benchmarks.
//!
//! Calls: label [`FILL`] (word 0 = length, word 1 = seed) sets the state
//! to that many pseudo-random bytes; label [`CHECKSUM`] answers the length
//! and the FNV-1a of the state; label [`TOUCH`] reads one byte of every
//! cache line of the state and answers their sum (a service in use keeps
//! its state in the caches: the benchmarks measure updates both ways);
//! label [`POKE`] (word 0 = offset, word 1 = value) writes 8 bytes of it,
//! little-endian, and answers the length.
//!
//! It pre-copies (`module_rt::precopy`): the pages written since the last
//! export are marked, and only those travel at the stop.
#![no_std]

use interfaces::abi::StateRange;
use interfaces::abi::{status, ModuleDescriptor};
use interfaces::transfer::fnv1a;
use interfaces::Message;
use module_rt::{ChangeList, DirtyPages, Env, Module, StateReader, StateWriter};

/// The wire format is blob-api's.
pub use blob_api::{fill, CHECKSUM, FILL, POKE, TOUCH};
/// The largest state. On seL4 (`target_os = "none"`, the modules' target)
/// the state is the module's `.bss`, which must fit the slot's 1 MiB
/// `module_data` region with the rest of the module's data, and an export
/// must fit the 1.06 MiB transfer region of tests/systems/two-services.xml;
/// the host benchmarks measure up to 16 MiB.
#[cfg(not(target_os = "none"))]
pub const MAX_STATE: usize = 16 << 20;
#[cfg(target_os = "none")]
pub const MAX_STATE: usize = 512 << 10;
pub const SCHEMA: u32 = 1;
/// Words of the dirty-page map: a bit per page of the largest state.
const DIRTY_WORDS: usize = MAX_STATE.div_ceil(4096 * 64);

struct Bytes(core::cell::UnsafeCell<[u8; MAX_STATE]>);
// SAFETY: a module instance is used from the slot's one thread only.
unsafe impl Sync for Bytes {}
static STATE: Bytes = Bytes(core::cell::UnsafeCell::new([0; MAX_STATE]));

/// Deliberate failures, for the tests of a streamed transfer that breaks
/// off half way (`FAULT` of [`Blob`]).
pub mod fault {
    pub const NONE: u32 = 0;
    /// The export writes half the state, then fails.
    pub const CUT_EXPORT: u32 = 1;
    /// The import reads the first part of the state, then fails.
    pub const CUT_IMPORT: u32 = 2;
}

pub struct Blob<const VERSION: u32, const FAULT: u32 = { fault::NONE }> {
    len: usize,
    /// The pages written since the last export.
    dirty: DirtyPages<DIRTY_WORDS>,
}

impl<const VERSION: u32, const FAULT: u32> Blob<VERSION, FAULT> {
    fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: one instance per image; `&mut self` makes access exclusive.
        unsafe { core::slice::from_raw_parts_mut(STATE.0.get().cast::<u8>(), self.len) }
    }
}

impl<const VERSION: u32, const FAULT: u32> Module for Blob<VERSION, FAULT> {
    const DESCRIPTOR: ModuleDescriptor = ModuleDescriptor::new("blob", VERSION, SCHEMA);

    fn init(_env: Env) -> Result<Self, &'static str> {
        Ok(Blob { len: 0, dirty: DirtyPages::new() })
    }

    fn protected(&mut self, _ch: u32, msg: &mut Message) {
        match msg.label {
            FILL => {
                let (len, seed) = (msg.word(0) as usize, msg.word(1));
                if len > MAX_STATE {
                    *msg = Message::new(status::NO_SPACE as u64, 0);
                    return;
                }
                self.len = len;
                fill(self.bytes(), seed);
                self.dirty.mark(0, len);
                *msg = Message::with_words(0, &[len as u64]);
            }
            POKE => {
                let (at, value) = (msg.word(0) as usize, msg.word(1));
                let Some(dst) = at.checked_add(8).and_then(|end| self.bytes().get_mut(at..end)) else {
                    *msg = Message::new(status::NO_SPACE as u64, 0);
                    return;
                };
                dst.copy_from_slice(&value.to_le_bytes());
                self.dirty.mark(at, 8);
                *msg = Message::with_words(0, &[self.len as u64]);
            }
            CHECKSUM => {
                let sum = fnv1a(self.bytes());
                *msg = Message::with_words(0, &[self.len as u64, sum]);
            }
            TOUCH => {
                let sum = self.bytes().iter().step_by(64).fold(0u64, |s, &b| s.wrapping_add(b as u64));
                *msg = Message::with_words(0, &[self.len as u64, sum]);
            }
            _ => *msg = Message::new(status::ERROR as u64, 0),
        }
    }

    fn export_state(&mut self, schema: u32, out: &mut [u8]) -> Result<usize, i32> {
        if schema != SCHEMA {
            return Err(status::UNSUPPORTED_SCHEMA);
        }
        let len = self.len;
        out.get_mut(..len).ok_or(status::NO_SPACE)?.copy_from_slice(self.bytes());
        self.dirty.clear();
        Ok(len)
    }

    fn import_state(&mut self, schema: u32, data: &[u8]) -> Result<(), i32> {
        if schema != SCHEMA || data.len() > MAX_STATE {
            return Err(status::BAD_STATE);
        }
        self.len = data.len();
        self.bytes().copy_from_slice(data);
        Ok(())
    }

    // Streamed: the state is written front to back, so the new slot copies
    // each part as soon as the old one has written it.
    fn export_stream(&mut self, schema: u32, out: &mut StateWriter<'_>) -> Result<(), i32> {
        if schema != SCHEMA {
            return Err(status::UNSUPPORTED_SCHEMA);
        }
        if FAULT == fault::CUT_EXPORT {
            let half = self.len / 2;
            out.write(&self.bytes()[..half])?;
            return Err(status::ERROR);
        }
        out.write(self.bytes())?;
        self.dirty.clear();
        Ok(())
    }

    const PRECOPY: bool = true;

    fn export_changes(
        &mut self,
        schema: u32,
        out: &mut [u8],
        len: &mut usize,
        changes: &mut ChangeList<'_>,
    ) -> Result<(), i32> {
        if schema != SCHEMA {
            return Err(status::UNSUPPORTED_SCHEMA);
        }
        let n = self.len;
        // SAFETY: one instance per image (see `bytes`); read only here.
        let state = unsafe { core::slice::from_raw_parts(STATE.0.get().cast::<u8>(), n) };
        self.dirty.export(state, out, len, changes)
    }

    fn import_changes(&mut self, schema: u32, data: &[u8], changes: &[StateRange]) -> Result<(), i32> {
        if schema != SCHEMA || data.len() > MAX_STATE {
            return Err(status::BAD_STATE);
        }
        // SAFETY: one instance per image (see `bytes`).
        let all = unsafe { core::slice::from_raw_parts_mut(STATE.0.get().cast::<u8>(), MAX_STATE) };
        module_rt::precopy::import_ranges(all, data, changes)?;
        self.len = data.len();
        Ok(())
    }

    fn import_stream(&mut self, schema: u32, src: &mut StateReader<'_>) -> Result<(), i32> {
        if schema != SCHEMA {
            return Err(status::BAD_STATE);
        }
        // SAFETY: one instance per image (see `bytes`); the length is set
        // once the whole state is in.
        let all = unsafe { core::slice::from_raw_parts_mut(STATE.0.get().cast::<u8>(), MAX_STATE) };
        let mut len = 0;
        loop {
            // At MAX_STATE, one more byte means the state does not fit.
            let part = src.chunk((MAX_STATE - len).max(1))?;
            if part.is_empty() {
                break;
            }
            if part.len() > MAX_STATE - len {
                return Err(status::BAD_STATE);
            }
            all[len..len + part.len()].copy_from_slice(part);
            len += part.len();
            if FAULT == fault::CUT_IMPORT {
                return Err(status::BAD_STATE);
            }
        }
        self.len = len;
        Ok(())
    }
}
