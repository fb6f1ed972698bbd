//! The image store: module images bundled at build time into a memory
//! region (Microkit `prefill_path`), read-only in the update manager.
//!
//! Layout: [`StoreHeader`], `count` [`StoreEntry`]s, then the images.
use crate::name::Name;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

pub const STORE_MAGIC: [u8; 8] = *b"IMGSTOR1";
pub const MAX_IMAGES: usize = 64;

#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct StoreHeader {
    pub magic: [u8; 8],
    pub count: u32,
    pub _reserved: u32,
}

#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct StoreEntry {
    /// The image's name, e.g. `kv-v1`.
    pub name: Name,
    pub offset: u64,
    pub len: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreError {
    BadMagic,
    TooMany(u32),
    Truncated,
    /// Entry `n` points outside the store or has an invalid name.
    BadEntry(usize),
}

impl core::fmt::Display for StoreError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            StoreError::BadMagic => write!(f, "image store: bad magic"),
            StoreError::TooMany(n) => write!(f, "image store: {n} images (at most {MAX_IMAGES})"),
            StoreError::Truncated => write!(f, "image store: truncated index"),
            StoreError::BadEntry(n) => write!(f, "image store: entry {n} is malformed"),
        }
    }
}

/// A validated view of an image store.
pub struct Store<'a> {
    bytes: &'a [u8],
    entries: &'a [StoreEntry],
}

impl<'a> Store<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Store<'a>, StoreError> {
        let (h, rest) = StoreHeader::ref_from_prefix(bytes).map_err(|_| StoreError::Truncated)?;
        if h.magic != STORE_MAGIC {
            return Err(StoreError::BadMagic);
        }
        if h.count as usize > MAX_IMAGES {
            return Err(StoreError::TooMany(h.count));
        }
        let (entries, _) =
            <[StoreEntry]>::ref_from_prefix_with_elems(rest, h.count as usize).map_err(|_| StoreError::Truncated)?;
        let store = Store { bytes, entries };
        for (i, e) in entries.iter().enumerate() {
            if e.name.as_str().is_none() || store.slice(e).is_none() {
                return Err(StoreError::BadEntry(i));
            }
        }
        Ok(store)
    }

    fn slice(&self, e: &StoreEntry) -> Option<&'a [u8]> {
        let start = usize::try_from(e.offset).ok()?;
        let end = start.checked_add(usize::try_from(e.len).ok()?)?;
        self.bytes.get(start..end)
    }

    /// (name, image bytes) of every image, in store order.
    pub fn images(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> + '_ {
        self.entries.iter().filter_map(|e| Some((e.name.as_str()?, self.slice(e)?)))
    }

    pub fn get(&self, name: &str) -> Option<&'a [u8]> {
        self.images().find(|(n, _)| *n == name).map(|(_, b)| b)
    }
}

/// Lays out a store; `out` must be large enough (see [`store_size`]).
/// Returns the bytes used.
pub fn build_store(images: &[(&str, &[u8])], out: &mut [u8]) -> Option<usize> {
    let index = core::mem::size_of::<StoreHeader>() + images.len() * core::mem::size_of::<StoreEntry>();
    let mut at = index.next_multiple_of(16);
    let h = StoreHeader { magic: STORE_MAGIC, count: images.len() as u32, _reserved: 0 };
    out.get_mut(..16)?.copy_from_slice(h.as_bytes());
    for (i, (name, img)) in images.iter().enumerate() {
        let e = StoreEntry { name: Name::try_new(name)?, offset: at as u64, len: img.len() as u64 };
        let off = 16 + i * core::mem::size_of::<StoreEntry>();
        out.get_mut(off..off + core::mem::size_of::<StoreEntry>())?.copy_from_slice(e.as_bytes());
        out.get_mut(at..at + img.len())?.copy_from_slice(img);
        at = (at + img.len()).next_multiple_of(16);
    }
    Some(at)
}

/// The bytes [`build_store`] needs for these image sizes.
pub fn store_size(sizes: impl IntoIterator<Item = usize>) -> usize {
    let mut n = 0;
    let mut total = 0;
    for s in sizes {
        n += 1;
        total += s.next_multiple_of(16);
    }
    (16 + n * core::mem::size_of::<StoreEntry>()).next_multiple_of(16) + total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_round_trips_and_rejects_bad_entries() {
        let imgs: [(&str, &[u8]); 2] = [("kv-v1", b"first image"), ("kv-v2", b"second")];
        let mut buf = [0u8; 512];
        let used = build_store(&imgs, &mut buf).unwrap();
        assert_eq!(used, store_size(imgs.iter().map(|(_, b)| b.len())));
        let s = Store::parse(&buf[..used]).unwrap();
        assert_eq!(s.get("kv-v2"), Some(&b"second"[..]));
        assert_eq!(s.images().count(), 2);
        // An entry pointing past the end is refused, not read.
        let e0 = 16 + 32;
        buf[e0..e0 + 8].copy_from_slice(&10_000u64.to_le_bytes());
        assert_eq!(Store::parse(&buf[..used]).err(), Some(StoreError::BadEntry(0)));
        buf[0] = b'X';
        assert_eq!(Store::parse(&buf).err(), Some(StoreError::BadMagic));
    }
}
