//! The README's "Write your own service module", followed from a temporary
//! directory outside the workspace: the crate is copied out of the README,
//! built and signed with `cargo xtask module build`, uploaded with `umctl`
//! to the running host system, updated to under the clients' load (they
//! check every reply), checked, and rolled back. Where a Microkit SDK and
//! QEMU are present, the same crate is built for seL4 and goes through the
//! same steps in QEMU; without them that test says it is skipped.
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const SECTION: &str = "## Write your own service module";
const FILES: [(&str, &str); 2] = [("# my-kv/Cargo.toml", "Cargo.toml"), ("// my-kv/src/lib.rs", "src/lib.rs")];

/// The guide's section of the README.
fn guide() -> String {
    let readme = std::fs::read_to_string(xtask::workspace_root().join("README.md")).unwrap();
    let start = readme.find(SECTION).expect("the README has the guide");
    let rest = &readme[start + SECTION.len()..];
    rest[..rest.find("\n## ").unwrap_or(rest.len())].to_owned()
}

/// The code block of the guide that starts with `marker`, as the reader
/// copies it (the marker line included).
fn guide_file(guide: &str, marker: &str) -> String {
    let start = guide.find(&format!("\n{marker}\n")).unwrap_or_else(|| panic!("no block '{marker}'")) + 1;
    let len = guide[start..].find("```").expect("the block ends");
    guide[start..start + len].to_owned()
}

/// A fresh directory outside the workspace.
fn scratch(what: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("oot-{what}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    assert!(
        !d.canonicalize().unwrap().starts_with(xtask::workspace_root()),
        "{} is outside the workspace",
        d.display()
    );
    d
}

/// Writes the guide's crate into `dir/my-kv`, with the framework's real
/// path for the placeholder.
fn write_guide_crate(dir: &Path) -> PathBuf {
    let g = guide();
    let root = xtask::workspace_root();
    let krate = dir.join("my-kv");
    for (marker, file) in FILES {
        let text = guide_file(&g, marker).replace("/path/to/framework", root.to_str().unwrap());
        let path = krate.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    krate
}

fn xtask(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask")).current_dir(dir).args(args).output().expect("xtask runs")
}

fn umctl(bin: &Path, socket: &Path, args: &[&str]) -> Output {
    Command::new(bin).arg("--connect").arg(format!("unix:{}", socket.display())).args(args).output().expect("umctl")
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
}

/// Runs a umctl command that must succeed and print `expect`.
fn ok(bin: &Path, socket: &Path, args: &[&str], expect: &str) -> String {
    let o = umctl(bin, socket, args);
    assert_eq!(o.status.code(), Some(0), "umctl {args:?}: {}", text(&o));
    assert!(text(&o).contains(expect), "umctl {args:?}: expected '{expect}' in {}", text(&o));
    text(&o)
}

/// (live kv versions, clients' verified counts) from a `status` table;
/// asserts that every client is clean.
fn check_status(status: &str) -> (Vec<String>, Vec<u64>) {
    let rows: Vec<Vec<&str>> = status.lines().map(|l| l.split_whitespace().collect()).collect();
    let live = rows.iter().filter(|c| c.len() > 4 && c[1] == "kv" && c[4] == "live").map(|c| c[2].to_owned()).collect();
    let clients: Vec<&Vec<&str>> = rows.iter().filter(|c| c.first().is_some_and(|p| p.starts_with("client"))).collect();
    assert_eq!(clients.len(), 4, "{status}");
    let field = |c: &[&str], k: &str| c.iter().find_map(|f| f.strip_prefix(k)?.parse::<u64>().ok());
    for c in &clients {
        assert_eq!((field(c, "wrong="), field(c, "failed=")), (Some(0), Some(0)), "no reply wrong or lost: {c:?}");
    }
    (live, clients.iter().map(|c| field(c, "verified=").unwrap_or(0)).collect())
}

/// Waits (bounded) until `path` holds `n` lines containing `needle`.
fn wait_for_log(path: &Path, needle: &str, n: usize, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let log = std::fs::read_to_string(path).unwrap_or_default();
        if log.lines().filter(|l| l.contains(needle)).count() >= n {
            return;
        }
        assert!(Instant::now() < deadline, "no {n} line(s) '{needle}' within {secs} s; the log:\n{log}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

struct Child(std::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_guides_module_goes_live_on_the_host_and_rolls_back() {
    let dir = scratch("guide-host");
    let krate = write_guide_crate(&dir);
    // The cost the README states is what the reader writes.
    let g = guide();
    let lines: Vec<usize> = FILES.iter().map(|(m, _)| guide_file(&g, m).lines().count()).collect();
    let claim = format!(
        "2 new files, {} lines (`Cargo.toml`\n{}, `src/lib.rs` {},",
        lines.iter().sum::<usize>(),
        lines[0],
        lines[1]
    );
    assert!(g.contains(&claim), "the README's count is off: expected '{claim}'");

    // Run from the crate's directory, as a reader in that shell would
    // (the command is the same from anywhere).
    let b = xtask(&krate, &["module", "build", ".", "--target", "host", "-o", "../kv-v5.bundle"]);
    assert!(b.status.success(), "{}", text(&b));
    assert!(text(&b).contains("built kv-v5 (kv v5, schema 2) for host"), "{}", text(&b));
    let bundle = dir.join("kv-v5.bundle");
    assert!(bundle.is_file());

    let image_dir = xtask::build_host(false).expect("the host image");
    let umctl_bin = image_dir.parent().unwrap().join("umctl");
    let socket = dir.join("upd.sock");
    let log = dir.join("upd.log");
    let rt = Child(
        Command::new(image_dir.parent().unwrap().join("host-runtime"))
            .arg(xtask::workspace_root().join("system.xml"))
            .arg("--search-path")
            .arg(&image_dir)
            .arg("--console")
            .arg(format!("unix:{}", socket.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("host-runtime"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while umctl(&umctl_bin, &socket, &["version"]).status.code() != Some(0) {
        assert!(Instant::now() < deadline, "the console socket never answered");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
    // The changed behaviour, checked between the update and the rollback.
    let check_behaviour = |_: &str| {
        wait_for_log(&log, "] kv v5: state taken over", 2, 10);
        wait_for_log(&log, "] kv v5: another 10000 calls served", 1, 60);
    };
    update_and_roll_back(&umctl_bin, &socket, &bundle, check_behaviour);
    drop(rt);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The guide's update on a running system reached at `socket`: upload,
/// probation, update, status (v5 live, clients clean), `while_live` (given
/// what `update` printed),
/// rollback (v1 live, clients clean and still served).
fn update_and_roll_back(umctl_bin: &Path, socket: &Path, bundle: &Path, while_live: impl FnOnce(&str)) {
    let before = check_status(&ok(umctl_bin, socket, &["status"], "PD ")).1;
    ok(umctl_bin, socket, &["upload", bundle.to_str().unwrap()], "admitted kv-v5 (kv v5, schema 2");
    ok(umctl_bin, socket, &["probation", "60000"], "60000 ms");
    let upd = ok(umctl_bin, socket, &["update", "kv", "kv-v5"], "done: kv0 runs kv-v5 (v5, schema 2)");
    assert!(upd.contains("kv1 runs kv-v5 (v5, schema 2)"), "{upd}");
    let (live, _) = check_status(&ok(umctl_bin, socket, &["status"], "PD "));
    assert_eq!(live, ["5", "5"], "both kv instances run the out-of-tree version");
    while_live(&upd);
    ok(umctl_bin, socket, &["rollback", "kv"], "");
    let (live, after) = check_status(&ok(umctl_bin, socket, &["status"], "PD "));
    assert_eq!(live, ["1", "1"], "rolled back to kv-v1");
    for (b, a) in before.iter().zip(&after) {
        assert!(a > b, "every client kept being served: {before:?} -> {after:?}");
    }
}

#[test]
fn module_build_refuses_what_is_not_a_module_saying_why() {
    let dir = scratch("refusals");
    let run = |args: &[&str]| {
        let o = xtask(&dir, args);
        (o.status.code(), text(&o))
    };
    let (code, out) = run(&["module", "build", ".", "--target", "host"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("not a crate (no Cargo.toml)"), "{out}");
    let (code, out) = run(&["module", "build", ".", "--target", "riscv"]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("unknown target 'riscv' (host or aarch64-sel4)"), "{out}");
    let (code, out) = run(&["module", "build", ".", "--target", "host", "--system", "system.xml"]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("--system applies to --target aarch64-sel4 only"), "{out}");
    // seL4 needs slot addresses, from a system description that has slots.
    std::fs::create_dir_all(dir.join("empty")).unwrap();
    std::fs::write(dir.join("empty/Cargo.toml"), "").unwrap();
    let (code, out) = run(&["module", "build", "empty", "--target", "aarch64-sel4", "--system", "none.xml"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("none.xml: No such file"), "{out}");
    std::fs::remove_dir_all(dir.join("empty")).unwrap();
    // A library that compiles but exports no module.
    std::fs::create_dir_all(dir.join("plain/src")).unwrap();
    std::fs::write(
        dir.join("plain/Cargo.toml"),
        "[package]\nname = \"plain\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n",
    )
    .unwrap();
    std::fs::write(dir.join("plain/src/lib.rs"), "pub fn answer() -> u32 {\n    42\n}\n").unwrap();
    let (code, out) = run(&["module", "build", "plain", "--target", "host"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("exports no UPD_MODULE_DESCRIPTOR: not a service module"), "{out}");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "nothing signed: only the crate is there");
    let _ = std::fs::remove_dir_all(&dir);
}

/// One crate, two module versions: `--features` selects the version the
/// bundle holds, and `--no-default-features` turns the crate's default off.
#[test]
fn module_build_takes_the_crates_features() {
    let dir = scratch("features");
    let krate = write_guide_crate(&dir);
    let manifest = std::fs::read_to_string(krate.join("Cargo.toml")).unwrap();
    let manifest = manifest.replace("[workspace]", "[features]\ndefault = [\"v6\"]\nv6 = []\nv7 = []\n\n[workspace]");
    std::fs::write(krate.join("Cargo.toml"), manifest).unwrap();
    let lib = std::fs::read_to_string(krate.join("src/lib.rs")).unwrap();
    let versions = "#[cfg(not(any(feature = \"v6\", feature = \"v7\")))]\ntype Store = KvHashed<5, true>;\n\
                    #[cfg(all(feature = \"v6\", not(feature = \"v7\")))]\ntype Store = KvHashed<6, true>;\n\
                    #[cfg(feature = \"v7\")]\ntype Store = KvHashed<7, true>;";
    let lib = lib.replace("type Store = KvHashed<5, true>; // module version 5, with v3's List fix", versions);
    assert!(lib.contains("KvHashed<7, true>"), "the guide's Store line changed: adapt this test");
    std::fs::write(krate.join("src/lib.rs"), lib).unwrap();
    let path = krate.to_str().unwrap();
    for (flags, version) in
        [(&[][..], "kv-v6"), (&["--features", "v7"][..], "kv-v7"), (&["--no-default-features"][..], "kv-v5")]
    {
        let out = dir.join(format!("{version}.bundle"));
        let args = [&["module", "build", path, "--target", "host", "-o", out.to_str().unwrap()][..], flags].concat();
        let b = xtask(&dir, &args);
        assert!(b.status.success(), "{flags:?}: {}", text(&b));
        assert!(text(&b).contains(&format!("built {version} (kv ")), "{flags:?}: {}", text(&b));
        assert!(out.exists(), "{flags:?}: the bundle is written");
    }
    let b = xtask(&dir, &["module", "build", path, "--target", "host", "--features", "v9"]);
    assert_eq!(b.status.code(), Some(1), "an unknown feature is cargo's error: {}", text(&b));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_guides_module_goes_live_on_sel4_in_qemu_and_rolls_back() {
    if let Err(e) = xtask::sel4::qemu_ready() {
        let _ = writeln!(std::io::stderr(), "\nSKIPPED out-of-tree QEMU test: {e}\n");
        return;
    }
    let dir = scratch("guide-sel4");
    let krate = write_guide_crate(&dir);
    let bundle = dir.join("kv-v5-sel4.bundle");
    let b = xtask(
        &dir,
        &["module", "build", krate.to_str().unwrap(), "--target", "aarch64-sel4", "-o", bundle.to_str().unwrap()],
    );
    assert!(b.status.success(), "{}", text(&b));
    assert!(text(&b).contains("built kv-v5 (kv v5, schema 2) for aarch64-sel4"), "{}", text(&b));

    let host = xtask::build_host(false).expect("host build (umctl)");
    let umctl_bin = host.parent().unwrap().join("umctl");
    let image = xtask::sel4::build_image(&xtask::workspace_root().join("system.xml")).expect("seL4 image");
    let socket = dir.join("serial.sock");
    let qemu = Child(
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
    std::thread::sleep(Duration::from_millis(500));
    // The PDs' log lines share the serial line with the console here, so
    // umctl shows the ones logged while it is connected: the takeover.
    update_and_roll_back(&umctl_bin, &socket, &bundle, |upd| {
        for kv in ["kv0_b", "kv1_b"] {
            assert!(upd.contains(&format!("{kv}: kv v5: state taken over")), "{upd}");
        }
    });
    // The host build of the same crate is refused here, and nothing changes.
    let host_bundle = dir.join("kv-v5-host.bundle");
    let b = xtask(&dir, &["module", "build", krate.to_str().unwrap(), "--target", "host", "-o", "kv-v5-host.bundle"]);
    assert!(b.status.success(), "{}", text(&b));
    let wrong = umctl(&umctl_bin, &socket, &["upload", host_bundle.to_str().unwrap()]);
    assert_eq!(wrong.status.code(), Some(1), "{}", text(&wrong));
    assert!(text(&wrong).contains("built for host, this system is aarch64-sel4"), "{}", text(&wrong));
    check_status(&ok(&umctl_bin, &socket, &["status"], "PD "));
    drop(qemu);
    let _ = std::fs::remove_dir_all(&dir);
}
