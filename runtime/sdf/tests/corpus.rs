//! The checker over the corpus in `tests/corpus` (see `common/mod.rs` for
//! its layout); `parity.rs` runs the same files through the microkit tool.
mod common;

use common::*;
use sdf::{check_files, parse};
use std::fs;

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

#[test]
fn the_projects_own_systems_pass_the_checker() {
    let systems = project_systems();
    let mut failures = Vec::new();
    for (path, text) in &systems {
        if let Err(e) = parse_and_check(text) {
            failures.push(format!("{}: refused: {e}", path.display()));
        }
    }
    report("project system", systems.len(), failures);
}

/// `corpus/files/pd.elf` (a PD image defining `buf_vaddr`) and `bare.elf`
/// (the same without libmicrokit's variables) are `common/elf.rs`'s output;
/// set `SDF_WRITE_ELF=1` to write them again.
#[test]
fn committed_program_images_are_the_generators() {
    let symbols = ["buf_vaddr".to_owned()];
    for (file, bytes) in [("pd.elf", elf::image(&symbols)), ("bare.elf", elf::image_with(false, &symbols))] {
        let path = corpus().join("files").join(file);
        if std::env::var_os("SDF_WRITE_ELF").is_some() {
            fs::write(&path, &bytes).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        }
        let committed = fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        assert!(committed == bytes, "{file} differs from what common/elf.rs generates");
    }
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
