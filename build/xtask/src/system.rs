//! The system declared in one place: `services.toml` (at the workspace's
//! root) names every service type (its images, the size of its transfer
//! region and journal, its priority, what else its slots map and talk to),
//! its instances and the clients that use them. [`generate`] expands it
//! into `system.xml`, a plain Microkit system description that the microkit
//! tool and `runtime/sdf` accept, with every address, channel id, slot
//! pair, region and manager mapping derived; `cargo xtask system` writes
//! it, and a test fails when the checked-in `system.xml` is not exactly
//! that output. The image store's modules ([`crate::modules`]) and the
//! client programs ([`crate::programs`]) come from the same file.
use serde::Deserialize;
use std::collections::BTreeSet;
use std::fmt::Write;

/// The description, as written in `services.toml`.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Description {
    #[serde(default, rename = "service")]
    pub services: Vec<Service>,
    #[serde(default, rename = "client")]
    pub clients: Vec<Client>,
}

/// A service type: its module images and how each of its instances' slots
/// are made.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// The type's name (any name: `ipv6` too); the modules' descriptors
    /// name the same service.
    #[serde(rename = "type")]
    pub kind: String,
    /// The images of the image stores, in order (the manager boots an
    /// instance with the lowest version at or above the type's floor).
    pub images: Vec<ImageSpec>,
    /// Instances in system.xml (none: images only, for other systems).
    #[serde(default)]
    pub instances: Vec<String>,
    /// The slots' priority (above every client's).
    #[serde(default = "default_priority")]
    pub priority: u8,
    /// Bytes of the transfer region both slots share (the exported state).
    #[serde(default = "default_transfer")]
    pub transfer: u64,
    /// Bytes of the probation journal.
    #[serde(default = "default_journal")]
    pub journal: u64,
    /// Fixed regions both slots map too, as `{ region, as }`: the module
    /// finds each under its `as` name.
    #[serde(default)]
    pub maps: Vec<ExtraMap>,
    /// Fixed PDs each slot has a (notification) channel to.
    #[serde(default)]
    pub notify: Vec<String>,
}

fn default_priority() -> u8 {
    200
}
fn default_transfer() -> u64 {
    0x20000
}
fn default_journal() -> u64 {
    0x10_0000
}

/// A module image: a crate of that name, or a table saying more.
#[derive(Deserialize, Debug)]
#[serde(untagged)]
pub enum ImageSpec {
    Crate(String),
    Detailed {
        image: String,
        /// A C module: the directory of its sources.
        #[serde(default)]
        c: Option<String>,
        /// Only in the test store (`test-images.bin`).
        #[serde(default)]
        test: bool,
    },
}

impl ImageSpec {
    pub fn image(&self) -> &str {
        match self {
            ImageSpec::Crate(s) => s,
            ImageSpec::Detailed { image, .. } => image,
        }
    }
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct ExtraMap {
    pub region: String,
    #[serde(rename = "as")]
    pub local: String,
}

/// A client PD: a program (`kv_client` is `kv_client.elf` in system.xml
/// and the host binary `kv_client`) that calls the instances it uses.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Client {
    pub name: String,
    pub program: String,
    pub uses: Vec<String>,
    #[serde(default = "default_client_priority")]
    pub priority: u8,
}

fn default_client_priority() -> u8 {
    50
}

impl Description {
    /// The instances in system.xml, in document order.
    pub fn instances(&self) -> impl Iterator<Item = (&Service, &str)> {
        self.services.iter().flat_map(|s| s.instances.iter().map(move |i| (s, i.as_str())))
    }

    /// The PDs of system.xml: the manager, the uart, two slots per
    /// instance and the clients.
    pub fn pd_count(&self) -> usize {
        2 + 2 * self.instances().count() + self.clients.len()
    }
}

/// The description's file and the command that regenerates system.xml.
pub const FILE: &str = "services.toml";
pub const REGENERATE: &str = "cargo xtask system";

/// The workspace's description, built into xtask (so that `modules()` and
/// the programs need no file at run time).
pub const BUILTIN: &str = include_str!("../../../services.toml");

/// Reads a description; the error names the entry at fault.
pub fn parse(text: &str) -> Result<Description, String> {
    let d: Description = toml::from_str(text).map_err(|e| format!("{FILE}: {e}"))?;
    validate(&d)?;
    Ok(d)
}

/// The fixed PDs the framework provides, which services may name in
/// `notify`, and the fixed regions they may name in `maps`.
const FIXED_PDS: &[&str] = &["uart"];
const FIXED_REGIONS: &[&str] = &["serial_rx", "serial_tx", "uart_rx", "uart_tx", "capmap"];

fn ident_ok(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn validate(d: &Description) -> Result<(), String> {
    let mut names = BTreeSet::new();
    let mut images = BTreeSet::new();
    let mut instances = BTreeSet::new();
    for s in &d.services {
        let at = format!("{FILE}: [[service]] type = \"{}\"", s.kind);
        if !ident_ok(&s.kind) || s.kind.contains(':') {
            return Err(format!("{at}: a type is letters, digits, '_' or '-'"));
        }
        if !names.insert(s.kind.clone()) {
            return Err(format!("{at}: declared twice"));
        }
        for i in &s.images {
            if !images.insert(i.image().to_owned()) {
                return Err(format!("{at}: image '{}' is declared twice", i.image()));
            }
        }
        for i in &s.instances {
            if !ident_ok(i) || i.len() > 24 {
                return Err(format!("{at}: instance '{i}': at most 24 letters, digits, '_' or '-'"));
            }
            if !instances.insert(i.clone()) {
                return Err(format!("{at}: instance '{i}' is declared twice"));
            }
        }
        if !s.instances.is_empty() && !s.images.iter().any(|i| !matches!(i, ImageSpec::Detailed { test: true, .. })) {
            return Err(format!("{at}: instances need an image that is not test-only to boot with"));
        }
        for m in &s.maps {
            if !FIXED_REGIONS.contains(&m.region.as_str()) {
                return Err(format!("{at}: maps region '{}', which is none of {FIXED_REGIONS:?}", m.region));
            }
        }
        for p in &s.notify {
            if !FIXED_PDS.contains(&p.as_str()) {
                return Err(format!("{at}: notify '{p}', which is none of {FIXED_PDS:?}"));
            }
        }
        if s.transfer == 0 || s.journal == 0 || s.transfer % 0x1000 != 0 || s.journal % 0x1000 != 0 {
            return Err(format!("{at}: transfer and journal are whole 4 KiB pages"));
        }
        if s.priority >= 250 {
            return Err(format!("{at}: priority {} is not below the uart's (250)", s.priority));
        }
    }
    let mut clients = BTreeSet::new();
    for c in &d.clients {
        let at = format!("{FILE}: [[client]] name = \"{}\"", c.name);
        if !ident_ok(&c.name) || instances.contains(&c.name) || !clients.insert(c.name.clone()) {
            return Err(format!("{at}: not a fresh PD name"));
        }
        if !ident_ok(&c.program) {
            return Err(format!("{at}: program '{}' is not a binary's name", c.program));
        }
        for u in &c.uses {
            let Some(s) = d.services.iter().find(|s| s.instances.contains(u)) else {
                return Err(format!("{at}: uses '{u}', which no [[service]] declares as an instance"));
            };
            if c.priority >= s.priority {
                return Err(format!(
                    "{at}: priority {} is not below the priority of '{u}' ({}), which it calls",
                    c.priority, s.priority
                ));
            }
        }
    }
    Ok(())
}

// The fixed layout. Slot addresses are those modules are linked to
// (build/sel4/module.ld via `module_bases`): do not move them.
const CODE_SIZE: u64 = 0x20_0000;
const DATA_SIZE: u64 = 0x10_0000;
const SLOT_CODE: u64 = 0x4000_0000;
const SLOT_DATA: u64 = 0x4020_0000;
const SLOT_TRANSFER: u64 = 0x4040_0000;
const SLOT_EXTRA: u64 = 0x4100_0000;
const SLOT_CONTROL: u64 = 0x4800_0000;
const SLOT_JOURNAL: u64 = 0x4810_0000;
const MGR_CODE: u64 = 0x3000_0000;
const MGR_CONTROL: u64 = 0x6000_0000;
const MGR_STATS: u64 = 0x2000_8000;
const PAGE: u64 = 0x1000;

fn round_up(x: u64, to: u64) -> u64 {
    x.div_ceil(to) * to
}

/// The size of the fixed regions services may map.
fn fixed_size(region: &str) -> u64 {
    match region {
        "serial_tx" | "uart_tx" => 0x4000,
        _ => 0x1000,
    }
}

/// The control region of slot `pd` of an instance of `kind`: its name
/// declares the service type (`interfaces::control::control_region_service`).
fn control(kind: &str, pd: &str) -> String {
    format!("{kind}:{pd}_control")
}

/// Expands the description into system.xml's text.
pub fn generate(d: &Description) -> Result<String, String> {
    let insts: Vec<(&Service, &str)> = d.instances().collect();
    let mut x = String::new();
    x.push_str(concat!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n",
        "<!--\n",
        "  Generated by `cargo xtask system` from services.toml: edit that file, not\n",
        "  this one (a test fails when the two differ). A plain Microkit system\n",
        "  description, the one both backends boot.\n",
        "\n",
        "  - I_a / I_b run the domain shell: the two slots of service instance I.\n",
        "    Their control regions, T:I_a_control and T:I_b_control, name its\n",
        "    service type T (runtime/sdf/src/topology.rs).\n",
        "  - A PD names a channel by the PD at its other end, and a mapping by its\n",
        "    setvar_vaddr symbol (else by the region's name).\n",
        "  - A client C keeps its counters in C_stats, which the manager reads.\n",
        "  - The fixed `uart` PD owns the device (the PL011 and its interrupt on\n",
        "    seL4, the terminal on the host); the serial service moves bytes\n",
        "    between its queues and the console's.\n",
        "  The update manager is the parent of every PD: it hears of every fault.\n",
        "-->\n",
        "<system>\n",
        "    <!-- Module images bundled at build time (cargo xtask builds images.bin). -->\n",
        "    <memory_region name=\"image_store\" prefill_path=\"images.bin\" />\n",
        "    <!-- Bundles uploaded over the console (4 slots of one bundle each). -->\n",
        "    <memory_region name=\"upload\" size=\"0x804000\" />\n",
        "    <!-- Capability map: written by the manager only, read-only in clients. -->\n",
        "    <memory_region name=\"capmap\" size=\"0x1000\" />\n",
        "    <!-- Console queues, between the serial service and the manager. -->\n",
        "    <memory_region name=\"serial_rx\" size=\"0x1000\" />\n",
        "    <memory_region name=\"serial_tx\" size=\"0x4000\" />\n",
        "    <!-- PL011 on QEMU virt (seL4 only; plain memory on the host), and the\n",
        "         device queues between the uart PD and the serial service. -->\n",
        "    <memory_region name=\"uart\" size=\"0x1000\" phys_addr=\"0x9000000\" />\n",
        "    <memory_region name=\"uart_rx\" size=\"0x1000\" />\n",
        "    <memory_region name=\"uart_tx\" size=\"0x4000\" />\n",
    ));
    for (s, i) in &insts {
        let k = &s.kind;
        writeln!(x, "\n    <!-- Instance {i} of service \"{k}\": code (rw in the manager, rx in the slot),").unwrap();
        x.push_str("         module data, control pages, and the transfer region and journal both slots share. -->\n");
        for (name, size) in [
            (format!("{i}_a_code"), CODE_SIZE),
            (format!("{i}_b_code"), CODE_SIZE),
            (format!("{i}_a_data"), DATA_SIZE),
            (format!("{i}_b_data"), DATA_SIZE),
            (format!("{i}_transfer"), s.transfer),
            (control(k, &format!("{i}_a")), PAGE),
            (control(k, &format!("{i}_b")), PAGE),
            (format!("{i}_journal"), s.journal),
        ] {
            writeln!(x, "    <memory_region name=\"{name}\" size=\"{size:#x}\" />").unwrap();
        }
    }
    if !d.clients.is_empty() {
        x.push('\n');
    }
    for c in &d.clients {
        writeln!(x, "    <memory_region name=\"{}_stats\" size=\"0x1000\" />", c.name).unwrap();
    }

    // The manager: every region it writes or reads, then its children.
    x.push_str(concat!(
        "\n    <protection_domain name=\"update_manager\" priority=\"254\" stack_size=\"0x10000\">\n",
        "        <program_image path=\"update_manager.elf\" />\n",
        "        <!-- The supervisor's timer: on seL4 the EL1 physical timer's\n",
        "             interrupt (PPI 30), which the manager programs from EL0 for\n",
        "             its deadlines and its watchdog; the host runtime ignores it. -->\n",
        "        <irq irq=\"30\" id=\"30\" />\n",
        "        <map mr=\"image_store\" vaddr=\"0x10000000\" perms=\"r\" />\n",
        "        <map mr=\"upload\" vaddr=\"0x50000000\" perms=\"rw\" />\n",
        "        <map mr=\"capmap\" vaddr=\"0x20000000\" perms=\"rw\" />\n",
        "        <map mr=\"serial_rx\" vaddr=\"0x20001000\" perms=\"rw\" />\n",
        "        <map mr=\"serial_tx\" vaddr=\"0x20004000\" perms=\"rw\" />\n",
    ));
    for (k, c) in d.clients.iter().enumerate() {
        let va = MGR_STATS + k as u64 * PAGE;
        writeln!(x, "        <map mr=\"{}_stats\" vaddr=\"{va:#x}\" perms=\"r\" />", c.name).unwrap();
    }
    if MGR_STATS + d.clients.len() as u64 * PAGE > 0x2001_0000 {
        return Err(format!("{FILE}: {} clients: the manager maps at most 8 stats pages", d.clients.len()));
    }
    let mut slot = 0u64;
    for (s, i) in &insts {
        for ab in ["a", "b"] {
            let code = MGR_CODE + slot * CODE_SIZE;
            let ctl = MGR_CONTROL + slot * PAGE;
            writeln!(x, "        <map mr=\"{i}_{ab}_code\" vaddr=\"{code:#x}\" perms=\"rw\" />").unwrap();
            writeln!(
                x,
                "        <map mr=\"{}\" vaddr=\"{ctl:#x}\" perms=\"rw\" />",
                control(&s.kind, &format!("{i}_{ab}"))
            )
            .unwrap();
            slot += 1;
        }
    }
    if MGR_CODE + slot * CODE_SIZE > 0x5000_0000 {
        return Err(format!("{FILE}: {} instances: the manager maps the code of at most 128 slots", insts.len()));
    }
    if !insts.is_empty() {
        x.push_str("        <!-- seL4 only: the slots' VSpaces, for cache maintenance after a\n");
        x.push_str("             module is written into a slot (the host ignores cspace). -->\n");
        x.push_str("        <cspace>\n");
        let mut n = 1;
        for (_, i) in &insts {
            for ab in ["a", "b"] {
                writeln!(x, "            <cap_vspace slot=\"{n}\" pd=\"{i}_{ab}\" />").unwrap();
                n += 1;
            }
        }
        x.push_str("        </cspace>\n");
    }
    x.push_str(concat!(
        "\n        <!-- The device: fixed, the one PD that touches the PL011. -->\n",
        "        <protection_domain name=\"uart\" id=\"0\" priority=\"250\">\n",
        "            <program_image path=\"uart_driver.elf\" />\n",
        "            <map mr=\"uart_rx\" vaddr=\"0x20001000\" perms=\"rw\" setvar_vaddr=\"rx_queue\" />\n",
        "            <map mr=\"uart_tx\" vaddr=\"0x20004000\" perms=\"rw\" setvar_vaddr=\"tx_queue\" />\n",
        "            <map mr=\"capmap\" vaddr=\"0x20000000\" perms=\"r\" setvar_vaddr=\"capmap\" />\n",
        "            <map mr=\"uart\" vaddr=\"0x20010000\" perms=\"rw\" cached=\"false\" setvar_vaddr=\"uart_base\" />\n",
        "            <irq irq=\"33\" id=\"7\" />\n",
        "        </protection_domain>\n",
    ));
    let mut id = 1;
    for (s, i) in &insts {
        let mut extra = SLOT_EXTRA.max(round_up(SLOT_TRANSFER + s.transfer, 0x10_0000));
        let mut extra_maps = String::new();
        for m in &s.maps {
            let rw = if m.region == "capmap" { "r" } else { "rw" };
            writeln!(
                extra_maps,
                "            <map mr=\"{}\" vaddr=\"{extra:#x}\" perms=\"{rw}\" setvar_vaddr=\"{}\" />",
                m.region, m.local
            )
            .unwrap();
            extra += fixed_size(&m.region);
        }
        if extra > SLOT_CONTROL {
            return Err(format!(
                "{FILE}: [[service]] type = \"{}\": its transfer region and maps do not fit below {SLOT_CONTROL:#x}",
                s.kind
            ));
        }
        for ab in ["a", "b"] {
            writeln!(
                x,
                "\n        <protection_domain name=\"{i}_{ab}\" id=\"{id}\" priority=\"{}\" stack_size=\"0x10000\">",
                s.priority
            )
            .unwrap();
            x.push_str("            <program_image path=\"domain_shell.elf\" />\n");
            for (mr, va, perms, var) in [
                (format!("{i}_{ab}_code"), SLOT_CODE, "rx", "module_code"),
                (format!("{i}_{ab}_data"), SLOT_DATA, "rw", "module_data"),
                (format!("{i}_transfer"), SLOT_TRANSFER, "rw", "transfer"),
                (control(&s.kind, &format!("{i}_{ab}")), SLOT_CONTROL, "rw", "control"),
                (format!("{i}_journal"), SLOT_JOURNAL, "rw", "journal"),
            ] {
                writeln!(
                    x,
                    "            <map mr=\"{mr}\" vaddr=\"{va:#x}\" perms=\"{perms}\" setvar_vaddr=\"{var}\" />"
                )
                .unwrap();
            }
            x.push_str(&extra_maps);
            x.push_str("        </protection_domain>\n");
            id += 1;
        }
    }
    for c in &d.clients {
        writeln!(
            x,
            "\n        <protection_domain name=\"{}\" id=\"{id}\" priority=\"{}\" stack_size=\"0x10000\">",
            c.name, c.priority
        )
        .unwrap();
        writeln!(x, "            <program_image path=\"{}.elf\" />", c.program).unwrap();
        x.push_str("            <map mr=\"capmap\" vaddr=\"0x20000000\" perms=\"r\" setvar_vaddr=\"capmap\" />\n");
        writeln!(
            x,
            "            <map mr=\"{}_stats\" vaddr=\"{MGR_STATS:#x}\" perms=\"rw\" setvar_vaddr=\"stats\" />",
            c.name
        )
        .unwrap();
        x.push_str("        </protection_domain>\n");
        id += 1;
    }
    x.push_str("    </protection_domain>\n\n");

    // Channels: the manager to every slot (a slot's id 0); each slot to the
    // fixed PDs it notifies; each client to both slots of what it uses.
    let mut next_id = std::collections::BTreeMap::<String, u64>::new();
    next_id.insert("uart".into(), 1);
    let mut take = |pd: &str, reserved: &[u64]| -> u64 {
        let n = next_id.entry(pd.to_owned()).or_insert(0);
        while reserved.contains(n) {
            *n += 1;
        }
        let id = *n;
        *n += 1;
        id
    };
    let channel = |x: &mut String, (a, ida, pp): (&str, u64, bool), (b, idb): (&str, u64)| {
        let pp = if pp { " pp=\"true\"" } else { "" };
        writeln!(x, "    <channel>\n        <end pd=\"{a}\" id=\"{ida}\"{pp} />\n        <end pd=\"{b}\" id=\"{idb}\" />\n    </channel>")
            .unwrap();
    };
    take("update_manager", &[]); // id 0: unused, as before
    for (_, i) in &insts {
        for ab in ["a", "b"] {
            let pd = format!("{i}_{ab}");
            let (m, s) = (take("update_manager", &[30]), take(&pd, &[]));
            channel(&mut x, ("update_manager", m, false), (&pd, s));
        }
    }
    for (s, i) in &insts {
        for p in &s.notify {
            for ab in ["a", "b"] {
                let pd = format!("{i}_{ab}");
                let (f, sl) = (take(p, &[7]), take(&pd, &[]));
                channel(&mut x, (p, f, false), (&pd, sl));
            }
        }
    }
    for c in &d.clients {
        for u in &c.uses {
            for ab in ["a", "b"] {
                let pd = format!("{u}_{ab}");
                let (cl, sl) = (take(&c.name, &[]), take(&pd, &[]));
                channel(&mut x, (&c.name, cl, true), (&pd, sl));
            }
        }
    }
    for (pd, n) in &next_id {
        if *n > 62 {
            return Err(format!("{FILE}: PD '{pd}' needs {n} channels; Microkit allows 62"));
        }
    }
    x.push_str("</system>\n");
    Ok(x)
}

/// The workspace's services.toml, expanded; also checked the way the
/// microkit tool checks a description, and for the naming conventions.
pub fn generate_workspace() -> Result<String, String> {
    let path = crate::workspace_root().join(FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let xml = generate(&parse(&text)?)?;
    let sys = sdf::parse(&xml).map_err(|e| format!("the generated system.xml: {e}"))?;
    sys.check().map_err(|e| format!("the generated system.xml: {e}"))?;
    sdf::topology::check(&sys).map_err(|e| format!("the generated system.xml: {e}"))?;
    Ok(xml)
}

/// `cargo xtask system [--check]`: writes system.xml from services.toml,
/// or only says whether it is up to date.
pub fn write(check_only: bool) -> Result<String, String> {
    let xml = generate_workspace()?;
    let path = crate::workspace_root().join("system.xml");
    let now = std::fs::read_to_string(&path).unwrap_or_default();
    if now == xml {
        return Ok(format!("{} is up to date with {FILE}", path.display()));
    }
    if check_only {
        return Err(format!("{} is not what {FILE} generates: run `{REGENERATE}`", path.display()));
    }
    std::fs::write(&path, &xml).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(format!("wrote {} from {FILE}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_description_names_the_entry_at_fault() {
        let e = parse("[[service]]\ntype = \"kv\"\nimages = [\"kv-v1\"]\ninstances = [\"kv0\"]\n[[client]]\nname = \"c\"\nprogram = \"kv_client\"\nuses = [\"kv9\"]\n").unwrap_err();
        assert!(e.contains("[[client]] name = \"c\"") && e.contains("'kv9'"), "{e}");
        let e = parse("[[service]]\ntype = \"kv\"\nimages = []\ninstances = [\"kv0\"]\n").unwrap_err();
        assert!(e.contains("type = \"kv\"") && e.contains("not test-only"), "{e}");
        let e = parse("[[service]]\ntype = \"kv\"\nimage = []\n").unwrap_err();
        assert!(e.contains("image"), "{e}");
    }
}
