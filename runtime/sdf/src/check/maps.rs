//! Memory regions and the mappings of them.
use super::err;
use crate::{model::*, SdfError};

pub(super) fn check_region(r: &MemoryRegion) -> Result<(), SdfError> {
    let page = r.page_size.unwrap_or(SMALL_PAGE);
    if !PAGE_SIZES.contains(&page) {
        return Err(err(&r.origin, format!("page_size {page:#x} is not one of 0x1000, 0x200000")));
    }
    if !r.size.is_multiple_of(page) {
        return Err(err(&r.origin, format!("size {:#x} is not a multiple of the page size {page:#x}", r.size)));
    }
    if let Some(paddr) = r.phys_addr {
        if paddr % page != 0 {
            return Err(err(&r.origin, "phys_addr is not page aligned".into()));
        }
        if let Some(at) = crate::platform::outside_phys_ranges(paddr, r.size, page) {
            return Err(err(&r.origin, format!("the page at {at:#x} is in neither a device range nor RAM")));
        }
    }
    Ok(())
}

/// Regions placed at a physical address must not overlap.
pub(super) fn check_phys_overlap(regions: &[MemoryRegion]) -> Result<(), SdfError> {
    let mut placed: Vec<(u64, u64, &str)> = Vec::new();
    for r in regions {
        let Some(start) = r.phys_addr else { continue };
        let end = start.saturating_add(r.size);
        if let Some((s, e, other)) = placed.iter().find(|(s, e, _)| start < *e && *s < end) {
            return Err(err(
                &r.origin,
                format!("physical range [{start:#x}..{end:#x}) overlaps region '{other}' [{s:#x}..{e:#x})"),
            ));
        }
        placed.push((start, end, &r.name));
    }
    Ok(())
}

/// The maps of one address space (a PD's or a VM's, named `space`): each of
/// a known region, aligned to its page size, below `limit`, and disjoint.
pub(super) fn check_maps(sys: &System, maps: &[Map], limit: u64, space: &str) -> Result<(), SdfError> {
    let mut spans: Vec<(u64, u64, &Map)> = Vec::new();
    for m in maps {
        let r = sys.region(&m.mr).ok_or_else(|| err(&m.origin, format!("no memory region named '{}'", m.mr)))?;
        // A prefilled region's size is 0 only until `check_files` sizes it.
        if r.size == 0 && r.prefill_path.is_none() {
            return Err(err(&m.origin, format!("region '{}' has size 0 and cannot be mapped", m.mr)));
        }
        let page = r.page_size.unwrap_or(SMALL_PAGE);
        if m.vaddr % page != 0 {
            return Err(err(
                &m.origin,
                format!("vaddr {:#x} is not aligned to the region's page size {page:#x}", m.vaddr),
            ));
        }
        let end =
            m.vaddr.checked_add(r.size).ok_or_else(|| err(&m.origin, "mapping wraps the address space".into()))?;
        if end > limit {
            return Err(err(&m.origin, format!("mapping [{:#x}..{end:#x}) reaches past {limit:#x}", m.vaddr)));
        }
        if let Some((_, _, other)) = spans.iter().find(|(s, e, _)| m.vaddr < *e && *s < end) {
            return Err(err(&m.origin, format!("overlaps the mapping of '{}' in '{space}'", other.mr)));
        }
        spans.push((m.vaddr, end, m));
    }
    Ok(())
}
