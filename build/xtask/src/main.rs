//! `cargo xtask`: the image build, Hubris style.
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::exit;

const USAGE: &str = "\
usage: cargo xtask <command>
  build [--release]                    build the host programs, modules and image store
  run [SYSTEM.xml] [--release] [--console unix:PATH]
                                       build, then boot SYSTEM.xml (default system.xml) on the host runtime;
                                       the console on the terminal, or on a socket for umctl
  check PATH [--search-path DIR]...    check a system description; prints 'ok' or the first error
  c-header                             regenerate the C headers of the module ABI and the kv wire format
                                       (interfaces/include/) from their Rust definitions
  keygen STEM                          make an ed25519 key pair: STEM.key (secret) and STEM.pub
  pubkey K.key                         print the public key of a secret key (the contents of its .pub)
  sign --key K.key [--target host|aarch64-sel4] (IMAGE | --package PKG) -o BUNDLE
                                       sign a module image into an update bundle (target default: host);
                                       --package builds the module package (or C module, by image name)
                                       for the target first
  qemu [SYSTEM.xml] [--store FILE] [--console unix:PATH] [--build-only] [--bench]
                                       build the seL4 image (needs MICROKIT_SDK, Microkit 2.3.0) and boot it
                                       in QEMU; --store test-images.bin boots SYSTEM.xml with that image store
                                       (the test-only modules too); --build-only prints the loader image's
                                       path instead; --bench times protected calls in the client first;
                                       --console puts the serial port on a socket for umctl
";

fn fail(msg: &str) -> ! {
    eprintln!("error: {msg}");
    exit(1)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((cmd, rest)) = args.split_first() else {
        eprint!("{USAGE}");
        exit(2)
    };
    let release = rest.iter().any(|a| a == "--release");
    // Options that take a value, and the positional arguments.
    let mut store = None;
    // `--console unix:PATH` (run, qemu): the console on a socket for umctl.
    let mut console: Option<String> = None;
    let mut positional: Vec<&String> = Vec::new();
    let mut it = rest.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--store" => store = Some(it.next().unwrap_or_else(|| fail("--store needs an image store file name"))),
            "--console" => {
                let c =
                    it.next().filter(|c| c.starts_with("unix:")).unwrap_or_else(|| fail("--console needs unix:PATH"));
                console = Some(c.clone());
            }
            "--search-path" => {
                it.next();
            }
            s if s.starts_with("--") => {}
            _ => positional.push(a),
        }
    }
    match cmd.as_str() {
        "build" => match xtask::build_host(release) {
            Ok(dir) => eprintln!("host image: {}", dir.display()),
            Err(e) => fail(&e),
        },
        "run" => {
            let system = positional.first().map_or_else(|| xtask::workspace_root().join("system.xml"), PathBuf::from);
            let dir = xtask::build_host(release).unwrap_or_else(|e| fail(&e));
            let runtime = dir.parent().expect("profile dir").join("host-runtime");
            let mut cmd = std::process::Command::new(runtime);
            cmd.arg(&system).arg("--search-path").arg(&dir);
            if let Some(c) = &console {
                cmd.args(["--console", c]);
            }
            let err = cmd.exec();
            fail(&format!("starting the host runtime: {err}"))
        }
        "check" => {
            let mut path = None;
            let mut search = Vec::new();
            let mut it = rest.iter();
            while let Some(a) = it.next() {
                match a.as_str() {
                    "--search-path" => {
                        search.push(PathBuf::from(it.next().unwrap_or_else(|| fail("--search-path needs a directory"))))
                    }
                    s if s.starts_with('-') => fail(&format!("unknown option '{s}'")),
                    s if path.is_none() => path = Some(PathBuf::from(s)),
                    s => fail(&format!("unexpected argument '{s}'")),
                }
            }
            let path = path.unwrap_or_else(|| fail("check needs the path of a system description"));
            match xtask::check(&path, &search) {
                Ok(()) => println!("ok"),
                Err(e) => {
                    println!("{e}");
                    exit(1)
                }
            }
        }
        "qemu" => {
            let mut system =
                positional.first().map_or_else(|| xtask::workspace_root().join("system.xml"), PathBuf::from);
            if let Some(store) = store {
                system = xtask::sel4::system_with_store(&system, store).unwrap_or_else(|e| fail(&e));
            }
            let features: &[&str] = if rest.iter().any(|a| a == "--bench") { &["kv-client-sel4/bench"] } else { &[] };
            let image = xtask::sel4::build_image_with(&system, features).unwrap_or_else(|e| fail(&e));
            if rest.iter().any(|a| a == "--build-only") {
                println!("{}", image.loader.display());
                return;
            }
            let mut qemu = xtask::sel4::qemu(&image.loader);
            match &console {
                Some(c) => {
                    let path = c.strip_prefix("unix:").unwrap_or_else(|| fail("--console needs unix:PATH"));
                    // Replace the stdio serial with a socket umctl connects to.
                    qemu = xtask::sel4::qemu_with_serial(&image.loader, &format!("unix:{path},server=on,wait=off"));
                    eprintln!("booting {} in QEMU, console on unix:{path}", image.loader.display());
                }
                None => eprintln!("booting {} in QEMU (quit: Ctrl-A x)", image.loader.display()),
            }
            let err = qemu.exec();
            fail(&format!("starting qemu-system-aarch64: {err}"))
        }
        "c-header" => match xtask::cheader::write() {
            Ok(paths) => paths.iter().for_each(|p| eprintln!("wrote {}", p.display())),
            Err(e) => fail(&e),
        },
        "keygen" => {
            let stem = positional.first().unwrap_or_else(|| fail("keygen needs a path stem, e.g. keys/release"));
            match xtask::keys::keygen(std::path::Path::new(stem.as_str())) {
                Ok((s, p)) => eprintln!("secret key: {} (keep it secret)\npublic key: {}", s.display(), p.display()),
                Err(e) => fail(&e),
            }
        }
        "pubkey" => {
            let k = positional.first().unwrap_or_else(|| fail("pubkey needs a .key file"));
            match xtask::keys::load_key(std::path::Path::new(k.as_str())) {
                Ok(key) => print!("{}", xtask::keys::public_of(&key)),
                Err(e) => fail(&e),
            }
        }
        "sign" => {
            let (mut key, mut target, mut image, mut out) = (None, bundle::Target::Host, None, None);
            let mut package = None;
            let mut it = rest.iter();
            while let Some(a) = it.next() {
                let mut val = || it.next().cloned().unwrap_or_else(|| fail(&format!("{a} needs a value")));
                match a.as_str() {
                    "--key" => key = Some(PathBuf::from(val())),
                    "--target" => {
                        let t = val();
                        target = bundle::Target::parse(&t)
                            .unwrap_or_else(|| fail(&format!("unknown target '{t}' (host or aarch64-sel4)")))
                    }
                    "-o" | "--out" => out = Some(PathBuf::from(val())),
                    "--package" => package = Some(val()),
                    s if s.starts_with('-') => fail(&format!("unknown option '{s}'")),
                    s => image = Some(PathBuf::from(s)),
                }
            }
            let key = key.unwrap_or_else(|| fail("sign needs --key K.key"));
            let image = match (image, package) {
                (Some(i), None) => i,
                (None, Some(p)) => xtask::module_for(&p, target).unwrap_or_else(|e| fail(&e)),
                _ => fail("sign needs the module image to sign, or --package PKG"),
            };
            let out = out.unwrap_or_else(|| fail("sign needs -o BUNDLE"));
            match xtask::keys::sign(&key, target, &image, &out) {
                Ok(()) => eprintln!("signed {} -> {}", image.display(), out.display()),
                Err(e) => fail(&e),
            }
        }
        "-h" | "--help" | "help" => print!("{USAGE}"),
        other => {
            eprint!("unknown command '{other}'\n{USAGE}");
            exit(2)
        }
    }
}
