//! The shell's event handling: commands from the manager on the control
//! page (the update protocol's steps in this slot), service calls
//! dispatched to the live module or bounced, and, during a probation, the
//! journal of the calls the module completed, or the checkpoint of the
//! state after each of them.
use crate::env::{shell_env, wait_for_export, EnvCtx, SharedCtx, Stream};
use crate::precopy::{export_changes, import_changes, Precopied};
use alloc::{boxed::Box, format, string::String};
use core::sync::atomic::Ordering::Relaxed;
use interfaces::abi::{features, status, ModuleDescriptor, ModuleEntry, ShellEnv};
use interfaces::checkpoint::Checkpoint;
use interfaces::control::{self, op, probation_kind, reply, shell_label, SlotState};
use interfaces::control_page::ControlPage;
use interfaces::journal::{Journal, StagedEntry};
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
    /// token) runs on the manager's `EXPORT` command, sent with the
    /// importer's `IMPORT`, so that the importer can read while it goes on
    /// (after a pre-copy the changes are exported at once: `Done`).
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
    /// Where the manager posts commands and this slot publishes its
    /// progress and counters.
    page: Option<&'static ControlPage>,
    /// The sequence number of the last command run.
    last_command: u64,
    journal: Option<Journal>,
    /// The checkpoint region, in a slot whose service's calls cannot be
    /// replayed (see `interfaces::checkpoint`).
    checkpoint: Option<Checkpoint>,
    /// The schema checkpoints are exported in (the old version's).
    checkpoint_schema: u32,
    /// Calls completed during the current probation.
    probation_calls: u64,
    /// The probation being journaled or checkpointed (0: none).
    probation: u64,
    /// The old slot of an update: the pre-copy its module exported.
    precopied: Option<Precopied>,
    /// The new slot of an update: the token and schema of the pre-copy
    /// its module imported.
    preimported: Option<(u64, u32)>,
    /// The new slot of an update: the token of the import it holds, until
    /// it goes live. Once the manager opens the page under it, the first
    /// call goes live without waiting for `ACTIVATE`.
    imported: u64,
    /// When this slot went live on a call after the commit (the `ACTIVATE`
    /// that follows answers with it).
    opened_ns: Option<u64>,
    /// The old slot of an update: the pre-copy its `PREPARE` named, whose
    /// changes it exports the moment it stops.
    stop_base: u64,
}

impl<P: Pd + 'static, L: ModuleLoader> Shell<P, L> {
    pub fn new(pd: &'static P, loader: L) -> Self {
        let control = pd.channel(control::MANAGER_PD);
        if control.is_none() {
            pd.log(format_args!("no channel to '{}': nothing can load a module here", control::MANAGER_PD));
        }
        let page = pd.region(control::region::CONTROL).filter(|r| r.writable).and_then(|r| {
            // SAFETY: the control region is mapped read/write for the PD's
            // life and shared only with the manager; it is accessed only
            // through atomics.
            unsafe { ControlPage::at(r.base, r.size) }
        });
        if page.is_none() {
            pd.log(format_args!(
                "no writable '{}' region: the manager cannot command this slot",
                control::region::CONTROL
            ));
        }
        let ctx =
            SharedCtx::new(EnvCtx { pd, allowed_channels: 0, descriptor: None, stream: None, checkpoint: None, page });
        let env = Box::new(shell_env::<P>(ctx.as_ptr()));
        let journal = pd.region(control::region::JOURNAL).filter(|r| r.writable).and_then(|r| {
            // SAFETY: mapped for the PD's life, shared only with the other
            // slot of this instance, written by one slot at a time (the one
            // on probation).
            unsafe { Journal::new(r.base, r.size) }
        });
        let checkpoint = pd.region(control::region::CHECKPOINT).filter(|r| r.writable).and_then(|r| {
            // SAFETY: as the journal: mapped for the PD's life, shared only
            // with the other slot of this instance, written by one slot at
            // a time (the one on probation).
            unsafe { Checkpoint::new(r.base, r.size) }
        });
        let mut shell = Shell {
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
            page,
            last_command: 0,
            journal,
            checkpoint,
            checkpoint_schema: 0,
            probation_calls: 0,
            probation: 0,
            precopied: None,
            preimported: None,
            imported: 0,
            opened_ns: None,
            stop_base: 0,
        };
        if let Some(p) = page {
            p.shell_starts.fetch_add(1, Relaxed);
            shell.publish_state();
        }
        // A command posted before this incarnation ran (the notification
        // that announced it went to the old one).
        shell.run_command();
        shell
    }

    fn set_state(&mut self, state: SlotState) {
        self.state = state;
        self.publish_state();
    }

    fn publish_state(&self) {
        if let Some(p) = self.page {
            p.counters.state.store(self.state as u64, Relaxed);
            p.counters.module_version.store(self.ctx.descriptor.map_or(0, |d| d.module_version) as u64, Relaxed);
        }
    }

    /// Runs the command the manager posted, if it is new, and answers it.
    fn run_command(&mut self) {
        let Some(page) = self.page else { return };
        let seq = page.command.seq();
        if seq == 0 || seq == self.last_command {
            return;
        }
        let Some(mut msg) = page.command.read(seq) else { return };
        self.last_command = seq;
        self.control_call(&mut msg);
        page.reply.post(seq, &msg);
        if let Some(ch) = self.control {
            self.pd.notify(ch);
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
                // Live already: a call came after the commit opened it.
                let opened = self.opened_ns.take().filter(|_| self.state == SlotState::Live);
                let result = match opened {
                    Some(_) => Ok(()),
                    None => self.step(&[SlotState::Initialised], SlotState::Live, "activate"),
                };
                if result.is_ok() {
                    self.imported = 0;
                    // When the blackout ended, as this slot saw it.
                    *msg = Message::with_words(reply::OK, &[opened.unwrap_or_else(|| self.pd.now_ns())]);
                    return;
                }
                result
            }
            op::PREPARE => return self.prepare(msg),
            op::IMPORT if msg.word(1) == 1 => match self.preimport(msg.word(0)) {
                Ok(done) => {
                    *msg = Message::with_words(reply::OK, &[done as u64]);
                    return;
                }
                Err(e) => Err(e),
            },
            op::IMPORT => match self.import(msg.word(0)) {
                Ok(moved) => {
                    *msg = Message::with_words(reply::OK, &[moved.is_some() as u64, moved.unwrap_or(0)]);
                    return;
                }
                Err(e) => Err(e),
            },
            op::PRECOPY => match self.precopy(msg.word(0), msg.word(1)) {
                Ok(Some((len, ns))) => {
                    *msg = Message::with_words(reply::OK, &[1, len as u64, ns]);
                    return;
                }
                Ok(None) => {
                    *msg = Message::with_words(reply::OK, &[0]);
                    return;
                }
                Err(e) => Err(e),
            },
            op::THAW => {
                self.quiesce = Quiesce::Idle;
                self.precopied = None;
                self.step(&[SlotState::Quiescing, SlotState::Moved, SlotState::Live], SlotState::Live, "thaw")
            }
            op::RETIRE => {
                self.probation = 0;
                self.step(&[SlotState::Moved, SlotState::Retired], SlotState::Retired, "retire")
            }
            op::EXPORT => match self.quiesce {
                Quiesce::Ready { schema, token, stopped_ns } => {
                    self.export(schema, token, stopped_ns, msg.word(0));
                    match &self.quiesce {
                        Quiesce::Done { result: Err(why), .. } => Err(why.clone()),
                        _ => Ok(()),
                    }
                }
                _ => Err(format!("cannot export: slot {} announced no export", self.pd.name())),
            },
            op::PROBATION => match self.start_probation(msg.word(0), msg.word(1)) {
                Ok(kind) => {
                    *msg = Message::with_words(reply::OK, &[kind]);
                    return;
                }
                Err(e) => Err(e),
            },
            op::FREEZE => {
                let result = self.step(&[SlotState::Live, SlotState::Quiescing], SlotState::Moved, "freeze");
                if result.is_ok() {
                    self.probation = 0;
                    self.quiesce = Quiesce::Idle;
                    *msg = Message::with_words(reply::OK, &[self.pd.now_ns()]);
                    return;
                }
                result
            }
            op::REPLAY => match self.replay(msg.word(0)) {
                Ok((n, kind)) => {
                    *msg = Message::with_words(reply::OK, &[n, kind]);
                    return;
                }
                Err(e) => Err(e),
            },
            other => Err(format!("unknown control operation {other:#x}")),
        };
        match result {
            Ok(()) => *msg = Message::new(reply::OK, 0),
            Err(why) => msg.set_text(reply::ERROR, &why),
        }
    }

    fn step(&mut self, from: &[SlotState], to: SlotState, what: &str) -> Result<(), String> {
        if from.contains(&self.state) {
            self.set_state(to);
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
        self.set_state(SlotState::Loaded);
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
        self.set_state(SlotState::Initialised);
        Ok(())
    }

    /// A retired slot takes over from the slot that replaced it: the calls
    /// that one completed during probation `token` run again here, in
    /// order, on the state this slot kept (their replies went out already
    /// and are dropped). Then the slot is ready to be activated.
    fn replay(&mut self, token: u64) -> Result<(u64, u64), String> {
        self.step(&[SlotState::Retired, SlotState::Moved], self.state, "replay")?;
        let entry = self.entry.ok_or("no module")?;
        if self.checkpoint.is_some() && self.journal.is_none() {
            let n = self.restore_checkpoint(entry, token)?;
            self.quiesce = Quiesce::Idle;
            self.set_state(SlotState::Initialised);
            return Ok((n, probation_kind::CHECKPOINT));
        }
        let n = match &self.journal {
            Some(j) => {
                let mut scratch = Message::default();
                let page = self.page;
                j.replay(token, |ch, request| {
                    scratch = *request;
                    // SAFETY: a hosted module's entry table; one call at a
                    // time; the message is ours.
                    unsafe { (entry.protected)(ch, &mut scratch) };
                    // A long journal replays in one event: each call done
                    // is progress, so the watchdog stops only a replay
                    // that is stuck inside one call (a slow machine or an
                    // emulator may take over a second for thousands).
                    if let Some(p) = page {
                        p.note_progress();
                    }
                })
                .map_err(|e| format!("{e}"))?
            }
            None if token == 0 => 0,
            None => return Err(format!("slot {} has no journal to replay", self.pd.name())),
        };
        self.quiesce = Quiesce::Idle;
        self.set_state(SlotState::Initialised);
        Ok((n as u64, probation_kind::JOURNAL))
    }

    /// A retired slot takes over from the checkpoint of probation `token`:
    /// the state the new version had after the last call it answered
    /// (none published: it answered none, and this slot's own state is
    /// current). Returns the calls the checkpoint covers.
    fn restore_checkpoint(&mut self, entry: &'static ModuleEntry, token: u64) -> Result<u64, String> {
        let c = self.checkpoint.as_ref().ok_or("no checkpoint region")?;
        let Some(snap) = c.latest(token).map_err(|e| format!("{e}"))? else { return Ok(0) };
        if !self.ctx.descriptor.is_some_and(|d| d.can_import(snap.schema)) {
            return Err(format!("module cannot import the checkpoint's state schema {}", snap.schema));
        }
        self.ctx.checkpoint = Some(snap.len);
        // SAFETY: `latest` checked `data..data + len` against the region;
        // the slot that wrote it has stopped (or was frozen) and writes no
        // more; the module only reads it.
        let rc = unsafe { (entry.import_state)(snap.schema, snap.data, snap.len) };
        self.ctx.checkpoint = None;
        if rc != status::OK {
            return Err(format!("module import of the checkpoint failed with status {rc}"));
        }
        Ok(snap.calls)
    }

    /// A `PROBATION` command: `token` names the probation (0: it is over);
    /// a slot with a checkpoint region exports its state in `schema` (the
    /// old version's) after each call, and once now, before it serves.
    fn start_probation(&mut self, token: u64, schema: u64) -> Result<u64, String> {
        self.probation = 0;
        self.probation_calls = 0;
        if let Some(p) = self.page {
            p.counters.journaled.store(0, Relaxed);
            p.counters.journal_overflow.store(0, Relaxed);
        }
        let Some(c) = &self.checkpoint else {
            self.probation = token;
            if let (Some(j), true) = (&self.journal, token != 0) {
                j.start(token);
            }
            return Ok(probation_kind::JOURNAL);
        };
        if token == 0 {
            return Ok(probation_kind::CHECKPOINT);
        }
        if self.journal.is_some() {
            return Err(format!("slot {} maps both a journal and a checkpoint region", self.pd.name()));
        }
        let schema = u32::try_from(schema).ok().filter(|&s| s != 0);
        let schema = schema.ok_or("the old version imports no state schema this one exports")?;
        if !self.ctx.descriptor.is_some_and(|d| d.can_export(schema)) {
            return Err(format!("module cannot export state schema {schema} for a checkpoint"));
        }
        c.start(token);
        self.checkpoint_schema = schema;
        // The first checkpoint: the state as imported, before any call.
        let len = self.export_checkpoint().map_err(|e| format!("the first checkpoint failed: {e}"))?;
        self.publish_checkpoint(len);
        self.probation = token;
        Ok(probation_kind::CHECKPOINT)
    }

    /// During a checkpoint probation, after a call: the module makes its
    /// effects durable and exports its state into the checkpoint's spare
    /// half (not yet published). Returns its length.
    fn export_checkpoint(&mut self) -> Result<usize, String> {
        let (Some(entry), Some(c)) = (self.entry, &self.checkpoint) else { return Err("no module".into()) };
        // SAFETY: a hosted module's entry table; one call at a time.
        if unsafe { (entry.prepare)() } != status::OK {
            return Err("the module could not make its state durable".into());
        }
        let (body, cap) = c.spare();
        let mut len = 0usize;
        // The module tracks its changes against its last export: this one.
        self.precopied = None;
        self.ctx.checkpoint = Some(0);
        // SAFETY: the module writes at most `cap` bytes of the spare half,
        // which no reader looks at until it is published.
        let rc = unsafe { (entry.export_state)(self.checkpoint_schema, body, cap, &mut len) };
        self.ctx.checkpoint = None;
        match rc {
            status::OK if len <= cap => Ok(len),
            status::OK => Err("the module claims more state than the checkpoint holds".into()),
            status::NO_SPACE => Err(format!("the state does not fit the checkpoint ({cap} bytes)")),
            rc => Err(format!("the module's export failed with status {rc}")),
        }
    }

    /// Publishes the checkpoint [`export_checkpoint`] wrote.
    ///
    /// [`export_checkpoint`]: Self::export_checkpoint
    fn publish_checkpoint(&self, len: usize) {
        let (Some(c), Some(page)) = (&self.checkpoint, self.page) else { return };
        if c.publish(self.checkpoint_schema, len, self.probation_calls) {
            page.counters.journaled.store(self.probation_calls, Relaxed);
        }
    }

    /// A checkpoint could not be taken: the old version can no longer
    /// catch up, so the probation ends (the manager sees the overflow).
    fn checkpoint_failed(&self, why: &str) {
        self.pd.log(format_args!("probation checkpoint: {why}; the update becomes final"));
        if let Some(p) = self.page {
            p.counters.journal_overflow.store(1, Relaxed);
        }
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
            self.set_state(SlotState::Quiescing);
            return;
        }
        let stopped_ns = self.pd.now_ns();
        match self.transfer() {
            Ok(t) => {
                t.begin(schema, token);
                self.quiesce = Quiesce::Ready { schema, token, stopped_ns };
                self.set_state(SlotState::Moved);
                // After a pre-copy only the changes move: export them now,
                // not one wake-up later on the manager's `EXPORT`.
                let base = core::mem::take(&mut self.stop_base);
                if base != 0 && self.precopied.as_ref().is_some_and(|p| p.token == base && p.schema == schema) {
                    self.export(schema, token, stopped_ns, base);
                }
            }
            Err(why) => {
                self.quiesce = Quiesce::Done { stopped_ns, result: Err(why) };
                self.set_state(SlotState::Live);
            }
        }
    }

    /// A `PRECOPY` command: a live slot whose module can export its
    /// changes later exports its whole state now, in `schema` under
    /// `token`, and serves on. Returns the state's length and how long the
    /// export held the slot; `None` when the module cannot.
    fn precopy(&mut self, schema: u64, token: u64) -> Result<Option<(usize, u64)>, String> {
        self.precopied = None;
        self.step(&[SlotState::Live], SlotState::Live, "pre-copy")?;
        let entry = self.entry.ok_or("no module")?;
        if entry.features & features::PRECOPY == 0 || entry.export_changes.is_none() {
            return Ok(None);
        }
        let schema = u32::try_from(schema)
            .ok()
            .filter(|&s| s != 0 && self.ctx.descriptor.is_some_and(|d| d.can_export(s)))
            .ok_or_else(|| format!("module cannot export state schema {schema}"))?;
        if token == 0 {
            return Err("a pre-copy needs a token".into());
        }
        let t = self.transfer()?;
        let started = self.pd.now_ns();
        t.begin(schema, token);
        let len = self.export_whole(entry, t, schema, token, "pre-copy export")?;
        self.precopied = Some(Precopied { token, schema, len });
        Ok(Some((len, self.pd.now_ns().saturating_sub(started))))
    }

    /// Runs the announced export, reporting progress as the module writes.
    /// After this slot's pre-copy `base`, the module rewrites only what
    /// changed since, if it can; else it exports the whole state.
    fn export(&mut self, schema: u32, token: u64, stopped_ns: u64, base: u64) {
        let (Some(entry), Ok(t)) = (self.entry, self.transfer()) else { return };
        let precopied = self.precopied.take().filter(|p| base != 0 && p.token == base && p.schema == schema);
        if let Some(p) = precopied {
            match export_changes(entry, &t, p) {
                Ok(()) => {
                    self.quiesce = Quiesce::Done { stopped_ns, result: Ok(()) };
                    return;
                }
                Err(why) => self.pd.log(format_args!("export of the changes: {why}; exporting the whole state")),
            }
        }
        let result = self.export_whole(entry, t, schema, token, "export").map(|_| ());
        self.quiesce = Quiesce::Done { stopped_ns, result };
    }

    /// The module exports its whole state in `schema` into the transfer
    /// region (announced under `token`), reporting progress as it writes;
    /// the export is then sealed, or failed. Its length, or why not.
    fn export_whole(
        &mut self,
        entry: &'static ModuleEntry,
        t: Transfer,
        schema: u32,
        token: u64,
        what: &str,
    ) -> Result<usize, String> {
        let (body, cap) = (t.body(), t.capacity());
        self.ctx.stream = Some(Stream { transfer: t, token, exporting: true });
        let mut len = 0usize;
        // SAFETY: the module writes at most `cap` bytes of the transfer
        // region's body, which the other slot only reads.
        let rc = unsafe { (entry.export_state)(schema, body, cap, &mut len) };
        let t = self.ctx.stream.take().expect("set above").transfer;
        if rc != status::OK {
            t.fail();
            return Err(format!("module {what} failed with status {rc}"));
        }
        t.seal(len)?;
        Ok(len)
    }

    fn prepare(&mut self, msg: &mut Message) {
        match (&self.quiesce, self.state) {
            (Quiesce::Idle, SlotState::Live) => {
                self.stop_base = msg.word(2);
                self.try_quiesce(msg.word(0) as u32, msg.word(1))
            }
            (&Quiesce::Waiting(schema, token), SlotState::Quiescing) => self.try_quiesce(schema, token),
            (Quiesce::Ready { .. } | Quiesce::Done { .. }, _) => {}
            (_, state) => {
                return msg
                    .set_text(reply::ERROR, &format!("cannot prepare: slot {} is {}", self.pd.name(), state.as_str()))
            }
        }
        match &self.quiesce {
            Quiesce::Waiting(..) => *msg = Message::new(reply::NOT_READY, 0),
            &Quiesce::Ready { stopped_ns, .. } => *msg = Message::with_words(reply::OK, &[stopped_ns, 0]),
            &Quiesce::Done { stopped_ns, result: Ok(()) } => *msg = Message::with_words(reply::OK, &[stopped_ns, 1]),
            Quiesce::Done { result: Err(why), .. } => {
                let why = why.clone();
                self.quiesce = Quiesce::Idle;
                msg.set_text(reply::ERROR, &why)
            }
            Quiesce::Idle => msg.set_text(reply::ERROR, "quiescence was not requested"),
        }
    }

    /// An `IMPORT` of a pre-copy (`token`): a module that can take the
    /// changes later imports the whole sealed state now. `false`: it
    /// cannot, and imports everything at the stop.
    fn preimport(&mut self, token: u64) -> Result<bool, String> {
        self.preimported = None;
        self.step(&[SlotState::Initialised, SlotState::Retired], self.state, "import")?;
        let entry = self.entry.ok_or("no module")?;
        if entry.features & features::PRECOPY == 0 || entry.import_changes.is_none() {
            return Ok(false);
        }
        let t = self.transfer()?;
        let (schema, progress) = t.poll(token).map_err(String::from)?;
        if !matches!(progress, Progress::Sealed(_)) {
            return Err("the pre-copy is not sealed".into());
        }
        if !self.ctx.descriptor.is_some_and(|d| d.can_import(schema)) {
            return Err(format!("module cannot import state schema {schema}"));
        }
        let rc = self.import_whole(entry, t, token, schema);
        if rc != status::OK {
            return Err(format!("module import of the pre-copy failed with status {rc}"));
        }
        self.preimported = Some((token, schema));
        Ok(true)
    }

    /// An `IMPORT` at the stop. `Some(bytes)`: the module took only the
    /// changes since its pre-copy, that many bytes.
    fn import(&mut self, token: u64) -> Result<Option<u64>, String> {
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
        let mut moved = None;
        let rc = match self.preimported.take() {
            // After a pre-copy's import the export is of the changes, and
            // short: wait for its seal, then take only those if it lists
            // them against the pre-copy this module imported.
            Some((base, base_schema)) if base_schema == schema => {
                let len = match wait_for_export(self.pd, &t, token, usize::MAX)? {
                    Progress::Sealed(n) => n,
                    _ => return Err("the export did not complete".into()),
                };
                match import_changes(entry, &t, schema, len, base) {
                    Ok(bytes) => {
                        moved = Some(bytes);
                        status::OK
                    }
                    Err(why) => {
                        self.pd.log(format_args!("import of the changes: {why}; importing the whole state"));
                        self.import_whole(entry, t, token, schema)
                    }
                }
            }
            _ => self.import_whole(entry, t, token, schema),
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
        self.set_state(SlotState::Initialised);
        self.imported = token;
        Ok(moved)
    }

    /// The module imports the whole state of export `token`: streamed as
    /// the bytes arrive if it can, else once it is sealed. Its status.
    fn import_whole(&mut self, entry: &'static ModuleEntry, t: Transfer, token: u64, schema: u32) -> i32 {
        if entry.features & features::STREAMED_STATE != 0 {
            // The module reads as the bytes arrive (through `state_wait`).
            let (body, cap) = (t.body(), t.capacity());
            self.ctx.stream = Some(Stream { transfer: t, token, exporting: false });
            // SAFETY: the module reads `body..body + cap`, only below what
            // the exporter has published (which it no longer writes).
            let rc = unsafe { (entry.import_state)(schema, body, cap) };
            self.ctx.stream = None;
            return rc;
        }
        // A module that cannot stream gets the whole state at once.
        match wait_for_export(self.pd, &t, token, usize::MAX) {
            // SAFETY: sealed: the exporter has finished writing these bytes.
            Ok(Progress::Sealed(len)) => unsafe { (entry.import_state)(schema, t.body(), len) },
            _ => status::ERROR,
        }
    }

    /// Counts a call answered without the module.
    fn bounce(&mut self, msg: &mut Message, label: u64) {
        self.calls_bounced += 1;
        if let Some(p) = self.page {
            p.counters.calls_bounced.store(self.calls_bounced, Relaxed);
        }
        *msg = Message::new(label, 0);
    }

    /// During probation, before the module runs: writes `request` into
    /// the journal past its committed length (see `interfaces::journal`);
    /// the entry counts only once [`Shell::commit_call`] commits it.
    fn stage_call(&self, ch: ChannelId, request: &Message) -> Option<StagedEntry> {
        self.page?;
        Some(match &self.journal {
            Some(j) if !self.journal_overflowed() => j.stage(ch, request),
            _ => StagedEntry::NOT_KEPT,
        })
    }

    /// A call of this probation could not be journaled (or checkpointed).
    fn journal_overflowed(&self) -> bool {
        self.page.is_some_and(|p| p.counters.journal_overflow.load(Relaxed) != 0)
    }

    /// The module completed the staged call: journal it before the reply
    /// leaves, or mark the journal overflowed if it did not fit.
    fn commit_call(&self, entry: StagedEntry) {
        let Some(page) = self.page else { return };
        let c = &page.counters;
        if self.journal.as_ref().is_some_and(|j| j.commit(entry)) {
            c.journaled.store(c.journaled.load(Relaxed) + 1, Relaxed);
        } else {
            c.journal_overflow.store(1, Relaxed);
        }
    }
}

impl<P: Pd + 'static, L: ModuleLoader> Handler<P> for Shell<P, L> {
    fn notified(&mut self, _pd: &P, ch: ChannelId) {
        let event = self.page.map(|p| (p, p.begin_event()));
        // The manager's notification may be news for the module too (the
        // serial service: console output waits), if it declared the
        // channel; any other goes to the module as before.
        let for_module = if Some(ch) == self.control {
            self.run_command();
            ch < 64 && self.ctx.allowed_channels & (1 << ch) != 0
        } else {
            true
        };
        if let (true, SlotState::Live | SlotState::Quiescing, Some(entry)) = (for_module, self.state, self.entry) {
            // SAFETY: a live module's entry table; one call at a time.
            unsafe { (entry.notified)(ch) };
        }
        if let Quiesce::Waiting(schema, token) = self.quiesce {
            self.try_quiesce(schema, token);
        }
        if let Some((p, n)) = event {
            p.end_event(n);
        }
    }

    fn protected(&mut self, _pd: &P, ch: ChannelId, msg: &mut Message) {
        if Some(ch) == self.control {
            // The manager commands through the control page only.
            return msg.set_text(reply::ERROR, "control operations go through the control page");
        }
        if self.state == SlotState::Initialised && self.page.is_some_and(|p| p.is_open(self.imported)) {
            // The manager committed this slot's import: serve from now on
            // (the `ACTIVATE` on its way finds the slot live).
            self.imported = 0;
            self.opened_ns = Some(self.pd.now_ns());
            self.set_state(SlotState::Live);
        }
        match (self.state, self.entry) {
            (SlotState::Live | SlotState::Quiescing, Some(entry)) => {
                self.calls_served += 1;
                let checkpointing = self.probation != 0 && self.checkpoint.is_some();
                let journaling = self.probation != 0 && !checkpointing;
                // Staged before the module writes its reply over `msg`.
                let staged = if journaling { self.stage_call(ch, msg) } else { None };
                let event = self.page.map(|p| (p, p.begin_event()));
                // SAFETY: as in `notified`; `msg` is ours for the call.
                unsafe { (entry.protected)(ch, msg) };
                // Between two events: ask a quiescing module again (never
                // during a probation: an update ends the probation first).
                if let Quiesce::Waiting(schema, token) = self.quiesce {
                    self.try_quiesce(schema, token);
                }
                // The checkpoint's module code (prepare, export) runs inside
                // the event, so the watchdog stops it if it hangs, and a
                // fault there publishes nothing; only the publication (one
                // store) follows the event, like a journal entry.
                let checkpoint = (checkpointing && !self.journal_overflowed()).then(|| {
                    self.probation_calls += 1;
                    self.export_checkpoint()
                });
                if let Some((p, n)) = event {
                    // Ended before the journal entry or the checkpoint's
                    // publication: a slot stopped while inside the module
                    // has recorded nothing of this call (and sent no reply),
                    // so the call's retry runs once.
                    p.end_event(n);
                    p.counters.calls_served.store(self.calls_served, Relaxed);
                }
                if let Some(entry) = staged {
                    self.commit_call(entry);
                }
                match checkpoint {
                    Some(Ok(len)) => self.publish_checkpoint(len),
                    Some(Err(why)) => self.checkpoint_failed(&why),
                    None => {}
                }
            }
            (SlotState::Moved | SlotState::Retired, _) => self.bounce(msg, shell_label::MOVED),
            _ => self.bounce(msg, shell_label::NO_SERVICE),
        }
    }
}
