//! The checkpoint probation in the shell, with no processes: a slot that
//! maps a `checkpoint` region takes a checkpoint when its probation starts
//! and after every call its module completes, publishes it only once the
//! module's export is whole, stops (and says so on its control page) when
//! one fails or does not fit, and a slot told to take over imports the
//! last one published.
use domain_shell::Shell;
use interfaces::abi::{status, ModuleDescriptor, ModuleEntry, ShellEnv, ABI_VERSION};
use interfaces::checkpoint::Checkpoint;
use interfaces::control::{op, probation_kind, reply};
use interfaces::Message;
use pd_api::{Handler, Pd, Region};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

mod common;
use common::{page, post, FakePd, PageMem, StaticLoader, CLIENT};

/// A module whose state is a count of its calls (schema 2; it writes
/// schema 1 too, as the count times ten).
mod count {
    use super::*;

    pub const DESCRIPTOR: ModuleDescriptor = ModuleDescriptor::new("count", 2, 2).imports(1).exports(1);
    pub static COUNT: AtomicU64 = AtomicU64::new(0);
    /// `prepare` answers not ready (its state cannot be made durable).
    pub static STUCK: AtomicBool = AtomicBool::new(false);
    /// The export claims more room than there is.
    pub static HUGE: AtomicBool = AtomicBool::new(false);

    pub unsafe extern "C" fn init(_env: *const ShellEnv) -> i32 {
        status::OK
    }
    pub unsafe extern "C" fn notified(_ch: u32) {}
    pub unsafe extern "C" fn protected(_ch: u32, msg: *mut Message) {
        let n = COUNT.fetch_add(1, Relaxed) + 1;
        unsafe { *msg = Message::with_words(0, &[n]) };
    }
    pub unsafe extern "C" fn prepare() -> i32 {
        if STUCK.load(Relaxed) {
            status::NOT_READY
        } else {
            status::OK
        }
    }
    pub unsafe extern "C" fn export_state(schema: u32, buf: *mut u8, cap: usize, out_len: *mut usize) -> i32 {
        if HUGE.load(Relaxed) {
            return status::NO_SPACE;
        }
        let n = COUNT.load(Relaxed) * if schema == 1 { 10 } else { 1 };
        assert!(cap >= 8);
        unsafe {
            buf.copy_from_nonoverlapping(n.to_le_bytes().as_ptr(), 8);
            *out_len = 8;
        }
        status::OK
    }
    pub unsafe extern "C" fn import_state(schema: u32, buf: *const u8, len: usize) -> i32 {
        if len != 8 {
            return status::BAD_STATE;
        }
        let mut b = [0u8; 8];
        unsafe { buf.copy_to_nonoverlapping(b.as_mut_ptr(), 8) };
        let n = u64::from_le_bytes(b);
        COUNT.store(if schema == 1 { n / 10 } else { n }, Relaxed);
        status::OK
    }

    pub static ENTRY: ModuleEntry = ModuleEntry {
        abi_version: ABI_VERSION,
        features: 0,
        init,
        notified,
        protected,
        prepare,
        export_state,
        import_state,
        export_changes: None,
        import_changes: None,
    };
}

fn control(pd: &'static FakePd, shell: &mut Shell<FakePd, StaticLoader>, label: u64, words: &[u64]) -> Message {
    post(pd, shell, label, words)
}

/// The checkpoint's (schema, calls, state) as the other slot would read it.
fn published(pd: &FakePd, token: u64) -> Option<(u32, u64, u64)> {
    // SAFETY: the test's checkpoint region, alive until the end.
    let r = pd.region("checkpoint").unwrap();
    let c = unsafe { Checkpoint::new(r.base, r.size) }.unwrap();
    c.latest(token).unwrap().map(|s| {
        // SAFETY: `latest` checked the range.
        let b = unsafe { std::slice::from_raw_parts(s.data, s.len) };
        (s.schema, s.calls, u64::from_le_bytes(b.try_into().unwrap()))
    })
}

#[test]
fn each_call_is_checkpointed_before_its_reply_and_the_last_checkpoint_is_taken_over() {
    let mut code = vec![0u8; 4096];
    let mut transfer = Box::new(PageMem([0; 4096]));
    let mut control_mem = Box::new(PageMem([0; 4096]));
    let mut checkpoint = Box::new(PageMem([0; 4096]));
    let fake = Box::into_raw(Box::new(FakePd::new(
        "count0_b",
        Region { base: code.as_mut_ptr(), size: code.len(), writable: false },
        Region { base: transfer.0.as_mut_ptr(), size: 4096, writable: true },
        Region { base: control_mem.0.as_mut_ptr(), size: 4096, writable: true },
        Some(("checkpoint", Region { base: checkpoint.0.as_mut_ptr(), size: 4096, writable: true })),
    )));
    // SAFETY: freed at the end, after the shell that holds it is gone.
    let pd: &'static FakePd = unsafe { &*fake };
    page(pd).reset();
    let mut shell = Shell::new(pd, StaticLoader(&count::ENTRY, count::DESCRIPTOR));
    for label in [op::LOAD, op::INIT] {
        assert_eq!(control(pd, &mut shell, label, &[0]).label, reply::OK);
    }
    count::COUNT.store(5, Relaxed); // as imported
                                    // A schema the module cannot write is refused; the old version's is
                                    // taken, and the first checkpoint is there before any call.
    assert_eq!(control(pd, &mut shell, op::PROBATION, &[7, 3]).label, reply::ERROR);
    let m = control(pd, &mut shell, op::PROBATION, &[7, 1]);
    assert_eq!((m.label, m.word(0)), (reply::OK, probation_kind::CHECKPOINT));
    assert_eq!(published(pd, 7), Some((1, 0, 50)));
    assert_eq!(control(pd, &mut shell, op::ACTIVATE, &[]).label, reply::OK);
    let mut msg = Message::default();
    for n in 6..=8 {
        shell.protected(pd, CLIENT, &mut msg);
        assert_eq!(msg.word(0), n);
        assert_eq!(published(pd, 7), Some((1, n - 5, n * 10)), "published before the reply");
    }
    assert_eq!(page(pd).counters.journaled.load(Relaxed), 3);
    // A call whose effects cannot be made durable: the probation's
    // checkpoints stop (the manager ends it), the last one stays.
    count::STUCK.store(true, Relaxed);
    shell.protected(pd, CLIENT, &mut msg);
    count::STUCK.store(false, Relaxed);
    assert_eq!(page(pd).counters.journal_overflow.load(Relaxed), 1);
    shell.protected(pd, CLIENT, &mut msg);
    assert_eq!(published(pd, 7), Some((1, 3, 80)), "no checkpoint after a failed one");
    // Taking over (here the same module stands in for the old version):
    // the count goes back to the checkpoint's.
    assert_eq!(control(pd, &mut shell, op::FREEZE, &[]).label, reply::OK);
    let m = control(pd, &mut shell, op::REPLAY, &[7]);
    assert_eq!((m.label, m.word(0), m.word(1)), (reply::OK, 3, probation_kind::CHECKPOINT));
    assert_eq!(count::COUNT.load(Relaxed), 8);
    // Another probation's token is refused.
    assert_eq!(control(pd, &mut shell, op::ACTIVATE, &[]).label, reply::OK);
    assert_eq!(control(pd, &mut shell, op::FREEZE, &[]).label, reply::OK);
    assert_eq!(control(pd, &mut shell, op::REPLAY, &[8]).label, reply::ERROR);
    // A state that does not fit: the first checkpoint fails, no probation.
    count::HUGE.store(true, Relaxed);
    assert_eq!(control(pd, &mut shell, op::PROBATION, &[9, 1]).label, reply::ERROR);
    drop(shell);
    // SAFETY: from `Box::into_raw` above; nothing refers to it any more.
    drop(unsafe { Box::from_raw(fake) });
    drop((code, transfer, control_mem, checkpoint));
}
