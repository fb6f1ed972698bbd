//! The serial driver's device-independent part: its two queues (sDDF
//! style: `rx_queue` it produces into, `tx_queue` it consumes from) and the
//! output translation. Only the driver touches the device; its client (the
//! update manager's console) sees only the queues and a channel.
#![no_std]

use interfaces::queue::{Consumer, Producer};
use pd_api::{ChannelId, Pd};

/// The byte a driver queues when its input ends (host: end of stdin).
pub const END_OF_INPUT: u8 = 0x04;

pub struct Queues {
    pub rx: Producer,
    pub tx: Consumer,
    /// The channel to the queues' client.
    pub client: ChannelId,
}

impl Queues {
    /// The driver's ends of its queues, from the regions named `rx_queue`
    /// and `tx_queue`, and the channel to `client_pd`.
    pub fn attach<P: Pd + ?Sized>(pd: &P, client_pd: &str) -> Result<Queues, &'static str> {
        let rx = pd.region("rx_queue").filter(|r| r.writable).ok_or("no writable 'rx_queue' region")?;
        let tx = pd.region("tx_queue").filter(|r| r.writable).ok_or("no writable 'tx_queue' region")?;
        let client = pd.channel(client_pd).ok_or("no channel to the console")?;
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

/// Expands `\n` to `\r\n` for a terminal, into `out`; returns the length.
pub fn to_terminal(input: &[u8], out: &mut [u8]) -> usize {
    let mut n = 0;
    for &b in input {
        if b == b'\n' && n + 2 <= out.len() {
            out[n] = b'\r';
            out[n + 1] = b'\n';
            n += 2;
        } else if n < out.len() {
            out[n] = b;
            n += 1;
        }
    }
    n
}
