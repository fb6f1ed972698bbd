//! The counter client PD on seL4: `counter_api::run`, as on the host.
#![no_std]
#![no_main]
sel4_pd::client_main!(counter_api::run);
