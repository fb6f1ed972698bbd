//! The limits the microkit tool (2.3.0) applies, for the board this project
//! builds for: QEMU `virt` AArch64, debug configuration (seL4 built as a
//! hypervisor with a 40-bit physical address space, one core, 16 domains,
//! SMC calls allowed). Values that come from that kernel configuration are
//! marked as such.

pub const MAX_PDS: usize = 63;
/// Channel, IRQ and vCPU ids must be below this (one badge bit each).
pub const MAX_CHANNEL_ID: u64 = 62;
/// A child's id selects a slot in its parent's CSpace (which has 512, the
/// child TCBs starting at 202), not a badge bit, so it may be larger.
pub const MAX_CHILD_ID: u64 = 512 - 202 - 1;
pub const MAX_PRIORITY: u64 = 254;
/// vCPUs in the whole system (the monitor's table of their names).
pub const MAX_VCPUS: usize = 64;
pub const PAGE_SIZES: [u64; 2] = [0x1000, 0x20_0000];
pub const SMALL_PAGE: u64 = 0x1000;
pub const MIN_STACK_SIZE: u64 = 0x1000;
pub const MAX_STACK_SIZE: u64 = 0x100_0000;
pub const DEFAULT_STACK_SIZE: u64 = 0x2000;
/// Budget (and so period) of a PD or VM that gives none, in microseconds.
pub const DEFAULT_BUDGET: u64 = 1000;
/// `<cspace>` slots: 1 up to, not including, this.
pub const CAP_MAP_MAX_SLOT: u64 = 128;
/// The name the monitor takes.
pub const MONITOR_NAME: &str = "monitor";
/// `prefill_bootinfo` kinds the tool knows (it accepts them on any board).
pub const BOOTINFO_KINDS: [&str; 6] =
    ["x86_vbe", "x86_mbmmap", "x86_acpi_rsdp", "x86_framebuffer", "x86_tsc_freq", "fdt"];

/// Kernel configuration: cores (`cpu` must be below this).
pub const NUM_CORES: u64 = 1;
/// Kernel configuration: `KernelNumDomains` (explicit domain ids are below
/// this; the tool hands out ids up to and including it to the others).
pub const NUM_DOMAINS: u64 = 16;
/// Kernel configuration: `KernelNumDomainSchedules`.
pub const NUM_DOMAIN_SCHEDULES: u64 = 100;
/// Kernel configuration: the highest user virtual address (inclusive).
pub const VSPACE_USER_TOP: u64 = (1 << 40) - 1;

/// Physical memory a region with a `phys_addr` may use (from the board's
/// `platform_gen.json`): device ranges, then RAM. Each page of such a region
/// must lie in one of them. The kernel's own devices (the holes) and, in
/// RAM, what the kernel and the loader occupy are not available; the latter
/// depends on the image, so only the tool knows it.
pub const PHYS_RANGES: [(u64, u64); 6] = [
    (0, 0x800_0000),
    (0x800_1000, 0x801_0000),
    (0x801_1000, 0x803_0000),
    (0x803_1000, 0x6000_0000),
    (0xC000_0000, 1 << 40),
    (0x6000_0000, 0xC000_0000),
];

/// The first page of `size` bytes at `paddr`, in pages of `page` bytes,
/// that lies in none of [`PHYS_RANGES`]. As in the tool, a page whose end
/// reaches 2^64 is not checked, and the pages after it wrap around to 0.
pub fn outside_phys_ranges(paddr: u64, size: u64, page: u64) -> Option<u64> {
    const WRAP: u128 = 1 << 64;
    let (mut cur, mut end) = (u128::from(paddr), u128::from(paddr) + u128::from(size));
    let page = u128::from(page);
    while cur < end {
        if cur + page >= WRAP {
            (cur, end) = (cur + page - WRAP, end.saturating_sub(WRAP));
            continue;
        }
        let range =
            PHYS_RANGES.iter().map(|&(s, e)| (u128::from(s), u128::from(e))).find(|&(s, e)| s <= cur && cur < e);
        match range {
            Some((_, e)) if cur + page <= e => {
                // Skip every whole page up to the range's end (or ours).
                let stop = end.min(e);
                cur += ((stop - cur) / page).max(1) * page;
            }
            _ => return Some(cur as u64),
        }
    }
    None
}

/// The first address a PD may not map at: its stack sits below a guard page
/// and the IPC buffer at the top of the address space.
pub fn pd_map_limit(stack_size: u64) -> u64 {
    let ipc_buffer = VSPACE_USER_TOP & !(SMALL_PAGE - 1);
    (ipc_buffer - SMALL_PAGE).saturating_sub(stack_size)
}

/// The first address a virtual machine may not map at.
pub const VM_MAP_LIMIT: u64 = VSPACE_USER_TOP + 1;

/// A number as the tool reads most attributes: decimal or `0x` hex (lower
/// case `x` only), `_` separators allowed, no spaces.
pub fn parse_number(s: &str) -> Option<u64> {
    let digits: String = s.chars().filter(|&c| c != '_').collect();
    match digits.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => digits.parse().ok(),
    }
}

/// A channel or IRQ id as the tool reads it: a plain decimal integer (a sign
/// allowed) in `0..MAX_CHANNEL_ID`.
pub fn parse_decimal_id(s: &str) -> Result<u64, String> {
    let id: i64 = s.parse().map_err(|_| format!("id '{s}' is not a decimal integer"))?;
    match u64::try_from(id) {
        Ok(id) if id < MAX_CHANNEL_ID => Ok(id),
        Ok(_) => Err(format!("id {id} must be below {MAX_CHANNEL_ID}")),
        Err(_) => Err(format!("id {id} must not be negative")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_read_as_the_tool_reads_them() {
        assert_eq!(parse_number("0x1_000"), Some(0x1000));
        assert_eq!(parse_number("4_096"), Some(4096));
        assert_eq!(parse_number("0X10"), None);
        assert_eq!(parse_number(" 1"), None);
        assert_eq!(parse_decimal_id("+5"), Ok(5));
        assert_eq!(parse_decimal_id("-0"), Ok(0));
        assert!(parse_decimal_id("0x5").is_err());
        assert!(parse_decimal_id("-1").unwrap_err().contains("negative"));
        assert!(parse_decimal_id("62").unwrap_err().contains("below 62"));
    }

    #[test]
    fn physical_pages_must_be_in_device_ranges_or_ram() {
        assert_eq!(outside_phys_ranges(0x900_0000, 0x1000, 0x1000), None);
        assert_eq!(outside_phys_ranges(0x800_0000, 0x1000, 0x1000), Some(0x800_0000));
        assert_eq!(outside_phys_ranges(0x800_e000, 0x4000, 0x1000), Some(0x801_0000));
        assert_eq!(outside_phys_ranges(0x5FE0_0000, 0x40_0000, 0x20_0000), None);
        assert_eq!(outside_phys_ranges(0xFF_FFFF_F000, 0x2000, 0x1000), Some(1 << 40));
        // The page that wraps is not checked; the next one, at 0, is valid.
        assert_eq!(outside_phys_ranges(u64::MAX - 0xFFF, 0x2000, 0x1000), None);
    }

    #[test]
    fn map_limits_follow_the_stack() {
        assert_eq!(pd_map_limit(DEFAULT_STACK_SIZE), 0xFF_FFFF_C000);
        assert_eq!(VM_MAP_LIMIT, 0x100_0000_0000);
    }
}
