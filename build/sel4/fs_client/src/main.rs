//! The file service's client PD on seL4: the same load as on the host
//! (`client::fs::run`: files appended, read back and audited through the
//! fs service). It works from `init`, as a Microkit PD may, and never
//! stops (the host's stop file has no seL4 counterpart).
#![no_std]
#![no_main]

use sel4_microkit::{protection_domain, NullHandler};
use sel4_pd::Sel4Pd;

#[protection_domain(heap_size = 0x4000)]
fn init() -> NullHandler {
    client::fs::run(Sel4Pd::current(), &|| false, false);
    NullHandler::new()
}
