//! The update manager: parent of every PD, keeper of the image store and
//! the capability map, and the operator's console over the UART driver.
//!
//! Boot is an update from nothing: the first version of every service is
//! loaded into its slot by the same path a later update takes.
//!
//! # Parts
//! Each module has one job, and imports only the modules listed after it
//! (no circle):
//!
//! ```text
//! manager ─┬─> protocol ─────> image, history
//!          ├─> faults ───────> protocol
//!          ├─> image_store ──> image
//!          ├─> uploads
//!          └─> console, command, history, status, floors, placer
//! ```
//!
//! - `protocol`: the update protocol (admit, build, quiesce, transfer,
//!   commit, retire; probation and its rollback) over the `SlotControl`
//!   trait and plain records. It never sees the manager; its unit tests
//!   drive it with fake slots.
//! - `image_store`: the images the manager can load; `image`: an entry and
//!   the descriptor it is admitted by; `uploads`: bundles received over the
//!   console line into the upload region.
//! - `console` (line editing), `command` (parsing), `history` (the log),
//!   `status` (tables): the operator's console, without the manager.
//! - `faults`: what a child's fault or hang is, and the restart backoff.
//! - `floors`: version floors; `placer`: writing an image into a slot.
//! - `manager`: owns the state and the event loop, and joins the parts: its
//!   submodules (`slots`: the real `SlotControl`; `supervise`,
//!   `troubles`, `session`, `uploading`, ...) each add one side of
//!   [`Manager`] and import nothing from each other but the manager's types.
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
mod image_store;
pub mod manager;
mod placer;
mod protocol;
mod status;
pub mod uploads;

pub use manager::Manager;
pub use placer::{ImagePlacer, SharedObjectPlacer, SlotCode};

include!(concat!(env!("OUT_DIR"), "/trusted_keys.rs"));
include!(concat!(env!("OUT_DIR"), "/version_floors.rs"));
