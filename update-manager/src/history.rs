//! The update history the `log` command prints.
use alloc::{format, string::String, vec::Vec};
use core::fmt::Write;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Admit = 0,
    Build = 1,
    Quiesce = 2,
    Transfer = 3,
    Commit = 4,
}

pub const PHASES: [&str; 5] = ["admit", "build", "quiesce", "transfer", "commit"];

pub struct Record {
    pub id: u32,
    /// Milliseconds since the manager started.
    pub at_ms: u64,
    pub command: String,
    /// Phase times in microseconds, as far as the switch got.
    pub times_us: [Option<u64>; 5],
    pub outcome: Result<String, (Phase, String)>,
}

/// The last records, oldest first; a bounded log for a long-running system.
#[derive(Default)]
pub struct History {
    records: Vec<Record>,
    next_id: u32,
}

const KEEP: usize = 64;

impl History {
    pub fn push(&mut self, mut r: Record) {
        self.next_id += 1;
        r.id = self.next_id;
        if self.records.len() == KEEP {
            self.records.remove(0);
        }
        self.records.push(r);
    }

    pub fn len(&self) -> u32 {
        self.next_id
    }

    pub fn is_empty(&self) -> bool {
        self.next_id == 0
    }

    pub fn render(&self) -> String {
        if self.records.is_empty() {
            return "no updates yet\n".into();
        }
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:>4}  {:>9}  {:<28}  {:<8}  {:>8} {:>8} {:>8} {:>8} {:>8}  DETAIL",
            "#", "AT_MS", "COMMAND", "OUTCOME", "ADMIT", "BUILD", "QUIESCE", "TRANSFER", "COMMIT"
        );
        for r in &self.records {
            let cell = |t: Option<u64>| t.map_or(String::from("-"), |v| format!("{v}"));
            let (outcome, detail) = match &r.outcome {
                Ok(d) => ("ok", d.clone()),
                Err((p, why)) => ("failed", format!("{} failed: {why}; rolled back", PHASES[*p as usize])),
            };
            let _ = writeln!(
                out,
                "{:>4}  {:>9}  {:<28}  {:<8}  {:>8} {:>8} {:>8} {:>8} {:>8}  {}",
                r.id,
                r.at_ms,
                r.command,
                outcome,
                cell(r.times_us[0]),
                cell(r.times_us[1]),
                cell(r.times_us[2]),
                cell(r.times_us[3]),
                cell(r.times_us[4]),
                detail
            );
        }
        let _ = writeln!(out, "(phase times in microseconds; {} update(s) in all)", self.next_id);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_records_and_renders_failures() {
        let mut h = History::default();
        for i in 0..70 {
            h.push(Record {
                id: 0,
                at_ms: i,
                command: "update kv kv-v2".into(),
                times_us: [Some(1), None, None, None, None],
                outcome: Err((Phase::Build, "needs channel 'timer'".into())),
            });
        }
        let text = h.render();
        assert_eq!(text.lines().count(), 1 + KEEP + 1);
        assert!(text.contains("build failed: needs channel 'timer'; rolled back"));
        assert!(text.contains("70 update(s)"));
    }
}
