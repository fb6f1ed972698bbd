//! Faults and hangs of children, and the restart policy for a service
//! instance whose final version faults: reload after a backoff that grows
//! with each fault in [`RESTART_WINDOW_NS`]; after [`MAX_RESTARTS`], hold
//! the instance.
//!
//! What the manager does about each kind of child that faulted or hung
//! (probation rollback, reload, reset, restart) is `manager::troubles`;
//! this is what it decides by, kept apart so it is tested alone.
use crate::protocol::HANG_NS;
use alloc::{format, string::String, vec::Vec};
use pd_api::{ChildId, Fault};

/// Restarts of a PD (or reloads of a service instance) before it is held.
pub const MAX_RESTARTS: u32 = 3;
/// Faults further apart than this do not add up.
pub const RESTART_WINDOW_NS: u64 = 30_000_000_000;
/// The wait before the n-th reload within the window (n = 1, 2, 3).
const BACKOFF_NS: [u64; 3] = [0, 100_000_000, 1_000_000_000];

/// What went wrong with a child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trouble {
    Fault {
        child: ChildId,
        incarnation: u32,
        fault: Fault,
    },
    /// Stopped: inside one event past [`HANG_NS`] (the watchdog), or no
    /// answer to a command by its deadline. `since_ns`: when the watchdog
    /// first saw the slot inside that event (0: not known).
    Hang {
        child: ChildId,
        incarnation: u32,
        since_ns: u64,
    },
}

impl Trouble {
    pub fn child(&self) -> ChildId {
        match *self {
            Trouble::Fault { child, .. } | Trouble::Hang { child, .. } => child,
        }
    }
    pub fn incarnation(&self) -> u32 {
        match *self {
            Trouble::Fault { incarnation, .. } | Trouble::Hang { incarnation, .. } => incarnation,
        }
    }
    /// When a hang began, as far as the watchdog saw it.
    pub fn hang_began(&self) -> Option<u64> {
        match *self {
            Trouble::Hang { since_ns, .. } if since_ns != 0 => Some(since_ns),
            _ => None,
        }
    }
    pub fn describe(&self) -> String {
        match self {
            Trouble::Fault { fault, .. } => format!("{fault}"),
            Trouble::Hang { .. } => format!("hung (inside one event for over {} ms)", HANG_NS / 1_000_000),
        }
    }
}

/// An instance's recent faults after its version became final.
#[derive(Default)]
pub struct Restarts {
    /// When each fault in the window happened.
    recent: Vec<u64>,
    /// A reload that waits for its backoff: the image and when.
    pub pending: Option<(&'static str, u64)>,
    /// Held: faulted too often; not reloaded until an operator update.
    pub held: bool,
}

/// What follows a fault of a final version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reload {
    /// Reload at this time; this was fault `nth` in the window.
    At { at_ns: u64, nth: usize },
    /// Too many faults in the window: held, not reloaded.
    Held { faults: usize },
}

impl Restarts {
    /// Counts a fault at `now` and decides when `image` reloads.
    pub fn on_fault(&mut self, image: &'static str, now: u64) -> Reload {
        self.recent.retain(|&t| now.saturating_sub(t) < RESTART_WINDOW_NS);
        self.recent.push(now);
        let n = self.recent.len();
        if n > MAX_RESTARTS as usize {
            self.held = true;
            self.pending = None;
            return Reload::Held { faults: n };
        }
        let at_ns = now + BACKOFF_NS[(n - 1).min(BACKOFF_NS.len() - 1)];
        self.pending = Some((image, at_ns));
        Reload::At { at_ns, nth: n }
    }

    /// Takes the reload that is due at `now`, if any.
    pub fn take_due(&mut self, now: u64) -> Option<&'static str> {
        let (image, at) = self.pending?;
        if at > now {
            return None;
        }
        self.pending = None;
        Some(image)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reloads_back_off_then_hold_and_old_faults_expire() {
        let mut r = Restarts::default();
        assert_eq!(r.on_fault("kv-v1", 0), Reload::At { at_ns: 0, nth: 1 });
        assert_eq!(r.take_due(0), Some("kv-v1"));
        assert_eq!(r.on_fault("kv-v1", 10), Reload::At { at_ns: 100_000_010, nth: 2 });
        assert_eq!(r.take_due(20), None, "not before its backoff");
        assert_eq!(r.take_due(100_000_010), Some("kv-v1"));
        assert_eq!(r.on_fault("kv-v1", 20), Reload::At { at_ns: 1_000_000_020, nth: 3 });
        assert_eq!(r.on_fault("kv-v1", 30), Reload::Held { faults: 4 });
        assert!(r.held && r.pending.is_none());
        // Far apart, faults do not add up.
        let mut r = Restarts::default();
        for k in 0..10 {
            assert_eq!(r.on_fault("kv-v1", k * RESTART_WINDOW_NS), Reload::At { at_ns: k * RESTART_WINDOW_NS, nth: 1 });
        }
    }
}
