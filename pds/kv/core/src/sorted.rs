//! The v1 store: entries in a fixed-capacity array sorted by key, found by
//! binary search.
use crate::KvStore;
use heapless::Vec;
use interfaces::kv::{KvStatus, MAX_KEY, MAX_VALUE};

pub const CAPACITY: usize = 256;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub key: Vec<u8, MAX_KEY>,
    pub value: Vec<u8, MAX_VALUE>,
}

#[derive(Default)]
pub struct SortedStore {
    entries: Vec<Entry, CAPACITY>,
}

impl SortedStore {
    pub const fn new() -> Self {
        SortedStore { entries: Vec::new() }
    }

    fn find(&self, key: &[u8]) -> Result<usize, usize> {
        self.entries.binary_search_by(|e| e.key.as_slice().cmp(key))
    }

    pub fn entries(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.entries.iter().map(|e| (e.key.as_slice(), e.value.as_slice()))
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

impl KvStore for SortedStore {
    fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.find(key).ok().map(|i| self.entries[i].value.as_slice())
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), KvStatus> {
        let k = Vec::from_slice(key).map_err(|_| KvStatus::KeyTooLong)?;
        let v = Vec::from_slice(value).map_err(|_| KvStatus::ValueTooLong)?;
        match self.find(key) {
            Ok(i) => self.entries[i].value = v,
            Err(i) => self.entries.insert(i, Entry { key: k, value: v }).map_err(|_| KvStatus::Full)?,
        }
        Ok(())
    }

    fn delete(&mut self, key: &[u8]) -> bool {
        self.find(key).map(|i| self.entries.remove(i)).is_ok()
    }

    fn keys_from(&self, cursor: u32) -> impl Iterator<Item = &[u8]> {
        self.entries.iter().skip(cursor as usize).map(|e| e.key.as_slice())
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve;
    use interfaces::kv::{KvReply, KvRequest, LIST_END};
    use interfaces::Message;

    fn call(s: &mut SortedStore, r: KvRequest) -> (KvStatus, u32, heapless::Vec<u8, 512>) {
        let mut m = Message::default();
        r.encode(&mut m).unwrap();
        serve(s, &mut m, None);
        let r = KvReply::parse(&m).unwrap();
        (r.status, r.aux, heapless::Vec::from_slice(r.data).unwrap())
    }

    #[test]
    fn get_put_delete_list() {
        let mut s = SortedStore::new();
        assert_eq!(call(&mut s, KvRequest::Get { key: b"a" }).0, KvStatus::NotFound);
        assert_eq!(call(&mut s, KvRequest::Put { key: b"b", value: b"2" }).0, KvStatus::Ok);
        assert_eq!(call(&mut s, KvRequest::Put { key: b"a", value: b"1" }).0, KvStatus::Ok);
        assert_eq!(call(&mut s, KvRequest::Put { key: b"a", value: b"one" }).0, KvStatus::Ok);
        assert_eq!(&call(&mut s, KvRequest::Get { key: b"a" }).2[..], b"one");
        let (st, next, data) = call(&mut s, KvRequest::List { cursor: 0 });
        assert_eq!((st, next, &data[..]), (KvStatus::Ok, LIST_END, &b"\x01a\x01b"[..]));
        assert_eq!(call(&mut s, KvRequest::Delete { key: b"a" }).0, KvStatus::Ok);
        assert_eq!(call(&mut s, KvRequest::Delete { key: b"a" }).0, KvStatus::NotFound);
        assert_eq!(call(&mut s, KvRequest::Version).0, KvStatus::UnknownOp, "v1 has no Version");
    }

    #[test]
    fn full_store_says_so_and_keeps_serving() {
        let mut s = SortedStore::new();
        for i in 0..CAPACITY as u32 {
            assert_eq!(call(&mut s, KvRequest::Put { key: &i.to_be_bytes(), value: b"v" }).0, KvStatus::Ok);
        }
        assert_eq!(call(&mut s, KvRequest::Put { key: b"new", value: b"v" }).0, KvStatus::Full);
        assert_eq!(
            call(&mut s, KvRequest::Put { key: &0u32.to_be_bytes(), value: b"w" }).0,
            KvStatus::Ok,
            "replace fits"
        );
        let (_, next, _) = call(&mut s, KvRequest::List { cursor: 0 });
        assert_eq!(next, 64, "lists page through the keys");
    }
}
