//! The build of the system, shared by `cargo xtask` and the tests: what the
//! programs and modules are, how the host image directory is assembled, and
//! how a system description is checked.
use std::path::{Path, PathBuf};
use std::process::Command;

pub mod cheader;
pub mod cmodule;
pub mod fs_image;
pub mod keys;
pub mod module;
pub mod sel4;
pub mod system;

/// A service module image bundled into the image store.
pub struct ModuleImage {
    /// The name the manager knows it by.
    pub image: &'static str,
    /// What builds it.
    pub source: Source,
    /// Only in the test store (`test-images.bin`): deliberately faulty.
    pub test_only: bool,
}

/// Where a module comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A Cargo package (a Rust module).
    Crate(&'static str),
    /// A directory of C sources (a C module, see [`cmodule`]).
    C(&'static str),
}

/// The C module built as `name` (its image name), if there is one.
pub fn c_module_dir(name: &str) -> Option<&'static str> {
    modules().iter().find_map(|m| match m.source {
        Source::C(dir) if m.image == name => Some(dir),
        _ => None,
    })
}

/// The workspace's description (`services.toml`, built in).
pub fn description() -> &'static system::Description {
    static D: std::sync::OnceLock<system::Description> = std::sync::OnceLock::new();
    D.get_or_init(|| system::parse(system::BUILTIN).unwrap_or_else(|e| panic!("{e}")))
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_owned().into_boxed_str())
}

/// Every module image, from `services.toml`: `images.bin` holds the
/// production ones, `test-images.bin` all of them.
pub fn modules() -> &'static [ModuleImage] {
    static M: std::sync::OnceLock<Vec<ModuleImage>> = std::sync::OnceLock::new();
    M.get_or_init(|| {
        let images = description().services.iter().flat_map(|s| &s.images);
        images
            .map(|i| match i {
                system::ImageSpec::Crate(p) => {
                    ModuleImage { image: leak(p), source: Source::Crate(leak(p)), test_only: false }
                }
                system::ImageSpec::Detailed { image, c, test } => ModuleImage {
                    image: leak(image),
                    source: match c {
                        Some(dir) => Source::C(leak(dir)),
                        None => Source::Crate(leak(image)),
                    },
                    test_only: *test,
                },
            })
            .collect()
    })
}

/// The image store files: (file name, whether test-only images are in it).
pub const STORES: &[(&str, bool)] = &[("images.bin", false), ("test-images.bin", true)];

/// The framework's program images named in system.xml, and the host
/// binaries that are them (the client programs come from services.toml:
/// [`programs`]).
pub const FIXED_PROGRAMS: &[(&str, &str)] = &[
    ("domain_shell.elf", "domain_shell"),
    ("update_manager.elf", "update_manager"),
    ("uart_driver.elf", "uart_driver"),
];

/// Program images on both backends: the fixed ones, and every client
/// program of services.toml (`P` is `P.elf` and the binary `P`).
pub fn programs() -> &'static [(&'static str, &'static str)] {
    static P: std::sync::OnceLock<Vec<(&'static str, &'static str)>> = std::sync::OnceLock::new();
    P.get_or_init(|| {
        let mut v = FIXED_PROGRAMS.to_vec();
        v.extend_from_slice(TEST_PROGRAMS);
        for c in &description().clients {
            let elf = format!("{}.elf", c.program);
            if !v.iter().any(|(e, _)| *e == elf) {
                v.push((leak(&elf), leak(&c.program)));
            }
        }
        v
    })
}

/// Client programs on both backends that only test systems use: blob's
/// (tests/systems/blob-writer.xml).
pub const TEST_PROGRAMS: &[(&str, &str)] = &[("blob_client.elf", "blob_client")];

/// Programs that exist on seL4 only (build/sel4): the virtio-blk driver
/// and the block device's test client (tests/systems/blk-virtio.xml), and
/// the file service's client (tests/systems/fs-sel4.xml; on the host it
/// is pds/checking-clients' `fs_client`).
pub const SEL4_ONLY_PROGRAMS: &[(&str, &str)] = &[
    ("virtio_blk_driver.elf", "virtio_blk_driver"),
    ("blk_test_client.elf", "blk_test_client"),
    ("fs_client.elf", "fs_client"),
];

/// Programs that exist on the host only: the update benchmarks' PDs
/// (tests/src/bin/bench_pd.rs), the block driver on a disk image file (on
/// seL4 it is `virtio_blk_driver.elf`) and the file service's client (on
/// seL4 built from build/sel4/fs_client, under the same image name).
pub const HOST_ONLY_PROGRAMS: &[(&str, &str)] =
    &[("bench_pd.elf", "bench_pd"), ("blk_driver.elf", "blk_driver"), ("fs_client.elf", "fs_client")];

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("workspace root")
}

pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("target"))
}

pub(crate) fn cargo() -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(workspace_root());
    c
}

/// The profile every module is built with (`[profile.module]` in the
/// workspace's Cargo.toml), whatever the rest is built with.
pub const MODULE_PROFILE: &str = "module";

/// The host shared object a module package builds to in `dir`.
pub fn module_path(dir: &Path, package: &str) -> PathBuf {
    dir.join(format!("lib{}.so", package.replace('-', "_")))
}

/// Where the module profile's host outputs are.
fn module_dir() -> PathBuf {
    target_dir().join(MODULE_PROFILE)
}

/// The `[profile.module]` settings of the workspace's Cargo.toml, as
/// `--config profile.module.KEY=VALUE` arguments: what a crate outside the
/// workspace is built with, so that it gets the same profile.
pub fn module_profile_config() -> Result<Vec<String>, String> {
    let path = workspace_root().join("Cargo.toml");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let header = format!("[profile.{MODULE_PROFILE}]");
    let body = text
        .split_once(&format!("\n{header}\n"))
        .map(|(_, rest)| rest)
        .ok_or_else(|| format!("{}: no {header}", path.display()))?;
    let mut out = Vec::new();
    for line in body.lines().map(str::trim).take_while(|l| !l.starts_with('[')) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line.split_once('=').ok_or_else(|| format!("{}: {header}: '{line}'", path.display()))?;
        out.push("--config".to_owned());
        out.push(format!("profile.{MODULE_PROFILE}.{}={}", key.trim(), value.trim()));
    }
    Ok(out)
}

/// Builds module packages with the module profile for the host.
fn cargo_build_modules<'a>(packages: impl IntoIterator<Item = &'a str>) -> Result<(), String> {
    let mut c = cargo();
    c.args(["build", "--quiet", "--profile", MODULE_PROFILE]);
    for p in packages {
        c.args(["-p", p]);
    }
    let status = c.status().map_err(|e| format!("running cargo: {e}"))?;
    if !status.success() {
        return Err("building the modules failed".into());
    }
    Ok(())
}

/// Builds every host program and module, and assembles
/// `target/<profile>/host-image/`: the program images under the names
/// system.xml uses, and `images.bin`, the image store. Returns that
/// directory, the search path for the host runtime.
pub fn build_host(release: bool) -> Result<PathBuf, String> {
    let mut c = cargo();
    c.args(["build", "--workspace", "--exclude", "xtask"]);
    if release {
        c.arg("--release");
    }
    let status = c.status().map_err(|e| format!("running cargo: {e}"))?;
    if !status.success() {
        return Err("cargo build failed".into());
    }
    let profile_dir = target_dir().join(if release { "release" } else { "debug" });
    let out = profile_dir.join("host-image");
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    for (elf, bin) in programs().iter().chain(HOST_ONLY_PROGRAMS) {
        let dst = out.join(elf);
        let _ = std::fs::remove_file(&dst);
        std::os::unix::fs::symlink(profile_dir.join(bin), &dst).map_err(|e| format!("{}: {e}", dst.display()))?;
    }
    cargo_build_modules(modules().iter().filter_map(|m| match m.source {
        Source::Crate(package) => Some(package),
        Source::C(_) => None,
    }))?;
    let mut images = Vec::new();
    for m in modules() {
        let p = match m.source {
            Source::Crate(package) => module_path(&module_dir(), package),
            Source::C(dir) => cmodule::build_host(dir, m.image, &profile_dir.join("c-modules"))?,
        };
        images.push((m, std::fs::read(&p).map_err(|e| format!("module {}: {}: {e}", m.image, p.display()))?));
    }
    // Each module also as a file of its own, for systems that prefill a
    // region with one (the benchmarks' shell-less kv PD).
    for (m, bytes) in &images {
        let p = out.join(format!("{}.so", m.image));
        std::fs::write(&p, bytes).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    for &(file, with_tests) in STORES {
        let chosen: Vec<(&str, Vec<u8>)> =
            images.iter().filter(|(m, _)| with_tests || !m.test_only).map(|(m, b)| (m.image, b.clone())).collect();
        write_store(&out.join(file), &chosen)?;
    }
    Ok(out)
}

/// Writes an image store file holding `images`.
pub fn write_store(path: &Path, images: &[(&str, Vec<u8>)]) -> Result<(), String> {
    let refs: Vec<(&str, &[u8])> = images.iter().map(|(n, b)| (*n, b.as_slice())).collect();
    let mut buf = vec![0u8; interfaces::store::store_size(refs.iter().map(|(_, b)| b.len()))];
    let n = interfaces::store::build_store(&refs, &mut buf).ok_or("image name too long for the store")?;
    std::fs::write(path, &buf[..n]).map_err(|e| format!("{}: {e}", path.display()))
}

/// Checks a system description as the microkit tool would, with `search`
/// paths for program images and prefill files, and the naming conventions
/// (`sdf::topology::check`: both slots of an instance name one type).
pub fn check(path: &Path, search: &[PathBuf]) -> Result<(), String> {
    let xml = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut sys = sdf::parse(&xml).map_err(|e| format!("{}: {e}", path.display()))?;
    sdf::check_files(&mut sys, search).map_err(|e| format!("{}: {e}", path.display()))?;
    sys.check().map_err(|e| format!("{}: {e}", path.display()))?;
    sdf::topology::check(&sys).map_err(|e| format!("{}: {e}", path.display()))
}

/// Builds module package `package` (or the C module of that image name)
/// for `target` and returns the image's path (host: the shared object;
/// seL4: an ELF linked to system.xml's slot addresses).
pub fn module_for(package: &str, target: bundle::Target) -> Result<PathBuf, String> {
    match target {
        bundle::Target::Host => {
            build_module(package)?;
            Ok(host_module_path(package))
        }
        bundle::Target::Aarch64Sel4 => {
            let out = target_dir().join("sel4-image").join("shipped");
            sel4::build_module_elf(package, package, &workspace_root().join("system.xml"), &out)
        }
    }
}

/// Where [`build_module`] puts the host image of `package`.
fn host_module_path(package: &str) -> PathBuf {
    let debug = target_dir().join("debug");
    match c_module_dir(package) {
        Some(_) => module_path(&debug.join("c-modules"), package),
        None => module_path(&module_dir(), package),
    }
}

/// Builds one module package (or C module, by image name) for the host and
/// returns its image bytes (for tests that load real modules).
pub fn build_module(package: &str) -> Result<Vec<u8>, String> {
    if let Some(dir) = c_module_dir(package) {
        let p = cmodule::build_host(dir, package, &target_dir().join("debug").join("c-modules"))?;
        return std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()));
    }
    cargo_build_modules([package]).map_err(|e| format!("{e}: {package}"))?;
    let p = module_path(&module_dir(), package);
    std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))
}

/// Blocks (512 bytes) of a fresh disk image: 300 MiB (a sparse file), so
/// that FAT32 has the 65,525 clusters it needs with 4 KiB clusters.
pub const DISK_BLOCKS: u64 = 614_400;

/// Finds a dosfstools program (`mkfs.fat`, `fsck.fat`): on the PATH, or in
/// the sbin directories a non-root PATH often lacks.
pub fn dosfstools(program: &str) -> Result<PathBuf, String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .ok_or_else(|| format!("{program} not found: install dosfstools (apt-get install dosfstools)"))
}

/// Makes a fresh FAT32 disk image at `path` with Debian's `mkfs.fat`.
///
/// - `--mbr=y`: a partition table whose one partition spans the disk (the
///   FAT crate mounts partition 0; `fsck.fat` checks the whole file);
/// - `-f 1`: one FAT: releases of embedded-sdmmc before 0.8 write only the
///   first copy, and two that differ are an error to `fsck.fat`;
/// - `-s 8`: 4 KiB clusters: no release can grow a FAT32 root directory
///   past its first cluster (they answer "not enough space"), and one
///   cluster of 512 bytes holds only 16 entries;
/// - the FSInfo free-cluster count is then set to "unknown" (0xFFFFFFFF,
///   as the FAT specification allows): no release counts the clusters a
///   truncation frees, so a count it kept would be wrong, and an unknown
///   one is never written.
pub fn make_disk_image(path: &Path) -> Result<(), String> {
    use std::io::{Read, Seek, SeekFrom, Write};
    let _ = std::fs::remove_file(path);
    let out = Command::new(dosfstools("mkfs.fat")?)
        .args(["-C", "-F", "32", "-f", "1", "-s", "8", "--mbr=y", "-n", "UPDFS"])
        .arg(path)
        .arg((DISK_BLOCKS / 2).to_string())
        .output()
        .map_err(|e| format!("running mkfs.fat: {e}"))?;
    if !out.status.success() {
        return Err(format!("mkfs.fat failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let mut f = std::fs::OpenOptions::new().read(true).write(true).open(path).map_err(|e| e.to_string())?;
    let mut boot = [0u8; 512];
    f.read_exact(&mut boot).map_err(|e| e.to_string())?;
    let info = u16::from_le_bytes([boot[48], boot[49]]) as u64;
    if info == 0 || info == 0xffff {
        return Err("mkfs.fat wrote no FSInfo sector".into());
    }
    f.seek(SeekFrom::Start(info * 512 + 488)).map_err(|e| e.to_string())?;
    f.write_all(&[0xff; 4]).map_err(|e| e.to_string())
}
