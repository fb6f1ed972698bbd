//! A transfer region as the other slot may have left it after an
//! incremental export (`interfaces::transfer`, pre-copy): whatever the
//! header and the change list say, every range the importer is handed
//! lies within the sealed state, and taking the ranges over never writes
//! outside the importer's own state.
#![no_main]
use interfaces::abi::StateRange;
use interfaces::transfer::{Progress, Transfer, TRANSFER_HEADER};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The region: the input, 8-aligned, at least a header and a word.
    let words = data.len().max(TRANSFER_HEADER + 8).div_ceil(8);
    let mut region = vec![0u64; words];
    // SAFETY: plain bytes over the u64 buffer, which outlives them.
    let bytes = unsafe { std::slice::from_raw_parts_mut(region.as_mut_ptr().cast::<u8>(), words * 8) };
    bytes[..data.len()].copy_from_slice(data);
    let token = u64::from_le_bytes(bytes[8..16].try_into().unwrap());
    // SAFETY: the buffer is 8-aligned and lives until the end; only this
    // thread touches it.
    let t = unsafe { Transfer::new(bytes.as_mut_ptr(), bytes.len()) }.expect("room for a header");
    let Ok((_, Progress::Sealed(len))) = t.poll(token) else { return };
    assert!(len <= t.capacity());
    let Some((_, n)) = t.changes_against() else { return };
    let mut ranges = Vec::new();
    for i in 0..n.min(4096) {
        if let Some(r) = t.change(len, n, i) {
            assert!(r.start <= r.end && r.end <= len, "range {r:?} outside a state of {len}");
            ranges.push(StateRange { start: r.start as u64, len: r.len() as u64 });
        }
    }
    // SAFETY: the body's first `len` bytes are inside the region.
    let state_bytes = unsafe { std::slice::from_raw_parts(t.body(), len) };
    let mut mine = vec![0u8; len];
    module_rt::precopy::import_ranges(&mut mine, state_bytes, &ranges).expect("checked ranges are taken");
    for r in &ranges {
        let (a, b) = (r.start as usize, (r.start + r.len) as usize);
        assert_eq!(mine[a..b], state_bytes[a..b]);
    }
});
