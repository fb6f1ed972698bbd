//! The update manager: parent of every PD, keeper of the image store and
//! the capability map, and the operator's console over the serial driver.
//!
//! Boot is an update from nothing: the first version of every service is
//! loaded into its slot by the same path a later update takes.
#![no_std]

extern crate alloc;

pub mod command;
pub mod console;
mod faults;
#[cfg(test)]
mod floor_spec;
mod floors;
pub mod history;
pub mod image;
pub mod manager;
mod placer;
mod probation;
mod session;
mod status;
mod supervise;
mod update;
pub mod uploads;

pub use manager::Manager;
pub use placer::{ImagePlacer, SharedObjectPlacer, SlotCode};

include!(concat!(env!("OUT_DIR"), "/trusted_keys.rs"));
include!(concat!(env!("OUT_DIR"), "/version_floors.rs"));
