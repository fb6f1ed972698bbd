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
    match Manager::new(pd, placer::StaticImagePlacer) {
        Ok(m) => Adapter::new(pd, m),
        Err(e) => panic!("update_manager: {e}"),
    }
}
