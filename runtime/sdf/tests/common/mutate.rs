//! Mutations of valid systems, for the randomized half of the parity test:
//! attribute values swapped for edge values, attributes and lines dropped,
//! lines repeated or swapped. Deterministic for a given seed.

/// Values near the tool's limits and its parsing quirks.
const VALUES: [&str; 46] = [
    "0",
    "1",
    "-1",
    "+1",
    "0x10",
    "0X10",
    "61",
    "62",
    "63",
    "254",
    "255",
    "309",
    "310",
    "0x1000",
    "0x2000",
    "0x1800",
    "0x200000",
    "true",
    "false",
    "yes",
    "",
    "edge",
    "level",
    "1 us",
    "0 ticks",
    "0xFF_FFFF_C000",
    "0xFF_FFFF_B000",
    "abc",
    "1_0",
    "0x9000000",
    "0x8000000",
    "0x7000_0000",
    "net",
    "rw",
    "w",
    "x",
    "r",
    "rwx",
    "a",
    "b",
    "client",
    "server",
    "vmm",
    "m",
    "buf_vaddr",
    "0x200000",
];

/// xorshift64: small, and the same everywhere.
pub struct Rng(pub u64);

impl Rng {
    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
}

/// The byte ranges of every attribute (`name="value"`) and of its value.
fn attributes(xml: &str) -> Vec<(usize, usize, usize, usize)> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(eq) = xml[from..].find("=\"").map(|i| from + i) {
        let start = xml[..eq].rfind(|c: char| c.is_whitespace()).map_or(eq, |i| i + 1);
        let Some(len) = xml[eq + 2..].find('"') else { break };
        let (value, end) = (eq + 2, eq + 2 + len);
        found.push((start, end + 1, value, end));
        from = end + 1;
    }
    found
}

/// One or two mutations of `xml`.
pub fn mutate(xml: &str, rng: &mut Rng) -> String {
    let mut s = xml.to_owned();
    if rng.below(2) == 0 {
        let mut lines: Vec<String> = s.lines().map(str::to_owned).collect();
        for _ in 0..=rng.below(2) {
            let i = rng.below(lines.len());
            match rng.below(5) {
                0 | 1 => drop(lines.remove(i)),
                2 | 3 => lines.insert(i, lines[rng.below(lines.len())].clone()),
                _ => {
                    let j = rng.below(lines.len());
                    lines.swap(i, j);
                }
            }
        }
        s = lines.join("\n");
    }
    let attrs = attributes(&s);
    if !attrs.is_empty() && rng.below(3) != 0 {
        let (start, end, value, value_end) = attrs[rng.below(attrs.len())];
        s = match rng.below(5) {
            0 => format!("{}{}", &s[..start], &s[end..]),
            _ => format!("{}{}{}", &s[..value], VALUES[rng.below(VALUES.len())], &s[value_end..]),
        };
    }
    s
}
