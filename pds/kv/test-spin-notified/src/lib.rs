//! Test module: kv whose notified spins forever.
#![no_std]

module_rt::export_module!(kv_faulty::Faulty<{ kv_faulty::mode::NOTIFIED_SPIN }>);
