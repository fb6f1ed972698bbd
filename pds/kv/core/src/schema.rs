//! kv's state schemas, declared as records (see `module_rt::schema`); the
//! export, import, validation and descriptor lists are derived from these
//! declarations. The byte layouts are those every kv version has used,
//! the C version (`pds/kv/c-v3`) included.
use crate::hashed::HashStore;
use crate::sorted::SortedStore;
use crate::KvStore;
use interfaces::abi::status;
use interfaces::kv::{MAX_KEY, MAX_VALUE};
use module_rt::schema::{Bytes, Older, RecordState, Schema};
use module_rt::state_record;

state_record! {
    /// Schema 1's entry: `key_len: u8, value_len: u8, key, value`.
    pub struct Entry1<'a> {
        pub key: Bytes<'a, u8, 1, MAX_KEY>,
        pub value: Bytes<'a, u8, 0, MAX_VALUE>,
    }
}

/// Schema 1 (kv v1): the entries in key order after a `count: u32`.
pub struct Schema1;
impl Schema for Schema1 {
    const ID: u32 = 1;
    type Record<'a> = Entry1<'a>;
}

state_record! {
    /// Schema 2's entry: `key_len: u16, value_len: u16, writes: u32, key,
    /// value`.
    pub struct Entry2<'a> {
        pub key: Bytes<'a, u16, 1, MAX_KEY>,
        pub value: Bytes<'a, u16, 0, MAX_VALUE>,
        /// How many times the key was written since it was created.
        pub writes: u32,
    }
}

/// Schema 2 (kv v2 on): a `KV2\0` tag, then as schema 1, with write counts.
pub struct Schema2;
impl Schema for Schema2 {
    const ID: u32 = 2;
    const TAG: &'static [u8] = b"KV2\0";
    type Record<'a> = Entry2<'a>;
}

impl<'a> Older<'a, Schema2> for Schema1 {
    /// From v1: write counts start at 0.
    fn upgrade(r: Entry1<'a>) -> Result<Entry2<'a>, i32> {
        Ok(Entry2 { key: r.key.convert()?, value: r.value.convert()?, writes: 0 })
    }
    /// For a rollback to v1: write counts are dropped.
    fn downgrade(r: Entry2<'a>) -> Result<Entry1<'a>, i32> {
        Ok(Entry1 { key: r.key.convert()?, value: r.value.convert()? })
    }
}

impl RecordState for SortedStore {
    type Newest = Schema1;
    type Olders = ();
    fn clear(&mut self) {
        SortedStore::clear(self)
    }
    fn insert(&mut self, r: Entry1<'_>) -> Result<(), i32> {
        self.put(r.key.get(), r.value.get()).map_err(|_| status::NO_SPACE)
    }
    fn each(&self, f: &mut dyn FnMut(Entry1<'_>) -> Result<(), i32>) -> Result<(), i32> {
        self.entries().try_for_each(|(k, v)| f(Entry1 { key: Bytes::new(k)?, value: Bytes::new(v)? }))
    }
}

impl RecordState for HashStore {
    type Newest = Schema2;
    type Olders = (Schema1,);
    fn clear(&mut self) {
        HashStore::clear(self)
    }
    fn insert(&mut self, r: Entry2<'_>) -> Result<(), i32> {
        HashStore::insert(self, r.key.get(), r.value.get(), r.writes).map_err(|_| status::NO_SPACE)
    }
    /// In key order, so that an export does not depend on the table's.
    fn each(&self, f: &mut dyn FnMut(Entry2<'_>) -> Result<(), i32>) -> Result<(), i32> {
        self.sorted()
            .iter()
            .try_for_each(|(k, v)| f(Entry2 { key: Bytes::new(k)?, value: Bytes::new(&v.bytes)?, writes: v.writes }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use module_rt::schema::{export, import};

    #[test]
    fn the_layouts_are_the_ones_every_version_uses() {
        let mut v1 = SortedStore::new();
        v1.put(b"y", b"").unwrap();
        v1.put(b"x", b"12").unwrap();
        let mut buf = [0u8; 64];
        let n = export(&v1, 1, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"\x02\0\0\0\x01\x02x12\x01\0y");
        let mut v2 = HashStore::new();
        v2.put(b"k", b"v").unwrap();
        v2.put(b"k", b"w").unwrap();
        let n = export(&v2, 2, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"KV2\0\x01\0\0\0\x01\0\x01\0\x02\0\0\0kw");
        let n = export(&v2, 1, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"\x01\0\0\0\x01\x01kw", "downgraded: no write count");
    }

    #[test]
    fn round_trips_converts_and_rejects_garbage() {
        let mut a = SortedStore::new();
        a.put(b"x", b"1").unwrap();
        a.put(b"y", b"").unwrap();
        let mut buf = [0u8; 64];
        let n = export(&a, 1, &mut buf).unwrap();
        let mut b = SortedStore::new();
        import(&mut b, 1, &buf[..n]).unwrap();
        assert!(a.entries().eq(b.entries()));
        let mut h = HashStore::new();
        import(&mut h, 1, &buf[..n]).unwrap();
        assert_eq!(
            h.sorted().iter().map(|(k, v)| (*k, v.writes)).collect::<heapless::Vec<_, 4>>(),
            [(&b"x"[..], 0), (&b"y"[..], 0)]
        );
        assert_eq!(export(&a, 1, &mut buf[..5]), Err(status::NO_SPACE));
        assert_eq!(export(&a, 2, &mut buf), Err(status::UNSUPPORTED_SCHEMA), "v1 writes schema 1 only");
        assert_eq!(import(&mut b, 1, &buf[..n - 1]), Err(status::BAD_STATE));
        assert!(b.is_empty(), "a refused import leaves nothing");
        let mut long = buf;
        long[n] = 0;
        assert_eq!(import(&mut b, 1, &long[..n + 1]), Err(status::BAD_STATE), "bytes after the records");
        buf[4] = 0; // zero-length key
        assert_eq!(import(&mut b, 1, &buf[..n]), Err(status::BAD_STATE));
        buf[4] = MAX_KEY as u8 + 1; // longer than a key can be
        assert_eq!(import(&mut b, 1, &buf[..n]), Err(status::BAD_STATE));
        assert_eq!(import(&mut h, 2, b"KV3\0\0\0\0\0"), Err(status::BAD_STATE), "wrong tag");
        assert_eq!(import(&mut h, 3, b""), Err(status::UNSUPPORTED_SCHEMA));
    }

    #[test]
    fn a_count_beyond_the_bytes_or_the_store_is_refused() {
        let mut h = HashStore::new();
        assert_eq!(import(&mut h, 2, b"KV2\0\xff\xff\xff\xff"), Err(status::BAD_STATE));
        let mut s = SortedStore::new();
        let mut data = std::vec::Vec::from(((crate::sorted::CAPACITY + 1) as u32).to_le_bytes());
        for i in 0..=crate::sorted::CAPACITY as u16 {
            data.extend_from_slice(&[2, 0]);
            data.extend_from_slice(&i.to_be_bytes());
        }
        assert_eq!(import(&mut s, 1, &data), Err(status::NO_SPACE));
        assert!(s.is_empty());
    }
}
