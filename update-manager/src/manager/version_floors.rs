//! The version floors as the manager keeps them (see `floors`): read,
//! checked at admission, raised by the operator and by a final update.
use super::Manager;
use crate::placer::ImagePlacer;
use crate::protocol;
use alloc::{format, string::String, vec::Vec};
use core::fmt::Write;
use interfaces::abi::ModuleDescriptor;
use pd_api::Pd;

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
            if let Some(h) = inst.live_held().filter(|h| h.descriptor.module_version < version) {
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
            i.probation.is_some_and(|p| i.held[p.old.index()].is_some_and(|h| h.descriptor.module_version < version))
        });
        if below {
            protocol::make_final(self, service, "made final by the version floor", false);
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
