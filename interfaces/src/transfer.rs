//! The transfer region: the state one slot exports and the other imports.
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

pub const TRANSFER_MAGIC: u32 = 0x5846_4552; // "XFER"

#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct TransferHeader {
    pub magic: u32,
    /// Schema of the exported state.
    pub schema: u32,
    pub len: u64,
    /// FNV-1a of the state bytes: a torn or overwritten export is refused.
    pub checksum: u64,
}

pub const TRANSFER_HEADER: usize = core::mem::size_of::<TransferHeader>();

pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

/// Validates a transfer region's header and returns (schema, state bytes).
pub fn read(region: &[u8]) -> Result<(u32, &[u8]), &'static str> {
    let (h, rest) = TransferHeader::read_from_prefix(region).map_err(|_| "transfer region too small")?;
    if h.magic != TRANSFER_MAGIC {
        return Err("transfer region holds no exported state");
    }
    let len = usize::try_from(h.len).map_err(|_| "exported state length overflows")?;
    let state = rest.get(..len).ok_or("exported state is longer than the transfer region")?;
    if fnv1a(state) != h.checksum {
        return Err("exported state fails its checksum");
    }
    Ok((h.schema, state))
}

/// Writes the header for `len` state bytes already in place after it.
pub fn seal(region: &mut [u8], schema: u32, len: usize) -> Result<(), &'static str> {
    let state = region.get(TRANSFER_HEADER..TRANSFER_HEADER + len).ok_or("state does not fit")?;
    let h = TransferHeader { magic: TRANSFER_MAGIC, schema, len: len as u64, checksum: fnv1a(state) };
    region[..TRANSFER_HEADER].copy_from_slice(h.as_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_state_reads_back_and_corruption_is_caught() {
        let mut r = [0u8; 64];
        r[TRANSFER_HEADER..TRANSFER_HEADER + 3].copy_from_slice(b"abc");
        seal(&mut r, 2, 3).unwrap();
        assert_eq!(read(&r), Ok((2, &b"abc"[..])));
        r[TRANSFER_HEADER] = b'x';
        assert!(read(&r).is_err());
        assert!(seal(&mut r, 2, 100).is_err());
    }
}
