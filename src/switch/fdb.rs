//! Forwarding database of one network: MAC → where it lives (a local port or a remote VTEP).
//!
//! Learned entries age out after `aging_ms` without traffic; entries made by attach are static.
//! The table has a hard cap: when full, new MACs are not learned (their frames are still
//! flooded), so a container sending from random MACs cannot exhaust memory or push out the
//! stations already known. Capacity is reserved up front (up to `RESERVE_MAX`), so learning
//! does not allocate in the common case.

use super::{PortId, Timestamp, VtepAddr};
use crate::wire::MacAddr;
use std::collections::HashMap;

/// Capacity reserved up front. Tables capped above this grow (rarely, by doubling) as stations
/// appear, instead of reserving memory for a cap that is a limit, not an expectation.
pub const RESERVE_MAX: usize = 65536;

/// Room reserved for a table capped at `max_entries`: twice the cap (up to `RESERVE_MAX`), so
/// that with the table full and entries aging out, the live entries stay under half the room
/// and hashbrown clears its deleted-entry markers in place instead of growing the table on the
/// packet path (found by tests/no_alloc.rs).
pub fn reservation(max_entries: usize) -> usize {
    max_entries.min(RESERVE_MAX).saturating_mul(2)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    Port(PortId),
    Vtep(VtepAddr),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub location: Location,
    pub updated: Timestamp,
    pub is_static: bool,
    /// When the other workers were last told about this entry (see `announce_every`).
    announced: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learned {
    Refreshed,
    /// Refreshed, and the other workers have not heard of this station for a while: tell them,
    /// so their copies do not age it out (only with `announce_every`).
    RefreshDue,
    New,
    Moved,
    /// Table full: not learned.
    Full,
    /// A static entry holds this MAC elsewhere: not overwritten.
    StaticConflict,
}

#[derive(Debug)]
pub struct Fdb {
    entries: HashMap<MacAddr, Entry>,
    max_entries: usize,
    /// With several workers, each keeps a copy of the table (crate::switch::sync): a station
    /// one worker keeps seeing is re-announced to the others this often (ms).
    announce_every: Option<u64>,
}

impl Fdb {
    pub fn new(max_entries: usize) -> Fdb {
        Fdb {
            entries: HashMap::with_capacity(reservation(max_entries)),
            max_entries,
            announce_every: None,
        }
    }

    /// Makes `learn` answer `RefreshDue` for a station last announced `every_ms` ago or more.
    pub fn set_announce_every(&mut self, every_ms: u64) {
        self.announce_every = Some(every_ms);
    }

    pub fn lookup(&self, mac: MacAddr) -> Option<Location> {
        self.entries.get(&mac).map(|e| e.location)
    }

    pub fn learn(&mut self, mac: MacAddr, location: Location, now: Timestamp) -> Learned {
        if let Some(e) = self.entries.get_mut(&mac) {
            if e.location == location {
                e.updated = now;
                if let Some(every) = self.announce_every {
                    if now.millis_since(e.announced) >= every {
                        e.announced = now;
                        return Learned::RefreshDue;
                    }
                }
                return Learned::Refreshed;
            }
            if e.is_static {
                return Learned::StaticConflict;
            }
            e.location = location;
            e.updated = now;
            e.announced = now;
            return Learned::Moved;
        }
        if self.entries.len() >= self.max_entries {
            return Learned::Full;
        }
        self.entries.insert(
            mac,
            Entry {
                location,
                updated: now,
                is_static: false,
                announced: now,
            },
        );
        Learned::New
    }

    /// Takes what another worker learned (crate::switch::sync): like `learn`, but the entry
    /// counts as announced now, so this copy does not echo it back.
    pub fn learn_from_peer(&mut self, mac: MacAddr, location: Location, now: Timestamp) {
        if self.learn(mac, location, now) != Learned::Full {
            if let Some(e) = self.entries.get_mut(&mac) {
                e.announced = now;
            }
        }
    }

    /// An entry that never ages (a container attached by us). Not subject to the cap, since
    /// attachments are bounded by the operator, not by traffic.
    pub fn insert_static(&mut self, mac: MacAddr, port: PortId, now: Timestamp) {
        self.entries.insert(
            mac,
            Entry {
                location: Location::Port(port),
                updated: now,
                is_static: true,
                announced: now,
            },
        );
    }

    /// Forgets everything behind `port` (detach).
    pub fn remove_port(&mut self, port: PortId) {
        self.entries
            .retain(|_, e| e.location != Location::Port(port));
    }

    /// Removes learned entries idle for longer than `aging_ms`; returns how many.
    pub fn expire(&mut self, now: Timestamp, aging_ms: u64) -> usize {
        let before = self.entries.len();
        self.entries
            .retain(|_, e| e.is_static || now.millis_since(e.updated) < aging_ms);
        before - self.entries.len()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&MacAddr, &Entry)> {
        self.entries.iter()
    }
}
