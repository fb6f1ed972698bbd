//! Systems built for one test or benchmark: the manager, the UART
//! driver and one updatable instance, plus whatever PDs the test adds.
use crate::System;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const HEAD: &str = r#"<system>
    <memory_region name="image_store" prefill_path="STORE" />
    <memory_region name="capmap" size="0x1000" />
    <memory_region name="serial_rx" size="0x1000" />
    <memory_region name="serial_tx" size="0x4000" />"#;

/// The manager's maps of the image store, the capability map and the
/// serial queues, the same in every system here (indented for its place).
const MANAGER_MAPS: &str = r#"<map mr="image_store" vaddr="0x10000000" perms="r" />
        <map mr="capmap" vaddr="0x20000000" perms="rw" />
        <map mr="serial_rx" vaddr="0x20001000" perms="rw" />
        <map mr="serial_tx" vaddr="0x20004000" perms="rw" />"#;

/// The manager's UART driver child, the same in every system here.
const SERIAL_PD: &str = r#"<protection_domain name="serial" id="0" priority="250">
            <program_image path="uart_driver.elf" />
            <map mr="serial_rx" vaddr="0x20001000" perms="rw" setvar_vaddr="rx_queue" />
            <map mr="serial_tx" vaddr="0x20004000" perms="rw" setvar_vaddr="tx_queue" />
        </protection_domain>"#;

/// Writes `xml` to `file` in this process's temporary directory of
/// systems; returns its path.
fn write_system(file: &str, xml: String) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("update-systems-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(file);
    std::fs::write(&path, xml).unwrap();
    path
}

/// A system (written to a temporary file) with the manager, the UART driver, one instance `inst` of
/// service type `service` with a transfer region of `transfer` bytes, and `extra` PDs (children of the
/// manager) with their regions and channels.
pub fn one_instance_system(
    store: &str,
    service: &str,
    inst: &str,
    transfer: u64,
    regions: &str,
    extra_pds: &str,
    channels: &str,
) -> PathBuf {
    let slot = |s: &str| {
        format!(
            r#"<protection_domain name="{inst}_{s}" id="{id}" priority="200">
            <program_image path="domain_shell.elf" />
            <map mr="{inst}_{s}_code" vaddr="0x40000000" perms="rx" setvar_vaddr="module_code" />
            <map mr="{inst}_transfer" vaddr="0x50000000" perms="rw" setvar_vaddr="transfer" />
            <map mr="{service}:{inst}_{s}_control" vaddr="0x48000000" perms="rw" setvar_vaddr="control" />
            <map mr="{inst}_journal" vaddr="0x48100000" perms="rw" setvar_vaddr="journal" />
        </protection_domain>"#,
            id = if s == "a" { 1 } else { 2 }
        )
    };
    let xml = format!(
        r#"{head}
    <memory_region name="{inst}_a_code" size="0x200000" />
    <memory_region name="{inst}_b_code" size="0x200000" />
    <memory_region name="{inst}_transfer" size="{transfer:#x}" />
    <memory_region name="{service}:{inst}_a_control" size="0x1000" />
    <memory_region name="{service}:{inst}_b_control" size="0x1000" />
    <memory_region name="{inst}_journal" size="0x400000" />
    {regions}
    <protection_domain name="update_manager" priority="254">
        <program_image path="update_manager.elf" />
        {MANAGER_MAPS}
        <map mr="{inst}_a_code" vaddr="0x30000000" perms="rw" />
        <map mr="{inst}_b_code" vaddr="0x30200000" perms="rw" />
        <map mr="{service}:{inst}_a_control" vaddr="0x60000000" perms="rw" />
        <map mr="{service}:{inst}_b_control" vaddr="0x60001000" perms="rw" />
        {SERIAL_PD}
        {slot_a}
        {slot_b}
        {extra_pds}
    </protection_domain>
    <channel><end pd="update_manager" id="0" /><end pd="serial" id="0" /></channel>
    <channel><end pd="update_manager" id="1" /><end pd="{inst}_a" id="0" /></channel>
    <channel><end pd="update_manager" id="2" /><end pd="{inst}_b" id="0" /></channel>
    {channels}
</system>"#,
        head = HEAD.replace("STORE", store),
        slot_a = slot("a"),
        slot_b = slot("b"),
    );
    write_system(&format!("{inst}-{transfer}.xml"), xml)
}

/// A system (written to a temporary file) with one instance `inst` of
/// service type `service` as in [`one_instance_system`], and one client
/// `client` (bench_pd.elf) on channel 1 of both its slots.
pub fn one_client_system(store: &str, service: &str, inst: &str, transfer: u64, client: &str) -> PathBuf {
    one_instance_system(
        store,
        service,
        inst,
        transfer,
        "",
        &format!(
            r#"<protection_domain name="{client}" id="3" priority="50">
            <program_image path="bench_pd.elf" />
            <map mr="capmap" vaddr="0x20000000" perms="r" setvar_vaddr="capmap" />
        </protection_domain>"#
        ),
        &format!(
            r#"<channel><end pd="{client}" id="0" pp="true" /><end pd="{inst}_a" id="1" /></channel>
    <channel><end pd="{client}" id="1" pp="true" /><end pd="{inst}_b" id="1" /></channel>"#
        ),
    )
}

/// Waits until a PD has logged a line containing `pattern`; returns the
/// whole log.
pub fn wait_log(sys: &System, pattern: &str, timeout: Duration) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let lines = sys.log.lock().unwrap().clone();
        if lines.iter().any(|l| l.contains(pattern)) {
            return lines;
        }
        assert!(Instant::now() < deadline, "no '{pattern}' in the log:\n{}", lines.join("\n"));
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether the blackout benchmark wants blob's state in the caches while
/// `generation` is live (its `blobfill` PD then reads the state every
/// millisecond, as a service in use would): two switches warm, two cold,
/// so that the two kinds alternate and each has updates and rollbacks.
pub fn warm_generation(generation: u64) -> bool {
    (generation / 2) % 2 == 1
}

/// A file-service system for the fs benchmarks (written to a temporary
/// file): the manager, the UART driver, the block driver `blk` and the
/// fs0 slots as in tests/systems/fs.xml, and one bench client `client`
/// (bench_pd.elf) on channel 1 of the slots, with a 64 KiB buffer. With
/// `direct`, also the baseline: `fsdirect` hosting the module `direct`
/// (e.g. `fs-v5.so`) with no shell, on its own driver `blkdirect` (whose
/// disk the runtime's environment names: `HOST_DISK_blkdirect`).
pub fn fs_system(client: &str, direct: Option<&str>) -> PathBuf {
    let (direct_regions, direct_pds, direct_channels) = match direct {
        None => Default::default(),
        Some(module) => (
            format!(
                r#"<memory_region name="blkdirect" size="0x12000" />
    <memory_region name="directbuf" size="0x10000" />
    <memory_region name="directbuf2" size="0x1000" />
    <memory_region name="fsdirect_code" prefill_path="{module}" />"#
            ),
            r#"<protection_domain name="blkdirect" id="6" priority="220" stack_size="0x10000">
            <program_image path="blk_driver.elf" />
            <map mr="blkdirect" vaddr="0x21000000" perms="rw" setvar_vaddr="blk" />
        </protection_domain>
        <protection_domain name="fsdirect" id="7" priority="200" stack_size="0x10000">
            <program_image path="bench_pd.elf" />
            <map mr="fsdirect_code" vaddr="0x40000000" perms="r" setvar_vaddr="module_code" />
            <map mr="blkdirect" vaddr="0x41000000" perms="rw" setvar_vaddr="blk" />
            <map mr="directbuf" vaddr="0x41100000" perms="rw" setvar_vaddr="buf1" />
            <map mr="directbuf2" vaddr="0x41200000" perms="rw" setvar_vaddr="buf2" />
        </protection_domain>"#
                .to_owned(),
            format!(
                r#"<channel><end pd="{client}" id="2" pp="true" /><end pd="fsdirect" id="1" /></channel>
    <channel><end pd="fsdirect" id="3" pp="true" /><end pd="blkdirect" id="1" /></channel>"#
            ),
        ),
    };
    let direct_buf = if direct.is_some() {
        r#"<map mr="directbuf" vaddr="0x22100000" perms="rw" setvar_vaddr="directbuf" />"#
    } else {
        ""
    };
    let slot = |s: &str| {
        format!(
            r#"<protection_domain name="fs0_{s}" id="{id}" priority="200" stack_size="0x10000">
            <program_image path="domain_shell.elf" />
            <map mr="fs0_{s}_code" vaddr="0x40000000" perms="rx" setvar_vaddr="module_code" />
            <map mr="fs0_{s}_data" vaddr="0x40200000" perms="rw" setvar_vaddr="module_data" />
            <map mr="fs0_transfer" vaddr="0x40400000" perms="rw" setvar_vaddr="transfer" />
            <map mr="fs:fs0_{s}_control" vaddr="0x48000000" perms="rw" setvar_vaddr="control" />
            <map mr="blk" vaddr="0x41000000" perms="rw" setvar_vaddr="blk" />
            <map mr="fsbuf" vaddr="0x41100000" perms="rw" setvar_vaddr="buf1" />
            <map mr="fsbuf2" vaddr="0x41200000" perms="rw" setvar_vaddr="buf2" />
        </protection_domain>"#,
            id = if s == "a" { 1 } else { 2 }
        )
    };
    let xml = format!(
        r#"{head}
    <memory_region name="blk" size="0x12000" />
    <memory_region name="fsbuf" size="0x10000" />
    <memory_region name="fsbuf2" size="0x1000" />
    <memory_region name="fs0_a_code" size="0x200000" />
    <memory_region name="fs0_b_code" size="0x200000" />
    <memory_region name="fs0_a_data" size="0x100000" />
    <memory_region name="fs0_b_data" size="0x100000" />
    <memory_region name="fs0_transfer" size="0x2000" />
    <memory_region name="fs:fs0_a_control" size="0x1000" />
    <memory_region name="fs:fs0_b_control" size="0x1000" />
    {direct_regions}
    <protection_domain name="update_manager" priority="254" stack_size="0x10000">
        <program_image path="update_manager.elf" />
        {MANAGER_MAPS}
        <map mr="fs0_a_code" vaddr="0x30000000" perms="rw" />
        <map mr="fs0_b_code" vaddr="0x30200000" perms="rw" />
        <map mr="fs:fs0_a_control" vaddr="0x60000000" perms="rw" />
        <map mr="fs:fs0_b_control" vaddr="0x60001000" perms="rw" />
        {SERIAL_PD}
        <protection_domain name="blk" id="3" priority="220" stack_size="0x10000">
            <program_image path="blk_driver.elf" />
            <map mr="blk" vaddr="0x21000000" perms="rw" setvar_vaddr="blk" />
        </protection_domain>
        {slot_a}
        {slot_b}
        <protection_domain name="{client}" id="5" priority="50" stack_size="0x10000">
            <program_image path="bench_pd.elf" />
            <map mr="capmap" vaddr="0x20000000" perms="r" setvar_vaddr="capmap" />
            <map mr="fsbuf" vaddr="0x22000000" perms="rw" setvar_vaddr="fsbuf" />
            {direct_buf}
        </protection_domain>
        {direct_pds}
    </protection_domain>
    <channel><end pd="update_manager" id="0" /><end pd="serial" id="0" /></channel>
    <channel><end pd="update_manager" id="1" /><end pd="fs0_a" id="0" /></channel>
    <channel><end pd="update_manager" id="2" /><end pd="fs0_b" id="0" /></channel>
    <channel><end pd="{client}" id="0" pp="true" /><end pd="fs0_a" id="1" /></channel>
    <channel><end pd="{client}" id="1" pp="true" /><end pd="fs0_b" id="1" /></channel>
    <channel><end pd="fs0_a" id="3" pp="true" /><end pd="blk" id="1" /></channel>
    <channel><end pd="fs0_b" id="3" pp="true" /><end pd="blk" id="2" /></channel>
    {direct_channels}
</system>"#,
        head = HEAD.replace("STORE", "images.bin"),
        slot_a = slot("a"),
        slot_b = slot("b"),
    );
    write_system(&format!("fs-{client}.xml"), xml)
}
