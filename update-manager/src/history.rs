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

    /// The last `last` records (`None`: every record kept), oldest first.
    pub fn render(&self, last: Option<usize>) -> String {
        if self.records.is_empty() {
            return "no updates yet\n".into();
        }
        let shown = last.unwrap_or(usize::MAX).min(self.records.len());
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:>4}  {:>9}  {:<28}  {:<8}  {:>8} {:>8} {:>8} {:>8} {:>8}  DETAIL",
            "#", "AT_MS", "COMMAND", "OUTCOME", "ADMIT", "BUILD", "QUIESCE", "TRANSFER", "COMMIT"
        );
        for r in &self.records[self.records.len() - shown..] {
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
        let _ = write!(out, "(phase times in microseconds; ");
        if shown < self.records.len() {
            let _ = write!(out, "the last {shown} of {} kept ('log all'); ", self.records.len());
        }
        let _ = writeln!(out, "{} update(s) in all)", self.next_id);
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
        let text = h.render(None);
        assert_eq!(text.lines().count(), 1 + KEEP + 1);
        assert!(text.contains("build failed: needs channel 'timer'; rolled back"));
        assert!(text.ends_with("(phase times in microseconds; 70 update(s) in all)\n"), "{text}");
        let last = h.render(Some(20));
        assert_eq!(last.lines().count(), 1 + 20 + 1);
        let ids: Vec<&str> = last.lines().skip(1).take(20).map(|l| l.split_whitespace().next().unwrap()).collect();
        assert_eq!(ids.first().zip(ids.last()), Some((&"51", &"70")), "the last 20, oldest first: {last}");
        assert!(last.ends_with("the last 20 of 64 kept ('log all'); 70 update(s) in all)\n"), "{last}");
        assert_eq!(h.render(Some(1000)), text, "more than are kept: all of them");
        assert_eq!(History::default().render(Some(20)), "no updates yet\n");
    }
}
