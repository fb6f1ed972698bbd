//! The shell refuses a module whose header is wrong or that needs what the
//! slot lacks, with a message naming the problem; a good module loads and
//! serves, and tells when it stops and starts serving. Uses the real kv-v1
//! shared object, patched per fault, and the real loader (memfd + dlopen),
//! with a stand-in PD.
use domain_shell::{host_loader::SharedObjectLoader, Shell};
use interfaces::abi::{ModuleDescriptor, DESCRIPTOR_MAGIC};
use interfaces::control::{op, reply, shell_label, ShellStatus, SlotState};
use interfaces::control_page::ControlPage;
use interfaces::kv::{KvReply, KvRequest, KvStatus};
use interfaces::{Message, Name};
use pd_api::{Handler, Pd, Region};
use std::mem::offset_of;
use std::sync::atomic::Ordering;
use std::sync::OnceLock;

mod common;
use common::{page, post, FakePd, CLIENT, CONTROL};

fn kv_v1() -> &'static [u8] {
    static IMAGE: OnceLock<Vec<u8>> = OnceLock::new();
    IMAGE.get_or_init(|| xtask::build_module("kv-v1").expect("build kv-v1"))
}

/// A zeroed, 64-byte aligned, leaked region of `size` bytes.
fn region(size: usize) -> Region {
    let mem = Box::leak(vec![0u64; size / 8 + 8].into_boxed_slice());
    let base: *mut u8 = mem.as_mut_ptr().cast();
    let base = base.wrapping_add(base.align_offset(64));
    Region { base, size, writable: true }
}

/// A fresh slot whose code region holds `image`.
fn slot(image: &[u8]) -> (&'static FakePd, Shell<FakePd, SharedObjectLoader>) {
    slot_sharing(image, region(0x10000), region(0x10000))
}

/// A fresh slot sharing a transfer region and a journal with another.
fn slot_sharing(
    image: &[u8],
    transfer: Region,
    journal: Region,
) -> (&'static FakePd, Shell<FakePd, SharedObjectLoader>) {
    let code = Box::leak(vec![0u8; 2 << 20].into_boxed_slice());
    code[..image.len()].copy_from_slice(image);
    let control = region(4096);
    // SAFETY: a fresh, aligned 4 KiB region.
    unsafe { ControlPage::at(control.base, control.size) }.unwrap().reset();
    let pd: &'static FakePd = Box::leak(Box::new(FakePd::new(
        "kv0_a",
        Region { base: code.as_mut_ptr(), size: code.len(), writable: false },
        transfer,
        control,
        Some(("journal", journal)),
    )));
    (pd, Shell::new(pd, SharedObjectLoader))
}

/// Posts a command on the slot's control page, as the manager does, and
/// reads the answer the shell posted back.
fn control(
    pd: &'static FakePd,
    shell: &mut Shell<FakePd, SharedObjectLoader>,
    label: u64,
    words: &[u64],
) -> Result<Message, String> {
    let msg = post(pd, shell, label, words);
    match msg.label {
        reply::OK => Ok(msg),
        _ => Err(msg.text().unwrap_or("<unreadable>").to_owned()),
    }
}

fn load(image: &[u8]) -> Result<(), String> {
    let (pd, mut shell) = slot(image);
    control(pd, &mut shell, op::LOAD, &[image.len() as u64]).map(|_| ())
}

fn descriptor_offset(image: &[u8]) -> usize {
    let hits: Vec<usize> =
        image.windows(8).enumerate().filter(|(_, w)| *w == DESCRIPTOR_MAGIC).map(|(i, _)| i).collect();
    assert_eq!(hits.len(), 1, "the descriptor magic appears once in the image");
    hits[0]
}

fn patched(at: usize, bytes: &[u8]) -> Vec<u8> {
    let mut img = kv_v1().to_vec();
    let off = descriptor_offset(&img) + at;
    img[off..off + bytes.len()].copy_from_slice(bytes);
    img
}

#[test]
fn good_module_loads_initialises_and_serves() {
    let image = kv_v1();
    let (pd, mut shell) = slot(image);
    let mut msg = Message::default();
    KvRequest::Get { key: b"k" }.encode(&mut msg).unwrap();
    shell.protected(pd, CLIENT, &mut msg);
    assert_eq!(msg.label, shell_label::NO_SERVICE, "an empty slot bounces calls");
    control(pd, &mut shell, op::LOAD, &[image.len() as u64]).unwrap();
    control(pd, &mut shell, op::INIT, &[]).unwrap();
    control(pd, &mut shell, op::ACTIVATE, &[]).unwrap();
    KvRequest::Put { key: b"k", value: b"v1" }.encode(&mut msg).unwrap();
    shell.protected(pd, CLIENT, &mut msg);
    assert_eq!(KvReply::parse(&msg).unwrap().status, KvStatus::Ok);
    KvRequest::Get { key: b"k" }.encode(&mut msg).unwrap();
    shell.protected(pd, CLIENT, &mut msg);
    assert_eq!(KvReply::parse(&msg).unwrap().data, b"v1");
    let s = ShellStatus::read(page(pd)).unwrap();
    assert_eq!((s.state, s.module_version, s.calls_served, s.calls_bounced), (SlotState::Live, 1, 2, 1));
    // A protected call on the control channel is not how the manager
    // commands a slot: refused, nothing run.
    let mut call = Message::with_words(op::RETIRE, &[]);
    shell.protected(pd, CONTROL, &mut call);
    assert_eq!(call.label, reply::ERROR);
    assert_eq!(shell.state(), SlotState::Live);
    // A client sending a control operation on its own channel reaches only
    // the service (which does not know it): control is the manager's alone.
    let mut forged = Message::with_words(op::RETIRE, &[]);
    shell.protected(pd, CLIENT, &mut forged);
    assert_eq!(KvStatus::from_label(forged.label), Some(KvStatus::UnknownOp));
    assert_eq!(shell.state(), SlotState::Live, "the slot did not retire");
    // Steps out of order are refused.
    assert!(control(pd, &mut shell, op::LOAD, &[image.len() as u64]).unwrap_err().contains("is live"));
}

/// The slot itself tells when it stopped serving (PREPARE) and when it
/// started (ACTIVATE): the blackout the manager reports is the time
/// between, not the time its messages took to arrive.
#[test]
fn a_slot_reports_when_it_starts_and_stops_serving() {
    let image = kv_v1();
    let (pd, mut shell) = slot(image);
    control(pd, &mut shell, op::LOAD, &[image.len() as u64]).unwrap();
    control(pd, &mut shell, op::INIT, &[]).unwrap();
    let before = pd.now_ns();
    let started = control(pd, &mut shell, op::ACTIVATE, &[]).unwrap();
    assert_eq!(started.count, 1);
    assert!(started.word(0) > before && started.word(0) < pd.now_ns(), "started at the slot's own time");
    let before = pd.now_ns();
    let stopped = control(pd, &mut shell, op::PREPARE, &[1, 7]).unwrap();
    assert!(stopped.word(0) > before && stopped.word(0) < pd.now_ns(), "stopped at the slot's own time");
    let mut msg = Message::default();
    KvRequest::Get { key: b"k" }.encode(&mut msg).unwrap();
    shell.protected(pd, CLIENT, &mut msg);
    assert_eq!(msg.label, shell_label::MOVED, "a quiescent slot bounces calls");
    // Asked again, it tells the same time.
    assert_eq!(control(pd, &mut shell, op::PREPARE, &[1, 7]).unwrap().word(0), stopped.word(0));
    control(pd, &mut shell, op::THAW, &[]).unwrap();
    KvRequest::Get { key: b"k" }.encode(&mut msg).unwrap();
    shell.protected(pd, CLIENT, &mut msg);
    assert_eq!(KvReply::parse(&msg).unwrap().status, KvStatus::NotFound, "thawed: served again");
}

#[test]
fn each_header_fault_is_refused_with_its_reason() {
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("bad magic", patched(0, b"X"), "bad descriptor magic"),
        ("abi version", patched(offset_of!(ModuleDescriptor, abi_version), &9u32.to_le_bytes()), "ABI version 9"),
        (
            "descriptor size",
            patched(offset_of!(ModuleDescriptor, descriptor_size), &4u32.to_le_bytes()),
            "descriptor size 4",
        ),
        ("bad name", patched(offset_of!(ModuleDescriptor, service), &[0xff; 32]), "not valid text"),
        (
            "too many channels",
            patched(offset_of!(ModuleDescriptor, n_channels), &99u32.to_le_bytes()),
            "too many channels",
        ),
    ];
    for (what, image, want) in cases {
        let err = load(&image).expect_err(what);
        assert!(err.contains(want), "{what}: got '{err}'");
    }
}

#[test]
fn module_needing_what_the_slot_lacks_is_refused_naming_it() {
    let mut img = patched(offset_of!(ModuleDescriptor, n_channels), &1u32.to_le_bytes());
    let off = descriptor_offset(&img) + offset_of!(ModuleDescriptor, channels);
    img[off..off + 32].copy_from_slice(&Name::new("timer").0);
    let err = load(&img).unwrap_err();
    assert_eq!(err, "module kv v1 needs channel 'timer', which slot kv0_a lacks");

    let mut img = patched(offset_of!(ModuleDescriptor, n_regions), &1u32.to_le_bytes());
    let off = descriptor_offset(&img) + offset_of!(ModuleDescriptor, regions);
    img[off..off + 32].copy_from_slice(&Name::new("dma_buffer").0);
    assert_eq!(load(&img).unwrap_err(), "module kv v1 needs region 'dma_buffer', which slot kv0_a lacks");
}

#[test]
fn images_that_are_not_modules_are_refused() {
    assert_eq!(load(b"not an elf at all").unwrap_err(), "image is not an ELF file");
    // A shared object without the module symbols.
    let mut img = kv_v1().to_vec();
    let sym = b"UPD_MODULE_DESCRIPTOR";
    let mut n = 0;
    while let Some(i) = img.windows(sym.len()).position(|w| w == sym) {
        img[i] = b'X';
        n += 1;
    }
    assert!(n > 0);
    assert!(load(&img).unwrap_err().contains("exports no UPD_MODULE_DESCRIPTOR"));
    // A truncated image and a length beyond the code region.
    assert!(load(&kv_v1()[..4096]).unwrap_err().contains("lies outside the image"), "truncated image");
    let (pd, mut shell) = slot(kv_v1());
    assert!(control(pd, &mut shell, op::LOAD, &[3 << 20]).unwrap_err().contains("does not fit the code region"));
}

fn kv_call(pd: &'static FakePd, shell: &mut Shell<FakePd, SharedObjectLoader>, req: KvRequest) -> Message {
    let mut msg = Message::default();
    req.encode(&mut msg).unwrap();
    shell.protected(pd, CLIENT, &mut msg);
    msg
}

/// Probation: the new slot journals each call its module completed; on a
/// rollback the old slot, which kept the state it exported, replays them
/// and ends in the state the new one had.
#[test]
fn the_old_slot_replays_the_calls_the_new_one_journaled_on_probation() {
    let image = kv_v1();
    let (transfer, journal) = (region(0x10000), region(0x10000));
    let (a, mut old) = slot_sharing(image, transfer, journal);
    let (b, mut new) = slot_sharing(image, transfer, journal);
    for (pd, shell) in [(a, &mut old), (b, &mut new)] {
        control(pd, shell, op::LOAD, &[image.len() as u64]).unwrap();
        control(pd, shell, op::INIT, &[]).unwrap();
    }
    control(a, &mut old, op::ACTIVATE, &[]).unwrap();
    kv_call(a, &mut old, KvRequest::Put { key: b"a", value: b"1" });
    // Update a -> b: prepare, export, import, probation, activate, retire.
    control(a, &mut old, op::PREPARE, &[1, 42]).unwrap();
    control(a, &mut old, op::EXPORT, &[]).unwrap();
    control(b, &mut new, op::IMPORT, &[42]).unwrap();
    control(b, &mut new, op::PROBATION, &[77]).unwrap();
    control(b, &mut new, op::ACTIVATE, &[]).unwrap();
    control(a, &mut old, op::RETIRE, &[]).unwrap();
    kv_call(b, &mut new, KvRequest::Put { key: b"b", value: b"2" });
    kv_call(b, &mut new, KvRequest::Delete { key: b"a" });
    kv_call(b, &mut new, KvRequest::Get { key: b"b" });
    assert_eq!(page(b).counters.journaled.load(Ordering::Relaxed), 3);
    assert_eq!(page(b).counters.journal_overflow.load(Ordering::Relaxed), 0);
    // Hot rollback: b stops serving, a replays and takes over.
    control(b, &mut new, op::FREEZE, &[]).unwrap();
    assert_eq!(kv_call(b, &mut new, KvRequest::Get { key: b"b" }).label, shell_label::MOVED);
    assert!(control(a, &mut old, op::REPLAY, &[78]).unwrap_err().contains("another probation"));
    assert_eq!(control(a, &mut old, op::REPLAY, &[77]).unwrap().word(0), 3);
    control(a, &mut old, op::ACTIVATE, &[]).unwrap();
    assert_eq!(KvReply::parse(&kv_call(a, &mut old, KvRequest::Get { key: b"b" })).unwrap().data, b"2");
    let gone = kv_call(a, &mut old, KvRequest::Get { key: b"a" });
    assert_eq!(KvReply::parse(&gone).unwrap().status, KvStatus::NotFound, "the delete was replayed");
}

/// The progress counters the manager's watchdog reads: an event in
/// progress shows, a finished one does not.
#[test]
fn a_slot_counts_the_events_it_begins_and_ends() {
    let image = kv_v1();
    let (pd, mut shell) = slot(image);
    let p = page(pd);
    let before = p.counters.events_begun.load(Ordering::Relaxed);
    control(pd, &mut shell, op::LOAD, &[image.len() as u64]).unwrap();
    assert_eq!(p.busy_in(), None);
    assert!(p.counters.events_begun.load(Ordering::Relaxed) > before);
}
