//! What the benchmarks share: medians, and the numbers an update prints
//! on the console.

pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The blackout (us) an update printed: from the export's start to the
/// capability-map commit.
pub fn blackout_of(out: &str) -> f64 {
    number_after(out, "blackout")
}

/// The number on the line of `out` that starts with `word`.
pub fn number_after(out: &str, word: &str) -> f64 {
    let line = out.lines().find(|l| l.trim_start().starts_with(word)).unwrap_or_else(|| panic!("no {word} in:\n{out}"));
    line.split_whitespace().rev().nth(1).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("bad line '{line}'"))
}

/// The generation an update committed ("... (generation N)").
#[allow(dead_code)] // not every benchmark needs it
pub fn generation_of(out: &str) -> u64 {
    let tail = out.rsplit_once("(generation ").map(|(_, t)| t).unwrap_or_else(|| panic!("no generation in:\n{out}"));
    tail.split(')').next().and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("bad generation in:\n{out}"))
}
