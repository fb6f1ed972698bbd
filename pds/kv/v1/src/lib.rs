//! kv v1: the first version of the key-value service (a sorted array,
//! state schema 1). The logic lives in kv-core.
#![no_std]

module_rt::export_module!(kv_core::modules::KvV1);
