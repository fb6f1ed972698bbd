//! Frames on the serial line and the decoder that finds them among console
//! bytes.
use crate::crc::crc32;

pub const SOH: u8 = 0x01;
pub const MAX_PAYLOAD: usize = 1024;
/// SOH, kind, seq, len, crc.
pub const FRAME_OVERHEAD: usize = 1 + 1 + 2 + 2 + 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Payload: total bundle length (u64), then the bundle's header.
    Begin = 0x10,
    /// Payload: offset (u32), then bytes.
    Data = 0x11,
    /// No payload: the sender has sent everything.
    End = 0x12,
    /// No payload: the sender gives up; the receiver drops the upload.
    Abort = 0x13,
    /// Payload: acknowledged sequence number's outcome text (may be empty).
    Ack = 0x20,
    /// Payload: reason code (u8), then text.
    Nak = 0x21,
}

impl Kind {
    fn from_u8(v: u8) -> Option<Kind> {
        Some(match v {
            0x10 => Kind::Begin,
            0x11 => Kind::Data,
            0x12 => Kind::End,
            0x13 => Kind::Abort,
            0x20 => Kind::Ack,
            0x21 => Kind::Nak,
            _ => return None,
        })
    }
}

/// A checked frame; the payload borrows the decoder's buffer.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    pub kind: Kind,
    pub seq: u16,
    pub payload: &'a [u8],
}

/// Writes a frame into `out`; returns its length, or `None` if the payload
/// is too long or `out` too short.
pub fn encode(kind: Kind, seq: u16, payload: &[u8], out: &mut [u8]) -> Option<usize> {
    if payload.len() > MAX_PAYLOAD {
        return None;
    }
    let n = FRAME_OVERHEAD + payload.len();
    let out = out.get_mut(..n)?;
    out[0] = SOH;
    out[1] = kind as u8;
    out[2..4].copy_from_slice(&seq.to_le_bytes());
    out[4..6].copy_from_slice(&(payload.len() as u16).to_le_bytes());
    out[6..6 + payload.len()].copy_from_slice(payload);
    let crc = crc32(&out[1..6 + payload.len()]);
    out[6 + payload.len()..].copy_from_slice(&crc.to_le_bytes());
    Some(n)
}

/// What one byte of the line turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// Not part of a frame: console input.
    Console(u8),
    /// Inside a frame; nothing complete yet.
    Pending,
    Frame(Frame<'a>),
    /// A frame was dropped (bad length or CRC); the decoder is looking for
    /// the next `SOH`.
    Dropped,
    /// An `SOH` not followed by a frame kind: both bytes (`SOH`, then this
    /// one) were console input after all.
    Stray(u8),
}

pub struct Decoder {
    buf: [u8; MAX_PAYLOAD + FRAME_OVERHEAD],
    len: usize,
    in_frame: bool,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder { buf: [0; MAX_PAYLOAD + FRAME_OVERHEAD], len: 0, in_frame: false }
    }
}

impl Decoder {
    /// Forgets a partial frame. The receiver calls it when the line goes
    /// quiet mid-frame: a frame cut short must not swallow the next one,
    /// which the sender retransmits when it hears no answer. (Header bytes
    /// may themselves be `SOH`, so an `SOH` cannot mean "restart".)
    pub fn reset(&mut self) {
        self.in_frame = false;
        self.len = 0;
    }

    pub fn in_frame(&self) -> bool {
        self.in_frame
    }

    pub fn feed(&mut self, b: u8) -> Decoded<'_> {
        if !self.in_frame {
            if b != SOH {
                return Decoded::Console(b);
            }
            self.in_frame = true;
            self.len = 0;
        }
        self.buf[self.len] = b;
        self.len += 1;
        if self.len == 2 && Kind::from_u8(self.buf[1]).is_none() {
            self.reset();
            return Decoded::Stray(b);
        }
        if self.len < 6 {
            return Decoded::Pending;
        }
        let plen = u16::from_le_bytes([self.buf[4], self.buf[5]]) as usize;
        if plen > MAX_PAYLOAD {
            self.reset();
            return Decoded::Dropped;
        }
        if self.len < FRAME_OVERHEAD + plen {
            return Decoded::Pending;
        }
        self.in_frame = false;
        let body = &self.buf[1..6 + plen];
        let crc = u32::from_le_bytes(self.buf[6 + plen..10 + plen].try_into().expect("4 bytes"));
        if crc32(body) != crc {
            self.len = 0;
            return Decoded::Dropped;
        }
        let kind = Kind::from_u8(self.buf[1]).expect("checked at byte 2");
        let seq = u16::from_le_bytes([self.buf[2], self.buf[3]]);
        Decoded::Frame(Frame { kind, seq, payload: &self.buf[6..6 + plen] })
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    /// Console bytes, frames (kind, seq, payload), and dropped-frame count.
    type Decoding = (Vec<u8>, Vec<(Kind, u16, Vec<u8>)>, usize);

    fn decode_all(line: &[u8]) -> Decoding {
        let mut d = Decoder::default();
        let (mut console, mut frames, mut dropped) = (Vec::new(), Vec::new(), 0);
        for &b in line {
            match d.feed(b) {
                Decoded::Console(c) => console.push(c),
                Decoded::Frame(f) => frames.push((f.kind, f.seq, f.payload.to_vec())),
                Decoded::Dropped => dropped += 1,
                Decoded::Stray(b) => console.push(b),
                Decoded::Pending => {}
            }
        }
        (console, frames, dropped)
    }

    fn frame(kind: Kind, seq: u16, payload: &[u8]) -> Vec<u8> {
        let mut buf = [0u8; MAX_PAYLOAD + FRAME_OVERHEAD];
        let n = encode(kind, seq, payload, &mut buf).unwrap();
        buf[..n].to_vec()
    }

    #[test]
    fn frames_and_console_text_share_the_line() {
        let mut line = b"stat".to_vec();
        line.extend(frame(Kind::Data, 7, b"\x00\x00\x00\x00hello"));
        line.extend(b"us\n");
        let (console, frames, dropped) = decode_all(&line);
        assert_eq!(console, b"status\n");
        assert_eq!(frames, [(Kind::Data, 7, b"\x00\x00\x00\x00hello".to_vec())]);
        assert_eq!(dropped, 0);
    }

    #[test]
    fn corrupt_cut_and_oversize_frames_are_dropped_and_the_next_one_found() {
        let good = frame(Kind::End, 3, b"");
        let mut corrupt = frame(Kind::Data, 1, b"\x00\x00\x00\x00abc");
        corrupt[8] ^= 0xff;
        let mut oversize = frame(Kind::Data, 4, b"");
        oversize[4..6].copy_from_slice(&u16::MAX.to_le_bytes());
        let mut line = Vec::new();
        for part in [&corrupt[..], &good[..], &oversize[..6], &[SOH, b'\n'][..], &good[..]] {
            line.extend_from_slice(part);
        }
        let (console, frames, dropped) = decode_all(&line);
        assert_eq!(frames.len(), 2, "both good frames survive: {frames:?}");
        assert_eq!(dropped, 2, "corrupt, oversize");
        assert_eq!(console, b"\n", "a stray SOH gives its next byte back to the console");
        // A frame cut short is forgotten once the line is quiet.
        let mut d = Decoder::default();
        for &b in &frame(Kind::Data, 2, b"\x00\x00\x00\x00abcdef")[..5] {
            assert_eq!(d.feed(b), Decoded::Pending);
        }
        d.reset();
        assert_eq!(d.feed(b'x'), Decoded::Console(b'x'));
        assert!(encode(Kind::Data, 0, &[0; MAX_PAYLOAD + 1], &mut [0; 2048]).is_none());
    }
}
