//! The rules that need a PD's program image, applied as the microkit tool
//! applies them to AArch64 ELF images (host images, which the tool never
//! sees, are left alone): the image has program headers and a symbol table;
//! libmicrokit's variables are there, large enough and inside a loaded
//! segment; every symbol a `setvar` sets is there once, one word long and
//! loaded; and no mapping covers a loaded segment.
use super::err;
use crate::{model::*, SdfError};
use std::collections::HashMap;

const AARCH64: u16 = 183;

struct Elf {
    /// Loadable segments: (vaddr, memsz).
    segments: Vec<(u64, u64)>,
    /// name -> (value, size, defined more than once).
    symbols: HashMap<String, (u64, u64, bool)>,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Whether `bytes` is an AArch64 ELF: the images these rules are for.
fn is_aarch64(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\x7fELF") && u16_at(bytes, 18) == Some(AARCH64)
}

impl Elf {
    fn read(b: &[u8]) -> Result<Elf, String> {
        let truncated = || "the ELF file is truncated".to_owned();
        if b.get(4) != Some(&2) {
            return Err("the ELF file is not 64-bit".into());
        }
        if b.get(5) != Some(&1) {
            return Err("the ELF file is not little-endian".into());
        }
        let (phoff, shoff) = (u64_at(b, 32).ok_or_else(truncated)?, u64_at(b, 40).ok_or_else(truncated)?);
        let (phentsize, phnum) = (u16_at(b, 54).ok_or_else(truncated)?, u16_at(b, 56).ok_or_else(truncated)?);
        let (shentsize, shnum) = (u16_at(b, 58).ok_or_else(truncated)?, u16_at(b, 60).ok_or_else(truncated)?);
        if phnum == 0 {
            return Err("the ELF file has no program headers".into());
        }
        let mut segments = Vec::new();
        for i in 0..phnum as usize {
            let ph = phoff as usize + i * phentsize as usize;
            if u32_at(b, ph).ok_or_else(truncated)? == 1 {
                segments.push((u64_at(b, ph + 16).ok_or_else(truncated)?, u64_at(b, ph + 40).ok_or_else(truncated)?));
            }
        }
        // (offset, size, link) of each section; the last symbol table counts.
        let sections: Vec<(u64, u64, u32, u32)> = (0..shnum as usize)
            .map(|i| {
                let sh = shoff as usize + i * shentsize as usize;
                Some((u64_at(b, sh + 24)?, u64_at(b, sh + 32)?, u32_at(b, sh + 40)?, u32_at(b, sh + 4)?))
            })
            .collect::<Option<_>>()
            .ok_or_else(truncated)?;
        let &(offset, size, link, _) =
            sections.iter().rev().find(|s| s.3 == 2).ok_or("the ELF file has no symbol table")?;
        let &(str_offset, str_size, _, _) = sections.get(link as usize).ok_or_else(truncated)?;
        let strtab = b.get(str_offset as usize..(str_offset + str_size) as usize).ok_or_else(truncated)?;
        let mut symbols: HashMap<String, (u64, u64, bool)> = HashMap::new();
        for at in (offset..offset + size).step_by(24) {
            let at = at as usize;
            let name_at = u32_at(b, at).ok_or_else(truncated)? as usize;
            let name = strtab.get(name_at..).and_then(|s| s.split(|&c| c == 0).next()).ok_or_else(truncated)?;
            let name = std::str::from_utf8(name).map_err(|_| "a symbol name is not UTF-8")?;
            let (value, size) = (u64_at(b, at + 8).ok_or_else(truncated)?, u64_at(b, at + 16).ok_or_else(truncated)?);
            symbols.entry(name.to_owned()).and_modify(|s| s.2 = true).or_insert((value, size, false));
        }
        Ok(Elf { segments, symbols })
    }

    /// The symbol's size, if it is defined once and lies in a loaded segment.
    fn writable(&self, name: &str) -> Result<u64, String> {
        match self.symbols.get(name) {
            None => Err(format!("no symbol '{name}' in the program image")),
            Some((_, _, true)) => Err(format!("symbol '{name}' is defined more than once in the program image")),
            Some(&(value, size, false)) => {
                let end = value.checked_add(size).ok_or(format!("symbol '{name}' wraps the address space"))?;
                match self.segments.iter().any(|&(v, m)| value >= v && end <= v.saturating_add(m)) {
                    true => Ok(size),
                    false => Err(format!("symbol '{name}' is in no loaded segment of the program image")),
                }
            }
        }
    }
}

/// Checks PD `pd` against its image (`image`, and `for_symbols` if it has a
/// separate file for symbols), if the image is an AArch64 ELF.
pub(super) fn check_image(
    sys: &System,
    pd: &ProtectionDomain,
    image: &[u8],
    for_symbols: Option<&[u8]>,
) -> Result<(), SdfError> {
    if !is_aarch64(image) {
        return Ok(());
    }
    let e = |m: String| err(&pd.origin, format!("program image '{}': {m}", pd.program_image));
    let segments = Elf::read(image).map_err(e)?.segments;
    let elf = Elf { segments, symbols: Elf::read(for_symbols.unwrap_or(image)).map_err(e)?.symbols };
    let name_len = pd.name.len().min(64) as u64;
    let libmicrokit = [
        ("microkit_name", name_len),
        ("microkit_passive", 1),
        ("microkit_irqs", 8),
        ("microkit_notifications", 8),
        ("microkit_pps", 8),
        ("microkit_ioports", 8),
    ];
    for (name, needed) in libmicrokit {
        let size = elf.writable(name).map_err(e)?;
        if size < needed {
            return Err(e(format!("symbol '{name}' has {size} bytes, {needed} are needed")));
        }
    }
    for s in &pd.symbols {
        let size = elf.writable(&s.name).map_err(|m| err(&s.origin, m))?;
        if size != 8 {
            return Err(err(&s.origin, format!("symbol '{}' has {size} bytes, not one word (8)", s.name)));
        }
    }
    for m in &pd.maps {
        let Some(r) = sys.region(&m.mr) else { continue };
        let end = m.vaddr.saturating_add(r.size);
        for &(v, memsz) in &elf.segments {
            let seg_end = v.saturating_add(memsz.next_multiple_of(SMALL_PAGE));
            if !(end <= v || seg_end <= m.vaddr) {
                return Err(err(
                    &m.origin,
                    format!(
                        "mapping [{:#x}..{end:#x}) overlaps the program image's segment [{v:#x}..{seg_end:#x})",
                        m.vaddr
                    ),
                ));
            }
        }
    }
    Ok(())
}
