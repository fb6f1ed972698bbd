//! fs v1: the file service on embedded-sdmmc 0.6.0, the first release with
//! handles (`Volume`, `Directory`, `File`) a service can keep. It cannot
//! make directories (`Mkdir` answers `Unsupported`) nor flush a file
//! without closing it.
#![no_std]

use fs_core::{BlkDev, Fat, Mode};
use module_rt::interfaces::fs::FsStatus;
use sdmmc::{Block, BlockCount, BlockDevice, BlockIdx, Directory, Error, File, Volume, VolumeIdx};

pub struct Dev(BlkDev);
pub struct Clock;

impl BlockDevice for Dev {
    type Error = fs_core::dev::IoError;
    fn read(&self, blocks: &mut [Block], start: BlockIdx, _reason: &str) -> Result<(), Self::Error> {
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
        Error::FileNotFound => NotFound,
        Error::FileAlreadyExists => Exists,
        Error::FilenameError(_) => BadName,
        Error::TooManyOpenDirs | Error::TooManyOpenFiles | Error::TooManyOpenVolumes => TooManyOpen,
        Error::FileAlreadyOpen | Error::DirAlreadyOpen => Busy,
        Error::OpenedDirAsFile | Error::OpenedFileAsDir | Error::DeleteDirAsFile => WrongKind,
        Error::NotEnoughSpace => NoSpace,
        Error::BadHandle => BadHandle,
        Error::InvalidOffset | Error::EndOfFile => BadRequest,
        Error::Unsupported | Error::ReadOnly => Unsupported,
        _ => Corrupt,
    }
}

pub struct Sdmmc {
    vm: sdmmc::VolumeManager<Dev, Clock, 8, 20, 1>,
    vol: Volume,
}

impl Fat for Sdmmc {
    type Dir = Directory;
    type File = File;
    const CRATE_VERSION: u32 = 0x00_06_00;

    fn mount(dev: BlkDev) -> Result<Self, FsStatus> {
        let mut vm = sdmmc::VolumeManager::new_with_limits(Dev(dev), Clock, 0);
        let vol = vm.open_volume(VolumeIdx(0)).map_err(status)?;
        Ok(Sdmmc { vm, vol })
    }
    fn root(&mut self) -> Result<Directory, FsStatus> {
        self.vm.open_root_dir(self.vol).map_err(status)
    }
    fn open_dir(&mut self, parent: Directory, name: &str) -> Result<Directory, FsStatus> {
        self.vm.open_dir(parent, name).map_err(status)
    }
    fn close_dir(&mut self, dir: Directory) {
        let _ = self.vm.close_dir(dir);
    }
    fn open(&mut self, dir: Directory, name: &str, mode: Mode) -> Result<File, FsStatus> {
        let mode = match mode {
            Mode::ReadOnly => sdmmc::Mode::ReadOnly,
            Mode::CreateOrTruncate => sdmmc::Mode::ReadWriteCreateOrTruncate,
            Mode::CreateOrAppend => sdmmc::Mode::ReadWriteCreateOrAppend,
            Mode::ReadWrite => sdmmc::Mode::ReadWriteAppend,
        };
        self.vm.open_file_in_dir(dir, name, mode).map_err(status)
    }
    fn close(&mut self, file: File) -> Result<(), FsStatus> {
        self.vm.close_file(file).map_err(status)
    }
    fn flush(&mut self, file: File) -> Result<bool, FsStatus> {
        let _ = file;
        Ok(false)
    }
    fn seek(&mut self, file: File, pos: u32) -> Result<(), FsStatus> {
        self.vm.file_seek_from_start(file, pos).map_err(status)
    }
    fn length(&mut self, file: File) -> Result<u32, FsStatus> {
        self.vm.file_length(file).map_err(status)
    }
    fn read(&mut self, file: File, buf: &mut [u8]) -> Result<usize, FsStatus> {
        self.vm.read(file, buf).map_err(status)
    }
    fn write(&mut self, file: File, buf: &[u8]) -> Result<(), FsStatus> {
        match self.vm.write(file, buf).map_err(status)? {
            n if n == buf.len() => Ok(()),
            _ => Err(FsStatus::NoSpace),
        }
    }
    fn list(&mut self, dir: Directory, f: &mut dyn FnMut(&[u8], bool, u32)) -> Result<(), FsStatus> {
        self.vm
            .iterate_dir(dir, |e| {
                if let Some(name) =
                    fs_core::adapter::visible(e.name.base_name(), e.name.extension(), e.attributes.is_volume())
                {
                    f(&name, e.attributes.is_directory(), e.size)
                }
            })
            .map_err(status)
    }
    fn stat(&mut self, dir: Directory, name: &str) -> Result<(u32, bool), FsStatus> {
        let e = self.vm.find_directory_entry(dir, name).map_err(status)?;
        Ok((e.size, e.attributes.is_directory()))
    }
    fn mkdir(&mut self, _dir: Directory, _name: &str) -> Result<(), FsStatus> {
        Err(FsStatus::Unsupported)
    }
    fn remove(&mut self, dir: Directory, name: &str) -> Result<(), FsStatus> {
        self.vm.delete_file_in_dir(dir, name).map_err(status)
    }
}

module_rt::export_module!(fs_core::FsModule<Sdmmc, 1, 1>);
