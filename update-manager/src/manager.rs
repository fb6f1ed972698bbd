//! The manager's state and event handling.
use crate::command::{self, Command};
use crate::console::{Event, LineEditor, PROMPT};
use crate::image;
use crate::placer::{ImagePlacer, SlotCode};
use crate::status::{self, Row};
use alloc::{borrow::ToOwned, format, string::String, vec::Vec};
use interfaces::abi::ModuleDescriptor;
use interfaces::capmap::{Binding, CapMap, Slot};
use interfaces::control::{self, op, reply, ShellStatus, SlotState};
use interfaces::queue::{Consumer, Producer};
use interfaces::stats::ClientStats;
use interfaces::store::Store;
use interfaces::Message;
use pd_api::{ChannelId, ChildId, Fault, FaultAction, Handler, Pd, PpcError, Region};

/// One slot of a service instance, as the manager reaches it.
struct SlotRef {
    pd_name: String,
    channel: ChannelId,
    code: Region,
}

struct Instance {
    name: String,
    service: String,
    capmap_index: usize,
    slots: [SlotRef; 2],
    live: Option<Slot>,
    generation: u64,
    /// The image running in the live slot.
    image: Option<String>,
}

struct Image {
    name: &'static str,
    bytes: &'static [u8],
    descriptor: Result<ModuleDescriptor, String>,
}

struct Console {
    rx: Consumer,
    tx: Producer,
    serial: ChannelId,
    editor: LineEditor,
}

pub struct Manager<P: Pd + 'static, L: ImagePlacer> {
    pd: &'static P,
    placer: L,
    images: Vec<Image>,
    capmap: &'static CapMap,
    instances: Vec<Instance>,
    /// Every child, with its fault count.
    children: Vec<(ChildId, String, u32)>,
    console: Console,
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
    /// service instance with the first version of its service.
    pub fn new(pd: &'static P, placer: L) -> Result<Self, String> {
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
        let console = unsafe {
            Console {
                rx: Consumer::new(rx.base, rx.size).ok_or("bad serial_rx region")?,
                tx: Producer::new(tx.base, tx.size).ok_or("bad serial_tx region")?,
                serial: pd.channel("serial").ok_or("no channel to 'serial'")?,
                editor: LineEditor::default(),
            }
        };
        let mut children = Vec::new();
        pd.for_each_child(&mut |id, name| children.push((id, name.to_owned(), 0)));
        let mut instances = Vec::new();
        for (_, name, _) in &children {
            let Some(inst) = name.strip_suffix("_a") else { continue };
            let slot = |suffix: &str| -> Result<SlotRef, String> {
                let pd_name = format!("{inst}_{suffix}");
                pd.child(&pd_name).ok_or_else(|| format!("'{pd_name}' is not a child of the manager"))?;
                Ok(SlotRef {
                    channel: pd.channel(&pd_name).ok_or_else(|| format!("no channel to '{pd_name}'"))?,
                    code: region(pd, &format!("{pd_name}_code"), true)?,
                    pd_name,
                })
            };
            if pd.child(&format!("{inst}_b")).is_none() {
                continue;
            }
            instances.push(Instance {
                name: inst.to_owned(),
                service: inst.trim_end_matches(|c: char| c.is_ascii_digit()).to_owned(),
                capmap_index: instances.len(),
                slots: [slot("a")?, slot("b")?],
                live: None,
                generation: 0,
                image: None,
            });
        }
        let names: Vec<&str> = instances.iter().map(|i| i.name.as_str()).collect();
        // SAFETY: boot: no client reads the map before the magic is set.
        unsafe { capmap.format(&names) };
        let mut m = Manager { pd, placer, images, capmap, instances, children, console };
        m.say(&format!(
            "update manager {} (module ABI v{})\n",
            env!("CARGO_PKG_VERSION"),
            interfaces::abi::ABI_VERSION
        ));
        for i in 0..m.instances.len() {
            let msg = match m.boot(i) {
                Ok(text) => text,
                Err(e) => format!("boot: {}: failed: {e}\n", m.instances[i].name),
            };
            m.say(&msg);
        }
        m.say(PROMPT);
        Ok(m)
    }

    /// Writes console output, waiting (bounded) for the driver to drain.
    fn say(&mut self, text: &str) {
        let mut bytes = text.as_bytes();
        let deadline = self.pd.now_ns() + 2_000_000_000;
        while !bytes.is_empty() {
            match self.console.tx.push(bytes) {
                Ok(n) => bytes = &bytes[n..],
                Err(_) => {
                    self.pd.log(format_args!("serial driver corrupted the tx queue; output dropped"));
                    return;
                }
            }
            self.pd.notify(self.console.serial);
            if !bytes.is_empty() {
                if self.pd.now_ns() > deadline {
                    self.pd.log(format_args!("console output stalled; {} bytes dropped", bytes.len()));
                    return;
                }
                self.pd.yield_now();
            }
        }
    }

    /// The lowest version of `service` in the image store.
    fn first_image(&self, service: &str) -> Option<&'static str> {
        self.images
            .iter()
            .filter_map(|i| {
                i.descriptor.as_ref().ok().filter(|d| d.service() == service).map(|d| (d.module_version, i.name))
            })
            .min()
            .map(|(_, n)| n)
    }

    fn boot(&mut self, i: usize) -> Result<String, String> {
        let service = self.instances[i].service.clone();
        let image =
            self.first_image(&service).ok_or_else(|| format!("no image of service '{service}' in the store"))?;
        self.install(i, Slot::A, image)?;
        let inst = &self.instances[i];
        Ok(format!("boot: {} slot a <- {image} (generation {})\n", inst.name, inst.generation))
    }

    fn control(&self, slot: &SlotRef, label: u64, words: &[u64]) -> Result<Message, String> {
        let mut msg = Message::with_words(label, words);
        match self.pd.ppcall(slot.channel, &mut msg) {
            Ok(()) if msg.label == reply::OK => Ok(msg),
            Ok(()) => Err(msg.text().unwrap_or("slot gave an unreadable error").to_owned()),
            Err(PpcError::CalleeFaulted) => Err(format!("slot {} faulted", slot.pd_name)),
            Err(PpcError::NoSuchChannel) => Err(format!("no channel to slot {}", slot.pd_name)),
        }
    }

    /// Loads `image` into an idle slot of instance `i`, initialises it,
    /// makes it live and commits it in the capability map. The same path
    /// serves boot (from nothing) and updates.
    fn install(&mut self, i: usize, slot: Slot, image: &str) -> Result<(), String> {
        let img = self.images.iter().find(|x| x.name == image).ok_or_else(|| format!("no image named '{image}'"))?;
        let d = img.descriptor.as_ref().map_err(|e| format!("image '{image}' refused: {e}"))?;
        let inst = &self.instances[i];
        if d.service() != inst.service {
            return Err(format!(
                "image '{image}' is service '{}', instance {} runs '{}'",
                d.service(),
                inst.name,
                inst.service
            ));
        }
        let s = &inst.slots[slot.index()];
        let target = SlotCode { pd_name: &s.pd_name, code: s.code };
        let words = self.placer.place(img.bytes, &target).map_err(|e| format!("image '{image}': {e}"))?;
        self.control(s, op::LOAD, &words)?;
        self.control(s, op::INIT, &[])?;
        self.control(s, op::ACTIVATE, &[])?;
        let inst = &mut self.instances[i];
        inst.generation += 1;
        inst.live = Some(slot);
        inst.image = Some(image.to_owned());
        self.capmap.commit(inst.capmap_index, Binding { generation: inst.generation, live: Some(slot) });
        Ok(())
    }

    fn run(&mut self, cmd: Command) {
        match cmd {
            Command::Help => self.say(command::HELP),
            Command::Version => {
                let text = format!(
                    "update manager {}, module ABI v{}, {} instance(s), {} image(s)\n",
                    env!("CARGO_PKG_VERSION"),
                    interfaces::abi::ABI_VERSION,
                    self.instances.len(),
                    self.images.len()
                );
                self.say(&text)
            }
            Command::Status => {
                let table = status::render(&self.status_rows());
                self.say(&table)
            }
        }
    }

    fn status_rows(&self) -> Vec<Row> {
        let dash = || String::from("-");
        let mut rows = Vec::new();
        rows.push(Row {
            pd: self.pd.name().to_owned(),
            service: dash(),
            version: dash(),
            slot: dash(),
            state: "running".into(),
            calls: dash(),
            faults: 0,
            detail: "manager".into(),
        });
        for (_, name, faults) in &self.children {
            let mut row = Row {
                pd: name.clone(),
                service: dash(),
                version: dash(),
                slot: dash(),
                state: "running".into(),
                calls: dash(),
                faults: *faults,
                detail: String::new(),
            };
            if let Some((inst, k)) =
                self.instances.iter().find_map(|i| i.slots.iter().position(|s| &s.pd_name == name).map(|k| (i, k)))
            {
                row.service = inst.service.clone();
                row.slot = String::from(if k == 0 { "a" } else { "b" });
                match self
                    .control(&inst.slots[k], op::STATUS, &[])
                    .ok()
                    .and_then(|m| ShellStatus::from_words(m.used_words()))
                {
                    Some(s) => {
                        row.state = s.state.as_str().into();
                        if s.state != SlotState::Empty {
                            row.version = format!("{}", s.module_version);
                        }
                        row.calls = format!("{}", s.calls_served);
                        if inst.live.map(Slot::index) == Some(k) {
                            row.detail =
                                format!("gen {} image {}", inst.generation, inst.image.as_deref().unwrap_or("?"));
                        }
                    }
                    None => row.state = "unreachable".into(),
                }
            } else if let Some(r) = self.pd.region(&format!("{name}_stats")) {
                // SAFETY: the client's stats page, read-only here, read
                // through atomics and validated by its magic.
                let stats = unsafe { &*(r.base as *const ClientStats) };
                row.detail = match stats.read() {
                    Some(c) => {
                        format!("verified={} wrong={} retried={} failed={}", c.verified, c.wrong, c.retried, c.failed)
                    }
                    None => "no stats yet".into(),
                };
                row.service = "client".into();
            } else if name == "serial" {
                row.service = "serial".into();
            }
            rows.push(row);
        }
        rows
    }

    fn on_event(&mut self, e: Event) {
        match e {
            Event::Line(line) => match command::parse(&line) {
                Ok(Some(cmd)) => self.run(cmd),
                Ok(None) => {}
                Err(msg) => self.say(&format!("error: {msg}\n")),
            },
            Event::TooLong => {
                self.say(&format!("error: line too long (at most {} characters)\n", crate::console::MAX_LINE))
            }
            Event::Garbage => self.say("error: line holds bytes that are not printable text\n"),
            Event::Cancelled => {}
            Event::EndOfInput => {
                self.say("end of input: halting\n");
                self.pd.shutdown();
                return;
            }
        }
        self.say(PROMPT);
    }
}

impl<P: Pd + 'static, L: ImagePlacer> Handler<P> for Manager<P, L> {
    fn notified(&mut self, _pd: &P, ch: ChannelId) {
        if ch != self.console.serial {
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
            for &b in &buf[..n] {
                let mut echo = String::new();
                let ev = self.console.editor.feed(b, &mut |s| echo.push_str(s));
                if !echo.is_empty() {
                    self.say(&echo);
                }
                if let Some(ev) = ev {
                    self.on_event(ev);
                }
            }
        }
    }

    fn fault(&mut self, pd: &P, child: ChildId, fault: Fault) -> FaultAction {
        let Some(idx) = self.children.iter().position(|(id, _, _)| *id == child) else { return FaultAction::Stop };
        self.children[idx].2 += 1;
        let name = self.children[idx].1.clone();
        self.say(&format!("\nfault: {name}: {fault}; restarting it\n"));
        if !pd.restart_child(child) {
            self.say(&format!("fault: {name} did not restart\n"));
            return FaultAction::Stop;
        }
        // A live slot that died lost its state; bring its service back.
        let found = self.instances.iter().enumerate().find_map(|(i, inst)| {
            let k = inst.slots.iter().position(|s| s.pd_name == name)?;
            (inst.live.map(Slot::index) == Some(k)).then(|| (i, k, inst.image.clone()))
        });
        if let Some((i, k, Some(image))) = found {
            let slot = if k == 0 { Slot::A } else { Slot::B };
            let text = match self.install(i, slot, &image) {
                Ok(()) => format!("fault: {name} reloaded with {image}; its state was lost\n"),
                Err(e) => format!("fault: {name} could not be reloaded: {e}\n"),
            };
            self.say(&text);
        }
        self.say(PROMPT);
        FaultAction::Stop
    }
}
