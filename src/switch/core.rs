//! `Switch`: one worker's learned state beside the topology snapshot it forwards by.
//!
//! Contract: the topology (crate::switch::topology) says what is configured; a `Switch` keeps
//! what one worker learned — per network, keyed by VNI, the FDB, snooped neighbours and
//! counters; per port and per peer, counters. `decide` (decide.rs) reads both and changes
//! nothing; `commit` applies a decision's learning and counters. `set_topology` moves to a new
//! snapshot between batches: networks, ports and peers that went away take their learned state
//! with them, and everything else keeps what it learned.
//!
//! `process_from_port` / `process_from_underlay` / `process_decrypted` are decide + commit +
//! (for answers) writing the answer over the request, for callers that forward one frame at a
//! time (tests, fuzzing, benches). None of the packet-path functions allocate, touch a file
//! descriptor or a clock, or panic on any input.
//!
//! Thread-safety: a `Switch` is owned by one thread (the worker); nothing here is shared but
//! the immutable topology.

use super::counters::{Counters, NetworkCounters};
use super::decide::{Action, Answer, Decision, Ingress};
use super::drop_reason::{DropCounters, DropReason};
use super::fdb::{Fdb, Learned, Location};
use super::limits::{Bucket, PortLimits};
use super::neigh::{NeighTable, Source};
use super::sync::{Outbox, TableUpdate};
use super::topology::{SwitchSpec, Topology, TopologyError};
use super::{dns, dns_tcp};
use super::{PortId, Timestamp, Vni, VtepAddr};
use crate::wire::{vxlan, MacAddr};
use rustc_hash::FxHashMap as HashMap;
use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::Arc;

/// What one worker learned about one network.
#[derive(Debug)]
pub struct NetState {
    pub fdb: Fdb,
    pub neigh: NeighTable,
    pub counters: NetworkCounters,
    /// What this copy learned, for the other workers' copies (crate::switch::sync).
    outbox: Outbox,
}

/// What one worker keeps about one local port: its counters and its flood bucket
/// (crate::switch::limits).
#[derive(Debug, Default)]
pub struct PortState {
    pub counters: Counters,
    pub bum: Bucket,
    /// Limit drops (MAC cap, flood rate) last reported in the log, and when.
    reported: (u64, u64, Timestamp),
}

#[derive(Debug, Default)]
pub struct PeerState {
    pub counters: Counters,
    pub last_seen: Option<Timestamp>,
}

#[derive(Debug)]
pub struct Switch {
    topo: Arc<Topology>,
    nets: HashMap<Vni, NetState>,
    ports: HashMap<PortId, PortState>,
    peers: HashMap<VtepAddr, PeerState>,
    /// Underlay datagrams that never reached a network, and traffic totals.
    pub underlay: Counters,
    /// With several workers: re-announce active stations this often (ms).
    announce_every: Option<u64>,
    /// A port dropped a frame over one of its limits since `limit_reports` last looked.
    limited: bool,
}

impl Switch {
    /// A switch for a static configuration, with its own topology.
    pub fn new(spec: SwitchSpec) -> Switch {
        Switch::with_topology(Arc::new(Topology::new(spec)))
    }

    /// A switch forwarding by `topo` (the published snapshot), with nothing learned yet.
    pub fn with_topology(topo: Arc<Topology>) -> Switch {
        let mut s = Switch {
            topo: Arc::new(Topology::default()),
            nets: HashMap::default(),
            ports: HashMap::default(),
            peers: HashMap::default(),
            underlay: Counters::default(),
            announce_every: None,
            limited: false,
        };
        s.set_topology(topo);
        s
    }

    pub fn topology(&self) -> &Arc<Topology> {
        &self.topo
    }

    /// What was learned about network `vni`.
    pub fn learned(&self, vni: Vni) -> Option<&NetState> {
        self.nets.get(&vni)
    }

    pub fn port_counters(&self, id: PortId) -> Option<&Counters> {
        self.ports.get(&id).map(|p| &p.counters)
    }

    /// What this worker keeps about local port `id`.
    pub fn port_state(&self, id: PortId) -> Option<&PortState> {
        self.ports.get(&id)
    }

    pub fn peer_state(&self, addr: VtepAddr) -> Option<&PeerState> {
        self.peers.get(&addr)
    }

    /// Moves to a new topology snapshot (between batches; may allocate). Learned state of
    /// networks, ports and peers that are gone is dropped; FDB entries at a port or VTEP no
    /// longer in a network are forgotten; the rest stays as learned.
    pub fn set_topology(&mut self, topo: Arc<Topology>) {
        let (max, every) = (topo.fdb_max_entries, self.announce_every);
        self.nets.retain(|vni, _| topo.network(*vni).is_some());
        for n in topo.networks() {
            let mut fresh = false;
            let state = self.nets.entry(n.vni()).or_insert_with(|| {
                fresh = true;
                let mut s = NetState {
                    fdb: Fdb::new(max),
                    neigh: NeighTable::new(max),
                    counters: NetworkCounters::default(),
                    outbox: Outbox::default(),
                };
                if let Some(e) = every {
                    s.enable_sync(e);
                }
                s
            });
            // Only where the network's ports or peers changed: a topology change (an attach on
            // another network, say) must not walk every table.
            let old = self.topo.network(n.vni());
            // Stations behind a VTEP that left the network, or published endpoints that went
            // or moved: what was learned about them (MAC and address) goes too, so that no
            // table keeps pointing at a host that is gone.
            let mut gone: HashSet<MacAddr> = HashSet::new();
            let ports_changed = old.map(|o| o.ports()) != Some(n.ports());
            // Ports and VTEPs are kept in the order they came, so a change that only added
            // some (every attach) leaves the old ones a prefix: nothing learned can point at
            // one that went. Otherwise every entry is checked, against a set (with thousands
            // of ports and entries, a walk of the port list per entry took milliseconds of
            // the worker's time per attach).
            let only_added = old.is_some_and(|o| {
                n.ports().starts_with(o.ports()) && n.vteps().starts_with(o.vteps())
            });
            if !only_added {
                let ports: HashSet<PortId> = n.ports().iter().copied().collect();
                state.fdb.retain(|mac, at| {
                    let keep = match at {
                        Location::Port(p) => ports.contains(&p),
                        Location::Vtep(v) => n.vteps().contains(&v),
                    };
                    if !keep && matches!(at, Location::Vtep(_)) {
                        gone.insert(mac);
                    }
                    keep
                });
            }
            if let Some(o) = old.filter(|o| !std::ptr::eq(*o, n)) {
                for e in o.endpoints() {
                    if matches!(e.at, Location::Vtep(_))
                        && n.endpoint(e.mac).map(|x| x.at) != Some(e.at)
                    {
                        gone.insert(e.mac);
                    }
                }
                if !gone.is_empty() {
                    state.fdb.retain(|mac, at| {
                        !(gone.contains(&mac) && matches!(at, Location::Vtep(_)))
                    });
                }
            }
            if !gone.is_empty() {
                state.neigh.forget_macs(&gone);
            }
            if fresh || ports_changed {
                state.fdb.track_ports(n.ports());
            }
        }
        self.ports.retain(|id, _| topo.port(*id).is_some());
        super::shrink_sparse(&mut self.ports);
        for (id, _) in topo.ports() {
            self.ports.entry(*id).or_default();
        }
        self.peers.retain(|a, _| topo.peer(*a).is_some());
        for p in topo.peers() {
            self.peers.entry(p.addr).or_default();
        }
        self.topo = topo;
    }

    /// Applies what a decision says: learning, neighbour facts and counters.
    pub fn commit(&mut self, now: Timestamp, d: &Decision) {
        let drop = match d.action {
            Action::Drop(r) => Some(r),
            _ => None,
        };
        // Every plaintext datagram counts as received (decrypted ones were, as ESP), but for
        // peers' probes: the switch's own traffic, not the overlay's (crate::wire::probe).
        if let (Ingress::Underlay(_), false) = (d.ingress, matches!(d.action, Action::Probe { .. }))
        {
            self.underlay.rx(d.len);
        }
        let Some(vni) = d.network else {
            // Refused before a network was found: the underlay's (or an unknown port's).
            if let Some(r) = drop {
                self.underlay.drop(r);
            }
            return;
        };
        let Some(net) = self.nets.get_mut(&vni) else {
            return;
        };
        match d.ingress {
            Ingress::Port(p) => {
                net.counters.traffic.rx(d.len);
                if let Some(ps) = self.ports.get_mut(&p) {
                    ps.counters.rx(d.len);
                    match drop {
                        Some(r @ (DropReason::PortMacLimit | DropReason::BumRateLimited)) => {
                            ps.counters.drop(r);
                            self.limited = true;
                        }
                        Some(r) => ps.counters.drop(r),
                        None => {}
                    }
                    let limits = self.topo.port(p).map(|t| t.limits);
                    if let (Action::Flood { .. } | Action::FloodScoped { .. }, Some(l)) =
                        (d.action, limits)
                    {
                        if let Some(rate) = l.bum {
                            ps.bum.take(now, rate, l.readers);
                        }
                    }
                }
            }
            Ingress::Underlay(from) | Ingress::Decrypted { from, .. } => {
                net.counters
                    .traffic
                    .rx(d.len.saturating_sub(vxlan::HEADER_LEN));
                if let Some(peer) = self.peers.get_mut(&from) {
                    peer.counters.rx(d.len);
                    peer.last_seen = Some(now);
                    if let Some(r) = drop {
                        peer.counters.drop(r);
                    }
                }
            }
        }
        if let Some(r) = drop {
            net.counters.traffic.drop(r);
        }
        if let Some(f) = d.learn {
            net.learn(vni, f.mac, f.at, now);
        }
        if let Some(f) = d.neigh {
            net.learn_neigh(vni, f.ip, f.mac, f.source, now);
        }
        match d.action {
            Action::Flood { .. } | Action::FloodScoped { .. } => net.counters.events.flooded += 1,
            Action::Reply {
                answer: Answer::ArpReply { .. },
                ..
            } => net.counters.events.proxy_arp_replies += 1,
            Action::Reply {
                answer:
                    Answer::DnsTcp {
                        step: dns_tcp::Step::Open,
                        ..
                    },
                ..
            } => net.counters.dns.tcp_connections += 1,
            Action::Reply {
                answer:
                    Answer::Dns { reply, .. }
                    | Answer::DnsTcp {
                        step: dns_tcp::Step::Answer(reply),
                        ..
                    },
                ..
            } => {
                let c = &mut net.counters.dns;
                match reply {
                    dns::Reply::NxDomain => c.nxdomain += 1,
                    dns::Reply::FormErr | dns::Reply::NotImplemented => c.refused += 1,
                    _ => c.answered += 1,
                }
            }
            Action::Upstream { .. } => net.counters.dns.forwarded += 1,
            _ => {}
        }
    }

    // ----- one frame at a time: decide, commit, answer in place -----

    /// A frame a local port received from its container. A proxy-ARP answer is written over
    /// the request, which is always long enough for it; others (DNS) are written by
    /// `write_answer` into a buffer of their own.
    pub fn process_from_port(&mut self, now: Timestamp, port: PortId, frame: &mut [u8]) -> Action {
        let d = self.decide(now, Ingress::Port(port), frame);
        self.commit(now, &d);
        if let Action::Reply {
            answer: answer @ Answer::ArpReply { .. },
            ..
        } = d.action
        {
            answer.emit(frame);
        }
        d.action
    }

    /// A UDP payload received on the underlay socket from `src`. When the action is not a drop,
    /// the inner frame is `datagram[vxlan::HEADER_LEN..]`.
    pub fn process_from_underlay(
        &mut self,
        now: Timestamp,
        src: VtepAddr,
        datagram: &[u8],
    ) -> Action {
        let d = self.decide(now, Ingress::Underlay(src), datagram);
        self.commit(now, &d);
        d.action
    }

    /// A VXLAN datagram that arrived inside ESP whose ICV verified, under an SA of the network
    /// with VNI `sa_vni` (the caller already counted it with `note_underlay_rx`). The VXLAN
    /// header must name that same network.
    pub fn process_decrypted(
        &mut self,
        now: Timestamp,
        src: VtepAddr,
        datagram: &[u8],
        sa_vni: Vni,
    ) -> Action {
        let d = self.decide(now, Ingress::Decrypted { from: src, sa_vni }, datagram);
        self.commit(now, &d);
        d.action
    }

    /// Counts an underlay datagram that reaches the core, if at all, through
    /// `process_decrypted` (ESP); the driver counts its own refusals.
    pub fn note_underlay_rx(&mut self, len: usize) {
        self.underlay.rx(len);
    }

    /// Whether the network with this VNI is encrypted (the driver must seal what it sends).
    pub fn is_encrypted(&self, vni: Vni) -> bool {
        self.topo.network(vni).is_some_and(|n| n.spec.encrypted)
    }

    // ----- accounting of what the driver actually sent -----

    fn port_network(&mut self, port: PortId) -> Option<&mut NetState> {
        let vni = self.topo.port(port)?.vni;
        self.nets.get_mut(&vni)
    }

    pub fn note_port_tx(&mut self, port: PortId, len: usize) {
        if let Some(p) = self.ports.get_mut(&port) {
            p.counters.tx(len);
        }
        if let Some(n) = self.port_network(port) {
            n.counters.traffic.tx(len);
        }
    }

    /// A frame from `port` the driver could not hand to the core (e.g. a malformed TSO frame).
    pub fn note_port_drop(&mut self, port: PortId, r: DropReason) {
        if let Some(p) = self.ports.get_mut(&port) {
            p.counters.drop(r);
        }
        if let Some(n) = self.port_network(port) {
            n.counters.traffic.drop(r);
        }
    }

    pub fn note_port_tx_failed(&mut self, port: PortId) {
        self.note_port_drop(port, DropReason::TxFailed);
    }

    pub fn note_vtep_tx(&mut self, vni: Vni, vtep: VtepAddr, len: usize) {
        self.underlay.tx(len);
        if let Some(p) = self.peers.get_mut(&vtep) {
            p.counters.tx(len);
        }
        if let Some(n) = self.nets.get_mut(&vni) {
            n.counters.traffic.tx(len);
        }
    }

    /// A send the kernel refused, counted against the network the frame belonged to.
    pub fn note_tx_failed(&mut self, vni: Vni) {
        self.note_network_drop(vni, DropReason::TxFailed);
    }

    /// A frame the driver dropped on its way out (e.g. it could not be encrypted).
    pub fn note_network_drop(&mut self, vni: Vni, r: DropReason) {
        if let Some(n) = self.nets.get_mut(&vni) {
            n.counters.traffic.drop(r);
        }
    }

    // ----- a switch with its own topology (tests, fuzzing, benches) -----

    fn change(
        &mut self,
        f: impl FnOnce(&mut Topology) -> Result<(), TopologyError>,
    ) -> Result<(), TopologyError> {
        let t = self.topo.change(f)?;
        self.set_topology(Arc::new(t));
        Ok(())
    }

    pub fn network_by_name(&self, name: &str) -> Option<Vni> {
        self.topo.network_by_name(name).map(|n| n.vni())
    }

    /// Adds a port to this switch's own topology (the daemon publishes topologies instead).
    pub fn add_port(
        &mut self,
        id: PortId,
        name: &str,
        network: Vni,
        endpoint: Option<(MacAddr, Ipv4Addr)>,
        _now: Timestamp,
    ) -> Result<(), TopologyError> {
        self.change(|t| t.add_port(id, name, network, endpoint))
    }

    /// Limits for a port of this switch's own topology (crate::switch::limits).
    pub fn set_port_limits(&mut self, id: PortId, limits: PortLimits) -> Result<(), TopologyError> {
        self.change(|t| t.set_port_limits(id, limits))
    }

    /// Ports that dropped frames over their limits since they were last reported, at most
    /// once per `every_ms` each: `report(port, MAC-cap drops, flood-rate drops)` with the
    /// counts since the last report. Called by the owner about once a second, for a log line
    /// that explains (never one per packet); cheap when no port hit a limit.
    pub fn limit_reports(
        &mut self,
        now: Timestamp,
        every_ms: u64,
        mut report: impl FnMut(PortId, u64, u64),
    ) {
        if !self.limited {
            return;
        }
        self.limited = false;
        for (id, p) in self.ports.iter_mut() {
            let d = &p.counters.drops;
            let (macs, bum) = (
                d.get(DropReason::PortMacLimit),
                d.get(DropReason::BumRateLimited),
            );
            let (m0, b0, at) = p.reported;
            if (macs, bum) == (m0, b0) {
                continue;
            }
            if at != Timestamp(0) && now.millis_since(at) < every_ms {
                // Not yet: look again next time.
                self.limited = true;
                continue;
            }
            report(*id, macs - m0, bum - b0);
            p.reported = (macs, bum, now);
        }
    }

    /// Port security for a port of this switch's own topology.
    pub fn set_port_security(&mut self, id: PortId, on: bool) -> Result<(), TopologyError> {
        self.change(|t| t.set_port_security(id, on))
    }

    /// Removes a port from this switch's own topology; its counters.
    pub fn remove_port(&mut self, id: PortId) -> Result<Counters, TopologyError> {
        let counters = self
            .ports
            .get(&id)
            .map(|p| p.counters.clone())
            .unwrap_or_default();
        self.change(|t| t.remove_port(id).map(|_| ()))?;
        Ok(counters)
    }

    // ----- copies on several workers (crate::switch::sync) -----

    /// Makes this switch one of several copies: what it learns is collected for the others
    /// (`take_updates`), and stations it keeps seeing are re-announced every quarter of the
    /// aging time so the other copies keep them.
    pub fn enable_sync(&mut self) {
        let every = (self.topo.aging_ms / 4).max(1);
        self.announce_every = Some(every);
        for n in self.nets.values_mut() {
            n.enable_sync(every);
        }
    }

    /// Hands every collected announcement to `send`, oldest first. Does not allocate.
    pub fn take_updates(&mut self, mut send: impl FnMut(TableUpdate)) {
        for n in self.nets.values_mut() {
            for u in n.outbox.updates.drain(..) {
                send(u);
            }
        }
    }

    /// Announcements dropped because an outbox was full, over all networks.
    pub fn updates_lost(&self) -> u64 {
        self.nets.values().map(|n| n.outbox.lost).sum()
    }

    /// Applies what another copy learned. Counts nothing (the copy that learned it did) and
    /// announces nothing back. An entry naming a port or network this copy's topology no longer
    /// has is ignored: it went away while the announcement travelled.
    pub fn apply_update(&mut self, now: Timestamp, u: &TableUpdate) {
        match *u {
            TableUpdate::Fdb { net, mac, location } => {
                if let Location::Port(p) = location {
                    if self.topo.port(p).is_none() {
                        return;
                    }
                }
                if let Some(n) = self.nets.get_mut(&net) {
                    n.fdb.learn_from_peer(mac, location, now);
                }
            }
            TableUpdate::Neigh {
                net,
                ip,
                mac,
                source,
            } => {
                if let Some(n) = self.nets.get_mut(&net) {
                    n.neigh.learn_from_peer(ip, mac, source, now);
                }
            }
        }
    }

    /// Ages out idle FDB and neighbour entries. Called by the owner about once a second.
    pub fn expire(&mut self, now: Timestamp) {
        let aging = self.topo.aging_ms;
        for n in self.nets.values_mut() {
            n.fdb.expire(now, aging);
            n.neigh.expire(now, aging);
        }
    }

    /// Drops counted against no network: the underlay's, by reason.
    pub fn underlay_drops(&self) -> &DropCounters {
        &self.underlay.drops
    }
}

impl NetState {
    fn enable_sync(&mut self, every: u64) {
        self.outbox.enable();
        self.fdb.set_announce_every(every);
        self.neigh.set_announce_every(every);
    }

    fn learn(&mut self, net: Vni, mac: MacAddr, at: Location, now: Timestamp) {
        match self.fdb.learn(mac, at, now) {
            Learned::New => self.counters.events.fdb_learned += 1,
            Learned::Moved => self.counters.events.fdb_moves += 1,
            Learned::Full => self.counters.events.fdb_full += 1,
            Learned::Refreshed => return,
            Learned::RefreshDue => {}
        }
        self.outbox.push(TableUpdate::Fdb {
            net,
            mac,
            location: at,
        });
    }

    fn learn_neigh(
        &mut self,
        net: Vni,
        ip: Ipv4Addr,
        mac: MacAddr,
        source: Source,
        now: Timestamp,
    ) {
        if self.neigh.learn(ip, mac, source, now) {
            self.outbox.push(TableUpdate::Neigh {
                net,
                ip,
                mac,
                source,
            });
        }
    }
}
