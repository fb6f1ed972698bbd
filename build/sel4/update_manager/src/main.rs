//! The update manager on seL4.
#![no_std]
#![no_main]

extern crate alloc;

mod cache_spans;
mod placer;

use sel4_microkit::protection_domain;
use sel4_pd::{Adapter, Sel4Pd};
use update_manager::Manager;

#[protection_domain(heap_size = 0x80000)]
fn init() -> Adapter<Manager<Sel4Pd, placer::StaticImagePlacer>> {
    let pd = Sel4Pd::current();
    // Every deadline of the supervisor (a slot's answer, the watchdog's
    // tick) rests on the timer: without it a hung slot would hang the
    // manager. Refuse to start rather than run without.
    if pd.timer_channel().is_none() {
        panic!(
            "update_manager: the system description gives the manager no timer: add <irq irq=\"{}\" id=\"N\" />",
            sel4_pd::timer::TIMER_IRQ
        );
    }
    match Manager::new(pd, placer::StaticImagePlacer) {
        Ok(m) => Adapter::new(pd, m),
        Err(e) => panic!("update_manager: {e}"),
    }
}
