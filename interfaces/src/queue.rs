//! A single-producer, single-consumer byte queue in shared memory, in the
//! style of sDDF's serial queues.
//!
//! Indices are free-running `u32`s; the producer writes only `tail`, the
//! consumer only `head`. Each side derives the capacity from the region size
//! it was given and keeps it privately, so a peer cannot lie about it; an
//! index the peer wrote that is impossible for that capacity is reported as
//! [`PeerMisbehaved`] instead of being trusted.
use core::sync::atomic::{AtomicU32, Ordering};

/// Bytes reserved at the start of a queue region for the two indices, each
/// on its own cache line.
pub const QUEUE_HEADER: usize = 128;

#[repr(C)]
struct Indices {
    tail: AtomicU32,
    _pad: [u8; 60],
    head: AtomicU32,
}

/// The peer wrote an index that no correct peer could have written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerMisbehaved;

struct Raw {
    idx: *const Indices,
    data: *mut u8,
    cap: u32,
}

impl Raw {
    /// # Safety
    /// `base` points to `size` bytes of memory that stay mapped, readable
    /// and writable while the queue is used, aligned to 64, shared with at
    /// most one peer of the opposite role.
    unsafe fn new(base: *mut u8, size: usize) -> Option<Raw> {
        let data_len = size.checked_sub(QUEUE_HEADER)?;
        if base.align_offset(64) != 0 || data_len == 0 {
            return None;
        }
        // Largest power of two that fits: masking replaces a modulo.
        let cap = 1u32 << (usize::BITS - 1 - data_len.leading_zeros()).min(31);
        Some(Raw { idx: base.cast(), data: unsafe { base.add(QUEUE_HEADER) }, cap })
    }
    fn indices(&self) -> &Indices {
        // SAFETY: `new`'s contract keeps the header mapped and aligned.
        unsafe { &*self.idx }
    }
}

pub struct Producer(Raw);
pub struct Consumer(Raw);

// SAFETY: the raw pointers refer to shared memory whose concurrent use is
// governed by the atomic indices; each role is owned by one thread.
unsafe impl Send for Producer {}
unsafe impl Send for Consumer {}

impl Producer {
    /// # Safety
    /// `base` points to `size` bytes of memory that stay mapped, readable
    /// and writable while the queue is used, aligned to 64, shared with at
    /// most one peer of the opposite role; the caller is the queue's only
    /// producer.
    pub unsafe fn new(base: *mut u8, size: usize) -> Option<Producer> {
        unsafe { Raw::new(base, size) }.map(Producer)
    }

    /// Formats an empty queue. Only before the consumer starts.
    pub fn reset(&mut self) {
        self.0.indices().tail.store(0, Ordering::Relaxed);
        self.0.indices().head.store(0, Ordering::Release);
    }

    pub fn capacity(&self) -> usize {
        self.0.cap as usize
    }

    /// Bytes free; an impossible head is a misbehaving consumer.
    pub fn free(&self) -> Result<usize, PeerMisbehaved> {
        let i = self.0.indices();
        let head = i.head.load(Ordering::Acquire);
        let tail = i.tail.load(Ordering::Relaxed);
        let used = tail.wrapping_sub(head);
        if used > self.0.cap {
            return Err(PeerMisbehaved);
        }
        Ok((self.0.cap - used) as usize)
    }

    /// Copies as much of `bytes` as fits; returns how much.
    pub fn push(&mut self, bytes: &[u8]) -> Result<usize, PeerMisbehaved> {
        let n = bytes.len().min(self.free()?);
        let i = self.0.indices();
        let tail = i.tail.load(Ordering::Relaxed);
        for (k, &b) in bytes[..n].iter().enumerate() {
            let at = (tail.wrapping_add(k as u32) & (self.0.cap - 1)) as usize;
            // SAFETY: `at < cap <= data_len`; the consumer reads these bytes
            // only after the Release store of `tail` below.
            unsafe { self.0.data.add(at).write_volatile(b) };
        }
        i.tail.store(tail.wrapping_add(n as u32), Ordering::Release);
        Ok(n)
    }
}

impl Consumer {
    /// # Safety
    /// `base` points to `size` bytes of memory that stay mapped, readable
    /// and writable while the queue is used, aligned to 64, shared with at
    /// most one peer of the opposite role; the caller is the queue's only
    /// consumer.
    pub unsafe fn new(base: *mut u8, size: usize) -> Option<Consumer> {
        unsafe { Raw::new(base, size) }.map(Consumer)
    }

    /// Moves up to `out.len()` bytes out; returns how many.
    pub fn pop(&mut self, out: &mut [u8]) -> Result<usize, PeerMisbehaved> {
        let i = self.0.indices();
        let tail = i.tail.load(Ordering::Acquire);
        let head = i.head.load(Ordering::Relaxed);
        let avail = tail.wrapping_sub(head);
        if avail > self.0.cap {
            return Err(PeerMisbehaved);
        }
        let n = (avail as usize).min(out.len());
        for (k, slot) in out[..n].iter_mut().enumerate() {
            let at = (head.wrapping_add(k as u32) & (self.0.cap - 1)) as usize;
            // SAFETY: `at < cap`; published by the producer's Release.
            *slot = unsafe { self.0.data.add(at).read_volatile() };
        }
        i.head.store(head.wrapping_add(n as u32), Ordering::Release);
        Ok(n)
    }

    /// Bytes waiting; an impossible tail is a misbehaving producer.
    pub fn available(&self) -> Result<usize, PeerMisbehaved> {
        let i = self.0.indices();
        let avail = i.tail.load(Ordering::Acquire).wrapping_sub(i.head.load(Ordering::Relaxed));
        if avail > self.0.cap {
            return Err(PeerMisbehaved);
        }
        Ok(avail as usize)
    }

    pub fn is_empty(&self) -> bool {
        let i = self.0.indices();
        i.tail.load(Ordering::Acquire) == i.head.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    #[repr(align(64))]
    struct Mem([u8; QUEUE_HEADER + 100]);

    #[test]
    fn wraps_and_bounds_capacity() {
        let mut mem = Mem([0; QUEUE_HEADER + 100]);
        let base = mem.0.as_mut_ptr();
        let mut p = unsafe { Producer::new(base, QUEUE_HEADER + 100) }.unwrap();
        let mut c = unsafe { Consumer::new(base, QUEUE_HEADER + 100) }.unwrap();
        p.reset();
        assert_eq!(p.capacity(), 64);
        let mut got = Vec::new();
        let mut buf = [0u8; 50];
        for round in 0..20u8 {
            let data = [round; 40];
            assert_eq!(p.push(&data).unwrap(), 40);
            let n = c.pop(&mut buf).unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got.len(), 800);
        assert!(got.chunks(40).enumerate().all(|(r, ch)| ch.iter().all(|&b| b == r as u8)));
        assert_eq!(p.push(&[1; 100]).unwrap(), 64, "never more than capacity");
        assert_eq!(p.push(&[1]).unwrap(), 0);
    }

    #[test]
    fn impossible_indices_are_reported() {
        let mut mem = Mem([0; QUEUE_HEADER + 100]);
        let base = mem.0.as_mut_ptr();
        let mut p = unsafe { Producer::new(base, QUEUE_HEADER + 100) }.unwrap();
        let mut c = unsafe { Consumer::new(base, QUEUE_HEADER + 100) }.unwrap();
        p.reset();
        unsafe { (*(base as *const Indices)).tail.store(1000, Ordering::Relaxed) };
        assert_eq!(c.pop(&mut [0; 8]), Err(PeerMisbehaved));
        unsafe { (*(base as *const Indices)).tail.store(0, Ordering::Relaxed) };
        unsafe { (*(base as *const Indices)).head.store(5, Ordering::Relaxed) };
        assert_eq!(p.free(), Err(PeerMisbehaved));
    }
}
