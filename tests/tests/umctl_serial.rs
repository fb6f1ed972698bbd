//! `umctl --serial` on a serial line: the host runtime's console on a
//! pseudo-terminal (`--console pty:LINK`, the host's stand-in for a board's
//! UART) driven by umctl through the tty device: status, an upload (binary
//! frames through the line), an update and a rollback; the line is raw; a
//! missing, busy or misconfigured line is a clear error with a non-zero exit.
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use system_tests::{output_text as text, ConsoleRuntime};

fn umctl_bin() -> PathBuf {
    // Built with the rest of the workspace by the host image build.
    system_tests::host_image().parent().unwrap().join("umctl")
}

fn umctl(line: &Path, args: &[&str]) -> Output {
    Command::new(umctl_bin()).arg("--serial").arg(line).args(args).output().expect("umctl runs")
}

fn scratch() -> PathBuf {
    let d = std::env::temp_dir().join(format!("umctl-serial-test-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Boots system.xml with its console on a pseudo-terminal linked at `link`
/// and waits (bounded) until the console answers through it.
fn boot(link: &Path) -> ConsoleRuntime {
    let rt = ConsoleRuntime::start(&format!("pty:{}", link.display()));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !link.exists() || umctl(link, &["version"]).status.code() != Some(0) {
        assert!(Instant::now() < deadline, "the console on {} never answered", link.display());
        std::thread::sleep(Duration::from_millis(100));
    }
    rt
}

fn clients_ok(status: &str) -> bool {
    let clients = system_tests::clients(&system_tests::parse_status(status));
    clients.len() == xtask::description().clients.len()
        && clients.iter().all(|r| r.detail_num("wrong") == Some(0) && r.detail_num("failed") == Some(0))
}

#[test]
fn umctl_drives_the_console_over_a_pseudo_terminal() {
    let dir = scratch();
    let link = dir.join("console.pty");
    let _rt = boot(&link);
    assert!(std::fs::read_link(&link).unwrap().starts_with("/dev/pts"), "the link names the pty's slave");

    let st = umctl(&link, &["--baud", "115200", "status"]);
    assert_eq!(st.status.code(), Some(0), "{}", text(&st));
    let rows = system_tests::parse_status(&text(&st));
    let kv0 = rows.iter().find(|r| r.pd == "kv0_a").unwrap_or_else(|| panic!("no kv0_a: {}", text(&st)));
    assert_eq!((kv0.version.as_str(), kv0.state.as_str()), ("1", "live"), "{}", text(&st));
    assert!(!text(&st).contains('\r'), "no CR/LF mapping on a raw line: {:?}", text(&st));

    // Binary upload frames pass through the line untouched.
    let bundle = system_tests::signed_kv_v4(&dir);
    let up = umctl(&link, &["upload", bundle.to_str().unwrap()]);
    assert_eq!(up.status.code(), Some(0), "{}", text(&up));
    assert!(text(&up).contains("admitted kv-v4"), "{}", text(&up));

    // The rollback below moves the state back (cold): with no probation, a
    // slow machine cannot end one meanwhile and raise the version floor to
    // v4 under it.
    let prob = umctl(&link, &["probation", "0"]);
    assert!(prob.status.success() && text(&prob).contains("0 ms"), "{}", text(&prob));
    let upd = umctl(&link, &["update", "kv", "kv-v4", "--timeout", "2000"]);
    assert_eq!(upd.status.code(), Some(0), "{}", text(&upd));
    assert!(text(&upd).contains("done: kv0 runs kv-v4 (v4, schema 2)"), "{}", text(&upd));
    let st = text(&umctl(&link, &["status"]));
    let kv0 = system_tests::parse_status(&st).into_iter().find(|r| r.pd == "kv0_b");
    assert_eq!(kv0.map(|r| (r.version, r.state)), Some(("4".into(), "live".into())), "{st}");

    let back = umctl(&link, &["rollback", "kv"]);
    assert_eq!(back.status.code(), Some(0), "{}", text(&back));
    assert!(text(&back).contains("done: kv0 runs kv-v1 (v1, schema 1) in slot a"), "{}", text(&back));
    let st = text(&umctl(&link, &["status"]));
    assert!(clients_ok(&st), "clients kept working through both switches: {st}");
    let log = umctl(&link, &["log"]);
    assert!(text(&log).contains("update kv kv-v4") && text(&log).contains("rollback kv"), "{}", text(&log));

    // A refusal is exit code 1, as on the socket.
    let bad = umctl(&link, &["update", "kv", "kv-v9"]);
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad));
    assert!(text(&bad).contains("no image named 'kv-v9'"), "{}", text(&bad));

    // The line is raw (no echo, no line discipline) for whoever opens it next.
    let tty = std::fs::File::open(&link).unwrap();
    // SAFETY: tcgetattr fills a termios we own.
    let t = unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        assert_eq!(libc::tcgetattr(tty.as_raw_fd(), &mut t), 0);
        t
    };
    assert_eq!(t.c_lflag & (libc::ECHO | libc::ICANON | libc::ISIG), 0, "no echo, no line editing");
    assert_eq!(t.c_iflag & (libc::ICRNL | libc::IXON), 0, "input untranslated");
    assert_eq!(t.c_oflag & libc::OPOST, 0, "output untranslated");

    // Busy: another program holds the line (an exclusive lock, as umctl
    // takes while it works).
    // SAFETY: flock on a descriptor we own.
    assert_eq!(unsafe { libc::flock(tty.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) }, 0);
    let busy = umctl(&link, &["status"]);
    assert_eq!(busy.status.code(), Some(3), "{}", text(&busy));
    assert!(text(&busy).contains("busy"), "{}", text(&busy));
    drop(tty);
    assert_eq!(umctl(&link, &["version"]).status.code(), Some(0), "free again once the lock is gone");
}

#[test]
fn a_bad_serial_line_is_a_clear_error() {
    let dir = scratch();
    let missing = umctl(&dir.join("no-such-tty"), &["status"]);
    assert_eq!(missing.status.code(), Some(3), "{}", text(&missing));
    assert!(text(&missing).contains("no-such-tty: no such device"), "{}", text(&missing));
    let not_tty = umctl(Path::new("/dev/null"), &["status"]);
    assert_eq!(not_tty.status.code(), Some(3), "{}", text(&not_tty));
    assert!(text(&not_tty).contains("/dev/null: not a serial device"), "{}", text(&not_tty));
    let baud = umctl(Path::new("/dev/null"), &["--baud", "fast", "status"]);
    assert_eq!(baud.status.code(), Some(2), "{}", text(&baud));
    assert!(text(&baud).contains("invalid value 'fast' for '--baud <RATE>'"), "{}", text(&baud));
    let both = Command::new(umctl_bin())
        .args(["--connect", "unix:/nonexistent.sock", "--serial", "/dev/null", "status"])
        .output()
        .unwrap();
    assert_eq!(both.status.code(), Some(2), "{}", text(&both));
    assert!(text(&both).contains("--serial and --connect"), "{}", text(&both));
    let stray = Command::new(umctl_bin()).args(["--baud", "9600", "status"]).output().unwrap();
    assert_eq!(stray.status.code(), Some(2), "{}", text(&stray));
    assert!(text(&stray).contains("--baud needs --serial"), "{}", text(&stray));
}
