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
/// Generous: the bytes of one frame can reach the manager far apart when
/// the PDs on the way are descheduled (a loaded machine), and a frame cut
/// at 500 ms spilled its tail onto the console as a garbage line.
const FRAME_PATIENCE_NS: u64 = 2_000_000_000;
/// The reason code of a NAK for a bundle that failed verification.
pub const NAK_REJECTED: u8 = 7;

pub(crate) struct Uploads {
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
    fn slot_of(&self, bytes: &[u8]) -> Option<usize> {
        let at = (bytes.as_ptr() as usize).checked_sub(self.region.base as usize)?;
        (at < self.slots * self.slot_size).then_some(at / self.slot_size)
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

    /// The upload slot holding the listed image `img`, if it was uploaded.
    fn upload_slot(&self, img: &Image) -> Option<usize> {
        self.uploads.as_ref()?.slot_of(img.bytes)
    }

    /// The first upload slot that holds no listed image.
    fn free_upload_slot(&self) -> Option<usize> {
        let up = self.uploads.as_ref()?;
        (0..up.slots).find(|&k| !self.images.iter().any(|i| up.slot_of(i.bytes) == Some(k)))
    }

    pub(crate) fn on_upload_frame(&mut self, kind: Kind, seq: u16, payload: &[u8]) {
        if self.uploads.is_none() {
            return;
        }
        if kind == Kind::Begin {
            // A new upload: received only into a slot holding no listed
            // image, or not at all.
            let free = self.free_upload_slot();
            let up = self.uploads.as_mut().expect("uploads");
            up.staging = free;
            if free.is_none() {
                // Whatever was under way is dropped too.
                up.receiver.on_frame(&Frame { kind: Kind::Abort, seq, payload: &[] }, &mut []);
                let why = format!(
                    "refused: the upload store is full: each of its {} slots holds a listed image \
                     ('forget' one that is not in use)",
                    up.slots
                );
                self.answer(seq, false, &why);
                self.say(&format!("\nupload: {why}\n{}", crate::console::PROMPT));
                self.record_upload(why, false);
                return;
            }
        }
        let up = self.uploads.as_mut().expect("uploads");
        // Nothing to write into without an upload under way (the receiver
        // then stores nothing either).
        let area: &mut [u8] = match up.staging {
            Some(k) => up.bundle_area(k),
            None => &mut [],
        };
        let reply = up.receiver.on_frame(&Frame { kind, seq, payload }, area);
        match reply {
            Reply::Ack => self.send_frame(Kind::Ack, seq, b""),
            Reply::Aborted => {
                self.uploads.as_mut().expect("uploads").staging = None;
                self.send_frame(Kind::Ack, seq, b"")
            }
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
                    self.uploads.as_mut().expect("uploads").staging = None;
                    self.say(&format!("\nupload: {why}\n{}", crate::console::PROMPT));
                    self.record_upload(String::from(why), false);
                }
            }
            Reply::Complete { len } => {
                let staging = self.uploads.as_mut().and_then(|u| u.staging.take());
                let (ok, text) = match staging {
                    Some(k) => self.admit_upload(k, len),
                    None => (false, String::from("refused: no upload slot was set aside for this bundle")),
                };
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

    /// `forget <image>`: drops an uploaded image that no slot holds (live,
    /// or kept for a rollback), so that its upload slot takes the next
    /// upload. Built-in images cannot be forgotten.
    pub(crate) fn forget(&mut self, name: &str) -> Result<String, String> {
        let Some(i) = self.images.iter().position(|i| i.name == name) else {
            return Err(format!("error: no image named '{name}' (see 'images')"));
        };
        let Some(k) = self.upload_slot(&self.images[i]) else {
            return Err(format!("refused: {name} is built into the image store; it cannot be forgotten"));
        };
        for inst in &self.instances {
            for (s, slot) in inst.slots.iter().enumerate() {
                if slot.held.is_some_and(|h| h.image == name) {
                    return Err(if inst.live.map(|l| l.index()) == Some(s) {
                        format!("refused: {name} is live in {} (slot {})", inst.name, slot.pd_name)
                    } else {
                        format!("refused: {name} is kept in slot {} for a rollback of {}", slot.pd_name, inst.name)
                    });
                }
            }
        }
        self.images.remove(i);
        let text = format!("forgot {name}: upload slot {k} takes the next upload");
        self.record(format!("forget {name}"), [None; 5], Ok(text.clone()));
        Ok(text)
    }

    /// Verifies the bundle received into slot `k` (which holds no listed
    /// image); if it is genuine, its image joins the manager's images.
    /// Returns (admitted, what happened).
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
        if let Err(e) = self.check_floor(&d) {
            let text = format!("refused: {e}");
            self.record_upload(text.clone(), false);
            return (false, text);
        }
        let name = format!("{}-v{}", d.service(), d.module_version);
        if self.images.iter().any(|i| i.name == name) {
            let text = format!("refused: the manager already holds an image named {name}");
            self.record_upload(text.clone(), false);
            return (false, text);
        }
        // The staging slot held no listed image: nothing is dropped.
        let up = self.uploads.as_mut().expect("uploads");
        let stored = up.set_name(k, &name);
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
