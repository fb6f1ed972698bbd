//! Memory regions as shared mappings of memfds.
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Creates a zeroed, close-on-exec memfd of `size` bytes.
pub fn memfd(name: &str, size: usize) -> io::Result<OwnedFd> {
    let cname = std::ffi::CString::new(name).map_err(|_| io::Error::other("region name has a NUL"))?;
    // SAFETY: plain syscalls on a fresh fd we own.
    unsafe {
        let fd = libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = OwnedFd::from_raw_fd(fd);
        if libc::ftruncate(fd.as_raw_fd(), size as libc::off_t) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(fd)
    }
}

/// A second, read-only descriptor of the same memory: a process given only
/// this one cannot map the region writable (mmap and mprotect refuse).
pub fn reopen_read_only(fd: &OwnedFd) -> io::Result<OwnedFd> {
    let path = std::ffi::CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).expect("no NUL");
    // SAFETY: open(2) on a path we built; the result is owned below.
    let ro = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if ro < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `ro` is a fresh descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(ro) })
}

pub struct Mapping {
    pub base: *mut u8,
    pub size: usize,
}

// SAFETY: a mapping is plain shared memory; concurrent access is governed by
// whatever protocol lives in it (atomics, SPSC indices).
unsafe impl Send for Mapping {}
unsafe impl Sync for Mapping {}

/// Maps `fd` shared with `prot`, at `want` if that address is free (so the
/// PD sees the `vaddr` its system description gives), else anywhere.
/// The pages are mapped up front, as on seL4, where a PD's regions are
/// mapped before it runs: nothing faults them in later (in the middle of an
/// update's state copy, say).
pub fn map(fd: RawFd, size: usize, prot: i32, want: Option<usize>) -> io::Result<Mapping> {
    let flags = libc::MAP_SHARED | libc::MAP_POPULATE;
    // SAFETY: mapping a file descriptor; MAP_FIXED_NOREPLACE never clobbers
    // an existing mapping, it fails instead.
    unsafe {
        if let Some(addr) = want {
            let p = libc::mmap(addr as *mut _, size, prot, flags | libc::MAP_FIXED_NOREPLACE, fd, 0);
            if p != libc::MAP_FAILED && p as usize == addr {
                return Ok(Mapping { base: p.cast(), size });
            }
            if p != libc::MAP_FAILED {
                libc::munmap(p, size); // an old kernel placed it elsewhere
            }
        }
        let p = libc::mmap(std::ptr::null_mut(), size, prot, flags, fd, 0);
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping { base: p.cast(), size })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping what `map` mapped; nothing refers to it after drop.
        unsafe { libc::munmap(self.base.cast(), self.size) };
    }
}

/// `PROT_*` bits for Microkit perms.
pub fn prot(p: &sdf::Perms) -> i32 {
    let mut prot = 0;
    if p.read {
        prot |= libc::PROT_READ;
    }
    if p.write {
        prot |= libc::PROT_WRITE;
    }
    if p.execute {
        prot |= libc::PROT_EXEC;
    }
    prot
}
