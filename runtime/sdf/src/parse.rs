//! XML -> [`System`], rejecting what the microkit tool rejects at parse time:
//! unknown elements and attributes, missing required attributes, numbers
//! that are not numbers.
use crate::{model::*, SdfError};
use roxmltree::{Document, Node};

pub fn parse(xml: &str) -> Result<System, SdfError> {
    let doc = Document::parse(xml).map_err(|e| SdfError {
        line: e.pos().row,
        element: String::new(),
        message: format!("not well-formed XML: {e}"),
    })?;
    let root = doc.root_element();
    let mut p = Parser { doc: &doc, sys: System::default() };
    if root.tag_name().name() != "system" {
        return Err(p.err(root, format!("the root element must be <system>, not <{}>", root.tag_name().name())));
    }
    check_attrs(&p, root, &[])?;
    // Regions first, so maps can be checked against them in any order.
    let mut channels = Vec::new();
    for n in root.children().filter(Node::is_element) {
        match n.tag_name().name() {
            "memory_region" => {
                let r = p.region(n)?;
                p.sys.regions.push(r);
            }
            "protection_domain" => p.pd(n, None)?,
            "channel" => channels.push(n),
            "domains" => {} // domain schedules do not matter on either backend here
            other => return Err(p.err(n, format!("unknown element <{other}> in <system>"))),
        }
    }
    for n in channels {
        let c = p.channel(n)?;
        p.sys.channels.push(c);
    }
    Ok(p.sys)
}

struct Parser<'a, 'i> {
    doc: &'a Document<'i>,
    sys: System,
}

fn describe(n: Node) -> String {
    match n.attribute("name").or_else(|| n.attribute("mr")).or_else(|| n.attribute("pd")) {
        Some(name) => {
            let key = if n.has_attribute("name") {
                "name"
            } else if n.has_attribute("mr") {
                "mr"
            } else {
                "pd"
            };
            format!("<{} {key}=\"{name}\">", n.tag_name().name())
        }
        None => format!("<{}>", n.tag_name().name()),
    }
}

fn check_attrs(p: &Parser, n: Node, allowed: &[&str]) -> Result<(), SdfError> {
    for a in n.attributes() {
        if !allowed.contains(&a.name()) {
            return Err(p.err(n, format!("unknown attribute '{}'", a.name())));
        }
    }
    Ok(())
}

/// Microkit numbers: decimal or `0x` hex, `_` allowed as a separator.
pub(crate) fn parse_number(s: &str) -> Option<u64> {
    let s = s.trim().replace('_', "");
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

impl Parser<'_, '_> {
    fn origin(&self, n: Node) -> Origin {
        Origin { line: self.doc.text_pos_at(n.range().start).row, element: describe(n) }
    }

    fn err(&self, n: Node, message: String) -> SdfError {
        let o = self.origin(n);
        SdfError { line: o.line, element: o.element, message }
    }

    fn required<'n>(&self, n: Node<'n, '_>, attr: &str) -> Result<&'n str, SdfError> {
        n.attribute(attr).ok_or_else(|| self.err(n, format!("missing required attribute '{attr}'")))
    }

    fn number(&self, n: Node, attr: &str) -> Result<Option<u64>, SdfError> {
        n.attribute(attr)
            .map(|v| parse_number(v).ok_or_else(|| self.err(n, format!("attribute '{attr}': '{v}' is not a number"))))
            .transpose()
    }

    fn boolean(&self, n: Node, attr: &str, default: bool) -> Result<bool, SdfError> {
        match n.attribute(attr) {
            None => Ok(default),
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(v) => Err(self.err(n, format!("attribute '{attr}': '{v}' is not 'true' or 'false'"))),
        }
    }

    fn region(&self, n: Node) -> Result<MemoryRegion, SdfError> {
        check_attrs(self, n, &["name", "size", "page_size", "phys_addr", "prefill_path", "prefill_bootinfo"])?;
        if n.children().any(|c| c.is_element()) {
            return Err(self.err(n, "<memory_region> takes no child elements".into()));
        }
        let prefill_path = n.attribute("prefill_path").map(str::to_owned);
        let size = match (self.number(n, "size")?, &prefill_path) {
            (Some(s), _) => s,
            // Sized from the prefill file by `check_files`.
            (None, Some(_)) => 0,
            (None, None) => return Err(self.err(n, "missing required attribute 'size'".into())),
        };
        Ok(MemoryRegion {
            name: self.required(n, "name")?.to_owned(),
            size,
            page_size: self.number(n, "page_size")?,
            phys_addr: self.number(n, "phys_addr")?,
            prefill_path,
            origin: self.origin(n),
        })
    }

    fn pd(&mut self, n: Node, parent: Option<usize>) -> Result<(), SdfError> {
        let mut allowed =
            vec!["name", "priority", "budget", "period", "passive", "stack_size", "cpu", "smc", "fpu", "domain"];
        if parent.is_some() {
            allowed.extend(["id", "setvar_id"]);
        }
        check_attrs(self, n, &allowed)?;
        let name = self.required(n, "name")?.to_owned();
        let priority = self.number(n, "priority")?.unwrap_or(0);
        if priority > MAX_PRIORITY {
            return Err(self.err(n, format!("priority {priority} is out of range 0..={MAX_PRIORITY}")));
        }
        let child_id = match parent {
            Some(_) => {
                Some(self.number(n, "id")?.ok_or_else(|| self.err(n, "missing required attribute 'id'".into()))?)
            }
            None => None,
        };
        let index = self.sys.pds.len();
        self.sys.pds.push(ProtectionDomain {
            name,
            priority: priority as u8,
            passive: self.boolean(n, "passive", false)?,
            stack_size: self.number(n, "stack_size")?.unwrap_or(0x2000),
            program_image: String::new(),
            maps: Vec::new(),
            irqs: Vec::new(),
            parent,
            child_id,
            origin: self.origin(n),
        });
        let mut image = None;
        for c in n.children().filter(Node::is_element) {
            match c.tag_name().name() {
                "program_image" => {
                    check_attrs(self, c, &["path", "path_for_symbols"])?;
                    if image.replace(self.required(c, "path")?.to_owned()).is_some() {
                        return Err(self.err(n, "more than one <program_image>".into()));
                    }
                }
                "map" => {
                    let m = self.map(c)?;
                    self.sys.pds[index].maps.push(m);
                }
                "irq" => {
                    check_attrs(self, c, &["irq", "id", "trigger", "setvar_id"])?;
                    let irq =
                        self.number(c, "irq")?.ok_or_else(|| self.err(c, "missing required attribute 'irq'".into()))?;
                    let id =
                        self.number(c, "id")?.ok_or_else(|| self.err(c, "missing required attribute 'id'".into()))?;
                    let origin = self.origin(c);
                    self.sys.pds[index].irqs.push(Irq { irq, id, origin });
                }
                "setvar" => check_attrs(self, c, &["symbol", "region_paddr"])?,
                "cspace" => {} // extra caps: seL4 only, nothing to emulate
                "protection_domain" => self.pd(c, Some(index))?,
                other => return Err(self.err(c, format!("unknown element <{other}> in <protection_domain>"))),
            }
        }
        self.sys.pds[index].program_image =
            image.ok_or_else(|| self.err(n, "missing required element <program_image>".into()))?;
        Ok(())
    }

    fn map(&self, n: Node) -> Result<Map, SdfError> {
        check_attrs(
            self,
            n,
            &["mr", "vaddr", "perms", "cached", "setvar_vaddr", "setvar_size", "setvar_prefill_size"],
        )?;
        let perms_text = n.attribute("perms").unwrap_or("rw");
        let perms = Perms::parse(perms_text).ok_or_else(|| {
            self.err(n, format!("perms '{perms_text}' is not a combination of r, w and x (and not write-only)"))
        })?;
        Ok(Map {
            mr: self.required(n, "mr")?.to_owned(),
            vaddr: self.number(n, "vaddr")?.ok_or_else(|| self.err(n, "missing required attribute 'vaddr'".into()))?,
            perms,
            cached: self.boolean(n, "cached", true)?,
            setvar_vaddr: n.attribute("setvar_vaddr").map(str::to_owned),
            setvar_size: n.attribute("setvar_size").map(str::to_owned),
            origin: self.origin(n),
        })
    }

    fn channel(&self, n: Node) -> Result<Channel, SdfError> {
        check_attrs(self, n, &[])?;
        let ends: Vec<Node> = n.children().filter(Node::is_element).collect();
        if ends.len() != 2 || ends.iter().any(|e| e.tag_name().name() != "end") {
            return Err(self.err(n, "a <channel> must have exactly two <end> elements".into()));
        }
        let end = |e: Node| -> Result<End, SdfError> {
            check_attrs(self, e, &["pd", "id", "pp", "notify", "setvar_id"])?;
            let name = self.required(e, "pd")?;
            let pd = self.sys.pd(name).ok_or_else(|| self.err(e, format!("no protection domain named '{name}'")))?;
            Ok(End {
                pd,
                id: self.number(e, "id")?.ok_or_else(|| self.err(e, "missing required attribute 'id'".into()))?,
                pp: self.boolean(e, "pp", false)?,
                notify: self.boolean(e, "notify", true)?,
            })
        };
        Ok(Channel { ends: [end(ends[0])?, end(ends[1])?], origin: self.origin(n) })
    }
}
