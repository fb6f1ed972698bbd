//! The [`ShellEnv`] a module calls back through: extern "C" trampolines
//! into the PD, limited to the channels and regions the module declared.
use core::ffi::c_void;
use interfaces::abi::{RegionInfo, ShellEnv, ABI_VERSION};
use interfaces::{abi::ModuleDescriptor, Message};
use pd_api::Pd;

/// What the trampolines reach through `ctx`.
pub struct EnvCtx<P: Pd + 'static> {
    pub pd: &'static P,
    /// Channels the module declared, resolved: bit per channel id.
    pub allowed_channels: u64,
    pub descriptor: Option<ModuleDescriptor>,
}

/// # Safety (all trampolines)
/// `ctx` is the `EnvCtx<P>` the shell built for this module; the shell
/// keeps it alive, and calls into the module (hence back here) only from
/// the PD's single thread.
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
    // SAFETY: the module passes its own message buffer.
    match c.pd.ppcall(ch, unsafe { &mut *msg }) {
        Ok(()) => 0,
        Err(_) => -2,
    }
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

unsafe extern "C" fn log<P: Pd + 'static>(c: *mut c_void, t: *const u8, len: usize) {
    let c = unsafe { ctx::<P>(c) };
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

pub fn shell_env<P: Pd + 'static>(ctx: *mut EnvCtx<P>) -> ShellEnv {
    ShellEnv {
        abi_version: ABI_VERSION,
        _reserved: 0,
        ctx: ctx.cast(),
        notify: notify::<P>,
        ppcall: ppcall::<P>,
        irq_ack: irq_ack::<P>,
        channel: channel::<P>,
        region: region::<P>,
        log: log::<P>,
        abort: abort::<P>,
    }
}
