//! `cargo xtask module build`: a service module crate from any directory
//! (not a member of this workspace) built for the host or for seL4, and
//! signed into an upload bundle. The same profile, target and linker
//! script as the in-tree modules, so an out-of-tree module runs from the
//! same slot addresses and is admitted by the same checks.
use crate::{keys, sel4, target_dir, workspace_root};
use bundle::Target;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What `build` made.
pub struct Built {
    /// The module image (host: a shared object; seL4: a linked ELF).
    pub image: PathBuf,
    /// The signed bundle.
    pub bundle: PathBuf,
    /// The name the manager will list it under (`SERVICE-vVERSION`).
    pub name: String,
    /// The descriptor's service, module version and state schema.
    pub service: String,
    pub version: u32,
    pub schema: u32,
}

/// Where out-of-tree modules are built (all of them share it: Cargo keeps
/// packages apart, and the framework's crates are built once).
pub fn build_dir() -> PathBuf {
    target_dir().join("oot-modules")
}

/// The manifest of the crate at `path` (a directory, or its Cargo.toml).
pub fn manifest(path: &Path) -> Result<PathBuf, String> {
    let m = if path.file_name().is_some_and(|n| n == "Cargo.toml") { path.to_owned() } else { path.join("Cargo.toml") };
    if !path.exists() {
        return Err(format!("{}: no such directory", path.display()));
    }
    if !m.is_file() {
        return Err(format!(
            "{}: not a crate (no Cargo.toml); a module is a library crate that calls module_rt::export_module! \
             (README: 'Write your own service module')",
            path.display()
        ));
    }
    m.canonicalize().map_err(|e| format!("{}: {e}", m.display()))
}

/// The crate features a module is built with (cargo's `--features` and
/// `--no-default-features`).
#[derive(Clone, Debug, Default)]
pub struct Features {
    pub list: Option<String>,
    pub no_default: bool,
}

/// Builds the library of the crate at `path` for `target` with `features`
/// (seL4: linked to the slot addresses of `system`), checks that it is a
/// service module, and signs it with `key` into `out` (default:
/// `SERVICE-vVERSION.bundle` in the current directory).
pub fn build(
    path: &Path,
    target: Target,
    features: &Features,
    system: &Path,
    key: &Path,
    out: Option<&Path>,
) -> Result<Built, String> {
    let manifest = manifest(path)?;
    let dir = manifest.parent().expect("a manifest has a directory").to_owned();
    // The key and the slot addresses before a build that may take a minute.
    keys::load_key(key)?;
    if target == Target::Aarch64Sel4 {
        sel4::module_bases(system)?;
    }
    seed_lockfile(&dir)?;
    let lib = cargo_build(&manifest, target, features)?;
    let stem = lib.file_stem().map_or_else(|| "module".into(), |s| s.to_string_lossy().into_owned());
    let image = match target {
        Target::Host => lib,
        Target::Aarch64Sel4 => {
            let name = stem.strip_prefix("lib").unwrap_or(&stem);
            sel4::link_module(&lib, name, system, &build_dir().join("linked"))?
        }
    };
    let bytes = std::fs::read(&image).map_err(|e| format!("{}: {e}", image.display()))?;
    let arch = match target {
        Target::Host => update_manager::image::Architecture::X86_64,
        Target::Aarch64Sel4 => update_manager::image::Architecture::Aarch64,
    };
    let d = update_manager::image::descriptor_for(&bytes, arch).map_err(|e| {
        format!("{}: {e} (call module_rt::export_module!(YourModule) at the crate root)", dir.display())
    })?;
    let name = format!("{}-v{}", d.service(), d.module_version);
    let bundle = out.map(Path::to_owned).unwrap_or_else(|| PathBuf::from(format!("{name}.bundle")));
    keys::sign(key, target, &image, &bundle)?;
    Ok(Built {
        image,
        bundle,
        name,
        service: d.service().to_owned(),
        version: d.module_version,
        schema: d.state_schema,
    })
}

/// A crate outside the workspace has no lock file of its own at first:
/// start it from the workspace's, so that the module is built with the
/// dependency versions the framework was tested with (and needs no
/// registry look-up). Cargo drops the entries the crate does not use.
fn seed_lockfile(dir: &Path) -> Result<(), String> {
    let lock = dir.join("Cargo.lock");
    if lock.exists() || dir.starts_with(workspace_root()) {
        return Ok(());
    }
    std::fs::copy(workspace_root().join("Cargo.lock"), &lock).map_err(|e| format!("{}: {e}", lock.display()))?;
    Ok(())
}

/// `cargo rustc` on the crate's library with the profile the in-tree
/// modules are built with (the framework's `[profile.module]`, passed as
/// `--config`: the crate is a workspace of its own); returns the library
/// it wrote.
fn cargo_build(manifest: &Path, target: Target, features: &Features) -> Result<PathBuf, String> {
    let (crate_type, kind) = match target {
        Target::Host => ("cdylib", "so"),
        Target::Aarch64Sel4 => ("staticlib", "a"),
    };
    let mut c = crate::cargo();
    c.env_remove("RUSTFLAGS")
        .args(["rustc", "--lib", "--profile", crate::MODULE_PROFILE, "--crate-type", crate_type, "--manifest-path"])
        .arg(manifest)
        .args(["--message-format", "json-render-diagnostics", "--target-dir"])
        .arg(build_dir())
        .args(crate::module_profile_config()?)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if target == Target::Aarch64Sel4 {
        c.args(["--target", sel4::MODULE_TARGET]);
    }
    if let Some(list) = &features.list {
        c.args(["--features", list]);
    }
    if features.no_default {
        c.arg("--no-default-features");
    }
    let o = run_capturing(&mut c, manifest, target)?;
    let wanted = format!(".{kind}");
    let manifest_s = manifest.to_string_lossy();
    let lib = o.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()).find_map(|m| {
        if m["reason"] != "compiler-artifact" || m["manifest_path"].as_str() != Some(&*manifest_s) {
            return None;
        }
        let files = m["filenames"].as_array()?;
        files.iter().filter_map(|f| f.as_str()).find(|f| f.ends_with(&wanted)).map(PathBuf::from)
    });
    lib.ok_or_else(|| format!("{}: cargo built no {crate_type} library", manifest.display()))
}

/// Runs `c` (a build of `manifest` for `target`), its diagnostics going to
/// our stderr, and returns its stdout.
fn run_capturing(c: &mut Command, manifest: &Path, target: Target) -> Result<String, String> {
    let o = c.output().map_err(|e| format!("running cargo: {e}"))?;
    if !o.status.success() {
        // Cargo printed why (a compile error, no library target) above.
        return Err(format!(
            "building {} for {} failed ({}); a module is a #![no_std] library crate (src/lib.rs) that calls \
             module_rt::export_module!",
            manifest.display(),
            target.as_str(),
            o.status
        ));
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}
