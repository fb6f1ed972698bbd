//! The control protocol: protected calls from the update manager to a
//! domain shell, and the labels a shell answers with on a service channel.

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
}

/// Labels of manager -> shell calls (on the shell's channel to its parent).
pub mod op {
    /// Load the module whose image is in the code region; word 0 = length.
    pub const LOAD: u64 = 0x4c00_0001;
    /// Run the loaded module's `init`.
    pub const INIT: u64 = 0x4c00_0002;
    /// Start dispatching service calls to the module. Answers OK with word
    /// 0 = when it started (the slot's `now_ns`).
    pub const ACTIVATE: u64 = 0x4c00_0003;
    /// Report counters: see [`super::ShellStatus`].
    pub const STATUS: u64 = 0x4c00_0004;
    /// Quiesce: word 0 = the schema to export in, word 1 = the export's
    /// token (see `transfer`). The shell asks its module
    /// to prepare; once ready (now or after a later event) the state is
    /// exported into the transfer region and calls are answered `MOVED`.
    /// Answers OK with word 0 = when the slot stopped serving (its
    /// `now_ns`), or `reply::NOT_READY`; ask again to learn the outcome.
    pub const PREPARE: u64 = 0x4c00_0005;
    /// Take over the state in the transfer region; word 0 = the token of
    /// the export to take.
    pub const IMPORT: u64 = 0x4c00_0006;
    /// Before commit: a quiescing or moved slot goes back to serving, its
    /// state intact.
    pub const THAW: u64 = 0x4c00_0007;
    /// After commit: a moved slot keeps its module (for a rollback) and
    /// answers `MOVED` to every call.
    pub const RETIRE: u64 = 0x4c00_0008;
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

/// The reply to `op::STATUS`, in words 0..4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShellStatus {
    pub state: SlotState,
    pub module_version: u32,
    pub calls_served: u64,
    pub calls_bounced: u64,
}

impl ShellStatus {
    pub fn to_words(self) -> [u64; 4] {
        [self.state as u64, self.module_version as u64, self.calls_served, self.calls_bounced]
    }

    pub fn from_words(w: &[u64]) -> Option<ShellStatus> {
        let [s, v, c, b] = *w.get(..4)?.first_chunk::<4>()?;
        Some(ShellStatus {
            state: SlotState::from_word(s)?,
            module_version: u32::try_from(v).ok()?,
            calls_served: c,
            calls_bounced: b,
        })
    }
}
