//! The programming model of a protection domain, as in Microkit: a PD is a
//! [`Handler`] driven by events, and reaches the world only through its
//! [`Pd`]: channels (notify, protected call), memory regions, and, for a
//! parent, its children. Both backends implement [`Pd`]; PD logic written
//! against it is tested on the host and runs unchanged on seL4.
#![no_std]

pub use interfaces::Message;

/// A channel id, local to the PD (Microkit's `microkit_channel`).
pub type ChannelId = u32;
/// A child's id, as its parent knows it.
pub type ChildId = u32;

/// A memory region mapped into this PD.
#[derive(Clone, Copy, Debug)]
pub struct Region {
    pub base: *mut u8,
    pub size: usize,
    pub writable: bool,
}

impl Region {
    /// # Safety
    /// The region is shared memory: the caller must make sure no peer
    /// writes the bytes while the slice is alive, or treat them as racy.
    pub unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: the runtime maps `size` bytes at `base` for the PD's life.
        unsafe { core::slice::from_raw_parts(self.base, self.size) }
    }

    /// # Safety
    /// As [`Region::as_slice`], and the region must be writable.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn as_mut_slice(&self) -> &mut [u8] {
        debug_assert!(self.writable);
        // SAFETY: as above; the caller upholds exclusivity.
        unsafe { core::slice::from_raw_parts_mut(self.base, self.size) }
    }
}

/// A protected call that did not complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PpcError {
    /// The PD has no channel with that id, or may not call over it.
    NoSuchChannel,
    /// The callee died or was restarted while running the call: it may or
    /// may not have taken effect.
    CalleeFaulted,
    /// The callee died before it took the call: it did not run.
    NotDelivered,
}

/// Why a child stopped, as reported to its parent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Killed by a signal (host) or a VM / user exception (seL4).
    Exception { code: i64 },
    /// Panicked or aborted (host: SIGABRT; seL4: debug exception).
    Abort,
    /// Exited on its own although a PD never returns.
    Exited { status: i64 },
}

impl core::fmt::Display for Fault {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Fault::Exception { code } => write!(f, "exception {code}"),
            Fault::Abort => write!(f, "abort"),
            Fault::Exited { status } => write!(f, "exited with status {status}"),
        }
    }
}

/// An event a supervising PD takes off its endpoint itself (see
/// [`Pd::wait_event`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Notified(ChannelId),
    Fault(ChildId, Fault),
}

/// The kernel interface of a PD.
pub trait Pd {
    fn name(&self) -> &str;
    fn notify(&self, ch: ChannelId);
    /// Calls the PD at the other end of `ch` and waits for its reply,
    /// which replaces `msg`.
    fn ppcall(&self, ch: ChannelId, msg: &mut Message) -> Result<(), PpcError>;
    fn irq_ack(&self, ch: ChannelId);
    /// The channel to the PD named `peer`.
    fn channel(&self, peer: &str) -> Option<ChannelId>;
    /// The name of the PD at the other end of `ch`.
    fn peer_name(&self, ch: ChannelId) -> Option<&str>;
    /// A mapping by its local name (`setvar_vaddr` symbol or region name).
    fn region(&self, name: &str) -> Option<Region>;
    /// Calls `f` with the local name of each of this PD's mappings (the
    /// manager reads its instances' service types from them). The default
    /// names none: a PD that never needs the list need not give it.
    fn for_each_region(&self, f: &mut dyn FnMut(&str)) {
        let _ = f;
    }
    fn log(&self, args: core::fmt::Arguments);
    /// A child by its PD name. (The child defaults, down to
    /// `restart_child`, are for PDs that have no children: every backend
    /// implements them all.)
    fn child(&self, name: &str) -> Option<ChildId> {
        let _ = name;
        None
    }
    /// Calls `f` with each child's id and PD name.
    fn for_each_child(&self, f: &mut dyn FnMut(ChildId, &str)) {
        let _ = f;
    }
    /// Suspends a child (Microkit: TCB suspend); once this returns the
    /// child runs no more instructions until resumed or restarted.
    fn stop_child(&self, child: ChildId) {
        let _ = child;
    }
    /// Lets a stopped child go on where it stopped (TCB resume).
    fn resume_child(&self, child: ChildId) {
        let _ = child;
    }
    /// Starts a child again from its entry point, with fresh state, and
    /// returns once it runs (false if that did not happen).
    fn restart_child(&self, child: ChildId) -> bool {
        let _ = child;
        false
    }
    /// Monotonic time in nanoseconds.
    fn now_ns(&self) -> u64;
    /// Stops the whole system (host runtime; a no-op where unsupported).
    fn shutdown(&self);
    /// Gives the CPU to another PD for a moment (a client waiting for a
    /// service to come back).
    fn yield_now(&self) {
        core::hint::spin_loop();
    }
    /// True once the system is shutting down (host runtime only): a PD
    /// that loops in `init` should stop issuing calls.
    fn halting(&self) -> bool {
        false
    }
    /// For a supervisor that serves no protected calls (the update
    /// manager): takes the next notification or child fault off its
    /// endpoint, waiting at most until `deadline_ns` (`None` then). The
    /// event loop does not see what this returns. A supervisor never waits
    /// on a child any other way. (The default, for PDs that supervise
    /// nothing, has no events to give.)
    fn wait_event(&self, deadline_ns: u64) -> Option<Event> {
        let _ = deadline_ns;
        None
    }
    /// Asks for one [`Handler::tick`] at `at_ns` (or soon after),
    /// replacing any earlier request. (The default ticks never.)
    fn set_tick(&self, at_ns: u64) {
        let _ = at_ns;
    }
}

/// What to do with a child that faulted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultAction {
    /// Leave it stopped.
    Stop,
    /// Restart it from its entry point.
    Restart,
}

/// A PD's event handlers (Microkit's `notified`, `protected`, `fault`).
pub trait Handler<P: Pd + ?Sized> {
    fn notified(&mut self, pd: &P, ch: ChannelId);
    /// Answers a protected call by overwriting `msg` with the reply.
    fn protected(&mut self, pd: &P, ch: ChannelId, msg: &mut Message) {
        let _ = (pd, ch);
        *msg = Message::new(u64::MAX, 0);
    }
    fn fault(&mut self, pd: &P, child: ChildId, fault: Fault) -> FaultAction {
        pd.log(format_args!("child {child} faulted: {fault}"));
        FaultAction::Stop
    }
    /// The time asked for with [`Pd::set_tick`] has come.
    fn tick(&mut self, pd: &P) {
        let _ = pd;
    }
}
