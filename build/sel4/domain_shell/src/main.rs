//! The domain shell on seL4. A module is a static executable linked to run
//! at the slot's `module_code` address (code, read-only data) and
//! `module_data` address (data, bss). The manager's placer has written the
//! code in place and staged the initialised data in the code region (the
//! manager has no mapping of the slot's data); this loader checks what the
//! LOAD words say, copies the data to `module_data`, zeroes the bss, and
//! hands the shell the module's entry table and descriptor.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::{format, string::String};
use domain_shell::{ModuleLoader, Shell};
use interfaces::abi::{ModuleDescriptor, ModuleEntry};
use pd_api::Pd;
use sel4_microkit::protection_domain;
use sel4_pd::{load::LoadWords, Adapter, Sel4Pd};

struct StaticImageLoader {
    pd: &'static Sel4Pd,
}

fn within(base: u64, size: u64, addr: u64, len: u64) -> bool {
    addr >= base && len <= size && addr - base <= size - len
}

impl ModuleLoader for StaticImageLoader {
    fn load(&mut self, code: &[u8], words: &[u64]) -> Result<(&'static ModuleEntry, ModuleDescriptor), String> {
        let w = LoadWords::from_words(words).ok_or_else(|| {
            format!("LOAD carries {} words, the seL4 loader needs {}", words.len(), sel4_pd::load::WORDS)
        })?;
        let code_base = code.as_ptr() as u64;
        let code_size = code.len() as u64;
        let data = self.pd.region("module_data").ok_or("slot has no 'module_data' region")?;
        let (data_base, data_size) = (data.base as u64, data.size as u64);
        let dsize = ModuleDescriptor::SIZE as u64;
        let esize = core::mem::size_of::<ModuleEntry>() as u64;
        if !within(code_base, code_size, w.descriptor, dsize) {
            return Err(format!("descriptor address {:#x} is outside the code region", w.descriptor));
        }
        if !within(code_base, code_size, w.entry, esize) || w.entry % 8 != 0 {
            return Err(format!("entry table address {:#x} is outside the code region or misaligned", w.entry));
        }
        if w.data_filesz > w.data_memsz
            || (w.data_memsz != 0 && !within(data_base, data_size, w.data_vaddr, w.data_memsz))
        {
            return Err(format!(
                "data segment {:#x}+{:#x} does not fit the data region {data_base:#x}+{data_size:#x}",
                w.data_vaddr, w.data_memsz
            ));
        }
        if !within(0, code_size, w.data_staged, w.data_filesz) {
            return Err(format!("staged data at offset {:#x} is outside the code region", w.data_staged));
        }
        // SAFETY: ranges checked above; the data region is this slot's own
        // and no module runs while it is replaced.
        unsafe {
            let dst = w.data_vaddr as *mut u8;
            core::ptr::copy_nonoverlapping(code.as_ptr().add(w.data_staged as usize), dst, w.data_filesz as usize);
            core::ptr::write_bytes(dst.add(w.data_filesz as usize), 0, (w.data_memsz - w.data_filesz) as usize);
        }
        let off = (w.descriptor - code_base) as usize;
        let desc = *ModuleDescriptor::parse(&code[off..off + ModuleDescriptor::SIZE]).map_err(|e| format!("{e}"))?;
        // SAFETY: inside the code region, aligned; what it points to is
        // checked by the shell (ABI version) before any call.
        let entry = unsafe { &*(w.entry as *const ModuleEntry) };
        Ok((entry, desc))
    }
}

#[protection_domain(heap_size = 0x20000)]
fn init() -> Adapter<Shell<Sel4Pd, StaticImageLoader>> {
    let pd = Sel4Pd::current();
    Adapter::new(pd, Shell::new(pd, StaticImageLoader { pd }))
}
