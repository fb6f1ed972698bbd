//! The rules the microkit tool applies to a system description, each
//! naming the element it refuses.
use crate::{model::*, SdfError};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

fn err(o: &Origin, message: String) -> SdfError {
    SdfError { line: o.line, element: o.element.clone(), message }
}

impl System {
    /// Checks everything that does not need the file system.
    pub fn check(&self) -> Result<(), SdfError> {
        if self.pds.len() > MAX_PDS {
            let o = &self.pds[MAX_PDS].origin;
            return Err(err(o, format!("{} protection domains; Microkit allows at most {MAX_PDS}", self.pds.len())));
        }
        let mut names = HashSet::new();
        for pd in &self.pds {
            if !names.insert(&pd.name) {
                return Err(err(&pd.origin, format!("duplicate protection domain name '{}'", pd.name)));
            }
        }
        let mut names = HashSet::new();
        for r in &self.regions {
            if !names.insert(&r.name) {
                return Err(err(&r.origin, format!("duplicate memory region name '{}'", r.name)));
            }
            check_region(r)?;
        }
        for pd in &self.pds {
            self.check_pd(pd)?;
        }
        self.check_channels()?;
        self.check_ppc_acyclic()
    }

    fn check_pd(&self, pd: &ProtectionDomain) -> Result<(), SdfError> {
        if pd.stack_size < 0x1000 || pd.stack_size > 0x100_0000 || !pd.stack_size.is_multiple_of(SMALL_PAGE) {
            return Err(err(
                &pd.origin,
                format!("stack_size {:#x} must be 4 KiB..16 MiB and page aligned", pd.stack_size),
            ));
        }
        let mut spans: Vec<(u64, u64, &Map)> = Vec::new();
        let mut symbols = HashSet::new();
        for m in &pd.maps {
            let r = self.region(&m.mr).ok_or_else(|| err(&m.origin, format!("no memory region named '{}'", m.mr)))?;
            let page = r.page_size.unwrap_or(SMALL_PAGE);
            if m.vaddr % page != 0 {
                return Err(err(
                    &m.origin,
                    format!("vaddr {:#x} is not aligned to the region's page size {page:#x}", m.vaddr),
                ));
            }
            let end =
                m.vaddr.checked_add(r.size).ok_or_else(|| err(&m.origin, "mapping wraps the address space".into()))?;
            if let Some((_, _, other)) = spans.iter().find(|(s, e, _)| m.vaddr < *e && *s < end) {
                return Err(err(&m.origin, format!("overlaps the mapping of '{}' in '{}'", other.mr, pd.name)));
            }
            spans.push((m.vaddr, end, m));
            for sym in [&m.setvar_vaddr, &m.setvar_size].into_iter().flatten() {
                if !symbols.insert(sym) {
                    return Err(err(&m.origin, format!("symbol '{sym}' is set twice in '{}'", pd.name)));
                }
            }
        }
        let mut child_ids = HashSet::new();
        for (i, id) in self.children(self.pd(&pd.name).unwrap_or(usize::MAX)) {
            let child = &self.pds[i];
            if id >= MAX_CHANNEL_ID {
                return Err(err(&child.origin, format!("child id {id} must be below {MAX_CHANNEL_ID}")));
            }
            if !child_ids.insert(id) {
                return Err(err(&child.origin, format!("child id {id} is used twice in '{}'", pd.name)));
            }
        }
        Ok(())
    }

    fn check_channels(&self) -> Result<(), SdfError> {
        // (pd, id) -> first user, across channels and IRQs.
        let mut used: HashMap<(usize, u64), String> = HashMap::new();
        for (i, pd) in self.pds.iter().enumerate() {
            for irq in &pd.irqs {
                if irq.id >= MAX_CHANNEL_ID {
                    return Err(err(&irq.origin, format!("irq channel id {} must be below {MAX_CHANNEL_ID}", irq.id)));
                }
                if used.insert((i, irq.id), format!("irq {}", irq.irq)).is_some() {
                    return Err(err(&irq.origin, format!("channel id {} is used twice in '{}'", irq.id, pd.name)));
                }
            }
        }
        for c in &self.channels {
            let [a, b] = &c.ends;
            if a.pd == b.pd {
                return Err(err(&c.origin, format!("both ends are '{}'", self.pds[a.pd].name)));
            }
            for (end, peer) in [(a, b), (b, a)] {
                let pd = &self.pds[end.pd];
                if end.id >= MAX_CHANNEL_ID {
                    return Err(err(
                        &c.origin,
                        format!("channel id {} of '{}' must be below {MAX_CHANNEL_ID}", end.id, pd.name),
                    ));
                }
                if let Some(prev) = used.insert((end.pd, end.id), self.pds[peer.pd].name.clone()) {
                    return Err(err(
                        &c.origin,
                        format!("channel id {} is used twice in '{}' (also for {prev})", end.id, pd.name),
                    ));
                }
                let callee = &self.pds[peer.pd];
                if end.pp && callee.priority <= pd.priority {
                    return Err(err(
                        &c.origin,
                        format!(
                            "'{}' (priority {}) may not make protected calls to '{}' (priority {}): the callee's priority must be strictly higher",
                            pd.name, pd.priority, callee.name, callee.priority
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// With strictly rising priorities a cycle cannot arise, but the rule is
    /// checked on its own so that it holds whatever the priorities say.
    fn check_ppc_acyclic(&self) -> Result<(), SdfError> {
        let mut edges: Vec<Vec<(usize, &Channel)>> = vec![Vec::new(); self.pds.len()];
        for c in &self.channels {
            let [a, b] = &c.ends;
            if a.pp {
                edges[a.pd].push((b.pd, c));
            }
            if b.pp {
                edges[b.pd].push((a.pd, c));
            }
        }
        // 0 = unvisited, 1 = on the stack, 2 = done.
        fn visit<'c>(v: usize, edges: &[Vec<(usize, &'c Channel)>], mark: &mut [u8]) -> Option<&'c Channel> {
            mark[v] = 1;
            for &(w, c) in &edges[v] {
                match mark[w] {
                    1 => return Some(c),
                    0 => {
                        if let Some(c) = visit(w, edges, mark) {
                            return Some(c);
                        }
                    }
                    _ => {}
                }
            }
            mark[v] = 2;
            None
        }
        let mut mark = vec![0u8; self.pds.len()];
        for v in 0..self.pds.len() {
            if mark[v] == 0 {
                if let Some(c) = visit(v, &edges, &mut mark) {
                    return Err(err(&c.origin, "this channel closes a cycle of protected calls".into()));
                }
            }
        }
        Ok(())
    }
}

fn check_region(r: &MemoryRegion) -> Result<(), SdfError> {
    let page = r.page_size.unwrap_or(SMALL_PAGE);
    if !PAGE_SIZES.contains(&page) {
        return Err(err(&r.origin, format!("page_size {page:#x} is not one of 0x1000, 0x200000")));
    }
    // A prefilled region may leave its size out (0 until `check_files` sizes
    // it from the file), but a size that is given must be a page multiple.
    if !r.size.is_multiple_of(page) || (r.size == 0 && r.prefill_path.is_none()) {
        return Err(err(
            &r.origin,
            format!("size {:#x} is not a non-zero multiple of the page size {page:#x}", r.size),
        ));
    }
    if r.phys_addr.is_some_and(|p| p % page != 0) {
        return Err(err(&r.origin, "phys_addr is not page aligned".into()));
    }
    Ok(())
}

/// Finds `name` in the search paths, the way the microkit tool does (the
/// current directory is always searched, first).
pub fn find_file(name: &str, search: &[PathBuf]) -> Option<PathBuf> {
    let p = Path::new(name);
    if p.is_absolute() {
        return p.is_file().then(|| p.to_owned());
    }
    std::iter::once(PathBuf::from(".")).chain(search.iter().cloned()).map(|d| d.join(name)).find(|f| f.is_file())
}

/// Checks that every program image and prefill file exists in the search
/// paths, sizes regions from their prefill files, and that each prefill fits
/// its region. Returns the resolved paths of program images, per PD.
pub fn check_files(sys: &mut System, search: &[PathBuf]) -> Result<Vec<PathBuf>, SdfError> {
    for r in &mut sys.regions {
        let Some(path) = &r.prefill_path else { continue };
        let file = find_file(path, search)
            .ok_or_else(|| err(&r.origin, format!("prefill file '{path}' not found in the search paths")))?;
        let len = std::fs::metadata(&file).map_err(|e| err(&r.origin, format!("{}: {e}", file.display())))?.len();
        let page = r.page_size.unwrap_or(SMALL_PAGE);
        if r.size == 0 {
            r.size = len.max(1).next_multiple_of(page);
        } else if len > r.size {
            return Err(err(
                &r.origin,
                format!("prefill file '{path}' ({len} bytes) is larger than the region ({} bytes)", r.size),
            ));
        }
    }
    sys.pds
        .iter()
        .map(|pd| {
            find_file(&pd.program_image, search).ok_or_else(|| {
                err(&pd.origin, format!("program image '{}' not found in the search paths", pd.program_image))
            })
        })
        .collect()
}
