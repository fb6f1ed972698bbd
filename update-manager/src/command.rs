//! Console commands: parsing is separate from running, and every way a line
//! can be wrong has its own one-line message.
use alloc::{format, string::String};

#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Help,
    Status,
    Version,
}

pub const HELP: &str = "\
commands:
  help      this list
  status    one row per protection domain: service, version, slot, state, calls, faults
  version   the manager's version and module ABI
";

pub fn parse(line: &str) -> Result<Option<Command>, String> {
    let mut words = line.split_ascii_whitespace();
    let Some(cmd) = words.next() else { return Ok(None) };
    let rest = words.next();
    let no_args = |c: Command| match rest {
        None => Ok(Some(c)),
        Some(a) => Err(format!("'{cmd}' takes no arguments (got '{a}')")),
    };
    match cmd {
        "help" | "?" => no_args(Command::Help),
        "status" => no_args(Command::Status),
        "version" => no_args(Command::Version),
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
    }
}
