//! Bundles uploaded over the console line (the `upload` crate's protocol),
//! verified against the trusted keys and kept in the `upload` region.
//!
//! The region is divided into slots; each holds a 32-byte name and one
//! bundle. An upload is received only into a slot that holds no listed
//! image, chosen at its first frame; when every slot holds one, the upload
//! is refused at that frame (`forget` an image to free its slot). Only once
//! it is complete and verified does its image join the manager's images,
//! so the manager never holds part of one, and a refused or broken-off
//! upload changes nothing: the bytes of a listed image, which a slot may
//! load at any time (an update, a rollback's rebuild, a reload after a
//! fault), are never written while it is listed.
//!
//! This module keeps the region and the protocol's state; what the manager
//! does with a frame (answers, the console line, the log, admission) is
//! `manager::uploading`.
use alloc::{string::String, vec::Vec};
use bundle::{Target, HEADER_LEN, MAX_IMAGE};
use pd_api::Region;
use upload::{Decoded, Decoder, Frame, Kind, Receiver, Reply};

/// This system's bundle target.
pub const TARGET: Target = if cfg!(target_arch = "aarch64") { Target::Aarch64Sel4 } else { Target::Host };
const NAME_LEN: usize = 32;
/// A partial frame older than this is forgotten when the next byte comes.
/// Generous: the bytes of one frame can reach the manager far apart when
/// the PDs on the way are descheduled (a loaded machine), and a frame cut
/// at 500 ms spilled its tail onto the console as a garbage line.
const FRAME_PATIENCE_NS: u64 = 2_000_000_000;
/// The reason code of a NAK for a bundle that failed verification.
pub const NAK_REJECTED: u8 = 7;

pub struct Uploads {
    region: Region,
    slot_size: usize,
    slots: usize,
    /// The slot the upload under way is received into: one that held no
    /// listed image when the upload began (none is added until it ends).
    staging: Option<usize>,
    decoder: Decoder,
    receiver: Receiver,
    last_byte_ns: u64,
    /// The answer to the last completed upload (resent if its END repeats).
    last_outcome: Option<(bool, String)>,
}

impl Uploads {
    pub fn new(region: Region) -> Option<Uploads> {
        let slot_size = (NAME_LEN + HEADER_LEN + MAX_IMAGE as usize + 96).next_multiple_of(4096);
        let slots = region.size / slot_size;
        (region.writable && slots > 0).then(|| Uploads {
            region,
            slot_size,
            slots,
            staging: None,
            decoder: Decoder::default(),
            receiver: Receiver::new(),
            last_byte_ns: 0,
            last_outcome: None,
        })
    }

    /// The bundle area of slot `k`.
    fn bundle_area(&self, k: usize) -> &'static mut [u8] {
        // SAFETY: the region is the manager's alone, mapped for its life;
        // slot `k` lies inside it. The caller writes through it only into
        // the staging slot, which holds no listed image, so nothing else
        // refers to these bytes.
        unsafe {
            core::slice::from_raw_parts_mut(
                self.region.base.add(k * self.slot_size + NAME_LEN),
                self.slot_size - NAME_LEN,
            )
        }
    }

    /// The slot whose bundle area holds `bytes`, if any.
    pub fn slot_of(&self, bytes: &[u8]) -> Option<usize> {
        let at = (bytes.as_ptr() as usize).checked_sub(self.region.base as usize)?;
        (at < self.slots * self.slot_size).then_some(at / self.slot_size)
    }

    /// Writes `name` into slot `k` and returns it with a static lifetime.
    pub fn set_name(&self, k: usize, name: &str) -> &'static str {
        let n = name.len().min(NAME_LEN);
        // SAFETY: as in `bundle_area`; the name area precedes the bundle.
        let area = unsafe { core::slice::from_raw_parts_mut(self.region.base.add(k * self.slot_size), NAME_LEN) };
        area[..n].copy_from_slice(&name.as_bytes()[..n]);
        core::str::from_utf8(&area[..n]).unwrap_or("upload")
    }

    /// How many bundles the region holds.
    pub fn slot_count(&self) -> usize {
        self.slots
    }

    /// Passes one byte from the line, come at `now`, through the frame
    /// decoder.
    pub fn demux(&mut self, b: u8, now: u64) -> Input {
        if self.decoder.in_frame() && now - self.last_byte_ns > FRAME_PATIENCE_NS {
            self.decoder.reset(); // the line went quiet mid-frame
        }
        self.last_byte_ns = now;
        match self.decoder.feed(b) {
            Decoded::Console(c) => Input::Console(c),
            Decoded::Stray(c) => Input::Console2(upload::SOH, c),
            Decoded::Frame(f) => Input::Frame { kind: f.kind, seq: f.seq, payload: f.payload.to_vec() },
            Decoded::Pending | Decoded::Dropped => Input::Nothing,
        }
    }

    /// An upload begins: it is received into slot `free` (one that holds no
    /// listed image), or, with none, not at all (whatever was under way is
    /// dropped too).
    pub fn begin(&mut self, free: Option<usize>, seq: u16) {
        self.staging = free;
        if free.is_none() {
            self.receiver.on_frame(&Frame { kind: Kind::Abort, seq, payload: &[] }, &mut []);
        }
    }

    /// Takes a frame of the upload under way (into its staging slot).
    pub fn receive(&mut self, kind: Kind, seq: u16, payload: &[u8]) -> Reply {
        // Nothing to write into without an upload under way (the receiver
        // then stores nothing either).
        let area: &mut [u8] = match self.staging {
            Some(k) => self.bundle_area(k),
            None => &mut [],
        };
        self.receiver.on_frame(&Frame { kind, seq, payload }, area)
    }

    /// The upload under way is over: the slot it was received into.
    pub fn end(&mut self) -> Option<usize> {
        self.staging.take()
    }

    /// The first `len` bytes received into slot `k`.
    pub fn bundle(&self, k: usize, len: usize) -> &'static [u8] {
        &self.bundle_area(k)[..len]
    }

    /// The answer to the last completed upload.
    pub fn last_outcome(&self) -> Option<(bool, String)> {
        self.last_outcome.clone()
    }

    pub fn set_last_outcome(&mut self, ok: bool, text: String) {
        self.last_outcome = Some((ok, text));
    }
}

/// What the console byte stream held.
pub enum Input {
    Console(u8),
    /// A stray `SOH` and the byte after it, both console input.
    Console2(u8, u8),
    Frame {
        kind: Kind,
        seq: u16,
        payload: Vec<u8>,
    },
    Nothing,
}
