//! The blob client PD on seL4: `blob_api::run`, as on the host.
#![no_std]
#![no_main]
sel4_pd::client_main!(blob_api::run);
