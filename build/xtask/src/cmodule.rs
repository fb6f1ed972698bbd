//! Service modules written in C: every `*.c` file of the module's
//! directory, compiled against the generated headers
//! (`interfaces/include`, see [`crate::cheader`]) with warnings as errors.
//! - host: a shared object, loaded like the Rust modules' cdylibs;
//! - seL4: GCC for aarch64 (the compiler the Microkit SDK's C programs
//!   use), freestanding, linked by `build/sel4/module.ld` to the slot's
//!   addresses as the Rust modules are, with `pds/module-rt/c`'s
//!   freestanding support (no C library there).
use crate::workspace_root;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The host compiler (`UPD_HOST_CC` overrides).
pub fn host_cc() -> String {
    std::env::var("UPD_HOST_CC").unwrap_or_else(|_| "cc".into())
}

/// The seL4 (aarch64) compiler (`UPD_SEL4_CC` overrides).
pub fn sel4_cc() -> String {
    std::env::var("UPD_SEL4_CC").unwrap_or_else(|_| "aarch64-linux-gnu-gcc".into())
}

/// Flags of every C module build.
const COMMON: &[&str] = &["-std=c11", "-O2", "-Wall", "-Wextra", "-Wpedantic", "-Werror"];

/// Flags of the seL4 build: no C library, no position independence (the
/// image runs where it is linked), nothing that needs a runtime (stack
/// protector, unwind tables, outlined atomics), and the alignment rules of
/// Rust's `aarch64-unknown-none`, which the Rust modules are built for.
const FREESTANDING: &[&str] = &[
    "-ffreestanding",
    "-fno-pic",
    "-fno-pie",
    "-fno-stack-protector",
    "-fno-asynchronous-unwind-tables",
    "-fno-unwind-tables",
    "-mstrict-align",
    "-mno-outline-atomics",
    // Else GCC turns freestanding.c's loops into calls to themselves.
    "-fno-tree-loop-distribute-patterns",
    "-ffunction-sections",
    "-fdata-sections",
];

/// The C sources of the module in `dir` (relative to the workspace).
fn sources(dir: &str) -> Result<Vec<PathBuf>, String> {
    let abs = workspace_root().join(dir);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&abs)
        .map_err(|e| format!("{}: {e}", abs.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "c"))
        .collect();
    v.sort();
    if v.is_empty() {
        return Err(format!("{}: no C sources", abs.display()));
    }
    Ok(v)
}

fn run(c: &mut Command, what: &str) -> Result<(), String> {
    let o = c.output().map_err(|e| format!("{what}: {e}"))?;
    if !o.status.success() {
        return Err(format!(
            "{what} failed:\n{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    Ok(())
}

fn include() -> String {
    format!("-I{}", workspace_root().join(crate::cheader::INCLUDE_DIR).display())
}

/// Builds the C module in `dir` for the host into `out/lib<name>.so`.
pub fn build_host(dir: &str, name: &str, out: &Path) -> Result<PathBuf, String> {
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let so = out.join(format!("lib{}.so", name.replace('-', "_")));
    let mut c = Command::new(host_cc());
    // Only the descriptor and entry table are exported (UPD_EXPORT).
    c.args(COMMON).args(["-fPIC", "-shared", "-fvisibility=hidden"]).arg(include()).arg("-o").arg(&so);
    c.args(sources(dir)?);
    run(&mut c, &format!("compiling C module {name} with {}", host_cc()))?;
    Ok(so)
}

/// Builds the C module in `dir` for seL4, linked to the slot addresses
/// `code` and `data`, into `out/<name>.elf`.
pub fn build_sel4(dir: &str, name: &str, code: u64, data: u64, out: &Path) -> Result<PathBuf, String> {
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let elf = out.join(format!("{name}.elf"));
    let mut c = Command::new(sel4_cc());
    c.args(COMMON).args(FREESTANDING).arg(include());
    c.args(sources(dir)?).arg(workspace_root().join("pds/module-rt/c/freestanding.c"));
    // Linked as build_module_elf links the Rust modules.
    c.args(["-nostdlib", "-static", "-no-pie", "-Wl,--gc-sections", "-Wl,--strip-debug", "-Wl,--build-id=none"])
        .args(["-Wl,-z,max-page-size=4096", "-Wl,-z,norelro"])
        .arg(format!("-Wl,--defsym=UPD_CODE_BASE={code:#x}"))
        .arg(format!("-Wl,--defsym=UPD_DATA_BASE={data:#x}"))
        .arg(format!("-Wl,-u,{}", interfaces::abi::DESCRIPTOR_SYMBOL))
        .arg(format!("-Wl,-u,{}", interfaces::abi::ENTRY_SYMBOL))
        .arg("-T")
        .arg(workspace_root().join("build/sel4/module.ld"))
        .arg("-o")
        .arg(&elf)
        .arg("-lgcc");
    run(
        &mut c,
        &format!(
            "compiling C module {name} with {} (apt-get install gcc-aarch64-linux-gnu, or set UPD_SEL4_CC)",
            sel4_cc()
        ),
    )?;
    Ok(elf)
}
