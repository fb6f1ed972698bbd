//! The PPC benchmark, run inside a PD: round trips to an `echo` PD through
//! the runtime, against a raw two-process futex ping-pong (the floor any
//! cross-process call on Linux pays), in alternating batches so that both
//! sides see the same machine load; medians are compared. Both sides wait
//! the same way: the partner sleeps in the kernel between calls (as an idle
//! PD does), the caller spins briefly before sleeping (as `ppcall` does).
use host_runtime::kernel::{futex_wait, futex_wake};
use host_runtime::pd::CALL_SPIN;
use host_runtime::HostPd;
use interfaces::Message;
use pd_api::Pd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

const ROUNDS: usize = 15;
const BATCH: u32 = 20_000;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A page shared with a forked partner process: word 0 is the ball, word 1
/// says the server sleeps waiting for the return (the same wake-only-if-
/// sleeping protocol the runtime uses).
struct PingPong {
    word: &'static AtomicU32,
    waiting: &'static AtomicU32,
    partner: i32,
}

impl PingPong {
    fn start() -> PingPong {
        // SAFETY: an anonymous shared page, then fork: both processes see
        // the same word. The child only runs the loop below and _exits.
        unsafe {
            let p = libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(p, libc::MAP_FAILED);
            let word = &*(p as *const AtomicU32);
            let waiting = &*((p as *const AtomicU32).add(1));
            let pid = libc::fork();
            if pid == 0 {
                loop {
                    // Wait for a serve (1), return it (2); 3 ends the game.
                    let v = word.load(Ordering::Acquire);
                    match v {
                        1 => {
                            word.store(2, Ordering::SeqCst);
                            if waiting.load(Ordering::SeqCst) != 0 {
                                futex_wake(word);
                            }
                        }
                        3 => libc::_exit(0),
                        _ => futex_wait(word, v, None),
                    }
                }
            }
            PingPong { word, waiting, partner: pid }
        }
    }

    /// Waits for the return exactly as a PPC caller waits for its reply
    /// (spin a little, then sleep), so the two sides differ only in what
    /// the runtime adds.
    fn round_trip(&self) {
        self.word.store(1, Ordering::Release);
        futex_wake(self.word);
        let mut spins = 0;
        loop {
            let v = self.word.load(Ordering::Acquire);
            if v == 2 {
                return;
            }
            if spins < CALL_SPIN {
                spins += 1;
                std::hint::spin_loop();
            } else {
                self.waiting.store(1, Ordering::SeqCst);
                if self.word.load(Ordering::SeqCst) == v {
                    futex_wait(self.word, v, None);
                }
                self.waiting.store(0, Ordering::Relaxed);
            }
        }
    }
}

impl Drop for PingPong {
    fn drop(&mut self) {
        self.word.store(3, Ordering::Release);
        futex_wake(self.word);
        // SAFETY: reaping our own child.
        unsafe { libc::waitpid(self.partner, std::ptr::null_mut(), 0) };
    }
}

pub fn run(pd: &HostPd) {
    let echo = pd.channel("echo").expect("channel to echo");
    let game = PingPong::start();
    let mut msg = Message::with_words(1, &[7]);
    // Warm up both paths.
    for _ in 0..BATCH / 4 {
        pd.ppcall(echo, &mut msg).expect("ppc");
        game.round_trip();
    }
    let (mut ppc, mut futex) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let t = Instant::now();
        for _ in 0..BATCH {
            msg.label = 1;
            pd.ppcall(echo, &mut msg).expect("ppc");
        }
        ppc.push(t.elapsed().as_nanos() as f64 / BATCH as f64);
        let t = Instant::now();
        for _ in 0..BATCH {
            game.round_trip();
        }
        futex.push(t.elapsed().as_nanos() as f64 / BATCH as f64);
    }
    let (p, f) = (median(&mut ppc), median(&mut futex));
    pd.log(format_args!("BENCH ppc_round_trip_ns: {p:.0}"));
    pd.log(format_args!("BENCH futex_round_trip_ns: {f:.0}"));
    pd.log(format_args!("BENCH ppc_vs_futex_ratio: {:.2}", p / f));
}
