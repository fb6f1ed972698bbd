//! Per-service version floors: an image whose module version is below its
//! service's floor is refused, whether it is uploaded, updated to or
//! rolled back to. A floor only rises while the system runs: the trusted
//! build sets the first ones (`UPD_VERSION_FLOORS`), the operator raises
//! them (`floor <service> <version>`), and so does the update protocol
//! when an update becomes final (`Manager::raise_floor`, in
//! `manager::version_floors`).
use alloc::{borrow::ToOwned, string::String, vec::Vec};

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
