//! The capability map: which slot of each service instance is live.
//!
//! K42's object translation table, as one memory region written only by the
//! update manager and mapped read-only in every client. Each entry is a
//! single 64-bit word so that a commit is one atomic store: a client sees
//! either the old slot or the new one, never a mix.
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

pub const CAPMAP_MAGIC: u32 = 0x4341_504d; // "CAPM"
pub const MAX_INSTANCES: usize = 32;

/// A slot of a service instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    A = 0,
    B = 1,
}

impl Slot {
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }
    pub fn index(self) -> usize {
        self as usize
    }
    pub fn letter(self) -> char {
        match self {
            Slot::A => 'a',
            Slot::B => 'b',
        }
    }
}

/// One decoded capability-map entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Binding {
    /// Bumped on every commit, so a client can tell a new binding from a
    /// rollback to the same slot.
    pub generation: u64,
    pub live: Option<Slot>,
}

impl Binding {
    const NONE: u64 = 0xff;

    pub fn encode(self) -> u64 {
        let slot = self.live.map_or(Self::NONE, |s| s as u64);
        (self.generation << 8) | slot
    }

    pub fn decode(word: u64) -> Binding {
        let live = match word & 0xff {
            0 => Some(Slot::A),
            1 => Some(Slot::B),
            _ => None,
        };
        Binding { generation: word >> 8, live }
    }
}

/// One service instance: its name and its service type (both written once,
/// at boot, before the magic is published) and its binding word.
#[repr(C)]
pub struct CapEntry {
    pub name: crate::Name,
    /// The service type (`kv`, `ipv6`): clients find their instance by it.
    pub service: crate::Name,
    pub word: AtomicU64,
}

#[repr(C)]
pub struct CapMap {
    pub magic: AtomicU32,
    pub instances: AtomicU32,
    pub entries: [CapEntry; MAX_INSTANCES],
}

pub const CAPMAP_SIZE: usize = core::mem::size_of::<CapMap>();

impl CapMap {
    /// Reads the live binding of instance `index`. `Acquire` pairs with the
    /// manager's `Release` in [`CapMap::commit`], so everything the manager
    /// did before the commit (the new slot's import) is visible after it.
    pub fn binding(&self, index: usize) -> Option<Binding> {
        if self.magic.load(Ordering::Acquire) != CAPMAP_MAGIC {
            return None;
        }
        let e = self.entries.get(index)?;
        Some(Binding::decode(e.word.load(Ordering::Acquire)))
    }

    /// The entry index of the instance named `name`.
    pub fn find(&self, name: &str) -> Option<usize> {
        if self.magic.load(Ordering::Acquire) != CAPMAP_MAGIC {
            return None;
        }
        let n = (self.instances.load(Ordering::Relaxed) as usize).min(MAX_INSTANCES);
        self.entries[..n].iter().position(|e| e.name.as_str() == Some(name))
    }

    /// The service type of entry `index` (empty before the map is published).
    pub fn service(&self, index: usize) -> Option<&str> {
        if self.magic.load(Ordering::Acquire) != CAPMAP_MAGIC {
            return None;
        }
        self.entries.get(index)?.service.as_str()
    }

    /// Manager only: formats a map of `instances` (instance name, service
    /// type), none bound yet.
    ///
    /// # Safety
    /// No client may read the map while it is formatted (the names are
    /// plain data, published by the Release store of `magic`).
    pub unsafe fn format(&self, instances: &[(&str, &str)]) {
        self.magic.store(0, Ordering::Release);
        for (i, e) in self.entries.iter().enumerate() {
            let name = |s: Option<&str>| s.and_then(crate::Name::try_new).unwrap_or(crate::Name::EMPTY);
            let (inst, service) = (name(instances.get(i).map(|x| x.0)), name(instances.get(i).map(|x| x.1)));
            // SAFETY: per this function's contract nobody reads the names now.
            unsafe {
                core::ptr::write_volatile(core::ptr::addr_of!(e.name).cast_mut(), inst);
                core::ptr::write_volatile(core::ptr::addr_of!(e.service).cast_mut(), service);
            }
            e.word.store(Binding { generation: 0, live: None }.encode(), Ordering::Relaxed);
        }
        self.instances.store(instances.len().min(MAX_INSTANCES) as u32, Ordering::Relaxed);
        self.magic.store(CAPMAP_MAGIC, Ordering::Release);
    }

    /// Manager only: points instance `index` at `binding`, in one store.
    pub fn commit(&self, index: usize, binding: Binding) {
        self.entries[index].word.store(binding.encode(), Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binding_round_trips() {
        for b in [
            Binding { generation: 0, live: None },
            Binding { generation: 7, live: Some(Slot::B) },
            Binding { generation: (1 << 56) - 1, live: Some(Slot::A) },
        ] {
            assert_eq!(Binding::decode(b.encode()), b);
        }
        assert_eq!(Binding::decode(0x0012_3457).live, None, "garbage slot reads as none");
    }
}
