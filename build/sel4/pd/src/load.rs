//! The words of the LOAD control call on seL4: where the manager's placer
//! put the module in the slot's code region, for the shell's loader.

/// Number of words.
pub const WORDS: usize = 6;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadWords {
    /// Slot address of `UPD_MODULE_DESCRIPTOR` (in the code region).
    pub descriptor: u64,
    /// Slot address of `UPD_MODULE_ENTRY` (in the code region).
    pub entry: u64,
    /// Slot address where the data segment runs (in the data region).
    pub data_vaddr: u64,
    /// Offset in the code region where the placer staged its bytes.
    pub data_staged: u64,
    /// Bytes of initialised data; the rest up to `data_memsz` is zeroed.
    pub data_filesz: u64,
    pub data_memsz: u64,
}

impl LoadWords {
    pub fn to_words(&self) -> [u64; WORDS] {
        [self.descriptor, self.entry, self.data_vaddr, self.data_staged, self.data_filesz, self.data_memsz]
    }

    pub fn from_words(w: &[u64]) -> Option<LoadWords> {
        let w: &[u64; WORDS] = w.get(..WORDS)?.try_into().ok()?;
        Some(LoadWords {
            descriptor: w[0],
            entry: w[1],
            data_vaddr: w[2],
            data_staged: w[3],
            data_filesz: w[4],
            data_memsz: w[5],
        })
    }
}
