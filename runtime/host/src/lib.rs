//! A Microkit-compatible runtime on Linux.
//!
//! It reads the same `system.xml` as the seL4 build and gives each PD the
//! same semantics: one OS process per PD; memory regions as shared memfd
//! mappings with the declared permissions (a read-only mapping really is
//! read-only: the process only holds a read-only descriptor); notifications
//! and protected calls with up to 64 message words through a shared kernel
//! page and futexes; PPC only over `pp` channels, which the system
//! description allows only towards a strictly higher priority; a child's
//! fault (panic, signal, exit) delivered to its parent's `fault` handler,
//! and stop/restart of a child by its parent.
pub mod config;
pub mod kernel;
pub mod launcher;
pub mod pd;
pub mod shm;

pub use pd::{run, HostPd};

/// The `main` of a client PD program on the host runtime: attaches to the
/// runtime, runs `run(&pd)` (a `fn(&P)` for any `P: pd_api::Pd`), then
/// waits to be told to exit like every other PD. A client program is one
/// line: `host_runtime::client_main!(counter_api::run);`.
#[macro_export]
macro_rules! client_main {
    ($run:path) => {
        fn main() {
            let pd = $crate::HostPd::from_env().unwrap_or_else(|e| {
                eprintln!("error: {e}");
                std::process::exit(2)
            });
            $run(&pd);
            std::thread::park();
        }
    };
}
