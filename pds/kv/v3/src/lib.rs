//! kv v3: a code-only fix of v2 (same schema): `List` past the end answers
//! an empty final page instead of `BadRequest`.
#![no_std]

module_rt::export_module!(kv_core::modules::KvV3);
