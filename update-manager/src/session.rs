//! The operator's session: the commands typed at the console, their
//! answers, and the history they leave.
use crate::command::{self, Command};
use crate::console::{Event, PROMPT};
use crate::history::{Phase, Record, PHASES};
use crate::manager::Manager;
use crate::placer::ImagePlacer;
use crate::status;
use crate::update::{describe, Target};
use alloc::{format, string::String, vec::Vec};
use core::fmt::Write;
use pd_api::Pd;

impl<P: Pd + 'static, L: ImagePlacer> Manager<P, L> {
    pub(crate) fn record_upload(&mut self, outcome: String, admitted: bool) {
        let result = if admitted { Ok(outcome) } else { Err((Phase::Admit, outcome)) };
        self.record(String::from("upload"), [None; 5], result);
    }

    pub(crate) fn record(
        &mut self,
        command: String,
        times_us: [Option<u64>; 5],
        outcome: Result<String, (Phase, String)>,
    ) {
        let at_ms = (self.pd.now_ns() - self.started_ns) / 1_000_000;
        self.history.push(Record { id: 0, at_ms, command, times_us, outcome });
    }

    fn instances_of(&self, service: &str) -> Result<Vec<usize>, String> {
        let v: Vec<usize> = (0..self.instances.len()).filter(|&i| self.instances[i].service == service).collect();
        if v.is_empty() {
            return Err(format!("no instance of service '{service}'"));
        }
        Ok(v)
    }

    fn run_switch(&mut self, service: &str, target: Target, timeout_ms: u64, command: String) {
        let insts = match self.instances_of(service) {
            Ok(v) => v,
            Err(e) => return self.say(&format!("error: {e}\n")),
        };
        self.say(&format!("{command}: {} instance(s)\n", insts.len()));
        match self.switch(&insts, target, timeout_ms * 1_000_000) {
            Ok((times, blackout_us)) => {
                self.say(&format!("  blackout  {blackout_us:>11} us\n"));
                let mut summary = String::new();
                for &i in &insts {
                    let inst = &self.instances[i];
                    let live = inst.live.expect("committed");
                    let held = inst.slots[live.index()].held.expect("committed");
                    let _ = write!(
                        summary,
                        "{}{} runs {} in slot {} (generation {})",
                        if summary.is_empty() { "" } else { "; " },
                        inst.name,
                        describe(&held),
                        live.letter(),
                        inst.generation
                    );
                }
                self.say(&format!("done: {summary}\n"));
                self.record(command, times.map(Some), Ok(summary));
            }
            Err((phase, why)) => {
                self.say(&format!(
                    "  {:<9} FAILED: {why}\nrolled back: every instance of '{service}' still runs its previous version; nothing was lost\n",
                    PHASES[phase as usize]
                ));
                self.record(command, [None; 5], Err((phase, why)));
            }
        }
    }

    fn run(&mut self, cmd: Command) {
        match cmd {
            Command::Help => self.say(command::HELP),
            Command::Version => {
                let text = format!(
                    "update manager {}, module ABI v{}, {} instance(s), {} image(s), {} trusted key(s), uploads {}\n",
                    env!("CARGO_PKG_VERSION"),
                    interfaces::abi::ABI_VERSION,
                    self.instances.len(),
                    self.images.len(),
                    crate::TRUSTED_KEYS.len(),
                    if self.uploads.is_some() { "enabled" } else { "disabled (no upload region)" }
                );
                self.say(&text)
            }
            Command::Status => {
                let table = status::render(&self.status_rows());
                self.say(&table)
            }
            Command::Images => {
                let text = self.images_table();
                self.say(&text)
            }
            Command::Log { last } => {
                let text = self.history.render(last);
                self.say(&text)
            }
            Command::Update { service, image, timeout_ms } => {
                let Some(img) = self.images.iter().find(|i| i.name == image).map(|i| i.name) else {
                    return self.say(&format!("error: no image named '{image}' (see 'images')\n"));
                };
                self.run_switch(&service, Target::Image(img), timeout_ms, format!("update {service} {image}"))
            }
            Command::Floor { raise } => {
                let text = self.floor_command(raise);
                self.say(&text)
            }
            Command::Forget { image } => {
                let text = match self.forget(&image) {
                    Ok(t) | Err(t) => t,
                };
                self.say(&format!("{text}\n"))
            }
            Command::Rollback { service } => {
                self.run_switch(&service, Target::Previous, command::DEFAULT_TIMEOUT_MS, format!("rollback {service}"))
            }
        }
    }

    /// One byte of typed input through the line editor.
    pub(crate) fn console_byte(&mut self, b: u8) {
        let mut echo = String::new();
        let ev = self.console.editor.feed(b, &mut |s| echo.push_str(s));
        if !echo.is_empty() {
            self.say(&echo);
        }
        if let Some(ev) = ev {
            self.on_event(ev);
        }
    }

    fn on_event(&mut self, e: Event) {
        match e {
            Event::Line(line) => match command::parse(&line) {
                Ok(Some(cmd)) => self.run(cmd),
                Ok(None) => {}
                Err(msg) => self.say(&format!("error: {msg}\n")),
            },
            Event::TooLong => {
                self.say(&format!("error: line too long (at most {} characters)\n", crate::console::MAX_LINE))
            }
            Event::Garbage => self.say("error: line holds bytes that are not printable text\n"),
            Event::Cancelled => {}
            Event::EndOfInput => {
                self.say("end of input: halting\n");
                self.flush();
                self.pd.shutdown();
                return;
            }
        }
        self.say(PROMPT);
    }
}
