//! `cargo xtask`: the image build, Hubris style.
use clap::{CommandFactory, Parser, Subcommand};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::exit;

/// Builds, checks, signs and boots the system (host runtime or QEMU).
#[derive(Parser)]
#[command(name = "xtask", bin_name = "cargo xtask", arg_required_else_help = true)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build the host programs, modules and image store.
    Build {
        #[arg(long)]
        release: bool,
    },
    /// Build, then boot SYSTEM.xml on the host runtime; the console on the
    /// terminal, or on a socket or a pseudo-terminal for umctl.
    Run {
        /// The system description (default: the workspace's system.xml).
        system: Option<PathBuf>,
        #[arg(long)]
        release: bool,
        /// unix:PATH (a socket), pty (a pseudo-terminal; the runtime logs its
        /// path) or pty:LINK (and a symlink to it at LINK).
        #[arg(long, value_name = "unix:PATH|pty[:LINK]", value_parser = host_console)]
        console: Option<String>,
        /// The disk image the block driver serves (for a system with one,
        /// e.g. tests/systems/fs.xml). Default: a fresh FAT32 image made
        /// with mkfs.fat at <target>/disk.img.
        #[arg(long, value_name = "PATH")]
        disk: Option<PathBuf>,
    },
    /// Write system.xml from services.toml, where the system is declared
    /// (README: 'Adding a new service type').
    System {
        /// Only check that system.xml is what services.toml generates
        /// (exit code 1 if not).
        #[arg(long)]
        check: bool,
    },
    /// Check a system description; prints 'ok' or the first error.
    Check {
        path: PathBuf,
        /// Where program images and prefill files are found.
        #[arg(long = "search-path", value_name = "DIR")]
        search_path: Vec<PathBuf>,
    },
    /// Regenerate the C headers of the module ABI and the kv wire format
    /// (interfaces/include/) from their Rust definitions.
    CHeader,
    /// Make an ed25519 key pair: STEM.key (secret) and STEM.pub.
    Keygen { stem: PathBuf },
    /// Print the public key of a secret key (the contents of its .pub).
    Pubkey {
        #[arg(value_name = "K.key")]
        key: PathBuf,
    },
    /// Sign a module image into an update bundle.
    Sign {
        #[arg(long, value_name = "K.key")]
        key: PathBuf,
        /// host or aarch64-sel4.
        #[arg(long, default_value = "host", value_parser = target)]
        target: bundle::Target,
        /// The module image to sign.
        #[arg(required_unless_present = "package", conflicts_with = "package")]
        image: Option<PathBuf>,
        /// Build this module package for the target first, and sign that.
        #[arg(long, value_name = "PKG")]
        package: Option<String>,
        /// The bundle to write.
        #[arg(short, long, value_name = "BUNDLE")]
        out: PathBuf,
    },
    /// Service modules from outside the workspace (README: 'Write your own
    /// service module').
    Module {
        #[command(subcommand)]
        command: ModuleCmd,
    },
    /// Build the seL4 image (needs MICROKIT_SDK, Microkit 2.3.0) and boot it in QEMU.
    Qemu {
        /// The system description (default: the workspace's system.xml).
        system: Option<PathBuf>,
        /// Boot SYSTEM.xml with this image store (test-images.bin: the test-only modules too).
        #[arg(long, value_name = "FILE")]
        store: Option<String>,
        /// The serial port on unix:PATH (a socket) or pty (a pseudo-terminal,
        /// whose path QEMU prints), for umctl.
        #[arg(long, value_name = "unix:PATH|pty", value_parser = qemu_console)]
        console: Option<String>,
        /// Print the loader image's path instead of booting it.
        #[arg(long)]
        build_only: bool,
        /// Time protected calls in the client first.
        #[arg(long)]
        bench: bool,
        /// The disk image the virtio-blk driver serves (for a system with
        /// one, e.g. tests/systems/blk-virtio.xml), given to QEMU as a
        /// virtio-blk device. Default: a fresh FAT32 image made with
        /// mkfs.fat at <target>/disk-sel4.img.
        #[arg(long, value_name = "PATH")]
        disk: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ModuleCmd {
    /// Build the module crate at PATH (any directory) for a target and sign
    /// it into an upload bundle for umctl.
    Build {
        /// The crate's directory (or its Cargo.toml).
        path: PathBuf,
        /// host (a shared object for the host runtime) or aarch64-sel4 (an
        /// ELF linked to the slot addresses of --system).
        #[arg(long, value_parser = target)]
        target: bundle::Target,
        /// The system description whose slot addresses an aarch64-sel4
        /// module is linked to (default: the workspace's system.xml).
        #[arg(long, value_name = "SYSTEM.xml")]
        system: Option<PathBuf>,
        /// The signing key (default: the development key keys/dev.key,
        /// which the manager trusts unless built with UPD_TRUSTED_KEYS).
        #[arg(long, value_name = "K.key")]
        key: Option<PathBuf>,
        /// The bundle to write (default: SERVICE-vVERSION.bundle here).
        #[arg(short, long, value_name = "BUNDLE")]
        out: Option<PathBuf>,
        /// The crate's features to build with (comma-separated, as cargo
        /// takes them): one crate, several module versions.
        #[arg(short = 'F', long, value_name = "FEATURES")]
        features: Option<String>,
        /// Build without the crate's default features.
        #[arg(long)]
        no_default_features: bool,
    },
}

fn target(s: &str) -> Result<bundle::Target, String> {
    bundle::Target::parse(s).ok_or_else(|| format!("unknown target '{s}' (host or aarch64-sel4)"))
}

fn host_console(s: &str) -> Result<String, String> {
    match s.split_once(':') {
        Some(("unix" | "pty", rest)) if !rest.is_empty() => Ok(s.to_owned()),
        None if s == "pty" => Ok(s.to_owned()),
        _ => Err("expected unix:PATH, pty or pty:LINK".into()),
    }
}

fn qemu_console(s: &str) -> Result<String, String> {
    match s.strip_prefix("unix:") {
        Some(path) if !path.is_empty() => Ok(s.to_owned()),
        _ if s == "pty" => Ok(s.to_owned()),
        _ => Err("expected unix:PATH or pty".into()),
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("error: {msg}");
    exit(1)
}

fn main() {
    match Cli::parse().command {
        Cmd::Build { release } => match xtask::build_host(release) {
            Ok(dir) => eprintln!("host image: {}", dir.display()),
            Err(e) => fail(&e),
        },
        Cmd::Run { system, release, console, disk } => {
            let system = system.unwrap_or_else(|| xtask::workspace_root().join("system.xml"));
            let dir = xtask::build_host(release).unwrap_or_else(|e| fail(&e));
            let runtime = dir.parent().expect("profile dir").join("host-runtime");
            let mut cmd = std::process::Command::new(runtime);
            cmd.arg(&system).arg("--search-path").arg(&dir);
            if let Some(c) = &console {
                cmd.args(["--console", c]);
            }
            let uses_disk = std::fs::read_to_string(&system).is_ok_and(|x| x.contains("blk_driver.elf"));
            let disk = match disk {
                Some(d) => Some(d),
                None if uses_disk => {
                    let d = xtask::target_dir().join("disk.img");
                    xtask::make_disk_image(&d).unwrap_or_else(|e| fail(&e));
                    eprintln!("fresh FAT32 disk image: {}", d.display());
                    Some(d)
                }
                None => None,
            };
            if let Some(d) = &disk {
                cmd.arg("--disk").arg(d);
            }
            let err = cmd.exec();
            fail(&format!("starting the host runtime: {err}"))
        }
        Cmd::System { check } => match xtask::system::write(check) {
            Ok(msg) => eprintln!("{msg}"),
            Err(e) => fail(&e),
        },
        Cmd::Check { path, search_path } => match xtask::check(&path, &search_path) {
            Ok(()) => println!("ok"),
            Err(e) => {
                println!("{e}");
                exit(1)
            }
        },
        Cmd::Qemu { system, store, console, build_only, bench, disk } => {
            let mut system = system.unwrap_or_else(|| xtask::workspace_root().join("system.xml"));
            let disk = match disk {
                // Checked before the build, which takes minutes.
                Some(d) if !d.is_file() => fail(&format!("disk image {}: no such file", d.display())),
                Some(d) => Some(d),
                None if !build_only && xtask::sel4::needs_disk(&system) => {
                    let d = xtask::target_dir().join("disk-sel4.img");
                    xtask::make_disk_image(&d).unwrap_or_else(|e| fail(&e));
                    eprintln!("fresh FAT32 disk image: {}", d.display());
                    Some(d)
                }
                None => None,
            };
            if let Some(store) = store {
                system = xtask::sel4::system_with_store(&system, &store).unwrap_or_else(|e| fail(&e));
            }
            let features: &[&str] = if bench { &["kv-client-sel4/bench"] } else { &[] };
            let image = xtask::sel4::build_image_with(&system, features).unwrap_or_else(|e| fail(&e));
            if build_only {
                println!("{}", image.loader.display());
                return;
            }
            let mut qemu = match console.as_deref() {
                Some("pty") => {
                    // QEMU prints the pseudo-terminal's path itself
                    // ("char device redirected to /dev/pts/N").
                    eprintln!("booting {} in QEMU, console on a pseudo-terminal", image.loader.display());
                    xtask::sel4::qemu_with_serial(&image.loader, "pty")
                }
                Some(c) => {
                    // Replace the stdio serial with a socket umctl connects to.
                    eprintln!("booting {} in QEMU, console on {c}", image.loader.display());
                    xtask::sel4::qemu_with_serial(&image.loader, &format!("{c},server=on,wait=off"))
                }
                None => {
                    eprintln!("booting {} in QEMU (quit: Ctrl-A x)", image.loader.display());
                    xtask::sel4::qemu(&image.loader)
                }
            };
            if let Some(d) = &disk {
                qemu.args(xtask::sel4::disk_args(d));
            }
            let err = qemu.exec();
            fail(&format!("starting qemu-system-aarch64: {err}"))
        }
        Cmd::CHeader => match xtask::cheader::write() {
            Ok(paths) => paths.iter().for_each(|p| eprintln!("wrote {}", p.display())),
            Err(e) => fail(&e),
        },
        Cmd::Module { command: ModuleCmd::Build { path, target, system, key, out, features, no_default_features } } => {
            if system.is_some() && target == bundle::Target::Host {
                // A host module is a shared object: no addresses to link to.
                Cli::command()
                    .error(clap::error::ErrorKind::ArgumentConflict, "--system applies to --target aarch64-sel4 only")
                    .exit()
            }
            let root = xtask::workspace_root();
            let system = system.unwrap_or_else(|| root.join("system.xml"));
            let dev = key.is_none();
            let key = key.unwrap_or_else(|| root.join("keys/dev.key"));
            let features = xtask::module::Features { list: features, no_default: no_default_features };
            match xtask::module::build(&path, target, &features, &system, &key, out.as_deref()) {
                Ok(b) => eprintln!(
                    "built {} ({} v{}, schema {}) for {}: {}\nsigned{} -> {}",
                    b.name,
                    b.service,
                    b.version,
                    b.schema,
                    target.as_str(),
                    b.image.display(),
                    if dev { " with the development key (trusted by a default build; proves nothing)" } else { "" },
                    b.bundle.display()
                ),
                Err(e) => fail(&e),
            }
        }
        Cmd::Keygen { stem } => match xtask::keys::keygen(&stem) {
            Ok((s, p)) => eprintln!("secret key: {} (keep it secret)\npublic key: {}", s.display(), p.display()),
            Err(e) => fail(&e),
        },
        Cmd::Pubkey { key } => match xtask::keys::load_key(&key) {
            Ok(key) => print!("{}", xtask::keys::public_of(&key)),
            Err(e) => fail(&e),
        },
        Cmd::Sign { key, target, image, package, out } => {
            let image = match (image, package) {
                (Some(i), _) => i,
                (None, Some(p)) => xtask::module_for(&p, target).unwrap_or_else(|e| fail(&e)),
                (None, None) => unreachable!("clap requires an image or --package"),
            };
            match xtask::keys::sign(&key, target, &image, &out) {
                Ok(()) => eprintln!("signed {} -> {}", image.display(), out.display()),
                Err(e) => fail(&e),
            }
        }
    }
}
