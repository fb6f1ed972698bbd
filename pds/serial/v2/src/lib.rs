//! Serial service, version 2.
#![no_std]

module_rt::export_module!(serial_core::SerialPump<2>);
