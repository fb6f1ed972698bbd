//! The floor of a state transfer on this machine: N bytes copied from one
//! process's memory into a shared mapping, in 64 KiB parts with a published
//! count, and copied out by a second process that follows as they arrive
//! (as a streamed export and import do), both spinning, with no protocol at
//! all (timed once the reader is spinning). A hot `memcpy` stays in one
//! core's caches; this crosses cores.
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

const PART: usize = 64 << 10;

/// A forked reader process and the page of counters it shares with us.
pub struct CrossProcessCopy {
    ctl: &'static [AtomicU64; 4],
    body: *mut u8,
    len: usize,
    reader: libc::pid_t,
    round: u64,
}

/// Counter words: the round the writer asks for (u64::MAX: stop), the
/// round the reader is spinning for, bytes published, the last round the
/// reader finished.
const ROUND: usize = 0;
const READY: usize = 1;
const PUBLISHED: usize = 2;
const DONE: usize = 3;

impl CrossProcessCopy {
    pub fn new(len: usize) -> CrossProcessCopy {
        let size = len + 4096;
        // SAFETY: a fresh shared anonymous mapping, checked; the counters
        // are its first page, the body the rest. The forked child only
        // spins on atomics and copies between buffers allocated before the
        // fork, then _exits: nothing that needs a lock of the parent's.
        unsafe {
            let p = libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            );
            assert_ne!(p, libc::MAP_FAILED, "mmap");
            let ctl = &*(p as *const [AtomicU64; 4]);
            let body = (p as *mut u8).add(4096);
            let mut dst = vec![0u8; len];
            let pid = libc::fork();
            assert!(pid >= 0, "fork");
            if pid == 0 {
                let mut seen = 0;
                loop {
                    let r = ctl[ROUND].load(Ordering::Acquire);
                    if r == u64::MAX {
                        libc::_exit(0);
                    }
                    if r == seen {
                        // Between rounds the reader sleeps: the system under
                        // test needs the cores.
                        libc::usleep(200);
                        continue;
                    }
                    seen = r;
                    ctl[READY].store(r, Ordering::Release);
                    let mut done = 0;
                    while done < len {
                        let n = ctl[PUBLISHED].load(Ordering::Acquire) as usize;
                        if n > done {
                            std::ptr::copy_nonoverlapping(body.add(done), dst.as_mut_ptr().add(done), n - done);
                            done = n;
                        } else {
                            std::hint::spin_loop();
                        }
                    }
                    ctl[DONE].store(r, Ordering::Release);
                }
            }
            CrossProcessCopy { ctl, body, len, reader: pid, round: 0 }
        }
    }

    /// Moves `src` across once; returns the microseconds from the first
    /// byte written to the last byte read.
    pub fn run(&mut self, src: &[u8]) -> f64 {
        assert_eq!(src.len(), self.len);
        self.round += 1;
        self.ctl[PUBLISHED].store(0, Ordering::Release);
        self.ctl[ROUND].store(self.round, Ordering::Release);
        while self.ctl[READY].load(Ordering::Acquire) != self.round {
            std::hint::spin_loop();
        }
        let t = Instant::now();
        for (k, part) in src.chunks(PART).enumerate() {
            // SAFETY: within the body; the reader only reads below PUBLISHED.
            unsafe { std::ptr::copy_nonoverlapping(part.as_ptr(), self.body.add(k * PART), part.len()) };
            self.ctl[PUBLISHED].store((k * PART + part.len()) as u64, Ordering::Release);
        }
        while self.ctl[DONE].load(Ordering::Acquire) != self.round {
            std::hint::spin_loop();
        }
        t.elapsed().as_secs_f64() * 1e6
    }
}

impl Drop for CrossProcessCopy {
    fn drop(&mut self) {
        self.ctl[ROUND].store(u64::MAX, Ordering::Release);
        // SAFETY: our own child.
        unsafe { libc::waitpid(self.reader, std::ptr::null_mut(), 0) };
    }
}
