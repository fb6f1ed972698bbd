//! The kv client PD on seL4: the same load generator as on the host. It
//! works from `init`, as a Microkit PD may, and never returns from it.
#![no_std]
#![no_main]

use sel4_microkit::{protection_domain, NullHandler};
use sel4_pd::Sel4Pd;

// A small heap: sel4-microkit's "alloc" feature (which the manager and the
// shell need) is unified across this workspace and makes every program need one.
#[protection_domain(heap_size = 0x4000)]
fn init() -> NullHandler {
    let pd = Sel4Pd::current();
    #[cfg(feature = "bench")]
    bench::run(pd);
    checking_clients::run(pd);
    NullHandler::new()
}

/// Informative timings of protected calls, in generic-timer ticks (QEMU
/// virt: 62.5 MHz, so one tick is 16 ns of emulated time). PMCCNTR is not
/// exported to user level in this kernel configuration.
#[cfg(feature = "bench")]
mod bench {
    use interfaces::Message;
    use pd_api::Pd;
    use sel4_microkit::debug_println;
    use sel4_pd::{counter, Sel4Pd};

    const N: u64 = 20_000;

    fn time(mut f: impl FnMut()) -> (u64, u64) {
        f();
        let (t0, frq) = counter();
        for _ in 0..N {
            f();
        }
        let (t1, _) = counter();
        (t1 - t0, frq)
    }

    fn report(what: &str, (ticks, frq): (u64, u64)) {
        let ns = ticks as u128 * 1_000_000_000 / frq.max(1) as u128 / N as u128;
        debug_println!("bench: {what}: {N} calls, {ticks} ticks at {frq} Hz, {ns} ns per call");
    }

    pub fn run(pd: &Sel4Pd) {
        let (Some(a), Some(b)) = (pd.channel("kv0_a"), pd.channel("kv0_b")) else {
            debug_println!("bench: needs channels to kv0_a and kv0_b");
            return;
        };
        // A slot with no module: the shell answers itself (PPC round trip
        // plus the shell's dispatch).
        report(
            "PPC to an empty slot (shell replies)",
            time(|| {
                let mut m = Message::new(0x1234, 0);
                let _ = pd.ppcall(b, &mut m);
            }),
        );
        // The live slot: the shell hands the call to the module, which
        // refuses the unknown label (adds the module dispatch).
        report(
            "PPC through the shell into the kv module (refused label)",
            time(|| {
                let mut m = Message::new(0x1234, 0);
                let _ = pd.ppcall(a, &mut m);
            }),
        );
        // A real kv GET through the client stub (capability map + call).
        match kv_api::KvClient::connect(pd, "kv") {
            Ok(mut kv) => {
                let mut buf = [0u8; 16];
                report(
                    "kv GET of a missing key through the client stub",
                    time(|| {
                        let _ = kv.get(b"bench/none", &mut buf);
                    }),
                );
            }
            Err(e) => debug_println!("bench: no kv service: {e}"),
        }
    }
}
