//! The shell's event handling: control calls from the manager, service
//! calls dispatched to the live module.
use crate::env::{shell_env, EnvCtx};
use alloc::{boxed::Box, format, string::String};
use interfaces::abi::{status, ModuleDescriptor, ModuleEntry, ShellEnv};
use interfaces::control::{self, op, reply, shell_label, ShellStatus, SlotState};
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

pub struct Shell<P: Pd + 'static, L: ModuleLoader> {
    pd: &'static P,
    loader: L,
    control: Option<ChannelId>,
    state: SlotState,
    entry: Option<&'static ModuleEntry>,
    ctx: Box<EnvCtx<P>>,
    env: Box<ShellEnv>,
    calls_served: u64,
    calls_bounced: u64,
}

impl<P: Pd + 'static, L: ModuleLoader> Shell<P, L> {
    pub fn new(pd: &'static P, loader: L) -> Self {
        let mut ctx = Box::new(EnvCtx { pd, allowed_channels: 0, descriptor: None });
        let env = Box::new(shell_env::<P>(&mut *ctx));
        let control = pd.channel(control::MANAGER_PD);
        if control.is_none() {
            pd.log(format_args!("no channel to '{}': nothing can load a module here", control::MANAGER_PD));
        }
        Shell { pd, loader, control, state: SlotState::Empty, entry: None, ctx, env, calls_served: 0, calls_bounced: 0 }
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
            op::ACTIVATE => self.activate(),
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

    fn expect(&self, want: SlotState, step: &str) -> Result<(), String> {
        if self.state == want {
            Ok(())
        } else {
            Err(format!("cannot {step}: slot {} is {}", self.pd.name(), self.state.as_str()))
        }
    }

    fn load(&mut self, words: &[u64]) -> Result<(), String> {
        self.expect(SlotState::Empty, "load")?;
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
        self.expect(SlotState::Loaded, "init")?;
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

    fn activate(&mut self) -> Result<(), String> {
        self.expect(SlotState::Initialised, "activate")?;
        self.state = SlotState::Live;
        Ok(())
    }
}

impl<P: Pd + 'static, L: ModuleLoader> Handler<P> for Shell<P, L> {
    fn notified(&mut self, _pd: &P, ch: ChannelId) {
        if let (SlotState::Live, Some(entry)) = (self.state, self.entry) {
            // SAFETY: a live module's entry table; one call at a time.
            unsafe { (entry.notified)(ch) };
        }
    }

    fn protected(&mut self, _pd: &P, ch: ChannelId, msg: &mut Message) {
        if Some(ch) == self.control {
            return self.control_call(msg);
        }
        match (self.state, self.entry) {
            (SlotState::Live, Some(entry)) => {
                self.calls_served += 1;
                // SAFETY: as in `notified`; `msg` is ours for the call.
                unsafe { (entry.protected)(ch, msg) };
            }
            _ => {
                self.calls_bounced += 1;
                *msg = Message::new(shell_label::NO_SERVICE, 0);
            }
        }
    }
}
