//! Serial service, version 1.
#![no_std]

module_rt::export_module!(serial::module::SerialPump<1>);
