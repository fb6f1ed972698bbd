//! Test module: kv whose init spins forever.
#![no_std]

module_rt::export_module!(kv_faulty::Faulty<{ kv_faulty::mode::INIT_SPIN }>);
