//! Test module: kv whose init reads an unmapped address (a hardware
//! fault, not a panic).
#![no_std]

module_rt::export_module!(kv_faulty::Faulty<{ kv_faulty::mode::INIT_ABORT }>);
