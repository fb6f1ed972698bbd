//! The corpus under `tests/corpus`, shared by the checker's tests
//! (`corpus.rs`) and the differential test against the microkit tool
//! (`parity.rs`).
//!
//! - `good/*.xml` must be accepted (search path `corpus/files`).
//! - `bad/*.xml` must be refused by `parse` or `check`.
//! - `bad_files/*.xml` must pass `parse` and `check`, and then be refused by
//!   `check_files`.
//!
//! Every refused file starts with three comments: what the checker must
//! refuse it with, and a substring of what the microkit tool says when it
//! refuses it:
//!
//! ```text
//! <!-- expect: a distinctive substring of the checker's error message -->
//! <!-- element: <protection_domain name="x"> -->
//! <!-- tool: a substring of the tool's error -->
//! ```
//!
//! An empty `element:` means the error must name no element (XML that is not
//! well-formed). The number of files in each directory is pinned, so a
//! missing or misplaced file cannot pass silently.
#![allow(dead_code)] // each test binary uses part of this module

pub mod elf;
pub mod mutate;

use sdf::{check_files, parse, SdfError, System};
use std::fs;
use std::path::{Path, PathBuf};

pub const GOOD: usize = 11;
pub const BAD: usize = 113;
pub const BAD_FILES: usize = 11;

pub fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("corpus")
}

pub fn search_paths() -> Vec<PathBuf> {
    vec![corpus().join("files")]
}

/// The `.xml` files of `corpus/<dir>`, sorted, asserting how many there are.
pub fn xml_files(dir: &str, expected: usize) -> Vec<(PathBuf, String)> {
    let dir = corpus().join(dir);
    let entries = fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display())).path())
        .filter(|p| p.extension().is_some_and(|x| x == "xml"))
        .collect();
    files.sort();
    assert_eq!(
        files.len(),
        expected,
        "{}: expected {expected} .xml files, found {}: {files:#?}",
        dir.display(),
        files.len()
    );
    files
        .into_iter()
        .map(|p| {
            let text = fs::read_to_string(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()));
            (p, text)
        })
        .collect()
}

pub fn name(path: &Path) -> String {
    let parent = path.parent().and_then(Path::file_name).unwrap_or_default();
    format!("{}/{}", parent.to_string_lossy(), path.file_name().unwrap_or_default().to_string_lossy())
}

/// What a refused file must be refused with.
pub struct Expect {
    pub substring: String,
    pub element: String,
    /// A substring of the microkit tool's complaint.
    pub tool: String,
}

/// Reads `<!-- KEY VALUE -->` from `line`.
fn header(path: &Path, line: Option<&str>, key: &str) -> String {
    line.map(str::trim)
        .and_then(|l| l.strip_prefix("<!--"))
        .and_then(|l| l.strip_suffix("-->"))
        .and_then(|l| l.trim().strip_prefix(key))
        .map(|v| v.trim().to_owned())
        .unwrap_or_else(|| panic!("{}: expected a `<!-- {key} ... -->` comment, found {line:?}", name(path)))
}

pub fn expectation(path: &Path, text: &str) -> Expect {
    let mut lines = text.lines();
    let substring = header(path, lines.next(), "expect:");
    assert!(!substring.is_empty(), "{}: empty `expect:`", name(path));
    let element = header(path, lines.next(), "element:");
    let tool = header(path, lines.next(), "tool:");
    assert!(!tool.is_empty(), "{}: empty `tool:`", name(path));
    Expect { substring, element, tool }
}

/// Compares an error with what the file expects; `None` if it matches.
pub fn mismatch(path: &Path, expect: &Expect, e: &SdfError) -> Option<String> {
    let mut wrong = Vec::new();
    if !e.message.contains(&expect.substring) {
        wrong.push(format!("message should contain {:?}", expect.substring));
    }
    if e.element != expect.element {
        wrong.push(format!("element should be {:?}, is {:?}", expect.element, e.element));
    }
    if e.line == 0 {
        wrong.push("line should be known".to_owned());
    }
    (!wrong.is_empty()).then(|| format!("{}: refused with `{e}`, but {}", name(path), wrong.join("; ")))
}

pub fn parse_and_check(text: &str) -> Result<System, SdfError> {
    let sys = parse(text)?;
    sys.check()?;
    Ok(sys)
}

/// The checker's whole verdict, as `cargo xtask check` gives it.
pub fn verdict(text: &str, search: &[PathBuf]) -> Result<System, SdfError> {
    let mut sys = parse(text)?;
    check_files(&mut sys, search)?;
    sys.check()?;
    Ok(sys)
}

/// The systems the project itself boots: `system.xml` and
/// `tests/systems/*.xml`, sorted.
pub fn project_systems() -> Vec<(PathBuf, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("..");
    let dir = root.join("tests").join("systems");
    let entries = fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display())).path())
        .filter(|p| p.extension().is_some_and(|x| x == "xml"))
        .collect();
    files.sort();
    files.insert(0, root.join("system.xml"));
    assert!(files.len() > 1, "no systems in {}", dir.display());
    files
        .into_iter()
        .map(|p| {
            let text = fs::read_to_string(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()));
            (p, text)
        })
        .collect()
}

/// The values of `attr="…"` in `xml`, sorted, without repeats.
pub fn attribute_values(xml: &str, attr: &str) -> Vec<String> {
    let key = format!(" {attr}=\"");
    let mut found: Vec<String> =
        xml.match_indices(&key).filter_map(|(at, _)| xml[at + key.len()..].split('"').next()).map(Into::into).collect();
    found.sort();
    found.dedup();
    found
}

pub fn report(what: &str, total: usize, failures: Vec<String>) {
    assert!(failures.is_empty(), "{} of {total} {what} files failed:\n  {}", failures.len(), failures.join("\n  "));
}

/// A system of `n` top-level PDs, each at its own priority.
pub fn many_pds(n: usize) -> String {
    let mut xml = String::from("<system>\n");
    for i in 0..n {
        xml.push_str(&format!(
            "  <protection_domain name=\"pd{i}\" priority=\"{i}\"><program_image path=\"hello.elf\"/></protection_domain>\n"
        ));
    }
    xml.push_str("</system>\n");
    xml
}
