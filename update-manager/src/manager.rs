//! The manager's state, commands and event handling.
use crate::console::{LineEditor, PROMPT};
use crate::history::History;
use crate::image;
use crate::placer::ImagePlacer;
use crate::update::Target;
use alloc::{borrow::ToOwned, format, string::String, vec::Vec};
use interfaces::abi::ModuleDescriptor;
use interfaces::capmap::{CapMap, Slot};
use interfaces::control::{self, reply};
use interfaces::queue::{Consumer, Producer};
use interfaces::store::Store;
use interfaces::Message;
use pd_api::{ChannelId, ChildId, Fault, FaultAction, Handler, Pd, PpcError, Region};

/// A module held by a slot (live or retired), and where it came from.
#[derive(Clone, Copy)]
pub(crate) struct Held {
    pub image: &'static str,
    pub descriptor: ModuleDescriptor,
}

/// One slot of a service instance, as the manager reaches it.
pub(crate) struct SlotRef {
    pub pd_name: String,
    pub child: ChildId,
    pub channel: ChannelId,
    pub code: Region,
    /// The module loaded in this slot, if any.
    pub held: Option<Held>,
    /// Loaded since its last (re)start: must be restarted before a build.
    pub dirty: bool,
}

pub(crate) struct Instance {
    pub name: String,
    pub service: String,
    pub capmap_index: usize,
    pub slots: [SlotRef; 2],
    pub live: Option<Slot>,
    pub generation: u64,
}

pub(crate) struct Image {
    pub name: &'static str,
    pub bytes: &'static [u8],
    pub descriptor: Result<ModuleDescriptor, String>,
}

/// Where the console's queues lead.
enum SerialPeer {
    /// A fixed serial driver PD.
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
    pub(crate) images: Vec<Image>,
    pub(crate) capmap: &'static CapMap,
    pub(crate) instances: Vec<Instance>,
    /// Every child, with its fault count.
    pub(crate) children: Vec<(ChildId, String, u32)>,
    pub(crate) console: Console,
    pub(crate) history: History,
    /// Console output not yet sent (text, and upload answers as frames).
    pending: Vec<u8>,
    /// Bundles uploaded over the console line, if the system gives the
    /// manager an `upload` region.
    pub(crate) uploads: Option<crate::uploads::Uploads>,
    pub(crate) started_ns: u64,
    /// Each service's version floor (0: none), see `floors.rs`.
    pub(crate) floors: Vec<(String, u32)>,
    /// Print each phase as it completes.
    pub(crate) verbose: bool,
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
        let store = Store::parse(unsafe { core::slice::from_raw_parts(store_region.base, store_region.size) })
            .map_err(|e| format!("{e}"))?;
        let images =
            store.images().map(|(name, bytes)| Image { name, bytes, descriptor: image::descriptor(bytes) }).collect();
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
        let mut instances = Vec::new();
        for (_, name, _) in &children {
            let Some(inst) = name.strip_suffix("_a") else { continue };
            if pd.child(&format!("{inst}_b")).is_none() {
                continue;
            }
            let slot = |suffix: &str| -> Result<SlotRef, String> {
                let pd_name = format!("{inst}_{suffix}");
                Ok(SlotRef {
                    child: pd.child(&pd_name).ok_or_else(|| format!("'{pd_name}' is not a child of the manager"))?,
                    channel: pd.channel(&pd_name).ok_or_else(|| format!("no channel to '{pd_name}'"))?,
                    code: region(pd, &format!("{pd_name}_code"), true)?,
                    pd_name,
                    held: None,
                    dirty: false,
                })
            };
            instances.push(Instance {
                name: inst.to_owned(),
                service: inst.trim_end_matches(|c: char| c.is_ascii_digit()).to_owned(),
                capmap_index: instances.len(),
                slots: [slot("a")?, slot("b")?],
                live: None,
                generation: 0,
            });
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
        let names: Vec<&str> = instances.iter().map(|i| i.name.as_str()).collect();
        // SAFETY: boot: no client reads the map before the magic is set.
        unsafe { capmap.format(&names) };
        let started_ns = pd.now_ns();
        let floors = crate::floors::initial(instances.iter().map(|i| i.service.as_str()), floors);
        let mut m = Manager {
            pd,
            placer,
            images,
            capmap,
            instances,
            children,
            console,
            history: History::default(),
            pending: Vec::new(),
            uploads: pd.region("upload").and_then(crate::uploads::Uploads::new),
            started_ns,
            floors,
            verbose: false,
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
        Ok(m)
    }

    /// Writes console output, waiting (bounded) for the driver to drain.
    /// Queues console output; [`Manager::flush`] sends it. Output is sent
    /// in a few large writes rather than a line at a time: each write wakes
    /// the serial driver, and during an update that time is the clients'.
    pub(crate) fn say(&mut self, text: &str) {
        self.send_bytes(text.as_bytes());
    }

    /// Queues raw bytes for the line (upload answers are binary frames).
    pub(crate) fn send_bytes(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        if self.pending.len() >= 1024 {
            self.flush();
        }
    }

    /// Sends the queued console output, waiting (bounded) for the driver
    /// to drain the queue when it is full.
    pub(crate) fn flush(&mut self) {
        let text = core::mem::take(&mut self.pending);
        let mut bytes = &text[..];
        let deadline = self.pd.now_ns() + 2_000_000_000;
        while !bytes.is_empty() {
            match self.console.tx.push(bytes) {
                Ok(n) => bytes = &bytes[n..],
                Err(_) => {
                    self.pd.log(format_args!("serial driver corrupted the tx queue; output dropped"));
                    return;
                }
            }
            self.notify_serial();
            if !bytes.is_empty() {
                if self.pd.now_ns() > deadline {
                    self.pd.log(format_args!("console output stalled; {} bytes dropped", bytes.len()));
                    return;
                }
                self.pd.yield_now();
            }
        }
    }

    fn notify_serial(&self) {
        match self.console.serial {
            SerialPeer::Fixed(ch) => self.pd.notify(ch),
            SerialPeer::Instance(i) => {
                if let Some(live) = self.instances[i].live {
                    self.pd.notify(self.instances[i].slots[live.index()].channel);
                }
            }
        }
    }

    fn is_serial_channel(&self, ch: ChannelId) -> bool {
        match self.console.serial {
            SerialPeer::Fixed(c) => c == ch,
            SerialPeer::Instance(i) => self.instances[i].slots.iter().any(|s| s.channel == ch),
        }
    }

    /// The lowest version of `service` in the image store, at or above its
    /// version floor.
    fn first_image(&self, service: &str) -> Option<&'static str> {
        self.images
            .iter()
            .filter_map(|i| {
                i.descriptor.as_ref().ok().filter(|d| d.service() == service).map(|d| (d.module_version, i.name))
            })
            .filter(|&(v, _)| v >= self.floor(service).unwrap_or(0))
            .min()
            .map(|(_, n)| n)
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
            Ok((times, _)) => {
                self.record(command, times.map(Some), Ok(format!("{name} runs {image}")));
                format!("boot: {name} slot a <- {image} (generation {})\n", self.instances[i].generation)
            }
            Err(e) => {
                let text = format!("boot: {name}: {} failed: {}\n", crate::history::PHASES[e.0 as usize], e.1);
                self.record(command, [None; 5], Err(e));
                text
            }
        }
    }

    pub(crate) fn slot(&self, inst: usize, s: Slot) -> &SlotRef {
        &self.instances[inst].slots[s.index()]
    }

    pub(crate) fn control(&self, slot: &SlotRef, label: u64, words: &[u64]) -> Result<Message, String> {
        let mut msg = Message::with_words(label, words);
        match self.pd.ppcall(slot.channel, &mut msg) {
            Ok(()) if msg.label == reply::OK => Ok(msg),
            Ok(()) => Err(msg.text().unwrap_or("slot gave an unreadable error").to_owned()),
            Err(PpcError::CalleeFaulted) => Err(format!("slot {} faulted", slot.pd_name)),
            Err(PpcError::NotDelivered) => Err(format!("slot {} is down", slot.pd_name)),
            Err(PpcError::NoSuchChannel) => Err(format!("no channel to slot {}", slot.pd_name)),
        }
    }

    /// Makes a slot empty: restarts it if anything was loaded into it
    /// since it last started (a module is never unloaded in place).
    pub(crate) fn reset_slot(&mut self, inst: usize, s: Slot) -> Result<(), String> {
        let slot = &mut self.instances[inst].slots[s.index()];
        slot.held = None;
        if slot.dirty {
            if !self.pd.restart_child(slot.child) {
                return Err(format!("slot {} did not restart", slot.pd_name));
            }
            slot.dirty = false;
        }
        Ok(())
    }
}

impl<P: Pd + 'static, L: ImagePlacer> Handler<P> for Manager<P, L> {
    fn notified(&mut self, _pd: &P, ch: ChannelId) {
        if !self.is_serial_channel(ch) {
            return;
        }
        let mut buf = [0u8; 256];
        loop {
            let n = match self.console.rx.pop(&mut buf) {
                Ok(0) => return,
                Ok(n) => n,
                Err(_) => {
                    self.pd.log(format_args!("serial driver wrote an impossible rx index; input dropped"));
                    return;
                }
            };
            // The queue has room again: say so. The serial side holds back
            // what did not fit, and nothing else may ever wake it (an
            // over-long line is not echoed, so no output would).
            self.notify_serial();
            for &b in &buf[..n] {
                match self.demux(b) {
                    crate::uploads::Input::Console(c) => self.console_byte(c),
                    crate::uploads::Input::Console2(a, c) => {
                        self.console_byte(a);
                        self.console_byte(c);
                    }
                    crate::uploads::Input::Frame { kind, seq, payload } => self.on_upload_frame(kind, seq, &payload),
                    crate::uploads::Input::Nothing => {}
                }
            }
            self.flush();
        }
    }

    fn fault(&mut self, pd: &P, child: ChildId, fault: Fault) -> FaultAction {
        self.on_fault(pd, child, fault)
    }
}
