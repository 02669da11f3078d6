//! Forwarding database of one network: MAC → where it lives (a local port or a remote VTEP).
//!
//! Learned entries age out after `aging_ms` without traffic; stations the control side
//! configured (attachments, remote endpoints) are not here but in the topology
//! (crate::switch::topology), which every lookup consults first.
//! The table has a hard cap: when full, new MACs are not learned (their frames are still
//! flooded), so a container sending from random MACs cannot exhaust memory or push out the
//! stations already known. Capacity is reserved up front (up to `RESERVE_MAX`), so learning
//! does not allocate in the common case.
//!
//! The table also counts its entries per local port, for the per-port cap
//! (crate::switch::limits): a key for every port of the network is made when the topology
//! changes (`track_ports`), so counting never inserts on the packet path.

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
    /// When the other workers were last told about this entry (see `announce_every`).
    announced: Timestamp,
    /// Learned from a frame this copy's worker read (not from another worker's announcement):
    /// counts against the worker's share of a port's MAC cap (crate::switch::limits).
    own: bool,
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
}

#[derive(Debug)]
pub struct Fdb {
    entries: HashMap<MacAddr, Entry>,
    max_entries: usize,
    /// With several workers, each keeps a copy of the table (crate::switch::sync): a station
    /// one worker keeps seeing is re-announced to the others this often (ms).
    announce_every: Option<u64>,
    /// Entries at each local port of the network (`track_ports`).
    per_port: HashMap<PortId, u32>,
    /// Of those, the ones this worker learned itself.
    per_port_own: HashMap<PortId, u32>,
}

/// One entry more (`up`) or less at `at`, if it is a tracked port.
fn count(per_port: &mut HashMap<PortId, u32>, at: Location, up: bool) {
    if let Location::Port(p) = at {
        if let Some(n) = per_port.get_mut(&p) {
            *n = if up {
                n.saturating_add(1)
            } else {
                n.saturating_sub(1)
            };
        }
    }
}

/// `count` for an entry going (`up` false) or coming: in both tallies when it is `own`.
fn tally(
    per_port: &mut HashMap<PortId, u32>,
    per_port_own: &mut HashMap<PortId, u32>,
    at: Location,
    own: bool,
    up: bool,
) {
    count(per_port, at, up);
    if own {
        count(per_port_own, at, up);
    }
}

impl Fdb {
    pub fn new(max_entries: usize) -> Fdb {
        Fdb {
            entries: HashMap::with_capacity(reservation(max_entries)),
            max_entries,
            announce_every: None,
            per_port: HashMap::new(),
            per_port_own: HashMap::new(),
        }
    }

    /// Counts entries per port for exactly `ports` (the network's local ports, after entries
    /// at ports that left were removed). Called when the topology changes; may allocate.
    pub fn track_ports(&mut self, ports: &[PortId]) {
        let wanted: std::collections::HashSet<PortId> = ports.iter().copied().collect();
        self.per_port.retain(|p, _| wanted.contains(p));
        self.per_port_own.retain(|p, _| wanted.contains(p));
        for p in ports {
            if !self.per_port.contains_key(p) {
                let at = self
                    .entries
                    .values()
                    .filter(|e| e.location == Location::Port(*p));
                let (n, own) = at.fold((0u32, 0u32), |(n, o), e| (n + 1, o + u32::from(e.own)));
                self.per_port.insert(*p, n);
                self.per_port_own.insert(*p, own);
            }
        }
    }

    /// How many entries are at local port `p`.
    pub fn port_entries(&self, p: PortId) -> u32 {
        self.per_port.get(&p).copied().unwrap_or(0)
    }

    /// How many of those this worker learned from frames it read itself.
    pub fn port_own_entries(&self, p: PortId) -> u32 {
        self.per_port_own.get(&p).copied().unwrap_or(0)
    }

    /// Makes `learn` answer `RefreshDue` for a station last announced `every_ms` ago or more.
    pub fn set_announce_every(&mut self, every_ms: u64) {
        self.announce_every = Some(every_ms);
    }

    pub fn get(&self, mac: MacAddr) -> Option<&Entry> {
        self.entries.get(&mac)
    }

    pub fn lookup(&self, mac: MacAddr) -> Option<Location> {
        self.entries.get(&mac).map(|e| e.location)
    }

    /// What `learn` would do, without doing it (for `Switch::decide` and `trace`).
    pub fn would_learn(&self, mac: MacAddr, location: Location, now: Timestamp) -> Learned {
        let e = self.entries.get(&mac);
        outcome(e, self.full(), self.announce_every, location, now)
    }

    fn full(&self) -> bool {
        self.entries.len() >= self.max_entries
    }

    /// Records that `mac` was seen at `location` in a frame this worker read; says what
    /// changed. One lookup.
    pub fn learn(&mut self, mac: MacAddr, location: Location, now: Timestamp) -> Learned {
        self.record(mac, location, now, true)
    }

    /// Records what another worker announced (crate::switch::sync).
    pub fn learn_from_peer(&mut self, mac: MacAddr, location: Location, now: Timestamp) {
        if self.record(mac, location, now, false) != Learned::Full {
            if let Some(e) = self.entries.get_mut(&mac) {
                e.announced = now;
            }
        }
    }

    /// `learn` (`own`) or `learn_from_peer`. An entry is this worker's own from the frame that
    /// made or moved it here until it goes or another worker's announcement moves it.
    fn record(&mut self, mac: MacAddr, location: Location, now: Timestamp, own: bool) -> Learned {
        let (full, every) = (self.full(), self.announce_every);
        let fresh = Entry {
            location,
            updated: now,
            announced: now,
            own,
        };
        match self.entries.get_mut(&mac) {
            Some(e) => {
                let o = outcome(Some(&*e), full, every, location, now);
                let announced = if o == Learned::Refreshed {
                    e.announced
                } else {
                    now
                };
                let mut owned = e.own;
                if o == Learned::Moved {
                    let (pp, po) = (&mut self.per_port, &mut self.per_port_own);
                    tally(pp, po, e.location, e.own, false);
                    tally(pp, po, location, own, true);
                    owned = own;
                }
                *e = Entry {
                    announced,
                    own: owned,
                    ..fresh
                };
                o
            }
            None if full => Learned::Full,
            None => {
                self.entries.insert(mac, fresh);
                tally(
                    &mut self.per_port,
                    &mut self.per_port_own,
                    location,
                    own,
                    true,
                );
                Learned::New
            }
        }
    }

    /// Keeps only the entries whose location `keep` accepts.
    pub fn retain_locations(&mut self, mut keep: impl FnMut(Location) -> bool) {
        self.retain(|_, at| keep(at));
    }

    /// Keeps only the entries `keep` accepts, given their MAC and location.
    pub fn retain(&mut self, mut keep: impl FnMut(MacAddr, Location) -> bool) {
        let (pp, po) = (&mut self.per_port, &mut self.per_port_own);
        self.entries.retain(|m, e| {
            let k = keep(*m, e.location);
            if !k {
                tally(pp, po, e.location, e.own, false);
            }
            k
        });
    }

    pub fn remove_port(&mut self, port: PortId) {
        self.retain(|_, at| at != Location::Port(port));
    }

    /// Removes learned entries idle for longer than `aging_ms`; returns how many.
    pub fn expire(&mut self, now: Timestamp, aging_ms: u64) -> usize {
        let before = self.entries.len();
        let (pp, po) = (&mut self.per_port, &mut self.per_port_own);
        self.entries.retain(|_, e| {
            let k = now.millis_since(e.updated) < aging_ms;
            if !k {
                tally(pp, po, e.location, e.own, false);
            }
            k
        });
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

/// What seeing a station at `location` means for its entry `e`: the one place the outcomes
/// are told apart, for `would_learn` and `learn` alike.
fn outcome(
    e: Option<&Entry>,
    full: bool,
    announce_every: Option<u64>,
    location: Location,
    now: Timestamp,
) -> Learned {
    match e {
        Some(e) if e.location == location => match announce_every {
            Some(every) if now.millis_since(e.announced) >= every => Learned::RefreshDue,
            _ => Learned::Refreshed,
        },
        Some(_) => Learned::Moved,
        None if full => Learned::Full,
        None => Learned::New,
    }
}
