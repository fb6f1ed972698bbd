//! The operator's session: the commands typed at the console, their
//! answers, and the history they leave.
use crate::command::{self, Command};
use crate::console::{Event, PROMPT};
use crate::history::{Phase, Record, PHASES};
use crate::manager::Manager;
use crate::placer::ImagePlacer;
use crate::status;
use crate::update::Target;
use alloc::{format, string::String, vec::Vec};
use pd_api::Pd;

/// Stands for the end of input among deferred lines (no typed line holds
/// a control character).
const END_OF_INPUT: &str = "\u{4}";

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
                let summary = self.runs_summary(&insts);
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
            Command::Log => {
                let text = self.history.render();
                self.say(&text)
            }
            Command::Update { service, image, timeout_ms } => {
                let Some(img) = self.images.iter().find(|i| i.name == image).map(|i| i.name) else {
                    return self.say(&format!("error: no image named '{image}' (see 'images')\n"));
                };
                self.run_switch(&service, Target::Image(img), timeout_ms, format!("update {service} {image}"))
            }
            Command::Rollback { service } => {
                let on_probation = self.instances.iter().any(|i| i.service == service && i.probation.is_some());
                if on_probation {
                    self.say(&format!(
                        "rollback {service}: on probation: the old version replays the new one's calls\n"
                    ));
                    let text = self.hot_rollback(&service, None, "operator's rollback");
                    return self.say(&text);
                }
                self.run_switch(&service, Target::Previous, command::DEFAULT_TIMEOUT_MS, format!("rollback {service}"))
            }
            Command::Probation { window_ms: None, .. } => {
                let p = self.probation_policy;
                let calls =
                    if p.calls == 0 { String::from("no call limit") } else { format!("at most {} calls", p.calls) };
                self.say(&format!("probation: {} ms, {calls} (and while the journal has room)\n", p.window_ms));
            }
            Command::Probation { window_ms: Some(ms), calls } => {
                self.probation_policy.window_ms = ms;
                if let Some(c) = calls {
                    self.probation_policy.calls = c;
                }
                self.say(&format!("probation for the next updates: {ms} ms, calls {}\n", self.probation_policy.calls));
            }
            Command::Accept { service } => {
                if !self.instances.iter().any(|i| i.service == service && i.probation.is_some()) {
                    return self.say(&format!("error: '{service}' has no update on probation\n"));
                }
                self.make_final(&service, "accepted by the operator");
            }
        }
    }

    /// Runs one command line (typed, or deferred while an update ran).
    pub(crate) fn run_line(&mut self, line: &str) {
        if line == END_OF_INPUT {
            return self.on_event(Event::EndOfInput);
        }
        match command::parse(line) {
            Ok(Some(cmd)) => self.run(cmd),
            Ok(None) => {}
            Err(msg) => self.say(&format!("error: {msg}\n")),
        }
        self.say(PROMPT);
    }

    /// Halts once the console output is out (after end of input), or
    /// after two seconds if the line does not drain.
    pub(crate) fn maybe_halt(&mut self) {
        let Some(since) = self.halt_requested else { return };
        if !self.output_waiting() || self.pd.now_ns().saturating_sub(since) > 2_000_000_000 {
            self.pd.shutdown();
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
            // Lines run in the order typed, from `after_event`, never in the
            // middle of the input being decoded (a command that runs an
            // update takes console input meanwhile). While an update runs,
            // a command that only reads is answered at once, if no line
            // waits before it.
            Event::Line(line) => {
                if self.busy && self.deferred_lines.is_empty() {
                    if let Ok(Some(cmd)) = command::parse(&line) {
                        if cmd.reads_only() {
                            self.run(cmd);
                            self.say(PROMPT);
                            return;
                        }
                    }
                }
                self.deferred_lines.push_back(line);
                return;
            }
            Event::TooLong => {
                self.say(&format!("error: line too long (at most {} characters)\n", crate::console::MAX_LINE))
            }
            Event::Garbage => self.say("error: line holds bytes that are not printable text\n"),
            Event::Cancelled => {}
            Event::EndOfInput => {
                if self.busy || !self.deferred_lines.is_empty() {
                    // Halt after the commands typed before the end.
                    self.deferred_lines.push_back(String::from(END_OF_INPUT));
                    return;
                }
                self.say("end of input: halting\n");
                self.flush();
                self.halt_requested = Some(self.pd.now_ns());
                return;
            }
        }
        self.say(PROMPT);
    }
}
