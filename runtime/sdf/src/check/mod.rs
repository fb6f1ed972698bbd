//! The rules the microkit tool applies to a whole system description once
//! it has read it, each naming the element it refuses.
mod elf;
mod files;
mod maps;

pub use files::{check_files, find_file};

use crate::platform::{MAX_CHILD_ID, MAX_VCPUS, MONITOR_NAME};
use crate::{model::*, SdfError};
use std::collections::{HashMap, HashSet};

fn err(o: &Origin, message: String) -> SdfError {
    SdfError { line: o.line, element: o.element.clone(), message }
}

impl System {
    /// Checks everything that does not need the file system.
    pub fn check(&self) -> Result<(), SdfError> {
        if self.pds.is_empty() {
            return Err(err(&self.origin, "no protection domains; Microkit needs at least one".into()));
        }
        if self.pds.len() > MAX_PDS {
            let o = &self.pds[MAX_PDS].origin;
            return Err(err(o, format!("{} protection domains; Microkit allows at most {MAX_PDS}", self.pds.len())));
        }
        let mut names = HashSet::new();
        for pd in &self.pds {
            if !names.insert(&pd.name) {
                return Err(err(&pd.origin, format!("duplicate protection domain name '{}'", pd.name)));
            }
            if pd.name == MONITOR_NAME {
                return Err(err(&pd.origin, format!("the name '{MONITOR_NAME}' is reserved for Microkit's monitor")));
            }
        }
        let vcpus: Vec<&Vcpu> = self.pds.iter().filter_map(|pd| pd.vm.as_ref()).flat_map(|vm| &vm.vcpus).collect();
        if let Some(v) = vcpus.get(MAX_VCPUS) {
            return Err(err(&v.origin, format!("{} vcpus; Microkit allows at most {MAX_VCPUS}", vcpus.len())));
        }
        let mut names = HashSet::new();
        for vm in self.pds.iter().filter_map(|pd| pd.vm.as_ref()) {
            if !names.insert(&vm.name) {
                return Err(err(&vm.origin, format!("duplicate virtual machine name '{}'", vm.name)));
            }
        }
        let mut names = HashSet::new();
        for r in &self.regions {
            if !names.insert(&r.name) {
                return Err(err(&r.origin, format!("duplicate memory region name '{}'", r.name)));
            }
            maps::check_region(r)?;
        }
        maps::check_phys_overlap(&self.regions)?;
        for pd in &self.pds {
            self.check_pd(pd)?;
        }
        self.check_irqs()?;
        self.check_channels()?;
        self.check_ppc_acyclic()
    }

    fn check_pd(&self, pd: &ProtectionDomain) -> Result<(), SdfError> {
        maps::check_maps(self, &pd.maps, crate::platform::pd_map_limit(pd.stack_size), &pd.name)?;
        if let Some(vm) = &pd.vm {
            maps::check_maps(self, &vm.maps, crate::platform::VM_MAP_LIMIT, &vm.name)?;
        }
        let mut child_ids = HashSet::new();
        for (i, id) in self.children(self.pd(&pd.name).unwrap_or(usize::MAX)) {
            let child = &self.pds[i];
            if id > MAX_CHILD_ID {
                return Err(err(&child.origin, format!("child id {id} must be at most {MAX_CHILD_ID}")));
            }
            if !child_ids.insert(id) {
                return Err(err(&child.origin, format!("child id {id} is used twice in '{}'", pd.name)));
            }
            if pd.vm.iter().flat_map(|vm| &vm.vcpus).any(|v| v.id == id) {
                return Err(err(&child.origin, format!("child id {id} is also a vcpu id in '{}'", pd.name)));
            }
        }
        let mut slots = HashSet::new();
        for cap in &pd.cap_maps {
            if self.pd(&cap.pd).is_none() {
                return Err(err(&cap.origin, format!("no protection domain named '{}'", cap.pd)));
            }
            if !slots.insert(cap.slot) {
                return Err(err(&cap.origin, format!("cspace slot {} is used twice in '{}'", cap.slot, pd.name)));
            }
        }
        for s in &pd.setvars {
            if self.region(&s.region_paddr).is_none() {
                return Err(err(&s.origin, format!("no memory region named '{}'", s.region_paddr)));
            }
        }
        for m in pd.maps.iter().filter(|m| m.setvar_prefill_size.is_some()) {
            if self.region(&m.mr).is_some_and(|r| r.prefill_path.is_none()) {
                return Err(err(&m.origin, format!("setvar_prefill_size, but region '{}' has no prefill_path", m.mr)));
            }
        }
        Ok(())
    }

    /// An interrupt may be delivered to one PD only.
    fn check_irqs(&self) -> Result<(), SdfError> {
        let mut owner: HashMap<u64, &str> = HashMap::new();
        for pd in &self.pds {
            for irq in &pd.irqs {
                if let Some(other) = owner.insert(irq.irq, &pd.name) {
                    return Err(err(&irq.origin, format!("irq {} is already delivered to '{other}'", irq.irq)));
                }
            }
        }
        Ok(())
    }

    fn check_channels(&self) -> Result<(), SdfError> {
        // (pd, id) -> first user, across channels and IRQs.
        let mut used: HashMap<(usize, u64), String> = HashMap::new();
        for (i, pd) in self.pds.iter().enumerate() {
            for irq in &pd.irqs {
                if used.insert((i, irq.id), format!("irq {}", irq.irq)).is_some() {
                    return Err(err(&irq.origin, format!("channel id {} is used twice in '{}'", irq.id, pd.name)));
                }
            }
        }
        for c in &self.channels {
            let [a, b] = &c.ends;
            // Both ends are checked before either is recorded (as the tool
            // does), so a channel from a PD to itself may use one id twice.
            for end in [a, b] {
                if let Some(prev) = used.get(&(end.pd, end.id)) {
                    let pd = &self.pds[end.pd].name;
                    return Err(err(
                        &c.origin,
                        format!("channel id {} is used twice in '{pd}' (also for {prev})", end.id),
                    ));
                }
            }
            for (end, peer) in [(a, b), (b, a)] {
                used.insert((end.pd, end.id), self.pds[peer.pd].name.clone());
                let (pd, callee) = (&self.pds[end.pd], &self.pds[peer.pd]);
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
