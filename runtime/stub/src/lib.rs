//! The client side of every updatable service, written once.
//!
//! A client holds a channel to both slots of a service instance
//! (`{instance}_a`, `{instance}_b`) and the capability map (`capmap`). A
//! call goes to the slot that served the last one (the first, to the slot
//! the instance's binding names), and when the slot did not run the
//! request it reads the binding again and calls again:
//! - `MOVED` (the slot handed its state over) or `NO_SERVICE` (not live
//!   yet): the shell answered without the module;
//! - `FAILED` or a faulted callee: the slot failed inside the call, which
//!   was never journaled, so if the service goes back to its previous
//!   version (probation) it never ran;
//! - not delivered: the slot went away before it took the call.
//!
//! So each request runs exactly once, in whichever slot was live when it
//! ran. The map is a route, not a guard: a slot's shell runs a call only
//! while the slot is live, and the manager never points the map away
//! from a slot that can still serve (it stops serving first: `PREPARE`,
//! `FREEZE`, or stopped). Reading it only after a bounce keeps it off the
//! path of every other call (`tests/routing.rs`). A service's api crate
//! only encodes its requests and parses its replies (`kv-api`, `fs-api`).
#![no_std]

use core::sync::atomic::Ordering;
use interfaces::capmap::{Binding, CapMap, MAX_INSTANCES};
use interfaces::control::{region, shell_label};
use interfaces::Message;
use pd_api::{ChannelId, Pd, PpcError};

/// How long a call waits for its instance to become live again.
pub const UNAVAILABLE_AFTER_NS: u64 = 10_000_000_000;
/// Yields a bounced call waits for a new binding before calling again.
pub const MOVED_PATIENCE: u32 = 200;

/// Why a call did not get an answer from the service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallError<E> {
    /// The request could not be encoded.
    Encode(E),
    /// No slot became live within [`UNAVAILABLE_AFTER_NS`], the system is
    /// halting, or this PD has no channel to the slot the map names.
    Unavailable,
}

/// A service instance as a client sees it: its capability-map entry and
/// its two slots.
#[derive(Clone, Copy)]
pub struct Instance<'p> {
    capmap: &'p CapMap,
    index: usize,
    slots: [ChannelId; 2],
}

impl<'p> Instance<'p> {
    /// The capability map this PD has mapped as `capmap`.
    pub fn capmap<P: Pd + ?Sized>(pd: &P) -> Result<&'static CapMap, &'static str> {
        let map = pd.region(region::CAPMAP).ok_or("no 'capmap' region")?;
        if map.size < core::mem::size_of::<CapMap>() || map.base.align_offset(8) != 0 {
            return Err("'capmap' region is too small or misaligned");
        }
        // SAFETY: the region is mapped for the PD's life, large and aligned
        // enough, and read only through atomics.
        Ok(unsafe { &*(map.base as *const CapMap) })
    }

    /// The first instance of service type `service` (e.g. `kv`) that this
    /// PD has channels to. Waits, bounded, for the manager to publish the
    /// map at boot.
    pub fn find<P: Pd + ?Sized>(pd: &P, service: &str) -> Result<Instance<'static>, &'static str> {
        let capmap = Self::capmap(pd)?;
        let start = pd.now_ns();
        loop {
            let n = (capmap.instances.load(Ordering::Relaxed) as usize).min(MAX_INSTANCES);
            let found = (0..n).find_map(|index| {
                let name = capmap.entries[index].name.as_str()?;
                if capmap.service(index) != Some(service) || capmap.find(name) != Some(index) {
                    return None;
                }
                Some(Instance { capmap, index, slots: slot_channels(pd, name)? })
            });
            if let Some(instance) = found {
                return Ok(instance);
            }
            if pd.now_ns() - start > UNAVAILABLE_AFTER_NS || pd.halting() {
                return Err("no instance of the service that this PD has channels to appeared in the capability map");
            }
            pd.yield_now();
        }
    }

    /// The binding the capability map holds now.
    #[inline]
    pub fn binding(&self) -> Option<Binding> {
        self.capmap.binding(self.index)
    }

    /// The channel to the live slot, if one is live.
    #[inline]
    pub fn live(&self) -> Option<ChannelId> {
        self.live_in(self.binding())
    }

    /// The channel to the slot `binding` names live, if any.
    #[inline]
    fn live_in(&self, binding: Option<Binding>) -> Option<ChannelId> {
        binding.and_then(|b| b.live).map(|slot| self.slots[slot.index()])
    }

    /// Whether `ch` is one of the instance's slots.
    pub fn is_slot(&self, ch: ChannelId) -> bool {
        self.slots.contains(&ch)
    }
}

/// An instance known by name before the manager has published the map
/// (a driver attaches at boot, perhaps before the manager runs): its entry
/// is looked up on each use.
pub struct NamedInstance<'p> {
    capmap: &'p CapMap,
    name: &'p str,
    slots: [ChannelId; 2],
}

impl<'p> NamedInstance<'p> {
    /// The instance `name` (e.g. `serial0`) if this PD has the capability
    /// map and channels to both its slots.
    pub fn find<P: Pd + ?Sized>(pd: &P, name: &'p str) -> Option<NamedInstance<'p>> {
        Some(NamedInstance { capmap: Instance::capmap(pd).ok()?, name, slots: slot_channels(pd, name)? })
    }

    /// The channel to the live slot, if the map names the instance and one
    /// of its slots is live.
    pub fn live(&self) -> Option<ChannelId> {
        let index = self.capmap.find(self.name)?;
        let slot = self.capmap.binding(index)?.live?;
        Some(self.slots[slot.index()])
    }

    /// Whether `ch` is one of the instance's slots.
    pub fn is_slot(&self, ch: ChannelId) -> bool {
        self.slots.contains(&ch)
    }
}

fn slot_channels<P: Pd + ?Sized>(pd: &P, instance: &str) -> Option<[ChannelId; 2]> {
    let mut buf = [0u8; 40];
    let mut channel = |suffix: &str| {
        let n = instance.len() + suffix.len();
        buf.get_mut(..instance.len())?.copy_from_slice(instance.as_bytes());
        buf.get_mut(instance.len()..n)?.copy_from_slice(suffix.as_bytes());
        pd.channel(core::str::from_utf8(&buf[..n]).ok()?)
    };
    Some([channel("_a")?, channel("_b")?])
}

/// Calls into one service instance, each request exactly once.
pub struct Stub<'p, P: Pd + ?Sized> {
    pd: &'p P,
    instance: Instance<'p>,
    /// The slot the last call ran in, until a call comes back unrun (see
    /// the crate's documentation for why it needs no map read).
    route: Option<ChannelId>,
    /// Calls bounced by a slot and retried.
    pub retried: u64,
}

impl<'p, P: Pd + ?Sized> Stub<'p, P> {
    /// Connects to the instance of service type `service` this PD has
    /// channels to (see [`Instance::find`]).
    pub fn connect(pd: &'p P, service: &str) -> Result<Self, &'static str> {
        Ok(Stub { pd, instance: Instance::find(pd, service)?, route: None, retried: 0 })
    }

    pub fn pd(&self) -> &'p P {
        self.pd
    }

    pub fn instance(&self) -> &Instance<'p> {
        &self.instance
    }

    /// Runs one request exactly once: `encode` writes it into `msg` before
    /// each attempt (a bounced attempt leaves the shell's answer there).
    /// On `Ok`, `msg` holds the service's reply, never a shell's bounce.
    #[inline]
    pub fn call<E>(
        &mut self,
        msg: &mut Message,
        mut encode: impl FnMut(&mut Message) -> Result<(), E>,
    ) -> Result<(), CallError<E>> {
        // The clock is read only once a retry is needed: on some machines
        // it is a system call, which would double the cost of a call.
        let mut start = None;
        loop {
            // The slot that served last, else the one the map names. Only
            // a call that runs puts a route back.
            let (channel, binding) = match self.route.take() {
                Some(ch) => (Some(ch), None),
                None => {
                    let b = self.instance.binding();
                    (self.instance.live_in(b), b)
                }
            };
            if let Some(ch) = channel {
                encode(msg).map_err(CallError::Encode)?;
                let ran = self.pd.ppcall(ch, msg);
                match ran {
                    Ok(())
                        if !matches!(msg.label, shell_label::MOVED | shell_label::NO_SERVICE | shell_label::FAILED) =>
                    {
                        self.route = Some(ch);
                        return Ok(());
                    }
                    Ok(()) | Err(PpcError::CalleeFaulted) => {
                        self.retried += 1;
                        // Wait for a binding newer than the one that named
                        // this slot. On the remembered route that one is
                        // unknown: if the map names another slot by now,
                        // there is a newer one already; call again at once.
                        let named = binding.or_else(|| self.instance.binding());
                        if binding.is_some() || self.instance.live_in(named) == Some(ch) {
                            self.await_new_binding(named.map_or(0, |b| b.generation));
                        }
                    }
                    // Not taken: look the service up again at once.
                    Err(PpcError::NotDelivered) => self.retried += 1,
                    Err(PpcError::NoSuchChannel) => return Err(CallError::Unavailable),
                }
            }
            let now = self.pd.now_ns();
            if now - *start.get_or_insert(now) > UNAVAILABLE_AFTER_NS || self.pd.halting() {
                return Err(CallError::Unavailable);
            }
            self.pd.yield_now();
        }
    }

    /// After a bounce: gives way until the manager commits a new binding,
    /// rather than calling the old slot again and again (which would take
    /// CPU from the update). Bounded, because an update that fails before
    /// its commit thaws the old slot without a new binding.
    fn await_new_binding(&self, generation: u64) {
        for _ in 0..MOVED_PATIENCE {
            if self.instance.binding().is_some_and(|b| b.generation != generation) {
                return;
            }
            self.pd.yield_now();
        }
    }
}
