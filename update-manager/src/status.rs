//! The `status` table's layout (its rows come from `manager::status_rows`).
use alloc::{string::String, vec::Vec};
use core::fmt::Write;

pub struct Row {
    pub pd: String,
    pub service: String,
    pub version: String,
    pub slot: String,
    pub state: String,
    pub calls: String,
    pub faults: u32,
    pub detail: String,
}

const HEADERS: [&str; 8] = ["PD", "SERVICE", "VERSION", "SLOT", "STATE", "CALLS", "FAULTS", "DETAIL"];

pub fn render(rows: &[Row]) -> String {
    let cells: Vec<[String; 8]> = rows
        .iter()
        .map(|r| {
            [
                r.pd.clone(),
                r.service.clone(),
                r.version.clone(),
                r.slot.clone(),
                r.state.clone(),
                r.calls.clone(),
                alloc::format!("{}", r.faults),
                r.detail.clone(),
            ]
        })
        .collect();
    let mut width = HEADERS.map(str::len);
    for c in &cells {
        for (w, cell) in width.iter_mut().zip(c) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    let mut line = |cols: [&str; 8]| {
        let mut l = String::new();
        for (i, (c, w)) in cols.iter().zip(width).enumerate() {
            if i + 1 == cols.len() {
                let _ = write!(l, "{c}");
            } else {
                let _ = write!(l, "{c:<w$}  ");
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(HEADERS);
    for c in &cells {
        line([&c[0], &c[1], &c[2], &c[3], &c[4], &c[5], &c[6], &c[7]]);
    }
    out
}
