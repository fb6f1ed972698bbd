//! The operator's path end to end: a system with its console on a socket;
//! a kv version built after boot, signed, uploaded with `umctl` (which
//! shows progress), updated to and rolled back with `umctl` under load;
//! exit codes scripts can rely on.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use system_tests::output_text as text;

fn umctl(socket: &Path, args: &[&str]) -> Output {
    // Built with the rest of the workspace by the host image build.
    Command::new(system_tests::host_image().parent().unwrap().join("umctl"))
        .arg("--connect")
        .arg(format!("unix:{}", socket.display()))
        .args(args)
        .output()
        .expect("umctl runs")
}

fn scratch() -> PathBuf {
    let d = std::env::temp_dir().join(format!("umctl-test-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn client_counts(status: &str) -> Vec<(u64, u64, u64)> {
    system_tests::parse_status(status)
        .iter()
        .filter(|r| r.service == "client")
        .map(|r| {
            (
                r.detail_num("verified").unwrap_or(0),
                r.detail_num("wrong").unwrap_or(99),
                r.detail_num("failed").unwrap_or(99),
            )
        })
        .collect()
}

#[test]
fn umctl_uploads_updates_and_rolls_back_a_running_system() {
    let dir = scratch();
    let socket = dir.join("console.sock");
    let _rt = system_tests::ConsoleRuntime::start(&format!("unix:{}", socket.display()));
    let deadline = Instant::now() + Duration::from_secs(30);
    while umctl(&socket, &["version"]).status.code() != Some(0) {
        assert!(Instant::now() < deadline, "the console socket never answered");
        std::thread::sleep(Duration::from_millis(100));
    }
    // A kv version that exists nowhere in the system yet.
    let bundle = system_tests::signed_kv_v4(&dir);

    // Rollbacks here move the state back, and keep the version left for a
    // rollback (on probation they would replay a journal instead).
    let prob = umctl(&socket, &["probation", "0"]);
    assert!(prob.status.success() && text(&prob).contains("0 ms"), "{}", text(&prob));
    std::thread::sleep(Duration::from_millis(300));
    let before = client_counts(&text(&umctl(&socket, &["status"])));
    let up = umctl(&socket, &["upload", bundle.to_str().unwrap()]);
    assert_eq!(up.status.code(), Some(0), "{}", text(&up));
    assert!(text(&up).contains("admitted kv-v4"), "{}", text(&up));
    let images = umctl(&socket, &["images"]);
    assert!(text(&images).contains("kv-v4") && images.status.success());
    let upd = umctl(&socket, &["update", "kv", "kv-v4", "--timeout", "2000"]);
    assert_eq!(upd.status.code(), Some(0), "{}", text(&upd));
    assert!(text(&upd).contains("done: kv0 runs kv-v4"), "{}", text(&upd));
    let back = umctl(&socket, &["rollback", "kv"]);
    assert_eq!(back.status.code(), Some(0), "{}", text(&back));
    // Neither the image kept for a rollback nor a built-in one can be
    // forgotten.
    let kept = umctl(&socket, &["forget", "kv-v4"]);
    assert_eq!(kept.status.code(), Some(1), "{}", text(&kept));
    assert!(text(&kept).contains("refused: kv-v4 is kept in slot kv0_b for a rollback of kv0"), "{}", text(&kept));
    let floors = umctl(&socket, &["floor"]);
    assert!(floors.status.success() && text(&floors).contains("kv               none"), "{}", text(&floors));
    let low = umctl(&socket, &["floor", "kv", "4"]);
    assert_eq!(low.status.code(), Some(1), "kv runs v1: {}", text(&low));
    assert_eq!(umctl(&socket, &["floor", "kv"]).status.code(), Some(2), "a service without a version");
    let builtin = umctl(&socket, &["forget", "kv-v1"]);
    assert_eq!(builtin.status.code(), Some(1), "{}", text(&builtin));
    assert!(text(&builtin).contains("built into the image store"), "{}", text(&builtin));
    std::thread::sleep(Duration::from_millis(300));
    let after = client_counts(&text(&umctl(&socket, &["status"])));
    assert_eq!(after.len(), xtask::description().clients.len());
    for ((v0, _, _), (v1, wrong, failed)) in before.iter().zip(&after) {
        assert!(v1 > v0, "clients keep working");
        assert_eq!((*wrong, *failed), (0, 0), "nothing lost");
    }
    // Refusals and failures are exit code 1, with the reason.
    let again = umctl(&socket, &["upload", bundle.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again).contains("already holds an image named kv-v4"));
    let bad = umctl(&socket, &["update", "kv", "kv-v9"]);
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad));
    assert!(text(&bad).contains("no image named 'kv-v9'"));
    let log = umctl(&socket, &["log"]);
    assert!(text(&log).contains("update kv kv-v4") && log.status.success());
    let last = text(&umctl(&socket, &["log", "1"]));
    assert!(last.contains("the last 1 of ") && last.lines().count() == 3, "one entry: {last}");
    // No console: exit code 3, and bad usage: 2.
    assert_eq!(umctl(&dir.join("nothing.sock"), &["status"]).status.code(), Some(3));
    assert_eq!(umctl(&socket, &["frobnicate"]).status.code(), Some(2));
    let help = umctl(&socket, &["upload", "--help"]);
    assert!(help.status.success() && text(&help).contains("bundle"));
}
