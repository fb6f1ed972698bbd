//! The differential test: every file of the corpus (and the generated
//! limit cases) goes through the real microkit tool, whose verdict (accept
//! or refuse) must be the checker's, and whose complaint about a refused
//! file must contain the file's `tool:` substring (so that both refuse it
//! for the same reason).
//!
//! Runs when `MICROKIT_SDK` names a Microkit 2.3.0 SDK with `bin/microkit`
//! (board `qemu_virt_aarch64`, config `debug`); otherwise it says it was
//! skipped and passes. For the tool, the corpus's program image
//! `hello.elf` is a generated ELF (`common/elf.rs`) defining every symbol
//! the corpus sets, found in a scratch directory searched before
//! `corpus/files`.
mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

const BOARD: &str = "qemu_virt_aarch64";
const CONFIG: &str = "debug";

/// `$MICROKIT_SDK/bin/microkit`, or why the tool half is skipped.
fn tool() -> Result<PathBuf, String> {
    let sdk = std::env::var_os("MICROKIT_SDK").ok_or("MICROKIT_SDK is not set")?;
    let bin = Path::new(&sdk).join("bin").join("microkit");
    match bin.is_file() {
        true => Ok(bin),
        false => Err(format!("{} does not exist", bin.display())),
    }
}

struct Tool {
    bin: PathBuf,
    scratch: PathBuf,
}

impl Tool {
    /// Runs the tool on `system`: `Ok` if it builds an image, else its output.
    fn run(&self, system: &Path) -> Result<(), String> {
        let out = Command::new(&self.bin)
            .arg(system)
            .arg("--search-path")
            .arg(&self.scratch)
            .arg(corpus().join("files"))
            .args(["--board", BOARD, "--config", CONFIG])
            .arg("-o")
            .arg(self.scratch.join("loader.img"))
            .arg("-r")
            .arg(self.scratch.join("report.txt"))
            // The tool also searches its working directory: make it empty.
            .current_dir(&self.scratch)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.bin.display()));
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        if out.status.success() {
            Ok(())
        } else {
            Err(text.lines().filter(|l| !l.starts_with("MICROKIT|")).collect::<Vec<_>>().join(" | "))
        }
    }
}

/// One disagreement, or `None`.
fn compare(tool: &Tool, label: &str, path: &Path, text: &str, tool_says: Option<&str>) -> Option<String> {
    let checker = verdict(text);
    match (tool.run(path), checker) {
        (Ok(()), Ok(_)) => None,
        (Ok(()), Err(e)) => Some(format!("{label}: the tool accepts it, the checker refuses it: {e}")),
        (Err(out), Ok(_)) => Some(format!("{label}: the checker accepts it, the tool refuses it: {out}")),
        (Err(out), Err(_)) => match tool_says {
            Some(s) if !out.contains(s) => Some(format!("{label}: the tool refuses it, but not with {s:?}: {out}")),
            _ => None,
        },
    }
}

#[test]
fn the_microkit_tool_agrees_with_the_checker() {
    let bin = match tool() {
        Ok(bin) => bin,
        Err(why) => {
            println!("SKIPPED: the microkit tool half of the parity test ({why}); set MICROKIT_SDK to run it");
            return;
        }
    };
    let scratch = std::env::temp_dir().join(format!("sdf-parity-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).expect("scratch directory");
    let tool = Tool { bin, scratch };
    let every_xml = ["good", "bad", "bad_files"].map(|d| corpus().join(d)).into_iter().flat_map(|d| {
        std::fs::read_dir(d).expect("corpus directory").map(|e| e.expect("corpus entry").path()).collect::<Vec<_>>()
    });
    let mut symbols: Vec<String> =
        every_xml.flat_map(|p| elf::setvar_symbols(&std::fs::read_to_string(p).unwrap_or_default())).collect();
    symbols.sort();
    symbols.dedup();
    std::fs::write(tool.scratch.join("hello.elf"), elf::image(&symbols)).expect("write hello.elf");
    let mut failures = Vec::new();
    let mut total = 0;
    for (path, text) in xml_files("good", GOOD) {
        total += 1;
        failures.extend(compare(&tool, &name(&path), &path, &text, None));
    }
    for (dir, count) in [("bad", BAD), ("bad_files", BAD_FILES)] {
        for (path, text) in xml_files(dir, count) {
            total += 1;
            let expect = expectation(&path, &text);
            failures.extend(compare(&tool, &name(&path), &path, &text, Some(&expect.tool)));
        }
    }
    for n in [63, 64] {
        total += 1;
        let path = tool.scratch.join(format!("{n}_pds.xml"));
        let text = many_pds(n);
        std::fs::write(&path, &text).expect("write a generated system");
        failures.extend(compare(&tool, &format!("{n} PDs"), &path, &text, Some("too many protection domains")));
    }
    let _ = std::fs::remove_dir_all(&tool.scratch);
    println!("the microkit tool and the checker agree on {} of {total} systems", total - failures.len());
    report("parity", total, failures);
}
