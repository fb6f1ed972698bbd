//! The build-time version floors' syntax, shared by the build script
//! (which reads `UPD_VERSION_FLOORS`) and the manager's tests: `service=version`
//! pairs separated by commas, e.g. `kv=2,serial=1` (a version may be
//! written `v2`). Empty means no floors.
use alloc::{format, string::String, vec::Vec};

/// Parses a floor list; names the first mistake.
pub fn parse_floors(spec: &str) -> Result<Vec<(String, u32)>, String> {
    let mut floors: Vec<(String, u32)> = Vec::new();
    for item in spec.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (service, version) =
            item.split_once('=').ok_or_else(|| format!("'{item}': expected service=version, e.g. kv=2"))?;
        let (service, version) = (service.trim(), version.trim());
        if service.is_empty()
            || service.len() > 31
            || !service.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(format!("'{item}': bad service name '{service}'"));
        }
        let digits = version.strip_prefix('v').unwrap_or(version);
        let v = match digits.parse::<u32>() {
            Ok(v) if !digits.starts_with('+') => v,
            _ => return Err(format!("'{item}': bad version '{version}' (a number, e.g. 2)")),
        };
        if floors.iter().any(|(s, _)| s == service) {
            return Err(format!("'{item}': service '{service}' has a floor already"));
        }
        floors.push((service.into(), v));
    }
    Ok(floors)
}
