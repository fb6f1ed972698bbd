//! A test client of the block driver on seL4: runs the block device's
//! self-test (`blk_driver::client::selftest`) through the `blk` queues from
//! `init`, then prints `blk-test: PASS ...` or `blk-test: FAIL: ...` (the
//! QEMU test's sentinels) and idles.
#![no_std]
#![no_main]

use blk_driver::client::{selftest, Client};
use interfaces::Message;
use pd_api::Pd;
use sel4_microkit::{debug_println, protection_domain, NullHandler};
use sel4_pd::Sel4Pd;

#[protection_domain(heap_size = 0x4000)]
fn init() -> NullHandler {
    let pd = Sel4Pd::current();
    match run(pd) {
        Ok(out) => debug_println!(
            "blk-test: PASS: {} requests answered, {} bad ones refused, disk of {} blocks",
            out.requests,
            out.refused,
            out.disk_blocks
        ),
        Err(e) => debug_println!("blk-test: FAIL: {e}"),
    }
    NullHandler::new()
}

fn run(pd: &Sel4Pd) -> Result<blk_driver::client::Outcome, &'static str> {
    let ch = pd.channel("blk").ok_or("no channel to the block driver 'blk'")?;
    let r = pd.region("blk").filter(|r| r.writable).ok_or("no writable 'blk' region")?;
    // SAFETY: the region is mapped read-write for the PD's life; this PD is
    // the client end of its queues.
    let mut client = unsafe { Client::new(r.base, r.size) }.ok_or("the 'blk' region is too small")?;
    let mut kick = |label| {
        let mut msg = Message::new(label, 0);
        pd.ppcall(ch, &mut msg).ok().map(|_| msg.label)
    };
    let t0 = sel4_pd::timer::now_ns();
    let out = selftest(&mut client, &mut kick, &mut |a| debug_println!("blk-test: {a}"))?;
    debug_println!("blk-test: {} requests in {} us", out.requests, (sel4_pd::timer::now_ns() - t0) / 1000);
    Ok(out)
}
