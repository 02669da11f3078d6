//! Keeping the workers' copies of the learned tables in step.
//!
//! With several workers (DESIGN §1), each owns a whole `Switch`: the configured tables are the
//! same everywhere, and what one worker learns — a MAC behind a port or a VTEP, an address
//! behind a MAC — it announces to the others as a `TableUpdate`, which they apply between
//! batches. No worker ever waits for another: announcements travel on bounded lock-free
//! channels (crate::dataplane::sync), and one that finds a channel full is dropped and counted
//! (the other worker then floods that station's frames until it hears of it again, which is
//! what a table miss does anyway).
//!
//! What is announced: a new station, a move, and, every `announce_every` ms, a station that is
//! still active, so that copies on workers that never see its frames do not age it out.
//!
//! Thread-safety: `TableUpdate` is plain data, made on one worker and applied on another.

use super::fdb::Location;
use super::neigh::Source;
use super::Vni;
use crate::wire::MacAddr;
use std::net::Ipv4Addr;

/// Announcements kept per network between two drains of the outbox; more are dropped and
/// counted (the worker drains after every batch of at most 64 frames, so this is slack).
pub const OUTBOX_CAPACITY: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableUpdate {
    /// `mac` lives at `location` in network `net`.
    Fdb {
        net: Vni,
        mac: MacAddr,
        location: Location,
    },
    /// `ip` is at `mac` in network `net`, as learned from `source`.
    Neigh {
        net: Vni,
        ip: Ipv4Addr,
        mac: MacAddr,
        source: Source,
    },
}

/// Announcements one network made and not yet handed to the driver. Capacity is reserved when
/// sync is turned on, so pushing never allocates.
#[derive(Debug, Default)]
pub struct Outbox {
    pub(super) updates: Vec<TableUpdate>,
    /// Announcements dropped because the outbox was full.
    pub lost: u64,
    enabled: bool,
}

impl Outbox {
    pub fn enable(&mut self) {
        self.enabled = true;
        self.updates.reserve_exact(OUTBOX_CAPACITY);
    }

    pub fn push(&mut self, u: TableUpdate) {
        if !self.enabled {
            return;
        }
        if self.updates.len() < OUTBOX_CAPACITY {
            self.updates.push(u);
        } else {
            self.lost += 1;
        }
    }
}
