//! Serial service, version 1.
#![no_std]

module_rt::export_module!(serial_core::SerialPump<1>);
