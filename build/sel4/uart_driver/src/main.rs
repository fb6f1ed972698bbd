//! The UART driver PD on seL4: owns the PL011 (region `uart`, symbol
//! `uart_base`) and its interrupt (the PD's `<irq>` in the system
//! description). Received bytes go into the rx queue and the client (the
//! manager's console, or the live slot of the updatable serial service) is
//! notified; when the client notifies, the tx queue is drained to the UART.
//! The interrupt stays here, acknowledged here, whatever the client is.
#![no_std]
#![no_main]

use pd_api::{ChannelId, Handler, Pd};
use pl011::Pl011;
use sel4_microkit::{debug_println, protection_domain};
use sel4_pd::{Adapter, Sel4Pd};
use uart_driver::{Queues, TerminalOut};

struct Driver {
    uart: Pl011,
    q: Queues,
    /// The interrupt's channel id (`<irq irq="33" id=".."/>`).
    irq: ChannelId,
    /// `\n` -> `\r\n` for the terminal, frames untouched.
    term: TerminalOut,
}

impl Driver {
    fn receive(&mut self, pd: &Sel4Pd) {
        let mut buf = [0u8; 64];
        let mut got = false;
        // Clear first, then drain: a byte that arrives after the FIFO was
        // found empty raises the interrupt again. (Clearing after draining
        // lost such a byte until the next key: QEMU's PL011 raises RX only
        // when a byte arrives, not while the FIFO holds one.)
        self.uart.clear_rx_interrupts();
        loop {
            let n = self.uart.read_into(&mut buf);
            if n == 0 {
                break;
            }
            let mut bytes = &buf[..n];
            while !bytes.is_empty() {
                match self.q.rx.push(bytes) {
                    // Queue full: the console is behind; drop the rest
                    // rather than stall the interrupt.
                    Ok(0) => {
                        pd.log(format_args!("rx queue full: {} bytes dropped", bytes.len()));
                        bytes = &[];
                    }
                    Ok(k) => bytes = &bytes[k..],
                    Err(_) => {
                        pd.log(format_args!("console corrupted the rx queue; input dropped"));
                        bytes = &[];
                    }
                }
            }
            got = true;
        }
        pd.irq_ack(self.irq);
        if got {
            self.q.client.notify(pd);
        }
    }

    fn transmit(&mut self, pd: &Sel4Pd) {
        let mut buf = [0u8; 512];
        let mut out = [0u8; 1024];
        let mut drained = false;
        loop {
            match self.q.tx.pop(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let m = self.term.translate(&buf[..n], &mut out);
                    self.uart.write(&out[..m]);
                    drained = true;
                }
                Err(_) => {
                    pd.log(format_args!("console wrote an impossible tx index; dropping output"));
                    break;
                }
            }
        }
        if drained {
            // Room again in the tx queue: the client may be holding back
            // output that did not fit, with nothing else to wake it.
            self.q.client.notify(pd);
        }
    }
}

impl Handler<Sel4Pd> for Driver {
    fn notified(&mut self, pd: &Sel4Pd, ch: ChannelId) {
        if ch == self.irq {
            self.receive(pd);
        } else if self.q.client.is(ch) {
            self.transmit(pd);
        }
    }
}

// A small heap: sel4-microkit's "alloc" feature (which the manager and the
// shell need) is unified across this workspace and makes every program need one.
#[protection_domain(heap_size = 0x4000)]
fn init() -> Adapter<Driver> {
    let pd = Sel4Pd::current();
    let q = Queues::attach(pd, interfaces::control::MANAGER_PD).unwrap_or_else(|e| panic!("serial: {e}"));
    let irq = match pd.info().irqs {
        [irq] => irq.id,
        irqs => panic!("serial: one <irq> expected, the system gives {}", irqs.len()),
    };
    let uart_region = pd.region("uart_base").unwrap_or_else(|| panic!("serial: no 'uart_base' mapping"));
    // SAFETY: the uart mapping is the PL011's registers, uncached, ours alone.
    let uart = unsafe { Pl011::new(uart_region.base) };
    uart.init();
    debug_println!("serial: PL011 at {:p}, interrupt on channel {irq}", uart_region.base);
    Adapter::new(pd, Driver { uart, q, irq, term: TerminalOut::default() })
}
