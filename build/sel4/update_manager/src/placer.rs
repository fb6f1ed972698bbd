//! Placing a module image into a slot on seL4.
//!
//! A module is a static, non-PIE aarch64 executable whose PT_LOAD segments
//! run at the slot's `module_code` address (text, rodata: read/execute in
//! the slot) and `module_data` address (data, bss). The manager maps only
//! the code region (rw here): it writes the code segments in place and
//! stages the data segment's initialised bytes in the code region after
//! them; the slot's loader copies them to `module_data` and zeroes the bss.
//! So the manager never needs a mapping of a slot's private data, and a
//! module's data is reinitialised by every load.
//!
//! Then the caches: the slot will fetch instructions that were written as
//! data, so every written page is cleaned to the point of unification and
//! the instruction cache invalidated, through the slot's VSpace cap
//! (`<cspace><cap_vspace/>` in system.xml), page by page.
use alloc::{format, string::String, vec::Vec};
use interfaces::abi::{DESCRIPTOR_SYMBOL, ENTRY_SYMBOL};
use object::elf::{EM_AARCH64, ET_EXEC, PT_LOAD};
use object::read::elf::{ElfFile64, FileHeader, ProgramHeader};
use object::{Endianness, Object, ObjectSymbol};
use sel4_pd::{load::LoadWords, pd_info, Sel4Pd};
use update_manager::{ImagePlacer, SlotCode};

use crate::cache_spans::{page_spans, PAGE};

pub struct StaticImagePlacer;

struct Span {
    base: u64,
    size: u64,
}

impl Span {
    fn holds(&self, addr: u64, len: u64) -> bool {
        addr >= self.base && len <= self.size && addr - self.base <= self.size - len
    }
}

fn slot_map(pd: &str, name: &str) -> Result<Span, String> {
    let info = pd_info(pd).ok_or_else(|| format!("slot {pd} is not in the system description"))?;
    let m = info.maps.iter().find(|m| m.name == name).ok_or_else(|| format!("slot {pd} has no '{name}' mapping"))?;
    Ok(Span { base: m.vaddr as u64, size: m.size as u64 })
}

impl ImagePlacer for StaticImagePlacer {
    fn place(&mut self, image: &[u8], slot: &SlotCode) -> Result<Vec<u64>, String> {
        let code = slot_map(slot.pd_name, "module_code")?;
        let data = slot_map(slot.pd_name, "module_data")?;
        if code.size as usize != slot.code.size {
            return Err(format!(
                "the code region of {} differs in size between the slot and the manager",
                slot.pd_name
            ));
        }
        let file = ElfFile64::<Endianness>::parse(image).map_err(|e| format!("not a 64-bit ELF image ({e})"))?;
        let (hdr, endian) = (file.elf_header(), file.endian());
        if hdr.e_machine(endian) != EM_AARCH64 || hdr.e_type(endian) != ET_EXEC {
            return Err("not a static aarch64 executable: a module for seL4 is linked to the slot's addresses".into());
        }
        let sym = |name: &str| {
            file.symbols()
                .find(|s| s.name() == Ok(name))
                .map(|s| s.address())
                .ok_or_else(|| format!("image has no symbol {name}"))
        };
        let (descriptor, entry) = (sym(DESCRIPTOR_SYMBOL)?, sym(ENTRY_SYMBOL)?);
        let phdrs = hdr.program_headers(endian, image).map_err(|e| format!("bad program headers ({e})"))?;

        // SAFETY: the code region is the manager's to write (read-only in
        // the slot), and the slot does not read it until told to load.
        let region = unsafe { slot.code.as_mut_slice() };
        let mut code_end = 0u64;
        let mut data_seg = None;
        for ph in phdrs.iter().filter(|p| p.p_type(endian) == PT_LOAD) {
            let (vaddr, filesz, memsz) = (ph.p_vaddr(endian), ph.p_filesz(endian), ph.p_memsz(endian));
            let bytes = ph.data(endian, image).map_err(|_| "segment data outside the file")?;
            if filesz > memsz || bytes.len() as u64 != filesz {
                return Err("malformed segment".into());
            }
            if code.holds(vaddr, memsz) {
                let off = (vaddr - code.base) as usize;
                region[off..off + filesz as usize].copy_from_slice(bytes);
                region[off + filesz as usize..off + memsz as usize].fill(0);
                code_end = code_end.max(off as u64 + memsz);
            } else if data.holds(vaddr, memsz) {
                if data_seg.is_some() {
                    return Err("more than one data segment".into());
                }
                data_seg = Some((vaddr, bytes, memsz));
            } else {
                return Err(format!(
                    "segment at {vaddr:#x}+{memsz:#x} is outside the slot's code ({:#x}) and data ({:#x}) regions",
                    code.base, data.base
                ));
            }
        }
        let mut w = LoadWords { descriptor, entry, ..Default::default() };
        let staged = code_end.next_multiple_of(PAGE);
        let mut end = staged;
        if let Some((vaddr, bytes, memsz)) = data_seg {
            let n = bytes.len() as u64;
            if staged + n > code.size {
                return Err("the image's data does not fit the code region for staging".into());
            }
            region[staged as usize..(staged + n) as usize].copy_from_slice(bytes);
            end = staged + n;
            w.data_vaddr = vaddr;
            w.data_staged = staged;
            w.data_filesz = n;
            w.data_memsz = memsz;
        }
        if !code.holds(descriptor, 1) || !code.holds(entry, 1) || descriptor - code.base >= code_end {
            return Err("descriptor or entry table outside the loaded code".into());
        }
        // Everything written: the code segments and the staged data.
        sync_caches(slot.pd_name, code.base, end)?;
        Ok(w.to_words().to_vec())
    }
}

/// Makes the `len` bytes written at `base` (an address in the slot) safe
/// to execute: for each page, cleans the data cache to the point of
/// coherency and then cleans to the point of unification and invalidates
/// the instruction cache (`Unify_Instruction`), through the slot's VSpace
/// (the lines are found by the slot's mapping of the same frames).
fn sync_caches(slot: &str, base: u64, len: u64) -> Result<(), String> {
    let pd = Sel4Pd::current();
    let vspace = pd.vspace_cap(slot).ok_or_else(|| {
        format!("the manager holds no VSpace cap of {slot} (<cspace><cap_vspace pd=\"{slot}\"/></cspace>)")
    })?;
    for (start, end) in page_spans(base, len) {
        let err = sel4::with_ipc_buffer_mut(|b| {
            let ipc = b.inner_mut();
            let e = ipc.seL4_ARM_VSpace_Clean_Data(vspace, start, end);
            if e != 0 {
                return e;
            }
            ipc.seL4_ARM_VSpace_Unify_Instruction(vspace, start, end)
        });
        if err != 0 {
            return Err(format!("cache maintenance of {slot} at {start:#x} failed (seL4 error {err})"));
        }
    }
    Ok(())
}
