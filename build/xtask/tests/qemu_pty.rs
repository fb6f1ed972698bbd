//! umctl on seL4's serial line as a board would offer it: QEMU's PL011 on a
//! pseudo-terminal (`-serial pty`, as `cargo xtask qemu --console pty`),
//! driven with `umctl --serial`: status, an update and a rollback under the
//! clients' load. Skipped, saying so, without a Microkit SDK or QEMU.
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

struct Qemu(std::process::Child);
impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn umctl(bin: &Path, tty: &Path, args: &[&str]) -> Output {
    Command::new(bin).arg("--serial").arg(tty).args(args).output().expect("umctl runs")
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
}

fn clients_clean(status: &str) -> bool {
    let clients: Vec<&str> = status.lines().filter(|l| l.starts_with("client")).collect();
    clients.len() == 4 && clients.iter().all(|c| c.contains("wrong=0") && c.contains("failed=0"))
}

#[test]
fn umctl_updates_sel4_over_qemus_pseudo_terminal() {
    if let Err(e) = xtask::sel4::qemu_ready() {
        let _ = writeln!(std::io::stderr(), "\nSKIPPED qemu test: {e}\n");
        return;
    }
    let host = xtask::build_host(false).expect("host build (umctl)");
    let umctl_bin = host.parent().unwrap().join("umctl");
    let image = xtask::sel4::build_image(&xtask::workspace_root().join("system.xml")).expect("seL4 image");
    let mut child = xtask::sel4::qemu_with_serial(&image.loader, "pty")
        .args(xtask::sel4::GUEST_CLOCK)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("qemu");
    // QEMU names the pty on stdout (its monitor's); a thread reads it so the
    // wait is bounded, and drains the rest so QEMU never blocks on it.
    let (tx, rx) = std::sync::mpsc::channel::<PathBuf>();
    let out = child.stdout.take().unwrap();
    let _qemu = Qemu(child);
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if let Some(p) = xtask::sel4::qemu_pty_path(&line) {
                let _ = tx.send(p);
            }
        }
    });
    let tty = rx.recv_timeout(Duration::from_secs(30)).expect("QEMU named its pseudo-terminal");
    // QEMU notices a tool on the pty within a second or so; the system
    // boots meanwhile.
    let deadline = Instant::now() + Duration::from_secs(90);
    while umctl(&umctl_bin, &tty, &["version"]).status.code() != Some(0) {
        assert!(Instant::now() < deadline, "the seL4 system's console on {} never answered", tty.display());
        std::thread::sleep(Duration::from_millis(500));
    }
    let st = umctl(&umctl_bin, &tty, &["status"]);
    assert_eq!(st.status.code(), Some(0), "{}", text(&st));
    assert!(text(&st).lines().any(|l| l.starts_with("kv0_a") && l.contains("live")), "{}", text(&st));
    // A cold rollback: with no probation, a slow run cannot end one before
    // the rollback and raise the version floor to v2 under it.
    let prob = umctl(&umctl_bin, &tty, &["probation", "0"]);
    assert!(prob.status.success() && text(&prob).contains("0 ms"), "{}", text(&prob));
    let upd = umctl(&umctl_bin, &tty, &["update", "kv", "kv-v2"]);
    assert_eq!(upd.status.code(), Some(0), "{}", text(&upd));
    assert!(text(&upd).contains("done: kv0 runs kv-v2 (v2, schema 2)"), "{}", text(&upd));
    let back = umctl(&umctl_bin, &tty, &["rollback", "kv"]);
    assert_eq!(back.status.code(), Some(0), "{}", text(&back));
    assert!(text(&back).contains("done: kv0 runs kv-v1 (v1, schema 1)"), "{}", text(&back));
    let st = text(&umctl(&umctl_bin, &tty, &["status"]));
    assert!(clients_clean(&st), "{st}");
}
