//! Every byte that crosses a protection-domain boundary has its layout here.
//!
//! Nothing in this crate knows which backend (seL4 or the host runtime) it
//! runs on. Every type that a peer writes is read back through a validating
//! constructor: a peer is never trusted to have written a well-formed value.
#![no_std]

/// A `#[repr(u64)]` enum that travels in a message word, with a checked
/// conversion from whatever integer a peer sent.
macro_rules! wire_enum {
    ($(#[$meta:meta])* pub enum $name:ident via $from:ident { $($(#[$vmeta:meta])* $variant:ident = $value:expr,)* }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(u64)]
        pub enum $name {
            $($(#[$vmeta])* $variant = $value,)*
        }

        impl $name {
            /// Every variant with its name, in declaration order (the C
            /// headers' enums are generated from this).
            pub const VARIANTS: &'static [(&'static str, $name)] = &[$((stringify!($variant), $name::$variant),)*];

            /// `None` for a value no variant has.
            pub fn $from(value: u64) -> Option<$name> {
                match value {
                    $($value => Some($name::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

pub mod abi;
pub mod blk;
pub mod capmap;
pub mod checkpoint;
pub mod control;
pub mod control_page;
pub mod elf;
pub mod fs;
pub mod journal;
pub mod kv;
pub mod message;
pub mod name;
pub mod queue;
pub mod stats;
pub mod store;
pub mod transfer;

pub use message::{Message, MSG_WORDS};
pub use name::Name;
