//! Test module: kv whose every call logs a line.
#![no_std]

module_rt::export_module!(kv_faulty::Faulty<{ kv_faulty::mode::LOG_FLOOD }>);
