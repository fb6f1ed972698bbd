//! The key-value service's client stub.
//!
//! A client holds a channel to both slots of its kv instance. Every call
//! reads the instance's binding from the capability map, calls the live
//! slot, and when the slot answers `MOVED` (it has handed its state over)
//! or `NO_SERVICE` (not yet live), re-reads the map and calls again. A slot
//! answers `MOVED` without running the request, so each request runs
//! exactly once, in whichever slot was live when it ran.
#![no_std]

use interfaces::capmap::CapMap;
use interfaces::control::{region, shell_label};
use interfaces::kv::{KvReply, KvRequest, KvStatus};
use interfaces::Message;
use pd_api::{ChannelId, Pd, PpcError};

/// How long a call waits for its instance to become live again.
pub const UNAVAILABLE_AFTER_NS: u64 = 10_000_000_000;
/// Yields a bounced call waits for a new binding before calling again.
pub const MOVED_PATIENCE: u32 = 200;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvError {
    /// The service answered with an error status.
    Status(KvStatus),
    /// The service answered that the call failed.
    Failed,
    /// No slot became live within [`UNAVAILABLE_AFTER_NS`].
    Unavailable,
    /// The reply was malformed.
    BadReply,
}

pub struct KvClient<'p, P: Pd + ?Sized> {
    pd: &'p P,
    capmap: &'p CapMap,
    index: usize,
    slots: [ChannelId; 2],
    /// Calls bounced by a slot and retried.
    pub retried: u64,
    msg: Message,
}

impl<'p, P: Pd + ?Sized> KvClient<'p, P> {
    /// Connects to the instance of service `service` (e.g. `kv`) this PD
    /// has channels to: `{instance}_a` and `{instance}_b`, with the
    /// capability map mapped as `capmap`. Waits for the manager to publish
    /// the map at boot.
    pub fn connect(pd: &'p P, service: &str) -> Result<Self, &'static str> {
        let map = pd.region(region::CAPMAP).ok_or("no 'capmap' region")?;
        if map.size < core::mem::size_of::<CapMap>() || map.base.align_offset(8) != 0 {
            return Err("'capmap' region is too small");
        }
        // SAFETY: the region is mapped for the PD's life, large and aligned
        // enough, and read only through atomics.
        let capmap = unsafe { &*(map.base as *const CapMap) };
        let start = pd.now_ns();
        loop {
            if let Some(found) = Self::find(pd, capmap, service) {
                let (index, slots) = found;
                return Ok(KvClient { pd, capmap, index, slots, retried: 0, msg: Message::default() });
            }
            if pd.now_ns() - start > UNAVAILABLE_AFTER_NS {
                return Err("no instance of the service that this PD has channels to appeared in the capability map");
            }
            pd.yield_now();
        }
    }

    fn find(pd: &P, capmap: &CapMap, service: &str) -> Option<(usize, [ChannelId; 2])> {
        let n = capmap.instances.load(core::sync::atomic::Ordering::Relaxed) as usize;
        (0..n.min(interfaces::capmap::MAX_INSTANCES)).find_map(|i| {
            let name = capmap.entries[i].name.as_str()?;
            if name.trim_end_matches(|c: char| c.is_ascii_digit()) != service || capmap.find(name) != Some(i) {
                return None;
            }
            let mut buf = [0u8; 40];
            let a = pd.channel(concat(&mut buf, name, "_a")?)?;
            let b = pd.channel(concat(&mut buf, name, "_b")?)?;
            Some((i, [a, b]))
        })
    }

    /// Runs `req` exactly once; the reply stays in `self.msg` for parsing.
    fn call(&mut self, req: &KvRequest) -> Result<KvReply<'_>, KvError> {
        // The clock is read only once a retry is needed: on some machines
        // it is a system call, which would double the cost of a call.
        let mut start = None;
        loop {
            let binding = self.capmap.binding(self.index);
            let live = binding.and_then(|b| b.live);
            if let Some(slot) = live {
                req.encode(&mut self.msg).map_err(KvError::Status)?;
                match self.pd.ppcall(self.slots[slot.index()], &mut self.msg) {
                    Ok(()) => match self.msg.label {
                        shell_label::MOVED | shell_label::NO_SERVICE => {
                            self.retried += 1;
                            self.await_new_binding(binding.map_or(0, |b| b.generation));
                        }
                        // The slot failed in the call: it was not
                        // journaled, so if the service goes back to its
                        // previous version (probation) it never ran; retry
                        // once the manager has dealt with the slot.
                        shell_label::FAILED => {
                            self.retried += 1;
                            self.await_new_binding(binding.map_or(0, |b| b.generation));
                        }
                        _ => return KvReply::parse(&self.msg).ok_or(KvError::BadReply),
                    },
                    Err(PpcError::CalleeFaulted) => {
                        self.retried += 1;
                        self.await_new_binding(binding.map_or(0, |b| b.generation));
                    }
                    // The slot went away before it took the call, which so
                    // did not run: look the service up again.
                    Err(PpcError::NotDelivered) => self.retried += 1,
                    Err(PpcError::NoSuchChannel) => return Err(KvError::Unavailable),
                }
            }
            let now = self.pd.now_ns();
            if now - *start.get_or_insert(now) > UNAVAILABLE_AFTER_NS || self.pd.halting() {
                return Err(KvError::Unavailable);
            }
            self.pd.yield_now();
        }
    }

    /// The binding the capability map holds now (for a report).
    pub fn binding(&self) -> Option<interfaces::capmap::Binding> {
        self.capmap.binding(self.index)
    }

    /// After a bounce: gives way until the manager commits a new binding,
    /// rather than calling the old slot again and again (which would take
    /// CPU from the update). Bounded, because an update that fails before
    /// its commit thaws the old slot without a new binding.
    fn await_new_binding(&self, generation: u64) {
        for _ in 0..MOVED_PATIENCE {
            if self.capmap.binding(self.index).is_some_and(|b| b.generation != generation) {
                return;
            }
            self.pd.yield_now();
        }
    }

    fn ok(r: KvReply<'_>) -> Result<KvReply<'_>, KvError> {
        match r.status {
            KvStatus::Ok => Ok(r),
            s => Err(KvError::Status(s)),
        }
    }

    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), KvError> {
        self.call(&KvRequest::Put { key, value }).and_then(Self::ok).map(|_| ())
    }

    /// Copies the value into `out`; `Ok(None)` if the key is absent.
    pub fn get(&mut self, key: &[u8], out: &mut [u8]) -> Result<Option<usize>, KvError> {
        let r = self.call(&KvRequest::Get { key })?;
        match r.status {
            KvStatus::Ok => {
                let n = r.data.len().min(out.len());
                out[..n].copy_from_slice(&r.data[..n]);
                Ok(Some(n))
            }
            KvStatus::NotFound => Ok(None),
            s => Err(KvError::Status(s)),
        }
    }

    /// `Ok(false)` if the key was absent.
    pub fn delete(&mut self, key: &[u8]) -> Result<bool, KvError> {
        let r = self.call(&KvRequest::Delete { key })?;
        match r.status {
            KvStatus::Ok => Ok(true),
            KvStatus::NotFound => Ok(false),
            s => Err(KvError::Status(s)),
        }
    }

    /// Calls `f` with each key from `cursor`; returns the next cursor.
    pub fn list(&mut self, cursor: u32, mut f: impl FnMut(&[u8])) -> Result<u32, KvError> {
        let r = self.call(&KvRequest::List { cursor }).and_then(Self::ok)?;
        r.list_keys().for_each(&mut f);
        Ok(r.aux)
    }

    /// The module version serving this client (kv v2 and later).
    pub fn version(&mut self) -> Result<u32, KvError> {
        self.call(&KvRequest::Version).and_then(Self::ok).map(|r| r.aux)
    }
}

fn concat<'b>(buf: &'b mut [u8; 40], a: &str, b: &str) -> Option<&'b str> {
    let n = a.len() + b.len();
    buf.get_mut(..a.len())?.copy_from_slice(a.as_bytes());
    buf.get_mut(a.len()..n)?.copy_from_slice(b.as_bytes());
    core::str::from_utf8(&buf[..n]).ok()
}
