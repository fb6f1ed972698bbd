//! Test module: kv whose import_state spins forever.
#![no_std]

module_rt::export_module!(kv_faulty::Faulty<{ kv_faulty::mode::IMPORT_SPIN }>);
