//! The kernel page: one shared mapping in every PD process that carries
//! what seL4 keeps in the kernel: pending notifications, protected calls
//! and their messages, faults, and requests to the runtime.
//!
//! Every PD has a [`PdBlock`]. To signal a PD, set bits in its block, then
//! [`PdBlock::signal`]: bump its `event` futex word and wake it if it
//! sleeps. A PD's loop snapshots `event` before looking for work and sleeps
//! only if `event` has not moved since, so no signal is ever missed.
//!
//! Trust: on the host the kernel page is writable by every PD process. The
//! runtime checks what a PD reads from it (a call from a PD without a `pp`
//! channel is refused), but a deliberately hostile process could forge
//! notifications. Isolation between PDs is what seL4 provides; the host
//! runtime is for development and CI.
use interfaces::{Message, MSG_WORDS};
use std::cell::UnsafeCell;
use std::sync::atomic::{fence, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

pub const MAX_PDS: usize = sdf::MAX_PDS;
const MAGIC: u64 = 0x4b45_524e_454c_3031; // "KERNEL01"

/// Call-slot states. The caller moves IDLE -> CALLED; the callee takes the
/// call CALLED -> TAKEN and answers TAKEN -> REPLIED. If the callee dies, the
/// runtime fails a TAKEN call (FAILED: it may have run) and, unless the
/// callee is being restarted, a CALLED one (NOT_DELIVERED: it did not run).
/// A call still CALLED when its callee is restarted stays queued for the new
/// incarnation, as a call on a seL4 endpoint does. The caller takes the
/// result and moves back to IDLE.
pub mod call_state {
    pub const IDLE: u32 = 0;
    pub const CALLED: u32 = 1;
    pub const REPLIED: u32 = 2;
    pub const FAILED: u32 = 3;
    pub const TAKEN: u32 = 4;
    pub const NOT_DELIVERED: u32 = 5;
}

/// Run states of a PD, written by the runtime.
pub mod run_state {
    pub const RUNNING: u32 = 1;
    pub const STOPPED: u32 = 2;
    pub const DEAD: u32 = 3;
}

/// Requests a parent posts for the runtime to carry out on a child.
pub mod request {
    pub const NONE: u32 = 0;
    pub const STOP: u32 = 1;
    pub const RESTART: u32 = 2;
    pub const RESUME: u32 = 3;
}

/// Fault kinds reported to a parent.
pub mod fault_kind {
    pub const SIGNAL: u32 = 1;
    pub const ABORT: u32 = 2;
    pub const EXIT: u32 = 3;
}

/// A PD's one outstanding protected call (a PD blocks in a call, so one is
/// enough). Written by the caller, answered in place by the callee.
#[repr(C)]
pub struct CallSlot {
    pub state: AtomicU32,
    pub callee: AtomicU32,
    /// 1 while the caller sleeps on `state`: the callee only makes the
    /// wake-up system call then (SeqCst pairing as in [`PdBlock::signal`]).
    pub waiting: AtomicU32,
    /// The message: written by the caller before `state` becomes CALLED,
    /// by the callee before it becomes REPLIED (Release/Acquire on `state`).
    message: UnsafeCell<Message>,
}

impl CallSlot {
    /// Copies the label, the count and the words in use (not all 64).
    ///
    /// # Safety
    /// Only the side that currently owns the slot (per `state`) may write.
    pub unsafe fn write(&self, m: &Message) {
        let n = (m.count as usize).min(MSG_WORDS);
        let dst = self.message.get();
        unsafe {
            (*dst).label = m.label;
            (*dst).count = n as u32;
            std::ptr::copy_nonoverlapping(m.words.as_ptr(), (*dst).words.as_mut_ptr(), n);
        }
    }

    /// Reads what the other side wrote into `m`; the count is clamped, the
    /// words beyond it are left as they were.
    ///
    /// # Safety
    /// As [`CallSlot::write`]; the bytes may come from a misbehaving peer,
    /// so callers validate what they read.
    pub unsafe fn read_into(&self, m: &mut Message) {
        let src = self.message.get();
        unsafe {
            m.label = (*src).label;
            let n = ((*src).count as usize).min(MSG_WORDS);
            m.count = n as u32;
            std::ptr::copy_nonoverlapping((*src).words.as_ptr(), m.words.as_mut_ptr(), n);
        }
    }

    /// Publishes a result and wakes the caller if it sleeps.
    pub fn complete(&self, from: u32, to: u32) -> bool {
        if self.state.compare_exchange(from, to, Ordering::SeqCst, Ordering::Relaxed).is_err() {
            return false;
        }
        if self.waiting.load(Ordering::SeqCst) != 0 {
            futex_wake(&self.state);
        }
        true
    }
}

#[repr(C, align(64))]
pub struct PdBlock {
    pub event: AtomicU32,
    pub sleeping: AtomicU32,
    pub notify_pending: AtomicU64,
    /// Bit i: PD i has a call for this PD in its call slot.
    pub call_pending: AtomicU64,
    /// Bit i: child PD i faulted.
    pub fault_pending: AtomicU64,
    pub run_state: AtomicU32,
    pub request: AtomicU32,
    /// Bumped on every (re)start, so a caller can tell a restarted callee.
    pub incarnation: AtomicU32,
    /// The incarnation whose death `fault_kind` describes: a report about
    /// an incarnation that was restarted since is stale.
    pub fault_incarnation: AtomicU32,
    pub fault_kind: AtomicU32,
    pub fault_code: AtomicI64,
    pub call: CallSlot,
}

impl PdBlock {
    /// Wakes this PD's event loop. `SeqCst` on `event` and `sleeping` is the
    /// Dekker pairing with [`PdBlock::wait`]: either the sleeper sees the
    /// new event, or the signaller sees it sleeping and wakes it.
    pub fn signal(&self) {
        self.event.fetch_add(1, Ordering::SeqCst);
        if self.sleeping.load(Ordering::SeqCst) != 0 {
            futex_wake(&self.event);
        }
    }

    /// Sleeps until `event` differs from `seen` (or `timeout` passes).
    pub fn wait(&self, seen: u32, timeout: Option<Duration>) {
        self.sleeping.store(1, Ordering::SeqCst);
        if self.event.load(Ordering::SeqCst) == seen {
            futex_wait(&self.event, seen, timeout);
        }
        self.sleeping.store(0, Ordering::Relaxed);
    }

    pub fn fault(&self) -> pd_api::Fault {
        let code = self.fault_code.load(Ordering::Acquire);
        match self.fault_kind.load(Ordering::Acquire) {
            fault_kind::ABORT => pd_api::Fault::Abort,
            fault_kind::EXIT => pd_api::Fault::Exited { status: code },
            _ => pd_api::Fault::Exception { code },
        }
    }
}

#[repr(C)]
pub struct KernelPage {
    pub magic: AtomicU64,
    pub halt: AtomicU32,
    /// The runtime's own futex word: bumped for requests and halts.
    pub runtime_event: AtomicU32,
    pub pds: [PdBlock; MAX_PDS],
}

pub const KERNEL_PAGE_SIZE: usize = std::mem::size_of::<KernelPage>().next_multiple_of(4096);

impl KernelPage {
    /// Formats a zeroed page.
    pub fn format(&self) {
        self.magic.store(MAGIC, Ordering::Release);
    }
    pub fn is_formatted(&self) -> bool {
        self.magic.load(Ordering::Acquire) == MAGIC
    }
    pub fn wake_runtime(&self) {
        self.runtime_event.fetch_add(1, Ordering::SeqCst);
        futex_wake(&self.runtime_event);
    }
}

// Shared (not PRIVATE) futexes: the words live in a mapping shared between
// processes.
pub fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    let ts = timeout.map(|t| libc::timespec { tv_sec: t.as_secs() as _, tv_nsec: t.subsec_nanos() as _ });
    let ts_ptr = ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a valid, aligned u32 for the duration of the call.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAIT, expected, ts_ptr, 0usize, 0u32);
    }
}

pub fn futex_wake(word: &AtomicU32) {
    fence(Ordering::SeqCst);
    // SAFETY: as above; waking has no memory effects beyond the syscall.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, i32::MAX, 0usize, 0usize, 0u32);
    }
}
