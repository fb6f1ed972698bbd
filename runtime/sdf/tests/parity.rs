//! The differential test: every file of the corpus, the generated limit
//! cases and the project's own systems go through the real microkit tool,
//! whose verdict (accept or refuse) must be the checker's; for a refused
//! corpus file the tool's complaint must also contain the file's `tool:`
//! substring, so that both refuse it for the same reason.
//!
//! Then the same for a few hundred random mutations of the good systems
//! (`common/mutate.rs`, a fixed seed), with no expectation but agreement.
//!
//! Runs when `MICROKIT_SDK` names a Microkit 2.3.0 SDK with `bin/microkit`
//! (board `qemu_virt_aarch64`, config `debug`); otherwise it says it was
//! skipped and passes. The tool needs real program images: each `hello.elf`
//! (and, for the project's systems, each image they name) is a generated
//! ELF (`common/elf.rs`) defining every symbol the systems set, in a scratch
//! directory searched before `corpus/files`.
mod common;

use common::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const BOARD: &str = "qemu_virt_aarch64";
const CONFIG: &str = "debug";
/// Randomized cases (a few milliseconds each with the tool).
const MUTANTS: usize = 300;

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
    fn run(&self, system: &Path, search: &[PathBuf]) -> Result<(), String> {
        let out = Command::new(&self.bin)
            .arg(system)
            .arg("--search-path")
            .args(search)
            .args(["--board", BOARD, "--config", CONFIG])
            .arg("-o")
            .arg(self.scratch.join("loader.img"))
            .arg("-r")
            .arg(self.scratch.join("report.txt"))
            // The tool also searches its working directory: one with no inputs.
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

    /// One disagreement about `path`, or `None`.
    fn compare(&self, label: &str, path: &Path, search: &[PathBuf], tool_says: Option<&str>) -> Option<String> {
        let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        match (self.run(path, search), verdict(&text, search)) {
            (Ok(()), Ok(_)) => None,
            (Ok(()), Err(e)) => Some(format!("{label}: the tool accepts it, the checker refuses it: {e}")),
            (Err(out), Ok(_)) => Some(format!("{label}: the checker accepts it, the tool refuses it: {out}")),
            (Err(out), Err(_)) => match tool_says {
                Some(s) if !out.contains(s) => Some(format!("{label}: the tool refuses it, but not with {s:?}: {out}")),
                _ => None,
            },
        }
    }

    /// A directory holding a generated ELF under each of `images`, defining
    /// `symbols`, and a one-byte file under each of `prefills`.
    fn inputs(&self, dir: &str, images: &[String], symbols: &[String], prefills: &[String]) -> PathBuf {
        let dir = self.scratch.join(dir);
        fs::create_dir_all(&dir).expect("scratch directory");
        let image = elf::image(symbols);
        for name in images {
            fs::write(dir.join(name), &image).expect("write a program image");
        }
        for name in prefills {
            fs::write(dir.join(name), b"x").expect("write a prefill file");
        }
        dir
    }
}

/// Everything `attr` names in `texts`, sorted, without repeats.
fn all_values(texts: &[String], attr: &str) -> Vec<String> {
    let mut v: Vec<String> = texts.iter().flat_map(|t| attribute_values(t, attr)).collect();
    v.sort();
    v.dedup();
    v
}

fn all_symbols(texts: &[String]) -> Vec<String> {
    let mut v: Vec<String> = texts.iter().flat_map(|t| elf::setvar_symbols(t)).collect();
    v.sort();
    v.dedup();
    v
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
    fs::create_dir_all(&scratch).expect("scratch directory");
    let tool = Tool { bin, scratch };
    let mut failures = Vec::new();
    let mut total = 0;

    let good = xml_files("good", GOOD);
    let refused: Vec<_> =
        [("bad", BAD), ("bad_files", BAD_FILES)].into_iter().flat_map(|(d, n)| xml_files(d, n)).collect();
    let texts: Vec<String> = good.iter().chain(&refused).map(|(_, t)| t.clone()).collect();
    let images = tool.inputs("corpus", &["hello.elf".into()], &all_symbols(&texts), &[]);
    let search = [images, corpus().join("files")];
    for (path, _) in &good {
        total += 1;
        failures.extend(tool.compare(&name(path), path, &search, None));
    }
    for (path, text) in &refused {
        total += 1;
        let expect = expectation(path, text);
        failures.extend(tool.compare(&name(path), path, &search, Some(&expect.tool)));
    }
    for n in [63, 64] {
        total += 1;
        let path = tool.scratch.join(format!("{n}_pds.xml"));
        fs::write(&path, many_pds(n)).expect("write a generated system");
        failures.extend(tool.compare(&format!("{n} PDs"), &path, &search, Some("too many protection domains")));
    }

    // Mutations of the good systems: whatever either side makes of them,
    // the other must make the same.
    let mut rng = mutate::Rng(0x5EED_F00D);
    let mutant = tool.scratch.join("mutant.xml");
    for i in 0..MUTANTS {
        total += 1;
        let text = mutate::mutate(&good[i % good.len()].1, &mut rng);
        fs::write(&mutant, &text).expect("write a mutated system");
        let label = format!("mutant {i} of {}", name(&good[i % good.len()].0));
        failures.extend(tool.compare(&label, &mutant, &search, None).map(|f| format!("{f}\n{text}\n")));
    }

    let project = project_systems();
    let texts: Vec<String> = project.iter().map(|(_, t)| t.clone()).collect();
    let images = all_values(&texts, "path");
    let prefills = all_values(&texts, "prefill_path");
    let search = [tool.inputs("project", &images, &all_symbols(&texts), &prefills)];
    for (path, _) in &project {
        total += 1;
        failures.extend(tool.compare(&path.display().to_string(), path, &search, None));
    }

    let _ = fs::remove_dir_all(&tool.scratch);
    println!("the microkit tool and the checker agree on {} of {total} systems", total - failures.len());
    report("parity", total, failures);
}
