//! kv v2: a hash table counting writes per key (state schema 2, reads and
//! writes schema 1 too), and the `Version` operation.
#![no_std]

module_rt::export_module!(kv_core::modules::KvV2);
