//! The `status` and `images` tables.
use crate::manager::Manager;
use crate::placer::ImagePlacer;
use alloc::{borrow::ToOwned, format, string::String, vec::Vec};
use core::fmt::Write;
use core::sync::atomic::Ordering::Relaxed;
use interfaces::capmap::Slot;
use interfaces::control::{ShellStatus, SlotState};
use interfaces::stats::ClientStats;
use pd_api::Pd;

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

impl<P: Pd + 'static, L: ImagePlacer> Manager<P, L> {
    pub(crate) fn images_table(&self) -> String {
        let mut out = String::from("IMAGE           SERVICE  VERSION  SCHEMA  IMPORTS   SIZE\n");
        for i in &self.images {
            match &i.descriptor {
                Ok(d) => {
                    let imports: Vec<String> =
                        d.import_schemas[..d.n_import_schemas as usize].iter().map(|s| format!("{s}")).collect();
                    let _ = writeln!(
                        out,
                        "{:<15} {:<8} {:<8} {:<7} {:<9} {}",
                        i.name,
                        d.service(),
                        d.module_version,
                        d.state_schema,
                        if imports.is_empty() { String::from("-") } else { imports.join(",") },
                        i.bytes.len()
                    );
                    if self.check_floor(d).is_err() {
                        out.pop();
                        out.push_str("  (below the version floor)\n");
                    }
                }
                Err(e) => {
                    let _ = writeln!(out, "{:<15} refused: {e}", i.name);
                }
            }
        }
        out.push_str(&self.floors_line());
        out
    }

    pub(crate) fn status_rows(&self) -> Vec<Row> {
        let dash = || String::from("-");
        let mut rows = Vec::new();
        rows.push(Row {
            pd: self.pd.name().to_owned(),
            service: dash(),
            version: dash(),
            slot: dash(),
            state: "running".into(),
            calls: dash(),
            faults: 0,
            detail: format!("manager, {} update(s)", self.history.len()),
        });
        for (_, name, faults) in &self.children {
            let mut row = Row {
                pd: name.clone(),
                service: dash(),
                version: dash(),
                slot: dash(),
                state: "running".into(),
                calls: dash(),
                faults: *faults,
                detail: String::new(),
            };
            let slot_of =
                self.instances.iter().find_map(|i| i.slots.iter().position(|s| &s.pd_name == name).map(|k| (i, k)));
            if let Some((inst, k)) = slot_of {
                row.service = inst.service.clone();
                row.slot = String::from(if k == 0 { "a" } else { "b" });
                match ShellStatus::read(inst.slots[k].page) {
                    Some(s) => {
                        row.state = s.state.as_str().into();
                        if s.state != SlotState::Empty {
                            row.version = format!("{}", s.module_version);
                        }
                        row.calls = format!("{}", s.calls_served);
                        let image = inst.slots[k].held.map_or("-", |h| h.image);
                        let now = self.pd.now_ns();
                        row.detail = if inst.live.map(Slot::index) == Some(k) {
                            let mut d = format!("gen {} image {image}", inst.generation);
                            if let Some(p) = inst.probation {
                                let journaled = inst.slots[k].page.counters.journaled.load(Relaxed);
                                let _ = write!(
                                    d,
                                    " on probation: {} ms left, {journaled} call(s) journaled",
                                    p.until_ns.saturating_sub(now) / 1_000_000
                                );
                                if p.calls > 0 {
                                    let _ = write!(d, " of {}", p.calls);
                                }
                            }
                            d
                        } else if inst.slots[k].held.is_some() {
                            format!("image {image} kept for rollback")
                        } else if inst.restarts.held {
                            String::from("held: faulted too often")
                        } else {
                            String::new()
                        };
                    }
                    None => row.state = "unreachable".into(),
                }
            } else if let Some(r) = self.pd.region(&format!("{name}_stats")) {
                // SAFETY: the client's stats page, read-only here, read
                // through atomics and validated by its magic.
                let stats = unsafe { &*(r.base as *const ClientStats) };
                row.detail = match stats.read() {
                    Some(c) => {
                        format!(
                            "verified={} wrong={} retried={} failed={} audits={}",
                            c.verified, c.wrong, c.retried, c.failed, c.audits
                        )
                    }
                    None => "no stats yet".into(),
                };
                row.service = "client".into();
            } else if name == "serial" {
                row.service = "serial".into();
            }
            rows.push(row);
        }
        rows
    }
}
