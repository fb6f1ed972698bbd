//! Host backend: a module is a shared object. The image bytes from the
//! code region are copied into a memfd and `dlopen`ed from there, so what
//! runs is exactly what the manager wrote into the region.
use crate::shell::ModuleLoader;
use alloc::{format, string::String};
use interfaces::abi::{ModuleDescriptor, ModuleEntry, DESCRIPTOR_SYMBOL, ENTRY_SYMBOL};

#[derive(Default)]
pub struct SharedObjectLoader;

fn dl_error() -> String {
    // SAFETY: dlerror returns a NUL-terminated string or null.
    unsafe {
        let e = libc::dlerror();
        if e.is_null() {
            "unknown dlopen error".into()
        } else {
            String::from_utf8_lossy(core::ffi::CStr::from_ptr(e).to_bytes()).into_owned()
        }
    }
}

impl ModuleLoader for SharedObjectLoader {
    fn load(&mut self, code: &[u8], words: &[u64]) -> Result<(&'static ModuleEntry, ModuleDescriptor), String> {
        let len = words.first().copied().unwrap_or(0);
        if len == 0 || len > code.len() as u64 {
            return Err(format!("image length {len} does not fit the code region ({} bytes)", code.len()));
        }
        let image = &code[..len as usize];
        // glibc's loader trusts the program headers (a truncated image
        // faults it with SIGBUS): check them first.
        interfaces::elf::Elf::parse(image).map_err(|e| format!("{e}"))?;
        // SAFETY: plain syscalls on a descriptor we own; the library is
        // never unloaded (a slot is restarted, not reused, for a new module),
        // so the 'static references below stay valid.
        unsafe {
            let fd = libc::memfd_create(c"module".as_ptr(), 0);
            if fd < 0 {
                return Err("memfd_create failed".into());
            }
            let mut off = 0;
            while off < image.len() {
                let n = libc::write(fd, image[off..].as_ptr().cast(), image.len() - off);
                if n <= 0 {
                    libc::close(fd);
                    return Err("writing the image to a memfd failed".into());
                }
                off += n as usize;
            }
            let path = alloc::ffi::CString::new(format!("/proc/self/fd/{fd}")).expect("no NUL");
            let handle = libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
            // The memfd stays open as long as the module is loaded (for
            // ever): glibc recognises an already-loaded object by its path,
            // and a closed descriptor's number, hence path, would be reused
            // by the next load.
            if handle.is_null() {
                libc::close(fd);
                return Err(format!("cannot load image: {}", dl_error()));
            }
            let sym = |name: &str| {
                let c = alloc::ffi::CString::new(name).expect("no NUL");
                libc::dlsym(handle, c.as_ptr())
            };
            let d = sym(DESCRIPTOR_SYMBOL);
            let e = sym(ENTRY_SYMBOL);
            if d.is_null() {
                return Err(format!("image exports no {DESCRIPTOR_SYMBOL}: not a service module"));
            }
            if e.is_null() {
                return Err(format!("image exports no {ENTRY_SYMBOL}: not a service module"));
            }
            back_writable_segments(image, d);
            let bytes = core::slice::from_raw_parts(d as *const u8, ModuleDescriptor::SIZE);
            let desc = *ModuleDescriptor::parse(bytes).map_err(|e| format!("{e}"))?;
            Ok((&*(e as *const ModuleEntry), desc))
        }
    }
}

/// Backs the loaded module's writable segments (its data and `.bss`, where
/// a module keeps its state) before the module runs: with transparent huge
/// pages where the kernel allows them (a state copy walks 512 times fewer
/// page-table entries), and populated now, while the old slot still serves,
/// rather than page by page during the import inside the blackout. seL4
/// slots get the same from their statically mapped `module_data` region.
/// Both are only advice: a kernel that refuses them leaves the memory as it
/// was, which is correct, only slower.
///
/// # Safety
/// `symbol` is an address inside the object `dlopen` just loaded from
/// `image`.
unsafe fn back_writable_segments(image: &[u8], symbol: *mut libc::c_void) {
    const PF_W: u32 = 2;
    const MADV_POPULATE_WRITE: i32 = 23; // Linux 5.14; libc does not name it yet
    let Ok(elf) = interfaces::elf::Elf::parse(image) else { return };
    // SAFETY: a zeroed Dl_info is a valid out-parameter.
    let mut info: libc::Dl_info = unsafe { core::mem::zeroed() };
    // SAFETY: dladdr only reads the loader's tables.
    if unsafe { libc::dladdr(symbol, &mut info) } == 0 || info.dli_fbase.is_null() {
        return;
    }
    let base = info.dli_fbase as usize;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
    for seg in elf.loads().filter(|s| s.flags & PF_W != 0 && s.memsz > 0) {
        let start = (base + seg.vaddr as usize) & !(page - 1);
        let end = (base + (seg.vaddr + seg.memsz) as usize).next_multiple_of(page);
        // SAFETY: the range is the segment the loader just mapped writable
        // (rounded to its pages); advice changes no contents.
        unsafe {
            libc::madvise(start as *mut _, end - start, libc::MADV_HUGEPAGE);
            libc::madvise(start as *mut _, end - start, MADV_POPULATE_WRITE);
        }
    }
}
