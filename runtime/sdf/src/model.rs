//! The parsed system description.

pub const MAX_PDS: usize = 63;
/// Channel and IRQ ids must be below this (the and Microkit's limit).
pub const MAX_CHANNEL_ID: u64 = 62;
pub const MAX_PRIORITY: u64 = 254;
pub const PAGE_SIZES: [u64; 2] = [0x1000, 0x20_0000];
pub const SMALL_PAGE: u64 = 0x1000;

/// Where an element came from, for error messages.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Origin {
    pub line: u32,
    pub element: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Perms {
    pub read: bool,
    pub write: bool,
    pub execute: bool,
}

impl Perms {
    /// Parses Microkit's `perms` attribute.
    pub fn parse(s: &str) -> Option<Perms> {
        let mut p = Perms { read: false, write: false, execute: false };
        for c in s.chars() {
            let flag = match c {
                'r' => &mut p.read,
                'w' => &mut p.write,
                'x' => &mut p.execute,
                _ => return None,
            };
            if *flag {
                return None; // repeated letter
            }
            *flag = true;
        }
        // No empty mapping, and no write-only mapping.
        (p.read || p.execute || p.write).then_some(())?;
        (!(p.write && !p.read && !p.execute)).then_some(p)
    }
}

impl std::fmt::Display for Perms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (on, c) in [(self.read, 'r'), (self.write, 'w'), (self.execute, 'x')] {
            if on {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Map {
    pub mr: String,
    pub vaddr: u64,
    pub perms: Perms,
    pub cached: bool,
    pub setvar_vaddr: Option<String>,
    pub setvar_size: Option<String>,
    pub origin: Origin,
}

impl Map {
    /// The name a program uses for this mapping: its `setvar_vaddr` symbol
    /// if it has one, else the region's name.
    pub fn local_name(&self) -> &str {
        self.setvar_vaddr.as_deref().unwrap_or(&self.mr)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Irq {
    pub irq: u64,
    pub id: u64,
    pub origin: Origin,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtectionDomain {
    pub name: String,
    pub priority: u8,
    pub passive: bool,
    pub stack_size: u64,
    pub program_image: String,
    pub maps: Vec<Map>,
    pub irqs: Vec<Irq>,
    /// Index of the parent PD in [`System::pds`].
    pub parent: Option<usize>,
    /// The id the parent knows this child by.
    pub child_id: Option<u64>,
    pub origin: Origin,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryRegion {
    pub name: String,
    pub size: u64,
    pub page_size: Option<u64>,
    pub phys_addr: Option<u64>,
    pub prefill_path: Option<String>,
    pub origin: Origin,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct End {
    /// Index into [`System::pds`].
    pub pd: usize,
    pub id: u64,
    pub pp: bool,
    pub notify: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Channel {
    pub ends: [End; 2],
    pub origin: Origin,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct System {
    /// Every PD, children after their parent, in document order.
    pub pds: Vec<ProtectionDomain>,
    pub regions: Vec<MemoryRegion>,
    pub channels: Vec<Channel>,
}

impl System {
    pub fn pd(&self, name: &str) -> Option<usize> {
        self.pds.iter().position(|p| p.name == name)
    }

    pub fn region(&self, name: &str) -> Option<&MemoryRegion> {
        self.regions.iter().find(|r| r.name == name)
    }

    /// The children of PD `pd`, as (index, child id).
    pub fn children(&self, pd: usize) -> impl Iterator<Item = (usize, u64)> + '_ {
        self.pds
            .iter()
            .enumerate()
            .filter(move |(_, p)| p.parent == Some(pd))
            .map(|(i, p)| (i, p.child_id.unwrap_or(0)))
    }

    /// Channel ends of `pd`: (its own end, the peer's end).
    pub fn ends_of(&self, pd: usize) -> impl Iterator<Item = (&End, &End)> + '_ {
        self.channels.iter().filter_map(move |c| {
            let [a, b] = &c.ends;
            if a.pd == pd {
                Some((a, b))
            } else if b.pd == pd {
                Some((b, a))
            } else {
                None
            }
        })
    }
}
