//! Generates the PD table from the system description: for every PD its
//! channels (by peer name), IRQs (channel id and interrupt number),
//! mappings (by local name), children and extra VSpace caps, keyed by PD
//! name at run time; and one `.data` symbol per `setvar_vaddr` name and
//! per `<setvar symbol=".." region_paddr=".."/>` symbol (a DMA region's
//! physical address), for the microkit tool to patch.
use std::fmt::Write;
use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let path =
        std::env::var_os("UPD_SYSTEM_XML").map(PathBuf::from).unwrap_or_else(|| manifest.join("../../../system.xml"));
    println!("cargo:rerun-if-env-changed=UPD_SYSTEM_XML");
    println!("cargo:rerun-if-changed={}", path.display());
    let xml = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut sys = sdf::parse(&xml).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    size_prefilled_regions(&mut sys);
    sys.check().unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let caps = cspace_vspaces(&xml);

    let mut out = String::new();
    let mut setvars: Vec<String> = Vec::new();
    out.push_str("pub static PDS: &[PdInfo] = &[\n");
    for (i, pd) in sys.pds.iter().enumerate() {
        writeln!(out, "    PdInfo {{ name: {:?}, program: {:?},", pd.name, pd.program_image).unwrap();
        out.push_str("        channels: &[");
        for c in sdf::topology::channels_of(&sys, i) {
            write!(
                out,
                "ChannelInfo {{ id: {}, peer: {:?}, pp: {}, notify: {} }}, ",
                c.id, c.peer_name, c.pp, c.notify
            )
            .unwrap();
        }
        out.push_str("],\n        irqs: &[");
        for irq in &pd.irqs {
            write!(out, "IrqInfo {{ id: {}, irq: {} }}, ", irq.id, irq.irq).unwrap();
        }
        out.push_str("],\n        maps: &[");
        for m in &pd.maps {
            let size = sys.region(&m.mr).map_or(0, |r| r.size);
            write!(
                out,
                "MapInfo {{ name: {:?}, vaddr: {:#x}, size: {:#x}, writable: {}, setvar: {} }}, ",
                m.local_name(),
                m.vaddr,
                size,
                m.perms.write,
                m.setvar_vaddr.is_some()
            )
            .unwrap();
            if let Some(s) = &m.setvar_vaddr {
                if !setvars.contains(s) {
                    setvars.push(s.clone());
                }
            }
        }
        out.push_str("],\n        children: &[");
        for (c, id) in sys.children(i) {
            write!(out, "ChildInfo {{ id: {id}, name: {:?} }}, ", sys.pds[c].name).unwrap();
        }
        out.push_str("],\n        vspaces: &[");
        for (owner, slot, target) in &caps {
            if *owner == pd.name {
                write!(out, "({target:?}, {slot}), ").unwrap();
            }
        }
        out.push_str("],\n    },\n");
    }
    out.push_str("];\n\n");
    for s in region_paddr_symbols(&xml) {
        if !setvars.contains(&s) {
            setvars.push(s);
        }
    }
    let mut programs: Vec<&str> = Vec::new();
    for pd in &sys.pds {
        if !programs.contains(&pd.program_image.as_str()) {
            programs.push(&pd.program_image);
        }
    }
    assert!(programs.len() <= 16, "at most 16 program images");
    writeln!(out, "/// Every program image, in document order.\npub static PROGRAMS: &[&str] = &{programs:?};")
        .unwrap();
    for s in &setvars {
        writeln!(
            out,
            "#[unsafe(no_mangle)]\n#[unsafe(link_section = \".data\")]\n#[used]\n#[allow(non_upper_case_globals)]\nstatic mut {s}: usize = 0;"
        )
        .unwrap();
    }
    out.push_str("\n/// The value the microkit tool patched into a `setvar_vaddr` symbol.\npub fn setvar(name: &str) -> Option<usize> {\n    // SAFETY: written by the microkit tool before boot, never at run time.\n    unsafe {\n        match name {\n");
    for s in &setvars {
        writeln!(out, "            {s:?} => Some(core::ptr::read_volatile(&raw const {s})),").unwrap();
    }
    out.push_str("            _ => None,\n        }\n    }\n}\n");
    let dst = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("table.rs");
    std::fs::write(dst, out).unwrap();
}

/// A region sized by its prefill file (no `size`) is as large as the file,
/// in whole pages, as the microkit tool makes it: look the file up in
/// `UPD_SEARCH_PATH` (the image build writes the files first).
fn size_prefilled_regions(sys: &mut sdf::System) {
    println!("cargo:rerun-if-env-changed=UPD_SEARCH_PATH");
    let search: Vec<PathBuf> =
        std::env::var_os("UPD_SEARCH_PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    for r in &mut sys.regions {
        let Some(name) = &r.prefill_path else { continue };
        if r.size != 0 {
            continue;
        }
        let file = search.iter().map(|d| d.join(name)).find(|f| f.is_file()).unwrap_or_else(|| {
            panic!(
                "region '{}': prefill file '{name}' not found in UPD_SEARCH_PATH (build with cargo xtask qemu)",
                r.name
            )
        });
        println!("cargo:rerun-if-changed={}", file.display());
        let len = std::fs::metadata(&file).unwrap().len();
        r.size = len.max(1).next_multiple_of(r.page_size.unwrap_or(4096));
    }
}

/// The symbols of `<setvar symbol=".." region_paddr=".."/>` elements (the
/// sdf crate accepts them without modelling them).
fn region_paddr_symbols(xml: &str) -> Vec<String> {
    let doc = roxmltree::Document::parse(xml).expect("system.xml is well formed");
    let mut v: Vec<String> = Vec::new();
    for n in doc.descendants().filter(|n| n.has_tag_name("setvar") && n.attribute("region_paddr").is_some()) {
        let s = n.attribute("symbol").expect("setvar symbol");
        assert!(
            !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "setvar symbol '{s}' is not an identifier"
        );
        if !v.iter().any(|x| x == s) {
            v.push(s.to_owned());
        }
    }
    v
}

/// `<cspace><cap_vspace slot=".." pd=".."/></cspace>` inside each PD:
/// (owner PD, slot, PD whose VSpace it is). The sdf crate accepts `cspace`
/// without modelling it, so it is read here.
fn cspace_vspaces(xml: &str) -> Vec<(String, u64, String)> {
    let doc = roxmltree::Document::parse(xml).expect("system.xml is well formed");
    let mut v = Vec::new();
    for cs in doc.descendants().filter(|n| n.has_tag_name("cspace")) {
        let Some(owner) = cs.parent().and_then(|p| p.attribute("name")) else { continue };
        for cap in cs.children().filter(|n| n.has_tag_name("cap_vspace")) {
            let slot = cap.attribute("slot").and_then(parse_num).expect("cap_vspace slot");
            let pd = cap.attribute("pd").expect("cap_vspace pd");
            v.push((owner.to_owned(), slot, pd.to_owned()));
        }
    }
    v
}

fn parse_num(s: &str) -> Option<u64> {
    let s = s.replace('_', "");
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}
