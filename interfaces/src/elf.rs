//! A minimal, validating reader of 64-bit little-endian ELF images: the
//! header and the program headers, which is all a loader needs. Every
//! offset is checked against the image before anything is read, so a
//! truncated or hostile image is refused here instead of faulting a loader.
use zerocopy::{FromBytes, Immutable, KnownLayout};

pub const EM_X86_64: u16 = 62;
pub const EM_AARCH64: u16 = 183;
pub const PT_LOAD: u32 = 1;
pub const PF_X: u32 = 1;
pub const PF_W: u32 = 2;

#[derive(Clone, Copy, Debug, FromBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct Header {
    pub ident: [u8; 16],
    pub e_type: u16,
    pub machine: u16,
    pub version: u32,
    pub entry: u64,
    pub phoff: u64,
    pub shoff: u64,
    pub flags: u32,
    pub ehsize: u16,
    pub phentsize: u16,
    pub phnum: u16,
    pub shentsize: u16,
    pub shnum: u16,
    pub shstrndx: u16,
}

#[derive(Clone, Copy, Debug, FromBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct ProgramHeader {
    pub p_type: u32,
    pub flags: u32,
    pub offset: u64,
    pub vaddr: u64,
    pub paddr: u64,
    pub filesz: u64,
    pub memsz: u64,
    pub align: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfError {
    NotElf,
    /// Not 64-bit little-endian.
    Class,
    Truncated,
    /// Program header `n` points outside the image or is inconsistent.
    Segment(usize),
}

impl core::fmt::Display for ElfError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ElfError::NotElf => write!(f, "image is not an ELF file"),
            ElfError::Class => write!(f, "image is not a 64-bit little-endian ELF file"),
            ElfError::Truncated => write!(f, "image is truncated: its program headers lie outside it"),
            ElfError::Segment(n) => write!(f, "image segment {n} lies outside the image or is inconsistent"),
        }
    }
}

pub struct Elf<'a> {
    pub header: Header,
    phdrs: &'a [ProgramHeader],
}

impl<'a> Elf<'a> {
    pub fn parse(image: &'a [u8]) -> Result<Elf<'a>, ElfError> {
        if !image.starts_with(b"\x7fELF") {
            return Err(ElfError::NotElf);
        }
        let (header, _) = Header::read_from_prefix(image).map_err(|_| ElfError::Truncated)?;
        if header.ident[4] != 2 || header.ident[5] != 1 {
            return Err(ElfError::Class);
        }
        if header.phentsize as usize != core::mem::size_of::<ProgramHeader>() {
            return Err(ElfError::Truncated);
        }
        let start = usize::try_from(header.phoff).map_err(|_| ElfError::Truncated)?;
        let table = image.get(start..).ok_or(ElfError::Truncated)?;
        let (phdrs, _) = <[ProgramHeader]>::ref_from_prefix_with_elems(table, header.phnum as usize)
            .map_err(|_| ElfError::Truncated)?;
        for (i, p) in phdrs.iter().enumerate() {
            let end = p.offset.checked_add(p.filesz).ok_or(ElfError::Segment(i))?;
            if end > image.len() as u64 || (p.p_type == PT_LOAD && p.filesz > p.memsz) {
                return Err(ElfError::Segment(i));
            }
        }
        Ok(Elf { header, phdrs })
    }

    /// The loadable segments, already checked to lie inside the image.
    pub fn loads(&self) -> impl Iterator<Item = &ProgramHeader> {
        self.phdrs.iter().filter(|p| p.p_type == PT_LOAD)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec;

    fn image() -> std::vec::Vec<u8> {
        let mut img = vec![0u8; 64 + 56 + 16];
        img[..4].copy_from_slice(b"\x7fELF");
        img[4] = 2;
        img[5] = 1;
        img[32..40].copy_from_slice(&64u64.to_le_bytes()); // phoff
        img[54..56].copy_from_slice(&56u16.to_le_bytes()); // phentsize
        img[56..58].copy_from_slice(&1u16.to_le_bytes()); // phnum
        img[64..68].copy_from_slice(&PT_LOAD.to_le_bytes());
        img[72..80].copy_from_slice(&120u64.to_le_bytes()); // offset
        img[96..104].copy_from_slice(&16u64.to_le_bytes()); // filesz
        img[104..112].copy_from_slice(&32u64.to_le_bytes()); // memsz
        img
    }

    #[test]
    fn accepts_a_consistent_image_and_names_each_flaw() {
        let img = image();
        assert_eq!(Elf::parse(&img).unwrap().loads().count(), 1);
        assert_eq!(Elf::parse(&img[..100]).err(), Some(ElfError::Truncated));
        assert_eq!(Elf::parse(&img[..130]).err(), Some(ElfError::Segment(0)));
        assert_eq!(Elf::parse(b"\x7fELF").err(), Some(ElfError::Truncated));
        assert_eq!(Elf::parse(b"MZ").err(), Some(ElfError::NotElf));
        let mut bad = img.clone();
        bad[4] = 1;
        assert_eq!(Elf::parse(&bad).err(), Some(ElfError::Class));
        let mut bad = img;
        bad[72..80].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(Elf::parse(&bad).err(), Some(ElfError::Segment(0)));
    }
}
