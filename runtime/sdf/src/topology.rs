//! What the system description implies beyond Microkit's own semantics,
//! by naming convention (the microkit tool accepts no extra attributes, so
//! the convention is the one way to say it without a second config file):
//!
//! - An **updatable service instance** `I` is a pair of PDs named `I_a` and
//!   `I_b` that both run the domain shell (`domain_shell.elf`); they are its
//!   two slots.
//! - Its **service type** is named by its slots' control regions:
//!   `T:I_a_control` and `T:I_b_control` make `I` an instance of `T` (so
//!   `ipv6:ipv60_a_control` is instance `ipv60` of `ipv6`). Every
//!   instance must name its type: control regions named plainly
//!   `I_a_control` are refused by [`check`] (the type is never derived
//!   from the instance's name).
//! - Instances are numbered in document order; that number is the
//!   instance's entry in the capability map.
//! - A PD names its channels by the peer PD at the other end, and its
//!   mappings by their `setvar_vaddr` symbol (else the region's name).
use crate::model::*;

pub const SHELL_IMAGE: &str = "domain_shell.elf";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    pub name: String,
    /// The service type (see the module's documentation); empty when the
    /// control regions name none, which [`check`] refuses.
    pub service: String,
    /// PD indices of slot A and slot B.
    pub slots: [usize; 2],
    pub capmap_index: usize,
}

impl Instance {
    /// The service type.
    pub fn service(&self) -> &str {
        &self.service
    }
}

/// The type slot PD `slot` declares through its control region's name:
/// `Some(Some(T))` for `T:{slot}_control`, `Some(None)` for a plain
/// `{slot}_control`, `None` without a control region.
fn declared_service<'s>(sys: &'s System, slot: &str) -> Option<Option<&'s str>> {
    let mut found = None;
    for r in &sys.regions {
        match interfaces::control::control_region_service(&r.name, slot) {
            Some(Some(t)) => return Some(Some(t)),
            Some(None) => found = Some(None),
            None => {}
        }
    }
    found
}

/// Every updatable service instance, in document order.
pub fn instances(sys: &System) -> Vec<Instance> {
    let mut out = Vec::new();
    for (a, pd) in sys.pds.iter().enumerate() {
        let Some(name) = pd.name.strip_suffix("_a") else { continue };
        let Some(b) = sys.pd(&format!("{name}_b")) else { continue };
        if pd.program_image == SHELL_IMAGE && sys.pds[b].program_image == SHELL_IMAGE {
            let service = declared_service(sys, &pd.name).flatten().unwrap_or_default().to_owned();
            out.push(Instance { name: name.to_owned(), service, slots: [a, b], capmap_index: out.len() });
        }
    }
    out
}

/// Checks what the naming conventions imply (beyond what the microkit tool
/// checks): both slots of an instance name the same service type, and
/// every instance has one. The error names the PD at fault.
pub fn check(sys: &System) -> Result<(), String> {
    for inst in instances(sys) {
        let [a, b] = inst.slots.map(|s| &sys.pds[s].name);
        let (ta, tb) = (declared_service(sys, a), declared_service(sys, b));
        if ta != tb {
            let show = |t: Option<Option<&str>>, pd: &str| match t {
                Some(Some(t)) => format!("service type '{t}' (region '{t}:{pd}_control')"),
                Some(None) => format!("no service type (region '{pd}_control')"),
                None => "no control region".to_owned(),
            };
            return Err(format!(
                "<protection_domain name=\"{b}\">: instance '{}': slot {a} declares {}, slot {b} {}",
                inst.name,
                show(ta, a),
                show(tb, b)
            ));
        }
        if inst.service.is_empty() {
            return Err(format!(
                "<protection_domain name=\"{a}\">: instance '{}' has no service type: name it with a region \
                 'TYPE:{a}_control'",
                inst.name
            ));
        }
    }
    Ok(())
}

/// The instance and slot (0 = A, 1 = B) PD `pd` belongs to, if any.
pub fn slot_of(sys: &System, pd: usize) -> Option<(Instance, usize)> {
    instances(sys).into_iter().find_map(|i| i.slots.iter().position(|&s| s == pd).map(|k| (i, k)))
}

/// A channel as one PD sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalChannel {
    pub id: u64,
    pub peer: usize,
    pub peer_name: String,
    /// The peer's id for the same channel.
    pub peer_id: u64,
    /// This PD may make protected calls over it.
    pub pp: bool,
    /// This PD may notify over it.
    pub notify: bool,
}

/// The channels of PD `pd`, by ascending id.
pub fn channels_of(sys: &System, pd: usize) -> Vec<LocalChannel> {
    let mut v: Vec<LocalChannel> = sys
        .ends_of(pd)
        .map(|(me, peer)| LocalChannel {
            id: me.id,
            peer: peer.pd,
            peer_name: sys.pds[peer.pd].name.clone(),
            peer_id: peer.id,
            pp: me.pp,
            notify: me.notify,
        })
        .collect();
    v.sort_by_key(|c| c.id);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_are_slot_pairs_running_the_shell() {
        let xml = r#"<system>
            <memory_region name="kv:kv0_a_control" size="0x1000"/>
            <memory_region name="kv:kv0_b_control" size="0x1000"/>
            <protection_domain name="mgr" priority="100"><program_image path="m.elf"/>
              <protection_domain name="kv0_a" id="1" priority="200"><program_image path="domain_shell.elf"/></protection_domain>
              <protection_domain name="kv0_b" id="2" priority="200"><program_image path="domain_shell.elf"/></protection_domain>
              <protection_domain name="odd_a" id="3" priority="200"><program_image path="other.elf"/></protection_domain>
              <protection_domain name="odd_b" id="4" priority="200"><program_image path="domain_shell.elf"/></protection_domain>
            </protection_domain>
            <channel><end pd="mgr" id="1" pp="true"/><end pd="kv0_a" id="0"/></channel>
        </system>"#;
        let sys = crate::parse(xml).unwrap();
        let inst = instances(&sys);
        assert_eq!(inst.len(), 1);
        assert_eq!((inst[0].name.as_str(), inst[0].service(), inst[0].slots), ("kv0", "kv", [1, 2]));
        assert_eq!(slot_of(&sys, 2).map(|(_, k)| k), Some(1));
        let ch = channels_of(&sys, 0);
        assert_eq!((ch[0].id, ch[0].peer_name.as_str(), ch[0].pp, ch[0].peer_id), (1, "kv0_a", true, 0));
        assert!(!channels_of(&sys, 1)[0].pp);
    }

    fn two_slots(regions: &str) -> System {
        let xml = format!(
            r#"<system>{regions}
            <protection_domain name="mgr" priority="100"><program_image path="m.elf"/>
              <protection_domain name="ipv60_a" id="1" priority="200"><program_image path="domain_shell.elf"/></protection_domain>
              <protection_domain name="ipv60_b" id="2" priority="200"><program_image path="domain_shell.elf"/></protection_domain>
            </protection_domain></system>"#
        );
        crate::parse(&xml).unwrap()
    }

    #[test]
    fn a_service_type_is_named_by_the_control_regions_and_may_end_in_a_digit() {
        let sys = two_slots(
            r#"<memory_region name="ipv6:ipv60_a_control" size="0x1000"/>
               <memory_region name="ipv6:ipv60_b_control" size="0x1000"/>"#,
        );
        let inst = instances(&sys);
        assert_eq!((inst[0].name.as_str(), inst[0].service()), ("ipv60", "ipv6"));
        assert_eq!(check(&sys), Ok(()));
        // Without a declared type there is none (no rule derives one from
        // the name), and the error says how to name it.
        let plain = two_slots(
            r#"<memory_region name="ipv60_a_control" size="0x1000"/>
               <memory_region name="ipv60_b_control" size="0x1000"/>"#,
        );
        assert_eq!(instances(&plain)[0].service(), "");
        let e = check(&plain).unwrap_err();
        assert!(e.contains("'ipv60' has no service type") && e.contains("'TYPE:ipv60_a_control'"), "{e}");
        // The two slots must agree; the error names the PD.
        let split = two_slots(
            r#"<memory_region name="ipv6:ipv60_a_control" size="0x1000"/>
               <memory_region name="ipv4:ipv60_b_control" size="0x1000"/>"#,
        );
        let e = check(&split).unwrap_err();
        assert!(
            e.starts_with("<protection_domain name=\"ipv60_b\">") && e.contains("'ipv6'") && e.contains("'ipv4'"),
            "{e}"
        );
    }
}
