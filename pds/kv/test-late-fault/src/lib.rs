//! Test module: kv whose a call makes a wild write after a few thousand calls.
#![no_std]

module_rt::export_module!(kv_faulty::Faulty<{ kv_faulty::mode::LATE_FAULT }>);
