//! Data-driven tests over `tests/corpus`:
//!
//! - `good/*.xml` must parse, pass `check_files` (search path
//!   `corpus/files`) and pass `check`.
//! - `bad/*.xml` must be refused by `parse` or `check`.
//! - `bad_files/*.xml` must parse and pass `check`, and then be refused by
//!   `check_files`.
//!
//! Every refused file starts with two comments naming what it must be
//! refused with:
//!
//! ```text
//! <!-- expect: a distinctive substring of the error message -->
//! <!-- element: <protection_domain name="x"> -->
//! ```
//!
//! An empty `element:` means the error must name no element (XML that is not
//! well-formed). The number of files in each directory is pinned, so a
//! missing or misplaced file cannot pass silently.
use sdf::{check_files, parse, SdfError, System};
use std::fs;
use std::path::{Path, PathBuf};

const GOOD: usize = 4;
const BAD: usize = 28;
const BAD_FILES: usize = 3;

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("corpus")
}

fn search_paths() -> Vec<PathBuf> {
    vec![corpus().join("files")]
}

/// The `.xml` files of `corpus/<dir>`, sorted, asserting how many there are.
fn xml_files(dir: &str, expected: usize) -> Vec<(PathBuf, String)> {
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

fn name(path: &Path) -> String {
    let parent = path.parent().and_then(Path::file_name).unwrap_or_default();
    format!("{}/{}", parent.to_string_lossy(), path.file_name().unwrap_or_default().to_string_lossy())
}

/// What a refused file must be refused with.
struct Expect {
    substring: String,
    element: String,
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

fn expectation(path: &Path, text: &str) -> Expect {
    let mut lines = text.lines();
    let substring = header(path, lines.next(), "expect:");
    assert!(!substring.is_empty(), "{}: empty `expect:`", name(path));
    let element = header(path, lines.next(), "element:");
    Expect { substring, element }
}

/// Compares an error with what the file expects; `None` if it matches.
fn mismatch(path: &Path, expect: &Expect, e: &SdfError) -> Option<String> {
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

fn parse_and_check(text: &str) -> Result<System, SdfError> {
    let sys = parse(text)?;
    sys.check()?;
    Ok(sys)
}

fn report(what: &str, total: usize, failures: Vec<String>) {
    assert!(failures.is_empty(), "{} of {total} {what} files failed:\n  {}", failures.len(), failures.join("\n  "));
}

#[test]
fn good_systems_are_accepted() {
    let files = xml_files("good", GOOD);
    let mut failures = Vec::new();
    for (path, text) in &files {
        let result = parse(text).and_then(|mut sys| {
            let images = check_files(&mut sys, &search_paths())?;
            sys.check()?;
            Ok((sys, images))
        });
        match result {
            Err(e) => failures.push(format!("{}: refused: {e}", name(path))),
            Ok((sys, images)) => {
                if sys.pds.is_empty() || images.len() != sys.pds.len() || !images.iter().all(|p| p.is_file()) {
                    failures.push(format!("{}: {} PDs but program images {images:?}", name(path), sys.pds.len()));
                }
            }
        }
    }
    report("good", files.len(), failures);
}

#[test]
fn bad_systems_are_refused_naming_the_element() {
    let files = xml_files("bad", BAD);
    let mut failures = Vec::new();
    for (path, text) in &files {
        let expect = expectation(path, text);
        match parse_and_check(text) {
            Ok(_) => {
                failures.push(format!("{}: accepted, expected an error containing {:?}", name(path), expect.substring))
            }
            Err(e) => failures.extend(mismatch(path, &expect, &e)),
        }
    }
    report("bad", files.len(), failures);
}

#[test]
fn missing_or_oversized_files_are_refused_by_check_files() {
    let files = xml_files("bad_files", BAD_FILES);
    let mut failures = Vec::new();
    for (path, text) in &files {
        let expect = expectation(path, text);
        match parse_and_check(text) {
            Err(e) => failures.push(format!("{}: refused before check_files: {e}", name(path))),
            Ok(mut sys) => match check_files(&mut sys, &search_paths()) {
                Ok(_) => failures.push(format!(
                    "{}: check_files accepted it, expected an error containing {:?}",
                    name(path),
                    expect.substring
                )),
                Err(e) => failures.extend(mismatch(path, &expect, &e)),
            },
        }
    }
    report("bad_files", files.len(), failures);
}

/// A system of `n` top-level PDs, each at its own priority.
fn many_pds(n: usize) -> String {
    let mut xml = String::from("<system>\n");
    for i in 0..n {
        xml.push_str(&format!(
            "  <protection_domain name=\"pd{i}\" priority=\"{i}\"><program_image path=\"hello.elf\"/></protection_domain>\n"
        ));
    }
    xml.push_str("</system>\n");
    xml
}

#[test]
fn at_most_63_protection_domains() {
    let sys = parse(&many_pds(63)).expect("63 PDs parse");
    assert_eq!(sys.pds.len(), 63);
    sys.check().unwrap_or_else(|e| panic!("63 PDs refused: {e}"));

    let sys = parse(&many_pds(64)).expect("64 PDs parse");
    let e = sys.check().expect_err("64 PDs accepted");
    assert!(e.message.contains("64 protection domains; Microkit allows at most 63"), "wrong error: {e}");
    assert_eq!(e.element, "<protection_domain name=\"pd63\">", "wrong element: {e}");
    assert_eq!(e.line, 65, "wrong line: {e}");
}

#[test]
fn prefill_regions_are_sized_from_their_files() {
    let path = corpus().join("good").join("prefill.xml");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut sys = parse(&text).unwrap_or_else(|e| panic!("prefill.xml: {e}"));
    assert_eq!(sys.region("data_auto").map(|r| r.size), Some(0), "unsized until check_files");
    check_files(&mut sys, &search_paths()).unwrap_or_else(|e| panic!("prefill.xml: {e}"));
    let blob = fs::metadata(corpus().join("files").join("blob.bin")).expect("blob.bin").len();
    assert!(blob > 0 && blob <= 0x1000, "blob.bin should be non-empty and under a page, is {blob} bytes");
    assert_eq!(sys.region("data_auto").map(|r| r.size), Some(0x1000));
    assert_eq!(sys.region("data").map(|r| r.size), Some(0x1000));
}

#[test]
fn realistic_system_has_the_expected_shape() {
    let path = corpus().join("good").join("realistic.xml");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let sys = parse(&text).unwrap_or_else(|e| panic!("realistic.xml: {e}"));
    let manager = sys.pd("manager").expect("manager");
    let children: Vec<(&str, u64)> = sys.children(manager).map(|(i, id)| (sys.pds[i].name.as_str(), id)).collect();
    assert_eq!(children, [("worker_a", 1), ("worker_b", 2)]);
    assert_eq!(sys.channels.len(), 5);
    assert_eq!(sys.channels.iter().flat_map(|c| &c.ends).filter(|e| e.pp).count(), 4);
    let driver = &sys.pds[sys.pd("driver").expect("driver")];
    assert_eq!(driver.irqs.iter().map(|i| (i.irq, i.id)).collect::<Vec<_>>(), [(33, 5)]);
    let perms: Vec<String> =
        sys.pds[sys.pd("worker_a").expect("worker_a")].maps.iter().map(|m| m.perms.to_string()).collect();
    assert_eq!(perms, ["r", "rx"]);
}
