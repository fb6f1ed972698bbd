//! [`pd_api::Pd`] over sel4-microkit: the seL4 backend of every PD program.
//!
//! What a PD may reach (channels by peer name, mappings by local name,
//! children, extra caps) comes from a table generated at build time from
//! `system.xml` (see `build.rs`), selected at run time by the PD's name,
//! which the microkit tool patches into the program image. One program
//! image (the domain shell) thus serves every slot PD.
//!
//! A [`Message`] crosses a channel as message registers: MR0 holds the
//! 64-bit label (seL4's own label has only 52 bits), MR1.. the words.
#![no_std]

use core::fmt;
use interfaces::{Message, MSG_WORDS};
use pd_api::{ChannelId, ChildId, Event, Pd, PpcError, Region};
use sel4_microkit::{debug_println, with_msg_regs, with_msg_regs_mut, Channel, Child, MessageInfo};

mod adapter;
pub mod load;
pub mod reset;
pub mod timer;

pub use adapter::{Adapter, FAULTED_LABEL};
pub use timer::counter;

pub struct ChannelInfo {
    pub id: u32,
    pub peer: &'static str,
    pub pp: bool,
    pub notify: bool,
}

/// An `<irq irq=".." id=".."/>` of the PD: its channel id and interrupt.
pub struct IrqInfo {
    pub id: u32,
    pub irq: u64,
}

pub struct MapInfo {
    pub name: &'static str,
    pub vaddr: usize,
    pub size: usize,
    pub writable: bool,
    /// The mapping has a `setvar_vaddr` symbol (patched by the tool).
    pub setvar: bool,
}

pub struct ChildInfo {
    pub id: u32,
    pub name: &'static str,
}

/// One PD of the system description.
pub struct PdInfo {
    pub name: &'static str,
    pub program: &'static str,
    pub channels: &'static [ChannelInfo],
    pub irqs: &'static [IrqInfo],
    pub maps: &'static [MapInfo],
    pub children: &'static [ChildInfo],
    /// `<cspace><cap_vspace slot pd/>`: (PD whose VSpace, slot).
    pub vspaces: &'static [(&'static str, u64)],
}

include!(concat!(env!("OUT_DIR"), "/table.rs"));

/// The system description's entry for PD `name`.
pub fn pd_info(name: &str) -> Option<&'static PdInfo> {
    PDS.iter().find(|p| p.name == name)
}

/// Microkit's `microkit_cspace_root_slot_to_cptr` (Microkit 2.3: the PD's
/// root CNode has 2^6 slots, user caps are addressed by the top bits).
pub fn cspace_slot_cptr(slot: u64) -> u64 {
    const PD_ROOT_CAP_BITS: u64 = 6;
    if slot == 0 || slot >= 1 << PD_ROOT_CAP_BITS {
        0
    } else {
        slot << (64 - PD_ROOT_CAP_BITS)
    }
}

/// This PD, as the [`Pd`] its logic is written against.
#[repr(transparent)]
pub struct Sel4Pd(PdInfo);

impl Sel4Pd {
    /// The running PD: looked up by the name the microkit tool patched in.
    pub fn current() -> &'static Sel4Pd {
        let name = sel4_microkit::pd_name().unwrap_or("?");
        let info = pd_info(name).unwrap_or_else(|| panic!("PD '{name}' is not in the system description"));
        // SAFETY: repr(transparent) over a 'static PdInfo.
        unsafe { &*(info as *const PdInfo as *const Sel4Pd) }
    }

    pub fn info(&self) -> &'static PdInfo {
        // SAFETY: every Sel4Pd is a 'static PdInfo (see `current`).
        unsafe { &*(&self.0 as *const PdInfo) }
    }

    fn chan(&self, ch: ChannelId) -> Option<&'static ChannelInfo> {
        self.info().channels.iter().find(|c| c.id == ch)
    }

    /// The channel of the supervisor's timer interrupt (see [`timer`]), if
    /// the system description gives this PD one.
    pub fn timer_channel(&self) -> Option<ChannelId> {
        self.info().irqs.iter().find(|i| i.irq == timer::TIMER_IRQ).map(|i| i.id)
    }

    /// The capability pointer of the VSpace of PD `pd`, if this PD holds it.
    pub fn vspace_cap(&self, pd: &str) -> Option<u64> {
        self.info().vspaces.iter().find(|(n, _)| *n == pd).map(|(_, slot)| cspace_slot_cptr(*slot))
    }
}

/// Writes `msg` into the message registers; returns the tag to send.
pub fn put_message(msg: &Message) -> MessageInfo {
    let n = (msg.count as usize).min(MSG_WORDS);
    with_msg_regs_mut(|r| {
        r[0] = msg.label;
        r[1..=n].copy_from_slice(&msg.words[..n]);
    });
    MessageInfo::new(0, n + 1)
}

/// Reads the message described by `info` from the message registers.
pub fn get_message(info: &MessageInfo) -> Message {
    let len = info.count();
    if len == 0 {
        // A plain Microkit peer: its label is the label.
        return Message::new(info.label(), 0);
    }
    with_msg_regs(|r| {
        let n = (len - 1).min(MSG_WORDS);
        let mut m = Message::new(r[0], n as u32);
        m.words[..n].copy_from_slice(&r[1..=n]);
        m
    })
}

impl Pd for Sel4Pd {
    fn name(&self) -> &str {
        self.0.name
    }

    fn notify(&self, ch: ChannelId) {
        match self.chan(ch) {
            Some(c) if c.notify => Channel::new(ch as usize).notify(),
            _ => self.log(format_args!("notify on channel {ch}: no such channel with notify rights")),
        }
    }

    fn ppcall(&self, ch: ChannelId, msg: &mut Message) -> Result<(), PpcError> {
        match self.chan(ch) {
            Some(c) if c.pp => {}
            _ => return Err(PpcError::NoSuchChannel),
        }
        let reply = Channel::new(ch as usize).pp_call(put_message(msg));
        if reply.count() == 0 && reply.label() == FAULTED_LABEL {
            // The callee's shell answered for it as it died (see
            // `panic_hook` and `reset::__upd_recover`).
            return Err(PpcError::CalleeFaulted);
        }
        *msg = get_message(&reply);
        Ok(())
    }

    fn irq_ack(&self, ch: ChannelId) {
        if self.0.irqs.iter().any(|i| i.id == ch) {
            if let Err(e) = Channel::new(ch as usize).irq_ack() {
                self.log(format_args!("irq_ack on channel {ch}: {e}"));
            }
        }
    }

    fn channel(&self, peer: &str) -> Option<ChannelId> {
        self.0.channels.iter().find(|c| c.peer == peer).map(|c| c.id)
    }

    fn peer_name(&self, ch: ChannelId) -> Option<&str> {
        self.chan(ch).map(|c| c.peer)
    }

    fn region(&self, name: &str) -> Option<Region> {
        let m = self.0.maps.iter().find(|m| m.name == name)?;
        let base = if m.setvar { setvar(name).filter(|&v| v != 0).unwrap_or(m.vaddr) } else { m.vaddr };
        Some(Region { base: base as *mut u8, size: m.size, writable: m.writable })
    }

    fn for_each_region(&self, f: &mut dyn FnMut(&str)) {
        self.0.maps.iter().for_each(|m| f(m.name));
    }

    fn log(&self, args: fmt::Arguments) {
        debug_println!("{}: {}", self.0.name, args);
    }

    fn child(&self, name: &str) -> Option<ChildId> {
        self.0.children.iter().find(|c| c.name == name).map(|c| c.id)
    }

    fn for_each_child(&self, f: &mut dyn FnMut(ChildId, &str)) {
        for c in self.0.children {
            f(c.id, c.name);
        }
    }

    fn stop_child(&self, child: ChildId) {
        if let Err(e) = Child::new(child as usize).tcb().tcb_suspend() {
            self.log(format_args!("stopping child {child}: {e:?}"));
        }
    }

    fn resume_child(&self, child: ChildId) {
        if let Err(e) = Child::new(child as usize).tcb().tcb_resume() {
            self.log(format_args!("resuming child {child}: {e:?}"));
        }
    }

    fn restart_child(&self, child: ChildId) -> bool {
        let Some(c) = self.0.children.iter().find(|c| c.id == child) else { return false };
        let Some(entry) = pd_info(c.name).and_then(|p| program_entry(p.program)) else {
            self.log(format_args!("no entry point known for child {}", c.name));
            return false;
        };
        let tcb = Child::new(child as usize).tcb();
        let mut regs = sel4::UserContext::default();
        // Through the recovery code: it answers a caller the child left
        // waiting (nothing if none), then starts the child afresh.
        *regs.pc_mut() = entry + reset::RECOVER_OFFSET;
        match tcb.tcb_write_registers(true, 1, &mut regs) {
            Ok(()) => true,
            Err(e) => {
                self.log(format_args!("restarting child {}: {e:?}", c.name));
                false
            }
        }
    }

    fn now_ns(&self) -> u64 {
        timer::now_ns()
    }

    fn shutdown(&self) {}

    fn yield_now(&self) {
        sel4::r#yield();
    }

    fn wait_event(&self, deadline_ns: u64) -> Option<Event> {
        adapter::wait_event(self, deadline_ns)
    }

    fn set_tick(&self, at_ns: u64) {
        adapter::set_tick(self, at_ns)
    }
}

/// Entry points of the program images, by their index in [`PROGRAMS`]:
/// `cargo xtask qemu` patches them in after linking (the manager needs a
/// child's entry point to restart it, and the child is linked separately).
#[unsafe(no_mangle)]
#[unsafe(link_section = ".data")]
#[used]
static mut upd_program_entries: [u64; 16] = [0; 16];

/// The entry point of program image `program`, if patched in.
pub fn program_entry(program: &str) -> Option<u64> {
    let i = PROGRAMS.iter().position(|p| *p == program)?;
    // SAFETY: written by the image build before boot, never at run time.
    let v = unsafe { core::ptr::read_volatile((&raw const upd_program_entries).cast::<u64>().add(i)) };
    (v != 0).then_some(v)
}

/// A client PD program on seL4: runs `run(pd)` (a `fn(&P)` for any
/// `P: pd_api::Pd`) from `init`, as a Microkit PD may, and never returns
/// to the event loop. A client program's `main.rs` is `#![no_std]`,
/// `#![no_main]` and `sel4_pd::client_main!(counter_api::run);` (the
/// crate depends on `sel4-microkit` too, whose attribute this expands to).
#[macro_export]
macro_rules! client_main {
    ($run:path) => {
        // A small heap: sel4-microkit's "alloc" feature (which the manager
        // and the shell need) is unified across this workspace and makes
        // every program need one.
        #[sel4_microkit::protection_domain(heap_size = 0x4000)]
        fn init() -> sel4_microkit::NullHandler {
            $run($crate::Sel4Pd::current());
            sel4_microkit::NullHandler::new()
        }
    };
}
