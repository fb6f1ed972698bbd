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
            let bytes = core::slice::from_raw_parts(d as *const u8, ModuleDescriptor::SIZE);
            let desc = *ModuleDescriptor::parse(bytes).map_err(|e| format!("{e}"))?;
            Ok((&*(e as *const ModuleEntry), desc))
        }
    }
}
