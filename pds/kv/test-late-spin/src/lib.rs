//! Test module: kv whose a call spins forever after a few thousand calls.
#![no_std]

module_rt::export_module!(kv_faulty::Faulty<{ kv_faulty::mode::LATE_SPIN }>);
