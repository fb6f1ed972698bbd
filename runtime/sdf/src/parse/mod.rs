//! XML -> [`System`], refusing what the microkit tool refuses while it
//! reads the file: unknown elements and attributes, missing required
//! attributes, numbers that are not numbers, values out of range, text
//! inside `<system>`, a symbol set twice in one PD.
mod domains;
mod pd;

use crate::platform::{parse_decimal_id, parse_number, BOOTINFO_KINDS, PAGE_SIZES, SMALL_PAGE};
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
    // The tool checks no attributes on <system>, but text in it is refused.
    if let Some(text) = root.children().find(|c| c.is_text() && !c.text().unwrap_or("").trim().is_empty()) {
        let text = text.text().unwrap_or("").trim();
        return Err(p.err(root, format!("unexpected text '{text}' in <system>")));
    }
    p.sys.origin = p.origin(root);
    let mut channels = Vec::new();
    for n in root.children().filter(Node::is_element) {
        match n.tag_name().name() {
            "memory_region" => {
                let r = p.region(n)?;
                p.sys.regions.push(r);
            }
            "protection_domain" => p.pd(n, None)?,
            "channel" => channels.push(n),
            "domains" => p.domains(n)?,
            "virtual_machine" => {
                return Err(p.err(n, "a <virtual_machine> must be the child of a <protection_domain>".into()))
            }
            "io_address_space" => {
                return Err(p.err(n, "<io_address_space> needs an IOMMU, which this platform lacks".into()))
            }
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
    let tag = n.tag_name().name();
    match ["name", "mr", "pd", "symbol", "irq", "id"].into_iter().find_map(|k| n.attribute(k).map(|v| (k, v))) {
        Some((key, value)) => format!("<{tag} {key}=\"{value}\">"),
        None => format!("<{tag}>"),
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

    fn check_attrs(&self, n: Node, allowed: &[&str]) -> Result<(), SdfError> {
        match n.attributes().find(|a| !allowed.contains(&a.name())) {
            Some(a) => Err(self.err(n, format!("unknown attribute '{}'", a.name()))),
            None => Ok(()),
        }
    }

    fn no_children(&self, n: Node) -> Result<(), SdfError> {
        match n.children().find(Node::is_element) {
            Some(c) => {
                Err(self.err(c, format!("unknown element <{}> in <{}>", c.tag_name().name(), n.tag_name().name())))
            }
            None => Ok(()),
        }
    }

    fn required<'n>(&self, n: Node<'n, '_>, attr: &str) -> Result<&'n str, SdfError> {
        n.attribute(attr).ok_or_else(|| self.err(n, format!("missing required attribute '{attr}'")))
    }

    fn number(&self, n: Node, attr: &str) -> Result<Option<u64>, SdfError> {
        n.attribute(attr)
            .map(|v| parse_number(v).ok_or_else(|| self.err(n, format!("attribute '{attr}': '{v}' is not a number"))))
            .transpose()
    }

    fn required_number(&self, n: Node, attr: &str) -> Result<u64, SdfError> {
        self.required(n, attr)?;
        Ok(self.number(n, attr)?.unwrap_or_default())
    }

    /// A channel or IRQ id: decimal only, below [`MAX_CHANNEL_ID`].
    fn decimal_id(&self, n: Node) -> Result<u64, SdfError> {
        parse_decimal_id(self.required(n, "id")?).map_err(|m| self.err(n, m))
    }

    fn boolean(&self, n: Node, attr: &str, default: bool) -> Result<bool, SdfError> {
        match n.attribute(attr) {
            None => Ok(default),
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(v) => Err(self.err(n, format!("attribute '{attr}': '{v}' is not 'true' or 'false'"))),
        }
    }

    /// `budget` and `period` (microseconds), period defaulting to the budget.
    fn budget_period(&self, n: Node) -> Result<(u64, u64), SdfError> {
        let budget = self.number(n, "budget")?.unwrap_or(crate::platform::DEFAULT_BUDGET);
        let period = self.number(n, "period")?.unwrap_or(budget);
        if budget > period {
            return Err(self.err(n, format!("budget ({budget}) must be less than, or equal to, period ({period})")));
        }
        Ok((budget, period))
    }

    /// Records that PD `pd` sets `symbol`, refusing a second setting.
    fn setvar(&mut self, pd: usize, symbol: &str, n: Node) -> Result<(), SdfError> {
        let owner = &self.sys.pds[pd];
        if owner.symbols.iter().any(|s| s.name == symbol) {
            return Err(self.err(n, format!("symbol '{symbol}' is set twice in '{}'", owner.name)));
        }
        let origin = self.origin(n);
        self.sys.pds[pd].symbols.push(Symbol { name: symbol.to_owned(), origin });
        Ok(())
    }

    fn region(&self, n: Node) -> Result<MemoryRegion, SdfError> {
        self.check_attrs(n, &["name", "size", "page_size", "phys_addr", "prefill_path", "prefill_bootinfo"])?;
        self.no_children(n)?;
        let name = self.required(n, "name")?.to_owned();
        let page = self.number(n, "page_size")?;
        if let Some(page) = page.filter(|p| !PAGE_SIZES.contains(p)) {
            return Err(self.err(n, format!("page_size {page:#x} is not one of 0x1000, 0x200000")));
        }
        let prefill_path = n.attribute("prefill_path").map(str::to_owned);
        let prefill_bootinfo = n.attribute("prefill_bootinfo").map(str::to_owned);
        if let Some(kind) = prefill_bootinfo.as_deref().filter(|k| !BOOTINFO_KINDS.contains(k)) {
            return Err(self.err(n, format!("prefill_bootinfo '{kind}' is not one of {}", BOOTINFO_KINDS.join(", "))));
        }
        if prefill_path.is_some() && prefill_bootinfo.is_some() {
            return Err(self.err(n, "prefill_path and prefill_bootinfo cannot both be given".into()));
        }
        let page_size = page.unwrap_or(SMALL_PAGE);
        let size = match (self.number(n, "size")?, &prefill_path, &prefill_bootinfo) {
            // Any file is larger than that (a region of size 0 is allowed,
            // but cannot be mapped: see `check_maps`).
            (Some(0), Some(_), _) => return Err(self.err(n, "size 0 is smaller than any prefill file".into())),
            (Some(s), _, _) => s,
            (None, _, Some(_)) => page_size,
            // Sized from the prefill file by `check_files`.
            (None, Some(_), None) => 0,
            (None, None, None) => {
                return Err(self.err(n, "missing required attribute 'size' (the region is not prefilled)".into()))
            }
        };
        Ok(MemoryRegion {
            name,
            size,
            page_size: page,
            phys_addr: self.number(n, "phys_addr")?,
            prefill_path,
            prefill_bootinfo,
            origin: self.origin(n),
        })
    }

    fn channel(&mut self, n: Node) -> Result<Channel, SdfError> {
        self.check_attrs(n, &[])?;
        let mut ends = Vec::new();
        for e in n.children().filter(Node::is_element) {
            if e.tag_name().name() != "end" {
                return Err(self.err(e, format!("unknown element <{}> in <channel>", e.tag_name().name())));
            }
            self.check_attrs(e, &["pd", "id", "pp", "notify", "setvar_id"])?;
            let name = self.required(e, "pd")?;
            let id = self.decimal_id(e)?;
            let notify = self.boolean(e, "notify", true)?;
            let pp = self.boolean(e, "pp", false)?;
            let pd = self.sys.pd(name).ok_or_else(|| self.err(e, format!("no protection domain named '{name}'")))?;
            let setvar_id = e.attribute("setvar_id").map(str::to_owned);
            ends.push(End { pd, id, pp, notify, setvar_id });
        }
        let Ok([a, b]) = <[End; 2]>::try_from(ends) else {
            return Err(self.err(n, "a <channel> must have exactly two <end> elements".into()));
        };
        if a.pp && b.pp {
            return Err(self.err(n, "protected calls may go one way only: both ends have pp=\"true\"".into()));
        }
        for end in [&a, &b] {
            if let Some(sym) = &end.setvar_id {
                self.setvar(end.pd, sym, n)?;
            }
        }
        Ok(Channel { ends: [a, b], origin: self.origin(n) })
    }
}
