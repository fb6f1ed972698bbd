//! The domain shell: the one program of every updatable PD.
//!
//! It owns the PD's event loop and channels and hosts one service module at
//! a time, which it loads from the slot's code region when the update
//! manager says so. While no module is live it answers service calls itself
//! (`NO_SERVICE`). The backend-specific part, turning code-region bytes
//! into a callable module, is a [`ModuleLoader`].
#![no_std]

extern crate alloc;

/// Public so that a shell-less host PD (the benchmarks' direct baseline)
/// can hand a module the very environment a slot does.
pub mod env;
#[cfg(feature = "host")]
pub mod host_loader;
mod precopy;
mod shell;

pub use precopy::MAX_CHANGES;
pub use shell::{ModuleLoader, Shell};
