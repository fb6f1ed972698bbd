//! State schema 1: the entries in key order, each as
//! `key_len: u8, value_len: u8, key, value`, after a `count: u32`.
use crate::KvStore;
use interfaces::abi::status;
use interfaces::kv::{MAX_KEY, MAX_VALUE};

pub const SCHEMA: u32 = 1;

/// Encodes `entries` (in key order); returns the length or `NO_SPACE`.
pub fn export<'a>(entries: impl Iterator<Item = (&'a [u8], &'a [u8])>, out: &mut [u8]) -> Result<usize, i32> {
    let mut at = 4;
    let mut count = 0u32;
    for (k, v) in entries {
        let end = at + 2 + k.len() + v.len();
        let dst = out.get_mut(at..end).ok_or(status::NO_SPACE)?;
        dst[0] = k.len() as u8;
        dst[1] = v.len() as u8;
        dst[2..2 + k.len()].copy_from_slice(k);
        dst[2 + k.len()..].copy_from_slice(v);
        at = end;
        count += 1;
    }
    out.get_mut(..4).ok_or(status::NO_SPACE)?.copy_from_slice(&count.to_le_bytes());
    Ok(at)
}

/// Decodes schema-1 state into `store` (which the caller has emptied).
/// Everything is validated: the bytes come from the other slot.
pub fn import<S: KvStore>(data: &[u8], store: &mut S) -> Result<(), i32> {
    let count = u32::from_le_bytes(data.get(..4).ok_or(status::BAD_STATE)?.try_into().map_err(|_| status::BAD_STATE)?);
    let mut at = 4;
    for _ in 0..count {
        let (kl, vl) =
            (*data.get(at).ok_or(status::BAD_STATE)? as usize, *data.get(at + 1).ok_or(status::BAD_STATE)? as usize);
        if kl == 0 || kl > MAX_KEY || vl > MAX_VALUE {
            return Err(status::BAD_STATE);
        }
        let k = data.get(at + 2..at + 2 + kl).ok_or(status::BAD_STATE)?;
        let v = data.get(at + 2 + kl..at + 2 + kl + vl).ok_or(status::BAD_STATE)?;
        store.put(k, v).map_err(|_| status::NO_SPACE)?;
        at += 2 + kl + vl;
    }
    if at != data.len() {
        return Err(status::BAD_STATE);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sorted::SortedStore;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let mut a = SortedStore::new();
        a.put(b"x", b"1").unwrap();
        a.put(b"y", b"").unwrap();
        let mut buf = [0u8; 64];
        let n = export(a.entries(), &mut buf).unwrap();
        let mut b = SortedStore::new();
        import(&buf[..n], &mut b).unwrap();
        assert!(a.entries().eq(b.entries()));
        assert_eq!(export(a.entries(), &mut buf[..5]), Err(status::NO_SPACE));
        assert_eq!(import(&buf[..n - 1], &mut SortedStore::new()), Err(status::BAD_STATE));
        buf[4] = 0; // zero-length key
        assert_eq!(import(&buf[..n], &mut SortedStore::new()), Err(status::BAD_STATE));
    }
}
