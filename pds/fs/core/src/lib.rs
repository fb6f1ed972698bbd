//! The file service: what every version shares. A version is a FAT crate
//! release behind the [`Fat`] trait (its adapter, in `pds/fs/vN`); this
//! crate serves the wire protocol (`interfaces::fs`), keeps the open-file
//! table (the service's state: each open file by path, mode and position,
//! so a version with another crate reopens it by its logical identity),
//! and writes and reads the state schemas.
#![no_std]

pub mod dev;
pub mod schema;
pub mod volume;

use heapless::String;
use interfaces::abi::{status, ModuleDescriptor, RegionInfo};
use interfaces::fs::{self, FsOp, FsRequest, FsStatus, OpenMode, MAX_PATH};
use interfaces::Message;
use module_rt::Env;

pub use dev::BlkDev;

/// Open files at once, over all clients (the adapters give their crate's
/// volume manager room for as many).
pub const MAX_OPEN: usize = 20;
/// Clients, on channels 1..=MAX_CLIENTS, each with its buffer `buf<ch>`.
pub const MAX_CLIENTS: u32 = 2;

/// How the adapter opens a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    ReadOnly,
    CreateOrTruncate,
    CreateOrAppend,
    /// An existing file, read and write, not truncated (a reopen).
    ReadWrite,
}

/// A FAT crate release, as thin as its API allows. Directories are
/// opened for one operation and closed after it; files stay open.
pub trait Fat: Sized {
    type Dir: Copy;
    type File: Copy;
    /// The crate's version, `major << 16 | minor << 8 | patch`.
    const CRATE_VERSION: u32;
    /// Mounts the first partition of `dev`.
    fn mount(dev: BlkDev) -> Result<Self, FsStatus>;
    fn root(&mut self) -> Result<Self::Dir, FsStatus>;
    fn open_dir(&mut self, parent: Self::Dir, name: &str) -> Result<Self::Dir, FsStatus>;
    fn close_dir(&mut self, dir: Self::Dir);
    fn open(&mut self, dir: Self::Dir, name: &str, mode: Mode) -> Result<Self::File, FsStatus>;
    fn close(&mut self, file: Self::File) -> Result<(), FsStatus>;
    /// Writes the file's directory entry; `Ok(false)` if the crate cannot
    /// (then the file is closed and reopened).
    fn flush(&mut self, file: Self::File) -> Result<bool, FsStatus>;
    fn seek(&mut self, file: Self::File, pos: u32) -> Result<(), FsStatus>;
    fn length(&mut self, file: Self::File) -> Result<u32, FsStatus>;
    fn read(&mut self, file: Self::File, buf: &mut [u8]) -> Result<usize, FsStatus>;
    fn write(&mut self, file: Self::File, buf: &[u8]) -> Result<(), FsStatus>;
    /// Calls `f(name, is_dir, size)` for each entry.
    fn list(&mut self, dir: Self::Dir, f: &mut dyn FnMut(&[u8], bool, u32)) -> Result<(), FsStatus>;
    /// (size, is_dir) of an entry.
    fn stat(&mut self, dir: Self::Dir, name: &str) -> Result<(u32, bool), FsStatus>;
    fn mkdir(&mut self, dir: Self::Dir, name: &str) -> Result<(), FsStatus>;
    fn remove(&mut self, dir: Self::Dir, name: &str) -> Result<(), FsStatus>;
    /// Removes an empty directory; most releases cannot.
    fn rmdir(&mut self, _dir: Self::Dir, _name: &str) -> Result<(), FsStatus> {
        Err(FsStatus::Unsupported)
    }
}

pub type Path = String<MAX_PATH>;

/// One open file: the state that moves between versions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenFile {
    /// The client's channel.
    pub owner: u32,
    pub path: Path,
    pub writable: bool,
    pub pos: u32,
    /// Bytes written through this handle (state schema 2 on).
    pub written: u64,
}

/// A client's shared buffer.
#[derive(Clone, Copy)]
struct Buffer {
    base: *mut u8,
    len: usize,
}

pub struct FsService<F: Fat, const VERSION: u32> {
    env: Env,
    /// The service's own end of the block device (the crate has another):
    /// it commits the staged writes of each call and flushes.
    dev: BlkDev,
    fat: Option<F>,
    pub files: [Option<OpenFile>; MAX_OPEN],
    handles: [Option<F::File>; MAX_OPEN],
    buffers: [Option<Buffer>; MAX_CLIENTS as usize + 1],
    /// The disk's size, once mounted (0 before).
    disk_blocks: u64,
    /// Open files written (or opened for writing) since their directory
    /// entry was last written: `prepare` syncs only these, so that a
    /// probation checkpoint after every call costs only the touched files.
    dirty: [bool; MAX_OPEN],
    /// Something may have been written since the device was last flushed.
    dev_dirty: bool,
}

/// The descriptor of version `version` with state schema `schema`.
pub const fn descriptor(version: u32, schema: u32) -> ModuleDescriptor {
    ModuleDescriptor::new("fs", version, schema).channel("blk").region("blk").region("buf1").region("buf2")
}

fn buffer(r: RegionInfo) -> Option<Buffer> {
    (r.writable != 0 && r.size > 0).then_some(Buffer { base: r.base, len: r.size })
}

/// Splits `/A/B/C` into its parent components and the leaf.
fn components(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|c| !c.is_empty())
}

impl<F: Fat, const VERSION: u32> FsService<F, VERSION> {
    pub fn new(env: Env) -> Result<Self, &'static str> {
        let mut buffers = [None; MAX_CLIENTS as usize + 1];
        for (ch, name) in [(1, "buf1"), (2, "buf2")] {
            buffers[ch] = Some(env.region(name).and_then(buffer).ok_or("a client buffer is missing or read-only")?);
        }
        // The disk is not touched here: the old version may still be using
        // the block queues (it is mounted at the import or the first call).
        let dev = BlkDev::attach(env)?;
        // Nothing staged is this instance's (a module's memory starts
        // zeroed, but a host that makes several instances reuses it).
        dev::discard();
        Ok(FsService {
            env,
            dev,
            fat: None,
            files: Default::default(),
            handles: [None; MAX_OPEN],
            buffers,
            disk_blocks: 0,
            dirty: [false; MAX_OPEN],
            dev_dirty: false,
        })
    }

    fn fat(&mut self) -> Result<&mut F, FsStatus> {
        if self.fat.is_none() {
            let dev = BlkDev::attach(self.env).map_err(|_| FsStatus::Io)?;
            // The budget of a call follows the disk's size, once known.
            self.disk_blocks = dev.blocks().map_err(|_| FsStatus::Io)?;
            dev::new_call(self.disk_blocks);
            volume::check(self.disk_blocks, |n, block| dev.read(block, n).map_err(|_| FsStatus::Io))?;
            self.fat = Some(F::mount(dev)?);
        }
        self.fat.as_mut().ok_or(FsStatus::Io)
    }

    /// Runs `f` on the directory holding `path`'s leaf (or on the directory
    /// `path` itself with `whole`), closing what it opened.
    fn in_dir<R>(
        &mut self,
        path: &str,
        whole: bool,
        f: impl FnOnce(&mut F, F::Dir, &str) -> Result<R, FsStatus>,
    ) -> Result<R, FsStatus> {
        let n = components(path).count();
        if n == 0 && !whole {
            return Err(FsStatus::BadName);
        }
        let fat = self.fat()?;
        let mut dir = fat.root()?;
        let parents = if whole { n } else { n - 1 };
        let mut leaf = "";
        for (i, c) in components(path).enumerate() {
            if i < parents {
                match fat.open_dir(dir, c) {
                    Ok(d) => {
                        fat.close_dir(dir);
                        dir = d;
                    }
                    Err(e) => {
                        fat.close_dir(dir);
                        return Err(e);
                    }
                }
            } else {
                leaf = c;
            }
        }
        let r = f(fat, dir, leaf);
        fat.close_dir(dir);
        r
    }

    fn open_file(&mut self, path: &str, mode: Mode) -> Result<F::File, FsStatus> {
        self.in_dir(path, false, |fat, dir, leaf| fat.open(dir, leaf, mode))
    }

    fn slot(&self, ch: u32, handle: u64) -> Result<usize, FsStatus> {
        let i = usize::try_from(handle).ok().and_then(|h| h.checked_sub(1)).filter(|&i| i < MAX_OPEN);
        let i = i.ok_or(FsStatus::BadHandle)?;
        match &self.files[i] {
            Some(f) if f.owner == ch && self.handles[i].is_some() => Ok(i),
            _ => Err(FsStatus::BadHandle),
        }
    }

    /// The handle's file, positioned at the handle's position.
    fn positioned(&mut self, ch: u32, handle: u64) -> Result<(usize, F::File), FsStatus> {
        let i = self.slot(ch, handle)?;
        let (file, pos) = (self.handles[i].ok_or(FsStatus::BadHandle)?, self.files[i].as_ref().map_or(0, |f| f.pos));
        self.fat()?.seek(file, pos)?;
        Ok((i, file))
    }

    /// Makes the file's size and data durable in its directory entry.
    fn sync(&mut self, i: usize) -> Result<(), FsStatus> {
        let (Some(file), Some(of)) = (self.handles[i], self.files[i].clone()) else { return Ok(()) };
        if !self.fat()?.flush(file)? {
            // No flush in this release: close (which writes the entry) and
            // reopen without truncating.
            self.handles[i] = None;
            self.fat()?.close(file)?;
            let mode = if of.writable { Mode::ReadWrite } else { Mode::ReadOnly };
            self.handles[i] = Some(self.open_file(&of.path, mode)?);
        }
        self.dirty[i] = false;
        Ok(())
    }

    fn client_buffer(&self, ch: u32, len: u64) -> Result<&'static mut [u8], FsStatus> {
        let b = self.buffers.get(ch as usize).copied().flatten().ok_or(FsStatus::BadRequest)?;
        let len = usize::try_from(len).ok().filter(|&l| l <= b.len).ok_or(FsStatus::BadRequest)?;
        // SAFETY: the client's buffer region, mapped while the module is
        // hosted; the client reads or writes it only between its calls
        // (a client that does not only harms its own data).
        Ok(unsafe { core::slice::from_raw_parts_mut(b.base, len) })
    }

    fn run(&mut self, ch: u32, req: &FsRequest) -> Result<(u64, u64), FsStatus> {
        match req.op {
            FsOp::Open => {
                let mode = match OpenMode::from_word(req.arg).ok_or(FsStatus::BadRequest)? {
                    OpenMode::Read => Mode::ReadOnly,
                    OpenMode::Create => Mode::CreateOrTruncate,
                    OpenMode::Append => Mode::CreateOrAppend,
                };
                let path = Path::try_from(req.path).map_err(|_| FsStatus::BadName)?;
                let i = self.files.iter().position(Option::is_none).ok_or(FsStatus::TooManyOpen)?;
                let file = self.open_file(&path, mode)?;
                // Positions are the service's: an appender starts at the end.
                let pos = if mode == Mode::CreateOrAppend { self.length(file)? } else { 0 };
                self.handles[i] = Some(file);
                self.dirty[i] = mode != Mode::ReadOnly;
                self.files[i] = Some(OpenFile { owner: ch, path, writable: mode != Mode::ReadOnly, pos, written: 0 });
                Ok((i as u64 + 1, 0))
            }
            FsOp::Read => {
                let buf = self.client_buffer(ch, req.arg)?;
                let (i, file) = self.positioned(ch, req.handle)?;
                let mut n = 0;
                while n < buf.len() {
                    match self.fat()?.read(file, &mut buf[n..])? {
                        0 => break,
                        k => n += k,
                    }
                }
                if let Some(f) = self.files[i].as_mut() {
                    f.pos += n as u32;
                }
                Ok((n as u64, 0))
            }
            FsOp::Write => {
                let buf = self.client_buffer(ch, req.arg)?;
                let (i, file) = self.positioned(ch, req.handle)?;
                self.write_at(i, file, buf)?;
                if let Some(f) = self.files[i].as_mut() {
                    f.pos = f.pos.saturating_add(buf.len() as u32);
                    f.written += buf.len() as u64;
                }
                Ok((buf.len() as u64, 0))
            }
            FsOp::Seek => {
                let i = self.slot(ch, req.handle)?;
                let pos = u32::try_from(req.arg).map_err(|_| FsStatus::BadRequest)?;
                let file = self.handles[i].ok_or(FsStatus::BadHandle)?;
                self.fat()?.seek(file, pos)?;
                if let Some(f) = self.files[i].as_mut() {
                    f.pos = pos;
                }
                Ok((0, 0))
            }
            FsOp::Sync => {
                let i = self.slot(ch, req.handle)?;
                self.sync(i)?;
                Ok((self.files[i].as_ref().map_or(0, |f| f.written), 0))
            }
            FsOp::Close => {
                let i = self.slot(ch, req.handle)?;
                let file = self.handles[i].take().ok_or(FsStatus::BadHandle)?;
                self.files[i] = None;
                self.fat()?.close(file)?;
                Ok((0, 0))
            }
            FsOp::List => {
                let buf = self.client_buffer(ch, self.buffers[ch as usize].map_or(0, |b| b.len as u64))?;
                let cursor = req.arg;
                let (mut at, mut seen, mut count, mut full) = (0usize, 0u64, 0u64, false);
                self.in_dir(req.path, true, |fat, dir, _| {
                    fat.list(dir, &mut |name, is_dir, size| {
                        if seen >= cursor && !full {
                            match fs::put_entry(buf, at, name, is_dir, size) {
                                Some(end) => {
                                    at = end;
                                    count += 1;
                                }
                                None => full = true,
                            }
                        }
                        seen += 1;
                    })
                })?;
                Ok((count, if full { cursor + count } else { fs::LIST_END }))
            }
            FsOp::Stat => {
                if components(req.path).next().is_none() {
                    return Ok((0, 1));
                }
                let (size, dir) = self.in_dir(req.path, false, |fat, dir, leaf| fat.stat(dir, leaf))?;
                Ok((size as u64, dir as u64))
            }
            FsOp::Mkdir => self.in_dir(req.path, false, |fat, dir, leaf| fat.mkdir(dir, leaf)).map(|()| (0, 0)),
            FsOp::Remove => self.in_dir(req.path, false, |fat, dir, leaf| fat.remove(dir, leaf)).map(|()| (0, 0)),
            FsOp::Rmdir => self.in_dir(req.path, false, |fat, dir, leaf| fat.rmdir(dir, leaf)).map(|()| (0, 0)),
            FsOp::Version => Ok((VERSION as u64, F::CRATE_VERSION as u64)),
        }
    }

    /// Whether a write to open file `i` (positioned) is the first write to
    /// an empty file (created, or truncated: size 0, at position 0).
    fn empty(&mut self, i: usize, file: F::File) -> Result<bool, FsStatus> {
        Ok(self.files[i].as_ref().is_some_and(|f| f.pos == 0) && self.fat()?.length(file)? == 0)
    }

    /// Writes `buf` through the crate at the handle's position (`file` is
    /// positioned there). A first write to an empty file also writes the
    /// file's directory entry (the `Fat` flush, or close and reopen) after
    /// the data, in the same call, so that the new first cluster's FAT
    /// entry, the data and the entry that reaches them are committed
    /// together. Otherwise the cluster would be only in the crate's handle
    /// until a later sync, and a failure between this call and that sync
    /// would leave it allocated and unreferenced: the retry in the old
    /// version, from the directory entry, would allocate another
    /// (`fs-fault-after-first-write`). Staging made the earlier split (the
    /// first byte, the entry, then the rest) needless.
    fn write_at(&mut self, i: usize, file: F::File, buf: &[u8]) -> Result<(), FsStatus> {
        self.dirty[i] = true;
        let first = !buf.is_empty() && self.empty(i, file)?;
        self.fat()?.write(file, buf)?;
        if first {
            self.sync(i)?;
        }
        Ok(())
    }

    fn length(&mut self, file: F::File) -> Result<u32, FsStatus> {
        self.fat()?.length(file)
    }

    /// Serves one call; the reply replaces `msg`. The call's block writes
    /// were staged (`dev`); they go to the driver here, together, after
    /// the crate is done and before the reply leaves (and so before the
    /// shell takes a probation checkpoint), whether the call succeeded or
    /// not. If they cannot be written the call fails with `Io` (they stay
    /// staged, and the next call's commit writes them).
    pub fn protected(&mut self, ch: u32, msg: &mut Message) {
        dev::new_call(self.disk_blocks);
        let r = FsRequest::parse(msg).and_then(|req| {
            // Whatever may write the disk (even when it fails half way).
            if !matches!(req.op, FsOp::Read | FsOp::Seek | FsOp::List | FsOp::Stat | FsOp::Version) {
                self.dev_dirty = true;
            }
            self.run(ch, &req)
        });
        let r = self.dev.commit().map_err(|_| FsStatus::Io).and(r);
        match r {
            Ok((a, b)) => fs::reply(msg, FsStatus::Ok, a, b),
            Err(s) => fs::reply(msg, s, 0, 0),
        }
    }

    /// Quiescence (and a probation checkpoint, after every call): every
    /// open file written since its last sync has its dirty data and
    /// directory entry go to the disk before the state leaves, so the next
    /// version (or the old one, taking over a checkpoint) reads a
    /// consistent disk. A file that cannot be synced keeps the module
    /// not-ready (the update times out and this version keeps serving; a
    /// checkpoint fails and the probation ends).
    pub fn prepare(&mut self) -> bool {
        dev::new_call(self.disk_blocks);
        let mut ok = true;
        if self.fat.is_some() {
            for i in 0..MAX_OPEN {
                if self.dirty[i] && self.handles[i].is_some() && self.sync(i).is_err() {
                    self.env.log("fs: an open file could not be synced");
                    ok = false;
                }
            }
        }
        // What the syncs staged goes to the driver together (as a call's).
        if self.dev.commit().is_err() {
            self.env.log("fs: the staged blocks could not be written");
            ok = false;
        }
        // Then the device's own cache (fsync of the image on the host), if
        // anything was written since it was last flushed.
        if ok && self.dev_dirty {
            ok = self.dev.flush().is_ok();
            self.dev_dirty = !ok;
        }
        ok
    }

    /// For test modules that fail in the middle of a write: the position
    /// and length of the `Write` in `msg` from client `ch`, if it is one
    /// this service would run.
    pub fn pending_write(&self, ch: u32, msg: &Message) -> Option<(u32, usize)> {
        let req = FsRequest::parse(msg).ok().filter(|r| r.op == FsOp::Write)?;
        let i = self.slot(ch, req.handle).ok()?;
        let len = self.client_buffer(ch, req.arg).ok()?.len();
        Some((self.files[i].as_ref()?.pos, len))
    }

    /// For test modules that fail in the middle of a write: the first `n`
    /// bytes of the `Write` in `msg` go through the crate, as far as a
    /// write that fails half way gets (data, and any cluster it
    /// allocates; a first write to an empty file as `Write` does it, with
    /// its directory entry); the service's state is not advanced, as the
    /// call does not complete. Its blocks are staged, not written: the
    /// failure that follows drops them.
    pub fn write_prefix(&mut self, ch: u32, msg: &Message, n: usize) -> Result<(), FsStatus> {
        dev::new_call(self.disk_blocks);
        let req = FsRequest::parse(msg)?;
        let buf = self.client_buffer(ch, req.arg)?;
        let (i, file) = self.positioned(ch, req.handle)?;
        self.dev_dirty = true;
        self.write_at(i, file, &buf[..n.min(buf.len())])
    }

    /// For test modules that fail in the middle of a write: whether the
    /// `Write` in `msg` from client `ch` is the first write to an empty
    /// file (size 0, at position 0), and the file's path.
    pub fn pending_first_write(&mut self, ch: u32, msg: &Message) -> Option<Path> {
        dev::new_call(self.disk_blocks);
        let req = FsRequest::parse(msg).ok().filter(|r| r.op == FsOp::Write)?;
        let (i, file) = self.positioned(ch, req.handle).ok()?;
        self.empty(i, file).ok()?.then(|| self.files[i].as_ref().map(|f| f.path.clone())).flatten()
    }

    /// Replaces the open files with `files` (decoded from another version's
    /// state), reopening each by path on a freshly mounted volume.
    pub fn adopt(&mut self, files: [Option<OpenFile>; MAX_OPEN]) -> Result<(), i32> {
        // Whatever this module knew of the disk is stale: another version
        // wrote it since. Forget (never write) the old mount, and anything
        // still staged.
        self.fat = None;
        dev::discard();
        dev::new_call(self.disk_blocks);
        let r = self.reopen(files);
        // Reopening writes nothing today, but an import is a call too.
        let c = self.dev.commit().map_err(|_| status::BAD_STATE);
        r.and(c)
    }

    fn reopen(&mut self, files: [Option<OpenFile>; MAX_OPEN]) -> Result<(), i32> {
        self.handles = [None; MAX_OPEN];
        self.files = Default::default();
        self.dirty = [false; MAX_OPEN];
        self.dev_dirty = false;
        for (i, of) in files.into_iter().enumerate() {
            let Some(of) = of else { continue };
            if of.owner == 0 || of.owner > MAX_CLIENTS {
                return Err(status::BAD_STATE);
            }
            let mode = if of.writable { Mode::ReadWrite } else { Mode::ReadOnly };
            let file = self.open_file(&of.path, mode).map_err(|_| status::BAD_STATE)?;
            self.handles[i] = Some(file);
            self.files[i] = Some(of);
            // Reopened, not written: its entry is on the disk.
            self.dirty[i] = false;
        }
        Ok(())
    }
}

/// The module of one version: FAT crate `F`, module version `VERSION`,
/// state schema `SCHEMA` (1, or 2 which also reads and writes 1).
pub struct FsModule<F: Fat, const VERSION: u32, const SCHEMA: u32>(pub FsService<F, VERSION>);

impl<F: Fat + 'static, const VERSION: u32, const SCHEMA: u32> module_rt::Module for FsModule<F, VERSION, SCHEMA> {
    const DESCRIPTOR: ModuleDescriptor = if SCHEMA == schema::SCHEMA2 {
        descriptor(VERSION, SCHEMA).imports(schema::SCHEMA1).exports(schema::SCHEMA1)
    } else {
        descriptor(VERSION, SCHEMA)
    };

    fn init(env: Env) -> Result<Self, &'static str> {
        FsService::new(env).map(FsModule)
    }

    fn protected(&mut self, ch: u32, msg: &mut Message) {
        self.0.protected(ch, msg)
    }

    fn prepare(&mut self) -> bool {
        self.0.prepare()
    }

    fn export_state(&mut self, schema: u32, out: &mut [u8]) -> Result<usize, i32> {
        if schema > SCHEMA {
            return Err(status::UNSUPPORTED_SCHEMA);
        }
        schema::export(&self.0.files, schema, out)
    }

    fn import_state(&mut self, schema: u32, data: &[u8]) -> Result<(), i32> {
        if schema > SCHEMA {
            return Err(status::UNSUPPORTED_SCHEMA);
        }
        let files = schema::import(schema, data)?;
        self.0.adopt(files)
    }
}

/// Helpers every adapter uses the same way.
pub mod adapter {
    /// An 8.3 name as `BASE.EXT`, or None for `.`, `..` and the volume label.
    pub fn visible(base: &[u8], ext: &[u8], is_volume: bool) -> Option<heapless::Vec<u8, 12>> {
        if is_volume || base.first() == Some(&b'.') {
            return None;
        }
        let mut v = heapless::Vec::new();
        v.extend_from_slice(base).ok()?;
        if !ext.is_empty() {
            v.push(b'.').ok()?;
            v.extend_from_slice(ext).ok()?;
        }
        Some(v)
    }

    /// The time stamp of everything the service writes (a module has no
    /// clock): 2026-01-01 00:00:00.
    #[macro_export]
    macro_rules! __timestamp {
        ($krate:ident) => {
            $krate::Timestamp {
                year_since_1970: 56,
                zero_indexed_month: 0,
                zero_indexed_day: 0,
                hours: 0,
                minutes: 0,
                seconds: 0,
            }
        };
    }
    pub use crate::__timestamp as timestamp;
}
