//! The PD side of the host runtime: a [`HostPd`] is what a PD process sees
//! of the kernel, and [`run`] is its event loop, as Microkit's `main`.
use crate::config::{PdConfig, ENV_VAR};
use crate::kernel::{call_state, request, run_state, KernelPage, PdBlock};
use crate::shm::{self, Mapping};
use interfaces::Message;
use pd_api::{ChannelId, ChildId, FaultAction, Handler, Pd, PpcError, Region};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub struct HostPd {
    cfg: PdConfig,
    kernel: Mapping,
    maps: Vec<Mapping>,
    /// For each caller PD index: this PD's channel id for it, if the caller
    /// holds a `pp` end towards this PD.
    callers: [Option<ChannelId>; crate::kernel::MAX_PDS],
    /// See [`CALL_SPIN`].
    is_manager: bool,
    /// Notifications and faults taken off the kernel page by
    /// [`Pd::wait_event`] but not yet returned, for the next call (or the
    /// event loop). A PD is single-threaded; atomics keep it `Sync`.
    taken_notes: AtomicU64,
    taken_faults: AtomicU64,
    /// When [`Handler::tick`] is due (0: not asked for).
    tick_at: AtomicU64,
}

/// How long a caller spins on its reply before sleeping: a round trip on an
/// idle second core is shorter than a futex sleep and wake. The update
/// manager waits differently (see [`MANAGER_SPIN_NS`]).
pub const CALL_SPIN: u32 = 2_000;
/// How long the update manager polls for a reply before it sleeps. Its
/// calls are the steps of an update, most of them inside the blackout and
/// answered within microseconds, where a futex sleep and wake would cost
/// tens of them; it yields while it polls, since its core may be the one
/// the slots it drives need (the export an import streams behind).
pub const MANAGER_SPIN_NS: u64 = 50_000;
/// How often a sleeping caller checks that its callee is still alive.
const CALLEE_CHECK: Duration = Duration::from_millis(50);

impl HostPd {
    /// Attaches to the kernel page and maps this PD's regions, as the
    /// launcher described them.
    pub fn from_env() -> Result<HostPd, String> {
        let text = std::env::var(ENV_VAR)
            .map_err(|_| format!("{ENV_VAR} is not set: PD programs are started by host-runtime"))?;
        let cfg: PdConfig = serde_json::from_str(&text).map_err(|e| format!("bad {ENV_VAR}: {e}"))?;
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        let kernel = shm::map(cfg.kernel_fd, cfg.kernel_size, prot, None).map_err(|e| format!("kernel page: {e}"))?;
        let mut maps = Vec::new();
        for m in &cfg.maps {
            let perms = sdf::Perms::parse(&m.perms).ok_or("bad perms")?;
            let mapping = shm::map(m.fd, m.size, shm::prot(&perms), Some(m.vaddr as usize))
                .map_err(|e| format!("mapping '{}': {e}", m.mr))?;
            maps.push(mapping);
        }
        let mut callers = [None; crate::kernel::MAX_PDS];
        for c in &cfg.channels {
            // The peer may call us if its end has pp; we learn that from the
            // launcher, which read it from the system description.
            if c.peer < callers.len() && peer_may_call(&cfg, c.id) {
                callers[c.peer] = Some(c.id);
            }
        }
        let is_manager = cfg.name == interfaces::control::MANAGER_PD;
        let pd = HostPd {
            cfg,
            kernel,
            maps,
            callers,
            is_manager,
            taken_notes: AtomicU64::new(0),
            taken_faults: AtomicU64::new(0),
            tick_at: AtomicU64::new(0),
        };
        if !pd.kernel().is_formatted() {
            return Err("kernel page is not formatted".into());
        }
        Ok(pd)
    }

    fn kernel(&self) -> &KernelPage {
        // SAFETY: the mapping is KERNEL_PAGE_SIZE bytes of a formatted
        // kernel page, alive as long as `self`, accessed through atomics.
        unsafe { &*(self.kernel.base as *const KernelPage) }
    }

    fn me(&self) -> &PdBlock {
        &self.kernel().pds[self.cfg.index]
    }

    pub fn index(&self) -> usize {
        self.cfg.index
    }

    fn serve_call<H: Handler<HostPd>>(&self, h: &mut H, caller: usize) {
        let slot = &self.kernel().pds[caller].call;
        if slot.state.load(Ordering::Acquire) != call_state::CALLED
            || slot.callee.load(Ordering::Relaxed) as usize != self.cfg.index
        {
            return; // stale bit: the caller gave up or was restarted
        }
        let Some(ch) = self.callers[caller] else {
            // A PD without a pp channel to us: refuse, as seL4 would never
            // have delivered the call.
            slot.complete(call_state::CALLED, call_state::NOT_DELIVERED);
            return;
        };
        if slot
            .state
            .compare_exchange(call_state::CALLED, call_state::TAKEN, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return; // the caller gave up meanwhile
        }
        let mut msg = Message::default();
        // SAFETY: TAKEN: the caller finished writing and waits for us.
        unsafe { slot.read_into(&mut msg) };
        h.protected(self, ch, &mut msg);
        // SAFETY: the slot is ours until we publish REPLIED.
        unsafe { slot.write(&msg) };
        slot.complete(call_state::TAKEN, call_state::REPLIED);
    }

    /// Pending notifications, including those [`Pd::wait_event`] set aside.
    /// (The set-aside words are only ever non-zero in a supervisor: a
    /// plain load first keeps every other PD's event loop free of a second
    /// locked swap per event.)
    fn take_notes(&self) -> u64 {
        let taken = match self.taken_notes.load(Ordering::Relaxed) {
            0 => 0,
            _ => self.taken_notes.swap(0, Ordering::Relaxed),
        };
        self.me().notify_pending.swap(0, Ordering::Acquire) | taken
    }

    fn take_faults(&self) -> u64 {
        let taken = match self.taken_faults.load(Ordering::Relaxed) {
            0 => 0,
            _ => self.taken_faults.swap(0, Ordering::Relaxed),
        };
        self.me().fault_pending.swap(0, Ordering::Acquire) | taken
    }

    /// The fault of child PD `index`, as the parent's `Fault` event; `None`
    /// if it is about an incarnation that was restarted since (a report
    /// taken off the kernel page before the restart, not yet delivered).
    fn fault_event(&self, index: usize) -> Option<pd_api::Event> {
        let c = self.cfg.children.iter().find(|c| c.index == index)?;
        let b = &self.kernel().pds[index];
        if b.fault_incarnation.load(Ordering::Acquire) != b.incarnation.load(Ordering::Acquire) {
            return None;
        }
        Some(pd_api::Event::Fault(c.id, b.fault()))
    }

    fn child_index(&self, child: ChildId) -> Option<usize> {
        self.cfg.children.iter().find(|c| c.id == child).map(|c| c.index)
    }

    /// Posts `req` for the runtime and waits until it has been carried
    /// out: seL4's TCB operations are synchronous too.
    fn post_request(&self, child: ChildId, req: u32) -> bool {
        let Some(i) = self.child_index(child) else {
            self.log(format_args!("no child with id {child}"));
            return false;
        };
        let b = &self.kernel().pds[i];
        let before = b.incarnation.load(Ordering::Acquire);
        b.request.store(req, Ordering::Release);
        self.kernel().wake_runtime();
        // Longer than what the runtime may take for the request: a restart
        // waits up to 5 s for the old process's death before it starts the
        // new one, and a stop up to 1 s for the kernel to show it stopped.
        // (Under heavy load a restart answered after 5 s was seen as one
        // that never happened, and the slot stayed unusable.)
        let deadline = monotonic_ns() + 12_000_000_000;
        while monotonic_ns() < deadline {
            let done = match req {
                request::RESTART => b.incarnation.load(Ordering::Acquire) != before,
                request::RESUME => b.run_state.load(Ordering::Acquire) != run_state::STOPPED,
                _ => b.run_state.load(Ordering::Acquire) != run_state::RUNNING,
            };
            if done && b.request.load(Ordering::Acquire) == request::NONE {
                return true;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        false
    }
}

fn peer_may_call(cfg: &PdConfig, my_id: u32) -> bool {
    cfg.channels.iter().any(|c| c.id == my_id && c.peer_pp)
}

impl Pd for HostPd {
    fn name(&self) -> &str {
        &self.cfg.name
    }

    fn notify(&self, ch: ChannelId) {
        match self.cfg.channels.iter().find(|c| c.id == ch) {
            Some(c) if c.notify => {
                let target = &self.kernel().pds[c.peer];
                target.notify_pending.fetch_or(1 << c.peer_id, Ordering::Release);
                target.signal();
            }
            _ => self.log(format_args!("notify on channel {ch}: no such channel with notify rights")),
        }
    }

    fn ppcall(&self, ch: ChannelId, msg: &mut Message) -> Result<(), PpcError> {
        let c = self.cfg.channels.iter().find(|c| c.id == ch && c.pp).ok_or(PpcError::NoSuchChannel)?;
        let callee = &self.kernel().pds[c.peer];
        if callee.run_state.load(Ordering::Acquire) == run_state::DEAD {
            return Err(PpcError::NotDelivered);
        }
        let slot = &self.me().call;
        // SAFETY: our own slot is IDLE: a PD makes one call at a time.
        unsafe { slot.write(msg) };
        slot.callee.store(c.peer as u32, Ordering::Relaxed);
        slot.state.store(call_state::CALLED, Ordering::Release);
        callee.call_pending.fetch_or(1 << self.cfg.index, Ordering::Release);
        callee.signal();
        let mut spins = 0u32;
        let called_at = if self.is_manager { monotonic_ns() } else { 0 };
        loop {
            match slot.state.load(Ordering::Acquire) {
                call_state::REPLIED => {
                    // SAFETY: REPLIED hands the slot back to us.
                    unsafe { slot.read_into(msg) };
                    slot.state.store(call_state::IDLE, Ordering::Relaxed);
                    return Ok(());
                }
                call_state::FAILED => {
                    slot.state.store(call_state::IDLE, Ordering::Relaxed);
                    return Err(PpcError::CalleeFaulted);
                }
                call_state::NOT_DELIVERED => {
                    slot.state.store(call_state::IDLE, Ordering::Relaxed);
                    return Err(PpcError::NotDelivered);
                }
                _ if spins < CALL_SPIN && !self.is_manager => {
                    spins += 1;
                    std::hint::spin_loop();
                }
                _ if self.is_manager && monotonic_ns().saturating_sub(called_at) < MANAGER_SPIN_NS => {
                    std::thread::yield_now();
                }
                _ => {
                    slot.waiting.store(1, Ordering::SeqCst);
                    if slot.state.load(Ordering::SeqCst) == call_state::CALLED {
                        crate::kernel::futex_wait(&slot.state, call_state::CALLED, Some(CALLEE_CHECK));
                    }
                    slot.waiting.store(0, Ordering::Relaxed);
                    if callee.run_state.load(Ordering::Acquire) == run_state::DEAD
                        && slot
                            .state
                            .compare_exchange(
                                call_state::CALLED,
                                call_state::FAILED,
                                Ordering::AcqRel,
                                Ordering::Relaxed,
                            )
                            .is_ok()
                    {
                        continue;
                    }
                }
            }
        }
    }

    fn irq_ack(&self, _ch: ChannelId) {
        // No hardware interrupts on the host.
    }

    fn channel(&self, peer: &str) -> Option<ChannelId> {
        self.cfg.channels.iter().find(|c| c.peer_name == peer).map(|c| c.id)
    }

    fn peer_name(&self, ch: ChannelId) -> Option<&str> {
        self.cfg.channels.iter().find(|c| c.id == ch).map(|c| c.peer_name.as_str())
    }

    fn region(&self, name: &str) -> Option<Region> {
        let i = self.cfg.maps.iter().position(|m| m.local_name == name)?;
        let writable = self.cfg.maps[i].perms.contains('w');
        Some(Region { base: self.maps[i].base, size: self.maps[i].size, writable })
    }

    fn for_each_region(&self, f: &mut dyn FnMut(&str)) {
        self.cfg.maps.iter().for_each(|m| f(&m.local_name));
    }

    fn log(&self, args: std::fmt::Arguments) {
        // One write per line, so lines of concurrent PDs never interleave.
        let line = format!("[{}] {args}\n", self.cfg.name);
        let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), line.as_bytes());
    }

    fn child(&self, name: &str) -> Option<ChildId> {
        self.cfg.children.iter().find(|c| c.name == name).map(|c| c.id)
    }

    fn for_each_child(&self, f: &mut dyn FnMut(ChildId, &str)) {
        for c in &self.cfg.children {
            f(c.id, &c.name);
        }
    }

    fn stop_child(&self, child: ChildId) {
        self.post_request(child, request::STOP);
    }

    fn resume_child(&self, child: ChildId) {
        self.post_request(child, request::RESUME);
    }

    fn restart_child(&self, child: ChildId) -> bool {
        self.post_request(child, request::RESTART)
    }

    fn wait_event(&self, deadline_ns: u64) -> Option<pd_api::Event> {
        // The supervisor's waits are the steps of an update, most answered
        // within microseconds, inside the blackout: poll (yielding the
        // core, which the slot may need) for a moment before sleeping, as
        // a futex sleep and wake costs tens of them.
        let poll_until = monotonic_ns() + MANAGER_SPIN_NS;
        loop {
            let seen = self.me().event.load(Ordering::SeqCst);
            let notes = self.take_notes();
            if notes != 0 {
                let ch = notes.trailing_zeros();
                self.taken_notes.fetch_or(notes & (notes - 1), Ordering::Relaxed);
                return Some(pd_api::Event::Notified(ch));
            }
            let faults = self.take_faults();
            if faults != 0 {
                let child = faults.trailing_zeros() as usize;
                self.taken_faults.fetch_or(faults & (faults - 1), Ordering::Relaxed);
                match self.fault_event(child) {
                    Some(e) => return Some(e),
                    None => continue,
                }
            }
            let now = monotonic_ns();
            if now >= deadline_ns {
                return None;
            }
            if now < poll_until {
                std::thread::yield_now();
                continue;
            }
            self.me().wait(seen, Some(Duration::from_nanos(deadline_ns - now)));
        }
    }

    fn set_tick(&self, at_ns: u64) {
        self.tick_at.store(at_ns.max(1), Ordering::Relaxed);
    }

    fn halting(&self) -> bool {
        self.kernel().halt.load(Ordering::Relaxed) != 0
    }

    fn now_ns(&self) -> u64 {
        monotonic_ns()
    }

    fn yield_now(&self) {
        std::thread::yield_now();
    }

    fn shutdown(&self) {
        self.kernel().halt.store(1, Ordering::SeqCst);
        self.kernel().wake_runtime();
    }
}

pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: writes one timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn bits(mut word: u64) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        (word != 0).then(|| {
            let b = word.trailing_zeros() as usize;
            word &= word - 1;
            b
        })
    })
}

/// Runs a PD: builds its handler (Microkit's `init`), then serves events
/// until the system halts. Never returns.
pub fn run<H: Handler<HostPd>>(init: impl FnOnce(&'static HostPd) -> H) -> ! {
    // The PD lives as long as its process: handlers may keep `&'static`.
    let pd: &'static HostPd = match HostPd::from_env() {
        Ok(pd) => Box::leak(Box::new(pd)),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let mut handler = init(pd);
    run_loop(pd, &mut handler)
}

/// The event loop, for PDs that build their handler themselves.
pub fn run_loop<H: Handler<HostPd>>(pd: &HostPd, handler: &mut H) -> ! {
    let me = pd.me();
    // Once the system halts, a PD lingers until it has been idle this long:
    // the last output may still be travelling down a chain of PDs (console,
    // serial service, UART driver), and each must pass it on before it exits.
    const HALT_QUIET: Duration = Duration::from_millis(20);
    let mut quiet_since: Option<u64> = None;
    loop {
        let seen = me.event.load(Ordering::SeqCst);
        let notes = pd.take_notes();
        let calls = me.call_pending.swap(0, Ordering::Acquire);
        let faults = pd.take_faults();
        for ch in bits(notes) {
            handler.notified(pd, ch as ChannelId);
        }
        for caller in bits(calls) {
            pd.serve_call(handler, caller);
        }
        for child in bits(faults) {
            let Some(pd_api::Event::Fault(id, fault)) = pd.fault_event(child) else { continue };
            if handler.fault(pd, id, fault) == FaultAction::Restart {
                pd.restart_child(id);
            }
        }
        // Only a PD that asked for a tick reads the clock here.
        let tick_at = pd.tick_at.load(Ordering::Relaxed);
        let ticked = tick_at != 0 && monotonic_ns() >= tick_at;
        if ticked {
            pd.tick_at.store(0, Ordering::Relaxed);
            handler.tick(pd);
        }
        if notes | calls | faults != 0 || ticked {
            quiet_since = None;
            continue;
        }
        if pd.kernel().halt.load(Ordering::SeqCst) != 0 {
            let now = monotonic_ns();
            let since = *quiet_since.get_or_insert(now);
            if now - since >= HALT_QUIET.as_nanos() as u64 {
                std::process::exit(0);
            }
            me.wait(seen, Some(HALT_QUIET));
            continue;
        }
        let tick_at = pd.tick_at.load(Ordering::Relaxed);
        let sleep =
            if tick_at == 0 { 1_000_000_000 } else { tick_at.saturating_sub(monotonic_ns()).min(1_000_000_000) };
        me.wait(seen, Some(Duration::from_nanos(sleep.max(1))));
    }
}
