//! The key-value service: request handling common to every version, the
//! stores of each version (v1: a sorted array; v2, v3: a hash table with
//! write counts), their state schemas and conversions, and the module types
//! each version's crate exports.
#![no_std]
#[cfg(test)]
extern crate std;

pub mod hashed;
pub mod modules;
pub mod schema;
pub mod sorted;

use interfaces::kv::{reply, KvRequest, KvStatus, LIST_END};
use interfaces::Message;

/// What every version's store offers.
pub trait KvStore {
    fn get(&self, key: &[u8]) -> Option<&[u8]>;
    /// Inserts or replaces; `Err(Full)` when a new key does not fit.
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), KvStatus>;
    fn delete(&mut self, key: &[u8]) -> bool;
    /// Keys in ascending order starting at position `cursor`.
    fn keys_from(&self, cursor: u32) -> impl Iterator<Item = &[u8]>;
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Serves one call. `version` is what `Version` reports, `None` for
/// versions that predate that operation.
pub fn serve<S: KvStore>(store: &mut S, msg: &mut Message, version: Option<u32>) {
    let req = match KvRequest::parse(msg) {
        Ok(r) => r,
        Err(s) => return reply::status(msg, s),
    };
    match req {
        KvRequest::Get { key } => match store.get(key) {
            Some(v) => {
                let mut buf = [0u8; interfaces::kv::MAX_VALUE];
                let n = v.len();
                buf[..n].copy_from_slice(v);
                reply::data(msg, KvStatus::Ok, 0, &buf[..n]);
            }
            None => reply::status(msg, KvStatus::NotFound),
        },
        KvRequest::Put { key, value } => {
            let (mut k, mut v) = ([0u8; interfaces::kv::MAX_KEY], [0u8; interfaces::kv::MAX_VALUE]);
            k[..key.len()].copy_from_slice(key);
            v[..value.len()].copy_from_slice(value);
            let s = store.put(&k[..key.len()], &v[..value.len()]).err().unwrap_or(KvStatus::Ok);
            reply::status(msg, s);
        }
        KvRequest::Delete { key } => {
            let mut k = [0u8; interfaces::kv::MAX_KEY];
            k[..key.len()].copy_from_slice(key);
            let found = store.delete(&k[..key.len()]);
            reply::status(msg, if found { KvStatus::Ok } else { KvStatus::NotFound });
        }
        KvRequest::List { cursor } => {
            let mut keys: heapless::Vec<heapless::Vec<u8, { interfaces::kv::MAX_KEY }>, 64> = heapless::Vec::new();
            for k in store.keys_from(cursor).take(64) {
                let _ = keys.push(heapless::Vec::from_slice(k).unwrap_or_default());
            }
            let mut w = reply::ListWriter::new(msg);
            let mut n = 0u32;
            for k in &keys {
                if !w.push(k) {
                    break;
                }
                n += 1;
            }
            let next = cursor.saturating_add(n);
            w.finish(if (next as usize) < store.len() { next } else { LIST_END });
        }
        KvRequest::Version => match version {
            Some(v) => reply::data(msg, KvStatus::Ok, v, &[]),
            None => reply::status(msg, KvStatus::UnknownOp),
        },
    }
}
