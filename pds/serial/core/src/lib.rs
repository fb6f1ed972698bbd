//! The updatable serial service: moves bytes between the device's queues
//! (`uart_rx`, `uart_tx`, owned by the fixed device PD) and the console's
//! (`console_rx`, `console_tx`, read and written by the manager). All of
//! its position lives in the queues' shared indices, so a new version
//! carries on exactly where the old one stopped: no byte is lost or
//! repeated across an update. Its only own state is a pair of byte counts.
//!
//! A crate of its own: PD programs link the `uart-driver` library, and must not
//! link the module runtime (whose bare-metal panic handler is a module's).
#![no_std]

use interfaces::abi::{ModuleDescriptor, RegionInfo};
use interfaces::queue::{Consumer, Producer};
use interfaces::Message;
use module_rt::schema::{self, RecordState, Schema};
use module_rt::{state_record, Env, Module};

state_record! {
    /// The service's own state: the bytes it moved each way.
    #[derive(Clone, Copy)]
    pub struct Counts {
        pub bytes_in: u64,
        pub bytes_out: u64,
    }
}

/// Schema 1: one [`Counts`].
pub struct Schema1;
impl Schema for Schema1 {
    const ID: u32 = 1;
    const MAX_RECORDS: u32 = 1;
    type Record<'a> = Counts;
}

pub const SCHEMA: u32 = Schema1::ID;

pub struct SerialPump<const VERSION: u32> {
    env: Env,
    uart: u32,
    console: u32,
    from_device: Consumer,
    to_device: Producer,
    to_console: Producer,
    from_console: Consumer,
    /// Bytes moved in and out since the service first started.
    counts: Counts,
}

fn region(env: &Env, name: &str) -> Result<RegionInfo, &'static str> {
    env.region(name).filter(|r| r.writable != 0).ok_or("a queue region is missing or read-only")
}

impl<const VERSION: u32> SerialPump<VERSION> {
    /// Moves whatever is waiting, both ways, and tells each side.
    ///
    /// Every queue is bounded and a producer that finds its queue full
    /// waits to be told of room, so a side is told whenever one of its
    /// queues changed: bytes to read, or room to write. A move in either
    /// direction does both (it empties one of the side's queues and fills
    /// the other's), so whatever moved, both sides hear of it.
    fn pump(&mut self) {
        let mut buf = [0u8; 256];
        let mut moved_any = false;
        loop {
            let mut moved = false;
            // Only take from a queue what fits the next one: nothing is
            // held here between events.
            let room = self.to_console.free().unwrap_or(0).min(buf.len());
            if let Ok(n @ 1..) = self.from_device.pop(&mut buf[..room]) {
                let _ = self.to_console.push(&buf[..n]);
                self.counts.bytes_in += n as u64;
                moved = true;
            }
            let room = self.to_device.free().unwrap_or(0).min(buf.len());
            if let Ok(n @ 1..) = self.from_console.pop(&mut buf[..room]) {
                let _ = self.to_device.push(&buf[..n]);
                self.counts.bytes_out += n as u64;
                moved = true;
            }
            if !moved {
                break;
            }
            moved_any = true;
        }
        if moved_any {
            self.env.notify(self.console);
            self.env.notify(self.uart);
        }
    }
}

impl<const VERSION: u32> Module for SerialPump<VERSION> {
    const DESCRIPTOR: ModuleDescriptor = schema::descriptor::<Self>("serial", VERSION)
        .channel("uart")
        .channel("update_manager")
        .region("uart_rx")
        .region("uart_tx")
        .region("console_rx")
        .region("console_tx");

    fn init(env: Env) -> Result<Self, &'static str> {
        let (urx, utx) = (region(&env, "uart_rx")?, region(&env, "uart_tx")?);
        let (crx, ctx) = (region(&env, "console_rx")?, region(&env, "console_tx")?);
        // SAFETY: the regions stay mapped while the module is hosted; this
        // slot is the one consumer of uart_rx/console_tx and producer of
        // uart_tx/console_rx while it is live (the other slot is not).
        let q = unsafe {
            (
                Consumer::new(urx.base, urx.size),
                Producer::new(utx.base, utx.size),
                Producer::new(crx.base, crx.size),
                Consumer::new(ctx.base, ctx.size),
            )
        };
        let (Some(from_device), Some(to_device), Some(to_console), Some(from_console)) = q else {
            return Err("a queue region is too small");
        };
        Ok(SerialPump {
            uart: env.channel("uart").ok_or("no channel to the uart")?,
            console: env.channel("update_manager").ok_or("no channel to the console")?,
            env,
            from_device,
            to_device,
            to_console,
            from_console,
            counts: Counts { bytes_in: 0, bytes_out: 0 },
        })
    }

    fn notified(&mut self, _ch: u32) {
        self.pump();
    }

    fn protected(&mut self, _ch: u32, msg: &mut Message) {
        *msg = Message::with_words(0, &[self.counts.bytes_in, self.counts.bytes_out]);
    }

    fn export_state(&mut self, schema: u32, out: &mut [u8]) -> Result<usize, i32> {
        schema::export(self, schema, out)
    }

    fn import_state(&mut self, schema: u32, data: &[u8]) -> Result<(), i32> {
        schema::import(self, schema, data)?;
        // Whatever queued up while no slot was live is moved now.
        self.pump();
        Ok(())
    }
}

impl<const VERSION: u32> RecordState for SerialPump<VERSION> {
    type Newest = Schema1;
    type Olders = ();
    fn clear(&mut self) {
        self.counts = Counts { bytes_in: 0, bytes_out: 0 };
    }
    fn insert(&mut self, r: Counts) -> Result<(), i32> {
        self.counts = r;
        Ok(())
    }
    fn each(&self, f: &mut dyn FnMut(Counts) -> Result<(), i32>) -> Result<(), i32> {
        f(self.counts)
    }
}
