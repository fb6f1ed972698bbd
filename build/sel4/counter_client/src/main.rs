//! The counter client PD on seL4: `counter_api::run`, as on the host.
#![no_std]
#![no_main]

#[sel4_microkit::protection_domain(heap_size = 0x4000)]
fn init() -> sel4_microkit::NullHandler {
    counter_api::run(sel4_pd::Sel4Pd::current());
    sel4_microkit::NullHandler::new()
}
