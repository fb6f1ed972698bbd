//! The receiving side of an upload: one bundle at a time, into a buffer the
//! caller owns, byte ranges accepted only in order, every frame answered.
use crate::frame::{Frame, Kind};
use bundle::BundleHeader;

/// Why a frame was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Nak {
    /// DATA or END with no upload under way.
    NoUpload = 1,
    /// A BEGIN whose header or length is not a bundle's.
    BadBegin = 2,
    /// The bundle would not fit the upload buffer.
    TooLarge = 3,
    /// DATA beyond what was received so far: resend from `resume`.
    OutOfOrder = 4,
    /// A payload too short for its kind, or data past the end.
    Malformed = 5,
    /// END before every byte arrived: resend from `resume`.
    Incomplete = 6,
}

/// What to answer a frame with, and what happened.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    Ack,
    /// `resume`: the offset the receiver expects next.
    Nak {
        reason: Nak,
        resume: u64,
    },
    /// The last byte arrived: the bundle is `len` bytes at the start of the
    /// buffer, not yet verified (the caller verifies it, then acknowledges).
    Complete {
        len: usize,
    },
    /// An END repeated because the answer to the first was lost: the same
    /// bundle (already handed over by `Complete`) is meant.
    AlreadyComplete {
        len: usize,
    },
    /// The sender gave up; nothing was kept.
    Aborted,
}

pub struct Receiver {
    /// Total length of the upload under way, if any.
    expected: Option<u64>,
    received: u64,
    /// The length of the last completed upload, until a new one begins.
    completed: Option<u64>,
}

impl Default for Receiver {
    fn default() -> Self {
        Self::new()
    }
}

impl Receiver {
    pub const fn new() -> Self {
        Receiver { expected: None, received: 0, completed: None }
    }

    /// Bytes received of the upload under way: (received, total).
    pub fn progress(&self) -> Option<(u64, u64)> {
        self.expected.map(|e| (self.received, e))
    }

    fn nak(&self, reason: Nak) -> Reply {
        Reply::Nak { reason, resume: self.received }
    }

    /// Handles one checked frame, storing data into `buf`.
    pub fn on_frame(&mut self, f: &Frame, buf: &mut [u8]) -> Reply {
        match f.kind {
            Kind::Begin => {
                self.completed = None;
                // Total length, then the bundle header: everything the size
                // checks need, before one byte of the image is stored.
                let Some((total, header)) = f.payload.split_first_chunk::<8>() else {
                    return self.nak(Nak::Malformed);
                };
                let total = u64::from_le_bytes(*total);
                let ok = BundleHeader::parse(header).and_then(|h| h.check_length(total).map(|()| h));
                match ok {
                    Err(_) => {
                        self.expected = None;
                        self.received = 0;
                        Reply::Nak { reason: Nak::BadBegin, resume: 0 }
                    }
                    Ok(_) if total > buf.len() as u64 => {
                        self.expected = None;
                        self.received = 0;
                        Reply::Nak { reason: Nak::TooLarge, resume: 0 }
                    }
                    Ok(_) => {
                        // A repeated BEGIN (its ACK was lost) starts over.
                        self.expected = Some(total);
                        self.received = 0;
                        Reply::Ack
                    }
                }
            }
            Kind::Data => {
                let Some(total) = self.expected else { return self.nak(Nak::NoUpload) };
                let Some((offset, bytes)) = f.payload.split_first_chunk::<4>() else {
                    return self.nak(Nak::Malformed);
                };
                let offset = u32::from_le_bytes(*offset) as u64;
                let end = offset + bytes.len() as u64;
                if end > total {
                    return self.nak(Nak::Malformed);
                }
                if end <= self.received {
                    return Reply::Ack; // a repeat of data already stored
                }
                if offset != self.received {
                    return self.nak(Nak::OutOfOrder);
                }
                buf[offset as usize..end as usize].copy_from_slice(bytes);
                self.received = end;
                Reply::Ack
            }
            Kind::End => match self.expected {
                None => match self.completed {
                    Some(len) => Reply::AlreadyComplete { len: len as usize },
                    None => self.nak(Nak::NoUpload),
                },
                Some(total) if self.received < total => self.nak(Nak::Incomplete),
                Some(total) => {
                    self.expected = None;
                    self.received = 0;
                    self.completed = Some(total);
                    Reply::Complete { len: total as usize }
                }
            },
            Kind::Abort => {
                self.completed = None;
                self.expected = None;
                self.received = 0;
                Reply::Aborted
            }
            Kind::Ack | Kind::Nak => self.nak(Nak::Malformed),
        }
    }
}
