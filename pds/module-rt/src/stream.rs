//! Streamed state transfer, module side: the exporter writes through a
//! [`StateWriter`], which tells the shell how far it has got; the importer
//! reads through a [`StateReader`], which waits for bytes still being
//! written. With a shell that does not stream, the writer only fills the
//! buffer and the reader sees the whole state at once.
use interfaces::abi::{status, ShellEnv, STATE_COMPLETE};

/// How much a writer copies between two progress reports: large enough
/// that reporting costs nothing next to the copy, small enough that the
/// importer starts early and follows closely.
pub const PUBLISH_EVERY: usize = 64 << 10;

/// Where a module writes its exported state.
pub struct StateWriter<'a> {
    buf: &'a mut [u8],
    len: usize,
    env: Option<&'static ShellEnv>,
}

impl<'a> StateWriter<'a> {
    /// `env`: the shell to report progress to, if it streams.
    pub fn new(buf: &'a mut [u8], env: Option<&'static ShellEnv>) -> Self {
        StateWriter { buf, len: 0, env }
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `bytes`, reporting progress as it goes; `NO_SPACE` (and
    /// nothing written) if they do not fit.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), i32> {
        if bytes.len() > self.buf.len() - self.len {
            return Err(status::NO_SPACE);
        }
        for part in bytes.chunks(PUBLISH_EVERY) {
            self.buf[self.len..self.len + part.len()].copy_from_slice(part);
            self.len += part.len();
            self.publish();
        }
        Ok(())
    }

    /// The room after what is written, to serialise into in place; follow
    /// with [`advance`](Self::advance).
    pub fn unwritten(&mut self) -> &mut [u8] {
        &mut self.buf[self.len..]
    }

    /// The next `n` bytes of [`unwritten`](Self::unwritten) hold state.
    pub fn advance(&mut self, n: usize) -> Result<(), i32> {
        if n > self.buf.len() - self.len {
            return Err(status::NO_SPACE);
        }
        self.len += n;
        self.publish();
        Ok(())
    }

    fn publish(&self) {
        if let Some(env) = self.env {
            // SAFETY: the shell's own trampoline and ctx, during the export.
            unsafe { (env.state_published)(env.ctx, self.len) }
        }
    }
}

/// Where a module reads the state it imports.
pub struct StateReader<'a> {
    base: *const u8,
    cap: usize,
    pos: usize,
    /// Bytes known to be in place.
    ready: usize,
    /// `ready` is the state's whole length.
    complete: bool,
    env: Option<&'static ShellEnv>,
    _state: core::marker::PhantomData<&'a [u8]>,
}

impl<'a> StateReader<'a> {
    /// Without `env` (or with a null `base`), `base..base + len` is the
    /// whole state; with it, `len` is the room in the transfer region and
    /// the shell says how much of it is in place.
    ///
    /// # Safety
    /// `base..base + len` is readable for `'a`, and bytes the shell reports
    /// in place are not written again during `'a`.
    pub unsafe fn new(base: *const u8, len: usize, env: Option<&'static ShellEnv>) -> Self {
        let len = if base.is_null() { 0 } else { len };
        let streaming = env.is_some() && len > 0;
        StateReader {
            base,
            cap: len,
            pos: 0,
            ready: if streaming { 0 } else { len },
            complete: !streaming,
            env: env.filter(|_| streaming),
            _state: core::marker::PhantomData,
        }
    }

    /// Waits until `want` bytes (from the start) are in place or the state
    /// is complete. `BAD_STATE` if the export failed.
    fn wait(&mut self, want: usize) -> Result<(), i32> {
        while self.ready < want && !self.complete {
            let Some(env) = self.env else { return Err(status::BAD_STATE) };
            // SAFETY: the shell's own trampoline and ctx, during the import.
            let got = unsafe { (env.state_wait)(env.ctx, want) };
            if got < 0 {
                return Err(status::BAD_STATE);
            }
            let n = (got & !STATE_COMPLETE) as usize;
            // Validate what the shell passes on from the exporter.
            if n > self.cap || n < self.ready {
                return Err(status::BAD_STATE);
            }
            self.ready = n;
            self.complete = got & STATE_COMPLETE != 0;
        }
        Ok(())
    }

    fn take(&mut self, n: usize) -> &'a [u8] {
        // SAFETY: pos + n <= ready <= cap: in place and never written again.
        let s = unsafe { core::slice::from_raw_parts(self.base.add(self.pos), n) };
        self.pos += n;
        s
    }

    /// The next `n` bytes; `BAD_STATE` if the state ends first.
    pub fn read(&mut self, n: usize) -> Result<&'a [u8], i32> {
        let end = self.pos.checked_add(n).ok_or(status::BAD_STATE)?;
        self.wait(end)?;
        if end > self.ready {
            return Err(status::BAD_STATE);
        }
        Ok(if n == 0 { &[] } else { self.take(n) })
    }

    /// The next bytes in place, at most `max` and at least one unless the
    /// state has ended (then empty).
    pub fn chunk(&mut self, max: usize) -> Result<&'a [u8], i32> {
        self.wait(self.pos + 1)?;
        let n = (self.ready - self.pos).min(max);
        Ok(if n == 0 { &[] } else { self.take(n) })
    }

    /// Everything left, once the whole state is in place.
    pub fn rest(&mut self) -> Result<&'a [u8], i32> {
        self.wait(usize::MAX)?;
        let n = self.ready - self.pos;
        Ok(if n == 0 { &[] } else { self.take(n) })
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use core::ffi::c_void;
    use interfaces::abi::{features, RegionInfo, ABI_VERSION};
    use interfaces::Message;
    use std::cell::RefCell;
    use std::vec::Vec;

    std::thread_local! {
        /// What `state_wait` answers, in turn; what `state_published` saw.
        static WAITS: RefCell<Vec<i64>> = const { RefCell::new(Vec::new()) };
        static PUBLISHED: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
    }

    unsafe extern "C" fn published(_: *mut c_void, n: usize) {
        PUBLISHED.with_borrow_mut(|p| p.push(n));
    }
    unsafe extern "C" fn wait(_: *mut c_void, _want: usize) -> i64 {
        WAITS.with_borrow_mut(|w| if w.is_empty() { -1 } else { w.remove(0) })
    }
    unsafe extern "C" fn notify(_: *mut c_void, _: u32) {}
    unsafe extern "C" fn ppcall(_: *mut c_void, _: u32, _: *mut Message) -> i32 {
        -1
    }
    unsafe extern "C" fn irq_ack(_: *mut c_void, _: u32) {}
    unsafe extern "C" fn channel(_: *mut c_void, _: *const u8, _: usize) -> i32 {
        -1
    }
    unsafe extern "C" fn region(_: *mut c_void, _: *const u8, _: usize, _: *mut RegionInfo) -> i32 {
        -1
    }
    unsafe extern "C" fn log(_: *mut c_void, _: *const u8, _: usize) {}
    unsafe extern "C" fn abort(_: *mut c_void, _: *const u8, _: usize) -> ! {
        panic!("abort")
    }

    fn env() -> &'static ShellEnv {
        std::boxed::Box::leak(std::boxed::Box::new(ShellEnv {
            abi_version: ABI_VERSION,
            features: features::STREAMED_STATE,
            ctx: core::ptr::null_mut(),
            notify,
            ppcall,
            irq_ack,
            channel,
            region,
            log,
            abort,
            state_published: published,
            state_wait: wait,
        }))
    }

    #[test]
    fn a_writer_reports_progress_per_chunk_and_refuses_overflow() {
        let mut buf = std::vec![0u8; 3 * PUBLISH_EVERY];
        let mut w = StateWriter::new(&mut buf, Some(env()));
        w.write(&std::vec![7u8; PUBLISH_EVERY + 10]).unwrap();
        assert_eq!(w.write(&std::vec![1u8; 2 * PUBLISH_EVERY]), Err(status::NO_SPACE), "nothing written");
        w.unwritten()[..5].copy_from_slice(b"hello");
        w.advance(5).unwrap();
        assert_eq!(w.len(), PUBLISH_EVERY + 15);
        assert_eq!(PUBLISHED.take(), [PUBLISH_EVERY, PUBLISH_EVERY + 10, PUBLISH_EVERY + 15]);
        assert_eq!(&buf[PUBLISH_EVERY + 10..PUBLISH_EVERY + 15], b"hello");
    }

    #[test]
    fn a_reader_waits_for_bytes_in_place_and_stops_at_the_end() {
        let data: Vec<u8> = (0..100u8).collect();
        WAITS.set(std::vec![10, 40, 60 | STATE_COMPLETE]);
        let mut r = unsafe { StateReader::new(data.as_ptr(), data.len(), Some(env())) };
        assert_eq!(r.read(4).unwrap(), &data[..4], "waited once: 10 in place");
        assert_eq!(r.chunk(100).unwrap(), &data[4..10], "what is in place, without waiting");
        assert_eq!(r.read(20).unwrap(), &data[10..30], "waited: 40 in place");
        assert_eq!(r.read(40), Err(status::BAD_STATE), "the state ends at 60");
        assert_eq!(r.rest().unwrap(), &data[30..60]);
        assert_eq!(r.chunk(8).unwrap(), &[] as &[u8], "ended");
    }

    #[test]
    fn a_failed_export_or_a_peer_lying_about_progress_is_bad_state() {
        let data = [0u8; 16];
        WAITS.set(std::vec![-1]);
        let mut r = unsafe { StateReader::new(data.as_ptr(), data.len(), Some(env())) };
        assert_eq!(r.read(1), Err(status::BAD_STATE));
        WAITS.set(std::vec![17]);
        let mut r = unsafe { StateReader::new(data.as_ptr(), data.len(), Some(env())) };
        assert_eq!(r.read(1), Err(status::BAD_STATE), "more than the room");
        WAITS.set(std::vec![8, 4]);
        let mut r = unsafe { StateReader::new(data.as_ptr(), data.len(), Some(env())) };
        r.read(8).unwrap();
        assert_eq!(r.read(1), Err(status::BAD_STATE), "progress never goes back");
    }

    #[test]
    fn without_a_streaming_shell_the_whole_buffer_is_the_state() {
        let data = [3u8; 5];
        let mut r = unsafe { StateReader::new(data.as_ptr(), 5, None) };
        assert_eq!(r.rest().unwrap(), &data);
        let mut r = unsafe { StateReader::new(core::ptr::null(), 5, None) };
        assert_eq!(r.rest().unwrap(), &[] as &[u8]);
    }
}
