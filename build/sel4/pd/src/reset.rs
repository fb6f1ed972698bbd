//! Restarting a PD at its entry with fresh `.data` and `.bss`.
//!
//! A parent restarts a child by writing the child's program counter
//! (`TCB_WriteRegisters`); seL4 does not reload the image, so a Rust PD
//! restarted at rust-sel4's `_start` would find its statics as it left them
//! (rust-sel4's runtime then panics setting its panic hook a second time,
//! and a half-finished heap or handler state would carry over).
//!
//! Every program of build/sel4 therefore starts at [`__upd_entry`] (the
//! programs' target spec passes `--entry` to the linker: xtask's
//! `sel4::target_spec`), which runs before rust-sel4's `_start`:
//! - on the first start, it snapshots the initialised bytes of every
//!   writable segment: that is after the microkit tool patched its symbols
//!   (`microkit_name`, channel masks, `setvar_vaddr` values, our
//!   `upd_program_entries`) and before any code wrote them;
//! - on every later start, it copies the snapshot back and zeroes the rest
//!   of each writable segment (`.bss`: heap, allocator, once-cells), and
//!   resets the stack pointer to the one Microkit started the PD with.
//!
//! Its own state lives in [`UPD_PERSISTENT`], which the reset skips. Unlike
//! rust-sel4's sel4-reset this needs no post-link tool and keeps the values
//! the microkit tool patched in after our build.
use core::arch::global_asm;

/// Bytes of initialised writable data a program may have (the programs
/// here have about 1.3 KiB).
const SNAPSHOT_BYTES: usize = 8192;

#[repr(C)]
pub struct Persistent {
    /// The stack pointer Microkit started the PD with (0: never started).
    sp: usize,
    /// The snapshot has been taken.
    armed: usize,
    snapshot: [u8; SNAPSHOT_BYTES],
}

/// Survives restarts: [`__upd_reset_memory`] never writes it back.
#[unsafe(no_mangle)]
static mut UPD_PERSISTENT: Persistent = Persistent { sp: 0, armed: 0, snapshot: [0; SNAPSHOT_BYTES] };

global_asm! {
    r#"
        .extern UPD_PERSISTENT
        .extern __upd_reset_memory
        .extern _start

        .section .text.__upd_entry, "ax", %progbits
        .global __upd_entry
        .global __upd_recover
        __upd_entry:
            b    2f
        __upd_recover:
            mov  x0, #{reply_cap}
            movz x1, #{tag0}
            movk x1, #{tag1}, lsl #16
            movk x1, #{tag2}, lsl #32
            mov  x7, #{sys_send}
            svc  #0
        2:  adrp x9, UPD_PERSISTENT
            add  x9, x9, :lo12:UPD_PERSISTENT
            ldr  x10, [x9]
            cbnz x10, 1f
            mov  x10, sp
            str  x10, [x9]
        1:  mov  sp, x10
            bl   __upd_reset_memory
            b    _start
    "#,
    reply_cap = const REPLY_CAP,
    tag0 = const FAULTED_TAG & 0xffff,
    tag1 = const (FAULTED_TAG >> 16) & 0xffff,
    tag2 = const (FAULTED_TAG >> 32) & 0xffff,
    sys_send = const SYS_SEND,
}

/// Microkit's cap of the PD's reply object.
const REPLY_CAP: u64 = 4;
/// `seL4_SysSend` (MCS numbering).
const SYS_SEND: i64 = -5;
/// The seL4 message tag of the [`crate::FAULTED_LABEL`] reply: label in
/// bits 12.., no caps, no words.
const FAULTED_TAG: u64 = crate::FAULTED_LABEL << 12;
const _: () = assert!(FAULTED_TAG >> 48 == 0, "the tag must fit three movz/movk halves");

/// Where a parent resumes a faulted child: [`RECOVER_OFFSET`] bytes past
/// the entry (the entry's first instruction branches over it).
///
/// A child that faults while serving a protected call leaves its caller
/// waiting on the child's reply object, which a restart does not clear
/// (and the restarted child's first receive would cancel the caller for
/// good: it would never run again). The recovery code first sends the
/// [`crate::FAULTED_LABEL`] reply on that reply object (`seL4_Send` on the
/// reply cap; a reply object with no caller makes it a no-op), using no
/// memory and no stack, then runs the normal entry: reset, restart.
pub const RECOVER_OFFSET: u64 = 4;

const PT_LOAD: u32 = 1;
const PF_W: u32 = 2;

/// A range minus the persistent block: applies `f(start, len)` to what is
/// left (at most two pieces).
fn outside(start: usize, end: usize, keep: (usize, usize), mut f: impl FnMut(usize, usize)) {
    let (ks, ke) = keep;
    if ke <= start || ks >= end {
        if end > start {
            f(start, end - start);
        }
        return;
    }
    if ks > start {
        f(start, ks - start);
    }
    if ke < end {
        f(ke, end - ke);
    }
}

/// Runs before anything else on every start, on the Microkit stack; must
/// not touch any static but [`UPD_PERSISTENT`], and must not panic.
///
/// # Safety
/// Only called from [`__upd_entry`].
#[unsafe(no_mangle)]
unsafe extern "C" fn __upd_reset_memory() {
    unsafe extern "C" {
        static __ehdr_start: u8;
    }
    // SAFETY: the linker defines __ehdr_start at the ELF header, which the
    // first (read-only) LOAD segment maps; the program headers follow it.
    // Nothing else runs while the writable segments are rewritten, and the
    // persistent block is left out of every write.
    unsafe {
        let base = &raw const __ehdr_start;
        let rd64 = |p: *const u8| core::ptr::read_unaligned(p as *const u64) as usize;
        let rd32 = |p: *const u8| core::ptr::read_unaligned(p as *const u32);
        let rd16 = |p: *const u8| core::ptr::read_unaligned(p as *const u16) as usize;
        let (phoff, phentsize, phnum) = (rd64(base.add(0x20)), rd16(base.add(0x36)), rd16(base.add(0x38)));
        let p = &raw mut UPD_PERSISTENT;
        let keep = (p as usize, p as usize + core::mem::size_of::<Persistent>());
        let snap = (&raw mut (*p).snapshot) as *mut u8;
        let first = (*p).armed == 0;
        let mut off = 0usize;
        for i in 0..phnum {
            let ph = base.add(phoff + i * phentsize);
            if rd32(ph) != PT_LOAD || rd32(ph.add(4)) & PF_W == 0 {
                continue;
            }
            let (vaddr, filesz, memsz) = (rd64(ph.add(0x10)), rd64(ph.add(0x20)), rd64(ph.add(0x28)));
            if off + filesz > SNAPSHOT_BYTES {
                // Too much initialised data to keep a copy of: stop here,
                // loudly (a fault the parent sees), rather than run with
                // stale statics.
                core::arch::asm!("brk #0x5e7", options(noreturn));
            }
            if first {
                core::ptr::copy_nonoverlapping(vaddr as *const u8, snap.add(off), filesz);
            } else {
                outside(vaddr, vaddr + filesz, keep, |a, n| {
                    core::ptr::copy_nonoverlapping(snap.add(off + (a - vaddr)), a as *mut u8, n)
                });
                outside(vaddr + filesz, vaddr + memsz, keep, |a, n| core::ptr::write_bytes(a as *mut u8, 0, n));
            }
            off += filesz;
        }
        (*p).armed = 1;
    }
}

unsafe extern "C" {
    /// The entry every program of build/sel4 is linked with.
    pub fn __upd_entry() -> !;
    /// [`RECOVER_OFFSET`] past [`__upd_entry`].
    pub fn __upd_recover() -> !;
}
