//! The stand-in PD the shell's tests run a slot in: a manager on
//! `CONTROL`, one client on `CLIENT`, the slot's regions, and a clock.
// Each test file compiles this module on its own and uses only part of it.
#![allow(dead_code)]

use domain_shell::ModuleLoader;
use interfaces::abi::{ModuleDescriptor, ModuleEntry};
use interfaces::control_page::ControlPage;
use interfaces::Message;
use pd_api::{ChannelId, Handler, Pd, PpcError, Region};
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

pub const CONTROL: ChannelId = 0;
pub const CLIENT: ChannelId = 1;

pub struct FakePd {
    /// The slot's name, as the shell reports it.
    pub name: &'static str,
    pub code: Region,
    pub transfer: Region,
    pub control: Region,
    /// The region only some slots map (`checkpoint`, `journal`), by name.
    pub extra: Option<(&'static str, Region)>,
    /// The last command's sequence number.
    pub seq: AtomicU64,
    /// A clock that moves 1 us at every reading.
    pub clock: AtomicU64,
    /// Every channel notified, in order.
    pub notified: RefCell<Vec<ChannelId>>,
}

impl FakePd {
    pub fn new(
        name: &'static str,
        code: Region,
        transfer: Region,
        control: Region,
        extra: Option<(&'static str, Region)>,
    ) -> Self {
        FakePd {
            name,
            code,
            transfer,
            control,
            extra,
            seq: AtomicU64::new(0),
            clock: AtomicU64::new(0),
            notified: RefCell::new(Vec::new()),
        }
    }
}

impl Pd for FakePd {
    fn name(&self) -> &str {
        self.name
    }
    fn notify(&self, ch: ChannelId) {
        self.notified.borrow_mut().push(ch);
    }
    fn ppcall(&self, _ch: ChannelId, _msg: &mut Message) -> Result<(), PpcError> {
        Err(PpcError::NoSuchChannel)
    }
    fn irq_ack(&self, _ch: ChannelId) {}
    fn channel(&self, peer: &str) -> Option<ChannelId> {
        match peer {
            "update_manager" => Some(CONTROL),
            "client0" => Some(CLIENT),
            _ => None,
        }
    }
    fn peer_name(&self, ch: ChannelId) -> Option<&str> {
        [(CONTROL, "update_manager"), (CLIENT, "client0")].into_iter().find(|(c, _)| *c == ch).map(|(_, n)| n)
    }
    fn region(&self, name: &str) -> Option<Region> {
        match name {
            "module_code" => Some(self.code),
            "transfer" => Some(self.transfer),
            "control" => Some(self.control),
            _ => self.extra.filter(|(n, _)| *n == name).map(|(_, r)| r),
        }
    }
    fn log(&self, args: std::fmt::Arguments) {
        eprintln!("[fake] {args}");
    }
    fn now_ns(&self) -> u64 {
        self.clock.fetch_add(1000, Relaxed) + 1000
    }
    fn shutdown(&self) {}
}

/// Hands out one module built into the test, whatever the code region
/// holds: no processes and no dlopen (so Miri can run the test).
pub struct StaticLoader(pub &'static ModuleEntry, pub ModuleDescriptor);

impl ModuleLoader for StaticLoader {
    fn load(&mut self, _code: &[u8], _words: &[u64]) -> Result<(&'static ModuleEntry, ModuleDescriptor), String> {
        Ok((self.0, self.1))
    }
}

/// A control page's memory: 4 KiB, aligned as the page wants.
#[repr(C, align(64))]
pub struct PageMem(pub [u8; 4096]);

pub fn page(pd: &FakePd) -> &'static ControlPage {
    // SAFETY: each test's control page is aligned and outlives its use.
    unsafe { ControlPage::at(pd.control.base, pd.control.size) }.unwrap()
}

/// Posts a command on the slot's control page, as the manager does, and
/// takes the answer the shell posted back.
pub fn post(pd: &'static FakePd, shell: &mut impl Handler<FakePd>, label: u64, words: &[u64]) -> Message {
    let seq = pd.seq.fetch_add(1, Relaxed) + 1;
    page(pd).command.post(seq, &Message::with_words(label, words));
    shell.notified(pd, CONTROL);
    page(pd).reply.read(seq).expect("the shell answered the command")
}
