//! The serial service is updated while the console is in use: commands are
//! typed ahead in one write, so bytes are in flight in both directions
//! while slots change, and every byte must come through (every command is
//! echoed exactly and answered, in order).
use std::time::Duration;
use system_tests::System;

#[test]
fn serial_service_updates_under_typing_lose_no_byte() {
    let sys_xml = xtask::workspace_root().join("tests/systems/serial-update.xml");
    let mut sys = System::boot(Some(&sys_xml));
    let mut script = String::new();
    let mut expect = Vec::new();
    for round in 0..20 {
        let cmd = if round % 2 == 0 { "update serial serial-v2" } else { "rollback serial" };
        let query = format!("version{}", " ".repeat(round % 5));
        for line in [cmd, &query] {
            script.push_str(line);
            script.push('\n');
            expect.push(line.to_owned());
        }
    }
    script.push_str("status\n");
    sys.type_bytes(script.as_bytes());
    // A command that only reads is answered at once even while an update
    // runs, so answers may come before the update's own report ends; but
    // every line is echoed byte for byte, in the order typed, and answered.
    let out = sys.wait_for("SLOT  STATE", Duration::from_secs(60));
    let table = sys.next_output(Duration::from_secs(30));
    let lines: Vec<&str> = out.lines().map(|l| l.strip_prefix(system_tests::PROMPT).unwrap_or(l)).collect();
    let mut at = 0;
    for (k, line) in expect.iter().enumerate() {
        let found = lines[at..].iter().position(|l| l == line);
        let Some(i) = found else { panic!("command {k} ('{line}') was not echoed byte for byte, in order:\n{out}") };
        at += i + 1;
    }
    let versions = lines.iter().filter(|l| l.starts_with("update manager 0.1.0, module ABI v1")).count();
    assert_eq!(versions, 20, "every 'version' answered:\n{out}");
    assert_eq!(out.matches("done: serial0 runs serial-v").count(), 20, "every switch done:\n{out}");
    let rows = system_tests::parse_status(&format!("PD              SERVICE  VERSION  SLOT  STATE{table}"));
    let live = rows.iter().find(|r| r.service == "serial" && r.state == "live").expect("a live serial slot");
    assert!(live.detail.contains("gen 21"), "20 switches after boot: {live:?}");
    let client = rows.iter().find(|r| r.pd == "client0").unwrap();
    assert_eq!(client.detail_num("wrong"), Some(0));
    assert!(!sys.transcript.contains("error:"), "no command arrived garbled:\n{}", sys.transcript);
    assert_eq!(sys.shutdown(), 0);
}
