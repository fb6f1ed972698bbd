//! The block driver PD on seL4: a virtio-blk device on QEMU `virt`'s
//! virtio-mmio bus, served through the `blk` region's queues with the
//! same code as the host driver (`blk::Server`). The device logic is
//! `blk::virtio` (on the `virtio-drivers` crate); this is the glue:
//! - `virtio_mmio`: the 32 virtio-mmio transports (0x0a000000, 16 KiB,
//!   uncached); the first block device among them is served;
//! - `virtio_dma`: the DMA region (virtqueue and bounce buffer), whose
//!   physical address the microkit tool patches into `virtio_dma_paddr`
//!   (`<setvar symbol="virtio_dma_paddr" region_paddr=".."/>`);
//! - `blk`: the queues and data area shared with the client, which rings
//!   with a protected call (`KICK`) answered once every request has its
//!   response.
//!
//! The device is polled (each request waits at most `DEVICE_TIMEOUT_NS`);
//! its interrupt is not used. A write-through cache of 128 chunks of
//! 4 KiB (`blk::cache`; the whole FAT of the 300 MiB test images is 75)
//! saves most device requests of the FAT crates, which read one block at
//! a time and re-read the FAT on every chain walk and free-cluster search.
#![no_std]
#![no_main]

use blk_driver::cache::{Cached, CHUNK};
use blk_driver::virtio::{self, VirtioDisk};
use blk_driver::Server;
use interfaces::Message;
use pd_api::{ChannelId, Handler, Pd};
use sel4_microkit::{debug_println, protection_domain};
use sel4_pd::{Adapter, Sel4Pd};

/// How long one device request may take before the device is given up.
const DEVICE_TIMEOUT_NS: u64 = 5_000_000_000;

/// Cached chunks: static, as the driver is moved by value out of `init`.
const CACHE_CHUNKS: usize = 128;
static mut CACHE: [[u8; CHUNK]; CACHE_CHUNKS] = [[0; CHUNK]; CACHE_CHUNKS];

struct Driver {
    server: Server,
    disk: Cached<VirtioDisk>,
    /// The device was given up and the log said so.
    said_given_up: bool,
}

impl Handler<Sel4Pd> for Driver {
    fn notified(&mut self, _pd: &Sel4Pd, _ch: ChannelId) {}

    fn protected(&mut self, pd: &Sel4Pd, _ch: ChannelId, msg: &mut Message) {
        let (reply, ended) = self.server.kick(&mut self.disk, msg.label);
        if ended {
            pd.log(format_args!("the block client wrote impossible queue indices; no longer served"));
        }
        if self.disk.disk().given_up() && !self.said_given_up {
            self.said_given_up = true;
            pd.log(format_args!(
                "virtio-blk: a device request missed its {} s deadline; the device is given up, every request fails",
                DEVICE_TIMEOUT_NS / 1_000_000_000
            ));
        }
        *msg = Message::with_words(reply, &[]);
    }
}

fn now_ns() -> u64 {
    sel4_pd::timer::now_ns()
}

#[protection_domain(heap_size = 0x4000)]
fn init() -> Adapter<Driver> {
    let pd = Sel4Pd::current();
    let region = |name: &str| pd.region(name).unwrap_or_else(|| panic!("virtio-blk: no '{name}' mapping"));
    let (mmio, dma, queues) = (region("virtio_mmio"), region("virtio_dma"), region("blk"));
    let paddr = sel4_pd::setvar("virtio_dma_paddr").unwrap_or(0);
    // SAFETY: `virtio_dma` is this PD's alone, mapped read-write for its
    // life, and physically contiguous at `paddr` (the tool chose it for the
    // `region_paddr` setvar); QEMU's DMA is coherent with the cache.
    unsafe { virtio::dma_init(dma.base, paddr, dma.size) }.unwrap_or_else(|e| panic!("virtio-blk: {e}"));
    // SAFETY: `virtio_mmio` is the transports' registers, uncached, this
    // PD's alone for its life.
    let found = unsafe { virtio::probe(mmio.base, mmio.size / virtio::MMIO_STRIDE) };
    let (index, transport) = found.unwrap_or_else(|| panic!("virtio-blk: no block device on the virtio-mmio bus"));
    let disk = VirtioDisk::new(transport, now_ns, DEVICE_TIMEOUT_NS).unwrap_or_else(|e| panic!("virtio-blk: {e}"));
    // SAFETY: `blk` is mapped read-write for the PD's life (aligned to a
    // page); this PD is the driver end of its queues.
    let server = unsafe { Server::new(queues.base, queues.size) }
        .unwrap_or_else(|| panic!("virtio-blk: the 'blk' region is too small"));
    use blk_driver::Disk;
    // SAFETY: `init` runs once per start of the PD (a restart resets .bss
    // first), so this is the only reference to the cache's memory.
    let cache = unsafe { &mut *core::ptr::addr_of_mut!(CACHE) };
    debug_println!(
        "virtio-blk: device on transport {index} (irq {}), {} blocks{}, DMA at {paddr:#x}",
        48 + index,
        disk.blocks(),
        if disk.readonly() { ", read-only" } else { "" }
    );
    Adapter::new(pd, Driver { server, disk: Cached::new(disk, cache), said_given_up: false })
}
