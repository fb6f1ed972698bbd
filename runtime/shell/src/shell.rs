//! The shell's event handling: control calls from the manager (the update
//! protocol's steps in this slot), service calls dispatched to the live
//! module or bounced.
use crate::env::{shell_env, wait_for_export, EnvCtx, SharedCtx, Stream};
use alloc::{boxed::Box, format, string::String};
use interfaces::abi::{features, status, ModuleDescriptor, ModuleEntry, ShellEnv};
use interfaces::control::{self, op, reply, shell_label, ShellStatus, SlotState};
use interfaces::transfer::{Progress, Transfer};
use interfaces::Message;
use pd_api::{ChannelId, Handler, Pd};

/// Turns what the manager placed in the code region into a callable
/// module: the backend-specific half of loading (the manager's
/// `ImagePlacer` is the other half).
pub trait ModuleLoader {
    /// `code` is the slot's code region; `words` are the LOAD message's
    /// words, as the manager's placer produced them (host: the image
    /// length). Everything in both is untrusted until checked. Returns the
    /// module's entry table and its descriptor.
    fn load(&mut self, code: &[u8], words: &[u64]) -> Result<(&'static ModuleEntry, ModuleDescriptor), String>;
}

/// Where a requested quiescence stands.
enum Quiesce {
    /// Not asked.
    Idle,
    /// Asked; the module said not ready. The schema and token to export
    /// with.
    Waiting(u32, u64),
    /// Quiescent, calls bounced since `stopped_ns`: the export (schema,
    /// token) runs when the manager kicks the control channel, so that the
    /// importer can start reading while it goes on.
    Ready { schema: u32, token: u64, stopped_ns: u64 },
    /// Exported (calls bounced since `stopped_ns`), or why the export
    /// failed.
    Done { stopped_ns: u64, result: Result<(), String> },
}

pub struct Shell<P: Pd + 'static, L: ModuleLoader> {
    pd: &'static P,
    loader: L,
    control: Option<ChannelId>,
    state: SlotState,
    entry: Option<&'static ModuleEntry>,
    /// The module's context: reached only through this pointer (here) and
    /// the copy in `env`; see `SharedCtx` for the invariant.
    ctx: SharedCtx<P>,
    env: Box<ShellEnv>,
    quiesce: Quiesce,
    calls_served: u64,
    calls_bounced: u64,
}

impl<P: Pd + 'static, L: ModuleLoader> Shell<P, L> {
    pub fn new(pd: &'static P, loader: L) -> Self {
        let ctx = SharedCtx::new(EnvCtx { pd, allowed_channels: 0, descriptor: None, stream: None });
        let env = Box::new(shell_env::<P>(ctx.as_ptr()));
        let control = pd.channel(control::MANAGER_PD);
        if control.is_none() {
            pd.log(format_args!("no channel to '{}': nothing can load a module here", control::MANAGER_PD));
        }
        Shell {
            pd,
            loader,
            control,
            state: SlotState::Empty,
            entry: None,
            ctx,
            env,
            quiesce: Quiesce::Idle,
            calls_served: 0,
            calls_bounced: 0,
        }
    }

    pub fn state(&self) -> SlotState {
        self.state
    }

    fn control_call(&mut self, msg: &mut Message) {
        let result = match msg.label {
            op::LOAD => {
                let words = *msg;
                self.load(words.used_words())
            }
            op::INIT => self.init(),
            op::ACTIVATE => {
                let result = self.step(&[SlotState::Initialised], SlotState::Live, "activate");
                if result.is_ok() {
                    // When the blackout ended, as this slot saw it.
                    *msg = Message::with_words(reply::OK, &[self.pd.now_ns()]);
                    return;
                }
                result
            }
            op::PREPARE => return self.prepare(msg),
            op::IMPORT => self.import(msg.word(0)),
            op::THAW => {
                self.quiesce = Quiesce::Idle;
                self.step(&[SlotState::Quiescing, SlotState::Moved, SlotState::Live], SlotState::Live, "thaw")
            }
            op::RETIRE => self.step(&[SlotState::Moved, SlotState::Retired], SlotState::Retired, "retire"),
            op::STATUS => {
                let s = ShellStatus {
                    state: self.state,
                    module_version: self.ctx.descriptor.map_or(0, |d| d.module_version),
                    calls_served: self.calls_served,
                    calls_bounced: self.calls_bounced,
                };
                *msg = Message::with_words(reply::OK, &s.to_words());
                return;
            }
            other => Err(format!("unknown control operation {other:#x}")),
        };
        match result {
            Ok(()) => *msg = Message::new(reply::OK, 0),
            Err(why) => msg.set_text(reply::ERROR, &why),
        }
    }

    fn step(&mut self, from: &[SlotState], to: SlotState, what: &str) -> Result<(), String> {
        if from.contains(&self.state) {
            self.state = to;
            Ok(())
        } else {
            Err(format!("cannot {what}: slot {} is {}", self.pd.name(), self.state.as_str()))
        }
    }

    fn load(&mut self, words: &[u64]) -> Result<(), String> {
        self.step(&[SlotState::Empty], SlotState::Empty, "load")?;
        let code = self
            .pd
            .region(control::region::CODE)
            .ok_or_else(|| format!("slot {} has no '{}' region", self.pd.name(), control::region::CODE))?;
        // SAFETY: only the manager writes the code region, and it does not
        // while it waits for this call to return.
        let (entry, d) = self.loader.load(unsafe { code.as_slice() }, words)?;
        d.check().map_err(|e| format!("{e}"))?;
        if entry.abi_version != interfaces::abi::ABI_VERSION {
            return Err(format!(
                "module entry table is ABI v{}, shell speaks v{}",
                entry.abi_version,
                interfaces::abi::ABI_VERSION
            ));
        }
        let mut allowed = 0u64;
        for name in d.channels() {
            let name = name.as_str().unwrap_or("");
            match self.pd.channel(name) {
                Some(id) if id < 64 => allowed |= 1 << id,
                _ => {
                    return Err(format!(
                        "module {} v{} needs channel '{name}', which slot {} lacks",
                        d.service(),
                        d.module_version,
                        self.pd.name()
                    ))
                }
            }
        }
        for name in d.regions() {
            let name = name.as_str().unwrap_or("");
            if self.pd.region(name).is_none() {
                return Err(format!(
                    "module {} v{} needs region '{name}', which slot {} lacks",
                    d.service(),
                    d.module_version,
                    self.pd.name()
                ));
            }
        }
        self.ctx.allowed_channels = allowed;
        self.ctx.descriptor = Some(d);
        self.entry = Some(entry);
        self.state = SlotState::Loaded;
        Ok(())
    }

    fn init(&mut self) -> Result<(), String> {
        self.step(&[SlotState::Loaded], SlotState::Loaded, "init")?;
        let entry = self.entry.ok_or("no module")?;
        // SAFETY: the entry table came from a checked module; `env` lives in
        // the shell for as long as the module is hosted.
        let rc = unsafe { (entry.init)(&*self.env) };
        if rc != status::OK {
            return Err(format!("module init failed with status {rc}"));
        }
        self.state = SlotState::Initialised;
        Ok(())
    }

    fn transfer(&self) -> Result<Transfer, String> {
        let r =
            self.pd.region(control::region::TRANSFER).filter(|r| r.writable).ok_or_else(|| {
                format!("slot {} has no writable '{}' region", self.pd.name(), control::region::TRANSFER)
            })?;
        // SAFETY: the region is mapped for the PD's lifetime and shared only
        // with the other slot of this instance; the protocol has one writer
        // at a time (see `Transfer::new`).
        unsafe { Transfer::new(r.base, r.size) }
            .ok_or_else(|| format!("slot {}: transfer region too small", self.pd.name()))
    }

    /// Asks the module whether it is quiescent; if so, it stops serving
    /// (calls are bounced from here on) and the export is announced in the
    /// transfer region, to run on the manager's kick.
    fn try_quiesce(&mut self, schema: u32, token: u64) {
        let Some(entry) = self.entry else { return };
        // SAFETY: a live module's entry table; one call at a time.
        if unsafe { (entry.prepare)() } != status::OK {
            self.quiesce = Quiesce::Waiting(schema, token);
            self.state = SlotState::Quiescing;
            return;
        }
        let stopped_ns = self.pd.now_ns();
        match self.transfer() {
            Ok(t) => {
                t.begin(schema, token);
                self.quiesce = Quiesce::Ready { schema, token, stopped_ns };
                self.state = SlotState::Moved;
            }
            Err(why) => {
                self.quiesce = Quiesce::Done { stopped_ns, result: Err(why) };
                self.state = SlotState::Live;
            }
        }
    }

    /// Runs the announced export, reporting progress as the module writes.
    fn export(&mut self, schema: u32, token: u64, stopped_ns: u64) {
        let (Some(entry), Ok(t)) = (self.entry, self.transfer()) else { return };
        let (body, cap) = (t.body(), t.capacity());
        self.ctx.stream = Some(Stream { transfer: t, token, exporting: true });
        let mut len = 0usize;
        // SAFETY: the module writes at most `cap` bytes of the transfer
        // region's body, which the importer only reads.
        let rc = unsafe { (entry.export_state)(schema, body, cap, &mut len) };
        let t = self.ctx.stream.take().expect("set above").transfer;
        let result = if rc != status::OK {
            t.fail();
            Err(format!("module export failed with status {rc}"))
        } else {
            t.seal(len).map_err(String::from)
        };
        self.quiesce = Quiesce::Done { stopped_ns, result };
    }

    fn prepare(&mut self, msg: &mut Message) {
        match (&self.quiesce, self.state) {
            (Quiesce::Idle, SlotState::Live) => self.try_quiesce(msg.word(0) as u32, msg.word(1)),
            (&Quiesce::Waiting(schema, token), SlotState::Quiescing) => self.try_quiesce(schema, token),
            (Quiesce::Ready { .. } | Quiesce::Done { .. }, _) => {}
            (_, state) => {
                return msg
                    .set_text(reply::ERROR, &format!("cannot prepare: slot {} is {}", self.pd.name(), state.as_str()))
            }
        }
        match &self.quiesce {
            Quiesce::Waiting(..) => *msg = Message::new(reply::NOT_READY, 0),
            &Quiesce::Ready { stopped_ns, .. } | &Quiesce::Done { stopped_ns, result: Ok(()) } => {
                *msg = Message::with_words(reply::OK, &[stopped_ns])
            }
            Quiesce::Done { result: Err(why), .. } => {
                let why = why.clone();
                self.quiesce = Quiesce::Idle;
                msg.set_text(reply::ERROR, &why)
            }
            Quiesce::Idle => msg.set_text(reply::ERROR, "quiescence was not requested"),
        }
    }

    fn import(&mut self, token: u64) -> Result<(), String> {
        self.step(&[SlotState::Initialised, SlotState::Retired], self.state, "import")?;
        let entry = self.entry.ok_or("no module")?;
        let t = self.transfer()?;
        // The exporter announced the export before it told the manager it
        // was quiescent, so the header names this update's token already.
        let (schema, progress) = t.poll(token).map_err(String::from)?;
        if progress == Progress::Failed {
            return Err("the export failed".into());
        }
        if !self.ctx.descriptor.is_some_and(|d| d.can_import(schema)) {
            return Err(format!("module cannot import state schema {schema}"));
        }
        let rc = if entry.features & features::STREAMED_STATE != 0 {
            // The module reads as the bytes arrive (through `state_wait`).
            let (body, cap) = (t.body(), t.capacity());
            self.ctx.stream = Some(Stream { transfer: t, token, exporting: false });
            // SAFETY: the module reads `body..body + cap`, only below what
            // the exporter has published (which it no longer writes).
            let rc = unsafe { (entry.import_state)(schema, body, cap) };
            self.ctx.stream = None;
            rc
        } else {
            // A module that cannot stream gets the whole state at once.
            let len = match wait_for_export(self.pd, &t, token, usize::MAX)? {
                Progress::Sealed(n) => n,
                _ => return Err("the export did not complete".into()),
            };
            // SAFETY: sealed: the exporter has finished writing these bytes.
            unsafe { (entry.import_state)(schema, t.body(), len) }
        };
        if rc != status::OK {
            // A streamed import fails too when the export breaks off: name
            // the cause.
            if let Ok((_, Progress::Failed)) = self.transfer().and_then(|t| t.poll(token).map_err(String::from)) {
                return Err("the export failed".into());
            }
            return Err(format!("module import failed with status {rc}"));
        }
        self.quiesce = Quiesce::Idle;
        self.state = SlotState::Initialised;
        Ok(())
    }
}

impl<P: Pd + 'static, L: ModuleLoader> Handler<P> for Shell<P, L> {
    fn notified(&mut self, _pd: &P, ch: ChannelId) {
        if let (true, &Quiesce::Ready { schema, token, stopped_ns }) = (Some(ch) == self.control, &self.quiesce) {
            // The manager's kick: the importer is about to read.
            return self.export(schema, token, stopped_ns);
        }
        if let (SlotState::Live | SlotState::Quiescing, Some(entry)) = (self.state, self.entry) {
            // SAFETY: a live module's entry table; one call at a time.
            unsafe { (entry.notified)(ch) };
        }
        if let Quiesce::Waiting(schema, token) = self.quiesce {
            self.try_quiesce(schema, token);
        }
    }

    fn protected(&mut self, _pd: &P, ch: ChannelId, msg: &mut Message) {
        if Some(ch) == self.control {
            return self.control_call(msg);
        }
        match (self.state, self.entry) {
            (SlotState::Live | SlotState::Quiescing, Some(entry)) => {
                self.calls_served += 1;
                // SAFETY: as in `notified`; `msg` is ours for the call.
                unsafe { (entry.protected)(ch, msg) };
                // Between two events: ask a quiescing module again.
                if let Quiesce::Waiting(schema, token) = self.quiesce {
                    self.try_quiesce(schema, token);
                }
            }
            (SlotState::Moved | SlotState::Retired, _) => {
                self.calls_bounced += 1;
                *msg = Message::new(shell_label::MOVED, 0);
            }
            _ => {
                self.calls_bounced += 1;
                *msg = Message::new(shell_label::NO_SERVICE, 0);
            }
        }
    }
}
