//! services.toml is the one place the system is declared: system.xml must
//! be exactly what it generates, and what it generates must be a system
//! both the checker and the topology read as declared.

#[test]
fn system_xml_is_what_services_toml_generates() {
    let root = xtask::workspace_root();
    let want = xtask::system::generate_workspace().unwrap();
    let have = std::fs::read_to_string(root.join("system.xml")).unwrap();
    assert!(
        have == want,
        "system.xml is not what services.toml generates: run `{}` (and commit both)",
        xtask::system::REGENERATE
    );
}

#[test]
fn the_builtin_description_is_the_file() {
    let file = std::fs::read_to_string(xtask::workspace_root().join(xtask::system::FILE)).unwrap();
    assert_eq!(file, xtask::system::BUILTIN, "rebuild xtask");
}

#[test]
fn a_type_ending_in_a_digit_is_declared_and_read_back() {
    let d = xtask::system::parse(
        r#"
[[service]]
type = "ipv6"
instances = ["ipv60", "edge"]
images = ["ipv6-v1"]

[[client]]
name = "pinger"
program = "ping_client"
uses = ["ipv60", "edge"]
"#,
    )
    .unwrap();
    let xml = xtask::system::generate(&d).unwrap();
    let sys = sdf::parse(&xml).unwrap();
    sys.check().unwrap();
    sdf::topology::check(&sys).unwrap();
    let inst = sdf::topology::instances(&sys);
    let got: Vec<(&str, &str)> = inst.iter().map(|i| (i.name.as_str(), i.service())).collect();
    assert_eq!(got, [("ipv60", "ipv6"), ("edge", "ipv6")]);
    // The client has a channel to both slots of both instances.
    let pinger = sys.pd("pinger").unwrap();
    let peers: Vec<String> = sdf::topology::channels_of(&sys, pinger).into_iter().map(|c| c.peer_name).collect();
    assert_eq!(peers, ["ipv60_a", "ipv60_b", "edge_a", "edge_b"]);
}

#[test]
fn the_modules_and_programs_come_from_the_description() {
    let images: Vec<&str> = xtask::modules().iter().map(|m| m.image).collect();
    for i in ["kv-v1", "kv-c3", "serial-v2", "fs-v5", "blob-v1"] {
        assert!(images.contains(&i), "{i} missing from {images:?}");
    }
    assert!(xtask::modules().iter().any(|m| m.image == "kv-late-fault" && m.test_only));
    assert!(xtask::programs().contains(&("kv_client.elf", "kv_client")));
}
