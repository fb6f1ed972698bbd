//! The Microkit event loop around a [`Handler`], and what keeps a
//! parent from waiting for ever on a child that faults: split calls,
//! events set aside while a fault report is awaited, and the panic hook
//! that answers a pending caller.
use crate::Sel4Pd;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};
use interfaces::Message;
use pd_api::{ChannelId, ChildId, Fault, FaultAction, Handler, Pd, PpcError};
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
pub(crate) fn split_call(ch: ChannelId, child: ChildId, msg: &mut Message) -> Result<(), PpcError> {
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
