//! Console commands: parsing is separate from running, and every way a line
//! can be wrong has its own one-line message.
use alloc::{format, string::String, vec::Vec};

/// Default quiescence timeout of `update`.
pub const DEFAULT_TIMEOUT_MS: u64 = 2000;
/// History entries `log` shows by default (the last ones).
pub const LOG_DEFAULT: usize = 20;

#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Help,
    Status,
    Version,
    Images,
    Update {
        service: String,
        image: String,
        timeout_ms: u64,
    },
    Rollback {
        service: String,
    },
    /// The last `last` history entries (`None`: every entry kept).
    Log {
        last: Option<usize>,
    },
    /// Drop an uploaded image that no slot holds.
    Forget {
        image: String,
    },
    /// List the version floors, or raise one.
    Floor {
        raise: Option<(String, u32)>,
    },
    /// Show the probation settings, or set them (window, and calls).
    Probation {
        window_ms: Option<u64>,
        calls: Option<u64>,
    },
    /// End the probation of a service's update now: it becomes final.
    Accept {
        service: String,
    },
    /// Show whether updates pre-copy the state of a module that can, or
    /// turn it on or off.
    Precopy {
        on: Option<bool>,
    },
}

impl Command {
    /// Whether the command only reads (it is answered even while an
    /// update runs; the others wait for it to end).
    pub fn reads_only(&self) -> bool {
        match self {
            Command::Help | Command::Status | Command::Version | Command::Images | Command::Log { .. } => true,
            Command::Floor { raise } => raise.is_none(),
            Command::Probation { window_ms, .. } => window_ms.is_none(),
            Command::Precopy { on } => on.is_none(),
            Command::Update { .. } | Command::Rollback { .. } | Command::Accept { .. } | Command::Forget { .. } => {
                false
            }
        }
    }
}

pub const HELP: &str = "\
commands:
  help                                  this list
  status                                one row per protection domain: service, version, slot, state, calls, faults
  version                               the manager's version and module ABI
  images                                the module images the manager holds
  update <service> <image> [--timeout MS]
                                        replace every instance of <service> with <image>, state and all
                                        (quiescence timeout: default 2000 ms)
  rollback <service>                    return every instance of <service> to its previous version
                                        (on probation: its calls replayed, or its checkpoint taken over)
  probation [<ms> [<calls>]]            show or set how long a new version stays on probation
                                        (default 5000 ms; 0 ms: no probation; calls 0: no limit)
  accept <service>                      end the probation of <service>'s update now: it becomes final
  precopy [on|off]                      show or set whether a module that can pre-copies its state
                                        (exported while it serves; only the changes at the stop)
  floor [<service> <version>]           the version floors, or raise one (an image below its service's
                                        floor is refused; a floor never falls)
  forget <image>                        drop an uploaded image that is not live or kept for a rollback,
                                        freeing its upload slot
  log [N|all]                           the update history with per-phase times: the last 20 entries,
                                        the last N, or all it keeps
";

fn name_arg<'a>(what: &str, v: Option<&'a str>) -> Result<&'a str, String> {
    let v = v.ok_or_else(|| format!("missing {what}"))?;
    if v.len() > 31 || !v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(format!("bad {what} '{}'", truncate(v, 32)));
    }
    Ok(v)
}

pub fn parse(line: &str) -> Result<Option<Command>, String> {
    let words: Vec<&str> = line.split_ascii_whitespace().collect();
    let Some((&cmd, args)) = words.split_first() else { return Ok(None) };
    let no_args = |c: Command| match args.first() {
        None => Ok(Some(c)),
        Some(a) => Err(format!("'{cmd}' takes no arguments (got '{}')", truncate(a, 32))),
    };
    match cmd {
        "help" | "?" => no_args(Command::Help),
        "status" => no_args(Command::Status),
        "version" => no_args(Command::Version),
        "images" => no_args(Command::Images),
        "log" => match args {
            [] => Ok(Some(Command::Log { last: Some(LOG_DEFAULT) })),
            ["all"] => Ok(Some(Command::Log { last: None })),
            [n] => match n.parse::<usize>() {
                Ok(v @ 1..=1_000_000) => Ok(Some(Command::Log { last: Some(v) })),
                _ => Err(format!("bad count '{}'; usage: log [N|all]", truncate(n, 16))),
            },
            _ => Err("usage: log [N|all]".into()),
        },
        "update" => {
            let usage = "usage: update <service> <image> [--timeout MS]";
            let service = name_arg("service", args.first().copied()).map_err(|e| format!("{e}; {usage}"))?.into();
            let image = name_arg("image", args.get(1).copied()).map_err(|e| format!("{e}; {usage}"))?.into();
            let timeout_ms = match &args[2..] {
                [] => DEFAULT_TIMEOUT_MS,
                ["--timeout", ms] => match ms.parse::<u64>() {
                    Ok(v @ 1..=600_000) => v,
                    _ => return Err(format!("bad timeout '{}': milliseconds from 1 to 600000", truncate(ms, 16))),
                },
                _ => return Err(usage.into()),
            };
            Ok(Some(Command::Update { service, image, timeout_ms }))
        }
        "probation" => {
            let usage = "usage: probation [<ms> [<calls>]]";
            let num = |v: &str, what: &str, max: u64| match v.parse::<u64>() {
                Ok(n) if n <= max => Ok(n),
                _ => Err(format!("bad {what} '{}': a whole number up to {max}; {usage}", truncate(v, 16))),
            };
            match args {
                [] => Ok(Some(Command::Probation { window_ms: None, calls: None })),
                [ms] => Ok(Some(Command::Probation { window_ms: Some(num(ms, "window", 3_600_000)?), calls: None })),
                [ms, calls] => Ok(Some(Command::Probation {
                    window_ms: Some(num(ms, "window", 3_600_000)?),
                    calls: Some(num(calls, "call count", 1 << 40)?),
                })),
                _ => Err(usage.into()),
            }
        }
        "precopy" => match args {
            [] => Ok(Some(Command::Precopy { on: None })),
            ["on"] => Ok(Some(Command::Precopy { on: Some(true) })),
            ["off"] => Ok(Some(Command::Precopy { on: Some(false) })),
            _ => Err("usage: precopy [on|off]".into()),
        },
        "accept" => match args {
            [s] => Ok(Some(Command::Accept { service: name_arg("service", Some(s))?.into() })),
            _ => Err("usage: accept <service>".into()),
        },
        "floor" => match args {
            [] => Ok(Some(Command::Floor { raise: None })),
            [s, v] => {
                let service = name_arg("service", Some(s))?.into();
                let digits = v.strip_prefix('v').unwrap_or(v);
                match digits.parse::<u32>() {
                    Ok(n) if digits.bytes().all(|b| b.is_ascii_digit()) => {
                        Ok(Some(Command::Floor { raise: Some((service, n)) }))
                    }
                    _ => Err(format!("bad version '{}'; usage: floor [<service> <version>]", truncate(v, 16))),
                }
            }
            _ => Err("usage: floor [<service> <version>]".into()),
        },
        "forget" => match args {
            [i] => Ok(Some(Command::Forget { image: name_arg("image", Some(i))?.into() })),
            _ => Err("usage: forget <image>".into()),
        },
        "rollback" => match args {
            [s] => Ok(Some(Command::Rollback { service: name_arg("service", Some(s))?.into() })),
            _ => Err("usage: rollback <service>".into()),
        },
        _ => Err(format!("unknown command '{}' (try 'help')", truncate(cmd, 32))),
    }
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_names_mistakes() {
        assert_eq!(parse("  status "), Ok(Some(Command::Status)));
        assert_eq!(parse(""), Ok(None));
        assert_eq!(parse("stat").unwrap_err(), "unknown command 'stat' (try 'help')");
        assert_eq!(parse("status now").unwrap_err(), "'status' takes no arguments (got 'now')");
        assert_eq!(
            parse("update kv kv-v2 --timeout 50"),
            Ok(Some(Command::Update { service: "kv".into(), image: "kv-v2".into(), timeout_ms: 50 }))
        );
        assert_eq!(
            parse("update kv kv-v2"),
            Ok(Some(Command::Update { service: "kv".into(), image: "kv-v2".into(), timeout_ms: DEFAULT_TIMEOUT_MS }))
        );
        assert_eq!(parse("update kv").unwrap_err(), "missing image; usage: update <service> <image> [--timeout MS]");
        assert!(parse("update kv kv-v2 --timeout -5").unwrap_err().starts_with("bad timeout"));
        assert!(parse("update kv kv-v2 --fast").unwrap_err().starts_with("usage"));
        assert!(parse("update k$v kv-v2").unwrap_err().starts_with("bad service"));
        assert_eq!(parse("rollback kv"), Ok(Some(Command::Rollback { service: "kv".into() })));
        assert_eq!(parse("rollback").unwrap_err(), "usage: rollback <service>");
        assert_eq!(parse("probation"), Ok(Some(Command::Probation { window_ms: None, calls: None })));
        assert_eq!(
            parse("probation 250 1000"),
            Ok(Some(Command::Probation { window_ms: Some(250), calls: Some(1000) }))
        );
        assert!(parse("probation -1").unwrap_err().starts_with("bad window"));
        assert!(parse("probation 1 2 3").unwrap_err().starts_with("usage"));
        assert_eq!(parse("precopy off"), Ok(Some(Command::Precopy { on: Some(false) })));
        assert_eq!(parse("precopy"), Ok(Some(Command::Precopy { on: None })));
        assert_eq!(parse("precopy maybe"), Err("usage: precopy [on|off]".into()));
        assert_eq!(parse("accept kv"), Ok(Some(Command::Accept { service: "kv".into() })));
        assert!(parse("status").unwrap().unwrap().reads_only());
        assert!(!parse("update kv kv-v2").unwrap().unwrap().reads_only());
        assert_eq!(parse("floor"), Ok(Some(Command::Floor { raise: None })));
        assert_eq!(parse("floor kv 3"), Ok(Some(Command::Floor { raise: Some(("kv".into(), 3)) })));
        assert_eq!(parse("floor kv v3"), Ok(Some(Command::Floor { raise: Some(("kv".into(), 3)) })));
        assert_eq!(parse("floor kv").unwrap_err(), "usage: floor [<service> <version>]");
        assert_eq!(parse("floor kv +3").unwrap_err(), "bad version '+3'; usage: floor [<service> <version>]");
        assert_eq!(parse("forget kv-v4"), Ok(Some(Command::Forget { image: "kv-v4".into() })));
        assert_eq!(parse("forget").unwrap_err(), "usage: forget <image>");
        assert_eq!(parse("forget a b").unwrap_err(), "usage: forget <image>");
        assert_eq!(parse("log"), Ok(Some(Command::Log { last: Some(LOG_DEFAULT) })));
        assert_eq!(parse("log 5"), Ok(Some(Command::Log { last: Some(5) })));
        assert_eq!(parse("log all"), Ok(Some(Command::Log { last: None })));
        assert_eq!(parse("log 0").unwrap_err(), "bad count '0'; usage: log [N|all]");
        assert_eq!(parse("log most").unwrap_err(), "bad count 'most'; usage: log [N|all]");
        assert_eq!(parse("log 5 6").unwrap_err(), "usage: log [N|all]");
    }
}
