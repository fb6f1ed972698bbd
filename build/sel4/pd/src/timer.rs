//! The supervisor's timer: the EL1 physical generic timer, programmed
//! from EL0, and the time base every PD reads (the physical counter).
//!
//! The kernel keeps its own timer (the EL2 hypervisor timer, IRQ 26); the
//! EL1 physical timer is free, and this kernel configuration lets EL0 read
//! `CNTPCT_EL0` and program `CNTP_CVAL_EL0`/`CNTP_CTL_EL0`
//! (`CONFIG_EXPORT_PCNT_USER`, `CONFIG_EXPORT_PTMR_USER`). Its interrupt
//! (PPI [`TIMER_IRQ`] on QEMU virt) is given to one PD, the update
//! manager, by an `<irq irq="30" .../>` in the system description; no other
//! PD touches the timer's registers.
//!
//! The interrupt is level-triggered: it stays raised while the counter is
//! past the compare value and the timer is enabled. The kernel masks it
//! when it signals the PD, so the PD silences the timer ([`silence`])
//! before it acknowledges the IRQ, or it would fire again at once.

/// The EL1 physical timer's interrupt (PPI 14 = INTID 30, QEMU virt and
/// every GIC-based board).
pub const TIMER_IRQ: u64 = 30;

/// `CNTP_CTL_EL0.ENABLE` (IMASK clear: the interrupt is raised when due).
const CTL_ENABLE: u64 = 1;

/// The physical counter and its frequency (ticks per second).
#[inline]
pub fn counter() -> (u64, u64) {
    let (cnt, frq): (u64, u64);
    // SAFETY: reads of two EL0-readable system registers (CNTPCT_EL0 is
    // exported by CONFIG_EXPORT_PCNT_USER, CNTFRQ_EL0 always is); no
    // memory is touched. The isb keeps the counter read from being taken
    // early.
    unsafe {
        core::arch::asm!("isb", "mrs {}, cntpct_el0", out(reg) cnt, options(nomem, nostack));
        core::arch::asm!("mrs {}, cntfrq_el0", out(reg) frq, options(nomem, nostack));
    }
    (cnt, frq)
}

/// Monotonic nanoseconds from the physical counter.
pub fn now_ns() -> u64 {
    let (cnt, frq) = counter();
    if frq == 0 {
        return 0;
    }
    ((cnt as u128 * 1_000_000_000) / frq as u128) as u64
}

/// The counter value at `ns` (rounded up: the timer never fires before).
fn ticks_at(ns: u64, frq: u64) -> u64 {
    let t = (ns as u128 * frq as u128).div_ceil(1_000_000_000);
    t.min(u64::MAX as u128) as u64
}

/// Raises the timer's interrupt once the clock reaches `at_ns` (at once
/// if it has passed), replacing any earlier setting.
pub fn arm(at_ns: u64) {
    let (_, frq) = counter();
    let cval = ticks_at(at_ns, frq);
    // SAFETY: writes of the EL1 physical timer's compare value and control
    // (EL0-writable: CONFIG_EXPORT_PTMR_USER). Invariant: only the one PD
    // that holds the timer's IRQ runs this (see the module comment); the
    // kernel neither uses nor switches these registers, so they are that
    // PD's alone. The compare value is written before the enable.
    unsafe {
        core::arch::asm!(
            "msr cntp_cval_el0, {cval}",
            "msr cntp_ctl_el0, {ctl}",
            "isb",
            cval = in(reg) cval,
            ctl = in(reg) CTL_ENABLE,
            options(nomem, nostack)
        );
    }
}

/// Disables the timer: its interrupt is lowered (call before the IRQ is
/// acknowledged).
pub fn silence() {
    // SAFETY: as in `arm`: a write of the timer's control register by the
    // one PD that owns the timer. 0 = disabled, so the level-triggered
    // interrupt line drops before the IRQ is unmasked again.
    unsafe {
        core::arch::asm!("msr cntp_ctl_el0, xzr", "isb", options(nomem, nostack));
    }
}
