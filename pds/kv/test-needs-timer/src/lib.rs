//! Test module: kv whose needs a channel no slot has.
#![no_std]

module_rt::export_module!(kv_faulty::Faulty<{ kv_faulty::mode::NEEDS_CHANNEL }>);
