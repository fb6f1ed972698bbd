//! The operator's session: the commands typed at the console, their
//! answers, and the history they leave.
use super::Manager;
use crate::command::{self, Command};
use crate::console::{Deferred, Event, Typed, PROMPT};
use crate::history::{Phase, Record, PHASES};
use crate::placer::ImagePlacer;
use crate::protocol::{self, Target};
use crate::status;
use alloc::{format, string::String, vec::Vec};
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
            Ok(done) => {
                self.say(&format!("  blackout  {:>11} us\n", done.blackout_us));
                if let Some(pause) = done.precopy_pause_us {
                    // The pre-copy held the live slot this long, before
                    // the blackout (no call was answered meanwhile).
                    self.say(&format!("  precopy   {pause:>11} us\n"));
                }
                if let Some(bytes) = done.stop_copy_bytes {
                    // What moved inside the blackout: the changes since.
                    self.say(&format!("  stop-copy {bytes:>11} bytes\n"));
                }
                let summary = protocol::runs_summary(&self.instances, &insts);
                self.say(&format!("done: {summary}\n"));
                self.record(command, done.times_us.map(Some), Ok(summary));
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
                let Some(img) = self.images.get(&image).map(|i| i.name) else {
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
                // A probation whose journal overflowed (or whose checkpoint
                // failed) is over, even if the timer has not said so yet: the
                // old version cannot catch up; the rollback moves the state.
                let now = self.pd.now_ns();
                let ended = (0..self.instances.len())
                    .filter(|&i| self.instances[i].service == service)
                    .find_map(|i| protocol::probation_end_reason(self, i, now));
                if let Some(why) = ended {
                    protocol::make_final(self, &service, why, true);
                }
                let probation = self.instances.iter().filter(|i| i.service == service).find_map(|i| i.probation);
                if let Some(p) = probation {
                    let how = if p.checkpoint {
                        "the old version takes over the new one's last checkpoint"
                    } else {
                        "the old version replays the new one's calls"
                    };
                    self.say(&format!("rollback {service}: on probation: {how}\n"));
                    let text = self.hot_rollback(&service, None, "operator's rollback");
                    return self.say(&text);
                }
                self.run_switch(&service, Target::Previous, command::DEFAULT_TIMEOUT_MS, format!("rollback {service}"))
            }
            Command::Probation { window_ms: None, .. } => {
                let p = self.probation_policy;
                let calls =
                    if p.calls == 0 { String::from("no call limit") } else { format!("at most {} calls", p.calls) };
                self.say(&format!(
                    "probation: {} ms, {calls} (and while the journal has room and checkpoints succeed)\n",
                    p.window_ms
                ));
            }
            Command::Probation { window_ms: Some(ms), calls } => {
                self.probation_policy.window_ms = ms;
                if let Some(c) = calls {
                    self.probation_policy.calls = c;
                }
                self.say(&format!("probation for the next updates: {ms} ms, calls {}\n", self.probation_policy.calls));
            }
            Command::Precopy { on: None } => {
                let state = if self.precopy { "on" } else { "off" };
                self.say(&format!("precopy: {state} (a module that can exports its state while it serves)\n"))
            }
            Command::Precopy { on: Some(on) } => {
                self.precopy = on;
                let state = if on { "on" } else { "off" };
                self.say(&format!("precopy for the next updates: {state}\n"))
            }
            Command::Accept { service } => {
                if !self.instances.iter().any(|i| i.service == service && i.probation.is_some()) {
                    return self.say(&format!("error: '{service}' has no update on probation\n"));
                }
                protocol::make_final(self, &service, "accepted by the operator", true);
            }
        }
    }

    /// Runs one command line and prompts again.
    pub(crate) fn run_line(&mut self, line: &str) {
        match command::parse(line) {
            Ok(Some(cmd)) => self.run(cmd),
            Ok(None) => {}
            Err(msg) => self.say(&format!("error: {msg}\n")),
        }
        self.say(PROMPT);
    }

    /// Runs what was typed while an operation ran, in order, until one of
    /// them starts another (whose waits may defer more).
    pub(crate) fn run_deferred(&mut self) {
        while !self.busy {
            let Some(d) = self.deferred.pop_front() else { return };
            self.say(&d.echo);
            match d.what {
                Typed::Line(line) => self.run_line(&line),
                Typed::Refused(why) => {
                    self.say(&why);
                    self.say(PROMPT);
                }
                Typed::EndOfInput => self.on_event(Event::EndOfInput),
            }
            self.handle_troubles();
        }
    }

    /// Halts once the console output is out (after end of input), or
    /// after two seconds if the line does not drain.
    pub(crate) fn maybe_halt(&mut self) {
        let Some(since) = self.halt_requested else { return };
        if !self.output_waiting() || self.pd.now_ns().saturating_sub(since) > 2_000_000_000 {
            self.pd.shutdown();
        }
    }

    /// One byte of typed input through the line editor. While an operation
    /// runs (or input typed during one waits), the echo is held back and
    /// the line queued with it.
    pub(crate) fn console_byte(&mut self, b: u8) {
        let mut echo = String::new();
        let ev = self.console.editor.feed(b, &mut |s| echo.push_str(s));
        let holding = self.busy || !self.deferred.is_empty();
        if holding {
            self.held_echo.push_str(&echo);
        } else {
            let held = core::mem::take(&mut self.held_echo);
            self.say(&held);
            self.say(&echo);
        }
        let Some(ev) = ev else { return };
        if !holding {
            return self.on_event(ev);
        }
        let echo = core::mem::take(&mut self.held_echo);
        let what = match ev {
            Event::Line(line) => {
                // A command that only reads is answered at once, unless
                // something typed before it still waits.
                if self.deferred.is_empty() {
                    if let Ok(Some(cmd)) = command::parse(&line) {
                        if cmd.reads_only() {
                            self.say(&echo);
                            self.run(cmd);
                            self.say(PROMPT);
                            return;
                        }
                    }
                }
                Typed::Line(line)
            }
            Event::TooLong => Typed::Refused(too_long()),
            Event::Garbage => Typed::Refused(String::from(GARBAGE)),
            Event::Cancelled => return self.say(&echo),
            Event::EndOfInput => Typed::EndOfInput,
        };
        self.deferred.push_back(Deferred { echo, what });
    }

    fn on_event(&mut self, e: Event) {
        match e {
            Event::Line(line) => return self.run_line(&line),
            Event::TooLong => self.say(&too_long()),
            Event::Garbage => self.say(GARBAGE),
            Event::Cancelled => {}
            Event::EndOfInput => {
                self.say("end of input: halting\n");
                self.flush();
                self.halt_requested = Some(self.pd.now_ns());
                return;
            }
        }
        self.say(PROMPT);
    }
}

const GARBAGE: &str = "error: line holds bytes that are not printable text\n";

fn too_long() -> String {
    format!("error: line too long (at most {} characters)\n", crate::console::MAX_LINE)
}
