//! `<protection_domain>` and what it holds: program image, maps, IRQs,
//! setvars, child PDs, a virtual machine, extra caps.
use super::Parser;
use crate::model::*;
use crate::platform::*;
use crate::SdfError;
use roxmltree::Node;

impl Parser<'_, '_> {
    pub(super) fn pd(&mut self, n: Node, parent: Option<usize>) -> Result<(), SdfError> {
        let mut allowed =
            vec!["name", "priority", "budget", "period", "passive", "stack_size", "cpu", "smc", "fpu", "domain"];
        if parent.is_some() {
            allowed.extend(["id", "setvar_id"]);
        }
        self.check_attrs(n, &allowed)?;
        let name = self.required(n, "name")?.to_owned();
        let child_id = match parent {
            Some(_) => Some(self.required_number(n, "id")?),
            None => None,
        };
        let (budget, period) = self.budget_period(n)?;
        let priority = self.number(n, "priority")?.unwrap_or(0);
        if priority > MAX_PRIORITY {
            return Err(self.err(n, format!("priority {priority} is out of range 0..={MAX_PRIORITY}")));
        }
        let stack_size = self.number(n, "stack_size")?.unwrap_or(DEFAULT_STACK_SIZE);
        if !(MIN_STACK_SIZE..=MAX_STACK_SIZE).contains(&stack_size) || !stack_size.is_multiple_of(SMALL_PAGE) {
            return Err(self.err(n, format!("stack_size {stack_size:#x} must be 4 KiB..16 MiB and page aligned")));
        }
        let cpu = self.number(n, "cpu")?.unwrap_or(0);
        if cpu >= NUM_CORES {
            return Err(self.err(n, format!("cpu {cpu}: the platform has {NUM_CORES} core(s)")));
        }
        let domain = self.pd_domain(n)?;
        let index = self.sys.pds.len();
        self.sys.pds.push(ProtectionDomain {
            name,
            priority: priority as u8,
            passive: self.boolean(n, "passive", false)?,
            stack_size,
            budget,
            period,
            cpu: cpu as u8,
            smc: self.boolean(n, "smc", false)?,
            fpu: self.boolean(n, "fpu", true)?,
            domain,
            program_image: String::new(),
            program_image_for_symbols: None,
            maps: Vec::new(),
            irqs: Vec::new(),
            setvars: Vec::new(),
            symbols: Vec::new(),
            cap_maps: Vec::new(),
            vm: None,
            parent,
            child_id,
            origin: self.origin(n),
        });
        if let (Some(parent), Some(sym)) = (parent, n.attribute("setvar_id")) {
            self.setvar(parent, sym, n)?;
        }
        let mut image = None;
        let mut cspace = false;
        for c in n.children().filter(Node::is_element) {
            match c.tag_name().name() {
                "program_image" => {
                    self.check_attrs(c, &["path", "path_for_symbols"])?;
                    if image.replace(self.required(c, "path")?.to_owned()).is_some() {
                        return Err(self.err(n, "more than one <program_image>".into()));
                    }
                    self.sys.pds[index].program_image_for_symbols = c.attribute("path_for_symbols").map(Into::into);
                }
                "map" => {
                    let m = self.map(c, true, pd_map_limit(stack_size))?;
                    for sym in [&m.setvar_vaddr, &m.setvar_size, &m.setvar_prefill_size].into_iter().flatten() {
                        self.setvar(index, sym, c)?;
                    }
                    self.sys.pds[index].maps.push(m);
                }
                "irq" => self.irq(c, index)?,
                "setvar" => {
                    self.check_attrs(c, &["symbol", "region_paddr"])?;
                    let symbol = self.required(c, "symbol")?.to_owned();
                    let region_paddr = self.required(c, "region_paddr")?.to_owned();
                    self.setvar(index, &symbol, c)?;
                    let origin = self.origin(c);
                    self.sys.pds[index].setvars.push(SetVar { symbol, region_paddr, origin });
                }
                "protection_domain" => self.pd(c, Some(index))?,
                "virtual_machine" => {
                    if self.sys.pds[index].vm.is_some() {
                        return Err(self.err(n, "more than one <virtual_machine>".into()));
                    }
                    let vm = self.vm(c)?;
                    self.sys.pds[index].vm = Some(vm);
                }
                "cspace" => {
                    if std::mem::replace(&mut cspace, true) {
                        return Err(self.err(n, "more than one <cspace>".into()));
                    }
                    self.cspace(c, index)?;
                }
                "ioport" => return Err(self.err(c, "<ioport> exists only on x86".into())),
                other => return Err(self.err(c, format!("unknown element <{other}> in <protection_domain>"))),
            }
        }
        self.sys.pds[index].program_image =
            image.ok_or_else(|| self.err(n, "missing required element <program_image>".into()))?;
        Ok(())
    }

    /// A `<map>` in a PD (`setvar` attributes allowed) or in a VM, at a
    /// vaddr below `limit`.
    fn map(&self, n: Node, in_pd: bool, limit: u64) -> Result<Map, SdfError> {
        let mut allowed = vec!["mr", "vaddr", "perms", "cached"];
        if in_pd {
            allowed.extend(["setvar_vaddr", "setvar_size", "setvar_prefill_size"]);
        }
        self.check_attrs(n, &allowed)?;
        let mr = self.required(n, "mr")?.to_owned();
        let vaddr = self.required_number(n, "vaddr")?;
        if vaddr >= limit {
            return Err(self.err(n, format!("vaddr {vaddr:#x} must be below {limit:#x}")));
        }
        let perms_text = n.attribute("perms").unwrap_or("rw");
        let perms = Perms::parse(perms_text).ok_or_else(|| {
            self.err(n, format!("perms '{perms_text}' is not a combination of r, w and x (and not write-only)"))
        })?;
        let attr = |a: &str| n.attribute(a).map(str::to_owned);
        Ok(Map {
            mr,
            vaddr,
            perms,
            cached: self.boolean(n, "cached", true)?,
            setvar_vaddr: attr("setvar_vaddr"),
            setvar_size: attr("setvar_size"),
            setvar_prefill_size: attr("setvar_prefill_size"),
            origin: self.origin(n),
        })
    }

    fn irq(&mut self, n: Node, pd: usize) -> Result<(), SdfError> {
        let id = self.decimal_id(n)?;
        if let Some(sym) = n.attribute("setvar_id") {
            self.setvar(pd, sym, n)?;
        }
        if n.has_attribute("pin") || n.has_attribute("pcidev") {
            return Err(self.err(n, "I/O APIC and MSI interrupts (pin, pcidev) exist only on x86".into()));
        }
        self.check_attrs(n, &["irq", "id", "trigger", "setvar_id"])?;
        let text = self.required(n, "irq")?;
        // The tool reads the IRQ number as plain decimal.
        let irq = text.parse().map_err(|_| self.err(n, format!("irq '{text}' is not a decimal number")))?;
        let edge = match n.attribute("trigger") {
            None | Some("level") => false,
            Some("edge") => true,
            Some(t) => return Err(self.err(n, format!("trigger '{t}' is not 'level' or 'edge'"))),
        };
        let origin = self.origin(n);
        self.sys.pds[pd].irqs.push(Irq { irq, id, edge, origin });
        Ok(())
    }

    fn vm(&self, n: Node) -> Result<VirtualMachine, SdfError> {
        self.check_attrs(n, &["name", "budget", "period", "priority"])?;
        let name = self.required(n, "name")?.to_owned();
        let (budget, period) = self.budget_period(n)?;
        let priority = self.number(n, "priority")?.unwrap_or(0);
        let mut vcpus: Vec<Vcpu> = Vec::new();
        let mut maps = Vec::new();
        for c in n.children().filter(Node::is_element) {
            match c.tag_name().name() {
                "vcpu" => {
                    self.check_attrs(c, &["id", "setvar_id", "cpu"])?;
                    let text = self.required(c, "id")?;
                    let id: u64 =
                        text.parse().map_err(|_| self.err(c, format!("id '{text}' is not a decimal number")))?;
                    if id >= MAX_CHANNEL_ID {
                        return Err(self.err(c, format!("vcpu id {id} must be below {MAX_CHANNEL_ID}")));
                    }
                    if vcpus.iter().any(|v| v.id == id) {
                        return Err(self.err(c, format!("vcpu id {id} is used twice in virtual machine '{name}'")));
                    }
                    let cpu = self.number(c, "cpu")?.unwrap_or(0);
                    if cpu >= NUM_CORES {
                        return Err(self.err(c, format!("cpu {cpu}: the platform has {NUM_CORES} core(s)")));
                    }
                    vcpus.push(Vcpu { id, cpu: cpu as u8, origin: self.origin(c) });
                }
                "map" => maps.push(self.map(c, false, VM_MAP_LIMIT)?),
                other => return Err(self.err(c, format!("unknown element <{other}> in <virtual_machine>"))),
            }
        }
        if vcpus.is_empty() {
            return Err(self.err(n, "a <virtual_machine> needs at least one <vcpu>".into()));
        }
        Ok(VirtualMachine { name, priority, budget, period, vcpus, maps, origin: self.origin(n) })
    }

    fn cspace(&mut self, n: Node, pd: usize) -> Result<(), SdfError> {
        self.check_attrs(n, &[])?;
        for c in n.children().filter(Node::is_element) {
            let kind = match c.tag_name().name() {
                "cap_tcb" => CapKind::Tcb,
                "cap_sc" => CapKind::Sc,
                "cap_vspace" => CapKind::VSpace,
                other => return Err(self.err(c, format!("unknown element <{other}> in <cspace>"))),
            };
            self.check_attrs(c, &["slot", "pd"])?;
            let target = self.required(c, "pd")?.to_owned();
            let slot = self.required_number(c, "slot")?;
            if slot == 0 || slot >= CAP_MAP_MAX_SLOT {
                return Err(self.err(c, format!("slot {slot} must be 1..{CAP_MAP_MAX_SLOT} (0 is Microkit's)")));
            }
            let origin = self.origin(c);
            self.sys.pds[pd].cap_maps.push(CapMap { kind, pd: target, slot, origin });
        }
        Ok(())
    }
}
