//! The rules that need the file system: program images and prefill files
//! must be found in the search paths, a prefill file must not be empty nor
//! larger than its region.
use super::err;
use crate::{model::*, SdfError};
use std::path::{Path, PathBuf};

/// Finds `name` in the search paths, the way the microkit tool does: each
/// search path in turn, then the current directory.
pub fn find_file(name: &str, search: &[PathBuf]) -> Option<PathBuf> {
    let p = Path::new(name);
    if p.is_absolute() {
        return p.exists().then(|| p.to_owned());
    }
    search.iter().cloned().chain(std::iter::once(PathBuf::from("."))).map(|d| d.join(name)).find(|f| f.exists())
}

/// Checks that every program image (and `path_for_symbols` file) and prefill
/// file exists in the search paths, sizes regions from their prefill files,
/// that each prefill is non-empty and fits its region, and that AArch64
/// program images have what the tool needs (`elf.rs`). Returns the resolved
/// paths of program images, per PD.
pub fn check_files(sys: &mut System, search: &[PathBuf]) -> Result<Vec<PathBuf>, SdfError> {
    for r in &mut sys.regions {
        let Some(path) = &r.prefill_path else { continue };
        let file = find_file(path, search)
            .ok_or_else(|| err(&r.origin, format!("prefill file '{path}' not found in the search paths")))?;
        let meta = std::fs::metadata(&file).map_err(|e| err(&r.origin, format!("{}: {e}", file.display())))?;
        if !meta.is_file() {
            return Err(err(&r.origin, format!("prefill file '{path}' ({}) is not a file", file.display())));
        }
        let len = meta.len();
        if len == 0 {
            return Err(err(&r.origin, format!("prefill file '{path}' is empty")));
        }
        let page = r.page_size.unwrap_or(SMALL_PAGE);
        if r.size == 0 {
            r.size = len.next_multiple_of(page);
        } else if len > r.size {
            return Err(err(
                &r.origin,
                format!("prefill file '{path}' ({len} bytes) is larger than the region ({} bytes)", r.size),
            ));
        }
    }
    let sys = &*sys;
    sys.pds
        .iter()
        .map(|pd| {
            let missing =
                |what: &str, path: &str| err(&pd.origin, format!("{what} '{path}' not found in the search paths"));
            let read =
                |file: &Path| std::fs::read(file).map_err(|e| err(&pd.origin, format!("{}: {e}", file.display())));
            let image =
                find_file(&pd.program_image, search).ok_or_else(|| missing("program image", &pd.program_image))?;
            let for_symbols = match &pd.program_image_for_symbols {
                Some(path) => {
                    Some(read(&find_file(path, search).ok_or_else(|| missing("program image for symbols", path))?)?)
                }
                None => None,
            };
            super::elf::check_image(sys, pd, &read(&image)?, for_symbols.as_deref())?;
            Ok(image)
        })
        .collect()
}
