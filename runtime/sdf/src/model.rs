//! The parsed system description.

pub use crate::platform::{MAX_CHANNEL_ID, MAX_PDS, MAX_PRIORITY, PAGE_SIZES, SMALL_PAGE};

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
    /// Parses Microkit's `perms` attribute as the tool does: any string of
    /// `r`, `w` and `x` (repeats and the empty string included), except a
    /// write-only one.
    pub fn parse(s: &str) -> Option<Perms> {
        let mut p = Perms { read: false, write: false, execute: false };
        for c in s.chars() {
            match c {
                'r' => p.read = true,
                'w' => p.write = true,
                'x' => p.execute = true,
                _ => return None,
            }
        }
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
    pub setvar_prefill_size: Option<String>,
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
    /// Edge triggered (else level, the default).
    pub edge: bool,
    pub origin: Origin,
}

/// A symbol the tool sets in a PD's program image (any `setvar*`), with the
/// element that asks for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Symbol {
    pub name: String,
    pub origin: Origin,
}

/// A `setvar` element: the symbol is set to a region's physical address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetVar {
    pub symbol: String,
    pub region_paddr: String,
    pub origin: Origin,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapKind {
    Tcb,
    Sc,
    VSpace,
}

/// An extra capability in a PD's CSpace (`<cspace>`), to another PD's object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapMap {
    pub kind: CapKind,
    pub pd: String,
    pub slot: u64,
    pub origin: Origin,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vcpu {
    pub id: u64,
    pub cpu: u8,
    pub origin: Origin,
}

/// A guest, run by the PD it is declared in (its VMM).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtualMachine {
    pub name: String,
    /// Not range-checked by the microkit tool (it truncates to a byte).
    pub priority: u64,
    pub budget: u64,
    pub period: u64,
    pub vcpus: Vec<Vcpu>,
    pub maps: Vec<Map>,
    pub origin: Origin,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtectionDomain {
    pub name: String,
    pub priority: u8,
    pub passive: bool,
    pub stack_size: u64,
    pub budget: u64,
    pub period: u64,
    pub cpu: u8,
    pub smc: bool,
    pub fpu: bool,
    /// The scheduling domain, when the system declares `<domains>`.
    pub domain: Option<String>,
    pub program_image: String,
    pub program_image_for_symbols: Option<String>,
    pub maps: Vec<Map>,
    pub irqs: Vec<Irq>,
    pub setvars: Vec<SetVar>,
    /// Every symbol set in this PD's image: by its maps, IRQs, setvars,
    /// children and channel ends (not by vCPUs: the tool ignores theirs).
    pub symbols: Vec<Symbol>,
    pub cap_maps: Vec<CapMap>,
    pub vm: Option<VirtualMachine>,
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
    /// `prefill_bootinfo`: filled at boot (e.g. `fdt`); sized one page.
    pub prefill_bootinfo: Option<String>,
    pub origin: Origin,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct End {
    /// Index into [`System::pds`].
    pub pd: usize,
    pub id: u64,
    pub pp: bool,
    pub notify: bool,
    pub setvar_id: Option<String>,
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
    /// The domain schedule, if the system declares one.
    pub domains: Option<Domains>,
    /// The `<system>` element.
    pub origin: Origin,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Domains {
    /// Domain names with their ids (given, or assigned as the tool does).
    pub ids: Vec<(String, u8)>,
    /// Schedule entries (end markers included).
    pub schedule_len: usize,
    pub origin: Origin,
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
