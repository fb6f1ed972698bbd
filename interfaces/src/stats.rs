//! Counters a client PD publishes in a region its supervisor can read.
use core::sync::atomic::{AtomicU64, Ordering};

pub const STATS_MAGIC: u64 = 0x5354_4154_5331; // "STATS1"

#[repr(C)]
pub struct ClientStats {
    pub magic: AtomicU64,
    /// Replies that matched the client's own model of the store.
    pub verified: AtomicU64,
    /// Replies that did not: must stay zero.
    pub wrong: AtomicU64,
    /// Calls retried after a `MOVED` bounce.
    pub retried: AtomicU64,
    /// Calls that failed outright (service down).
    pub failed: AtomicU64,
    /// Full read-backs of the client's keys that matched its model.
    pub audits: AtomicU64,
}

/// A snapshot, as read by the supervisor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientCounts {
    pub verified: u64,
    pub wrong: u64,
    pub retried: u64,
    pub failed: u64,
    pub audits: u64,
}

impl ClientStats {
    pub fn init(&self) {
        for c in [&self.verified, &self.wrong, &self.retried, &self.failed, &self.audits] {
            c.store(0, Ordering::Relaxed);
        }
        self.magic.store(STATS_MAGIC, Ordering::Release);
    }

    pub fn read(&self) -> Option<ClientCounts> {
        (self.magic.load(Ordering::Acquire) == STATS_MAGIC).then(|| ClientCounts {
            verified: self.verified.load(Ordering::Relaxed),
            wrong: self.wrong.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            audits: self.audits.load(Ordering::Relaxed),
        })
    }
}
