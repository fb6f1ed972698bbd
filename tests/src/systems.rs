//! Systems built for one test or benchmark: the manager, the serial
//! driver and one updatable instance, plus whatever PDs the test adds.
use crate::System;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const HEAD: &str = r#"<system>
    <memory_region name="image_store" prefill_path="STORE" />
    <memory_region name="capmap" size="0x1000" />
    <memory_region name="serial_rx" size="0x1000" />
    <memory_region name="serial_tx" size="0x4000" />"#;

/// A system (written to a temporary file) with the manager, the serial driver, one instance `inst` with
/// a transfer region of `transfer` bytes, and `extra` PDs (children of the
/// manager) with their regions and channels.
pub fn one_instance_system(
    store: &str,
    inst: &str,
    transfer: u64,
    regions: &str,
    extra_pds: &str,
    channels: &str,
) -> PathBuf {
    let xml = format!(
        r#"{head}
    <memory_region name="{inst}_a_code" size="0x200000" />
    <memory_region name="{inst}_b_code" size="0x200000" />
    <memory_region name="{inst}_transfer" size="{transfer:#x}" />
    <memory_region name="{inst}_a_control" size="0x1000" />
    <memory_region name="{inst}_b_control" size="0x1000" />
    <memory_region name="{inst}_journal" size="0x400000" />
    {regions}
    <protection_domain name="update_manager" priority="254">
        <program_image path="update_manager.elf" />
        <map mr="image_store" vaddr="0x10000000" perms="r" />
        <map mr="capmap" vaddr="0x20000000" perms="rw" />
        <map mr="serial_rx" vaddr="0x20001000" perms="rw" />
        <map mr="serial_tx" vaddr="0x20004000" perms="rw" />
        <map mr="{inst}_a_code" vaddr="0x30000000" perms="rw" />
        <map mr="{inst}_b_code" vaddr="0x30200000" perms="rw" />
        <map mr="{inst}_a_control" vaddr="0x60000000" perms="rw" />
        <map mr="{inst}_b_control" vaddr="0x60001000" perms="rw" />
        <protection_domain name="serial" id="0" priority="250">
            <program_image path="serial_driver.elf" />
            <map mr="serial_rx" vaddr="0x20001000" perms="rw" setvar_vaddr="rx_queue" />
            <map mr="serial_tx" vaddr="0x20004000" perms="rw" setvar_vaddr="tx_queue" />
        </protection_domain>
        <protection_domain name="{inst}_a" id="1" priority="200">
            <program_image path="domain_shell.elf" />
            <map mr="{inst}_a_code" vaddr="0x40000000" perms="rx" setvar_vaddr="module_code" />
            <map mr="{inst}_transfer" vaddr="0x50000000" perms="rw" setvar_vaddr="transfer" />
            <map mr="{inst}_a_control" vaddr="0x48000000" perms="rw" setvar_vaddr="control" />
            <map mr="{inst}_journal" vaddr="0x48100000" perms="rw" setvar_vaddr="journal" />
        </protection_domain>
        <protection_domain name="{inst}_b" id="2" priority="200">
            <program_image path="domain_shell.elf" />
            <map mr="{inst}_b_code" vaddr="0x40000000" perms="rx" setvar_vaddr="module_code" />
            <map mr="{inst}_transfer" vaddr="0x50000000" perms="rw" setvar_vaddr="transfer" />
            <map mr="{inst}_b_control" vaddr="0x48000000" perms="rw" setvar_vaddr="control" />
            <map mr="{inst}_journal" vaddr="0x48100000" perms="rw" setvar_vaddr="journal" />
        </protection_domain>
        {extra_pds}
    </protection_domain>
    <channel><end pd="update_manager" id="0" /><end pd="serial" id="0" /></channel>
    <channel><end pd="update_manager" id="1" /><end pd="{inst}_a" id="0" /></channel>
    <channel><end pd="update_manager" id="2" /><end pd="{inst}_b" id="0" /></channel>
    {channels}
</system>"#,
        head = HEAD.replace("STORE", store)
    );
    let dir = std::env::temp_dir().join(format!("update-systems-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{inst}-{transfer}.xml"));
    std::fs::write(&path, xml).unwrap();
    path
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
