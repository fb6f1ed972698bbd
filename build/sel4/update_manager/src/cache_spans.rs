//! The spans cache maintenance is done over after code is written. Pure
//! code with no dependencies, so the host tests it too
//! (build/xtask/tests/cache_spans.rs includes this file).

/// The page size of the slots' code mappings.
pub const PAGE: u64 = 4096;

/// Splits `[start, start + len)` into spans `[a, b)` that each lie within
/// one page, in order, covering every byte once: seL4's VSpace cache
/// operations (`Clean_Data`, `Unify_Instruction`) take a range inside one
/// frame.
pub fn page_spans(start: u64, len: u64) -> impl Iterator<Item = (u64, u64)> {
    let end = start.saturating_add(len);
    let mut at = start;
    core::iter::from_fn(move || {
        if at >= end {
            return None;
        }
        let stop = (at - at % PAGE).saturating_add(PAGE).min(end);
        let span = (at, stop);
        at = stop;
        Some(span)
    })
}
