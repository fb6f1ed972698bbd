//! The module loader's image reader: the validating ELF reader and the
//! descriptor lookup the manager admits images by.
#![no_main]
use interfaces::elf::{Elf, PT_LOAD};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(elf) = Elf::parse(data) {
        for p in elf.loads() {
            assert_eq!(p.p_type, PT_LOAD);
            // Checked to lie inside the image: a loader may slice it.
            let end = p.offset.checked_add(p.filesz).expect("checked");
            assert!(end <= data.len() as u64 && p.filesz <= p.memsz);
            let _ = &data[p.offset as usize..end as usize];
        }
    }
    if let Ok(d) = update_manager::image::descriptor(data) {
        d.check().expect("descriptor() returns only checked descriptors");
    }
});
