//! Bundles uploaded over the console line (the `upload` crate's protocol),
//! verified against the trusted keys and kept in the `upload` region.
//!
//! The region is divided into slots; each holds a 32-byte name and one
//! bundle. An upload is received into the next slot in turn; only once it
//! is complete and verified does its image join the manager's images, so
//! the manager never holds part of one. Reusing a slot drops the image it
//! held (a module already loaded from it keeps running).
use crate::image;
use crate::manager::{Image, Manager};
use crate::placer::ImagePlacer;
use alloc::{format, string::String, vec::Vec};
use bundle::{Target, HEADER_LEN, MAX_IMAGE};
use pd_api::{Pd, Region};
use upload::{encode, Decoded, Decoder, Frame, Kind, Nak, Receiver, Reply, FRAME_OVERHEAD, MAX_PAYLOAD};

/// This system's bundle target.
pub const TARGET: Target = if cfg!(target_arch = "aarch64") { Target::Aarch64Sel4 } else { Target::Host };
const NAME_LEN: usize = 32;
/// A partial frame older than this is forgotten when the next byte comes.
const FRAME_PATIENCE_NS: u64 = 500_000_000;
/// The reason code of a NAK for a bundle that failed verification.
pub const NAK_REJECTED: u8 = 7;

pub(crate) struct Uploads {
    region: Region,
    slot_size: usize,
    slots: usize,
    next: usize,
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
            next: 0,
            decoder: Decoder::default(),
            receiver: Receiver::new(),
            last_byte_ns: 0,
            last_outcome: None,
        })
    }

    /// The bundle area of slot `k`.
    fn bundle_area(&self, k: usize) -> &'static mut [u8] {
        // SAFETY: the region is the manager's alone, mapped for its life;
        // slot `k` lies inside it, and nothing else refers to the bundle
        // area of the slot being received into.
        unsafe {
            core::slice::from_raw_parts_mut(
                self.region.base.add(k * self.slot_size + NAME_LEN),
                self.slot_size - NAME_LEN,
            )
        }
    }

    /// Writes `name` into slot `k` and returns it with a static lifetime.
    fn set_name(&self, k: usize, name: &str) -> &'static str {
        let n = name.len().min(NAME_LEN);
        // SAFETY: as in `bundle_area`; the name area precedes the bundle.
        let area = unsafe { core::slice::from_raw_parts_mut(self.region.base.add(k * self.slot_size), NAME_LEN) };
        area[..n].copy_from_slice(&name.as_bytes()[..n]);
        core::str::from_utf8(&area[..n]).unwrap_or("upload")
    }

    pub fn in_frame(&self) -> bool {
        self.decoder.in_frame()
    }
}

/// What the console byte stream held.
pub(crate) enum Input {
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

impl<P: Pd + 'static, L: ImagePlacer> Manager<P, L> {
    /// Passes one byte from the line through the frame decoder.
    pub(crate) fn demux(&mut self, b: u8) -> Input {
        let now = self.pd.now_ns();
        let Some(up) = self.uploads.as_mut() else { return Input::Console(b) };
        if up.in_frame() && now - up.last_byte_ns > FRAME_PATIENCE_NS {
            up.decoder.reset(); // the line went quiet mid-frame
        }
        up.last_byte_ns = now;
        match up.decoder.feed(b) {
            Decoded::Console(c) => Input::Console(c),
            Decoded::Stray(c) => Input::Console2(upload::SOH, c),
            Decoded::Frame(f) => Input::Frame { kind: f.kind, seq: f.seq, payload: f.payload.to_vec() },
            Decoded::Pending | Decoded::Dropped => Input::Nothing,
        }
    }

    fn send_frame(&mut self, kind: Kind, seq: u16, payload: &[u8]) {
        let mut buf = [0u8; MAX_PAYLOAD + FRAME_OVERHEAD];
        let n = encode(kind, seq, &payload[..payload.len().min(MAX_PAYLOAD)], &mut buf).unwrap_or(0);
        self.send_bytes(&buf[..n]);
    }

    fn answer(&mut self, seq: u16, ok: bool, text: &str) {
        if ok {
            self.send_frame(Kind::Ack, seq, text.as_bytes());
        } else {
            let mut p = Vec::from([NAK_REJECTED]);
            p.extend_from_slice(&0u64.to_le_bytes());
            p.extend_from_slice(text.as_bytes());
            self.send_frame(Kind::Nak, seq, &p);
        }
    }

    pub(crate) fn on_upload_frame(&mut self, kind: Kind, seq: u16, payload: &[u8]) {
        let Some(up) = self.uploads.as_mut() else { return };
        let staging = up.next;
        let reply = up.receiver.on_frame(&Frame { kind, seq, payload }, up.bundle_area(staging));
        match reply {
            Reply::Ack | Reply::Aborted => self.send_frame(Kind::Ack, seq, b""),
            Reply::Nak { reason, resume } => {
                let mut p = Vec::from([reason as u8]);
                p.extend_from_slice(&resume.to_le_bytes());
                self.send_frame(Kind::Nak, seq, &p);
                // A refusal that ends the upload is said and logged too.
                let why = match reason {
                    Nak::BadBegin => Some("refused: not a well-formed bundle (header or length)"),
                    Nak::TooLarge => Some("refused: the bundle is larger than the upload buffer"),
                    _ => None,
                };
                if let Some(why) = why {
                    self.say(&format!("\nupload: {why}\n{}", crate::console::PROMPT));
                    self.record_upload(String::from(why), false);
                }
            }
            Reply::Complete { len } => {
                let (ok, text) = self.admit_upload(staging, len);
                // The answer first, then a line and a fresh prompt for
                // whoever watches the console.
                self.answer(seq, ok, &text);
                self.say(&format!("\nupload: {text}\n{}", crate::console::PROMPT));
                if let Some(up) = self.uploads.as_mut() {
                    up.last_outcome = Some((ok, text));
                }
            }
            Reply::AlreadyComplete { .. } => {
                let (ok, text) =
                    self.uploads.as_ref().and_then(|u| u.last_outcome.clone()).unwrap_or((false, String::new()));
                self.answer(seq, ok, &text);
            }
        }
    }

    /// Verifies the bundle received into slot `k`; if it is genuine, its
    /// image joins the manager's images. Returns (admitted, what happened).
    fn admit_upload(&mut self, k: usize, len: usize) -> (bool, String) {
        let up = self.uploads.as_mut().expect("uploads");
        let bytes: &'static [u8] = &up.bundle_area(k)[..len];
        let verified = bundle::verify(bytes, TARGET, crate::TRUSTED_KEYS, |img| image::descriptor(img).ok());
        let v = match verified {
            Ok(v) => v,
            Err(e) => {
                let text = format!("refused: {e}");
                self.record_upload(text.clone(), false);
                return (false, text);
            }
        };
        let d = image::descriptor(v.image).expect("verified above");
        let name = format!("{}-v{}", d.service(), d.module_version);
        if self.images.iter().any(|i| i.name == name) {
            let text = format!("refused: the manager already holds an image named {name}");
            self.record_upload(text.clone(), false);
            return (false, text);
        }
        // The slot is reused: the image it held (if any) is gone.
        let up = self.uploads.as_mut().expect("uploads");
        let old_base = up.bundle_area(k).as_ptr();
        self.images.retain(|i| !core::ptr::eq(i.bytes.as_ptr().wrapping_sub(HEADER_LEN), old_base));
        let up = self.uploads.as_mut().expect("uploads");
        let stored = up.set_name(k, &name);
        up.next = (k + 1) % up.slots;
        self.images.push(Image { name: stored, bytes: v.image, descriptor: Ok(d) });
        let text = format!(
            "admitted {stored} ({} v{}, schema {}, {} bytes)",
            d.service(),
            d.module_version,
            d.state_schema,
            v.image.len()
        );
        self.record_upload(text.clone(), true);
        (true, text)
    }
}
