//! The file service's client PD on seL4: the same load as on the host
//! (`checking_clients::fs::run`: files appended, read back and audited through the
//! fs service). It works from `init`, as a Microkit PD may. The host's
//! stop file has no seL4 counterpart, so it makes a fixed number of steps
//! ([`STEPS`]), then stops as the host's client does on `HOST_FS_STOP`:
//! it closes its files, re-reads them and logs its model (`fsmodel ...`,
//! then `fs client done ...`), which the QEMU test checks the disk image
//! against. The clients take turns to stop (the `turn` region they share:
//! client n stops once it holds n, then stores n + 1), so that their logs
//! never interleave on the debug console. Built with the feature `dirs`,
//! its audits also make, check and try to remove a directory (the host
//! client's `HOST_FS_DIRS`).
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU64, Ordering};
use pd_api::Pd;
use sel4_microkit::{protection_domain, NullHandler};
use sel4_pd::Sel4Pd;

/// The client's steps before its clean stop: enough to outlast the QEMU
/// test's live updates (build/xtask/tests/qemu.rs,
/// `the_file_service_updates_live_across_the_fat_releases_on_sel4`).
const STEPS: u64 = 8_000;

#[protection_domain(heap_size = 0x4000)]
fn init() -> NullHandler {
    let pd = Sel4Pd::current();
    let turn = match pd.region("turn") {
        // SAFETY: a writable page the clients share, used through an atomic.
        Some(r) if r.writable && r.size >= core::mem::size_of::<AtomicU64>() => unsafe {
            &*(r.base as *const AtomicU64)
        },
        _ => {
            pd.log(format_args!("no writable 'turn' region"));
            return NullHandler::new();
        }
    };
    let n = checking_clients::fs::number(pd.name());
    checking_clients::fs::run(pd, &checking_clients::fs::after_steps_in_turn(STEPS, turn, n), cfg!(feature = "dirs"));
    turn.store(n as u64 + 1, Ordering::Release);
    NullHandler::new()
}
