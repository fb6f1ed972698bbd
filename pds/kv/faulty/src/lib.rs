//! kv modules that fail at one step of an update, on purpose: the update
//! protocol must roll each of them back with nothing lost. Each wraps kv v2
//! and breaks one thing; each test image crate exports one of them.
#![no_std]

use interfaces::abi::{status, ModuleDescriptor};
use interfaces::Message;
use kv_core::modules::KvV2;
use module_rt::{Env, Module};

/// How a [`Faulty`] module fails.
pub mod mode {
    /// `import_state` returns an error.
    pub const IMPORT_ERROR: u8 = 1;
    /// `init` panics (the slot faults while being built).
    pub const INIT_FAULT: u8 = 2;
    /// `import_state` panics (the slot faults during transfer).
    pub const IMPORT_FAULT: u8 = 3;
    /// `prepare` never says ready (quiescence times out).
    pub const NEVER_READY: u8 = 4;
    /// Declares a channel no slot has (refused when loaded).
    pub const NEEDS_CHANNEL: u8 = 5;
    /// `init` reads an unmapped address (a hardware fault, not a panic: a
    /// data abort on seL4, SIGSEGV on the host).
    pub const INIT_ABORT: u8 = 6;
    /// `import_state` reads an unmapped address.
    pub const IMPORT_ABORT: u8 = 7;
    /// `init` spins for ever.
    pub const INIT_SPIN: u8 = 8;
    /// `import_state` spins for ever.
    pub const IMPORT_SPIN: u8 = 9;
    /// `prepare` spins for ever.
    pub const PREPARE_SPIN: u8 = 10;
    /// After [`super::LATE_AFTER`] calls, a call spins for ever.
    pub const LATE_SPIN: u8 = 11;
    /// After [`super::LATE_AFTER`] calls, a call reads an unmapped address.
    pub const LATE_FAULT: u8 = 12;
    /// After [`super::LATE_AFTER`] calls, a call panics.
    pub const LATE_PANIC: u8 = 13;
    /// `notified` spins for ever (the manager's first kick after the
    /// commit gets there).
    pub const NOTIFIED_SPIN: u8 = 14;
    /// Every call logs a line: a flood.
    pub const LOG_FLOOD: u8 = 15;
}

/// The calls a `LATE_*` module serves well before it misbehaves.
pub const LATE_AFTER: u64 = 2000;

/// Never returns, and the compiler may not assume it does not.
fn spin() -> ! {
    loop {
        core::hint::spin_loop();
        // SAFETY: a volatile read of a local: keeps the loop from being
        // optimised into something else.
        unsafe { core::ptr::read_volatile(&0u8) };
    }
}

/// Reads an address no PD maps (the first page is never mapped).
fn read_unmapped() -> u64 {
    // SAFETY: none: this is the deliberate fault (aligned and non-null,
    // so only the hardware objects).
    unsafe { core::ptr::read_volatile(0x10 as *const u64) }
}

pub struct Faulty<const MODE: u8> {
    kv: KvV2,
    env: Env,
    calls: u64,
}

impl<const MODE: u8> Module for Faulty<MODE> {
    const DESCRIPTOR: ModuleDescriptor = {
        let d = ModuleDescriptor::new("kv", 90 + MODE as u32, 2).imports(1).exports(1);
        match MODE {
            mode::NEEDS_CHANNEL => d.channel("timer"),
            // Hears the manager's kick after its commit (the one
            // notification a kv slot gets), and spins there.
            mode::NOTIFIED_SPIN => d.channel("update_manager"),
            _ => d,
        }
    };

    fn init(env: Env) -> Result<Self, &'static str> {
        if MODE == mode::INIT_FAULT {
            panic!("kv-fault-init: deliberate fault in init");
        }
        if MODE == mode::INIT_ABORT {
            read_unmapped();
        }
        if MODE == mode::INIT_SPIN {
            spin();
        }
        KvV2::init(env).map(|kv| Faulty { kv, env, calls: 0 })
    }

    fn protected(&mut self, ch: u32, msg: &mut Message) {
        self.calls += 1;
        if self.calls > LATE_AFTER {
            match MODE {
                mode::LATE_SPIN => spin(),
                mode::LATE_FAULT => {
                    read_unmapped();
                }
                mode::LATE_PANIC => panic!("kv-late-panic: deliberate panic in a call"),
                _ => {}
            }
        }
        if MODE == mode::LOG_FLOOD {
            self.env.log("kv-log-flood: a line for every call");
        }
        self.kv.protected(ch, msg)
    }

    fn notified(&mut self, _ch: u32) {
        if MODE == mode::NOTIFIED_SPIN {
            spin();
        }
    }

    fn prepare(&mut self) -> bool {
        if MODE == mode::PREPARE_SPIN {
            spin();
        }
        MODE != mode::NEVER_READY
    }

    fn export_state(&mut self, schema: u32, out: &mut [u8]) -> Result<usize, i32> {
        self.kv.export_state(schema, out)
    }

    fn import_state(&mut self, schema: u32, data: &[u8]) -> Result<(), i32> {
        match MODE {
            mode::IMPORT_ERROR => Err(status::BAD_STATE),
            mode::IMPORT_FAULT => panic!("kv-fault-import: deliberate fault in import"),
            mode::IMPORT_ABORT => {
                read_unmapped();
                Err(status::BAD_STATE)
            }
            mode::IMPORT_SPIN => spin(),
            _ => self.kv.import_state(schema, data),
        }
    }
}
