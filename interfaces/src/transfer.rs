//! The transfer region: the state one slot exports and the other imports.
//!
//! The header names the schema, the length and the export's token: the
//! manager gives each quiescence a fresh token and the importer must
//! present the same one, so a stale or half-overwritten export is refused
//! without reading the state (a pass over the data would cost as much as
//! the copy the blackout budget allows). The state's own structure is
//! validated by the importing module.
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

pub const TRANSFER_MAGIC: u32 = 0x5846_4552; // "XFER"

#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct TransferHeader {
    pub magic: u32,
    /// Schema of the exported state.
    pub schema: u32,
    pub len: u64,
    /// The token of the quiescence that produced this export.
    pub token: u64,
}

/// Where the state starts: the header padded to a cache line, so that a
/// page-aligned state is copied cache line to cache line (a state starting
/// right after the 24-byte header made every copy straddle lines).
pub const TRANSFER_HEADER: usize = 64;
const _: () = assert!(core::mem::size_of::<TransferHeader>() <= TRANSFER_HEADER);

/// FNV-1a, for checksums of small things (tests, service replies).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

/// Validates a transfer region's header against the expected `token` and
/// returns (schema, state bytes).
pub fn read(region: &[u8], token: u64) -> Result<(u32, &[u8]), &'static str> {
    let h = region
        .get(..TRANSFER_HEADER)
        .and_then(|r| TransferHeader::read_from_prefix(r).ok())
        .ok_or("transfer region too small")?
        .0;
    let rest = &region[TRANSFER_HEADER..];
    if h.magic != TRANSFER_MAGIC {
        return Err("transfer region holds no exported state");
    }
    if h.token != token {
        return Err("transfer region holds another export than this update's");
    }
    let len = usize::try_from(h.len).map_err(|_| "exported state length overflows")?;
    let state = rest.get(..len).ok_or("exported state is longer than the transfer region")?;
    Ok((h.schema, state))
}

/// Writes the header for `len` state bytes already in place after it.
pub fn seal(region: &mut [u8], schema: u32, len: usize, token: u64) -> Result<(), &'static str> {
    if region.len() < TRANSFER_HEADER || len > region.len() - TRANSFER_HEADER {
        return Err("state does not fit the transfer region");
    }
    let h = TransferHeader { magic: TRANSFER_MAGIC, schema, len: len as u64, token };
    region[..core::mem::size_of::<TransferHeader>()].copy_from_slice(h.as_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_state_reads_back_and_stale_exports_are_refused() {
        let mut r = [0u8; 128];
        r[TRANSFER_HEADER..TRANSFER_HEADER + 3].copy_from_slice(b"abc");
        seal(&mut r, 2, 3, 77).unwrap();
        assert_eq!(read(&r, 77), Ok((2, &b"abc"[..])));
        assert!(read(&r, 76).is_err(), "another update's export");
        assert!(seal(&mut r, 2, 100, 1).is_err());
        r[0] = 0;
        assert!(read(&r, 77).is_err());
        let mut long = [0u8; 128];
        seal(&mut long, 1, 3, 5).unwrap();
        long[8..16].copy_from_slice(&1000u64.to_le_bytes());
        assert!(read(&long, 5).is_err(), "length beyond the region");
    }
}
