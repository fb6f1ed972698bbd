//! Pre-copy in the shell (`abi::features::PRECOPY`): the incremental
//! export at the stop, after the module's whole export while it served,
//! and its import by a slot that imported that export. Everything the
//! other slot wrote (the list of changed ranges) is checked before the
//! module sees it; any failure here makes the caller fall back to the
//! whole state.
use alloc::{format, string::String, vec::Vec};
use interfaces::abi::{features, status, ModuleEntry, StateRange};
use interfaces::transfer::Transfer;

/// The most changed ranges an incremental export may list (16 KiB of
/// shell heap while it runs); a module with more exports its whole state.
pub const MAX_CHANGES: usize = 1024;

/// A pre-copy this slot's module exported: the transfer region holds its
/// `len` bytes in `schema` under `token`, and the module tracks its
/// changes against them.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Precopied {
    pub token: u64,
    pub schema: u32,
    pub len: usize,
}

/// The module of a slot that pre-copied `p` brings the transfer region up
/// to date and lists what it rewrote; sealed with the list after the state.
pub fn export_changes(entry: &ModuleEntry, t: &Transfer, p: Precopied) -> Result<(), String> {
    let f = entry.export_changes.filter(|_| entry.features & features::PRECOPY != 0).ok_or("the module has none")?;
    let mut changes = Vec::new();
    changes.resize(MAX_CHANGES, StateRange::default());
    let (mut len, mut n) = (p.len, 0usize);
    // SAFETY: the region's body holds the module's pre-copy, which no one
    // wrote since (the other slot only read it); the module writes at most
    // `capacity` bytes of it and `MAX_CHANGES` ranges into `changes`.
    let rc = unsafe { f(p.schema, t.body(), t.capacity(), &mut len, changes.as_mut_ptr(), MAX_CHANGES, &mut n) };
    if rc != status::OK {
        return Err(format!("the module answered status {rc}"));
    }
    if len > t.capacity() || n > MAX_CHANGES {
        return Err(format!("the module claims {len} bytes and {n} ranges, beyond their room"));
    }
    t.seal_changes(len, p.token, &changes[..n])?;
    Ok(())
}

/// The module, which imported the pre-copy `base`, takes over the ranges
/// the sealed export of `len` bytes lists as changed since; each is
/// checked to lie within the state first. Returns the bytes it took.
pub fn import_changes(entry: &ModuleEntry, t: &Transfer, schema: u32, len: usize, base: u64) -> Result<u64, String> {
    let f = entry.import_changes.filter(|_| entry.features & features::PRECOPY != 0).ok_or("the module has none")?;
    let (against, n) = t.changes_against().ok_or("the export is a whole one")?;
    if against != base {
        return Err(format!("the export lists changes against export {against:#x}, not the pre-copy {base:#x}"));
    }
    if n > MAX_CHANGES {
        return Err(format!("the export lists {n} changed ranges, more than {MAX_CHANGES}"));
    }
    let mut changes = Vec::with_capacity(n);
    let mut bytes = 0u64;
    for i in 0..n {
        let r = t.change(len, n, i).ok_or("a changed range lies outside the state")?;
        bytes += r.len() as u64;
        changes.push(StateRange { start: r.start as u64, len: r.len() as u64 });
    }
    // SAFETY: the body's first `len` bytes are sealed state, which the
    // stopped exporter writes no more; every range lies within them.
    let rc = unsafe { f(schema, t.body(), len, changes.as_ptr(), n) };
    if rc != status::OK {
        return Err(format!("the module answered status {rc}"));
    }
    Ok(bytes)
}
