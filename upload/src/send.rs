//! The sending side: splits a bundle into frames, sends each until it is
//! acknowledged, rewinds when the receiver says where it stands, and
//! reports progress.
extern crate std;

use crate::frame::{encode, Kind, FRAME_OVERHEAD, MAX_PAYLOAD};
use crate::receiver::Nak;
use std::string::String;
use std::time::Duration;
use std::vec::Vec;

/// Bytes of bundle per DATA frame.
pub const CHUNK: usize = 896;
/// Sends of one frame before the upload is given up.
pub const ATTEMPTS: u32 = 20;

/// A line to the manager's console.
pub trait Line {
    fn send(&mut self, bytes: &[u8]) -> std::io::Result<()>;
    /// The next frame the manager sent, or `None` if none came in time.
    fn recv_frame(&mut self, timeout: Duration) -> std::io::Result<Option<(Kind, u16, Vec<u8>)>>;
}

/// How an upload ended.
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    pub admitted: bool,
    /// The manager's words: what it admitted, or why it refused.
    pub text: String,
}

fn frames(bundle: &[u8]) -> Vec<(Kind, Vec<u8>)> {
    let mut begin = (bundle.len() as u64).to_le_bytes().to_vec();
    begin.extend_from_slice(&bundle[..bundle.len().min(bundle::HEADER_LEN)]);
    let mut v = Vec::from([(Kind::Begin, begin)]);
    for (k, chunk) in bundle.chunks(CHUNK).enumerate() {
        let mut p = ((k * CHUNK) as u32).to_le_bytes().to_vec();
        p.extend_from_slice(chunk);
        v.push((Kind::Data, p));
    }
    v.push((Kind::End, Vec::new()));
    v
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Uploads `bundle`; `progress(sent, total)` is called as bytes are
/// acknowledged. Errors are I/O errors or a manager that stopped answering.
pub fn send_bundle(
    line: &mut impl Line,
    bundle: &[u8],
    mut progress: impl FnMut(u64, u64),
) -> std::io::Result<Outcome> {
    let plan = frames(bundle);
    let (mut next, mut attempts, mut seq) = (0usize, 0u32, 0u16);
    let total = bundle.len() as u64;
    while next < plan.len() {
        if attempts == ATTEMPTS {
            return Err(std::io::Error::other(std::format!("no answer to frame {next} after {ATTEMPTS} tries")));
        }
        attempts += 1;
        seq = seq.wrapping_add(1);
        let (kind, payload) = &plan[next];
        let mut buf = [0u8; MAX_PAYLOAD + FRAME_OVERHEAD];
        let n = encode(*kind, seq, payload, &mut buf).expect("frames fit");
        line.send(&buf[..n])?;
        // Answers to earlier (retransmitted) frames carry older sequence
        // numbers: skip them.
        let answer = loop {
            match line.recv_frame(Duration::from_millis(1500))? {
                Some((k, s, p)) if s == seq => break Some((k, p)),
                Some(_) => continue,
                None => break None,
            }
        };
        match answer {
            None => continue, // lost on the way, there or back: send again
            Some((Kind::Ack, p)) => {
                if *kind == Kind::End {
                    return Ok(Outcome { admitted: true, text: text(&p) });
                }
                if *kind == Kind::Data {
                    progress(((next * CHUNK) as u64 + (payload.len() - 4) as u64).min(total), total);
                }
                next += 1;
                attempts = 0;
            }
            Some((Kind::Nak, p)) => {
                let reason = p.first().copied().unwrap_or(0);
                let resume = p.get(1..9).map_or(0, |r| u64::from_le_bytes(r.try_into().expect("8 bytes")));
                if reason == Nak::OutOfOrder as u8 || reason == Nak::Incomplete as u8 {
                    next = 1 + resume as usize / CHUNK;
                } else if reason == Nak::NoUpload as u8 && *kind != Kind::Begin {
                    next = 0; // the receiver lost the upload: start over
                } else {
                    let why =
                        p.get(9..).map(text).filter(|t| !t.is_empty()).unwrap_or_else(|| std::format!("{reason:?}"));
                    return Ok(Outcome { admitted: false, text: nak_text(reason, why) });
                }
            }
            Some(_) => {}
        }
    }
    Err(std::io::Error::other("upload ended without an answer"))
}

fn nak_text(reason: u8, why: String) -> String {
    match reason {
        r if r == Nak::TooLarge as u8 => String::from("refused: the bundle is larger than the upload buffer"),
        r if r == Nak::BadBegin as u8 => String::from("refused: not a well-formed bundle (header or length)"),
        _ => why,
    }
}
