//! Test module: kv whose prepare never says ready.
#![no_std]

module_rt::export_module!(kv_faulty::Faulty<{ kv_faulty::mode::NEVER_READY }>);
