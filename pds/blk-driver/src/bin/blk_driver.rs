//! The block driver on the host runtime: the device is a disk image file,
//! named by `HOST_DISK_<pd name>` if set (a system with two drivers, such
//! as the fs benchmark's, gives each its own disk), else by `HOST_DISK`
//! (set by `host-runtime --disk`). Requests arrive
//! through the `blk` region's queues, rung by a protected call.
use blk_driver::{DeviceError, Disk, Server};
use host_runtime::HostPd;
use interfaces::Message;
use pd_api::{ChannelId, Handler, Pd};
use std::fs::File;
use std::os::unix::fs::FileExt;

struct ImageFile {
    file: File,
    blocks: u64,
}

impl Disk for ImageFile {
    fn blocks(&self) -> u64 {
        self.blocks
    }
    fn read(&mut self, block: u64, out: &mut [u8]) -> Result<(), DeviceError> {
        self.file.read_exact_at(out, block * interfaces::blk::BLOCK as u64).map_err(|_| DeviceError)
    }
    fn write(&mut self, block: u64, data: &[u8]) -> Result<(), DeviceError> {
        self.file.write_all_at(data, block * interfaces::blk::BLOCK as u64).map_err(|_| DeviceError)
    }
    fn flush(&mut self) -> Result<(), DeviceError> {
        self.file.sync_data().map_err(|_| DeviceError)
    }
}

struct Driver {
    server: Server,
    disk: ImageFile,
}

impl Handler<HostPd> for Driver {
    fn notified(&mut self, _pd: &HostPd, _ch: ChannelId) {}

    fn protected(&mut self, pd: &HostPd, _ch: ChannelId, msg: &mut Message) {
        let (reply, ended) = self.server.kick(&mut self.disk, msg.label);
        if ended {
            pd.log(format_args!("the block client wrote impossible queue indices; no longer served"));
        }
        *msg = Message::with_words(reply, &[]);
    }
}

fn main() {
    host_runtime::run(|pd| {
        let fail = |why: String| -> ! {
            pd.log(format_args!("{why}"));
            std::process::exit(2)
        };
        let path = std::env::var(format!("HOST_DISK_{}", pd.name()))
            .or_else(|_| std::env::var("HOST_DISK"))
            .unwrap_or_else(|_| fail("no disk image (HOST_DISK unset)".into()));
        let file = File::options()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap_or_else(|e| fail(format!("disk image {path}: {e}")));
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let region = pd.region("blk").filter(|r| r.writable).unwrap_or_else(|| fail("no writable 'blk' region".into()));
        // SAFETY: the region is mapped for the PD's life; this PD is the
        // driver end of its queues.
        let server = unsafe { Server::new(region.base, region.size) }
            .unwrap_or_else(|| fail("the 'blk' region is too small".into()));
        pd.log(format_args!("disk {path}: {} blocks", len / interfaces::blk::BLOCK as u64));
        Driver { server, disk: ImageFile { file, blocks: len / interfaces::blk::BLOCK as u64 } }
    })
}
