//! `cargo xtask`'s command line: a mistyped flag or command is an error
//! (exit code 2, naming it), not silently ignored.
use std::process::{Command, Output};

fn xtask(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask")).args(args).output().expect("xtask runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn an_unknown_flag_is_an_error_naming_it() {
    let o = xtask(&["check", "system.xml", "--serch-path", "x"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("'--serch-path'"), "{}", stderr(&o));
    // Formerly ignored anywhere: a flag of another command.
    let o = xtask(&["build", "--bench"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("'--bench'"), "{}", stderr(&o));
}

#[test]
fn an_unknown_command_or_bad_value_is_an_error() {
    let o = xtask(&["frobnicate"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("'frobnicate'"), "{}", stderr(&o));
    let o = xtask(&["run", "--console", "tcp:1234"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("expected unix:PATH, pty or pty:LINK"), "{}", stderr(&o));
    let o = xtask(&["sign", "--key", "k.key", "--target", "riscv", "image", "-o", "b"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("unknown target 'riscv'"), "{}", stderr(&o));
    // No command at all: the usage, and the same exit code.
    let o = xtask(&[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("Usage: cargo xtask <COMMAND>"), "{}", stderr(&o));
}

#[test]
fn commands_still_work() {
    let root = xtask::workspace_root();
    let o = xtask(&["check", root.join("tests/systems/does-not-exist.xml").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "a failed check is exit code 1, as before");
    let o = xtask(&["pubkey", root.join("keys/dev.key").to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), std::fs::read_to_string(root.join("keys/dev.pub")).unwrap());
    let o = xtask(&["help", "sign"]);
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("--package <PKG>"));
}

#[test]
fn qemu_refuses_a_missing_disk_image_before_building() {
    let o = xtask(&["qemu", "tests/systems/blk-virtio.xml", "--disk", "/nonexistent/disk.img"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("disk image /nonexistent/disk.img: no such file"), "{}", stderr(&o));
}

#[test]
fn qemu_gets_the_disk_as_a_modern_virtio_blk_device() {
    let args: Vec<String> = xtask::sel4::disk_args(std::path::Path::new("/tmp/d.img"))
        .into_iter()
        .map(|a| a.into_string().unwrap())
        .collect();
    assert_eq!(
        args,
        [
            "-global",
            "virtio-mmio.force-legacy=false",
            "-drive",
            "file=/tmp/d.img,if=none,format=raw,id=hd0",
            "-device",
            "virtio-blk-device,drive=hd0"
        ]
    );
    let root = xtask::workspace_root();
    assert!(xtask::sel4::needs_disk(&root.join("tests/systems/blk-virtio.xml")));
    assert!(xtask::sel4::needs_disk(&root.join("tests/systems/fs-sel4.xml")));
    assert!(!xtask::sel4::needs_disk(&root.join("system.xml")));
}
