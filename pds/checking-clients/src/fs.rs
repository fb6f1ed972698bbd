//! The file service's client: a load generator that checks every byte.
//!
//! Client `N` owns the files `CNFk.BIN` (k < [`FILES`]) in the root
//! directory and keeps each open for appending across steps (so open files
//! cross every update by path and position). A file's content is a pure
//! function of (client, file, generation, offset), so the client's model
//! of a file is its generation and length. Each step appends a chunk and
//! reads it back; every [`AUDIT_EVERY`] steps each file is synced and read
//! whole, its size checked by `Stat` and by a listing. Now and then a file
//! is removed and created anew (a new generation).
use core::fmt::Write;
use core::sync::atomic::AtomicU64;
use fs_api::{FsClient, FsError};
use heapless::String;
use interfaces::fs::{FsStatus, OpenMode};
use interfaces::stats::ClientStats;
use pd_api::Pd;

pub const FILES: usize = 8;
pub const AUDIT_EVERY: u64 = 32;
/// What a client's `INFO.TXT` in its directory holds (with `dirs`).
pub const DIR_INFO: &[u8] = b"a client's dir\n";
/// A file is started afresh once it is this long.
const MAX_LEN: u32 = 64 * 1024;

/// The byte at `offset` of generation `generation` of file `k` of client `n`.
pub fn pattern(n: u32, k: u32, generation: u32, offset: u32) -> u8 {
    (offset.wrapping_mul(31) ^ (offset >> 9) ^ n.wrapping_mul(71) ^ k.wrapping_mul(13) ^ generation.wrapping_mul(101))
        as u8
}

#[derive(Clone, Copy, Default)]
struct File {
    handle: Option<u64>,
    generation: u32,
    len: u32,
    /// False after a call whose effect is unknown (it failed): the file is
    /// started afresh at its next step.
    known: bool,
}

pub struct Client<'p, P: Pd + ?Sized> {
    fs: FsClient<'p, P>,
    n: u32,
    files: [File; FILES],
    /// Whether the audits make and check a directory.
    dirs: bool,
}

/// Whether the step's replies all matched the model.
type Checked = Result<bool, FsError>;

impl<'p, P: Pd + ?Sized> Client<'p, P> {
    fn name(&self, k: usize) -> String<16> {
        let mut s = String::new();
        let _ = write!(s, "/C{}F{k}.BIN", self.n);
        s
    }

    /// Starts file `k` afresh (a new generation): opened with `Create`,
    /// which truncates. Before that, an empty scratch file is created,
    /// checked and removed. (No release of embedded-sdmmc frees a removed
    /// file's clusters, so removing the data files would leak them and
    /// `fsck.fat` would rightly complain; a file that never had data owns
    /// no cluster.)
    fn recreate(&mut self, k: usize) -> Checked {
        let path = self.name(k);
        let f = &mut self.files[k];
        f.known = false;
        if let Some(h) = f.handle.take() {
            let _ = self.fs.close(h);
        }
        let mut scratch: String<16> = String::new();
        let _ = write!(scratch, "/C{}T{k}.TMP", self.n);
        let t = self.fs.open(&scratch, OpenMode::Create)?;
        self.fs.close(t)?;
        let mut ok = self.fs.stat(&scratch)? == (0, false);
        self.fs.remove(&scratch)?;
        ok &= matches!(self.fs.stat(&scratch), Err(FsError::Status(FsStatus::NotFound)));
        let h = self.fs.open(&path, OpenMode::Create)?;
        let f = &mut self.files[k];
        *f = File { handle: Some(h), generation: f.generation + 1, len: 0, known: false };
        // Data at once: every release keeps a truncated file's first
        // cluster, which `fsck.fat` reports for a file left empty.
        let size = (1 + f.generation as usize * 7919 % 2000).min(self.fs.buffer().len());
        self.fill(k, 0, size);
        self.fs.write(h, size)?;
        self.files[k].len = size as u32;
        self.files[k].known = true;
        Ok(ok)
    }

    fn fill(&mut self, k: usize, from: u32, len: usize) {
        let (n, g) = (self.n, self.files[k].generation);
        for (i, b) in self.fs.buffer()[..len].iter_mut().enumerate() {
            *b = pattern(n, k as u32, g, from + i as u32);
        }
    }

    fn matches(&mut self, k: usize, from: u32, len: usize) -> bool {
        let (n, g) = (self.n, self.files[k].generation);
        self.fs.buffer()[..len].iter().enumerate().all(|(i, &b)| b == pattern(n, k as u32, g, from + i as u32))
    }

    /// Appends a chunk to file `k` (at the position the service keeps for
    /// the handle) and reads it back.
    fn step(&mut self, seq: u64) -> Checked {
        let k = (seq as usize) % FILES;
        let f = self.files[k];
        let Some(h) = f.handle.filter(|_| f.known && f.len < MAX_LEN && seq % 29 != 28) else {
            return self.recreate(k);
        };
        let size = (1 + (seq * 997) % 2500) as usize;
        let size = size.min(self.fs.buffer().len());
        self.fill(k, f.len, size);
        self.files[k].known = false;
        self.fs.write(h, size)?;
        self.files[k].len += size as u32;
        self.fs.seek(h, f.len)?;
        let got = self.fs.read(h, size)?;
        self.files[k].known = true;
        Ok(got == size && self.matches(k, f.len, size))
    }

    /// Reads `len` bytes of file `k` from the handle's position 0 on.
    fn read_whole(&mut self, k: usize, h: u64, len: u32) -> Checked {
        self.fs.seek(h, 0)?;
        let mut at = 0u32;
        let chunk = self.fs.buffer().len();
        loop {
            let n = self.fs.read(h, chunk)?;
            if n == 0 {
                return Ok(at == len);
            }
            if !self.matches(k, at, n) {
                return Ok(false);
            }
            at += n as u32;
        }
    }

    /// With `dirs`: the client's directory `/CnD` holding `INFO.TXT`, made
    /// once a version can (`Mkdir` is `Unsupported` on fs-v1), then checked
    /// by `Stat` and `List`; `Rmdir` of it must refuse (it is not empty, or
    /// the release cannot). It is never removed: no release frees a removed
    /// entry's clusters, which `fsck.fat` would find lost. Off by default:
    /// every release writes a directory made in the root of a FAT32 volume
    /// with a `..` entry that `fsck.fat` rejects (see the README).
    fn directory(&mut self) -> Checked {
        let mut dir: String<16> = String::new();
        let _ = write!(dir, "/C{}D", self.n);
        let mut info: String<24> = String::new();
        let _ = write!(info, "{dir}/INFO.TXT");
        const TEXT: &[u8] = DIR_INFO;
        match self.fs.stat(&dir) {
            Err(FsError::Status(FsStatus::NotFound)) => match self.fs.mkdir(&dir) {
                Err(FsError::Status(FsStatus::Unsupported)) => return Ok(true),
                r => r?,
            },
            r => {
                if r? != (0, true) {
                    return Ok(false);
                }
            }
        }
        if matches!(self.fs.stat(&info), Err(FsError::Status(FsStatus::NotFound))) {
            let h = self.fs.open(&info, OpenMode::Create)?;
            self.fs.buffer()[..TEXT.len()].copy_from_slice(TEXT);
            self.fs.write(h, TEXT.len())?;
            self.fs.close(h)?;
        }
        let mut ok = self.fs.stat(&info)? == (TEXT.len() as u64, false);
        let (count, next) = self.fs.list(&dir, 0)?;
        let listed: heapless::Vec<_, 2> = interfaces::fs::entries(self.fs.buffer(), count)
            .map(|(name, is_dir, size)| (name == b"INFO.TXT", is_dir, size))
            .collect();
        ok &= listed.as_slice() == [(true, false, TEXT.len() as u32)] && next == interfaces::fs::LIST_END;
        ok &= matches!(self.fs.rmdir(&dir), Err(FsError::Status(FsStatus::NotEmpty | FsStatus::Unsupported)));
        Ok(ok)
    }

    fn audit(&mut self) -> Checked {
        let mut ok = !self.dirs || self.directory()?;
        for k in 0..FILES {
            let f = self.files[k];
            let (Some(h), true) = (f.handle, f.known) else { continue };
            self.fs.sync(h)?;
            let path = self.name(k);
            ok &= self.fs.stat(&path)? == (f.len as u64, false);
            ok &= self.read_whole(k, h, f.len)?;
        }
        // Every known file is listed with its size.
        let (count, _) = self.fs.list("/", 0)?;
        let mut listed = [None; FILES];
        let prefix = {
            let mut s: String<8> = String::new();
            let _ = write!(s, "C{}F", self.n);
            s
        };
        for (name, dir, size) in interfaces::fs::entries(self.fs.buffer(), count) {
            let rest = name.strip_prefix(prefix.as_bytes()).and_then(|r| r.strip_suffix(b".BIN"));
            if let (Some(&[d]), false) = (rest, dir) {
                if let Some(slot) = listed.get_mut(d.wrapping_sub(b'0') as usize) {
                    *slot = Some(size);
                }
            }
        }
        for (f, size) in self.files.iter().zip(listed) {
            if f.handle.is_some() && f.known {
                ok &= size == Some(f.len);
            }
        }
        Ok(ok)
    }

    /// Closes every file and checks each once more through a fresh open;
    /// logs the model (`fsmodel NAME GENERATION LEN` or `... unknown`).
    fn finish(&mut self, pd: &P) -> bool {
        let mut ok = true;
        for k in 0..FILES {
            let path = self.name(k);
            if let Some(h) = self.files[k].handle.take() {
                ok &= self.fs.close(h).is_ok();
            }
            let f = self.files[k];
            if !f.known || f.generation == 0 {
                pd.log(format_args!("fsmodel {} unknown", &path[1..]));
                continue;
            }
            let check = self.fs.open(&path, OpenMode::Read).and_then(|h| {
                let r = self.read_whole(k, h, f.len);
                self.fs.close(h).and(r)
            });
            ok &= check == Ok(true);
            pd.log(format_args!("fsmodel {} {} {}", &path[1..], f.generation, f.len));
        }
        ok
    }
}

/// Whether the `n`th complaint is logged: the first ten, then one in a
/// thousand (on a damaged disk every call fails, and a flooded log costs
/// every PD).
fn quiet(n: u64) -> bool {
    n < 10 || n % 1000 == 999
}

/// A stop condition for [`run`], which asks it once before each step:
/// false for the first `steps` asks, then true, so the client makes
/// `steps` steps and then stops cleanly (closes, re-reads and logs its
/// files). For a platform that has no other way to tell the client to
/// stop (seL4: the client PD has no channel from the manager or the
/// console).
pub fn after_steps(steps: u64) -> impl Fn() -> bool {
    let asked = core::cell::Cell::new(0u64);
    move || {
        let n = asked.get();
        asked.set(n.saturating_add(1));
        n >= steps
    }
}

/// [`after_steps`] for clients that must not stop together: client `n`
/// goes on stepping past `steps` until `turn` holds `n`, and the caller
/// stores `n + 1` in it once [`run`] has returned. So the clients finish
/// one after the other, in the order of their numbers, and their final
/// logs never interleave (on seL4 two PDs printing at once on the debug
/// console interleave their characters).
pub fn after_steps_in_turn(steps: u64, turn: &AtomicU64, n: u32) -> impl Fn() -> bool + '_ {
    let done = after_steps(steps);
    move || done() && turn.load(core::sync::atomic::Ordering::Acquire) == n as u64
}

/// The client's number from its PD's name (`fsc1`: 1; none: 0).
pub fn number(name: &str) -> u32 {
    name.trim_start_matches(|c: char| !c.is_ascii_digit()).parse().unwrap_or(0)
}

/// The client's main loop, until `stop()` says so (or the system halts);
/// then it closes its files, checks them once more and logs its model.
pub fn run<P: Pd + ?Sized>(pd: &P, stop: &dyn Fn() -> bool, dirs: bool) {
    use core::sync::atomic::Ordering::Relaxed;
    let stats = match pd.region("stats") {
        // SAFETY: as in the kv client: a writable page used through atomics.
        Some(r) if r.writable && r.size >= core::mem::size_of::<ClientStats>() => unsafe {
            &*(r.base as *const ClientStats)
        },
        _ => return pd.log(format_args!("no writable 'stats' region")),
    };
    stats.init();
    let fs = match FsClient::connect(pd, "fs") {
        Ok(fs) => fs,
        Err(e) => return pd.log(format_args!("cannot reach the fs service: {e}")),
    };
    let n = number(pd.name());
    let mut c = Client { fs, n, files: [File::default(); FILES], dirs };
    let mut seq = 0u64;
    while !pd.halting() && !stop() {
        let audit = seq % AUDIT_EVERY == AUDIT_EVERY - 1;
        let r = if audit { c.audit() } else { c.step(seq) };
        match r {
            Ok(true) => {
                stats.verified.fetch_add(1, Relaxed);
                if audit {
                    stats.audits.fetch_add(1, Relaxed);
                }
            }
            Ok(false) => {
                if quiet(stats.wrong.fetch_add(1, Relaxed)) {
                    pd.log(format_args!("wrong reply at step {seq} (audit: {audit})"));
                }
            }
            Err(e) => {
                if quiet(stats.failed.load(Relaxed)) {
                    pd.log(format_args!("step {seq} failed: {e:?}"));
                }
                if !audit {
                    c.files[(seq as usize) % FILES].known = false;
                }
                stats.failed.fetch_add(1, Relaxed);
            }
        }
        stats.retried.store(c.fs.retried(), Relaxed);
        seq += 1;
    }
    if pd.halting() {
        return;
    }
    if c.finish(pd) {
        pd.log(format_args!("fs client done after {seq} steps"));
    } else {
        stats.wrong.fetch_add(1, Relaxed);
        pd.log(format_args!("fs client done after {seq} steps: the final check FAILED"));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn after_steps_lets_that_many_steps_run_then_stops_for_good() {
        let stop = super::after_steps(3);
        let asks: [bool; 6] = core::array::from_fn(|_| stop());
        assert_eq!(asks, [false, false, false, true, true, true]);
        let never = super::after_steps(0);
        assert!(never());
    }

    #[test]
    fn in_turn_the_clients_stop_one_after_the_other() {
        use core::sync::atomic::{AtomicU64, Ordering};
        let turn = AtomicU64::new(0);
        let (c0, c1) = (super::after_steps_in_turn(1, &turn, 0), super::after_steps_in_turn(1, &turn, 1));
        assert_eq!((c0(), c1()), (false, false));
        // Both have made their steps; client 1 goes on until 0 is done.
        assert_eq!((c0(), c1(), c1()), (true, false, false));
        turn.store(1, Ordering::Release);
        assert!(c1());
        assert_eq!((super::number("fsc1"), super::number("fsc12"), super::number("x")), (1, 12, 0));
    }
}
