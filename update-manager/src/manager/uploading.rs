//! What the manager does with the upload frames that come over the console
//! line (see `uploads`): answers them, says and logs the outcome, and
//! admits a verified image into its image store. `forget` frees an upload
//! slot.
use super::Manager;
use crate::console::PROMPT;
use crate::image::{self, Image};
use crate::placer::ImagePlacer;
use crate::uploads::{Input, NAK_REJECTED, TARGET};
use alloc::{format, string::String, vec::Vec};
use pd_api::Pd;
use upload::{encode, Kind, Nak, Reply, FRAME_OVERHEAD, MAX_PAYLOAD};

impl<P: Pd + 'static, L: ImagePlacer> Manager<P, L> {
    /// Passes one byte from the line through the frame decoder.
    pub(crate) fn demux(&mut self, b: u8) -> Input {
        let now = self.pd.now_ns();
        match self.uploads.as_mut() {
            Some(up) => up.demux(b, now),
            None => Input::Console(b),
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
        (0..up.slot_count()).find(|&k| !self.images.iter().any(|i| up.slot_of(i.bytes) == Some(k)))
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
            up.begin(free, seq);
            if free.is_none() {
                let why = format!(
                    "refused: the upload store is full: each of its {} slots holds a listed image \
                     ('forget' one that is not in use)",
                    up.slot_count()
                );
                self.answer(seq, false, &why);
                self.say(&format!("\nupload: {why}\n{PROMPT}"));
                self.record_upload(why, false);
                return;
            }
        }
        let reply = self.uploads.as_mut().expect("uploads").receive(kind, seq, payload);
        match reply {
            Reply::Ack => self.send_frame(Kind::Ack, seq, b""),
            Reply::Aborted => {
                self.uploads.as_mut().expect("uploads").end();
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
                    self.uploads.as_mut().expect("uploads").end();
                    self.say(&format!("\nupload: {why}\n{PROMPT}"));
                    self.record_upload(String::from(why), false);
                }
            }
            Reply::Complete { len } => {
                let staging = self.uploads.as_mut().and_then(|u| u.end());
                let (ok, text) = match staging {
                    Some(k) => self.admit_upload(k, len),
                    None => (false, String::from("refused: no upload slot was set aside for this bundle")),
                };
                // The answer first, then a line and a fresh prompt for
                // whoever watches the console.
                self.answer(seq, ok, &text);
                self.say(&format!("\nupload: {text}\n{PROMPT}"));
                if let Some(up) = self.uploads.as_mut() {
                    up.set_last_outcome(ok, text);
                }
            }
            Reply::AlreadyComplete { .. } => {
                let (ok, text) = self.uploads.as_ref().and_then(|u| u.last_outcome()).unwrap_or((false, String::new()));
                self.answer(seq, ok, &text);
            }
        }
    }

    /// `forget <image>`: drops an uploaded image that no slot holds (live,
    /// or kept for a rollback), so that its upload slot takes the next
    /// upload. Built-in images cannot be forgotten.
    pub(crate) fn forget(&mut self, name: &str) -> Result<String, String> {
        let Some(img) = self.images.get(name) else {
            return Err(format!("error: no image named '{name}' (see 'images')"));
        };
        let Some(k) = self.upload_slot(img) else {
            return Err(format!("refused: {name} is built into the image store; it cannot be forgotten"));
        };
        for (inst, pair) in self.instances.iter().zip(&self.slots) {
            for (s, slot) in pair.iter().enumerate() {
                if inst.held[s].is_some_and(|h| h.image == name) {
                    return Err(if inst.live.map(|l| l.index()) == Some(s) {
                        format!("refused: {name} is live in {} (slot {})", inst.name, slot.pd_name)
                    } else {
                        format!("refused: {name} is kept in slot {} for a rollback of {}", slot.pd_name, inst.name)
                    });
                }
            }
        }
        self.images.remove(name);
        let text = format!("forgot {name}: upload slot {k} takes the next upload");
        self.record(format!("forget {name}"), [None; 5], Ok(text.clone()));
        Ok(text)
    }

    /// Verifies the bundle received into slot `k` (which holds no listed
    /// image); if it is genuine, its image joins the manager's images.
    /// Returns (admitted, what happened).
    fn admit_upload(&mut self, k: usize, len: usize) -> (bool, String) {
        let bytes = self.uploads.as_ref().expect("uploads").bundle(k, len);
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
        if self.images.get(&name).is_some() {
            let text = format!("refused: the manager already holds an image named {name}");
            self.record_upload(text.clone(), false);
            return (false, text);
        }
        // The staging slot held no listed image: nothing is dropped.
        let stored = self.uploads.as_ref().expect("uploads").set_name(k, &name);
        self.images.add(Image { name: stored, bytes: v.image, descriptor: Ok(d) });
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
