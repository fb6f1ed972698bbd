//! The manager: its state, its console line and its event loop. It owns
//! everything the parts below it are given: the protocol's records and the
//! slots behind them (`slots`), the waits and the watchdog (`supervise`),
//! what is done about troubles (`troubles`), the operator's session
//! (`session`, `status_rows`, `version_floors`) and uploads (`uploading`).
mod session;
mod slots;
mod status_rows;
mod supervise;
mod troubles;
mod uploading;
mod version_floors;

use crate::console::{Deferred, LineEditor, PROMPT};
use crate::faults::{Restarts, Trouble};
use crate::history::History;
use crate::image_store::ImageStore;
use crate::placer::ImagePlacer;
use crate::protocol::{Instance, Policy, Target};
use crate::uploads::{Input, Uploads};
use alloc::{borrow::ToOwned, format, string::String, vec::Vec};
use interfaces::capmap::CapMap;
use interfaces::control;
use interfaces::control_page::ControlPage;
use interfaces::queue::{Consumer, Producer};
use pd_api::{ChannelId, ChildId, Fault, FaultAction, Handler, Pd, Region};

/// One slot of a service instance, as the manager reaches it.
pub(crate) struct SlotRef {
    pub pd_name: String,
    pub child: ChildId,
    pub channel: ChannelId,
    pub code: Region,
    /// Where the manager posts commands and reads the slot's progress.
    pub page: &'static ControlPage,
    /// The sequence number of the last command posted.
    pub seq: u64,
    /// Loaded since its last (re)start: must be restarted before a build.
    pub dirty: bool,
    /// The watchdog's view: the event the slot was inside when last looked
    /// at, and since when.
    pub watch: Option<Watch>,
}

/// What the watchdog saw of a slot inside an event.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Watch {
    /// The event it is inside.
    pub event: u64,
    /// Its progress counter when last seen moving.
    pub progress: u64,
    /// Since when neither changed.
    pub since: u64,
    /// When the event was first seen.
    pub began: u64,
}

/// Console output kept while the line does not drain, at most.
const MAX_PENDING_OUTPUT: usize = 1 << 20;

/// Where the console's queues lead.
enum SerialPeer {
    /// A fixed UART driver PD.
    Fixed(ChannelId),
    /// The live slot of an updatable serial service instance.
    Instance(usize),
}

pub(crate) struct Console {
    rx: Consumer,
    tx: Producer,
    serial: SerialPeer,
    pub(crate) editor: LineEditor,
}

pub struct Manager<P: Pd + 'static, L: ImagePlacer> {
    pub(crate) pd: &'static P,
    pub(crate) placer: L,
    pub(crate) images: ImageStore,
    pub(crate) capmap: &'static CapMap,
    /// The update protocol's record of each service instance.
    pub(crate) instances: Vec<Instance>,
    /// Each instance's slot pair (A, B), as the manager reaches it.
    pub(crate) slots: Vec<[SlotRef; 2]>,
    /// Each instance's faults since its version became final.
    pub(crate) restarts: Vec<Restarts>,
    /// Every child, with its fault count.
    pub(crate) children: Vec<(ChildId, String, u32)>,
    pub(crate) console: Console,
    pub(crate) history: History,
    /// Console output not yet sent (text, and upload answers as frames).
    pending: Vec<u8>,
    /// Bundles uploaded over the console line, if the system gives the
    /// manager an `upload` region.
    pub(crate) uploads: Option<Uploads>,
    pub(crate) started_ns: u64,
    /// Each service's version floor (0: none), see `floors`.
    pub(crate) floors: Vec<(String, u32)>,
    /// Print each phase as it completes.
    pub(crate) verbose: bool,
    /// Every child's incarnation, as the manager counts its restarts: a
    /// fault is about the incarnation it was taken under, never a later one.
    pub(crate) incarnations: Vec<u32>,
    /// Inside an operation (an update, a rollback, a recovery): events
    /// that arrive meanwhile are noted here, not acted on.
    pub(crate) busy: bool,
    /// Faults and hangs noted while busy, handled once the operation ends.
    pub(crate) troubles: Vec<Trouble>,
    /// When the watchdog last looked (it also looks while an operation
    /// waits, so a new slot that hangs in a step is caught as fast as a
    /// live one).
    pub(crate) watched_ns: u64,
    /// Each (child, incarnation) whose fault or hang was noted: its
    /// trouble counts once.
    pub(crate) noted: Vec<(ChildId, u32)>,
    /// Console input taken off the queue and not yet decoded: shared by
    /// the event loop and the waits inside an update, so that bytes are
    /// decoded in the order they came, whoever takes them.
    pub(crate) input: alloc::collections::VecDeque<u8>,
    /// What was typed while busy that waits for the operation to end: each
    /// line with its echo (held back, so that every command's echo stands
    /// right before its answer).
    pub(crate) deferred: alloc::collections::VecDeque<Deferred>,
    /// The echo of the line being typed while busy.
    pub(crate) held_echo: String,
    /// Probation settings for the next updates.
    pub(crate) probation_policy: Policy,
    /// Updates pre-copy the state of a module that can (`precopy`).
    pub(crate) precopy: bool,
    /// The input ended at this time: halt once the output is out.
    pub(crate) halt_requested: Option<u64>,
}

fn region<P: Pd>(pd: &P, name: &str, writable: bool) -> Result<Region, String> {
    match pd.region(name) {
        Some(r) if r.writable || !writable => Ok(r),
        Some(_) => Err(format!("region '{name}' is not writable here")),
        None => Err(format!("no region '{name}'")),
    }
}

impl<P: Pd + 'static, L: ImagePlacer> Manager<P, L> {
    /// Attaches to the manager's regions and channels, then boots every
    /// service instance with the first version of its service, through the
    /// same switch an update uses. The version floors are the trusted
    /// build's (`UPD_VERSION_FLOORS`).
    pub fn new(pd: &'static P, placer: L) -> Result<Self, String> {
        Self::with_floors(pd, placer, crate::VERSION_FLOORS)
    }

    /// [`Manager::new`] with these version floors (`(service, version)`).
    pub fn with_floors(pd: &'static P, placer: L, floors: &[(&str, u32)]) -> Result<Self, String> {
        let store_region = region(pd, "image_store", false)?;
        // SAFETY: the image store is read-only and never changes.
        let images = ImageStore::parse(unsafe { core::slice::from_raw_parts(store_region.base, store_region.size) })?;
        let map = region(pd, control::region::CAPMAP, true)?;
        if map.size < interfaces::capmap::CAPMAP_SIZE {
            return Err("the capmap region is too small".into());
        }
        // SAFETY: mapped for the PD's life, large enough, page aligned.
        let capmap = unsafe { &*(map.base as *const CapMap) };
        let (rx, tx) = (region(pd, "serial_rx", true)?, region(pd, "serial_tx", true)?);
        // SAFETY: the manager is the only consumer of rx and producer of tx.
        let (rx, tx) = unsafe {
            (
                Consumer::new(rx.base, rx.size).ok_or("bad serial_rx region")?,
                Producer::new(tx.base, tx.size).ok_or("bad serial_tx region")?,
            )
        };
        let mut children = Vec::new();
        pd.for_each_child(&mut |id, name| children.push((id, name.to_owned(), 0)));
        let mut region_names = Vec::new();
        pd.for_each_region(&mut |n| region_names.push(n.to_owned()));
        // A slot's control region, `{type}:{slot}_control`, naming the
        // instance's service type (`interfaces::control`); a plain
        // `{slot}_control` names none and is refused below.
        let control_region = |slot: &str| -> (String, Option<String>) {
            region_names
                .iter()
                .find_map(|r| match interfaces::control::control_region_service(r, slot) {
                    Some(Some(t)) => Some((r.clone(), Some(t.to_owned()))),
                    _ => None,
                })
                .unwrap_or_else(|| (format!("{slot}_control"), None))
        };
        let (mut instances, mut slots) = (Vec::new(), Vec::new());
        for (_, name, _) in &children {
            let Some(inst) = name.strip_suffix("_a") else { continue };
            if pd.child(&format!("{inst}_b")).is_none() {
                continue;
            }
            let slot = |suffix: &str| -> Result<SlotRef, String> {
                let pd_name = format!("{inst}_{suffix}");
                let control = region(pd, &control_region(&pd_name).0, true)?;
                // SAFETY: mapped read/write for the manager's life, shared
                // only with this slot, accessed only through atomics.
                let page = unsafe { ControlPage::at(control.base, control.size) }
                    .ok_or_else(|| format!("the control region of '{pd_name}' is too small or misaligned"))?;
                page.reset();
                Ok(SlotRef {
                    child: pd.child(&pd_name).ok_or_else(|| format!("'{pd_name}' is not a child of the manager"))?,
                    channel: pd.channel(&pd_name).ok_or_else(|| format!("no channel to '{pd_name}'"))?,
                    code: region(pd, &format!("{pd_name}_code"), true)?,
                    page,
                    seq: 0,
                    pd_name,
                    dirty: false,
                    watch: None,
                })
            };
            slots.push([slot("a")?, slot("b")?]);
            let (a, b) = (control_region(&format!("{inst}_a")).1, control_region(&format!("{inst}_b")).1);
            if a != b {
                return Err(format!("instance '{inst}': its slots' control regions name different service types"));
            }
            let service = a.ok_or_else(|| {
                format!(
                    "instance '{inst}': its control regions name no service type (name them '<type>:{inst}_a_control')"
                )
            })?;
            instances.push(Instance::new(inst.to_owned(), service, instances.len()));
        }
        let serial = match pd.channel("serial") {
            Some(ch) => SerialPeer::Fixed(ch),
            None => SerialPeer::Instance(
                instances
                    .iter()
                    .position(|i| i.service == "serial")
                    .ok_or("no channel to a 'serial' driver and no serial service instance")?,
            ),
        };
        let console = Console { rx, tx, serial, editor: LineEditor::default() };
        let names: Vec<(&str, &str)> = instances.iter().map(|i| (i.name.as_str(), i.service.as_str())).collect();
        // SAFETY: boot: no client reads the map before the magic is set.
        unsafe { capmap.format(&names) };
        let started_ns = pd.now_ns();
        let children_len = children.len();
        let floors = crate::floors::initial(instances.iter().map(|i| i.service.as_str()), floors);
        let mut m = Manager {
            pd,
            placer,
            images,
            capmap,
            restarts: instances.iter().map(|_| Restarts::default()).collect(),
            instances,
            slots,
            children,
            console,
            history: History::default(),
            pending: Vec::new(),
            uploads: pd.region("upload").and_then(Uploads::new),
            started_ns,
            floors,
            verbose: false,
            incarnations: alloc::vec![0; children_len],
            busy: false,
            troubles: Vec::new(),
            watched_ns: 0,
            noted: Vec::new(),
            input: Default::default(),
            deferred: Default::default(),
            held_echo: String::new(),
            probation_policy: Default::default(),
            precopy: true,
            halt_requested: None,
        };
        m.say(&format!(
            "update manager {} (module ABI v{})\n",
            env!("CARGO_PKG_VERSION"),
            interfaces::abi::ABI_VERSION
        ));
        for i in 0..m.instances.len() {
            let msg = m.boot(i);
            m.say(&msg);
        }
        m.verbose = true;
        m.say(PROMPT);
        m.flush();
        m.schedule_tick();
        Ok(m)
    }

    /// Queues console output; [`Manager::flush`] sends it. Output is sent
    /// in a few large writes rather than a line at a time: each write wakes
    /// the UART driver, and during an update that time is the clients'.
    pub(crate) fn say(&mut self, text: &str) {
        self.send_bytes(text.as_bytes());
    }

    /// Queues raw bytes for the line (upload answers are binary frames).
    pub(crate) fn send_bytes(&mut self, bytes: &[u8]) {
        if self.pending.len() + bytes.len() > MAX_PENDING_OUTPUT {
            // The line is not draining (a serial service that hangs, say):
            // keep the newest output, say what was dropped.
            let marker = b"\n[console output dropped: the line is not draining]\n";
            let keep = MAX_PENDING_OUTPUT / 2;
            let cut = self.pending.len().saturating_sub(keep);
            self.pending.drain(..cut);
            self.pending.splice(0..0, marker.iter().copied());
        }
        self.pending.extend_from_slice(bytes);
        if self.pending.len() >= 1024 {
            self.flush();
        }
    }

    /// Sends as much queued console output as the queue takes now. What
    /// does not fit waits for the next event or tick (a millisecond while
    /// output waits): the manager never waits on the serial service.
    pub(crate) fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        match self.console.tx.push(&self.pending) {
            Ok(n) => {
                self.pending.drain(..n);
            }
            Err(_) => {
                self.pd.log(format_args!("serial driver corrupted the tx queue; output dropped"));
                self.pending.clear();
                return;
            }
        }
        self.notify_serial();
    }

    /// Console output still waiting for room in the queue.
    pub(crate) fn output_waiting(&self) -> bool {
        !self.pending.is_empty()
    }

    fn notify_serial(&self) {
        match self.console.serial {
            SerialPeer::Fixed(ch) => self.pd.notify(ch),
            SerialPeer::Instance(i) => {
                if let Some(live) = self.instances[i].live {
                    self.pd.notify(self.slots[i][live.index()].channel);
                }
            }
        }
    }

    fn is_serial_channel(&self, ch: ChannelId) -> bool {
        match self.console.serial {
            SerialPeer::Fixed(c) => c == ch,
            SerialPeer::Instance(i) => self.slots[i].iter().any(|s| s.channel == ch),
        }
    }

    /// The lowest version of `service` in the image store, at or above its
    /// version floor.
    fn first_image(&self, service: &str) -> Option<&'static str> {
        self.images.first_of(service, self.floor(service).unwrap_or(0))
    }

    fn boot(&mut self, i: usize) -> String {
        let name = self.instances[i].name.clone();
        let Some(image) = self.first_image(&self.instances[i].service.clone()) else {
            let service = &self.instances[i].service;
            let floor = match self.floor(service) {
                Some(f @ 1..) => format!(" at or above its version floor v{f}"),
                _ => String::new(),
            };
            return format!("boot: {name}: failed: no image of service '{service}'{floor} in the store\n");
        };
        let command = format!("boot {name} {image}");
        match self.switch(&[i], Target::Image(image), 2_000_000_000) {
            Ok(done) => {
                self.record(command, done.times_us.map(Some), Ok(format!("{name} runs {image}")));
                format!("boot: {name} slot a <- {image} (generation {})\n", self.instances[i].generation)
            }
            Err(e) => {
                let text = format!("boot: {name}: {} failed: {}\n", crate::history::PHASES[e.0 as usize], e.1);
                self.record(command, [None; 5], Err(e));
                text
            }
        }
    }
}

impl<P: Pd + 'static, L: ImagePlacer> Manager<P, L> {
    /// Console input from the serial peer: bytes through the frame decoder
    /// and the line editor. Safe to run while busy (see `session`).
    pub(crate) fn console_input(&mut self) {
        let mut buf = [0u8; 256];
        loop {
            match self.console.rx.pop(&mut buf) {
                Ok(0) if self.input.is_empty() => return,
                Ok(n) => {
                    if n > 0 {
                        // The queue has room again: say so. The serial side
                        // holds back what did not fit, and nothing else may
                        // ever wake it (an over-long line is not echoed).
                        self.notify_serial();
                    }
                    self.input.extend(&buf[..n])
                }
                Err(_) => {
                    self.pd.log(format_args!("serial driver wrote an impossible rx index; input dropped"));
                    return;
                }
            }
            // One byte at a time from the shared queue: a command run from
            // here may wait for a slot, and the waits take input too.
            while let Some(b) = self.input.pop_front() {
                match self.demux(b) {
                    Input::Console(c) => self.console_byte(c),
                    Input::Console2(a, c) => {
                        self.console_byte(a);
                        self.console_byte(c);
                    }
                    Input::Frame { kind, seq, payload } => self.on_upload_frame(kind, seq, &payload),
                    Input::Nothing => {}
                }
            }
            self.flush();
        }
    }

    pub(crate) fn is_console_channel(&self, ch: ChannelId) -> bool {
        self.is_serial_channel(ch)
    }
}

impl<P: Pd + 'static, L: ImagePlacer> Handler<P> for Manager<P, L> {
    fn notified(&mut self, _pd: &P, ch: ChannelId) {
        if self.is_serial_channel(ch) {
            self.console_input();
        }
        self.after_event();
    }

    fn fault(&mut self, _pd: &P, child: ChildId, fault: Fault) -> FaultAction {
        let action = self.on_fault_event(child, fault);
        self.after_event();
        action
    }

    fn tick(&mut self, _pd: &P) {
        self.on_tick();
        self.after_event();
    }
}
