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

/// Non-blank lines.
fn lines(text: &str) -> usize {
    text.lines().filter(|l| !l.trim().is_empty()).count()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(xtask::workspace_root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn the_guides_counts_hold() {
    // What adding the counter service took, as README's 'Adding a new
    // service type' counts it.
    let readme = read("README.md");
    let services = read("services.toml");
    let tail = &services[services.find("# The guide's example").expect("the counter block ends services.toml")..];
    let snippet = tail.split_once('\n').unwrap().1;
    assert!(readme.contains(&format!("```toml\n{snippet}```")), "README shows services.toml's counter block as it is");
    let cargo = read("Cargo.toml");
    let members = cargo.lines().filter(|l| l.trim().starts_with("\"pds/counter/")).count();
    // No profile stanza: every module is built with `[profile.module]`.
    assert!(!cargo.contains(".package.counter-"), "a module needs no profile stanza of its own");
    let edited = members + lines(tail);
    let wiring_files = [
        "pds/counter/api/Cargo.toml",
        "pds/counter/v1/Cargo.toml",
        "pds/counter/v2/Cargo.toml",
        "pds/counter/api/src/bin/counter_client.rs",
        "build/sel4/counter_client/Cargo.toml",
        "build/sel4/counter_client/src/main.rs",
    ];
    let new: usize = wiring_files.iter().map(|f| lines(&read(f))).sum();
    let logic: usize = ["pds/counter/api/src/lib.rs", "pds/counter/v1/src/lib.rs", "pds/counter/v2/src/lib.rs"]
        .map(|f| lines(&read(f)))
        .iter()
        .sum();
    let wiring = edited + new;
    for row in [
        format!("| {edited}: {members} members, {} in `services.toml` |", lines(tail)),
        format!("| {new} |"),
        format!("**{wiring}**"),
        format!("| {logic} ("),
    ] {
        assert!(readme.contains(&row), "README's 'What it cost' should say: {row}");
    }
}
