//! Version floors: an image below its service's floor is refused at
//! admission (update, rollback), the trusted build's floors choose what
//! boots, and a floor only rises (`Manager::raise_floor`, the `floor`
//! command). The manager runs in-process on a stand-in PD whose slots
//! report the version of the image placed in them.
mod common;

use common::{Console, FakePd};
use std::sync::OnceLock;

fn kv_images() -> Vec<(&'static str, Vec<u8>)> {
    static IMAGES: OnceLock<Vec<(&'static str, Vec<u8>)>> = OnceLock::new();
    IMAGES
        .get_or_init(|| ["kv-v1", "kv-v2", "kv-v3"].iter().map(|&p| (p, xtask::build_module(p).unwrap())).collect())
        .clone()
}

#[test]
fn raise_floor_refuses_lower_versions_from_then_on() {
    let pd = FakePd::new(&kv_images(), &["kv:kv0"]);
    let mut c = Console::start(pd);
    assert_eq!(c.m.floor("kv"), Some(0), "no floor unless the build sets one");
    assert_eq!(c.m.floor("db"), None);
    assert!(c.command("update kv kv-v2").contains("done: kv0 runs kv-v2 (v2, schema 2)"));
    // The update protocol raises the floor when an update becomes final
    // (here: its probation is accepted).
    assert!(c.command("accept kv").contains("the version floor of kv is now v2"));
    assert_eq!(c.m.floor("kv"), Some(2));
    // Below it: refused at admission, with the reason; nothing changes.
    let out = c.command("update kv kv-v1");
    assert!(out.contains("  admit     FAILED: kv v1 is below the version floor v2 of service kv"), "{out}");
    assert!(out.contains("rolled back"), "{out}");
    // A cold rollback to v1 (the module kept in the other slot) too.
    let out = c.command("rollback kv");
    assert!(out.contains("  admit     FAILED: kv v1 is below the version floor v2 of service kv"), "{out}");
    assert_eq!(pd.slot_version("kv0_b"), 2, "v2 still runs in slot b");
    // At or above it: admitted.
    assert!(c.command("update kv kv-v3").contains("done: kv0 runs kv-v3 (v3, schema 2)"));
    assert_eq!(pd.slot_version("kv0_a"), 3);
    // It only rises; a service this system does not run has none; and it
    // cannot rise above what an instance runs.
    assert_eq!(c.m.raise_floor("kv", 1), Err("the version floor of service kv is v2; it only rises".into()));
    assert_eq!(c.m.raise_floor("db", 3), Err("no service 'db' in this system".into()));
    assert_eq!(c.m.raise_floor("kv", 4), Err("kv0 runs kv v3, below v4: update it first".into()));
    assert_eq!(c.m.floor("kv"), Some(2), "unchanged by the refusals");
    assert_eq!(c.m.raise_floor("kv", 2), Ok(()), "the same floor again changes nothing");
    // v3 is on probation, with v2 to go back to: a floor of 3 makes it final.
    assert_eq!(c.m.raise_floor("kv", 3), Ok(()));
    let out = c.command("rollback kv");
    assert!(out.contains("  admit     FAILED: kv v2 is below the version floor v3 of service kv"), "{out}");
    assert_eq!(pd.slot_version("kv0_a"), 3, "v3 still runs in slot a");
}

#[test]
fn the_floor_command_lists_and_raises_and_images_show_the_floors() {
    let pd = FakePd::new(&kv_images(), &["kv:kv0"]);
    let mut c = Console::start(pd);
    assert_eq!(c.command("floor"), "SERVICE          FLOOR\nkv               none\n");
    assert!(c.command("help").contains("floor [<service> <version>]"));
    assert!(c.command("update kv kv-v3").contains("done:"));
    // kv-v3 is on probation with kv-v1 to go back to: the floor ends it.
    assert_eq!(
        c.command("floor kv 2"),
        "made final by the version floor: kv runs kv-v3 (v3) for good\nversion floor of service kv raised to v2\n"
    );
    assert_eq!(c.command("floor kv v2"), "the version floor of service kv is v2 already\n");
    assert_eq!(c.command("floor kv 1"), "refused: the version floor of service kv is v2; it only rises\n");
    assert_eq!(c.command("floor db 1"), "error: no service 'db' in this system\n");
    assert_eq!(c.command("floor kv 9"), "refused: kv0 runs kv v3, below v9: update it first\n");
    assert_eq!(c.command("floor kv x"), "error: bad version 'x'; usage: floor [<service> <version>]\n");
    assert_eq!(c.command("floor"), "SERVICE          FLOOR\nkv               v2\n");
    let images = c.command("images");
    assert!(images.ends_with("version floors: kv v2\n"), "{images}");
    let v1 = images.lines().find(|l| l.starts_with("kv-v1")).unwrap();
    assert!(v1.ends_with("(below the version floor)"), "{images}");
    assert!(!images.lines().find(|l| l.starts_with("kv-v2")).unwrap().contains("below"), "{images}");
    assert!(c.command("log 1").contains("floor kv 2"), "the raise is in the history");
}

#[test]
fn the_builds_floors_choose_the_first_version_that_boots() {
    let pd = FakePd::new(&kv_images(), &["kv:kv0"]);
    let mut c = Console::start_with_floors(pd, &[("kv", 2), ("db", 5)]);
    assert_eq!(pd.slot_version("kv0_a"), 2, "the lowest version at or above the floor boots");
    assert_eq!(c.m.floor("kv"), Some(2));
    assert_eq!(c.m.floor("db"), None, "a floor for a service this system does not run is ignored");
    let out = c.command("update kv kv-v1");
    assert!(out.contains("kv v1 is below the version floor v2 of service kv"), "{out}");
    // A floor above every image: the instance does not boot, and says why.
    let pd = FakePd::new(&kv_images(), &["kv:kv0"]);
    let c = Console::start_with_floors(pd, &[("kv", 7)]);
    assert_eq!(pd.slot_version("kv0_a"), 0);
    assert!(
        c.boot.contains("boot: kv0: failed: no image of service 'kv' at or above its version floor v7"),
        "{}",
        c.boot
    );
}
