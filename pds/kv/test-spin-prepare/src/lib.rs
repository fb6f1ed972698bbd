//! Test module: kv whose prepare spins forever.
#![no_std]

module_rt::export_module!(kv_faulty::Faulty<{ kv_faulty::mode::PREPARE_SPIN }>);
