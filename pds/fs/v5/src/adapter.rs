//! fs-v5's adapter to embedded-sdmmc 0.10.0: the block device, the clock,
//! the error mapping and the `Fat` trait. A file of its own so that the
//! faulty test modules (`pds/fs/faulty`) build on this very adapter,
//! without the module export.

use fs_core::{BlkDev, Fat, Mode};
use module_rt::interfaces::fs::FsStatus;
use sdmmc::{Block, BlockCount, BlockDevice, BlockIdx, Error, RawDirectory, RawFile, RawVolume, VolumeIdx};

pub struct Dev(BlkDev);
pub struct Clock;

impl BlockDevice for Dev {
    type Error = fs_core::dev::IoError;
    fn read(&self, blocks: &mut [Block], start: BlockIdx) -> Result<(), Self::Error> {
        blocks.iter_mut().zip(start.0 as u64..).try_for_each(|(b, n)| self.0.read(&mut b.contents, n))
    }
    fn write(&self, blocks: &[Block], start: BlockIdx) -> Result<(), Self::Error> {
        blocks.iter().zip(start.0 as u64..).try_for_each(|(b, n)| self.0.write(&b.contents, n))
    }
    fn num_blocks(&self) -> Result<BlockCount, Self::Error> {
        Ok(BlockCount(self.0.blocks()?.min(u32::MAX as u64) as u32))
    }
}

impl sdmmc::TimeSource for Clock {
    fn get_timestamp(&self) -> sdmmc::Timestamp {
        fs_core::adapter::timestamp!(sdmmc)
    }
}

fn status(e: Error<fs_core::dev::IoError>) -> FsStatus {
    use FsStatus::*;
    match e {
        Error::DeviceError(_) => Io,
        Error::NotFound => NotFound,
        Error::FileAlreadyExists => Exists,
        Error::FilenameError(_) => BadName,
        Error::TooManyOpenDirs | Error::TooManyOpenFiles | Error::TooManyOpenVolumes => TooManyOpen,
        Error::FileAlreadyOpen | Error::DirAlreadyOpen => Busy,
        Error::OpenedDirAsFile | Error::OpenedFileAsDir => WrongKind,
        Error::DeleteNonEmptyDir => NotEmpty,
        Error::DirAlreadyExists => Exists,
        Error::NotEnoughSpace | Error::DiskFull => NoSpace,
        Error::BadHandle => BadHandle,
        Error::InvalidOffset | Error::EndOfFile => BadRequest,
        Error::Unsupported | Error::ReadOnly => Unsupported,
        _ => Corrupt,
    }
}

pub struct Sdmmc {
    vm: sdmmc::VolumeManager<Dev, Clock, 8, 20, 1>,
    vol: RawVolume,
}

impl Fat for Sdmmc {
    type Dir = RawDirectory;
    type File = RawFile;
    const CRATE_VERSION: u32 = 0x00_0a_00;

    fn mount(dev: BlkDev) -> Result<Self, FsStatus> {
        let vm = sdmmc::VolumeManager::new_with_limits(Dev(dev), Clock, 0);
        let vol = vm.open_raw_volume(VolumeIdx(0)).map_err(status)?;
        Ok(Sdmmc { vm, vol })
    }
    fn root(&mut self) -> Result<RawDirectory, FsStatus> {
        self.vm.open_root_dir(self.vol).map_err(status)
    }
    fn open_dir(&mut self, parent: RawDirectory, name: &str) -> Result<RawDirectory, FsStatus> {
        self.vm.open_dir(parent, name).map_err(status)
    }
    fn close_dir(&mut self, dir: RawDirectory) {
        let _ = self.vm.close_dir(dir);
    }
    fn open(&mut self, dir: RawDirectory, name: &str, mode: Mode) -> Result<RawFile, FsStatus> {
        let mode = match mode {
            Mode::ReadOnly => sdmmc::Mode::ReadOnly,
            Mode::CreateOrTruncate => sdmmc::Mode::ReadWriteCreateOrTruncate,
            Mode::CreateOrAppend => sdmmc::Mode::ReadWriteCreateOrAppend,
            Mode::ReadWrite => sdmmc::Mode::ReadWriteAppend,
        };
        self.vm.open_file_in_dir(dir, name, mode).map_err(status)
    }
    fn close(&mut self, file: RawFile) -> Result<(), FsStatus> {
        self.vm.close_file(file).map_err(status)
    }
    fn flush(&mut self, file: RawFile) -> Result<bool, FsStatus> {
        self.vm.flush_file(file).map_err(status).map(|()| true)
    }
    fn seek(&mut self, file: RawFile, pos: u32) -> Result<(), FsStatus> {
        self.vm.file_seek_from_start(file, pos).map_err(status)
    }
    fn length(&mut self, file: RawFile) -> Result<u32, FsStatus> {
        self.vm.file_length(file).map_err(status)
    }
    fn read(&mut self, file: RawFile, buf: &mut [u8]) -> Result<usize, FsStatus> {
        self.vm.read(file, buf).map_err(status)
    }
    fn write(&mut self, file: RawFile, buf: &[u8]) -> Result<(), FsStatus> {
        self.vm.write(file, buf).map_err(status)
    }
    fn list(&mut self, dir: RawDirectory, f: &mut dyn FnMut(&[u8], bool, u32)) -> Result<(), FsStatus> {
        self.vm
            .iterate_dir(dir, |e| {
                if let Some(name) =
                    fs_core::adapter::visible(e.name.base_name(), e.name.extension(), e.attributes.is_volume())
                {
                    f(&name, e.attributes.is_directory(), e.size)
                }
                core::ops::ControlFlow::Continue(())
            })
            .map_err(status)
    }
    fn stat(&mut self, dir: RawDirectory, name: &str) -> Result<(u32, bool), FsStatus> {
        let e = self.vm.find_directory_entry(dir, name).map_err(status)?;
        Ok((e.size, e.attributes.is_directory()))
    }
    fn mkdir(&mut self, dir: RawDirectory, name: &str) -> Result<(), FsStatus> {
        self.vm.make_dir_in_dir(dir, name).map_err(status)
    }
    fn remove(&mut self, dir: RawDirectory, name: &str) -> Result<(), FsStatus> {
        match self.stat(dir, name)? {
            (_, true) => Err(FsStatus::WrongKind),
            _ => self.vm.delete_entry_in_dir(dir, name).map_err(status),
        }
    }
    fn rmdir(&mut self, dir: RawDirectory, name: &str) -> Result<(), FsStatus> {
        match self.stat(dir, name)? {
            (_, false) => Err(FsStatus::WrongKind),
            _ => self.vm.delete_entry_in_dir(dir, name).map_err(status),
        }
    }
}
