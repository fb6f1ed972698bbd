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

use core::cell::UnsafeCell;
use core::fmt;
use core::sync::atomic::{AtomicBool, Ordering};
use interfaces::{Message, MSG_WORDS};
use pd_api::{ChannelId, ChildId, Fault, FaultAction, Handler, Pd, PpcError, Region};
use sel4_microkit::{debug_println, with_msg_regs, with_msg_regs_mut, Channel, ChannelSet, Child, MessageInfo};

pub mod reset;

pub struct ChannelInfo {
    pub id: u32,
    pub peer: &'static str,
    pub pp: bool,
    pub notify: bool,
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
    pub irqs: &'static [u32],
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

/// Monotonic counter ticks and their frequency (the generic timer's
/// physical counter: this kernel config exports CNTPCT to EL0).
#[inline]
pub fn counter() -> (u64, u64) {
    let (cnt, frq): (u64, u64);
    // SAFETY: reading EL0-accessible system registers.
    unsafe {
        core::arch::asm!("isb", "mrs {}, cntpct_el0", out(reg) cnt, options(nomem, nostack));
        core::arch::asm!("mrs {}, cntfrq_el0", out(reg) frq, options(nomem, nostack));
    }
    (cnt, frq)
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
        if let Some(child) = self.peer_name(ch).and_then(|p| self.child(p)) {
            return split_call(ch, child, msg);
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
        if self.0.irqs.contains(&ch) {
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
        let (cnt, frq) = counter();
        if frq == 0 {
            return 0;
        }
        ((cnt as u128 * 1_000_000_000) / frq as u128) as u64
    }

    fn shutdown(&self) {}

    fn yield_now(&self) {
        sel4::r#yield();
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

/// Decodes a fault message by its label first: rust-sel4's parser panics
/// on labels it does not know, and it does not parse this kernel's debug
/// exception (label 4, which is how an abort in a Rust PD arrives: `brk`).
fn decode_fault(info: &MessageInfo) -> Fault {
    /// `seL4_Fault_DebugException` in this kernel configuration.
    const DEBUG_EXCEPTION: u64 = 4;
    /// The labels rust-sel4 parses: cap fault, unknown syscall, user
    /// exception, timeout, VM fault.
    const PARSED: [u64; 5] = [1, 2, 3, 5, 6];
    let label = info.label();
    if label == DEBUG_EXCEPTION {
        debug_println!("fault: debug exception (an abort)");
        return Fault::Abort;
    }
    if PARSED.contains(&label) {
        debug_println!("fault: {:?}", info.fault());
    } else {
        debug_println!("fault: label {label}");
    }
    Fault::Exception { code: label as i64 }
}

/// Drives `handler` with Microkit's event loop.
pub struct Adapter<H: Handler<Sel4Pd>> {
    pd: &'static Sel4Pd,
    handler: H,
}

impl<H: Handler<Sel4Pd>> Adapter<H> {
    pub fn new(pd: &'static Sel4Pd, handler: H) -> Self {
        sel4_microkit::panicking::set_hook(&panic_hook);
        Adapter { pd, handler }
    }

    fn dispatch_fault(&mut self, id: u32, fault: Fault) {
        if self.handler.fault(self.pd, id, fault) == FaultAction::Restart {
            self.pd.restart_child(id);
        }
    }

    /// Delivers what [`take_events`] set aside during the last event.
    fn drain_deferred(&mut self) {
        loop {
            // SAFETY: single-threaded PD; no borrow outlives the statement.
            let next = unsafe { (*DEFERRED.0.get()).take() };
            let Some(d) = next else { return };
            for (id, fault) in d.faults[..d.n_faults].iter().copied() {
                self.dispatch_fault(id, fault);
            }
            let mut bits = d.notified;
            while bits != 0 {
                let ch = bits.trailing_zeros();
                bits &= bits - 1;
                self.handler.notified(self.pd, ch);
            }
        }
    }
}

/// The reply a dying shell sends its pending caller (seL4 label, no
/// words): a real reply always carries the label word, so it cannot be
/// mistaken for one.
pub const FAULTED_LABEL: u64 = 0xfa_17ed;

/// The seL4 label (MessageInfo, not the message's own label word) of a
/// parent's call to its child that is split in two: the child acknowledges
/// it at once with [`SPLIT_ACK_LABEL`], then runs it; the parent fetches the
/// result with a second call labelled [`SPLIT_FETCH_LABEL`].
///
/// Why: a child's fault goes to its parent's endpoint, and a parent blocked
/// in `seL4_Call` on that child cannot receive it (only a reply wakes it,
/// and only the faulted child could send one): a hardware fault in module
/// code run for the manager (init, import, ...) would deadlock both. A
/// panic does not (the shell replies before aborting), a data abort does.
/// With the call split, the manager is never blocked on the reply of code
/// that can fault.
pub const SPLIT_CALL_LABEL: u64 = 0x5b11;
/// The child's immediate answer to a [`SPLIT_CALL_LABEL`] call (no words).
pub const SPLIT_ACK_LABEL: u64 = 0x5b12;
/// The parent's second call (no words): the child replies the stored result
/// (or [`FAULTED_LABEL`] if it has none: it was restarted since).
pub const SPLIT_FETCH_LABEL: u64 = 0x5b13;

/// A parent's call to child `child` on channel `ch` (see [`SPLIT_CALL_LABEL`]).
///
/// After the acknowledgement, this PD runs again only once the child is
/// blocked: Microkit allows protected calls only to strictly higher
/// priorities, so the child outranks us, and the kernel here is
/// single-core. Blocked means: waiting for its next call (the result is
/// stored), or stopped by a fault whose report is queued on our endpoint
/// (taken here without blocking), or, rarely, in a call of its own.
fn split_call(ch: ChannelId, child: ChildId, msg: &mut Message) -> Result<(), PpcError> {
    let c = Channel::new(ch as usize);
    let words = put_message(msg);
    let ack = c.pp_call(MessageInfo::new(SPLIT_CALL_LABEL, words.count()));
    if ack.count() == 0 && ack.label() == FAULTED_LABEL {
        // It died before acknowledging (a panic in its shell): its fault
        // report follows at once.
        take_events(Some(child), true);
        return Err(PpcError::CalleeFaulted);
    }
    if !(ack.count() == 0 && ack.label() == SPLIT_ACK_LABEL) {
        // A callee that answers in one go.
        *msg = get_message(&ack);
        return Ok(());
    }
    if take_events(Some(child), false) {
        return Err(PpcError::CalleeFaulted);
    }
    let reply = c.pp_call(MessageInfo::new(SPLIT_FETCH_LABEL, 0));
    if reply.count() == 0 && reply.label() == FAULTED_LABEL {
        return Err(PpcError::CalleeFaulted);
    }
    *msg = get_message(&reply);
    Ok(())
}

/// The result of the split call being served, for the fetch.
struct ResultCell(UnsafeCell<Option<Message>>);
// SAFETY: a PD is single-threaded.
unsafe impl Sync for ResultCell {}
static SPLIT_RESULT: ResultCell = ResultCell(UnsafeCell::new(None));

/// A protected call is being served: a panic must answer its caller.
static IN_PROTECTED: AtomicBool = AtomicBool::new(false);

/// Prints the panic (as rust-sel4's default hook does) and, if this PD is
/// serving a protected call, replies [`FAULTED_LABEL`] to the caller before
/// the PD dies: on seL4 the caller would otherwise wait forever (and a
/// restarted PD's first receive would cancel it for good: MCS "Reply
/// object already has unexecuted reply"). The abort that follows the hook
/// is then reported to the parent as a fault, as on the host.
fn panic_hook(info: &core::panic::PanicInfo) {
    debug_println!("{}: {}", sel4_microkit::pd_name().unwrap_or("?"), info);
    if IN_PROTECTED.swap(false, Ordering::Relaxed) {
        sel4_microkit::ipc::reply(MessageInfo::new(FAULTED_LABEL, 0));
    }
}

/// Events taken off the endpoint while waiting for a child's fault report,
/// for the event loop to deliver after the current event.
#[derive(Clone, Copy)]
struct Deferred {
    notified: u64,
    faults: [(u32, Fault); 8],
    n_faults: usize,
}

struct DeferredCell(UnsafeCell<Option<Deferred>>);
// SAFETY: a PD is single-threaded.
unsafe impl Sync for DeferredCell {}
static DEFERRED: DeferredCell = DeferredCell(UnsafeCell::new(None));

fn defer(f: impl FnOnce(&mut Deferred)) {
    // SAFETY: single-threaded PD; the borrow ends here.
    let d = unsafe { &mut *DEFERRED.0.get() };
    f(d.get_or_insert(Deferred { notified: 0, faults: [(0, Fault::Abort); 8], n_faults: 0 }))
}

/// Takes events off the endpoint, setting each aside for the event loop,
/// until child `child`'s fault report arrives (returns true) or, if not
/// `blocking`, until none is pending (returns false). Received without a
/// reply object (`seL4_Wait`, `seL4_NBWait`): a faulted child stays stopped
/// until restarted, and our reply object stays free. Only a PD that nobody
/// calls may do this (a call received without a reply object would stop
/// its caller): the parents here are the update manager, which serves no
/// protected calls.
fn take_events(child: Option<u32>, blocking: bool) -> bool {
    const INPUT_CAP: u64 = 1;
    const IS_ENDPOINT_BADGE: u64 = 1 << 63;
    const IS_FAULT_BADGE: u64 = 1 << 62;
    loop {
        let (info, badge) = sel4::with_ipc_buffer_mut(|b| {
            let b = b.inner_mut();
            if blocking {
                b.seL4_Wait(INPUT_CAP)
            } else {
                b.seL4_NBWait(INPUT_CAP)
            }
        });
        let info = MessageInfo::from_inner(sel4::MessageInfo::from_inner(info));
        if badge == 0 {
            // Nothing pending (a non-blocking wait).
            if !blocking {
                return false;
            }
        } else if badge & IS_ENDPOINT_BADGE != 0 {
            debug_println!("{}: a protected call arrived while waiting for a fault: dropped", Sel4Pd::current().name());
        } else if badge & IS_FAULT_BADGE != 0 {
            let id = (badge & !IS_FAULT_BADGE) as u32;
            let fault = decode_fault(&info);
            defer(|d| {
                if d.n_faults < d.faults.len() {
                    d.faults[d.n_faults] = (id, fault);
                    d.n_faults += 1;
                }
            });
            if Some(id) == child {
                return true;
            }
        } else {
            defer(|d| d.notified |= badge);
        }
    }
}

impl<H: Handler<Sel4Pd>> sel4_microkit::Handler for Adapter<H> {
    type Error = core::convert::Infallible;

    fn notified(&mut self, channels: ChannelSet) -> Result<(), Self::Error> {
        for ch in channels.iter() {
            self.handler.notified(self.pd, ch.index() as u32);
        }
        self.drain_deferred();
        Ok(())
    }

    fn protected(&mut self, channel: Channel, msg_info: MessageInfo) -> Result<MessageInfo, Self::Error> {
        if msg_info.label() == SPLIT_FETCH_LABEL && msg_info.count() == 0 {
            // SAFETY: single-threaded PD; the borrow ends here.
            let result = unsafe { (*SPLIT_RESULT.0.get()).take() };
            return Ok(match result {
                Some(m) => put_message(&m),
                None => MessageInfo::new(FAULTED_LABEL, 0),
            });
        }
        let mut msg = get_message(&msg_info);
        if msg_info.label() == SPLIT_CALL_LABEL {
            // Acknowledge first: the caller (our parent) must not wait on
            // our reply while the call runs (see SPLIT_CALL_LABEL).
            sel4_microkit::ipc::reply(MessageInfo::new(SPLIT_ACK_LABEL, 0));
            self.handler.protected(self.pd, channel.index() as u32, &mut msg);
            // SAFETY: single-threaded PD; the borrow ends here.
            unsafe { *SPLIT_RESULT.0.get() = Some(msg) };
            self.drain_deferred();
            // Nobody waits on our reply object: this reply goes nowhere.
            return Ok(MessageInfo::new(0, 0));
        }
        IN_PROTECTED.store(true, Ordering::Relaxed);
        self.handler.protected(self.pd, channel.index() as u32, &mut msg);
        IN_PROTECTED.store(false, Ordering::Relaxed);
        let reply = put_message(&msg);
        // Deferred events run before the reply goes out; they never touch
        // the message registers the reply is in (faults were decoded
        // when they were set aside), but their handlers may: keep a copy.
        // SAFETY: single-threaded PD.
        if unsafe { (*DEFERRED.0.get()).is_some() } {
            self.drain_deferred();
            return Ok(put_message(&msg));
        }
        Ok(reply)
    }

    fn fault(&mut self, child: Child, msg_info: MessageInfo) -> Result<Option<MessageInfo>, Self::Error> {
        // Decode the fault before anything else touches the message registers.
        let fault = decode_fault(&msg_info);
        self.dispatch_fault(child.index() as u32, fault);
        self.drain_deferred();
        Ok(None)
    }
}

/// The words of the LOAD control call on seL4: where the manager's placer
/// put the module in the slot's code region, for the shell's loader.
pub mod load {
    /// Number of words.
    pub const WORDS: usize = 6;

    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct LoadWords {
        /// Slot address of `UPD_MODULE_DESCRIPTOR` (in the code region).
        pub descriptor: u64,
        /// Slot address of `UPD_MODULE_ENTRY` (in the code region).
        pub entry: u64,
        /// Slot address where the data segment runs (in the data region).
        pub data_vaddr: u64,
        /// Offset in the code region where the placer staged its bytes.
        pub data_staged: u64,
        /// Bytes of initialised data; the rest up to `data_memsz` is zeroed.
        pub data_filesz: u64,
        pub data_memsz: u64,
    }

    impl LoadWords {
        pub fn to_words(&self) -> [u64; WORDS] {
            [self.descriptor, self.entry, self.data_vaddr, self.data_staged, self.data_filesz, self.data_memsz]
        }

        pub fn from_words(w: &[u64]) -> Option<LoadWords> {
            let w: &[u64; WORDS] = w.get(..WORDS)?.try_into().ok()?;
            Some(LoadWords {
                descriptor: w[0],
                entry: w[1],
                data_vaddr: w[2],
                data_staged: w[3],
                data_filesz: w[4],
                data_memsz: w[5],
            })
        }
    }
}
