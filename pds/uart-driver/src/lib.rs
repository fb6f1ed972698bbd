//! The UART driver's device-independent part: its two queues (sDDF
//! style: `rx_queue` it produces into, `tx_queue` it consumes from) and the
//! output translation. Only the driver touches the device; its client sees
//! only the queues and a channel. The client is either a fixed PD (the
//! update manager's console) or, when the serial service is updatable, the
//! live slot of the `serial0` instance, which runs a version of the
//! serial service (`serial-v1`, `serial-v2`, over `serial-core`) and moves
//! bytes between the device's queues and the console's.
#![no_std]

use interfaces::queue::{Consumer, Producer};
use pd_api::{ChannelId, Pd};
use service_stub::NamedInstance;

/// The updatable serial service's instance, when the system has one.
pub const SERIAL_INSTANCE: &str = "serial0";

/// The other end of a driver's queues.
pub enum Peer {
    /// A fixed PD.
    Fixed(ChannelId),
    /// Whichever slot of a service instance the capability map says is live.
    Instance(NamedInstance<'static>),
}

impl Peer {
    /// The instance `name` if this PD has channels to both its slots and the
    /// capability map, else the fixed PD `name`.
    pub fn find<P: Pd + ?Sized>(pd: &P, name: &'static str) -> Option<Peer> {
        NamedInstance::find(pd, name).map(Peer::Instance).or_else(|| pd.channel(name).map(Peer::Fixed))
    }

    /// Notifies the peer (the live slot; nobody while none is live: the
    /// manager kicks a slot when it commits it).
    pub fn notify<P: Pd + ?Sized>(&self, pd: &P) {
        match self {
            Peer::Fixed(ch) => pd.notify(*ch),
            Peer::Instance(instance) => {
                if let Some(live) = instance.live() {
                    pd.notify(live);
                }
            }
        }
    }

    /// Whether a notification on `ch` comes from the peer.
    pub fn is(&self, ch: ChannelId) -> bool {
        match self {
            Peer::Fixed(c) => *c == ch,
            Peer::Instance(instance) => instance.is_slot(ch),
        }
    }
}

/// The byte a driver queues when its input ends (host: end of stdin).
pub const END_OF_INPUT: u8 = 0x04;

pub struct Queues {
    pub rx: Producer,
    pub tx: Consumer,
    /// The queues' client.
    pub client: Peer,
}

impl Queues {
    /// The driver's ends of its queues, from the regions named `rx_queue`
    /// and `tx_queue`, and its client: the serial instance's live slot if
    /// the system has one, else the fixed PD `client_pd`.
    pub fn attach<P: Pd + ?Sized>(pd: &P, client_pd: &'static str) -> Result<Queues, &'static str> {
        let rx = pd.region("rx_queue").filter(|r| r.writable).ok_or("no writable 'rx_queue' region")?;
        let tx = pd.region("tx_queue").filter(|r| r.writable).ok_or("no writable 'tx_queue' region")?;
        let client = Peer::find(pd, SERIAL_INSTANCE)
            .or_else(|| Peer::find(pd, client_pd))
            .ok_or("no channel to the console or the serial service")?;
        // SAFETY: both regions stay mapped for the PD's life; the driver is
        // the only producer of rx and the only consumer of tx.
        unsafe {
            Ok(Queues {
                rx: Producer::new(rx.base, rx.size).ok_or("bad 'rx_queue' region")?,
                tx: Consumer::new(tx.base, tx.size).ok_or("bad 'tx_queue' region")?,
                client,
            })
        }
    }
}

/// The start of an upload frame on the line (see the `upload` crate): the
/// bytes of a frame are binary and must reach the other end unchanged.
const SOH: u8 = 0x01;
/// Bytes of a frame after `SOH` up to and including its length field.
const FRAME_HEADER: usize = 5;
/// Bytes of a frame's checksum, after its payload.
const FRAME_CRC: usize = 4;

/// Expands `\n` to `\r\n` for a terminal, except inside upload frames,
/// which it passes through byte for byte. It keeps its place across calls,
/// because a frame may span two pops of the queue.
#[derive(Default)]
pub struct TerminalOut {
    /// Header bytes of a frame seen so far (after its SOH).
    header: [u8; FRAME_HEADER],
    in_header: usize,
    /// Frame bytes (payload and checksum) still to pass through.
    raw_left: usize,
}

impl TerminalOut {
    /// Translates `input` into `out` (which must hold twice as many bytes);
    /// returns the length written.
    pub fn translate(&mut self, input: &[u8], out: &mut [u8]) -> usize {
        let mut n = 0;
        let mut put = |b: u8, n: &mut usize| {
            if *n < out.len() {
                out[*n] = b;
                *n += 1;
            }
        };
        for &b in input {
            if self.raw_left > 0 {
                self.raw_left -= 1;
                put(b, &mut n);
            } else if self.in_header > 0 {
                self.header[self.in_header - 1] = b;
                put(b, &mut n);
                if self.in_header == FRAME_HEADER {
                    let len = u16::from_le_bytes([self.header[3], self.header[4]]) as usize;
                    self.raw_left = len + FRAME_CRC;
                    self.in_header = 0;
                } else {
                    self.in_header += 1;
                }
            } else if b == SOH {
                self.in_header = 1;
                put(b, &mut n);
            } else if b == b'\n' {
                put(b'\r', &mut n);
                put(b'\n', &mut n);
            } else {
                put(b, &mut n);
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_gets_crlf_and_frames_pass_untouched_across_calls() {
        let mut t = TerminalOut::default();
        let mut out = [0u8; 64];
        let n = t.translate(b"ok\n", &mut out);
        assert_eq!(&out[..n], b"ok\r\n");
        // A frame with a payload of two newlines, split across two calls.
        let frame = [SOH, 0x20, 1, 0, 2, 0, b'\n', b'\n', 9, 9, 9, 9];
        let n1 = t.translate(&frame[..7], &mut out);
        let mut got = out[..n1].to_vec();
        let n2 = t.translate(&frame[7..], &mut out);
        got.extend_from_slice(&out[..n2]);
        assert_eq!(got, frame);
        let n = t.translate(b"\n", &mut out);
        assert_eq!(&out[..n], b"\r\n", "text again after the frame");
    }
}
