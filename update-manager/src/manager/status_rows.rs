//! The tables the `status` and `images` commands show (rendered by
//! `status`), from the manager's state and each slot's control page.
use super::Manager;
use crate::placer::ImagePlacer;
use crate::status::Row;
use alloc::{borrow::ToOwned, format, string::String, vec::Vec};
use core::fmt::Write;
use core::sync::atomic::Ordering::Relaxed;
use interfaces::capmap::Slot;
use interfaces::control::{ShellStatus, SlotState};
use interfaces::stats::ClientStats;
use pd_api::Pd;

impl<P: Pd + 'static, L: ImagePlacer> Manager<P, L> {
    pub(crate) fn images_table(&self) -> String {
        let mut out = String::from("IMAGE           SERVICE  VERSION  SCHEMA  IMPORTS   SIZE\n");
        for i in self.images.iter() {
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
            let slot_of = self
                .slots
                .iter()
                .enumerate()
                .find_map(|(i, pair)| pair.iter().position(|s| &s.pd_name == name).map(|k| (i, &pair[k], k)));
            if let Some((i, slot, k)) = slot_of {
                let inst = &self.instances[i];
                row.service = inst.service.clone();
                row.slot = String::from(if k == 0 { "a" } else { "b" });
                match ShellStatus::read(slot.page) {
                    Some(s) => {
                        row.state = s.state.as_str().into();
                        if s.state != SlotState::Empty {
                            row.version = format!("{}", s.module_version);
                        }
                        row.calls = format!("{}", s.calls_served);
                        let image = inst.held[k].map_or("-", |h| h.image);
                        let now = self.pd.now_ns();
                        row.detail = if inst.live.map(Slot::index) == Some(k) {
                            let mut d = format!("gen {} image {image}", inst.generation);
                            if let Some(p) = inst.probation {
                                let journaled = slot.page.counters.journaled.load(Relaxed);
                                let _ = write!(
                                    d,
                                    " on probation: {} ms left, {journaled} call(s) {}",
                                    p.until_ns.saturating_sub(now) / 1_000_000,
                                    p.kept()
                                );
                                if p.calls > 0 {
                                    let _ = write!(d, " of {}", p.calls);
                                }
                            }
                            d
                        } else if inst.held[k].is_some() {
                            format!("image {image} kept for rollback")
                        } else if self.restarts[i].held {
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
