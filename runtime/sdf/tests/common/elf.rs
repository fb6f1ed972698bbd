//! A minimal AArch64 ELF the microkit tool takes as a PD's program image:
//! one data segment holding the symbols the tool writes (libmicrokit's
//! `microkit_*` variables and each `setvar` symbol), and a symbol table.
//! No code: the image is built, never run. `corpus/files/pd.elf` and
//! `bare.elf` are two such images (see `corpus.rs`).

const BASE: u64 = 0x20_0000;
const DATA_OFFSET: u64 = 0x1000;
/// libmicrokit's variables: (name, size).
const MICROKIT_SYMBOLS: [(&str, u64); 6] = [
    ("microkit_name", 64),
    ("microkit_passive", 8),
    ("microkit_irqs", 8),
    ("microkit_notifications", 8),
    ("microkit_pps", 8),
    ("microkit_ioports", 8),
];

/// The ELF's bytes, defining `setvars` (word-sized) besides libmicrokit's
/// variables.
pub fn image(setvars: &[String]) -> Vec<u8> {
    image_with(true, setvars)
}

/// The ELF's bytes, defining `setvars` (word-sized; those named like
/// libmicrokit's variables are left out), and libmicrokit's variables if
/// `libmicrokit`.
pub fn image_with(libmicrokit: bool, setvars: &[String]) -> Vec<u8> {
    let own = MICROKIT_SYMBOLS.into_iter().filter(|_| libmicrokit);
    let named = |s: &String| MICROKIT_SYMBOLS.iter().any(|(name, _)| name == s);
    let setvars = setvars.iter().filter(|s| !named(s)).map(|s| (s.as_str(), 8));
    let symbols: Vec<(&str, u64)> = own.chain(setvars).collect();
    let data_size: u64 = symbols.iter().map(|(_, size)| size).sum();
    let mut strtab = vec![0u8];
    let mut symtab = vec![0u8; 24]; // the null symbol
    let mut vaddr = BASE;
    for (name, size) in &symbols {
        symtab.extend((strtab.len() as u32).to_le_bytes());
        strtab.extend(name.bytes().chain([0]));
        symtab.extend([0x11, 0]); // global object
        symtab.extend(1u16.to_le_bytes()); // some defined section
        symtab.extend(vaddr.to_le_bytes());
        symtab.extend(size.to_le_bytes());
        vaddr += size;
    }
    let symtab_offset = (DATA_OFFSET + data_size).next_multiple_of(8);
    let strtab_offset = symtab_offset + symtab.len() as u64;
    let sh_offset = (strtab_offset + strtab.len() as u64).next_multiple_of(8);

    let mut elf = Vec::new();
    elf.extend([0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    elf.extend(2u16.to_le_bytes()); // executable
    elf.extend(183u16.to_le_bytes()); // AArch64
    elf.extend(1u32.to_le_bytes());
    elf.extend(BASE.to_le_bytes()); // entry
    elf.extend(64u64.to_le_bytes()); // program headers
    elf.extend(sh_offset.to_le_bytes());
    elf.extend(0u32.to_le_bytes());
    for half in [64u16, 56, 1, 64, 3, 0] {
        elf.extend(half.to_le_bytes()); // sizes and counts; no section names
    }
    elf.extend(1u32.to_le_bytes()); // loadable
    elf.extend(6u32.to_le_bytes()); // read, write
    for word in [DATA_OFFSET, BASE, BASE, data_size, data_size, 0x1000] {
        elf.extend(word.to_le_bytes());
    }
    elf.resize(DATA_OFFSET as usize, 0);
    elf.resize((DATA_OFFSET + data_size) as usize, 0);
    elf.resize(symtab_offset as usize, 0);
    elf.extend(&symtab);
    elf.extend(&strtab);
    elf.resize(sh_offset as usize, 0);
    elf.extend([0u8; 64]);
    section(&mut elf, 2, symtab_offset, symtab.len() as u64, 2, 24);
    section(&mut elf, 3, strtab_offset, strtab.len() as u64, 0, 0);
    elf
}

fn section(elf: &mut Vec<u8>, kind: u32, offset: u64, size: u64, link: u32, entsize: u64) {
    elf.extend(0u32.to_le_bytes());
    elf.extend(kind.to_le_bytes());
    for word in [0, 0, offset, size] {
        elf.extend(word.to_le_bytes());
    }
    elf.extend(link.to_le_bytes());
    elf.extend(1u32.to_le_bytes()); // symtab: index of the first global
    elf.extend(8u64.to_le_bytes());
    elf.extend(entsize.to_le_bytes());
}

/// Every symbol a system description sets.
pub fn setvar_symbols(xml: &str) -> Vec<String> {
    let attrs = ["setvar_vaddr", "setvar_size", "setvar_prefill_size", "setvar_id", "symbol"];
    let mut found: Vec<String> = attrs.into_iter().flat_map(|a| super::attribute_values(xml, a)).collect();
    found.sort();
    found.dedup();
    found
}
