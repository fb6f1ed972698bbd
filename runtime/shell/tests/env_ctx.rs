//! The context a module reaches its shell through: the shell writes it
//! (LOAD sets the channels, an export or import sets the stream) between
//! calls into the module, and the module reads it through the `ShellEnv`'s
//! trampolines during them. Both must go through the one pointer the
//! module holds; this test drives a module that calls back at every step,
//! with no processes and no dlopen, so that Miri can check every access:
//!
//!     cargo +nightly miri test -p domain-shell --no-default-features --test env_ctx
//!
//! (Stacked Borrows rejected the shell's old `Box<EnvCtx>`, written
//! through after the module's pointer was taken from it.)
use domain_shell::Shell;
use interfaces::abi::{status, ModuleDescriptor, ModuleEntry, ShellEnv, ABI_VERSION};
use interfaces::control::{op, reply, shell_label};
use interfaces::Message;
use pd_api::{ChannelId, Handler, Region};
use std::sync::atomic::{AtomicPtr, Ordering};

mod common;
use common::{page, post, FakePd, PageMem, StaticLoader, CLIENT, CONTROL};

/// A module that calls its shell back at every entry point.
mod echo {
    use super::*;

    pub const DESCRIPTOR: ModuleDescriptor = ModuleDescriptor::new("echo", 1, 1).channel("client0");
    /// The shell's table, as `init` got it.
    pub static ENV: AtomicPtr<ShellEnv> = AtomicPtr::new(core::ptr::null_mut());

    fn env() -> &'static ShellEnv {
        // SAFETY: set by `init`; the shell keeps the table alive.
        unsafe { &*ENV.load(Ordering::Relaxed) }
    }

    fn client_channel() -> i32 {
        let e = env();
        let name = "client0";
        // SAFETY: the shell's own trampoline and context.
        unsafe { (e.channel)(e.ctx, name.as_ptr(), name.len()) }
    }

    pub unsafe extern "C" fn init(env: *const ShellEnv) -> i32 {
        ENV.store(env as *mut ShellEnv, Ordering::Relaxed);
        // Reads the channels LOAD wrote into the context.
        if client_channel() == CLIENT as i32 {
            status::OK
        } else {
            -1
        }
    }

    pub unsafe extern "C" fn notified(_ch: u32) {
        let e = env();
        unsafe { (e.notify)(e.ctx, CLIENT) };
    }

    pub unsafe extern "C" fn protected(_ch: u32, msg: *mut Message) {
        let ch = client_channel() as u64;
        unsafe { *msg = Message::with_words(0, &[ch]) };
    }

    pub unsafe extern "C" fn prepare() -> i32 {
        status::OK
    }

    pub unsafe extern "C" fn export_state(_schema: u32, buf: *mut u8, cap: usize, out_len: *mut usize) -> i32 {
        assert!(cap >= 4);
        let e = env();
        unsafe {
            buf.copy_from_nonoverlapping(b"echo".as_ptr(), 4);
            // Reads the stream the shell set in the context for the export.
            (e.state_published)(e.ctx, 4);
            *out_len = 4;
        }
        status::OK
    }

    pub unsafe extern "C" fn import_state(_schema: u32, _buf: *const u8, _len: usize) -> i32 {
        status::OK
    }

    pub static ENTRY: ModuleEntry = ModuleEntry {
        abi_version: ABI_VERSION,
        features: 0,
        init,
        notified,
        protected,
        prepare,
        export_state,
        import_state,
        export_changes: None,
        import_changes: None,
    };
}

/// Posts a command on the slot's control page, as the manager does, and
/// takes the shell's answer.
fn control(pd: &'static FakePd, shell: &mut Shell<FakePd, StaticLoader>, label: u64, words: &[u64]) -> Message {
    let msg = post(pd, shell, label, words);
    assert_eq!(msg.label, reply::OK, "{label:#x}: {:?}", msg.text());
    msg
}

#[test]
fn the_module_reads_what_the_shell_wrote_through_the_one_context() {
    let mut code = vec![0u8; 4096];
    let mut transfer = vec![0u64; 4096 / 8];
    let mut control_mem = Box::new(PageMem([0; 4096]));
    let fake = Box::into_raw(Box::new(FakePd::new(
        "echo0_a",
        Region { base: code.as_mut_ptr(), size: code.len(), writable: false },
        Region { base: transfer.as_mut_ptr().cast(), size: 4096, writable: true },
        Region { base: control_mem.0.as_mut_ptr(), size: 4096, writable: true },
        None,
    )));
    // SAFETY: freed at the end, after the shell that holds it is gone.
    let pd: &'static FakePd = unsafe { &*fake };
    page(pd).reset();
    let mut shell = Shell::new(pd, StaticLoader(&echo::ENTRY, echo::DESCRIPTOR));
    // LOAD writes the module's channels into the context; INIT's module
    // reads them back through its table.
    control(pd, &mut shell, op::LOAD, &[0]);
    control(pd, &mut shell, op::INIT, &[]);
    control(pd, &mut shell, op::ACTIVATE, &[]);
    let mut msg = Message::default();
    shell.protected(pd, CLIENT, &mut msg);
    assert_eq!(msg.word(0), CLIENT as u64, "the module found its channel");
    shell.notified(pd, CLIENT);
    let by_module: Vec<ChannelId> = pd.notified.borrow().iter().copied().filter(|&c| c != CONTROL).collect();
    assert_eq!(by_module, [CLIENT], "the module notified through the shell");
    // An export: the shell sets the stream in the context, the module
    // reports progress through it, the shell takes it back.
    control(pd, &mut shell, op::PREPARE, &[1, 42]);
    control(pd, &mut shell, op::EXPORT, &[]);
    let t = unsafe { interfaces::transfer::Transfer::new(pd.transfer.base, pd.transfer.size) }.unwrap();
    assert_eq!(t.poll(42), Ok((1, interfaces::transfer::Progress::Sealed(4))));
    shell.protected(pd, CLIENT, &mut msg);
    assert_eq!(msg.label, shell_label::MOVED);
    drop(shell);
    // SAFETY: from `Box::into_raw` above; nothing refers to it any more.
    drop(unsafe { Box::from_raw(fake) });
    drop((code, transfer, control_mem));
}
