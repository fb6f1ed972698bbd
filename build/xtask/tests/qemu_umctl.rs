//! Shipping an update to the real system: kv v4 is built for seL4 after
//! boot, signed, uploaded with `umctl` over QEMU's serial port (a socket),
//! verified by the manager on seL4 and updated to, under the clients' load.
//! Skipped, saying so, without a Microkit SDK or QEMU.
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

struct Qemu(std::process::Child);
impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn umctl(bin: &Path, socket: &Path, args: &[&str]) -> Output {
    Command::new(bin)
        .arg("--connect")
        .arg(format!("unix:{}", socket.display()))
        .args(args)
        .output()
        .expect("umctl runs")
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
}

#[test]
fn a_signed_bundle_uploaded_with_umctl_updates_sel4_under_load() {
    if let Err(e) = xtask::sel4::qemu_ready() {
        let _ = writeln!(std::io::stderr(), "\nSKIPPED qemu test: {e}\n");
        return;
    }
    let host = xtask::build_host(false).expect("host build (umctl)");
    let umctl_bin = host.parent().unwrap().join("umctl");
    let image = xtask::sel4::build_image(&xtask::workspace_root().join("system.xml")).expect("seL4 image");
    let elf = xtask::module_for("kv-v4", bundle::Target::Aarch64Sel4).expect("kv-v4 for seL4");
    let dir = std::env::temp_dir().join(format!("qemu-umctl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bundle = dir.join("kv-v4.bundle");
    xtask::keys::sign(&xtask::workspace_root().join("keys/dev.key"), bundle::Target::Aarch64Sel4, &elf, &bundle)
        .unwrap();
    let socket = dir.join("serial.sock");
    let _qemu = Qemu(
        xtask::sel4::qemu_with_serial(&image.loader, &format!("unix:{},server=on,wait=off", socket.display()))
            .args(xtask::sel4::GUEST_CLOCK)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("qemu"),
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    while !socket.exists() || umctl(&umctl_bin, &socket, &["version"]).status.code() != Some(0) {
        assert!(Instant::now() < deadline, "the seL4 system's console never answered");
        std::thread::sleep(Duration::from_millis(500));
    }
    let t = Instant::now();
    let up = umctl(&umctl_bin, &socket, &["upload", bundle.to_str().unwrap()]);
    assert_eq!(up.status.code(), Some(0), "{}", text(&up));
    assert!(text(&up).contains("admitted kv-v4 (kv v4, schema 2"), "{}", text(&up));
    let _ = writeln!(std::io::stderr(), "seL4: kv-v4 bundle uploaded and verified in {:.1?}", t.elapsed());
    let upd = umctl(&umctl_bin, &socket, &["update", "kv", "kv-v4"]);
    assert_eq!(upd.status.code(), Some(0), "{}", text(&upd));
    assert!(text(&upd).contains("done: kv0 runs kv-v4 (v4, schema 2)"), "{}", text(&upd));
    std::thread::sleep(Duration::from_millis(500));
    let status = text(&umctl(&umctl_bin, &socket, &["status"]));
    let clients: Vec<&str> = status.lines().filter(|l| l.starts_with("client")).collect();
    assert_eq!(clients.len(), 4, "{status}");
    for c in clients {
        assert!(c.contains("wrong=0") && c.contains("failed=0"), "{c}");
    }
    // A bundle for the other target is refused, and nothing changes.
    let host_bundle = dir.join("kv-v4-host.bundle");
    let host_so = xtask::module_for("kv-v4", bundle::Target::Host).unwrap();
    xtask::keys::sign(&xtask::workspace_root().join("keys/dev.key"), bundle::Target::Host, &host_so, &host_bundle)
        .unwrap();
    let wrong = umctl(&umctl_bin, &socket, &["upload", host_bundle.to_str().unwrap()]);
    assert_eq!(wrong.status.code(), Some(1), "{}", text(&wrong));
    assert!(text(&wrong).contains("built for host, this system is aarch64-sel4"), "{}", text(&wrong));
}
