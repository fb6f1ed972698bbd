//! Test module: kv whose import reads an unmapped address (a hardware
//! fault, not a panic).
#![no_std]

module_rt::export_module!(kv_faulty::Faulty<{ kv_faulty::mode::IMPORT_ABORT }>);
