//! The state schemas: the open-file table.
//!
//! Schema 1: `count: u8`, then per file `slot: u8, owner: u8, writable: u8,
//! path_len: u8, pos: u32, path`.
//! Schema 2 (fs v4 on): the same, each file followed by `written: u64`,
//! the bytes written through the handle (reported by `Sync`). v4 and later
//! read schema 1 (counts start at 0) and write it for a downgrade.
use crate::{OpenFile, Path, MAX_OPEN};
use interfaces::abi::status;
use interfaces::fs::MAX_PATH;

pub const SCHEMA1: u32 = 1;
pub const SCHEMA2: u32 = 2;

pub type Files = [Option<OpenFile>; MAX_OPEN];

pub fn export(files: &Files, schema: u32, out: &mut [u8]) -> Result<usize, i32> {
    if schema != SCHEMA1 && schema != SCHEMA2 {
        return Err(status::UNSUPPORTED_SCHEMA);
    }
    let mut at = 1;
    let mut count = 0u8;
    for (slot, f) in files.iter().enumerate() {
        let Some(f) = f else { continue };
        let p = f.path.as_bytes();
        let extra = if schema == SCHEMA2 { 8 } else { 0 };
        let dst = out.get_mut(at..at + 8 + p.len() + extra).ok_or(status::NO_SPACE)?;
        dst[..4].copy_from_slice(&[slot as u8, f.owner as u8, f.writable as u8, p.len() as u8]);
        dst[4..8].copy_from_slice(&f.pos.to_le_bytes());
        dst[8..8 + p.len()].copy_from_slice(p);
        if schema == SCHEMA2 {
            dst[8 + p.len()..].copy_from_slice(&f.written.to_le_bytes());
        }
        at += dst.len();
        count += 1;
    }
    *out.first_mut().ok_or(status::NO_SPACE)? = count;
    Ok(at)
}

/// Decodes and validates (the bytes come from the other slot).
pub fn import(schema: u32, data: &[u8]) -> Result<Files, i32> {
    if schema != SCHEMA1 && schema != SCHEMA2 {
        return Err(status::UNSUPPORTED_SCHEMA);
    }
    let bad = status::BAD_STATE;
    let mut files: Files = Default::default();
    let count = *data.first().ok_or(bad)?;
    let mut at = 1;
    for _ in 0..count {
        let h = data.get(at..at + 8).ok_or(bad)?;
        let (slot, owner, writable, len) = (h[0] as usize, h[1], h[2], h[3] as usize);
        if slot >= MAX_OPEN || files[slot].is_some() || writable > 1 || len == 0 || len > MAX_PATH {
            return Err(bad);
        }
        let pos = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
        let path = core::str::from_utf8(data.get(at + 8..at + 8 + len).ok_or(bad)?).map_err(|_| bad)?;
        at += 8 + len;
        let written = if schema == SCHEMA2 {
            let w = data.get(at..at + 8).ok_or(bad)?;
            at += 8;
            u64::from_le_bytes(w.try_into().map_err(|_| bad)?)
        } else {
            0
        };
        let path = Path::try_from(path).map_err(|_| bad)?;
        files[slot] = Some(OpenFile { owner: owner as u32, path, writable: writable == 1, pos, written });
    }
    if at != data.len() {
        return Err(bad);
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_schemas_round_trip_and_garbage_is_refused() {
        let mut files: Files = Default::default();
        files[3] = Some(OpenFile {
            owner: 1,
            path: Path::try_from("/C1/F0.BIN").unwrap(),
            writable: true,
            pos: 77,
            written: 9,
        });
        files[9] =
            Some(OpenFile { owner: 2, path: Path::try_from("/X").unwrap(), writable: false, pos: 0, written: 0 });
        let mut buf = [0u8; 256];
        for schema in [SCHEMA1, SCHEMA2] {
            let n = export(&files, schema, &mut buf).unwrap();
            let back = import(schema, &buf[..n]).unwrap();
            let mut want = files.clone();
            if schema == SCHEMA1 {
                want[3].as_mut().unwrap().written = 0;
            }
            assert_eq!(back, want);
            assert_eq!(import(schema, &buf[..n - 1]), Err(status::BAD_STATE));
            assert_eq!(export(&files, schema, &mut buf[..10]), Err(status::NO_SPACE));
        }
        let n = export(&files, SCHEMA1, &mut buf).unwrap();
        buf[1] = MAX_OPEN as u8; // slot out of range
        assert_eq!(import(SCHEMA1, &buf[..n]), Err(status::BAD_STATE));
        assert_eq!(import(7, &buf[..n]), Err(status::UNSUPPORTED_SCHEMA));
    }
}
