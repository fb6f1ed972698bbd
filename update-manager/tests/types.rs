//! An instance's service type is what its control regions name
//! (`kv:store7_a_control`), never derived from its name: the manager boots
//! and updates it as a `kv`, and publishes the type in the capability map
//! for the clients' stubs. Control regions that name no type are refused.
mod common;

use common::{Console, FakePd};

#[test]
fn the_type_is_read_from_the_control_regions_and_published() {
    let images: Vec<(&str, Vec<u8>)> =
        ["kv-v1", "kv-v2"].iter().map(|&p| (p, xtask::build_module(p).unwrap())).collect();
    // The type is never derived from the name: `store7` is a `kv`.
    let pd = FakePd::new(&images, &["kv:store7", "kv:kv0"]);
    let mut c = Console::start(pd);
    assert!(c.boot.contains("boot: store7 slot a <- kv-v1"), "{}", c.boot);
    let out = c.command("update kv kv-v2");
    assert!(out.contains("update kv kv-v2: 2 instance(s)") && out.contains("store7 runs kv-v2"), "{out}");
    let status = c.command("status");
    assert!(status.lines().any(|l| l.starts_with("store7_b") && l.split_whitespace().nth(1) == Some("kv")), "{status}");
    let map = pd_capmap(pd);
    let entries: Vec<(Option<&str>, Option<&str>)> =
        (0..2).map(|i| (map.entries[i].name.as_str(), map.service(i))).collect();
    assert_eq!(entries, [(Some("store7"), Some("kv")), (Some("kv0"), Some("kv"))]);
}

#[test]
fn control_regions_that_name_no_type_are_refused() {
    let images: Vec<(&str, Vec<u8>)> = ["kv-v1"].iter().map(|&p| (p, xtask::build_module(p).unwrap())).collect();
    let pd = FakePd::new(&images, &["kv0"]);
    let Err(e) = update_manager::Manager::with_floors(pd, common::FakePlacer(pd), &[]) else {
        panic!("a manager started with an untyped instance")
    };
    assert!(e.contains("instance 'kv0'") && e.contains("'<type>:kv0_a_control'"), "{e}");
}

fn pd_capmap(pd: &'static FakePd) -> &'static interfaces::capmap::CapMap {
    use pd_api::Pd;
    let r = pd.region("capmap").unwrap();
    // SAFETY: the manager formatted it; a leaked, page-aligned region.
    unsafe { &*(r.base as *const interfaces::capmap::CapMap) }
}
