//! State schema 2: a `b"KV2\0"` tag and `count: u32`, then per entry
//! `key_len: u16, value_len: u16, writes: u32, key, value`.
use crate::hashed::HashStore;
use interfaces::abi::status;
use interfaces::kv::{MAX_KEY, MAX_VALUE};

pub const SCHEMA: u32 = 2;
const TAG: &[u8; 4] = b"KV2\0";

pub fn export(store: &HashStore, out: &mut [u8]) -> Result<usize, i32> {
    let mut at = 8;
    let entries = store.sorted();
    for (k, v) in &entries {
        let end = at + 8 + k.len() + v.bytes.len();
        let dst = out.get_mut(at..end).ok_or(status::NO_SPACE)?;
        dst[0..2].copy_from_slice(&(k.len() as u16).to_le_bytes());
        dst[2..4].copy_from_slice(&(v.bytes.len() as u16).to_le_bytes());
        dst[4..8].copy_from_slice(&v.writes.to_le_bytes());
        dst[8..8 + k.len()].copy_from_slice(k);
        dst[8 + k.len()..].copy_from_slice(&v.bytes);
        at = end;
    }
    let head = out.get_mut(..8).ok_or(status::NO_SPACE)?;
    head[..4].copy_from_slice(TAG);
    head[4..].copy_from_slice(&(entries.len() as u32).to_le_bytes());
    Ok(at)
}

fn u16_at(d: &[u8], at: usize) -> Result<usize, i32> {
    Ok(u16::from_le_bytes(d.get(at..at + 2).ok_or(status::BAD_STATE)?.try_into().map_err(|_| status::BAD_STATE)?)
        as usize)
}

/// Decodes schema-2 state into an emptied `store`; validates everything.
pub fn import(data: &[u8], store: &mut HashStore) -> Result<(), i32> {
    if data.get(..4) != Some(&TAG[..]) {
        return Err(status::BAD_STATE);
    }
    let count = u32::from_le_bytes(data.get(4..8).ok_or(status::BAD_STATE)?.try_into().map_err(|_| status::BAD_STATE)?);
    let mut at = 8;
    for _ in 0..count {
        let (kl, vl) = (u16_at(data, at)?, u16_at(data, at + 2)?);
        if kl == 0 || kl > MAX_KEY || vl > MAX_VALUE {
            return Err(status::BAD_STATE);
        }
        let writes = u32::from_le_bytes(
            data.get(at + 4..at + 8).ok_or(status::BAD_STATE)?.try_into().map_err(|_| status::BAD_STATE)?,
        );
        let k = data.get(at + 8..at + 8 + kl).ok_or(status::BAD_STATE)?;
        let v = data.get(at + 8 + kl..at + 8 + kl + vl).ok_or(status::BAD_STATE)?;
        store.insert(k, v, writes).map_err(|_| status::NO_SPACE)?;
        at += 8 + kl + vl;
    }
    if at != data.len() {
        return Err(status::BAD_STATE);
    }
    Ok(())
}
