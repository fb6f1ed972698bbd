//! The whole system boots on the host runtime; the console answers through
//! the UART driver; the client's verified replies grow with none wrong.
use std::time::Duration;
use system_tests::System;

#[test]
fn boots_every_pd_and_the_client_is_verified() {
    let mut sys = System::boot(None);
    let first = sys.status();
    let names: Vec<&str> = first.iter().map(|r| r.pd.as_str()).collect();
    let xml = std::fs::read_to_string(xtask::workspace_root().join("system.xml")).unwrap();
    let declared: Vec<String> = sdf::parse(&xml).unwrap().pds.into_iter().map(|p| p.name).collect();
    assert_eq!(names, declared, "one row per PD of system.xml, in its order");
    let kv_a = first.iter().find(|r| r.pd == "kv0_a").unwrap();
    assert_eq!(
        (kv_a.service.as_str(), kv_a.version.as_str(), kv_a.slot.as_str(), kv_a.state.as_str()),
        ("kv", "1", "a", "live")
    );
    assert!(kv_a.detail.contains("gen 1"), "{kv_a:?}");
    assert_eq!(first.iter().find(|r| r.pd == "kv0_b").unwrap().state, "empty");
    assert!(first.iter().all(|r| r.faults == 0), "{first:?}");

    std::thread::sleep(Duration::from_millis(700));
    let second = sys.status();
    let verified =
        |rows: &[system_tests::Row]| rows.iter().find(|r| r.pd == "client0").and_then(|r| r.detail_num("verified"));
    let wrong = second.iter().find(|r| r.pd == "client0").and_then(|r| r.detail_num("wrong"));
    let (v1, v2) = (verified(&first).unwrap_or(0), verified(&second).expect("client stats"));
    assert!(v2 > v1 && v2 > 0, "verified replies grow: {v1} -> {v2}");
    assert_eq!(wrong, Some(0), "no wrong replies");
    assert_eq!(sys.shutdown(), 0);
}

#[test]
fn console_answers_help_version_and_errors_then_prompts_again() {
    let mut sys = System::boot(None);
    assert!(sys.command("help").contains("status"));
    assert!(sys.command("version").contains("module ABI v1"));
    assert_eq!(sys.command("frobnicate").trim(), "error: unknown command 'frobnicate' (try 'help')");
    assert_eq!(sys.command("status please").trim(), "error: 'status' takes no arguments (got 'please')");
    assert_eq!(sys.command("").trim(), "");
    // Backspace edits the line before it runs.
    sys.type_bytes(b"versiox\x7fn\n");
    assert!(sys.next_output(Duration::from_secs(10)).contains("module ABI v1"));
    // Binary garbage and an over-long line get one-line errors.
    sys.type_bytes(b"\x00\xfe\xff\x01\n");
    assert!(sys.next_output(Duration::from_secs(10)).contains("error: line holds bytes that are not printable text"));
    sys.type_bytes(format!("{}\n", "x".repeat(500)).as_bytes());
    assert!(sys.next_output(Duration::from_secs(10)).contains("error: line too long"));
    assert_eq!(sys.status().len(), xtask::description().pd_count(), "the console still works: a row per PD");
    assert_eq!(sys.shutdown(), 0);
}

#[test]
fn piped_input_runs_line_by_line_and_halts_at_its_end() {
    // What `printf 'status\n' | cargo xtask run` does.
    let dir = system_tests::host_image();
    let out = std::process::Command::new(dir.parent().unwrap().join("host-runtime"))
        .arg(xtask::workspace_root().join("system.xml"))
        .arg("--search-path")
        .arg(dir)
        .stdin(std::fs::File::open(write_input("status\nversion\n")).unwrap())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("kv0_a") && text.contains("live") && text.contains("end of input: halting"), "{text}");
}

fn write_input(s: &str) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("system-tests-input-{}", std::process::id()));
    std::fs::write(&p, s).unwrap();
    p
}
