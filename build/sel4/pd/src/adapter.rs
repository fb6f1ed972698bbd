//! The Microkit event loop around a [`Handler`], and a supervisor's own
//! way of taking events: [`wait_event`] (a notification, a child's fault,
//! or the deadline passing) and the timer behind [`Handler::tick`]; plus
//! the panic hook that answers a pending caller.
use crate::{timer, Sel4Pd};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use pd_api::{ChannelId, Event, Fault, FaultAction, Handler, Pd};
use sel4_microkit::{debug_println, Channel, ChannelSet, Child, MessageInfo};

use crate::{get_message, put_message};

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

/// The reply a dying shell sends its pending caller (seL4 label, no
/// words): a real reply always carries the label word, so it cannot be
/// mistaken for one. Sent by the panic hook, and by the recovery entry a
/// parent restarts a faulted or hung child at (`reset::__upd_recover`).
pub const FAULTED_LABEL: u64 = 0xfa_17ed;

// The PD's event state, shared by `wait_event`, `set_tick` and the event
// loop. A PD is single-threaded: atomics only make the statics `Sync`.
// They live in `.bss`, so a restarted PD starts with none.

/// Notification bits [`wait_event`] took off the endpoint but has not
/// returned yet: for its next call, or for the event loop.
static KEPT_NOTES: AtomicU64 = AtomicU64::new(0);
/// When [`Handler::tick`] is due (0: not asked for).
static TICK_AT: AtomicU64 = AtomicU64::new(0);
/// The timer's IRQ has been acknowledged once (it starts masked).
static TIMER_LIVE: AtomicBool = AtomicBool::new(false);
/// A wait without a timer has been reported once.
static NO_TIMER_SAID: AtomicBool = AtomicBool::new(false);

/// Microkit's cap of the PD's endpoint (its notification is bound to it).
const INPUT_CAP: u64 = 1;
const IS_ENDPOINT_BADGE: u64 = 1 << 63;
const IS_FAULT_BADGE: u64 = 1 << 62;

fn ack(pd: &Sel4Pd, ch: ChannelId) {
    if let Err(e) = Channel::new(ch as usize).irq_ack() {
        pd.log(format_args!("timer irq_ack on channel {ch}: {e}"));
    }
}

/// The timer's interrupt arrived: lower it, then unmask the IRQ.
fn timer_fired(pd: &Sel4Pd, ch: ChannelId) {
    timer::silence();
    ack(pd, ch);
}

/// Sets the timer to fire at `at_ns` (0: disables it).
fn program(pd: &Sel4Pd, ch: ChannelId, at_ns: u64) {
    if !TIMER_LIVE.swap(true, Relaxed) {
        // The kernel hands out an IRQ masked until its first
        // acknowledgement (rust-sel4's loop acks every IRQ when it starts,
        // after `init`; the manager's waits begin in `init`).
        timer_fired(pd, ch);
    }
    if at_ns == 0 {
        timer::silence();
    } else {
        timer::arm(at_ns);
    }
}

/// [`Pd::set_tick`]: the timer is programmed for the tick now; the event
/// loop delivers it (see [`Adapter::after_event`]).
pub(crate) fn set_tick(pd: &Sel4Pd, at_ns: u64) {
    TICK_AT.store(at_ns.max(1), Relaxed);
    match pd.timer_channel() {
        Some(ch) => program(pd, ch, at_ns.max(1)),
        None => pd.log(format_args!("set_tick: no <irq irq=\"{}\"> in this PD: no tick", timer::TIMER_IRQ)),
    }
}

/// [`Pd::wait_event`]: takes the next event off the PD's endpoint with
/// `seL4_Wait`, which has no reply object. So a faulted child's message
/// is taken without a reply (the child stays stopped until it is
/// restarted), and this PD's reply object, which may hold nothing here
/// anyway, is left alone. Only a PD that serves no protected calls may
/// wait this way (a call taken without a reply object would leave its
/// caller stopped): the update manager, which nobody calls.
///
/// While it waits, the timer is set for `deadline_ns` (a pending tick
/// waits for the event loop, which sets the timer for it again).
pub(crate) fn wait_event(pd: &Sel4Pd, deadline_ns: u64) -> Option<Event> {
    let timer = pd.timer_channel();
    loop {
        let kept = KEPT_NOTES.load(Relaxed);
        if kept != 0 {
            KEPT_NOTES.store(kept & (kept - 1), Relaxed);
            return Some(Event::Notified(kept.trailing_zeros()));
        }
        if timer::now_ns() >= deadline_ns {
            return None;
        }
        match timer {
            Some(ch) => program(pd, ch, deadline_ns),
            None if !NO_TIMER_SAID.swap(true, Relaxed) => {
                pd.log(format_args!("wait_event: no timer interrupt: deadlines wait for the next event"))
            }
            None => {}
        }
        let (info, badge) = sel4::with_ipc_buffer_mut(|b| b.inner_mut().seL4_Wait(INPUT_CAP));
        if badge & IS_ENDPOINT_BADGE != 0 {
            pd.log(format_args!("a protected call arrived at a PD that serves none: its caller is left stopped"));
        } else if badge & IS_FAULT_BADGE != 0 {
            // Decoded before anything else touches the message registers.
            let info = MessageInfo::from_inner(sel4::MessageInfo::from_inner(info));
            let fault = decode_fault(&info);
            return Some(Event::Fault((badge & !IS_FAULT_BADGE) as u32, fault));
        } else {
            let mut bits = badge;
            if let Some(ch) = timer.filter(|&ch| bits & (1 << ch) != 0) {
                bits &= !(1 << ch);
                timer_fired(pd, ch);
            }
            KEPT_NOTES.fetch_or(bits, Relaxed);
        }
    }
}

/// Drives `handler` with Microkit's event loop.
pub struct Adapter<H: Handler<Sel4Pd>> {
    pd: &'static Sel4Pd,
    handler: H,
    /// The channel of the timer's IRQ, if this PD has it.
    timer: Option<ChannelId>,
}

impl<H: Handler<Sel4Pd>> Adapter<H> {
    pub fn new(pd: &'static Sel4Pd, handler: H) -> Self {
        sel4_microkit::panicking::set_hook(&panic_hook);
        Adapter { pd, handler, timer: pd.timer_channel() }
    }

    /// After every event: the notifications [`wait_event`] kept, a tick
    /// that is due, then the timer set for the next tick (or off). Returns
    /// whether a handler ran.
    fn after_event(&mut self) -> bool {
        let mut ran = false;
        loop {
            let notes = KEPT_NOTES.swap(0, Relaxed);
            let mut bits = notes;
            while bits != 0 {
                let ch = bits.trailing_zeros();
                bits &= bits - 1;
                self.handler.notified(self.pd, ch);
            }
            let tick_at = TICK_AT.load(Relaxed);
            if tick_at != 0 && timer::now_ns() >= tick_at {
                TICK_AT.store(0, Relaxed);
                self.handler.tick(self.pd);
                ran = true;
                continue;
            }
            if notes == 0 {
                break;
            }
            ran = true;
        }
        if let Some(ch) = self.timer {
            program(self.pd, ch, TICK_AT.load(Relaxed));
        }
        ran
    }
}

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
    if IN_PROTECTED.swap(false, Relaxed) {
        sel4_microkit::ipc::reply(MessageInfo::new(FAULTED_LABEL, 0));
    }
}

impl<H: Handler<Sel4Pd>> sel4_microkit::Handler for Adapter<H> {
    type Error = core::convert::Infallible;

    fn notified(&mut self, channels: ChannelSet) -> Result<(), Self::Error> {
        for ch in channels.iter() {
            let ch = ch.index() as ChannelId;
            if Some(ch) == self.timer {
                // Due or not, the tick is looked at below.
                timer_fired(self.pd, ch);
            } else {
                self.handler.notified(self.pd, ch);
            }
        }
        self.after_event();
        Ok(())
    }

    fn protected(&mut self, channel: Channel, msg_info: MessageInfo) -> Result<MessageInfo, Self::Error> {
        let mut msg = get_message(&msg_info);
        IN_PROTECTED.store(true, Relaxed);
        self.handler.protected(self.pd, channel.index() as u32, &mut msg);
        IN_PROTECTED.store(false, Relaxed);
        let reply = put_message(&msg);
        // What runs after the event may use the message registers the
        // reply is in: write them again if anything ran.
        if self.after_event() {
            return Ok(put_message(&msg));
        }
        Ok(reply)
    }

    fn fault(&mut self, child: Child, msg_info: MessageInfo) -> Result<Option<MessageInfo>, Self::Error> {
        // Decode the fault before anything else touches the message registers.
        let fault = decode_fault(&msg_info);
        let id = child.index() as u32;
        if self.handler.fault(self.pd, id, fault) == FaultAction::Restart {
            self.pd.restart_child(id);
        }
        self.after_event();
        Ok(None)
    }
}
