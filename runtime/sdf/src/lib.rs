//! The Microkit system description (`system.xml`), the single source of
//! truth for both backends.
//!
//! [`parse`] reads the XML with a real parser, and it, [`System::check`] and
//! [`check_files`] together apply the rules of the `microkit` tool (2.3.0,
//! for the board in [`platform`]), naming the element at fault: what the
//! tool accepts is accepted, what it refuses is refused
//! (`tests/parity.rs` runs the tool itself on the corpus). [`topology`] derives what the runtime, the shells and the manager
//! need (which PDs form an updatable service instance, which channel reaches
//! which peer) from the same file, so nothing is configured twice.
pub mod check;
mod model;
mod parse;
pub mod platform;
pub mod topology;

pub use check::check_files;
pub use model::*;
pub use parse::parse;

/// An error, with the element it is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SdfError {
    /// 1-based line of the element, 0 if not known.
    pub line: u32,
    /// The element, e.g. `<protection_domain name="client0">`.
    pub element: String,
    pub message: String,
}

impl std::fmt::Display for SdfError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line > 0 {
            write!(f, "line {}: ", self.line)?;
        }
        if !self.element.is_empty() {
            write!(f, "{}: ", self.element)?;
        }
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for SdfError {}
