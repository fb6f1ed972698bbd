//! The manager in-process, on a stand-in PD: regions are leaked heap
//! memory, the console's queues are driven by the test, and each slot is a
//! fake shell that answers every command posted on its control page at
//! once (when the manager notifies it) and reports the version of the
//! module image last placed in it. Deterministic and fast: the manager's
//! own logic, without processes or timing.
#![allow(dead_code)]

use interfaces::control::{op, reply, SlotState};
use interfaces::control_page::ControlPage;
use interfaces::queue::{Consumer, Producer};
use interfaces::Message;
use pd_api::{ChannelId, ChildId, Event, Handler, Pd, PpcError, Region};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use update_manager::{ImagePlacer, Manager, SlotCode};

/// The manager's channel to its console's serial peer.
pub const SERIAL: ChannelId = 0;

/// Zeroed memory, aligned to a page, that lives for the test's process.
pub fn leak_region(size: usize, writable: bool) -> Region {
    let layout = std::alloc::Layout::from_size_align(size, 4096).unwrap();
    // SAFETY: a non-zero size; the memory is never freed.
    let base = unsafe { std::alloc::alloc_zeroed(layout) };
    assert!(!base.is_null());
    Region { base, size, writable }
}

struct FakeSlot {
    state: SlotState,
    version: u32,
}

pub struct FakePd {
    regions: Vec<(String, Region)>,
    channels: Vec<(String, ChannelId)>,
    children: Vec<(String, ChildId)>,
    slots: RefCell<HashMap<ChannelId, FakeSlot>>,
    /// Version of the image last placed in each slot (by PD name).
    placed: RefCell<HashMap<String, u32>>,
    /// Every notification the manager sent, in order.
    pub notified: RefCell<Vec<ChannelId>>,
    /// The other PDs, in a test that plays them: they run while the
    /// manager yields, and when it notifies (as on seL4, where a notified
    /// PD of higher priority runs at once).
    pub others: RefCell<Option<Box<dyn FnMut()>>>,
    clock: Cell<u64>,
}

impl FakePd {
    /// A manager PD with the console's queues, a capability map, the image
    /// store holding `images` (name, image bytes), and the two slots of
    /// each instance in `instances`: `kv:kv0` is instance `kv0` of type
    /// `kv`, whose control regions name it, as system.xml's do (a plain
    /// `kv0` gets control regions that name no type).
    pub fn new(images: &[(&str, Vec<u8>)], instances: &[&str]) -> &'static FakePd {
        let refs: Vec<(&str, &[u8])> = images.iter().map(|(n, b)| (*n, b.as_slice())).collect();
        let mut store = leak_region(interfaces::store::store_size(refs.iter().map(|(_, b)| b.len())).max(64), true);
        // SAFETY: freshly allocated, ours alone.
        interfaces::store::build_store(&refs, unsafe { store.as_mut_slice() }).expect("store");
        store.writable = false;
        let mut regions = vec![
            ("image_store".to_owned(), store),
            ("capmap".to_owned(), leak_region(interfaces::capmap::CAPMAP_SIZE.next_multiple_of(4096), true)),
            ("serial_rx".to_owned(), leak_region(0x1000, true)),
            ("serial_tx".to_owned(), leak_region(0x4000, true)),
        ];
        let mut channels = vec![("serial".to_owned(), SERIAL)];
        let mut children = Vec::new();
        let mut slots = HashMap::new();
        for spec in instances {
            let (kind, inst) = match spec.split_once(':') {
                Some((t, i)) => (format!("{t}:"), i),
                None => (String::new(), *spec),
            };
            for s in ["a", "b"] {
                let name = format!("{inst}_{s}");
                let ch = channels.len() as ChannelId;
                channels.push((name.clone(), ch));
                children.push((name.clone(), children.len() as ChildId));
                regions.push((format!("{name}_code"), leak_region(4096, true)));
                regions.push((format!("{kind}{name}_control"), leak_region(4096, true)));
                slots.insert(ch, FakeSlot { state: SlotState::Empty, version: 0 });
            }
        }
        Box::leak(Box::new(FakePd {
            regions,
            channels,
            children,
            slots: RefCell::new(slots),
            placed: RefCell::new(HashMap::new()),
            notified: RefCell::new(Vec::new()),
            others: RefCell::new(None),
            clock: Cell::new(1_000_000),
        }))
    }

    /// Adds a region (before the manager starts).
    pub fn with_region(&'static self, name: &str, r: Region) -> &'static FakePd {
        // SAFETY: only before the manager holds any reference into the list.
        let me = self as *const FakePd as *mut FakePd;
        unsafe { (*me).regions.push((name.to_owned(), r)) };
        self
    }

    /// The version of the module the slot `pd_name` runs (0: none).
    pub fn slot_version(&self, pd_name: &str) -> u32 {
        let ch = self.channels.iter().find(|(n, _)| n == pd_name).map(|(_, c)| *c).unwrap();
        self.slots.borrow()[&ch].version
    }

    fn run_others(&self) {
        let others = self.others.borrow_mut().take();
        if let Some(mut f) = others {
            f();
            *self.others.borrow_mut() = Some(f);
        }
    }

    fn page(&self, slot: &str) -> &'static ControlPage {
        let (_, r) = self
            .regions
            .iter()
            .find(|(n, _)| interfaces::control::control_region_service(n, slot).is_some())
            .expect("the slot's control region");
        // SAFETY: a leaked, page-aligned region of the test's.
        unsafe { ControlPage::at(r.base, r.size) }.unwrap()
    }

    /// The fake shell of slot channel `ch` runs the command posted on its
    /// page, as the real one does between two events.
    fn serve_command(&self, ch: ChannelId) {
        let name = self.slot_name(ch);
        let page = self.page(&name);
        let seq = page.command.seq();
        if seq == 0 || page.reply.seq() == seq {
            return;
        }
        let Some(msg) = page.command.read(seq) else { return };
        let mut slots = self.slots.borrow_mut();
        let slot = slots.get_mut(&ch).unwrap();
        let now = self.clock.get();
        let (state, words) = match msg.label {
            op::LOAD => {
                slot.version = self.placed.borrow().get(&name).copied().unwrap_or(0);
                (SlotState::Loaded, vec![])
            }
            op::INIT | op::IMPORT | op::REPLAY => (SlotState::Initialised, vec![]),
            op::ACTIVATE => (SlotState::Live, vec![now]),
            op::PREPARE | op::FREEZE => (SlotState::Moved, vec![now]),
            op::THAW => (SlotState::Live, vec![]),
            op::RETIRE => (SlotState::Retired, vec![]),
            op::EXPORT | op::PROBATION => (slot.state, vec![]),
            _ => {
                let mut m = Message::default();
                m.set_text(reply::ERROR, "unknown command");
                page.reply.post(seq, &m);
                return;
            }
        };
        slot.state = state;
        page.counters.state.store(state as u64, std::sync::atomic::Ordering::Relaxed);
        page.counters.module_version.store(slot.version as u64, std::sync::atomic::Ordering::Relaxed);
        page.reply.post(seq, &Message::with_words(reply::OK, &words));
    }

    fn slot_name(&self, ch: ChannelId) -> String {
        self.channels.iter().find(|(_, c)| *c == ch).map(|(n, _)| n.clone()).unwrap()
    }
}

impl Pd for FakePd {
    fn name(&self) -> &str {
        "update_manager"
    }
    fn notify(&self, ch: ChannelId) {
        self.notified.borrow_mut().push(ch);
        if self.slots.borrow().contains_key(&ch) {
            self.serve_command(ch);
        }
        self.run_others();
    }
    fn ppcall(&self, _ch: ChannelId, _msg: &mut Message) -> Result<(), PpcError> {
        // The manager never calls a slot.
        Err(PpcError::NoSuchChannel)
    }
    fn irq_ack(&self, _ch: ChannelId) {}
    fn channel(&self, peer: &str) -> Option<ChannelId> {
        self.channels.iter().find(|(n, _)| n == peer).map(|(_, c)| *c)
    }
    fn peer_name(&self, ch: ChannelId) -> Option<&str> {
        self.channels.iter().find(|(_, c)| *c == ch).map(|(n, _)| n.as_str())
    }
    fn region(&self, name: &str) -> Option<Region> {
        self.regions.iter().find(|(n, _)| n == name).map(|(_, r)| *r)
    }
    fn for_each_region(&self, f: &mut dyn FnMut(&str)) {
        self.regions.iter().for_each(|(n, _)| f(n));
    }
    fn log(&self, args: std::fmt::Arguments) {
        eprintln!("[update_manager] {args}");
    }
    fn child(&self, name: &str) -> Option<ChildId> {
        self.children.iter().find(|(n, _)| n == name).map(|(_, c)| *c)
    }
    fn for_each_child(&self, f: &mut dyn FnMut(ChildId, &str)) {
        for (n, c) in &self.children {
            f(*c, n);
        }
    }
    fn wait_event(&self, deadline_ns: u64) -> Option<Event> {
        // The fake slots answer at once; nothing else comes unasked. Time
        // passes to the deadline.
        self.run_others();
        self.clock.set(self.clock.get().max(deadline_ns));
        None
    }
    fn set_tick(&self, _at_ns: u64) {}
    fn restart_child(&self, child: ChildId) -> bool {
        let name = &self.children.iter().find(|(_, c)| *c == child).unwrap().0;
        let ch = self.channel(name).unwrap();
        let mut slots = self.slots.borrow_mut();
        let s = slots.get_mut(&ch).unwrap();
        (s.state, s.version) = (SlotState::Empty, 0);
        true
    }
    fn now_ns(&self) -> u64 {
        // A clock that moves 1 us at every reading.
        self.clock.set(self.clock.get() + 1000);
        self.clock.get()
    }
    fn shutdown(&self) {}
    fn yield_now(&self) {
        self.run_others();
    }
}

/// Places nothing; remembers which version went to which slot.
pub struct FakePlacer(pub &'static FakePd);

impl ImagePlacer for FakePlacer {
    fn place(&mut self, image: &[u8], slot: &SlotCode) -> Result<Vec<u64>, String> {
        let d = update_manager::image::descriptor(image)?;
        self.0.placed.borrow_mut().insert(slot.pd_name.to_owned(), d.module_version);
        Ok(vec![image.len() as u64])
    }
}

/// The manager and the test's ends of its console queues.
pub struct Console {
    pub pd: &'static FakePd,
    pub m: Manager<FakePd, FakePlacer>,
    pub input: Producer,
    pub output: Consumer,
    /// What the manager printed as it booted.
    pub boot: String,
}

impl Console {
    pub fn start(pd: &'static FakePd) -> Console {
        Console::start_with_floors(pd, &[])
    }

    /// A manager started with these version floors.
    pub fn start_with_floors(pd: &'static FakePd, floors: &[(&str, u32)]) -> Console {
        let m = Manager::with_floors(pd, FakePlacer(pd), floors).expect("manager starts");
        let (rx, tx) = (pd.region("serial_rx").unwrap(), pd.region("serial_tx").unwrap());
        // SAFETY: the test is the queues' other end, on the same thread.
        let (input, output) =
            unsafe { (Producer::new(rx.base, rx.size).unwrap(), Consumer::new(tx.base, tx.size).unwrap()) };
        let mut c = Console { pd, m, input, output, boot: String::new() };
        c.boot = c.take_output();
        c
    }

    /// Everything the manager has sent so far.
    pub fn take_output(&mut self) -> String {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = self.output.pop(&mut buf) {
            out.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Types `line` and returns the answer (without the echo and the
    /// prompt after it).
    pub fn command(&mut self, line: &str) -> String {
        let bytes = format!("{line}\n");
        assert_eq!(self.input.push(bytes.as_bytes()), Ok(bytes.len()), "the line fits the queue");
        self.m.notified(self.pd, SERIAL);
        let out = self.take_output();
        // What the manager said on its own before the echo (a probation
        // that ended, say) is skipped.
        let at = out.find(&bytes).unwrap_or_else(|| panic!("no echo of '{line}': {out}"));
        let out = &out[at + bytes.len()..];
        out.strip_suffix(update_manager::console::PROMPT).unwrap_or(out).to_owned()
    }
}
