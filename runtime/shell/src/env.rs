//! The [`ShellEnv`](interfaces::abi::ShellEnv) a module calls back through: extern "C" trampolines
//! into the PD, limited to the channels and regions the module declared.
use alloc::boxed::Box;
use core::ffi::c_void;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use interfaces::abi::{features, RegionInfo, ShellEnv, ABI_VERSION, STATE_COMPLETE};
use interfaces::transfer::{Progress, Transfer};
use interfaces::{abi::ModuleDescriptor, Message};
use pd_api::Pd;

/// What the trampolines reach through `ctx`.
pub struct EnvCtx<P: Pd + 'static> {
    pub pd: &'static P,
    /// Channels the module declared, resolved: bit per channel id.
    pub allowed_channels: u64,
    pub descriptor: Option<ModuleDescriptor>,
    /// The transfer under way, during the module's export or import.
    pub stream: Option<Stream>,
    /// During a probation checkpoint's export (`Some(0)`) or import
    /// (`Some(len)`: the whole state is in place): the state is in the
    /// checkpoint region, not streamed through the transfer region.
    pub checkpoint: Option<usize>,
    /// The slot's control page, where a transfer's progress is shown.
    pub page: Option<&'static interfaces::control_page::ControlPage>,
}

/// The [`EnvCtx`] of a shell: one heap allocation, shared by the shell and
/// the trampolines of the [`ShellEnv`] it hands the module.
///
/// Invariant: the context is allocated by `Box::into_raw` in [`new`]
/// (`SharedCtx::new`), freed in `Drop`, and reached only through that one
/// raw pointer: by the shell through `Deref`/`DerefMut` here, by the
/// trampolines through the copy in `ShellEnv::ctx` ([`as_ptr`]). No `Box`
/// and no long-lived reference to it exist, so neither side's accesses
/// invalidate the other's pointer (a `Box<EnvCtx>` written through after
/// the module's pointer was taken from it broke Rust's aliasing rules).
/// Every reference either side takes ends before the other side runs:
/// the shell writes the context only between calls into the module and
/// never holds a reference from it across one; the trampolines only read
/// it, during such a call, on the PD's one thread.
///
/// [`new`]: SharedCtx::new
/// [`as_ptr`]: SharedCtx::as_ptr
pub struct SharedCtx<P: Pd + 'static>(*mut EnvCtx<P>);

impl<P: Pd + 'static> SharedCtx<P> {
    pub fn new(ctx: EnvCtx<P>) -> Self {
        SharedCtx(Box::into_raw(Box::new(ctx)))
    }

    /// The pointer the trampolines reach the context through.
    pub fn as_ptr(&self) -> *mut EnvCtx<P> {
        self.0
    }
}

impl<P: Pd + 'static> core::ops::Deref for SharedCtx<P> {
    type Target = EnvCtx<P>;
    fn deref(&self) -> &EnvCtx<P> {
        // SAFETY: live until `drop`; see the type's invariant.
        unsafe { &*self.0 }
    }
}

impl<P: Pd + 'static> core::ops::DerefMut for SharedCtx<P> {
    fn deref_mut(&mut self) -> &mut EnvCtx<P> {
        // SAFETY: as in `deref`; the shell holds no other reference, and
        // the module does not run while this one lives.
        unsafe { &mut *self.0 }
    }
}

impl<P: Pd + 'static> Drop for SharedCtx<P> {
    fn drop(&mut self) {
        // SAFETY: from `Box::into_raw` in `new`, freed once, here.
        drop(unsafe { Box::from_raw(self.0) });
    }
}

/// A transfer the module is taking part in.
pub struct Stream {
    pub transfer: Transfer,
    /// The update's token (an importer's view of the export).
    pub token: u64,
    pub exporting: bool,
}

/// How long an importer waits for an export that makes no progress: the
/// exporter died or never started. Far above any real pause (an export
/// writes tens of kilobytes between reports).
pub const EXPORT_STALL_NS: u64 = 2_000_000_000;

/// Waits until `want` state bytes of the export `token` are in place, or it
/// is sealed (`Ok(Sealed)`), failed or stalled (`Err`). Spins briefly, then
/// yields: the exporter may need this core.
pub fn wait_for_export<P: Pd + ?Sized>(
    pd: &P,
    t: &Transfer,
    token: u64,
    want: usize,
) -> Result<Progress, &'static str> {
    let mut last = usize::MAX;
    let mut since = 0;
    let mut spins = 0u32;
    loop {
        match t.poll(token)?.1 {
            Progress::Failed => return Err("the export failed"),
            Progress::Exporting(n) if n < want => {
                if n != last {
                    (last, since, spins) = (n, pd.now_ns(), 0);
                } else if spins < 1_000 {
                    spins += 1;
                    core::hint::spin_loop();
                } else if pd.now_ns().saturating_sub(since) > EXPORT_STALL_NS {
                    return Err("the export stalled");
                } else {
                    pd.yield_now();
                }
            }
            p => return Ok(p),
        }
    }
}

/// # Safety (all trampolines)
/// `ctx` is the `EnvCtx<P>` the shell built for this module
/// ([`SharedCtx::as_ptr`]); the shell keeps it alive, and calls into the
/// module (hence back here) only from the PD's single thread, holding no
/// reference into it meanwhile. The reference returned lives for one
/// trampoline call.
unsafe fn ctx<'a, P: Pd + 'static>(p: *mut c_void) -> &'a EnvCtx<P> {
    unsafe { &*(p as *const EnvCtx<P>) }
}

unsafe fn text<'a>(ptr: *const u8, len: usize) -> Option<&'a str> {
    if ptr.is_null() || len > 4096 {
        return None;
    }
    core::str::from_utf8(unsafe { core::slice::from_raw_parts(ptr, len) }).ok()
}

unsafe extern "C" fn notify<P: Pd + 'static>(c: *mut c_void, ch: u32) {
    let c = unsafe { ctx::<P>(c) };
    if ch < 64 && c.allowed_channels & (1 << ch) != 0 {
        c.pd.notify(ch);
    } else {
        c.pd.log(format_args!("module notified undeclared channel {ch}: ignored"));
    }
}

unsafe extern "C" fn ppcall<P: Pd + 'static>(c: *mut c_void, ch: u32, msg: *mut Message) -> i32 {
    let c = unsafe { ctx::<P>(c) };
    if ch >= 64 || c.allowed_channels & (1 << ch) == 0 || msg.is_null() {
        return -1;
    }
    // The time a protected call waits is the callee's, and a call that
    // returns is progress of the event: a service whose call waits on a
    // device (the fs slot on the block driver, one call per block
    // request) is slow, not stuck, however slowly the device answers (on
    // a loaded machine QEMU's took over a second). A call that never
    // returns is caught by the watchdog's limit on one event's length.
    if let Some(p) = c.page {
        p.calling_out(true);
    }
    // SAFETY: the module passes its own message buffer.
    let r = match c.pd.ppcall(ch, unsafe { &mut *msg }) {
        Ok(()) => 0,
        Err(_) => -2,
    };
    if let Some(p) = c.page {
        p.calling_out(false);
    }
    r
}

unsafe extern "C" fn irq_ack<P: Pd + 'static>(c: *mut c_void, ch: u32) {
    let c = unsafe { ctx::<P>(c) };
    if ch < 64 && c.allowed_channels & (1 << ch) != 0 {
        c.pd.irq_ack(ch);
    }
}

fn declared(names: impl Iterator<Item = &'static interfaces::Name>, want: &str) -> bool {
    names.filter_map(|n| n.as_str()).any(|n| n == want)
}

unsafe extern "C" fn channel<P: Pd + 'static>(c: *mut c_void, name: *const u8, len: usize) -> i32 {
    let c = unsafe { ctx::<P>(c) };
    let (Some(name), Some(d)) = (unsafe { text(name, len) }, c.descriptor.as_ref()) else { return -1 };
    // SAFETY: the descriptor lives in the EnvCtx, which outlives this call;
    // 'static is only to satisfy the helper's signature.
    let d: &'static ModuleDescriptor = unsafe { &*(d as *const ModuleDescriptor) };
    if !declared(d.channels(), name) {
        return -1;
    }
    c.pd.channel(name).map_or(-1, |id| id as i32)
}

unsafe extern "C" fn region<P: Pd + 'static>(c: *mut c_void, name: *const u8, len: usize, out: *mut RegionInfo) -> i32 {
    let c = unsafe { ctx::<P>(c) };
    let (Some(name), Some(d)) = (unsafe { text(name, len) }, c.descriptor.as_ref()) else { return -1 };
    // SAFETY: as in `channel`.
    let d: &'static ModuleDescriptor = unsafe { &*(d as *const ModuleDescriptor) };
    if out.is_null() || !declared(d.regions(), name) {
        return -1;
    }
    match c.pd.region(name) {
        Some(r) => {
            // SAFETY: `out` is the module's RegionInfo.
            unsafe { out.write(RegionInfo { base: r.base, size: r.size, writable: r.writable as u32, _reserved: 0 }) };
            0
        }
        None => -1,
    }
}

/// A module's log is rate-limited: at most [`LOG_LINES_PER_WINDOW`] lines
/// per [`LOG_WINDOW_NS`]; the rest are counted and the count is logged once
/// the window ends. A module that floods its log costs its own slot the
/// time of a counter, never the console or the debug line.
pub const LOG_LINES_PER_WINDOW: u32 = 20;
pub const LOG_WINDOW_NS: u64 = 100_000_000;

/// The log budget of this PD's module (one shell per PD; the PD is
/// single-threaded, so Relaxed is enough).
static LOG_WINDOW_START: AtomicU64 = AtomicU64::new(0);
static LOG_LINES: AtomicU32 = AtomicU32::new(0);
static LOG_DROPPED: AtomicU64 = AtomicU64::new(0);

unsafe extern "C" fn log<P: Pd + 'static>(c: *mut c_void, t: *const u8, len: usize) {
    let c = unsafe { ctx::<P>(c) };
    let now = c.pd.now_ns();
    if now.saturating_sub(LOG_WINDOW_START.load(Relaxed)) >= LOG_WINDOW_NS {
        LOG_WINDOW_START.store(now, Relaxed);
        LOG_LINES.store(0, Relaxed);
        let dropped = LOG_DROPPED.swap(0, Relaxed);
        if dropped > 0 {
            c.pd.log(format_args!(
                "module log: {dropped} line(s) dropped (more than {LOG_LINES_PER_WINDOW} in {} ms)",
                LOG_WINDOW_NS / 1_000_000
            ));
        }
    }
    if LOG_LINES.fetch_add(1, Relaxed) >= LOG_LINES_PER_WINDOW {
        LOG_DROPPED.fetch_add(1, Relaxed);
        return;
    }
    if let Some(t) = unsafe { text(t, len) } {
        c.pd.log(format_args!("{t}"));
    }
}

unsafe extern "C" fn abort<P: Pd + 'static>(c: *mut c_void, t: *const u8, len: usize) -> ! {
    let c = unsafe { ctx::<P>(c) };
    let why = unsafe { text(t, len) }.unwrap_or("<no reason>");
    c.pd.log(format_args!("module aborted: {why}"));
    // The slot dies as a faulting PD would: its parent (the manager) is
    // told, the pending caller gets an error, and the slot is restarted.
    panic!("module aborted: {why}");
}

unsafe extern "C" fn state_published<P: Pd + 'static>(c: *mut c_void, n: usize) {
    let c = unsafe { ctx::<P>(c) };
    match &c.stream {
        // A checkpoint is not streamed: no importer waits for its bytes.
        None if c.checkpoint.is_some() => {
            if let Some(p) = c.page {
                p.note_progress();
            }
        }
        Some(s) if s.exporting => {
            s.transfer.publish(n);
            if let Some(p) = c.page {
                p.note_progress();
            }
        }
        _ => c.pd.log(format_args!("module reported export progress outside an export: ignored")),
    }
}

unsafe extern "C" fn state_wait<P: Pd + 'static>(c: *mut c_void, want: usize) -> i64 {
    let c = unsafe { ctx::<P>(c) };
    if let (None, Some(len)) = (&c.stream, c.checkpoint) {
        // A checkpoint's import: the whole state is in place. (A length
        // that fits the STATE_COMPLETE word: the region is far smaller.)
        return i64::try_from(len).map_or(-1, |n| n | STATE_COMPLETE);
    }
    let Some(s) = c.stream.as_ref().filter(|s| !s.exporting) else { return -1 };
    let got = wait_for_export(c.pd, &s.transfer, s.token, want);
    if let Some(p) = c.page {
        p.note_progress();
    }
    match got {
        Ok(Progress::Exporting(n)) => n as i64,
        Ok(Progress::Sealed(n)) => n as i64 | STATE_COMPLETE,
        Ok(Progress::Failed) => -1,
        Err(why) => {
            c.pd.log(format_args!("import: {why}"));
            -1
        }
    }
}

pub fn shell_env<P: Pd + 'static>(ctx: *mut EnvCtx<P>) -> ShellEnv {
    ShellEnv {
        abi_version: ABI_VERSION,
        features: features::STREAMED_STATE | features::PRECOPY,
        ctx: ctx.cast(),
        notify: notify::<P>,
        ppcall: ppcall::<P>,
        irq_ack: irq_ack::<P>,
        channel: channel::<P>,
        region: region::<P>,
        log: log::<P>,
        abort: abort::<P>,
        state_published: state_published::<P>,
        state_wait: state_wait::<P>,
    }
}
