//! Reading a module image before it is loaded: the descriptor the manager
//! admits or refuses it by. The image is untrusted bytes; everything is
//! bounds-checked by `object` and the descriptor by its own `check`.
use alloc::{format, string::String};
use interfaces::abi::{ModuleDescriptor, DESCRIPTOR_SYMBOL, ENTRY_SYMBOL};
use object::read::elf::ElfFile64;
pub use object::Architecture;
use object::{Endianness, Object, ObjectSection, ObjectSymbol};

/// An image in the manager's store: built in, or uploaded and verified.
/// Its bytes are never written while it is listed.
#[derive(Clone, Debug)]
pub struct Image {
    pub name: &'static str,
    pub bytes: &'static [u8],
    /// The descriptor, or why the image is refused.
    pub descriptor: Result<ModuleDescriptor, String>,
}

/// The architecture modules must be built for: the one this manager runs on.
pub const NATIVE: Architecture =
    if cfg!(target_arch = "aarch64") { Architecture::Aarch64 } else { Architecture::X86_64 };

/// Reads and validates the descriptor of a module image for this system.
pub fn descriptor(image: &[u8]) -> Result<ModuleDescriptor, String> {
    descriptor_for(image, NATIVE)
}

/// Reads and validates the descriptor of a module image built for `arch`.
pub fn descriptor_for(image: &[u8], arch: Architecture) -> Result<ModuleDescriptor, String> {
    interfaces::elf::Elf::parse(image).map_err(|e| format!("{e}"))?;
    let file = ElfFile64::<Endianness>::parse(image).map_err(|e| format!("not a 64-bit ELF module image ({e})"))?;
    if file.architecture() != arch {
        return Err(format!("image is built for {:?}, not {arch:?}", file.architecture()));
    }
    let find = |name: &str| file.symbols().chain(file.dynamic_symbols()).find(|s| s.name() == Ok(name));
    let sym =
        find(DESCRIPTOR_SYMBOL).ok_or_else(|| format!("image exports no {DESCRIPTOR_SYMBOL}: not a service module"))?;
    find(ENTRY_SYMBOL).ok_or_else(|| format!("image exports no {ENTRY_SYMBOL}: not a service module"))?;
    let (addr, size) = (sym.address(), ModuleDescriptor::SIZE as u64);
    let bytes = file
        .sections()
        .filter(|s| s.address() <= addr && addr.saturating_add(size) <= s.address().saturating_add(s.size()))
        .find_map(|s| s.data_range(addr, size).ok().flatten())
        .ok_or("the descriptor is not inside a section with data")?;
    ModuleDescriptor::parse(bytes).copied().map_err(|e| format!("{e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_is_not_a_module() {
        assert_eq!(descriptor(b"hello").unwrap_err(), "image is not an ELF file");
        assert!(descriptor(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]).unwrap_err().contains("truncated"));
    }
}
