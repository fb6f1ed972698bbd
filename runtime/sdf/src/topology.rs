//! What the system description implies beyond Microkit's own semantics,
//! by naming convention (the microkit tool accepts no extra attributes, so
//! the convention is the one way to say it without a second config file):
//!
//! - An **updatable service instance** `I` is a pair of PDs named `I_a` and
//!   `I_b` that both run the domain shell (`domain_shell.elf`); they are its
//!   two slots. `I` with trailing digits removed names the service type
//!   (`kv0`, `kv1` -> `kv`).
//! - Instances are numbered in document order; that number is the
//!   instance's entry in the capability map.
//! - A PD names its channels by the peer PD at the other end, and its
//!   mappings by their `setvar_vaddr` symbol (else the region's name).
use crate::model::*;

pub const SHELL_IMAGE: &str = "domain_shell.elf";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    pub name: String,
    /// PD indices of slot A and slot B.
    pub slots: [usize; 2],
    pub capmap_index: usize,
}

impl Instance {
    /// The service type: the instance name without trailing digits.
    pub fn service(&self) -> &str {
        self.name.trim_end_matches(|c: char| c.is_ascii_digit())
    }
}

/// Every updatable service instance, in document order.
pub fn instances(sys: &System) -> Vec<Instance> {
    let mut out = Vec::new();
    for (a, pd) in sys.pds.iter().enumerate() {
        let Some(name) = pd.name.strip_suffix("_a") else { continue };
        let Some(b) = sys.pd(&format!("{name}_b")) else { continue };
        if pd.program_image == SHELL_IMAGE && sys.pds[b].program_image == SHELL_IMAGE {
            out.push(Instance { name: name.to_owned(), slots: [a, b], capmap_index: out.len() });
        }
    }
    out
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
}
