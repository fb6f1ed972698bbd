//! Every byte that crosses a protection-domain boundary has its layout here.
//!
//! Nothing in this crate knows which backend (seL4 or the host runtime) it
//! runs on. Every type that a peer writes is read back through a validating
//! constructor: a peer is never trusted to have written a well-formed value.
#![no_std]

pub mod abi;
pub mod capmap;
pub mod control;
pub mod elf;
pub mod kv;
pub mod message;
pub mod name;
pub mod queue;
pub mod stats;
pub mod store;
pub mod transfer;

pub use message::{Message, MSG_WORDS};
pub use name::Name;
