//! `<domains>`: named scheduling domains and the domain schedule, and the
//! `domain` attribute of a PD that follows them.
use super::Parser;
use crate::model::*;
use crate::platform::{parse_number, NUM_CORES, NUM_DOMAINS, NUM_DOMAIN_SCHEDULES};
use crate::SdfError;
use roxmltree::Node;

impl Parser<'_, '_> {
    pub(super) fn domains(&mut self, n: Node) -> Result<(), SdfError> {
        // A second <domains> is refused only if the first declared a domain.
        if self.sys.domains.as_ref().is_some_and(|d| !d.ids.is_empty()) {
            return Err(self.err(n, "more than one <domains>".into()));
        }
        self.check_attrs(n, &[])?;
        if NUM_CORES != 1 {
            return Err(self.err(n, "the domain scheduler needs a single-core kernel".into()));
        }
        let mut named: Vec<(String, Option<u64>)> = Vec::new();
        let mut schedule = None;
        for c in n.children().filter(Node::is_element) {
            match c.tag_name().name() {
                "domain" => {
                    self.check_attrs(c, &["name", "id"])?;
                    let name = self.required(c, "name")?.to_owned();
                    let id = self.number(c, "id")?;
                    if let Some(id) = id.filter(|&i| i >= NUM_DOMAINS) {
                        return Err(self.err(c, format!("domain id {id} must be below {NUM_DOMAINS}")));
                    }
                    if named.iter().any(|(other, _)| *other == name) {
                        return Err(self.err(c, format!("domain '{name}' is declared twice")));
                    }
                    if id.is_some() && named.iter().any(|(_, other)| *other == id) {
                        return Err(self.err(c, format!("domain id {} is used twice", id.unwrap_or_default())));
                    }
                    named.push((name, id));
                }
                "domain_schedule" => {
                    if schedule.replace(c).is_some() {
                        return Err(self.err(c, "more than one <domain_schedule>".into()));
                    }
                }
                other => return Err(self.err(c, format!("unknown element <{other}> in <domains>"))),
            }
        }
        let schedule = schedule.ok_or_else(|| self.err(n, "missing required element <domain_schedule>".into()))?;
        // Domains without an id take the lowest free ones, up to and
        // including NUM_DOMAINS (as the tool hands them out).
        let mut ids: Vec<(String, u8)> = Vec::new();
        let given: Vec<u64> = named.iter().filter_map(|(_, id)| *id).collect();
        let mut free = (0..=NUM_DOMAINS).filter(|i| !given.contains(i));
        for (name, id) in named {
            let id = match id {
                Some(id) => id,
                None => free.next().ok_or_else(|| self.err(n, format!("more than {} domains", NUM_DOMAINS + 1)))?,
            };
            ids.push((name, id as u8));
        }
        let schedule_len = self.schedule(schedule, &ids)?;
        self.sys.domains = Some(Domains { ids, schedule_len, origin: self.origin(n) });
        Ok(())
    }

    fn schedule(&self, n: Node, ids: &[(String, u8)]) -> Result<usize, SdfError> {
        self.check_attrs(n, &["index_shift", "start_index"])?;
        let start = self.number(n, "start_index")?.unwrap_or(0);
        let shift = self.number(n, "index_shift")?;
        let mut len = 0u64;
        for c in n.children().filter(Node::is_element) {
            match c.tag_name().name() {
                "schedule_entry" => {
                    self.check_attrs(c, &["domain", "duration"])?;
                    let domain = self.required(c, "domain")?;
                    let duration = self.required(c, "duration")?;
                    if !ids.iter().any(|(name, _)| name == domain) {
                        return Err(self.err(c, format!("no domain named '{domain}'")));
                    }
                    let bad = |why: &str| self.err(c, format!("duration '{duration}' {why}"));
                    let (value, unit) = duration.split_once(' ').ok_or_else(|| bad("needs a value and a unit"))?;
                    match parse_number(value) {
                        None => return Err(bad("is not a number")),
                        Some(0) => return Err(bad("must be non-zero")),
                        Some(_) => {}
                    }
                    if unit != "us" && unit != "ticks" {
                        return Err(bad("must be in 'us' or 'ticks'"));
                    }
                }
                "schedule_end_marker" => self.check_attrs(c, &[])?,
                other => return Err(self.err(c, format!("unknown element <{other}> in <domain_schedule>"))),
            }
            len += 1;
        }
        if len >= NUM_DOMAIN_SCHEDULES {
            return Err(
                self.err(n, format!("{len} schedule entries; the kernel takes fewer than {NUM_DOMAIN_SCHEDULES}"))
            );
        }
        if start >= len {
            return Err(self.err(n, format!("start_index {start} is not below the schedule's length {len}")));
        }
        if shift.is_some_and(|s| s.saturating_add(len) >= NUM_DOMAIN_SCHEDULES) {
            return Err(self.err(n, format!("index_shift plus {len} entries reaches {NUM_DOMAIN_SCHEDULES}")));
        }
        Ok(len as usize)
    }

    /// A PD's `domain`: required and declared once `<domains>` has named
    /// any, refused before.
    pub(super) fn pd_domain(&self, n: Node) -> Result<Option<String>, SdfError> {
        match self.sys.domains.as_ref().filter(|d| !d.ids.is_empty()) {
            Some(d) => {
                let name = self.required(n, "domain")?;
                if !d.ids.iter().any(|(known, _)| known == name) {
                    return Err(self.err(n, format!("domain '{name}' is not declared in <domains>")));
                }
                Ok(Some(name.to_owned()))
            }
            None => match n.attribute("domain") {
                Some(name) => Err(self.err(n, format!("domain '{name}' given, but no <domains> declared before"))),
                None => Ok(None),
            },
        }
    }
}
