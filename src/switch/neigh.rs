//! Neighbour table of one network: IPv4 → MAC, the knowledge behind proxy-ARP.
//!
//! Filled from attachments (static), ARP seen in either direction, and the source addresses of
//! decapsulated IPv4 traffic. Only addresses inside the network's subnet are kept, so a
//! router's MAC is never recorded as the owner of a remote host's address. Capped like the FDB.

use super::Timestamp;
use crate::wire::MacAddr;
use std::collections::HashMap;
use std::net::Ipv4Addr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Attach,
    Arp,
    Decap,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::Attach => "attach",
            Source::Arp => "arp",
            Source::Decap => "decap",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub mac: MacAddr,
    pub source: Source,
    pub updated: Timestamp,
    /// When the other workers were last told (see `crate::switch::fdb::Fdb::announce_every`).
    announced: Timestamp,
}

#[derive(Debug)]
pub struct NeighTable {
    entries: HashMap<Ipv4Addr, Entry>,
    max_entries: usize,
    announce_every: Option<u64>,
}

impl NeighTable {
    pub fn new(max_entries: usize) -> NeighTable {
        NeighTable {
            entries: HashMap::with_capacity(super::fdb::reservation(max_entries)),
            max_entries,
            announce_every: None,
        }
    }

    /// Makes `learn` answer true for an entry last announced `every_ms` ago or more.
    pub fn set_announce_every(&mut self, every_ms: u64) {
        self.announce_every = Some(every_ms);
    }

    pub fn lookup(&self, ip: Ipv4Addr) -> Option<MacAddr> {
        self.entries.get(&ip).map(|e| e.mac)
    }

    /// Records ip → mac. An attachment's entry is only replaced by another attachment.
    /// Records that `ip` is at `mac`. Returns whether the other workers should hear of it: a
    /// new or changed entry, or (with `announce_every`) one not announced for a while. Never
    /// true without `announce_every`.
    pub fn learn(&mut self, ip: Ipv4Addr, mac: MacAddr, source: Source, now: Timestamp) -> bool {
        let due = |announced: Timestamp| {
            self.announce_every
                .is_some_and(|every| now.millis_since(announced) >= every)
        };
        if let Some(e) = self.entries.get_mut(&ip) {
            if e.source == Source::Attach && source != Source::Attach {
                if e.mac == mac {
                    e.updated = now;
                }
                return false;
            }
            let changed = e.mac != mac || e.source != source;
            let tell = changed || due(e.announced);
            *e = Entry {
                mac,
                source,
                updated: now,
                announced: if tell { now } else { e.announced },
            };
            return tell && self.announce_every.is_some();
        }
        if self.entries.len() >= self.max_entries && source != Source::Attach {
            return false;
        }
        self.entries.insert(
            ip,
            Entry {
                mac,
                source,
                updated: now,
                announced: now,
            },
        );
        self.announce_every.is_some()
    }

    /// Takes what another worker learned: like `learn`, marked as announced so it is not echoed.
    pub fn learn_from_peer(&mut self, ip: Ipv4Addr, mac: MacAddr, source: Source, now: Timestamp) {
        self.learn(ip, mac, source, now);
        if let Some(e) = self.entries.get_mut(&ip) {
            e.announced = now;
        }
    }

    pub fn remove_attached(&mut self, ip: Ipv4Addr) {
        if self
            .entries
            .get(&ip)
            .is_some_and(|e| e.source == Source::Attach)
        {
            self.entries.remove(&ip);
        }
    }

    /// Forgets what was learned (not attached) about the stations with these MACs.
    pub fn forget_macs(&mut self, macs: &std::collections::HashSet<MacAddr>) {
        self.entries
            .retain(|_, e| e.source == Source::Attach || !macs.contains(&e.mac));
    }

    pub fn expire(&mut self, now: Timestamp, aging_ms: u64) -> usize {
        let before = self.entries.len();
        self.entries
            .retain(|_, e| e.source == Source::Attach || now.millis_since(e.updated) < aging_ms);
        before - self.entries.len()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Ipv4Addr, &Entry)> {
        self.entries.iter()
    }
}
