//! Per-service version floors: an image whose module version is below its
//! service's floor is refused, whether it is uploaded, updated to or
//! rolled back to. A floor only rises while the system runs: the trusted
//! build sets the first ones (`UPD_VERSION_FLOORS`), the operator raises
//! them (`floor <service> <version>`), and so does the update protocol
//! when an update becomes final ([`Manager::raise_floor`]).
use crate::manager::Manager;
use crate::placer::ImagePlacer;
use alloc::{borrow::ToOwned, format, string::String, vec::Vec};
use core::fmt::Write;
use interfaces::abi::ModuleDescriptor;
use pd_api::Pd;

/// The floors of the services `services` (in order, each once), from the
/// build's floors; a service the build names no floor for has none (0).
/// Floors for services this system does not run are ignored.
pub(crate) fn initial<'a>(services: impl Iterator<Item = &'a str>, build: &[(&str, u32)]) -> Vec<(String, u32)> {
    let mut floors: Vec<(String, u32)> = Vec::new();
    for s in services {
        if !floors.iter().any(|(f, _)| f == s) {
            let v = build.iter().find(|(b, _)| *b == s).map_or(0, |(_, v)| *v);
            floors.push((s.to_owned(), v));
        }
    }
    floors
}

impl<P: Pd + 'static, L: ImagePlacer> Manager<P, L> {
    /// The version floor of `service` (0: none); `None` if this system
    /// runs no such service.
    pub fn floor(&self, service: &str) -> Option<u32> {
        self.floors.iter().find(|(s, _)| s == service).map(|(_, v)| *v)
    }

    /// Raises the version floor of `service` to `version`: from then on,
    /// no image of that service below it is admitted (upload, update,
    /// rollback). The update protocol calls this when an update becomes
    /// final. Refused, with the reason, for a service this system does not
    /// run, for a version below the floor (a floor never falls), and for a
    /// version above what an instance of the service runs (a fault there
    /// could not reload its module); the floor is then unchanged.
    pub fn raise_floor(&mut self, service: &str, version: u32) -> Result<(), String> {
        let Some(floor) = self.floor(service) else {
            return Err(format!("no service '{service}' in this system"));
        };
        if version < floor {
            return Err(format!("the version floor of service {service} is v{floor}; it only rises"));
        }
        for inst in self.instances.iter().filter(|i| i.service == service) {
            let live = inst.live.and_then(|s| inst.slots[s.index()].held);
            if let Some(h) = live.filter(|h| h.descriptor.module_version < version) {
                return Err(format!(
                    "{} runs {service} v{}, below v{version}: update it first",
                    inst.name, h.descriptor.module_version
                ));
            }
        }
        if let Some(f) = self.floors.iter_mut().find(|(s, _)| s == service) {
            f.1 = version;
        }
        // A version on probation whose way back now lies below the floor
        // has no way back: it is final.
        let below = self.instances.iter().filter(|i| i.service == service).any(|i| {
            i.probation
                .is_some_and(|p| i.slots[p.old.index()].held.is_some_and(|h| h.descriptor.module_version < version))
        });
        if below {
            self.make_final(service, "made final by the version floor", false);
        }
        Ok(())
    }

    /// Refuses a module below its service's floor.
    pub(crate) fn check_floor(&self, d: &ModuleDescriptor) -> Result<(), String> {
        match self.floor(d.service()) {
            Some(floor) if d.module_version < floor => Err(format!(
                "{0} v{1} is below the version floor v{floor} of service {0}",
                d.service(),
                d.module_version
            )),
            _ => Ok(()),
        }
    }

    /// One line: every service's floor.
    pub(crate) fn floors_line(&self) -> String {
        let list: Vec<String> =
            self.floors.iter().map(|(s, v)| if *v == 0 { format!("{s} none") } else { format!("{s} v{v}") }).collect();
        format!("version floors: {}\n", list.join(", "))
    }

    /// The `floor` command: lists the floors, or raises one.
    pub(crate) fn floor_command(&mut self, raise: Option<(String, u32)>) -> String {
        let Some((service, version)) = raise else {
            let mut out = String::from("SERVICE          FLOOR\n");
            for (s, v) in &self.floors {
                let _ = writeln!(out, "{s:<16} {}", if *v == 0 { String::from("none") } else { format!("v{v}") });
            }
            return out;
        };
        let before = self.floor(&service);
        match self.raise_floor(&service, version) {
            Err(e) if before.is_none() => format!("error: {e}\n"),
            Err(e) => format!("refused: {e}\n"),
            Ok(()) if before == Some(version) => {
                format!("the version floor of service {service} is v{version} already\n")
            }
            Ok(()) => {
                let text = format!("version floor of service {service} raised to v{version}");
                self.record(format!("floor {service} {version}"), [None; 5], Ok(text.clone()));
                format!("{text}\n")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::floor_spec::parse_floors;

    #[test]
    fn build_time_floors_parse_and_name_mistakes() {
        assert_eq!(parse_floors(""), Ok(alloc::vec![]));
        assert_eq!(parse_floors(" kv=2, serial=v1 ,"), Ok(alloc::vec![("kv".into(), 2), ("serial".into(), 1)]));
        assert_eq!(parse_floors("kv").unwrap_err(), "'kv': expected service=version, e.g. kv=2");
        assert_eq!(parse_floors("kv=two").unwrap_err(), "'kv=two': bad version 'two' (a number, e.g. 2)");
        assert_eq!(parse_floors("kv=-1").unwrap_err(), "'kv=-1': bad version '-1' (a number, e.g. 2)");
        assert_eq!(parse_floors("k v=1").unwrap_err(), "'k v=1': bad service name 'k v'");
        assert_eq!(parse_floors("kv=1,kv=2").unwrap_err(), "'kv=2': service 'kv' has a floor already");
    }

    #[test]
    fn initial_floors_cover_the_systems_services_only() {
        let f = super::initial(["serial", "kv", "kv"].into_iter(), &[("kv", 2), ("db", 7)]);
        assert_eq!(f, alloc::vec![("serial".into(), 0), ("kv".into(), 2)]);
    }
}
