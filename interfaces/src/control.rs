//! The control protocol: commands from the update manager to a domain
//! shell (posted on the slot's control page, see `control_page`: the
//! manager never calls a slot), and the labels a shell answers with on a
//! service channel.

/// The update manager's PD name: a shell's control channel is the one to it.
pub const MANAGER_PD: &str = "update_manager";
/// Local names (`setvar_vaddr` symbols) of a slot's mappings.
pub mod region {
    /// Module code: written by the manager, mapped read/execute in the slot.
    pub const CODE: &str = "module_code";
    /// State export/import, shared by both slots of an instance.
    pub const TRANSFER: &str = "transfer";
    /// The capability map, read-only.
    pub const CAPMAP: &str = "capmap";
    /// The slot's control page (see `control_page`), shared with the manager.
    pub const CONTROL: &str = "control";
    /// The probation journal (see `journal`), shared by both slots.
    pub const JOURNAL: &str = "journal";
    /// The probation checkpoint (see `checkpoint`), shared by both slots:
    /// mapped instead of a journal by a service whose calls cannot run
    /// again (the file service).
    pub const CHECKPOINT: &str = "checkpoint";
}

/// What the name of a region says about slot `slot_pd`: `None` if it is
/// not that slot's control region; `Some(Some(service))` for
/// `{service}:{slot_pd}_control`, which names the instance's service type
/// explicitly; `Some(None)` for `{slot_pd}_control`, a control region that
/// names no type (which `sdf::topology::check` and the manager refuse).
///
/// The microkit tool accepts no attributes of its own, so the type rides
/// on the name of a region every slot already has, and that the manager
/// maps: nothing is added to the system, and a type may end in a digit
/// (`ipv6`).
pub fn control_region_service<'a>(region: &'a str, slot_pd: &str) -> Option<Option<&'a str>> {
    let stem = region.strip_suffix("_control")?;
    if stem == slot_pd {
        return Some(None);
    }
    let (service, pd) = stem.split_once(':')?;
    (pd == slot_pd && !service.is_empty()).then_some(Some(service))
}

/// Labels of manager -> shell commands (on the slot's control page).
pub mod op {
    /// Load the module whose image is in the code region; word 0 = length.
    pub const LOAD: u64 = 0x4c00_0001;
    /// Run the loaded module's `init`.
    pub const INIT: u64 = 0x4c00_0002;
    /// Start dispatching service calls to the module. Answers OK with word
    /// 0 = when it started (the slot's `now_ns`).
    pub const ACTIVATE: u64 = 0x4c00_0003;
    /// Quiesce: word 0 = the schema to export in, word 1 = the export's
    /// token (see `transfer`). The shell asks its module
    /// to prepare; once ready (now or after a later event) the state is
    /// exported into the transfer region and calls are answered `MOVED`.
    /// Word 2 = the token of this slot's pre-copy (0: none): a slot that
    /// made it exports the changes since at once, as it stops (they are
    /// few: no import needs to stream behind them).
    /// Answers OK with word 0 = when the slot stopped serving (its
    /// `now_ns`) and word 1 = 1 when it exported already (no `EXPORT`
    /// follows), or `reply::NOT_READY`; ask again to learn the outcome.
    pub const PREPARE: u64 = 0x4c00_0005;
    /// Take over the state in the transfer region; word 0 = the token of
    /// the export to take. Word 1 = 1: a pre-copy's import (see
    /// `PRECOPY`): a module that can take changes later imports the whole
    /// sealed state now; answers OK with word 0 = 1 if it did, 0 if it
    /// skipped it. An import after a pre-copy's import takes only the
    /// changes, if the export names the pre-copy it imported: it answers
    /// OK with word 0 = 1 and word 1 = the bytes it took; word 0 = 0 after
    /// an import of the whole state.
    pub const IMPORT: u64 = 0x4c00_0006;
    /// Before commit: a quiescing or moved slot goes back to serving, its
    /// state intact.
    pub const THAW: u64 = 0x4c00_0007;
    /// After commit: a moved slot keeps its module (for a rollback) and
    /// answers `MOVED` to every call.
    pub const RETIRE: u64 = 0x4c00_0008;
    /// Run the export a ready slot announced (see `PREPARE`); answers once
    /// it is sealed or failed. Word 0 = the token of this slot's pre-copy
    /// (0: none): its module then rewrites only what changed since.
    pub const EXPORT: u64 = 0x4c00_0009;
    /// Probation: word 0 = the probation's token: journal every completed
    /// call under it from now on; 0 = probation is over, stop journaling.
    /// Word 1 = the state schema the old version imports: a slot with a
    /// checkpoint region (instead of a journal) exports its state in it
    /// after every completed call. Answers OK with word 0 =
    /// [`probation_kind`](super::probation_kind).
    pub const PROBATION: u64 = 0x4c00_000a;
    /// A hot rollback is coming: a live slot on probation stops serving at
    /// once (calls are answered `MOVED`) without asking its module, whose
    /// state is about to be discarded.
    pub const FREEZE: u64 = 0x4c00_000b;
    /// A retired slot takes over: replays the journal of probation word 0
    /// on top of the state it kept, or imports its checkpoint; answers OK
    /// with word 0 = the calls replayed (or that the checkpoint covers),
    /// word 1 = [`probation_kind`](super::probation_kind). The slot is then ready to be activated.
    pub const REPLAY: u64 = 0x4c00_000c;
    /// Pre-copy: a live slot whose module can export its changes later
    /// exports its whole state now, in schema word 0 under token word 1,
    /// and serves on. Answers OK with word 0 = 1 if it did (word 1 = the
    /// state's length, word 2 = how long the export held the slot, in ns),
    /// 0 if its module cannot.
    pub const PRECOPY: u64 = 0x4c00_000d;
}

/// How a slot keeps what its module did on probation (a word of the
/// `PROBATION` and `REPLAY` replies).
pub mod probation_kind {
    /// A journal of the calls, replayed by the old version.
    pub const JOURNAL: u64 = 0;
    /// A checkpoint of the state after each call, imported by the old
    /// version.
    pub const CHECKPOINT: u64 = 1;
}

/// Labels of shell replies to control calls.
pub mod reply {
    pub const OK: u64 = 0;
    /// Word 0 = text length, then the text: why the step failed.
    pub const ERROR: u64 = 1;
    /// The module is not yet quiescent.
    pub const NOT_READY: u64 = 2;
}

/// Labels a shell itself answers on a service channel, outside any
/// service's own label space.
pub mod shell_label {
    /// The service has moved: re-read the capability map and retry.
    pub const MOVED: u64 = 0xffff_ffff_ffff_ff01;
    /// No module is live in this slot.
    pub const NO_SERVICE: u64 = 0xffff_ffff_ffff_ff02;
    /// The module failed while handling the call; the call did not complete.
    pub const FAILED: u64 = 0xffff_ffff_ffff_ff03;
}

wire_enum! {
    /// Lifecycle of a slot, as the shell reports it.
    pub enum SlotState via from_word {
        Empty = 0,
        Loaded = 1,
        Initialised = 2,
        Live = 3,
        /// Live, waiting for its module to become quiescent.
        Quiescing = 4,
        /// State exported; calls are answered `MOVED`.
        Moved = 5,
        /// Replaced; module kept for a rollback; calls are answered `MOVED`.
        Retired = 6,
    }
}

impl SlotState {
    pub fn as_str(self) -> &'static str {
        match self {
            SlotState::Empty => "empty",
            SlotState::Loaded => "loaded",
            SlotState::Initialised => "ready",
            SlotState::Live => "live",
            SlotState::Quiescing => "quiescing",
            SlotState::Moved => "moved",
            SlotState::Retired => "retired",
        }
    }
}

/// A slot's counters, as the manager reads them off its control page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShellStatus {
    pub state: SlotState,
    pub module_version: u32,
    pub calls_served: u64,
    pub calls_bounced: u64,
}

impl ShellStatus {
    /// What the slot last published on its control page; `None` while the
    /// page is not set up or holds a state no slot could be in.
    pub fn read(page: &crate::control_page::ControlPage) -> Option<ShellStatus> {
        use core::sync::atomic::Ordering::{Acquire, Relaxed};
        if page.magic.load(Acquire) != crate::control_page::CONTROL_MAGIC {
            return None;
        }
        let c = &page.counters;
        Some(ShellStatus {
            state: SlotState::from_word(c.state.load(Relaxed))?,
            module_version: u32::try_from(c.module_version.load(Relaxed)).ok()?,
            calls_served: c.calls_served.load(Relaxed),
            calls_bounced: c.calls_bounced.load(Relaxed),
        })
    }
}
