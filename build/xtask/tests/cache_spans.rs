//! The page spans the seL4 manager does cache maintenance over after it
//! writes a module's code (build/sel4/update_manager/src/cache_spans.rs,
//! built here for the host: it has no dependencies).
#[path = "../../sel4/update_manager/src/cache_spans.rs"]
mod cache_spans;

use cache_spans::{page_spans, PAGE};

fn spans(start: u64, len: u64) -> Vec<(u64, u64)> {
    page_spans(start, len).collect()
}

#[test]
fn spans_cover_every_written_byte_once_within_single_pages() {
    let base = 0x4000_0000;
    for (start, len) in [
        (base, 1),
        (base, PAGE),
        (base, PAGE + 1),
        (base, 5 * PAGE - 7),
        (base + 100, PAGE),
        (base + PAGE - 1, 2),
        (base + 3, 3 * PAGE + 10),
    ] {
        let s = spans(start, len);
        assert_eq!(s.first().map(|x| x.0), Some(start), "{start:#x}+{len:#x}: starts at the first byte");
        assert_eq!(s.last().map(|x| x.1), Some(start + len), "{start:#x}+{len:#x}: ends after the last byte");
        for w in s.windows(2) {
            assert_eq!(w[0].1, w[1].0, "{start:#x}+{len:#x}: contiguous, no byte twice");
        }
        for &(a, b) in &s {
            assert!(a < b, "{start:#x}+{len:#x}: no empty span");
            assert_eq!(a / PAGE, (b - 1) / PAGE, "{start:#x}+{len:#x}: [{a:#x}, {b:#x}) inside one page");
        }
        let pages = (start + len - 1) / PAGE - start / PAGE + 1;
        assert_eq!(s.len() as u64, pages, "{start:#x}+{len:#x}: one span per page touched");
    }
}

#[test]
fn a_module_image_is_maintained_page_by_page() {
    // Code and staged data written at offsets 0..0x5123 of the code region.
    let s = spans(0x4000_0000, 0x5123);
    assert_eq!(
        s,
        vec![
            (0x4000_0000, 0x4000_1000),
            (0x4000_1000, 0x4000_2000),
            (0x4000_2000, 0x4000_3000),
            (0x4000_3000, 0x4000_4000),
            (0x4000_4000, 0x4000_5000),
            (0x4000_5000, 0x4000_5123),
        ]
    );
    assert!(spans(0x4000_0000, 0).is_empty(), "nothing written, nothing to do");
}
