//! The v2 store: a hash table (FNV, insertion-ordered) whose entries also
//! count their writes, a different data structure from v1's sorted array.
use crate::KvStore;
use heapless::{FnvIndexMap, Vec};
use interfaces::kv::{KvStatus, MAX_KEY, MAX_VALUE};

pub const CAPACITY: usize = 256;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Value {
    pub bytes: Vec<u8, MAX_VALUE>,
    /// How many times the key was written since it was created.
    pub writes: u32,
}

#[derive(Default)]
pub struct HashStore {
    map: FnvIndexMap<Vec<u8, MAX_KEY>, Value, CAPACITY>,
}

impl HashStore {
    pub fn new() -> Self {
        HashStore { map: FnvIndexMap::new() }
    }

    pub fn clear(&mut self) {
        self.map.clear();
    }

    /// Inserts an entry as imported (keeping its write count).
    pub fn insert(&mut self, key: &[u8], value: &[u8], writes: u32) -> Result<(), KvStatus> {
        let k = Vec::from_slice(key).map_err(|_| KvStatus::KeyTooLong)?;
        let v = Value { bytes: Vec::from_slice(value).map_err(|_| KvStatus::ValueTooLong)?, writes };
        self.map.insert(k, v).map(|_| ()).map_err(|_| KvStatus::Full)
    }

    /// Entries sorted by key: (key, value, writes).
    pub fn sorted(&self) -> Vec<(&[u8], &Value), CAPACITY> {
        let mut v: Vec<(&[u8], &Value), CAPACITY> = self.map.iter().map(|(k, v)| (k.as_slice(), v)).collect();
        v.sort_unstable_by(|a, b| a.0.cmp(b.0));
        v
    }
}

impl KvStore for HashStore {
    fn get(&self, key: &[u8]) -> Option<&[u8]> {
        let k: Vec<u8, MAX_KEY> = Vec::from_slice(key).ok()?;
        self.map.get(&k).map(|v| v.bytes.as_slice())
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), KvStatus> {
        let k: Vec<u8, MAX_KEY> = Vec::from_slice(key).map_err(|_| KvStatus::KeyTooLong)?;
        let bytes = Vec::from_slice(value).map_err(|_| KvStatus::ValueTooLong)?;
        if let Some(v) = self.map.get_mut(&k) {
            v.bytes = bytes;
            v.writes = v.writes.saturating_add(1);
            return Ok(());
        }
        self.map.insert(k, Value { bytes, writes: 1 }).map(|_| ()).map_err(|_| KvStatus::Full)
    }

    fn delete(&mut self, key: &[u8]) -> bool {
        Vec::<u8, MAX_KEY>::from_slice(key).is_ok_and(|k| self.map.remove(&k).is_some())
    }

    fn keys_from(&self, cursor: u32) -> impl Iterator<Item = &[u8]> {
        // Clients page through keys in order, whatever the version.
        self.sorted().into_iter().skip(cursor as usize).map(|(k, _)| k)
    }

    fn len(&self) -> usize {
        self.map.len()
    }
}
