//! A look at the volume's geometry before any FAT crate sees it. The
//! releases trust the boot sector's numbers: embedded-sdmmc 0.6.0 divides
//! by its sectors-per-cluster (zero on a damaged disk: a panic, found by
//! `fuzz/fuzz_targets/fs_v1.rs`) and subtracts the metadata from the total
//! without a check. A volume whose geometry cannot be right is refused
//! here (`Corrupt`), so a damaged disk costs its callers an error, never
//! the service a fault.
use interfaces::blk::BLOCK;
use interfaces::fs::FsStatus;

fn u16_at(b: &[u8; BLOCK], at: usize) -> u64 {
    u16::from_le_bytes([b[at], b[at + 1]]) as u64
}

fn u32_at(b: &[u8; BLOCK], at: usize) -> u64 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as u64
}

fn signed(b: &[u8; BLOCK]) -> bool {
    b[510] == 0x55 && b[511] == 0xaa
}

/// Checks partition 0 of the MBR on a disk of `blocks` blocks, reading
/// with `read(block, buffer)`: where it lies, and its FAT boot sector's
/// geometry (sizes non-zero and within the partition, clusters a power of
/// two, the FAT32 root cluster a cluster of the volume).
pub fn check(blocks: u64, mut read: impl FnMut(u64, &mut [u8; BLOCK]) -> Result<(), FsStatus>) -> Result<(), FsStatus> {
    let mut b = [0u8; BLOCK];
    read(0, &mut b)?;
    if !signed(&b) {
        return Err(FsStatus::Corrupt);
    }
    let (start, length) = (u32_at(&b, 446 + 8), u32_at(&b, 446 + 12));
    // `start` may be 0: `mkfs.fat --mbr=y` (`xtask::make_disk_image`) writes
    // the partition table into the FAT boot sector itself.
    if length == 0 || start.saturating_add(length) > blocks {
        return Err(FsStatus::Corrupt);
    }
    read(start, &mut b)?;
    let per_cluster = b[13] as u64;
    let (reserved, fats, root_entries) = (u16_at(&b, 14), b[16] as u64, u16_at(&b, 17));
    let total = match u16_at(&b, 19) {
        0 => u32_at(&b, 32),
        n => n,
    };
    let fat_size = match u16_at(&b, 22) {
        0 => u32_at(&b, 36),
        n => n,
    };
    let root_blocks = (root_entries * 32).div_ceil(BLOCK as u64);
    let metadata = reserved + fats * fat_size + root_blocks;
    let sane = signed(&b)
        && u16_at(&b, 11) == BLOCK as u64
        && per_cluster.is_power_of_two()
        && reserved > 0
        && fats > 0
        && fat_size > 0
        && total <= length
        && metadata < total;
    if !sane {
        return Err(FsStatus::Corrupt);
    }
    let clusters = (total - metadata) / per_cluster;
    // FAT32 (no fixed root directory): its root is a cluster of the volume.
    let root_cluster = u32_at(&b, 44);
    if root_entries == 0 && !(2..clusters + 2).contains(&root_cluster) {
        return Err(FsStatus::Corrupt);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A FAT16 volume of 8,192 blocks at block 1: 4 reserved, 2 FATs of 32
    /// blocks, 512 root entries, 4 blocks a cluster.
    fn disk() -> [[u8; BLOCK]; 2] {
        let mut mbr = [0u8; BLOCK];
        mbr[446 + 4] = 0x06;
        mbr[454..458].copy_from_slice(&1u32.to_le_bytes());
        mbr[458..462].copy_from_slice(&8192u32.to_le_bytes());
        mbr[510..].copy_from_slice(&[0x55, 0xaa]);
        let mut boot = [0u8; BLOCK];
        boot[11..13].copy_from_slice(&512u16.to_le_bytes());
        boot[13] = 4;
        boot[14..16].copy_from_slice(&4u16.to_le_bytes());
        boot[16] = 2;
        boot[17..19].copy_from_slice(&512u16.to_le_bytes());
        boot[19..21].copy_from_slice(&8192u16.to_le_bytes());
        boot[22..24].copy_from_slice(&32u16.to_le_bytes());
        boot[510..].copy_from_slice(&[0x55, 0xaa]);
        [mbr, boot]
    }

    fn checked(d: &[[u8; BLOCK]; 2]) -> Result<(), FsStatus> {
        check(9000, |n, out| {
            *out = *d.get(n as usize).ok_or(FsStatus::Io)?;
            Ok(())
        })
    }

    #[test]
    fn a_sound_volume_passes_and_each_impossible_number_is_corrupt() {
        assert_eq!(checked(&disk()), Ok(()));
        let damage: [(usize, usize, &[u8]); 9] = [
            (0, 510, &[0, 0]),       // no MBR signature
            (0, 454, &[0, 0, 0, 0]), // partition at block 0, a bare MBR
            (0, 458, &[0xff; 4]),    // partition past the disk
            (1, 13, &[0]),           // zero blocks a cluster (0.6.0 divides by it)
            (1, 13, &[3]),           // not a power of two
            (1, 11, &[0, 4]),        // 1,024-byte sectors
            (1, 16, &[0]),           // no FAT
            (1, 22, &[0xff, 0x7f]),  // FATs larger than the volume
            (1, 19, &[0x10, 0]),     // fewer blocks than the metadata
        ];
        for (block, at, bytes) in damage {
            let mut d = disk();
            d[block][at..at + bytes.len()].copy_from_slice(bytes);
            assert_eq!(checked(&d), Err(FsStatus::Corrupt), "block {block} offset {at} = {bytes:?}");
        }
    }

    #[test]
    fn a_boot_sector_holding_the_partition_table_passes() {
        // As `mkfs.fat --mbr=y` writes it: partition 0 starts at block 0,
        // whose FAT boot sector is also the MBR.
        let [_, mut boot] = disk();
        boot[454..458].copy_from_slice(&0u32.to_le_bytes());
        boot[458..462].copy_from_slice(&8192u32.to_le_bytes());
        assert_eq!(checked(&[boot, [0; BLOCK]]), Ok(()));
    }

    #[test]
    fn a_fat32_root_outside_the_volume_is_corrupt() {
        let mut d = disk();
        d[1][17..19].copy_from_slice(&0u16.to_le_bytes()); // no fixed root: FAT32
        d[1][44..48].copy_from_slice(&2u32.to_le_bytes());
        assert_eq!(checked(&d), Ok(()));
        for bad in [0u32, 1, 1 << 20] {
            d[1][44..48].copy_from_slice(&bad.to_le_bytes());
            assert_eq!(checked(&d), Err(FsStatus::Corrupt), "root cluster {bad}");
        }
    }
}
