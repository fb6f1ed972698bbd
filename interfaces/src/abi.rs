//! Module ABI v1: the contract between a domain shell and the service
//! module it hosts.
//!
//! A module image exports two symbols:
//! - `UPD_MODULE_DESCRIPTOR`: a [`ModuleDescriptor`], plain data the manager
//!   reads out of the image *before* loading it, to admit or refuse it;
//! - `UPD_MODULE_ENTRY`: a [`ModuleEntry`], the table of entry points the
//!   shell calls once the image is loaded.
//!
//! The shell hands the module a [`ShellEnv`]: everything a module may do
//! goes through it, so a module never knows which backend it runs on.
use crate::{message::Message, name::Name};
use core::ffi::c_void;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

pub const ABI_VERSION: u32 = 1;
pub const DESCRIPTOR_MAGIC: [u8; 8] = *b"UPDMOD\x00\x01";
pub const DESCRIPTOR_SYMBOL: &str = "UPD_MODULE_DESCRIPTOR";
pub const ENTRY_SYMBOL: &str = "UPD_MODULE_ENTRY";

pub const MAX_IMPORT_SCHEMAS: usize = 4;
pub const MAX_CHANNELS: usize = 8;
pub const MAX_REGIONS: usize = 4;

/// What a module says about itself. Read by the manager from the image
/// bytes, so every field is validated by [`ModuleDescriptor::check`].
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct ModuleDescriptor {
    pub magic: [u8; 8],
    pub abi_version: u32,
    pub descriptor_size: u32,
    pub service: Name,
    pub module_version: u32,
    /// The schema of the state this version exports.
    pub state_schema: u32,
    /// Schemas this version can import (its own is implied).
    pub import_schemas: [u32; MAX_IMPORT_SCHEMAS],
    /// Older schemas this version can export its state in, for a rollback
    /// to a version that cannot read its own (its own is implied).
    pub export_schemas: [u32; MAX_IMPORT_SCHEMAS],
    pub n_import_schemas: u32,
    pub n_export_schemas: u32,
    pub n_channels: u32,
    pub n_regions: u32,
    /// Channels the module needs, by the name of the peer PD.
    pub channels: [Name; MAX_CHANNELS],
    /// Memory regions the module needs, by their local name in the slot.
    pub regions: [Name; MAX_REGIONS],
}

/// Why a descriptor is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DescriptorError {
    BadMagic,
    AbiVersion(u32),
    Size(u32),
    BadName,
    TooMany(&'static str),
}

impl core::fmt::Display for DescriptorError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::BadMagic => write!(f, "not a module: bad descriptor magic"),
            Self::AbiVersion(v) => {
                write!(f, "module ABI version {v} is not supported (this shell speaks {ABI_VERSION})")
            }
            Self::Size(s) => write!(f, "descriptor size {s} does not match ABI v{ABI_VERSION}"),
            Self::BadName => write!(f, "descriptor holds a name that is not valid text"),
            Self::TooMany(what) => write!(f, "descriptor lists too many {what}"),
        }
    }
}

impl ModuleDescriptor {
    pub const SIZE: usize = core::mem::size_of::<ModuleDescriptor>();

    /// A descriptor for `service` at `version`, exporting `state_schema`.
    pub const fn new(service: &str, version: u32, state_schema: u32) -> Self {
        ModuleDescriptor {
            magic: DESCRIPTOR_MAGIC,
            abi_version: ABI_VERSION,
            descriptor_size: Self::SIZE as u32,
            service: Name::new(service),
            module_version: version,
            state_schema,
            import_schemas: [0; MAX_IMPORT_SCHEMAS],
            export_schemas: [0; MAX_IMPORT_SCHEMAS],
            n_import_schemas: 0,
            n_export_schemas: 0,
            n_channels: 0,
            n_regions: 0,
            channels: [Name::EMPTY; MAX_CHANNELS],
            regions: [Name::EMPTY; MAX_REGIONS],
        }
    }

    pub const fn imports(mut self, schema: u32) -> Self {
        self.import_schemas[self.n_import_schemas as usize] = schema;
        self.n_import_schemas += 1;
        self
    }

    pub const fn exports(mut self, schema: u32) -> Self {
        self.export_schemas[self.n_export_schemas as usize] = schema;
        self.n_export_schemas += 1;
        self
    }

    pub const fn channel(mut self, peer: &str) -> Self {
        self.channels[self.n_channels as usize] = Name::new(peer);
        self.n_channels += 1;
        self
    }

    pub const fn region(mut self, name: &str) -> Self {
        self.regions[self.n_regions as usize] = Name::new(name);
        self.n_regions += 1;
        self
    }

    /// Parses and validates a descriptor from untrusted bytes.
    pub fn parse(bytes: &[u8]) -> Result<&ModuleDescriptor, DescriptorError> {
        let (d, _) = ModuleDescriptor::ref_from_prefix(bytes).map_err(|_| DescriptorError::Size(bytes.len() as u32))?;
        d.check()?;
        Ok(d)
    }

    pub fn check(&self) -> Result<(), DescriptorError> {
        if self.magic != DESCRIPTOR_MAGIC {
            return Err(DescriptorError::BadMagic);
        }
        if self.abi_version != ABI_VERSION {
            return Err(DescriptorError::AbiVersion(self.abi_version));
        }
        if self.descriptor_size as usize != Self::SIZE {
            return Err(DescriptorError::Size(self.descriptor_size));
        }
        if self.n_import_schemas as usize > MAX_IMPORT_SCHEMAS {
            return Err(DescriptorError::TooMany("import schemas"));
        }
        if self.n_export_schemas as usize > MAX_IMPORT_SCHEMAS {
            return Err(DescriptorError::TooMany("export schemas"));
        }
        if self.n_channels as usize > MAX_CHANNELS {
            return Err(DescriptorError::TooMany("channels"));
        }
        if self.n_regions as usize > MAX_REGIONS {
            return Err(DescriptorError::TooMany("regions"));
        }
        let names = core::iter::once(&self.service).chain(self.channels()).chain(self.regions());
        for n in names {
            if n.as_str().is_none_or(str::is_empty) {
                return Err(DescriptorError::BadName);
            }
        }
        Ok(())
    }

    pub fn service(&self) -> &str {
        self.service.as_str().unwrap_or("<invalid>")
    }

    pub fn channels(&self) -> impl Iterator<Item = &Name> {
        self.channels.iter().take((self.n_channels as usize).min(MAX_CHANNELS))
    }

    pub fn regions(&self) -> impl Iterator<Item = &Name> {
        self.regions.iter().take((self.n_regions as usize).min(MAX_REGIONS))
    }

    /// Whether this module can take over state exported with `schema`.
    pub fn can_import(&self, schema: u32) -> bool {
        schema == self.state_schema
            || self.import_schemas[..(self.n_import_schemas as usize).min(MAX_IMPORT_SCHEMAS)].contains(&schema)
    }

    /// Whether this module can export its state in `schema`.
    pub fn can_export(&self, schema: u32) -> bool {
        schema == self.state_schema
            || self.export_schemas[..(self.n_export_schemas as usize).min(MAX_IMPORT_SCHEMAS)].contains(&schema)
    }

    /// The schema to hand state over in, from a module described by `self`
    /// to one described by `to`: the exporter's own schema if the importer
    /// reads it (nothing is lost in translation), else the importer's own if
    /// the exporter can write it. `None`: they share no schema.
    pub fn transfer_schema(&self, to: &ModuleDescriptor) -> Option<u32> {
        if to.can_import(self.state_schema) {
            Some(self.state_schema)
        } else if self.can_export(to.state_schema) {
            Some(to.state_schema)
        } else {
            None
        }
    }
}

/// Status codes returned by module entry points.
pub mod status {
    pub const OK: i32 = 0;
    pub const NOT_READY: i32 = 1;
    pub const ERROR: i32 = -1;
    pub const UNSUPPORTED_SCHEMA: i32 = -2;
    pub const BAD_STATE: i32 = -3;
    pub const NO_SPACE: i32 = -4;
    /// The module does not do what it was asked (an optional entry point):
    /// the shell takes the general way instead.
    pub const UNSUPPORTED: i32 = -5;
}

/// A memory region as the shell describes it to a module.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct RegionInfo {
    pub base: *mut u8,
    pub size: usize,
    pub writable: u32,
    pub _reserved: u32,
}

/// Optional capabilities, announced in the `features` word of
/// [`ShellEnv`] (by a shell) and of [`ModuleEntry`] (by a module). A feature
/// is used only when both sides announce it, so modules and shells built
/// before it still work together with the ones after.
pub mod features {
    /// Streamed state transfer. A shell announcing it fills
    /// `ShellEnv::state_published` and `ShellEnv::state_wait`. A module
    /// announcing it, hosted by such a shell, reports its export's progress
    /// through the first, and in `import_state` takes `len` as the room in
    /// the transfer region, learning through the second how many bytes are
    /// in place and where the state ends.
    pub const STREAMED_STATE: u32 = 1;
    /// Pre-copy of the state (live migration's pre-copy): the old version
    /// exports its whole state while it still serves, and at the stop only
    /// rewrites what changed since; the new version imports the whole state
    /// early and at the stop only the changed ranges. A module announcing
    /// it fills `ModuleEntry::export_changes` and
    /// `ModuleEntry::import_changes` (either may be absent: the shell then
    /// exports or imports the whole state at the stop, as without it). It
    /// suits a state whose exported bytes stay where they are as it
    /// changes (an array, a table of fixed records); a state whose encoding
    /// shifts on every insert gains nothing from it.
    pub const PRECOPY: u32 = 2;
}

/// The services a shell offers its module. `ctx` is the shell's own and is
/// passed back unchanged on every call.
#[repr(C)]
pub struct ShellEnv {
    pub abi_version: u32,
    /// [`features`] this shell offers.
    pub features: u32,
    pub ctx: *mut c_void,
    pub notify: unsafe extern "C" fn(ctx: *mut c_void, channel: u32),
    /// Returns 0, or a negative value if the call could not be delivered.
    pub ppcall: unsafe extern "C" fn(ctx: *mut c_void, channel: u32, msg: *mut Message) -> i32,
    pub irq_ack: unsafe extern "C" fn(ctx: *mut c_void, channel: u32),
    /// Looks up a channel by the peer's name; -1 if the slot has none.
    pub channel: unsafe extern "C" fn(ctx: *mut c_void, name: *const u8, len: usize) -> i32,
    /// Looks up a region by local name; 0 and `*out` filled, or -1.
    pub region: unsafe extern "C" fn(ctx: *mut c_void, name: *const u8, len: usize, out: *mut RegionInfo) -> i32,
    pub log: unsafe extern "C" fn(ctx: *mut c_void, text: *const u8, len: usize),
    /// Ends the module's current entry with an error; never returns.
    pub abort: unsafe extern "C" fn(ctx: *mut c_void, text: *const u8, len: usize) -> !,
    /// During `export_state` ([`features::STREAMED_STATE`]): the first `n`
    /// bytes of the buffer hold their final values.
    pub state_published: unsafe extern "C" fn(ctx: *mut c_void, n: usize),
    /// During `import_state` ([`features::STREAMED_STATE`]): waits until at
    /// least `want` state bytes are in place or the state is complete, and
    /// returns how many are in place, with [`STATE_COMPLETE`] set once that
    /// is the whole state; negative if the export failed or stalled.
    pub state_wait: unsafe extern "C" fn(ctx: *mut c_void, want: usize) -> i64,
}

/// Set in `state_wait`'s result when the count is the state's whole length.
pub const STATE_COMPLETE: i64 = 1 << 62;

/// The entry points a module exports. The shell calls them one at a time,
/// never concurrently.
#[repr(C)]
pub struct ModuleEntry {
    pub abi_version: u32,
    /// [`features`] this module uses when its shell offers them.
    pub features: u32,
    pub init: unsafe extern "C" fn(env: *const ShellEnv) -> i32,
    pub notified: unsafe extern "C" fn(channel: u32),
    pub protected: unsafe extern "C" fn(channel: u32, msg: *mut Message),
    /// `status::OK` when quiescent, `status::NOT_READY` to be asked again.
    /// On a checkpoint probation also asked after every call (the module
    /// serves on): `status::OK` once the call's effects are durable.
    pub prepare: unsafe extern "C" fn() -> i32,
    /// Writes the state in `schema` (its own or one it lists as exportable).
    pub export_state: unsafe extern "C" fn(schema: u32, buf: *mut u8, cap: usize, out_len: *mut usize) -> i32,
    pub import_state: unsafe extern "C" fn(schema: u32, buf: *const u8, len: usize) -> i32,
    /// Called by a shell only when `features` has [`features::PRECOPY`];
    /// `None` (null in C) where the module has no such entry. Brings `buf`
    /// up to date: it holds the module's last export in `schema` (made by
    /// `export_state` or by this), `*len` bytes long. The module rewrites
    /// every byte that changed since that export, sets `*len` to the new
    /// length (at most `cap`), and lists the ranges it rewrote (bytes at or
    /// above the old length included) in `changes`, at most `max_changes`
    /// of them, their number in `*n_changes`. Any status but `OK` (say
    /// `NO_SPACE` when the changes do not fit the list) makes the shell run
    /// a whole `export_state` instead. From its return on, the module
    /// tracks its changes against this export.
    pub export_changes: Option<
        unsafe extern "C" fn(
            schema: u32,
            buf: *mut u8,
            cap: usize,
            len: *mut usize,
            changes: *mut StateRange,
            max_changes: usize,
            n_changes: *mut usize,
        ) -> i32,
    >,
    /// Called only with [`features::PRECOPY`]; `None` where the module
    /// has no such entry. The module's state was
    /// imported from an earlier image of `buf`, in `schema`; now `buf`
    /// holds the current one, `len` bytes, and `changes` lists the ranges
    /// rewritten since (each within `len`, checked by the shell). The
    /// module takes those ranges over and validates them as an import
    /// would. Any status but `OK` makes the shell import the whole state
    /// with `import_state` instead.
    pub import_changes: Option<
        unsafe extern "C" fn(
            schema: u32,
            buf: *const u8,
            len: usize,
            changes: *const StateRange,
            n_changes: usize,
        ) -> i32,
    >,
}

/// A byte range of an exported state, as a pre-copy's changes list it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct StateRange {
    pub start: u64,
    pub len: u64,
}

impl StateRange {
    /// The range as indices into a state of `len` bytes, if it lies within.
    pub fn within(&self, len: usize) -> Option<core::ops::Range<usize>> {
        let start = usize::try_from(self.start).ok()?;
        let end = start.checked_add(usize::try_from(self.len).ok()?)?;
        (end <= len).then_some(start..end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: ModuleDescriptor = ModuleDescriptor::new("kv", 2, 2).imports(1).channel("serial").region("capmap");

    #[test]
    fn descriptor_round_trips() {
        let d = ModuleDescriptor::parse(D.as_bytes()).unwrap();
        assert_eq!(d.service(), "kv");
        assert!(d.can_import(1) && d.can_import(2) && !d.can_import(3));
        let v1 = ModuleDescriptor::new("kv", 1, 1);
        let v3 = ModuleDescriptor::new("kv", 3, 3).exports(1);
        assert_eq!(v1.transfer_schema(d), Some(1), "the newer one reads the older state");
        assert_eq!(d.transfer_schema(&v1), None, "v1 reads only 1, and this v2 cannot write it");
        assert_eq!(v3.transfer_schema(&v1), Some(1), "a downgrade the newer one can write");
        assert_eq!(d.channels().count(), 1);
        assert_eq!(d.channels().next().unwrap().as_str(), Some("serial"));
    }

    #[test]
    fn each_header_fault_is_named() {
        let mut d = D;
        d.magic[0] = b'X';
        assert_eq!(d.check(), Err(DescriptorError::BadMagic));
        let mut d = D;
        d.abi_version = 9;
        assert_eq!(d.check(), Err(DescriptorError::AbiVersion(9)));
        let mut d = D;
        d.descriptor_size = 4;
        assert_eq!(d.check(), Err(DescriptorError::Size(4)));
        let mut d = D;
        d.n_channels = 99;
        assert_eq!(d.check(), Err(DescriptorError::TooMany("channels")));
        let mut d = D;
        d.service = Name([0xff; 32]);
        assert_eq!(d.check(), Err(DescriptorError::BadName));
        assert!(ModuleDescriptor::parse(&D.as_bytes()[..10]).is_err());
    }
}
