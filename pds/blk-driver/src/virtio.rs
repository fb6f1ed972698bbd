//! A virtio-blk device on a virtio-mmio transport as a [`Disk`], on the
//! `virtio-drivers` crate (rcore-os). What the crate needs from the
//! platform ([`DmaHal`]) is one DMA region: mapped at a virtual address,
//! physically contiguous at a physical one (on seL4 a Microkit memory
//! region with a `<setvar region_paddr>`), from which the virtqueue and
//! the driver's request buffers are taken. The client's data never
//! reaches the device directly: it is copied through a bounce buffer in
//! that region (and the crate's own small buffers through a shadow page),
//! so the device sees nothing but the region.
//!
//! Every wait for the device is bounded by a deadline on a caller's
//! clock; a request that misses it fails, and the device is given up for
//! good (its buffers may still be the device's, so nothing is submitted
//! again). One wait is the crate's and unbounded: `flush`, for which the
//! crate has no non-blocking form (QEMU answers it at once).
use crate::{DeviceError, Disk};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use interfaces::blk::BLOCK;
use virtio_drivers::device::blk::{BlkReq, BlkResp, VirtIOBlk, SECTOR_SIZE};
use virtio_drivers::transport::mmio::{MmioTransport, VirtIOHeader};
use virtio_drivers::transport::{DeviceType, Transport};
use virtio_drivers::{BufferDirection, Hal, PhysAddr, PAGE_SIZE};

const _: () = assert!(BLOCK == SECTOR_SIZE, "the protocol's block is virtio's sector");

/// The size of one virtio-mmio transport's window (QEMU `virt`: 32 of
/// them from 0x0a000000, interrupts SPI 16 + n).
pub const MMIO_STRIDE: usize = 0x200;

/// The bytes one device request moves: a bigger client request is split.
pub const BOUNCE: usize = 4096;

/// The DMA region, set once by [`dma_init`]; allocation only grows (the
/// driver lives as long as its PD, so nothing is ever given back).
struct Dma {
    vaddr: AtomicUsize,
    paddr: AtomicUsize,
    size: AtomicUsize,
    used: AtomicUsize,
}

static DMA: Dma = Dma {
    vaddr: AtomicUsize::new(0),
    paddr: AtomicUsize::new(0),
    size: AtomicUsize::new(0),
    used: AtomicUsize::new(0),
};

/// Hands the DMA region to the driver.
///
/// # Safety
/// `vaddr..vaddr + size` is mapped read-write for the program's life,
/// physically contiguous from `paddr`, coherent with the device (or
/// uncached), and used by nothing else.
pub unsafe fn dma_init(vaddr: *mut u8, paddr: usize, size: usize) -> Result<(), &'static str> {
    let v = vaddr as usize;
    if v == 0 || paddr == 0 {
        return Err("DMA region without an address (is the setvar region_paddr there?)");
    }
    if !v.is_multiple_of(PAGE_SIZE)
        || !paddr.is_multiple_of(PAGE_SIZE)
        || !size.is_multiple_of(PAGE_SIZE)
        || size < 4 * PAGE_SIZE
    {
        return Err("DMA region not page aligned, or under 4 pages");
    }
    if paddr.checked_add(size).is_none() || v.checked_add(size).is_none() {
        return Err("DMA region wraps around");
    }
    if DMA.size.load(Relaxed) != 0 {
        return Err("DMA region set twice");
    }
    DMA.vaddr.store(v, Relaxed);
    DMA.paddr.store(paddr, Relaxed);
    DMA.used.store(0, Relaxed);
    DMA.size.store(size, Relaxed);
    Ok(())
}

/// The physical address of `len` bytes at `vaddr`, if all of them lie in
/// the DMA region.
fn dma_translate(vaddr: usize, len: usize) -> Option<usize> {
    let (base, size) = (DMA.vaddr.load(Relaxed), DMA.size.load(Relaxed));
    let off = vaddr.checked_sub(base)?;
    (len <= size && off <= size - len).then(|| DMA.paddr.load(Relaxed) + off)
}

/// `pages` zeroed pages of the DMA region: (physical, virtual).
fn dma_alloc_pages(pages: usize) -> Option<(usize, NonNull<u8>)> {
    let len = pages.checked_mul(PAGE_SIZE)?;
    let (used, size) = (DMA.used.load(Relaxed), DMA.size.load(Relaxed));
    if len == 0 || len > size - used {
        return None;
    }
    DMA.used.store(used + len, Relaxed);
    let v = DMA.vaddr.load(Relaxed) + used;
    // SAFETY: `v..v + len` lies in the region `dma_init` was given (mapped
    // read-write, ours alone) and was never handed out before.
    unsafe { core::ptr::write_bytes(v as *mut u8, 0, len) };
    Some((DMA.paddr.load(Relaxed) + used, NonNull::new(v as *mut u8)?))
}

/// The platform side of `virtio-drivers`: DMA from the region of
/// [`dma_init`], no IOMMU, no MMIO translation (that is for PCI only).
pub struct DmaHal;

// SAFETY: `dma_alloc` returns zeroed, page-aligned memory of the DMA region
// that no other allocation aliases (the region only grows); `share` gives
// the device the physical address of a buffer only if the whole buffer is
// in that region (every buffer the driver below submits is), and copies
// any other through the shadow page.
unsafe impl Hal for DmaHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let (p, v) = dma_alloc_pages(pages).unwrap_or_else(|| panic!("virtio: DMA region exhausted ({pages} pages)"));
        (p as PhysAddr, v)
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, _vaddr: NonNull<u8>, _pages: usize) -> i32 {
        // Kept for the program's life: the device is never torn down.
        0
    }

    unsafe fn mmio_phys_to_virt(_paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        panic!("virtio: MMIO translation is for the PCI transport, which this driver does not use")
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        if let Some(p) = dma_translate(buffer.cast::<u8>().as_ptr() as usize, buffer.len()) {
            return p as PhysAddr;
        }
        // SAFETY: the crate's contract: `buffer` is valid for the call.
        let p = unsafe { shadow_share(buffer) };
        p.unwrap_or_else(|| panic!("virtio: no room to share a {}-byte buffer", buffer.len())) as PhysAddr
    }

    unsafe fn unshare(paddr: PhysAddr, buffer: NonNull<[u8]>, direction: BufferDirection) {
        // SAFETY: the crate's contract: `buffer` is the one shared as `paddr`.
        unsafe { shadow_unshare(paddr as usize, buffer, direction) }
    }
}

/// A page of the DMA region for the small buffers the crate shares from
/// outside it (the request header and status of its blocking `flush`,
/// on its stack): copied in on `share`, back on `unshare`. Its virtual
/// address (0 until first used), bytes in use, buffers shared.
static SHADOW: [AtomicUsize; 3] = [AtomicUsize::new(0), AtomicUsize::new(0), AtomicUsize::new(0)];

/// # Safety
/// `buffer` is valid for reads for the call.
unsafe fn shadow_share(buffer: NonNull<[u8]>) -> Option<usize> {
    if SHADOW[0].load(Relaxed) == 0 {
        SHADOW[0].store(dma_alloc_pages(1)?.1.as_ptr() as usize, Relaxed);
    }
    let (base, used) = (SHADOW[0].load(Relaxed), SHADOW[1].load(Relaxed));
    let off = used.next_multiple_of(16);
    let len = buffer.len();
    if len > PAGE_SIZE.saturating_sub(off) {
        return None;
    }
    SHADOW[1].store(off + len, Relaxed);
    SHADOW[2].store(SHADOW[2].load(Relaxed) + 1, Relaxed);
    // SAFETY: `base + off .. + len` is inside the shadow page (checked
    // above), which nothing else uses; `buffer` is readable (the contract).
    unsafe { core::ptr::copy_nonoverlapping(buffer.cast::<u8>().as_ptr(), (base + off) as *mut u8, len) };
    dma_translate(base + off, len)
}

/// # Safety
/// `buffer` is valid for writes for the call, and was shared as `paddr`.
unsafe fn shadow_unshare(paddr: usize, buffer: NonNull<[u8]>, direction: BufferDirection) {
    let base = SHADOW[0].load(Relaxed);
    let Some(page) = dma_translate(base, PAGE_SIZE).filter(|_| base != 0) else { return };
    let Some(off) = paddr.checked_sub(page).filter(|&o| o < PAGE_SIZE) else { return };
    let len = buffer.len().min(PAGE_SIZE - off);
    if direction != BufferDirection::DriverToDevice {
        // SAFETY: inside the shadow page (clamped above); the device is done
        // with it (the crate unshares after the request completed).
        unsafe { core::ptr::copy_nonoverlapping((base + off) as *const u8, buffer.cast::<u8>().as_ptr(), len) };
    }
    let live = SHADOW[2].load(Relaxed).saturating_sub(1);
    SHADOW[2].store(live, Relaxed);
    if live == 0 {
        SHADOW[1].store(0, Relaxed);
    }
}

/// The first virtio block device among `count` transports at `base`:
/// its index and transport.
///
/// # Safety
/// `base..base + count * MMIO_STRIDE` is the virtio-mmio window, mapped
/// uncached for the program's life, used by nothing else.
pub unsafe fn probe(base: *mut u8, count: usize) -> Option<(usize, MmioTransport<'static>)> {
    (0..count).find_map(|i| {
        // SAFETY: the caller's contract; each window is 0x200 bytes, aligned.
        let header = NonNull::new(unsafe { base.add(i * MMIO_STRIDE) })?.cast::<VirtIOHeader>();
        // An empty transport (device id 0) or another kind is skipped.
        let t = unsafe { MmioTransport::new(header, MMIO_STRIDE) }.ok()?;
        (t.device_type() == DeviceType::Block).then_some((i, t))
    })
}

/// The driver's own buffers of a request, in the DMA region.
#[repr(C)]
struct Io {
    req: BlkReq,
    resp: BlkResp,
    data: [u8; BOUNCE],
}

pub struct VirtioDisk {
    dev: VirtIOBlk<DmaHal, MmioTransport<'static>>,
    io: NonNull<Io>,
    /// The caller's clock and how many of its ticks a request may take.
    clock: fn() -> u64,
    timeout: u64,
    /// A request missed its deadline: the device is given up.
    failed: bool,
    readonly: bool,
}

impl VirtioDisk {
    /// Initialises the device behind `transport` (its virtqueue and
    /// buffers come from the DMA region, which [`dma_init`] must have set).
    pub fn new(
        transport: MmioTransport<'static>,
        clock: fn() -> u64,
        timeout: u64,
    ) -> Result<VirtioDisk, &'static str> {
        if DMA.size.load(Relaxed) == 0 {
            return Err("no DMA region");
        }
        let dev = VirtIOBlk::<DmaHal, _>::new(transport).map_err(|_| "the virtio-blk device refused to start")?;
        let pages = core::mem::size_of::<Io>().div_ceil(PAGE_SIZE);
        let (_, io) = dma_alloc_pages(pages).ok_or("DMA region too small for the request buffers")?;
        let io = io.cast::<Io>();
        // SAFETY: fresh, zeroed, page-aligned DMA memory of at least
        // size_of::<Io>() bytes; every field of Io is valid when zeroed
        // except possibly the crate's types, which are written here.
        unsafe {
            core::ptr::addr_of_mut!((*io.as_ptr()).req).write(BlkReq::default());
            core::ptr::addr_of_mut!((*io.as_ptr()).resp).write(BlkResp::default());
        }
        let readonly = dev.readonly();
        Ok(VirtioDisk { dev, io, clock, timeout, failed: false, readonly })
    }

    pub fn readonly(&self) -> bool {
        self.readonly
    }

    /// Whether a request missed its deadline, so that the device was
    /// given up (every request fails from then on).
    pub fn given_up(&self) -> bool {
        self.failed
    }

    /// Waits, until the deadline, for the device to complete `token`.
    fn wait(&mut self, token: u16) -> Result<(), DeviceError> {
        let deadline = (self.clock)().saturating_add(self.timeout);
        loop {
            match self.dev.peek_used() {
                Some(t) if t == token => return Ok(()),
                // Only one request is ever outstanding: another token is
                // the device's mistake.
                Some(_) => break,
                None if (self.clock)() > deadline => break,
                None => core::hint::spin_loop(),
            }
        }
        self.failed = true;
        Err(DeviceError)
    }

    /// One device request of `len` bytes (at most [`BOUNCE`]) at `sector`
    /// through the bounce buffer.
    fn request(&mut self, write: bool, sector: u64, len: usize) -> Result<(), DeviceError> {
        if self.failed || len == 0 || len > BOUNCE || !len.is_multiple_of(BLOCK) {
            return Err(DeviceError);
        }
        let sector = usize::try_from(sector).map_err(|_| DeviceError)?;
        // SAFETY: `io` is the DMA memory allocated for this device alone in
        // `new`; only one request is outstanding at a time, and after a
        // missed deadline (when the device may still own the buffers) no
        // request is made again (`failed`). The same buffers are passed to
        // the completion as to the submission.
        unsafe {
            let io = &mut *self.io.as_ptr();
            let buf = &mut io.data[..len];
            if write {
                let token =
                    self.dev.write_blocks_nb(sector, &mut io.req, buf, &mut io.resp).map_err(|_| DeviceError)?;
                self.wait(token)?;
                self.dev.complete_write_blocks(token, &io.req, buf, &mut io.resp).map_err(|_| DeviceError)
            } else {
                let token = self.dev.read_blocks_nb(sector, &mut io.req, buf, &mut io.resp).map_err(|_| DeviceError)?;
                self.wait(token)?;
                self.dev.complete_read_blocks(token, &io.req, buf, &mut io.resp).map_err(|_| DeviceError)
            }
        }
    }

    fn bounce(&mut self) -> &mut [u8; BOUNCE] {
        // SAFETY: as in `request`; no request is outstanding between calls.
        unsafe { &mut (*self.io.as_ptr()).data }
    }
}

impl Disk for VirtioDisk {
    fn blocks(&self) -> u64 {
        self.dev.capacity()
    }

    fn read(&mut self, block: u64, out: &mut [u8]) -> Result<(), DeviceError> {
        for (i, chunk) in out.chunks_mut(BOUNCE).enumerate() {
            self.request(false, block + (i * BOUNCE / BLOCK) as u64, chunk.len())?;
            chunk.copy_from_slice(&self.bounce()[..chunk.len()]);
        }
        Ok(())
    }

    fn write(&mut self, block: u64, data: &[u8]) -> Result<(), DeviceError> {
        if self.readonly {
            return Err(DeviceError);
        }
        for (i, chunk) in data.chunks(BOUNCE).enumerate() {
            self.bounce()[..chunk.len()].copy_from_slice(chunk);
            self.request(true, block + (i * BOUNCE / BLOCK) as u64, chunk.len())?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), DeviceError> {
        if self.failed {
            return Err(DeviceError);
        }
        self.dev.flush().map_err(|_| DeviceError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dma_region_is_checked_allocated_and_translated() {
        extern crate std;
        let mem = std::vec![0u8; 9 * PAGE_SIZE].leak();
        let base = mem.as_mut_ptr().wrapping_add(mem.as_ptr().align_offset(PAGE_SIZE));
        let paddr = 0x4000_0000;
        // SAFETY: 8 pages of leaked memory, this test's alone.
        unsafe {
            assert!(dma_init(base.wrapping_add(1), paddr, 8 * PAGE_SIZE).is_err());
            assert!(dma_init(base, 0, 8 * PAGE_SIZE).is_err());
            assert!(dma_init(base, paddr, 2 * PAGE_SIZE).is_err());
            dma_init(base, paddr, 8 * PAGE_SIZE).unwrap();
            assert!(dma_init(base, paddr, 8 * PAGE_SIZE).is_err());
            base.write_bytes(0xee, 8 * PAGE_SIZE);
        }
        let (p, v) = dma_alloc_pages(2).unwrap();
        assert_eq!((p, v.as_ptr()), (paddr, base));
        // SAFETY: the two pages just allocated.
        assert!(unsafe { core::slice::from_raw_parts(v.as_ptr(), 2 * PAGE_SIZE) }.iter().all(|&b| b == 0));
        assert_eq!(dma_alloc_pages(1).unwrap().0, paddr + 2 * PAGE_SIZE);
        assert!(dma_alloc_pages(6).is_none());
        assert!(dma_alloc_pages(0).is_none());
        assert!(dma_alloc_pages(usize::MAX).is_none());
        let b = base as usize;
        assert_eq!(dma_translate(b + 100, 10), Some(paddr + 100));
        assert_eq!(dma_translate(b + 8 * PAGE_SIZE - 4, 4), Some(paddr + 8 * PAGE_SIZE - 4));
        assert_eq!(dma_translate(b + 8 * PAGE_SIZE - 4, 5), None);
        assert_eq!(dma_translate(b - 1, 1), None);
        assert_eq!(dma_translate(b, usize::MAX), None);

        // A buffer outside the region goes through the shadow page, and
        // comes back with what the device wrote there.
        let mut status = [7u8; 3];
        let buf = NonNull::from(&mut status[..]);
        // SAFETY: `status` lives through both calls.
        let p = unsafe { DmaHal::share(buf, BufferDirection::DeviceToDriver) } as usize;
        let shadow = b + (p - paddr);
        assert!(shadow >= b + 3 * PAGE_SIZE && shadow + 3 <= b + 8 * PAGE_SIZE);
        // SAFETY: the shadow bytes just shared; the "device" writes them.
        unsafe {
            assert_eq!(*(shadow as *const [u8; 3]), [7, 7, 7]);
            (shadow as *mut u8).write(0);
            DmaHal::unshare(p as PhysAddr, buf, BufferDirection::DeviceToDriver);
        }
        assert_eq!(status, [0, 7, 7]);
        // A buffer inside the region is translated, not copied.
        let inside = NonNull::slice_from_raw_parts(NonNull::new(base).unwrap(), 16);
        // SAFETY: 16 bytes of the region, valid for the call.
        assert_eq!(unsafe { DmaHal::share(inside, BufferDirection::Both) } as usize, paddr);
    }
}
