//! Pre-copy between two shells, with no processes: the old slot exports
//! its whole state while live, the new slot imports it, and at the stop
//! only the changed ranges travel. Every way that can go wrong falls back
//! to the whole state, never to a wrong one: the exporter cannot list its
//! changes, the export names another pre-copy, or the list a peer wrote
//! points outside the state.
use domain_shell::Shell;
use interfaces::abi::{features, status, ModuleDescriptor, ModuleEntry, ShellEnv, StateRange, ABI_VERSION};
use interfaces::control::{op, reply, shell_label};
use interfaces::transfer::TRANSFER_HEADER;
use interfaces::Message;
use pd_api::{Handler, Pd, Region};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Mutex;

mod common;
use common::{page, post, FakePd, PageMem, StaticLoader, CLIENT};

const SIZE: usize = 8 * 4096;

/// A module whose state is `SIZE` bytes; slot `S` (0 or 1) keeps its own
/// copy. The test marks what it changes in `DIRTY`.
mod bytes {
    use super::*;

    pub const DESCRIPTOR: ModuleDescriptor = ModuleDescriptor::new("bytes", 1, 1);
    pub static STATE: [Mutex<Vec<u8>>; 2] = [Mutex::new(Vec::new()), Mutex::new(Vec::new())];
    /// The ranges slot 0 changed since its last export.
    pub static DIRTY: Mutex<Vec<StateRange>> = Mutex::new(Vec::new());
    /// `export_changes` fails.
    pub static NO_CHANGES: AtomicBool = AtomicBool::new(false);

    unsafe extern "C" fn init<const S: usize>(_env: *const ShellEnv) -> i32 {
        *STATE[S].lock().unwrap() = vec![0; SIZE];
        status::OK
    }
    unsafe extern "C" fn notified(_ch: u32) {}
    unsafe extern "C" fn protected(_ch: u32, _msg: *mut Message) {}
    unsafe extern "C" fn prepare() -> i32 {
        status::OK
    }
    unsafe extern "C" fn export_state<const S: usize>(_: u32, buf: *mut u8, cap: usize, out_len: *mut usize) -> i32 {
        let s = STATE[S].lock().unwrap();
        assert!(cap >= s.len());
        unsafe {
            buf.copy_from_nonoverlapping(s.as_ptr(), s.len());
            *out_len = s.len();
        }
        DIRTY.lock().unwrap().clear();
        status::OK
    }
    unsafe extern "C" fn import_state<const S: usize>(_: u32, buf: *const u8, len: usize) -> i32 {
        // SAFETY: the shell passes the sealed state (this module does not
        // announce streaming).
        *STATE[S].lock().unwrap() = unsafe { std::slice::from_raw_parts(buf, len) }.to_vec();
        status::OK
    }
    unsafe extern "C" fn export_changes<const S: usize>(
        _: u32,
        buf: *mut u8,
        _cap: usize,
        len: *mut usize,
        changes: *mut StateRange,
        max: usize,
        n: *mut usize,
    ) -> i32 {
        if NO_CHANGES.load(Relaxed) {
            return status::UNSUPPORTED;
        }
        let s = STATE[S].lock().unwrap();
        let mut dirty = DIRTY.lock().unwrap();
        assert!(dirty.len() <= max);
        for (i, r) in dirty.iter().enumerate() {
            let (a, l) = (r.start as usize, r.len as usize);
            unsafe {
                buf.add(a).copy_from_nonoverlapping(s[a..a + l].as_ptr(), l);
                changes.add(i).write(*r);
            }
        }
        unsafe {
            *len = s.len();
            *n = dirty.len();
        }
        dirty.clear();
        status::OK
    }
    unsafe extern "C" fn import_changes<const S: usize>(
        _: u32,
        buf: *const u8,
        len: usize,
        changes: *const StateRange,
        n: usize,
    ) -> i32 {
        let mut s = STATE[S].lock().unwrap();
        s.resize(len, 0);
        for i in 0..n {
            let r = unsafe { changes.add(i).read() };
            let range = r.within(len).expect("the shell checked every range");
            unsafe { buf.add(range.start).copy_to_nonoverlapping(s[range.clone()].as_mut_ptr(), range.len()) };
        }
        status::OK
    }

    const fn entry<const S: usize>() -> ModuleEntry {
        ModuleEntry {
            abi_version: ABI_VERSION,
            features: features::PRECOPY,
            init: init::<S>,
            notified,
            protected,
            prepare,
            export_state: export_state::<S>,
            import_state: import_state::<S>,
            export_changes: Some(export_changes::<S>),
            import_changes: Some(import_changes::<S>),
        }
    }
    pub static OLD: ModuleEntry = entry::<0>();
    pub static NEW: ModuleEntry = entry::<1>();
}

/// The two slots of one instance, over one transfer region.
struct Pair {
    old: (&'static FakePd, Shell<FakePd, StaticLoader>),
    new: (&'static FakePd, Shell<FakePd, StaticLoader>),
    transfer: *mut u8,
}

fn slot(
    name: &'static str,
    transfer: *mut u8,
    entry: &'static ModuleEntry,
) -> (&'static FakePd, Shell<FakePd, StaticLoader>) {
    // Leaked: the shell holds them for the rest of the test process.
    let code: &'static mut [u8] = Box::leak(vec![0u8; 4096].into_boxed_slice());
    let control: &'static mut PageMem = Box::leak(Box::new(PageMem([0; 4096])));
    let pd: &'static FakePd = Box::leak(Box::new(FakePd::new(
        name,
        Region { base: code.as_mut_ptr(), size: code.len(), writable: false },
        Region { base: transfer, size: TRANSFER_HEADER + 2 * SIZE, writable: true },
        Region { base: control.0.as_mut_ptr(), size: 4096, writable: true },
        None,
    )));
    page(pd).reset();
    let mut shell = Shell::new(pd, StaticLoader(entry, bytes::DESCRIPTOR));
    for label in [op::LOAD, op::INIT] {
        assert_eq!(post(pd, &mut shell, label, &[0]).label, reply::OK);
    }
    (pd, shell)
}

impl Pair {
    fn new() -> Pair {
        let mem: &'static mut [PageMem] =
            Box::leak((0..(TRANSFER_HEADER + 2 * SIZE) / 4096 + 1).map(|_| PageMem([0; 4096])).collect());
        let transfer = mem.as_mut_ptr().cast::<u8>();
        let mut old = slot("bytes0_a", transfer, &bytes::OLD);
        assert_eq!(post(old.0, &mut old.1, op::ACTIVATE, &[]).label, reply::OK);
        let mut state = bytes::STATE[0].lock().unwrap();
        state.iter_mut().enumerate().for_each(|(i, b)| *b = i as u8);
        drop(state);
        Pair { old, new: slot("bytes0_b", transfer, &bytes::NEW), transfer }
    }

    fn old(&mut self, label: u64, words: &[u64]) -> Message {
        post(self.old.0, &mut self.old.1, label, words)
    }
    fn new_slot(&mut self, label: u64, words: &[u64]) -> Message {
        post(self.new.0, &mut self.new.1, label, words)
    }

    /// Pre-copies under token 10, then the old slot changes a page.
    fn precopy_then_change(&mut self) {
        let m = self.old(op::PRECOPY, &[1, 10]);
        assert_eq!((m.label, m.word(0), m.word(1)), (reply::OK, 1, SIZE as u64), "the old slot pre-copied");
        let m = self.new_slot(op::IMPORT, &[10, 1]);
        assert_eq!((m.label, m.word(0)), (reply::OK, 1), "the new slot imported the pre-copy");
        assert_eq!(*bytes::STATE[1].lock().unwrap(), *bytes::STATE[0].lock().unwrap());
        // A call changes page 3 while the old slot still serves.
        bytes::STATE[0].lock().unwrap()[3 * 4096..4 * 4096].fill(0xee);
        bytes::DIRTY.lock().unwrap().push(StateRange { start: 3 * 4096, len: 4096 });
    }

    /// Stops the old slot under token 11 and exports against `base`.
    fn stop_and_export(&mut self, base: u64) {
        let m = self.old(op::PREPARE, &[1, 11]);
        assert_eq!((m.label, m.word(1)), (reply::OK, 0), "no pre-copy named: the export waits for EXPORT");
        assert_eq!(self.old(op::EXPORT, &[base]).label, reply::OK);
    }

    /// Stops the old slot under token 11 naming pre-copy `base`: answers
    /// whether it exported as it stopped.
    fn stop_after_precopy(&mut self, base: u64) -> bool {
        let m = self.old(op::PREPARE, &[1, 11, base]);
        assert_eq!(m.label, reply::OK, "{:?}", m.text());
        m.word(1) == 1
    }

    /// The new slot's import at the stop: (changes only?, bytes taken).
    fn import(&mut self) -> (u64, u64) {
        let m = self.new_slot(op::IMPORT, &[11]);
        assert_eq!(m.label, reply::OK, "{:?}", m.text());
        assert_eq!(*bytes::STATE[1].lock().unwrap(), *bytes::STATE[0].lock().unwrap(), "the new slot has the state");
        (m.word(0), m.word(1))
    }
}

/// One test at a time: the module's state is process-wide.
static ONE: Mutex<()> = Mutex::new(());

#[test]
fn only_the_changed_page_moves_at_the_stop() {
    let _one = ONE.lock().unwrap_or_else(|e| e.into_inner());
    let mut p = Pair::new();
    p.precopy_then_change();
    p.stop_and_export(10);
    assert_eq!(p.import(), (1, 4096));
}

/// Named in its `PREPARE`, the pre-copy's changes are exported as the
/// slot stops: no `EXPORT` follows (the manager sends none), and the new
/// slot takes only them.
#[test]
fn a_stop_that_names_the_precopy_exports_the_changes_at_once() {
    let _one = ONE.lock().unwrap_or_else(|e| e.into_inner());
    let mut p = Pair::new();
    p.precopy_then_change();
    assert!(p.stop_after_precopy(10), "exported as it stopped");
    assert_eq!(p.import(), (1, 4096));
}

/// A stop that names another pre-copy than the one the slot made exports
/// nothing yet: the `EXPORT` that follows moves the whole state.
#[test]
fn a_stop_that_names_another_precopy_waits_for_the_export() {
    let _one = ONE.lock().unwrap_or_else(|e| e.into_inner());
    let mut p = Pair::new();
    p.precopy_then_change();
    assert!(!p.stop_after_precopy(99), "not exported yet");
    assert_eq!(p.old(op::EXPORT, &[99]).label, reply::OK);
    assert_eq!(p.import(), (0, 0), "imported whole");
}

/// A module that cannot list its changes at the stop fails nothing: the
/// slot exports its whole state there and then, and the new slot imports
/// it whole.
#[test]
fn a_stop_after_precopy_whose_changes_cannot_be_listed_exports_the_whole_state() {
    let _one = ONE.lock().unwrap_or_else(|e| e.into_inner());
    let mut p = Pair::new();
    p.precopy_then_change();
    bytes::NO_CHANGES.store(true, Relaxed);
    let exported = p.stop_after_precopy(10);
    bytes::NO_CHANGES.store(false, Relaxed);
    assert!(exported);
    assert_eq!(p.import(), (0, 0), "imported whole");
}

#[test]
fn a_module_that_cannot_list_its_changes_exports_the_whole_state() {
    let _one = ONE.lock().unwrap_or_else(|e| e.into_inner());
    let mut p = Pair::new();
    p.precopy_then_change();
    bytes::NO_CHANGES.store(true, Relaxed);
    p.stop_and_export(10);
    bytes::NO_CHANGES.store(false, Relaxed);
    assert_eq!(p.import(), (0, 0), "imported whole");
}

#[test]
fn an_export_against_another_precopy_is_taken_whole() {
    let _one = ONE.lock().unwrap_or_else(|e| e.into_inner());
    let mut p = Pair::new();
    p.precopy_then_change();
    // The manager names a pre-copy the old slot did not make: it exports
    // everything.
    p.stop_and_export(99);
    assert_eq!(p.import(), (0, 0));
}

#[test]
fn a_forged_change_list_is_refused_and_the_whole_state_imported() {
    let _one = ONE.lock().unwrap_or_else(|e| e.into_inner());
    let mut p = Pair::new();
    p.precopy_then_change();
    p.stop_and_export(10);
    // A peer rewrites the list after the state (at SIZE, 8-aligned) to
    // point past the state's end.
    let forged = StateRange { start: SIZE as u64 - 8, len: 4096 };
    // SAFETY: the list's first entry, inside the test's transfer region.
    unsafe { p.transfer.add(TRANSFER_HEADER + SIZE).cast::<StateRange>().write_unaligned(forged) };
    assert_eq!(p.import(), (0, 0), "the forged range was never applied");
}

#[test]
fn a_slot_not_live_does_not_precopy_and_a_new_slot_without_a_precopy_imports_whole() {
    let _one = ONE.lock().unwrap_or_else(|e| e.into_inner());
    let mut p = Pair::new();
    assert_eq!(p.new_slot(op::PRECOPY, &[1, 10]).label, reply::ERROR, "a slot that is not live");
    let m = p.new_slot(op::IMPORT, &[10, 1]);
    assert_eq!(m.label, reply::ERROR, "no pre-copy under that token yet");
    p.stop_and_export(0);
    assert_eq!(p.import(), (0, 0));
}

/// The commit opens the new slot's page under its import's token: the
/// first call after that is served at once, before the `ACTIVATE` arrives
/// (the blackout ends at the open, not one wake-up later). Before it, or
/// under another token, calls bounce.
#[test]
fn a_new_slot_serves_from_the_commits_open_before_its_activate() {
    let _one = ONE.lock().unwrap_or_else(|e| e.into_inner());
    let mut p = Pair::new();
    p.stop_and_export(0);
    p.import();
    let call = |p: &mut Pair| {
        let mut m = Message::with_words(0x77, &[1]);
        p.new.1.protected(p.new.0, CLIENT, &mut m);
        m.label
    };
    assert_eq!(call(&mut p), shell_label::NO_SERVICE, "imported, not committed");
    page(p.new.0).open(10);
    assert_eq!(call(&mut p), shell_label::NO_SERVICE, "opened under another import's token");
    let before = p.new.0.now_ns();
    page(p.new.0).open(11);
    assert_eq!(call(&mut p), 0x77, "served by the module");
    assert_eq!(page(p.new.0).counters.calls_served.load(Relaxed), 1);
    let m = p.new_slot(op::ACTIVATE, &[]);
    assert_eq!(m.label, reply::OK, "{:?}", m.text());
    assert!((before..p.new.0.now_ns()).contains(&m.word(0)), "live since the call after the open");
    assert_eq!(p.new_slot(op::ACTIVATE, &[]).label, reply::ERROR, "activated once only");
}
