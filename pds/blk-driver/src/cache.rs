//! A write-through block cache in front of a [`Disk`], for a device whose
//! every request costs far more than its bytes (a virtio request in QEMU:
//! a trip through the emulator's main loop, a few hundred microseconds).
//! The FAT crates read one block at a time and re-read the same FAT
//! blocks on every cluster-chain walk, so the seL4 driver keeps the most
//! recently used chunks of [`CHUNK_BLOCKS`] blocks (one 4 KiB cluster of
//! the test images) and reads a whole chunk on a miss.
//!
//! It is correct because the driver is the only one on the disk: every
//! write goes to the device first and then into a cached chunk that holds
//! those blocks; a failed write drops the chunks it touched (what the
//! device holds is then unknown). Nothing is ever dirty in the cache, so a
//! flush is the device's.
use crate::{DeviceError, Disk};
use interfaces::blk::BLOCK;

/// Blocks per cached chunk.
pub const CHUNK_BLOCKS: u64 = 8;
/// Bytes per cached chunk.
pub const CHUNK: usize = CHUNK_BLOCKS as usize * BLOCK;

const EMPTY: u64 = u64::MAX;

/// The most chunks a cache holds.
pub const MAX_SLOTS: usize = 256;

/// `disk` with a cache of `slots.len()` chunks in `slots`.
pub struct Cached<D: Disk> {
    disk: D,
    slots: &'static mut [[u8; CHUNK]],
    /// The chunk each slot holds (`EMPTY`: none), and when it was last used.
    tags: [u64; MAX_SLOTS],
    used: [u64; MAX_SLOTS],
    clock: u64,
    /// Blocks served from the cache, and chunks read from the device.
    pub hits: u64,
    pub misses: u64,
}

impl<D: Disk> Cached<D> {
    /// At most [`MAX_SLOTS`] slots are used.
    pub fn new(disk: D, slots: &'static mut [[u8; CHUNK]]) -> Cached<D> {
        let n = slots.len().min(MAX_SLOTS);
        Cached {
            disk,
            slots: &mut slots[..n],
            tags: [EMPTY; MAX_SLOTS],
            used: [0; MAX_SLOTS],
            clock: 0,
            hits: 0,
            misses: 0,
        }
    }

    pub fn disk(&self) -> &D {
        &self.disk
    }

    fn find(&self, chunk: u64) -> Option<usize> {
        (0..self.slots.len()).find(|&i| self.tags[i] == chunk)
    }

    /// The slot holding `chunk`, read from the device on a miss.
    fn fetch(&mut self, chunk: u64) -> Result<usize, DeviceError> {
        self.clock += 1;
        if let Some(i) = self.find(chunk) {
            self.used[i] = self.clock;
            return Ok(i);
        }
        let n = self.slots.len();
        let i = (0..n).min_by_key(|&i| if self.tags[i] == EMPTY { 0 } else { self.used[i] }).ok_or(DeviceError)?;
        self.tags[i] = EMPTY;
        self.disk.read(chunk * CHUNK_BLOCKS, &mut self.slots[i])?;
        self.misses += 1;
        self.tags[i] = chunk;
        self.used[i] = self.clock;
        Ok(i)
    }

    /// Whether the whole chunk lies on the disk (a partial last chunk is
    /// not cached).
    fn cacheable(&self, chunk: u64) -> bool {
        !self.slots.is_empty()
            && chunk.checked_add(1).and_then(|c| c.checked_mul(CHUNK_BLOCKS)).is_some_and(|end| end <= self.blocks())
    }
}

impl<D: Disk> Disk for Cached<D> {
    fn blocks(&self) -> u64 {
        self.disk.blocks()
    }

    fn read(&mut self, block: u64, out: &mut [u8]) -> Result<(), DeviceError> {
        for (b, buf) in (block..).zip(out.chunks_mut(BLOCK)) {
            let chunk = b / CHUNK_BLOCKS;
            if !self.cacheable(chunk) {
                self.disk.read(b, buf)?;
                continue;
            }
            let i = self.fetch(chunk)?;
            let at = (b % CHUNK_BLOCKS) as usize * BLOCK;
            buf.copy_from_slice(&self.slots[i][at..at + buf.len()]);
            self.hits += 1;
        }
        Ok(())
    }

    fn write(&mut self, block: u64, data: &[u8]) -> Result<(), DeviceError> {
        let result = self.disk.write(block, data);
        for (b, buf) in (block..).zip(data.chunks(BLOCK)) {
            let Some(i) = self.find(b / CHUNK_BLOCKS) else { continue };
            if result.is_ok() {
                let at = (b % CHUNK_BLOCKS) as usize * BLOCK;
                self.slots[i][at..at + buf.len()].copy_from_slice(buf);
            } else {
                self.tags[i] = EMPTY;
            }
        }
        result
    }

    fn flush(&mut self) -> Result<(), DeviceError> {
        self.disk.flush()
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    /// A disk in memory that counts its requests and can be told to fail.
    struct Counting {
        bytes: Vec<u8>,
        reads: u64,
        fail_writes: bool,
    }

    impl Disk for Counting {
        fn blocks(&self) -> u64 {
            (self.bytes.len() / BLOCK) as u64
        }
        fn read(&mut self, block: u64, out: &mut [u8]) -> Result<(), DeviceError> {
            self.reads += 1;
            let at = block as usize * BLOCK;
            out.copy_from_slice(self.bytes.get(at..at + out.len()).ok_or(DeviceError)?);
            Ok(())
        }
        fn write(&mut self, block: u64, data: &[u8]) -> Result<(), DeviceError> {
            if self.fail_writes {
                // Half written: what the device holds is unknown.
                self.bytes[block as usize * BLOCK] ^= 0xff;
                return Err(DeviceError);
            }
            let at = block as usize * BLOCK;
            self.bytes[at..at + data.len()].copy_from_slice(data);
            Ok(())
        }
        fn flush(&mut self) -> Result<(), DeviceError> {
            Ok(())
        }
    }

    fn disk(blocks: usize) -> Counting {
        let bytes = (0..blocks * BLOCK).map(|i| (i / BLOCK) as u8 ^ (i as u8)).collect();
        Counting { bytes, reads: 0, fail_writes: false }
    }

    #[test]
    fn reads_come_from_the_cache_and_writes_go_through() {
        let slots: &'static mut [[u8; CHUNK]] = std::vec![[0u8; CHUNK]; 4].leak();
        // 8 chunks and 3 blocks: the last three blocks are not cached.
        let mut c = Cached::new(disk(67), slots);
        let mut shadow = c.disk().bytes.clone();
        let mut buf = [0u8; 3 * BLOCK];
        let mut rng = 0x1234_5678u64;
        for step in 0..4000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let block = rng % 65;
            let n = 1 + (rng >> 32) as usize % 3;
            let len = n * BLOCK;
            let at = block as usize * BLOCK;
            if step % 5 == 0 {
                buf[..len].iter_mut().for_each(|b| *b = (rng >> 40) as u8 ^ step as u8);
                c.write(block, &buf[..len]).unwrap();
                shadow[at..at + len].copy_from_slice(&buf[..len]);
            } else {
                c.read(block, &mut buf[..len]).unwrap();
                assert_eq!(buf[..len], shadow[at..at + len], "step {step}: block {block} x{n}");
            }
        }
        assert_eq!(c.disk().bytes, shadow);
        // Random blocks over twice the chunks the cache holds.
        assert!(c.misses * 3 < c.hits, "hits {} misses {}", c.hits, c.misses);
    }

    #[test]
    fn a_failed_write_drops_what_it_touched() {
        let slots: &'static mut [[u8; CHUNK]] = std::vec![[0u8; CHUNK]; 2].leak();
        let mut c = Cached::new(disk(32), slots);
        let mut buf = [0u8; BLOCK];
        c.read(9, &mut buf).unwrap();
        c.disk.fail_writes = true;
        assert_eq!(c.write(8, &[7u8; BLOCK]), Err(DeviceError));
        c.read(8, &mut buf).unwrap();
        assert_eq!(buf[..], c.disk().bytes[8 * BLOCK..9 * BLOCK]);
        assert_eq!(c.misses, 2);
    }
}
