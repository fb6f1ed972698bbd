//! Writing a service module: implement [`Module`] and invoke
//! [`export_module!`] at the crate root. The macro exports the descriptor
//! and the entry table the shell looks for; this crate turns the raw
//! [`ShellEnv`] into the safe [`Env`]. A module never sees which backend
//! hosts it.
#![no_std]

pub use interfaces;
use interfaces::abi::{status, ModuleDescriptor, RegionInfo, ShellEnv, StateRange};
use interfaces::Message;

pub mod precopy;
pub mod schema;
mod stream;
pub use precopy::{ChangeList, DirtyPages};
pub use stream::{StateReader, StateWriter};

/// A service module.
pub trait Module: Sized + 'static {
    const DESCRIPTOR: ModuleDescriptor;
    /// Builds the module in a fresh slot (before any state is imported).
    fn init(env: Env) -> Result<Self, &'static str>;
    fn notified(&mut self, _ch: u32) {}
    /// Handles a service call, overwriting `msg` with the reply.
    fn protected(&mut self, ch: u32, msg: &mut Message);
    /// `true` once the module is quiescent: no multi-call protocol open,
    /// and its effects durable (a file service's dirty files written).
    /// On a checkpoint probation (see `interfaces::checkpoint`) it is also
    /// asked after every call, and the module serves on: it must change
    /// nothing a client could see; `false` then ends the probation.
    fn prepare(&mut self) -> bool {
        true
    }
    /// Writes the state into `out` in `schema` (the module's own, or one its
    /// descriptor lists as exportable); returns the length or a status code.
    fn export_state(&mut self, schema: u32, out: &mut [u8]) -> Result<usize, i32>;
    /// Replaces the state with one exported under `schema`.
    fn import_state(&mut self, schema: u32, data: &[u8]) -> Result<(), i32>;
    /// The export as the shell runs it. A module whose state is large and
    /// written front to back overrides this to write through
    /// [`StateWriter::write`], which lets a streaming shell start the
    /// import while the export goes on; the default is one
    /// [`export_state`](Self::export_state) into the whole buffer.
    fn export_stream(&mut self, schema: u32, out: &mut StateWriter<'_>) -> Result<(), i32> {
        let n = self.export_state(schema, out.unwritten())?;
        out.advance(n)
    }
    /// The import as the shell runs it. Overridden along with
    /// [`export_stream`](Self::export_stream) to read through
    /// [`StateReader::chunk`] or [`StateReader::read`] as the bytes arrive;
    /// the default waits for the whole state and calls
    /// [`import_state`](Self::import_state).
    fn import_stream(&mut self, schema: u32, src: &mut StateReader<'_>) -> Result<(), i32> {
        let data = src.rest()?;
        self.import_state(schema, data)
    }
    /// Pre-copy (see [`precopy`]): `true` announces
    /// [`export_changes`](Self::export_changes) and
    /// [`import_changes`](Self::import_changes) to the shell. Every
    /// export then starts a tracking of the changes against it.
    const PRECOPY: bool = false;
    /// Brings `out` up to date: it holds this module's last export in
    /// `schema`, `*len` bytes. Rewrites every byte changed since, sets
    /// `*len` to the new length, and lists the rewritten ranges in
    /// `changes`. Any error makes the shell export the whole state.
    fn export_changes(
        &mut self,
        _schema: u32,
        _out: &mut [u8],
        _len: &mut usize,
        _changes: &mut ChangeList<'_>,
    ) -> Result<(), i32> {
        Err(status::UNSUPPORTED)
    }
    /// The state was imported from an earlier image of `data`, which now
    /// holds the current one; takes over the ranges in `changes` (each
    /// within `data`, as the shell checked), validating them as an import
    /// would. Any error makes the shell import the whole state.
    fn import_changes(&mut self, _schema: u32, _data: &[u8], _changes: &[StateRange]) -> Result<(), i32> {
        Err(status::UNSUPPORTED)
    }
}

/// A protected call that the shell could not complete (undeclared channel,
/// or the callee failed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallFailed;

/// The module's handle on its shell.
#[derive(Clone, Copy)]
pub struct Env(&'static ShellEnv);

impl Env {
    /// # Safety
    /// `env` is the table the shell passed to `init`; the shell keeps it
    /// alive while the module is hosted.
    pub unsafe fn from_raw(env: *const ShellEnv) -> Option<Env> {
        unsafe { env.as_ref() }.map(Env)
    }

    pub fn notify(&self, ch: u32) {
        // SAFETY: calling the shell's own trampoline with its own ctx.
        unsafe { (self.0.notify)(self.0.ctx, ch) }
    }

    /// Calls over a declared channel; the reply replaces `msg`.
    pub fn ppcall(&self, ch: u32, msg: &mut Message) -> Result<(), CallFailed> {
        // SAFETY: as above; `msg` outlives the call.
        (unsafe { (self.0.ppcall)(self.0.ctx, ch, msg) } == 0).then_some(()).ok_or(CallFailed)
    }

    pub fn irq_ack(&self, ch: u32) {
        // SAFETY: as above.
        unsafe { (self.0.irq_ack)(self.0.ctx, ch) }
    }

    /// A channel the module declared, by peer name.
    pub fn channel(&self, name: &str) -> Option<u32> {
        // SAFETY: as above; the shell copies nothing past `len`.
        let id = unsafe { (self.0.channel)(self.0.ctx, name.as_ptr(), name.len()) };
        u32::try_from(id).ok()
    }

    /// A region the module declared, by local name.
    pub fn region(&self, name: &str) -> Option<RegionInfo> {
        let mut out = core::mem::MaybeUninit::<RegionInfo>::uninit();
        // SAFETY: the shell fills `out` when it returns 0.
        let rc = unsafe { (self.0.region)(self.0.ctx, name.as_ptr(), name.len(), out.as_mut_ptr()) };
        (rc == 0).then(|| unsafe { out.assume_init() })
    }

    pub fn log(&self, text: &str) {
        // SAFETY: as above.
        unsafe { (self.0.log)(self.0.ctx, text.as_ptr(), text.len()) }
    }

    pub fn abort(&self, why: &str) -> ! {
        // SAFETY: as above; the shell does not return.
        unsafe { (self.0.abort)(self.0.ctx, why.as_ptr(), why.len()) }
    }
}

/// Where the module instance lives: one per module image, used only from
/// the PD's single thread.
pub struct Instance<M>(core::cell::UnsafeCell<Option<M>>);

// SAFETY: the shell calls a module's entry points one at a time from one
// thread; nothing else touches the instance.
unsafe impl<M> Sync for Instance<M> {}

impl<M> Instance<M> {
    pub const fn new() -> Self {
        Instance(core::cell::UnsafeCell::new(None))
    }
    /// # Safety
    /// Single-threaded use, no overlapping borrows (entry points do not
    /// nest).
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn get(&self) -> &mut Option<M> {
        unsafe { &mut *self.0.get() }
    }
}

impl<M> Default for Instance<M> {
    fn default() -> Self {
        Self::new()
    }
}

/// The entry points, generic over the module type; [`export_module!`]
/// wraps each in an `extern "C"` function bound to the image's one
/// [`Instance`].
///
/// # Safety
/// Every function here is called only by the domain shell through the
/// module's entry table: one at a time, from the PD's single thread, with
/// pointers that are valid for the stated lengths (or null, which is
/// refused).
pub mod glue {
    use super::*;

    fn with<M, R>(inst: &Instance<M>, f: impl FnOnce(&mut M) -> R, none: R) -> R {
        // SAFETY: see `Instance`.
        match unsafe { inst.get() } {
            Some(m) => f(m),
            None => none,
        }
    }

    /// # Safety
    /// See the module documentation.
    pub unsafe fn init<M: Module>(inst: &Instance<M>, env: *const ShellEnv) -> i32 {
        let Some(env) = (unsafe { Env::from_raw(env) }) else { return status::ERROR };
        // Remembered for the panic handler of bare-metal builds.
        crate::SHELL_ENV.store(env.0 as *const ShellEnv as *mut ShellEnv, core::sync::atomic::Ordering::Relaxed);
        match M::init(env) {
            Ok(m) => {
                // SAFETY: see `Instance`.
                unsafe { *inst.get() = Some(m) };
                status::OK
            }
            Err(why) => {
                env.log(why);
                status::ERROR
            }
        }
    }

    pub fn notified<M: Module>(inst: &Instance<M>, ch: u32) {
        with(inst, |m| m.notified(ch), ())
    }

    /// # Safety
    /// See the module documentation.
    pub unsafe fn protected<M: Module>(inst: &Instance<M>, ch: u32, msg: *mut Message) {
        // SAFETY: the shell passes its message buffer for this call.
        if let Some(msg) = unsafe { msg.as_mut() } {
            with(inst, |m| m.protected(ch, msg), ())
        }
    }

    pub fn prepare<M: Module>(inst: &Instance<M>) -> i32 {
        with(inst, |m| if m.prepare() { status::OK } else { status::NOT_READY }, status::ERROR)
    }

    /// # Safety
    /// See the module documentation.
    pub unsafe fn export_state<M: Module>(
        inst: &Instance<M>,
        schema: u32,
        buf: *mut u8,
        cap: usize,
        out_len: *mut usize,
    ) -> i32 {
        if buf.is_null() || out_len.is_null() {
            return status::ERROR;
        }
        // SAFETY: the shell passes the transfer region's writable part.
        let out = unsafe { core::slice::from_raw_parts_mut(buf, cap) };
        let mut w = StateWriter::new(out, crate::streaming_env());
        with(
            inst,
            |m| match m.export_stream(schema, &mut w) {
                Ok(()) => {
                    // SAFETY: checked non-null above.
                    unsafe { out_len.write(w.len()) };
                    status::OK
                }
                Err(e) => e,
            },
            status::ERROR,
        )
    }

    /// # Safety
    /// See the module documentation.
    pub unsafe fn import_state<M: Module>(inst: &Instance<M>, schema: u32, buf: *const u8, len: usize) -> i32 {
        if buf.is_null() && len != 0 {
            return status::ERROR;
        }
        // SAFETY: the shell passes the transfer region's state bytes: all
        // of them, or (streaming) the room for them, of which `state_wait`
        // tells how much is in place.
        let mut r = unsafe { StateReader::new(buf, len, crate::streaming_env()) };
        with(inst, |m| m.import_stream(schema, &mut r).map_or_else(|e| e, |()| status::OK), status::ERROR)
    }

    /// # Safety
    /// See the module documentation; `changes` has room for `max`.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn export_changes<M: Module>(
        inst: &Instance<M>,
        schema: u32,
        buf: *mut u8,
        cap: usize,
        len: *mut usize,
        changes: *mut StateRange,
        max: usize,
        n: *mut usize,
    ) -> i32 {
        if buf.is_null() || len.is_null() || changes.is_null() || n.is_null() {
            return status::ERROR;
        }
        // SAFETY: the shell passes the transfer region's writable part,
        // its list of `max` ranges, and the two counts.
        let (out, ranges, len) = unsafe {
            (core::slice::from_raw_parts_mut(buf, cap), core::slice::from_raw_parts_mut(changes, max), &mut *len)
        };
        let mut list = ChangeList::new(ranges);
        let rc = with(inst, |m| m.export_changes(schema, out, len, &mut list), Err(status::ERROR));
        // SAFETY: checked non-null above.
        unsafe { n.write(list.len()) };
        rc.map_or_else(|e| e, |()| status::OK)
    }

    /// # Safety
    /// See the module documentation; `changes` holds `n` ranges.
    pub unsafe fn import_changes<M: Module>(
        inst: &Instance<M>,
        schema: u32,
        buf: *const u8,
        len: usize,
        changes: *const StateRange,
        n: usize,
    ) -> i32 {
        if (buf.is_null() && len != 0) || (changes.is_null() && n != 0) {
            return status::ERROR;
        }
        // SAFETY: the shell passes the sealed state and its checked list.
        let (data, list) = unsafe {
            (
                if len == 0 { &[][..] } else { core::slice::from_raw_parts(buf, len) },
                if n == 0 { &[][..] } else { core::slice::from_raw_parts(changes, n) },
            )
        };
        with(inst, |m| m.import_changes(schema, data, list), Err(status::ERROR)).map_or_else(|e| e, |()| status::OK)
    }
}

/// The shell's environment, once `init` has been called.
static SHELL_ENV: core::sync::atomic::AtomicPtr<ShellEnv> = core::sync::atomic::AtomicPtr::new(core::ptr::null_mut());

/// The shell's environment if it streams state transfers (every module
/// built with this crate announces that it can).
fn streaming_env() -> Option<&'static ShellEnv> {
    // SAFETY: set by `init` from the table the shell keeps alive.
    let env = unsafe { SHELL_ENV.load(core::sync::atomic::Ordering::Relaxed).as_ref() }?;
    (env.features & interfaces::abi::features::STREAMED_STATE != 0).then_some(env)
}

/// On bare metal (the seL4 build of a module, `aarch64-unknown-none`) a
/// panic is reported through the shell's `abort`, which does not return:
/// the slot fails as a faulting PD would. On the host, std's handler runs.
#[cfg(target_os = "none")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    struct Buf {
        bytes: [u8; 200],
        len: usize,
    }
    impl core::fmt::Write for Buf {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            // Truncate at a character boundary when full.
            for c in s.chars() {
                let mut tmp = [0u8; 4];
                let e = c.encode_utf8(&mut tmp).as_bytes();
                if self.len + e.len() > self.bytes.len() {
                    return Err(core::fmt::Error);
                }
                self.bytes[self.len..self.len + e.len()].copy_from_slice(e);
                self.len += e.len();
            }
            Ok(())
        }
    }
    let mut buf = Buf { bytes: [0; 200], len: 0 };
    let _ = core::fmt::Write::write_fmt(&mut buf, format_args!("panic: {}", info.message()));
    let text = core::str::from_utf8(&buf.bytes[..buf.len]).unwrap_or("panic");
    // SAFETY: set by `init` from the table the shell keeps alive.
    match unsafe { Env::from_raw(SHELL_ENV.load(core::sync::atomic::Ordering::Relaxed)) } {
        Some(env) => env.abort(text),
        None => loop {
            core::hint::spin_loop();
        },
    }
}

/// Exports `$module` (a [`Module`]) as this image's service module:
/// its descriptor, its entry table, and the one instance the entry points
/// work on. Invoke it once, at the crate root.
#[macro_export]
macro_rules! export_module {
    ($module:ty) => {
        #[cfg(not(target_os = "none"))]
        extern crate std;

        static __UPD_INSTANCE: $crate::Instance<$module> = $crate::Instance::new();

        mod __upd_entry {
            use super::__UPD_INSTANCE as I;
            use $crate::interfaces::{abi::ShellEnv, Message};
            pub unsafe extern "C" fn init(env: *const ShellEnv) -> i32 {
                unsafe { $crate::glue::init(&I, env) }
            }
            pub unsafe extern "C" fn notified(ch: u32) {
                $crate::glue::notified(&I, ch)
            }
            pub unsafe extern "C" fn protected(ch: u32, msg: *mut Message) {
                unsafe { $crate::glue::protected(&I, ch, msg) }
            }
            pub unsafe extern "C" fn prepare() -> i32 {
                $crate::glue::prepare(&I)
            }
            pub unsafe extern "C" fn export_state(schema: u32, buf: *mut u8, cap: usize, out: *mut usize) -> i32 {
                unsafe { $crate::glue::export_state(&I, schema, buf, cap, out) }
            }
            pub unsafe extern "C" fn import_state(schema: u32, buf: *const u8, len: usize) -> i32 {
                unsafe { $crate::glue::import_state(&I, schema, buf, len) }
            }
            pub unsafe extern "C" fn export_changes(
                schema: u32,
                buf: *mut u8,
                cap: usize,
                len: *mut usize,
                changes: *mut $crate::interfaces::abi::StateRange,
                max: usize,
                n: *mut usize,
            ) -> i32 {
                unsafe { $crate::glue::export_changes(&I, schema, buf, cap, len, changes, max, n) }
            }
            pub unsafe extern "C" fn import_changes(
                schema: u32,
                buf: *const u8,
                len: usize,
                changes: *const $crate::interfaces::abi::StateRange,
                n: usize,
            ) -> i32 {
                unsafe { $crate::glue::import_changes(&I, schema, buf, len, changes, n) }
            }
        }
        const __UPD_PRECOPY: bool = <$module as $crate::Module>::PRECOPY;

        #[no_mangle]
        #[used]
        pub static UPD_MODULE_DESCRIPTOR: $crate::interfaces::abi::ModuleDescriptor =
            <$module as $crate::Module>::DESCRIPTOR;

        #[no_mangle]
        #[used]
        pub static UPD_MODULE_ENTRY: $crate::interfaces::abi::ModuleEntry = $crate::interfaces::abi::ModuleEntry {
            abi_version: $crate::interfaces::abi::ABI_VERSION,
            features: $crate::interfaces::abi::features::STREAMED_STATE
                | if __UPD_PRECOPY { $crate::interfaces::abi::features::PRECOPY } else { 0 },
            init: __upd_entry::init,
            notified: __upd_entry::notified,
            protected: __upd_entry::protected,
            prepare: __upd_entry::prepare,
            export_state: __upd_entry::export_state,
            import_state: __upd_entry::import_state,
            export_changes: if __UPD_PRECOPY { Some(__upd_entry::export_changes) } else { None },
            import_changes: if __UPD_PRECOPY { Some(__upd_entry::import_changes) } else { None },
        };
    };
}
