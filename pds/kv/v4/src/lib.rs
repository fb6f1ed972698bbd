//! kv v4: the version that arrives after boot, as a signed bundle uploaded
//! over the console (it is in no image store). Same schema as v2/v3.
#![no_std]

module_rt::export_module!(kv_core::modules::KvV4);
