//! The kv client PD on seL4: the same load generator as on the host. It
//! works from `init`, as a Microkit PD may, and never returns from it.
#![no_std]
#![no_main]

use sel4_microkit::{protection_domain, NullHandler};
use sel4_pd::Sel4Pd;

#[protection_domain]
fn init() -> NullHandler {
    let pd = Sel4Pd::current();
    client::run(pd);
    NullHandler::new()
}
