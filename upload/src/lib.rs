//! Uploading update bundles over the serial line the console uses.
//!
//! Frames share the line with typed commands: a frame starts with `SOH`
//! (0x01), which a person never types, so everything else is console input.
//! A frame is `SOH | kind | seq (u16) | len (u16) | payload | crc32`, all
//! little endian, the CRC over kind..payload. The [`Decoder`] takes the line
//! byte by byte and hands back console bytes and checked frames. A frame
//! that is corrupted or oversized is dropped and the decoder looks for the
//! next `SOH`; one cut short is forgotten when the line goes quiet
//! ([`Decoder::reset`]); either way the sender, hearing no answer, sends it
//! again.
//!
//! An upload is `BEGIN` (the bundle's header and total length, checked
//! against the size limits before any byte is stored), `DATA` frames at
//! increasing offsets, and `END`. The receiver answers every frame with
//! `ACK` or `NAK` and the sender retransmits until acknowledged, so dropped
//! and repeated frames are harmless. The [`Receiver`] stores data only at
//! the offset it expects and admits the bundle only once complete and
//! verified: the image store never holds a partial image.
#![no_std]

mod crc;
mod frame;
mod receiver;
#[cfg(feature = "send")]
pub mod send;

pub use crc::crc32;
pub use frame::{encode, Decoded, Decoder, Frame, Kind, FRAME_OVERHEAD, MAX_PAYLOAD, SOH};
pub use receiver::{Nak, Receiver, Reply};
