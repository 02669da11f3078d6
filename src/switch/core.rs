//! `Switch`: the forwarding decision, as a pure function of tables and bytes.
//!
//! Contract: `process_from_port` and `process_from_underlay` take one frame (or datagram) and
//! the time, update the tables (learning, neighbour snooping, counters) and return an `Action`
//! telling the driver what to send where. They never touch a file descriptor or a clock, never
//! allocate (tables reserve their capacity when a network is made), and never panic on any
//! input. Attach/detach and the `show` views run on the same owner between batches.
//!
//! Thread-safety: a `Switch` is owned by one thread (the worker); nothing here is shared.

use super::counters::Counters;
use super::drop_reason::{DropCounters, DropReason};
use super::fdb::{Fdb, Learned, Location};
use super::neigh::{NeighTable, Source};
use super::sync::{Outbox, TableUpdate};
use super::{PortId, Timestamp, Vni, VtepAddr};
use crate::control::api;
use crate::wire::ethernet::{self, EtherType, Frame};
use crate::wire::{arp, ipv4, vxlan, MacAddr};
use ipnet::Ipv4Net;
use std::collections::HashMap;
use std::net::Ipv4Addr;

/// Index of a network inside one `Switch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NetIdx(pub usize);

/// What the driver must do with the frame it passed in.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Drop(DropReason),
    /// Write the frame to this local port.
    ToPort(PortId),
    /// Encapsulate with `vni` and send to this remote host.
    ToVtep {
        vtep: VtepAddr,
        vni: Vni,
    },
    /// Write to every local port of the network except `except`, and, when `to_peers`, send to
    /// every peer VTEP of the network (head-end replication). See `Switch::flood_targets`.
    Flood {
        network: NetIdx,
        except: Option<PortId>,
        to_peers: bool,
    },
    /// The frame was rewritten in place into an answer (proxy-ARP); write it back to this port.
    Reply(PortId),
}

#[derive(Debug, Clone)]
pub struct NetworkSpec {
    pub name: String,
    pub vni: Vni,
    pub subnet: Ipv4Net,
    pub mtu: u32,
    /// Names and addresses of the hosts this network spans.
    pub peers: Vec<(String, VtepAddr)>,
    /// Frames travel between hosts only inside ESP; plaintext VXLAN for it is dropped.
    pub encrypted: bool,
}

#[derive(Debug, Clone)]
pub struct SwitchSpec {
    pub networks: Vec<NetworkSpec>,
    /// Every configured peer (name, address).
    pub peers: Vec<(String, VtepAddr)>,
    pub fdb_max_entries: usize,
    pub aging_ms: u64,
}

#[derive(Debug, Clone, Default)]
pub struct NetworkCounters {
    pub traffic: Counters,
    pub flooded: u64,
    pub proxy_arp_replies: u64,
    pub fdb_learned: u64,
    pub fdb_moves: u64,
    pub fdb_full: u64,
}

#[derive(Debug)]
pub struct Network {
    pub spec: NetworkSpec,
    idx: NetIdx,
    vteps: Vec<VtepAddr>,
    ports: Vec<PortId>,
    pub fdb: Fdb,
    pub neigh: NeighTable,
    pub counters: NetworkCounters,
    /// What this copy learned, for the other workers' copies (crate::switch::sync).
    outbox: Outbox,
}

#[derive(Debug)]
pub struct PortState {
    pub name: String,
    pub network: NetIdx,
    /// The station behind the port when the operator told us (attach).
    pub endpoint: Option<(MacAddr, Ipv4Addr)>,
    pub counters: Counters,
}

#[derive(Debug)]
pub struct PeerState {
    pub name: String,
    pub addr: VtepAddr,
    pub counters: Counters,
    pub last_seen: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SwitchError {
    #[error("no network named {0:?}")]
    UnknownNetwork(String),
    #[error("port {0} is already attached")]
    PortExists(PortId),
    #[error("port {0} is not attached")]
    UnknownPort(PortId),
    #[error("{ip} is not inside network {network:?}'s subnet {subnet}")]
    OutsideSubnet {
        ip: Ipv4Addr,
        network: String,
        subnet: Ipv4Net,
    },
    #[error("{ip} is already used in network {network:?} by {owner}")]
    AddressInUse {
        ip: Ipv4Addr,
        network: String,
        owner: String,
    },
}

#[derive(Debug)]
pub struct Switch {
    networks: Vec<Network>,
    by_vni: HashMap<u32, NetIdx>,
    peers: Vec<PeerState>,
    peer_by_addr: HashMap<Ipv4Addr, usize>,
    ports: HashMap<PortId, PortState>,
    /// Underlay datagrams that never reached a network, and traffic totals.
    pub underlay: Counters,
    aging_ms: u64,
}

impl Switch {
    pub fn new(spec: SwitchSpec) -> Switch {
        let networks: Vec<Network> = spec
            .networks
            .into_iter()
            .enumerate()
            .map(|(i, n)| Network {
                idx: NetIdx(i),
                vteps: n.peers.iter().map(|(_, a)| *a).collect(),
                ports: Vec::new(),
                fdb: Fdb::new(spec.fdb_max_entries),
                neigh: NeighTable::new(spec.fdb_max_entries),
                counters: NetworkCounters::default(),
                outbox: Outbox::default(),
                spec: n,
            })
            .collect();
        let by_vni = networks
            .iter()
            .enumerate()
            .map(|(i, n)| (n.spec.vni.get(), NetIdx(i)))
            .collect();
        let peers: Vec<PeerState> = spec
            .peers
            .into_iter()
            .map(|(name, addr)| PeerState {
                name,
                addr,
                counters: Counters::default(),
                last_seen: None,
            })
            .collect();
        let peer_by_addr = peers
            .iter()
            .enumerate()
            .map(|(i, p)| (p.addr.0, i))
            .collect();
        Switch {
            networks,
            by_vni,
            peers,
            peer_by_addr,
            ports: HashMap::new(),
            underlay: Counters::default(),
            aging_ms: spec.aging_ms,
        }
    }

    // ----- attach / detach (control path; may allocate) -----

    pub fn network_by_name(&self, name: &str) -> Option<NetIdx> {
        self.networks
            .iter()
            .position(|n| n.spec.name == name)
            .map(NetIdx)
    }

    pub fn network(&self, idx: NetIdx) -> &Network {
        &self.networks[idx.0]
    }

    /// Checks that `ip` may be given to a new endpoint of `network`.
    pub fn check_endpoint_ip(&self, network: &str, ip: Ipv4Addr) -> Result<NetIdx, SwitchError> {
        let idx = self
            .network_by_name(network)
            .ok_or_else(|| SwitchError::UnknownNetwork(network.to_string()))?;
        let net = &self.networks[idx.0];
        if !net.spec.subnet.contains(&ip) {
            return Err(SwitchError::OutsideSubnet {
                ip,
                network: network.to_string(),
                subnet: net.spec.subnet,
            });
        }
        if let Some(owner) = self
            .ports
            .values()
            .find(|p| p.network == idx && p.endpoint.is_some_and(|(_, a)| a == ip))
        {
            return Err(SwitchError::AddressInUse {
                ip,
                network: network.to_string(),
                owner: format!("port {}", owner.name),
            });
        }
        Ok(idx)
    }

    /// Adds a port to a network. With an endpoint, its MAC is pinned in the FDB and its address
    /// answered by proxy-ARP from the start.
    pub fn add_port(
        &mut self,
        id: PortId,
        name: &str,
        network: NetIdx,
        endpoint: Option<(MacAddr, Ipv4Addr)>,
        now: Timestamp,
    ) -> Result<(), SwitchError> {
        if self.ports.contains_key(&id) {
            return Err(SwitchError::PortExists(id));
        }
        let net = &mut self.networks[network.0];
        net.ports.push(id);
        if let Some((mac, ip)) = endpoint {
            net.fdb.insert_static(mac, id, now);
            net.neigh.learn(ip, mac, Source::Attach, now);
        }
        self.ports.insert(
            id,
            PortState {
                name: name.to_string(),
                network,
                endpoint,
                counters: Counters::default(),
            },
        );
        Ok(())
    }

    pub fn remove_port(&mut self, id: PortId) -> Result<PortState, SwitchError> {
        let port = self.ports.remove(&id).ok_or(SwitchError::UnknownPort(id))?;
        let net = &mut self.networks[port.network.0];
        net.ports.retain(|p| *p != id);
        net.fdb.remove_port(id);
        if let Some((_, ip)) = port.endpoint {
            net.neigh.remove_attached(ip);
        }
        Ok(port)
    }

    pub fn port(&self, id: PortId) -> Option<&PortState> {
        self.ports.get(&id)
    }

    pub fn ports(&self) -> impl Iterator<Item = (&PortId, &PortState)> {
        self.ports.iter()
    }

    // ----- the packet path -----

    /// A frame a local port received from its container.
    pub fn process_from_port(&mut self, now: Timestamp, port: PortId, frame: &mut [u8]) -> Action {
        let Some(p) = self.ports.get_mut(&port) else {
            self.underlay.drop(DropReason::UnknownPort);
            return Action::Drop(DropReason::UnknownPort);
        };
        p.counters.rx(frame.len());
        let idx = p.network;
        let net = &mut self.networks[idx.0];
        net.counters.traffic.rx(frame.len());

        let action = net.forward_from_port(now, port, frame);
        if let Action::Drop(r) = action {
            net.counters.traffic.drop(r);
            p.counters.drop(r);
        }
        action
    }

    /// A UDP payload received on the underlay socket from `src`. When the action is not a drop,
    /// the inner frame is `datagram[vxlan::HEADER_LEN..]`.
    pub fn process_from_underlay(
        &mut self,
        now: Timestamp,
        src: VtepAddr,
        datagram: &[u8],
    ) -> Action {
        self.underlay.rx(datagram.len());
        self.decide_underlay(now, src, datagram, None)
    }

    /// A VXLAN datagram that arrived inside ESP whose ICV verified, under an SA of the network
    /// with VNI `sa_vni` (the caller already counted it with `note_underlay_rx`). The VXLAN header must
    /// name that same network: an SA of one network cannot carry another's frames. When the
    /// action is not a drop, the inner frame is `datagram[vxlan::HEADER_LEN..]`.
    pub fn process_decrypted(
        &mut self,
        now: Timestamp,
        src: VtepAddr,
        datagram: &[u8],
        sa_vni: Vni,
    ) -> Action {
        self.decide_underlay(now, src, datagram, Some(sa_vni))
    }

    /// Counts an underlay datagram that reaches the core, if at all, through
    /// `process_decrypted` (ESP); the driver counts its own refusals.
    pub fn note_underlay_rx(&mut self, len: usize) {
        self.underlay.rx(len);
    }

    fn decide_underlay(
        &mut self,
        now: Timestamp,
        src: VtepAddr,
        datagram: &[u8],
        sealed: Option<Vni>,
    ) -> Action {
        let Some(&peer_idx) = self.peer_by_addr.get(&src.0) else {
            return self.underlay_drop(DropReason::UnknownPeer);
        };
        let vx = match vxlan::Packet::new_checked(datagram) {
            Ok(vx) => vx,
            Err(vxlan::Error::Truncated) => return self.underlay_drop(DropReason::VxlanTruncated),
            Err(vxlan::Error::NoVniFlag) => return self.underlay_drop(DropReason::VxlanNoVniFlag),
        };
        let Some(&idx) = self.by_vni.get(&vx.vni()) else {
            return self.underlay_drop(DropReason::UnknownVni);
        };
        let net = &mut self.networks[idx.0];
        if !net.vteps.contains(&src) {
            return self.underlay_drop(DropReason::PeerNotInNetwork);
        }
        match sealed {
            // No downgrade: an encrypted network takes nothing that did not come through ESP.
            None if net.spec.encrypted => {
                return self.underlay_drop(DropReason::PlaintextOnEncrypted)
            }
            Some(v) if v != net.spec.vni => return self.underlay_drop(DropReason::EspVniMismatch),
            _ => {}
        }
        let peer = &mut self.peers[peer_idx];
        peer.counters.rx(datagram.len());
        peer.last_seen = Some(now);

        let frame = vx.payload();
        net.counters.traffic.rx(frame.len());
        let action = net.forward_from_underlay(now, src, frame);
        if let Action::Drop(r) = action {
            net.counters.traffic.drop(r);
            peer.counters.drop(r);
        }
        action
    }

    fn underlay_drop(&mut self, r: DropReason) -> Action {
        self.underlay.drop(r);
        Action::Drop(r)
    }

    /// Where a flood goes: the network's local ports and its peer VTEPs. The driver skips
    /// `except` and uses the VTEPs only when the action says `to_peers`.
    /// Whether the network with this VNI is encrypted (the driver must seal what it sends).
    pub fn is_encrypted(&self, vni: Vni) -> bool {
        self.by_vni
            .get(&vni.get())
            .is_some_and(|i| self.networks[i.0].spec.encrypted)
    }

    pub fn flood_targets(&self, network: NetIdx) -> (&[PortId], &[VtepAddr], Vni) {
        let n = &self.networks[network.0];
        (&n.ports, &n.vteps, n.spec.vni)
    }

    // ----- accounting of what the driver actually sent -----

    pub fn note_port_tx(&mut self, port: PortId, len: usize) {
        if let Some(p) = self.ports.get_mut(&port) {
            p.counters.tx(len);
            self.networks[p.network.0].counters.traffic.tx(len);
        }
    }

    /// A frame from `port` the driver could not hand to the core (e.g. a malformed TSO frame).
    pub fn note_port_drop(&mut self, port: PortId, r: DropReason) {
        if let Some(p) = self.ports.get_mut(&port) {
            p.counters.drop(r);
            self.networks[p.network.0].counters.traffic.drop(r);
        }
    }

    pub fn note_port_tx_failed(&mut self, port: PortId) {
        if let Some(p) = self.ports.get_mut(&port) {
            p.counters.drop(DropReason::TxFailed);
            self.networks[p.network.0]
                .counters
                .traffic
                .drop(DropReason::TxFailed);
        }
    }

    pub fn note_vtep_tx(&mut self, vni: Vni, vtep: VtepAddr, len: usize) {
        self.underlay.tx(len);
        if let Some(&i) = self.peer_by_addr.get(&vtep.0) {
            self.peers[i].counters.tx(len);
        }
        if let Some(&idx) = self.by_vni.get(&vni.get()) {
            self.networks[idx.0].counters.traffic.tx(len);
        }
    }

    /// A send the kernel refused, counted against the network the frame belonged to.
    pub fn note_tx_failed(&mut self, vni: Vni) {
        self.note_network_drop(vni, DropReason::TxFailed);
    }

    /// A frame the driver dropped on its way out (e.g. it could not be encrypted).
    pub fn note_network_drop(&mut self, vni: Vni, r: DropReason) {
        if let Some(&idx) = self.by_vni.get(&vni.get()) {
            self.networks[idx.0].counters.traffic.drop(r);
        }
    }

    /// The name of the peer at `addr`, for views.
    pub fn peer_name(&self, addr: VtepAddr) -> Option<&str> {
        self.peer_by_addr
            .get(&addr.0)
            .map(|&i| self.peers[i].name.as_str())
    }

    /// The name of the network with `vni`, for views.
    pub fn network_name(&self, vni: u32) -> Option<&str> {
        self.by_vni
            .get(&vni)
            .map(|i| self.networks[i.0].spec.name.as_str())
    }

    // ----- copies on several workers (crate::switch::sync) -----

    /// Makes this switch one of several copies: what it learns is collected for the others
    /// (`take_updates`), and stations it keeps seeing are re-announced every quarter of the
    /// aging time so the other copies keep them.
    pub fn enable_sync(&mut self) {
        let every = (self.aging_ms / 4).max(1);
        for n in &mut self.networks {
            n.outbox.enable();
            n.fdb.set_announce_every(every);
            n.neigh.set_announce_every(every);
        }
    }

    /// Hands every collected announcement to `send`, oldest first. Does not allocate.
    pub fn take_updates(&mut self, mut send: impl FnMut(TableUpdate)) {
        for n in &mut self.networks {
            for u in n.outbox.updates.drain(..) {
                send(u);
            }
        }
    }

    /// Announcements dropped because an outbox was full, over all networks.
    pub fn updates_lost(&self) -> u64 {
        self.networks.iter().map(|n| n.outbox.lost).sum()
    }

    /// Applies what another copy learned. Counts nothing (the copy that learned it did) and
    /// announces nothing back. An entry naming a port this copy no longer has is ignored: the
    /// port was detached while the announcement travelled.
    pub fn apply_update(&mut self, now: Timestamp, u: &TableUpdate) {
        match *u {
            TableUpdate::Fdb { net, mac, location } => {
                if let Location::Port(p) = location {
                    if !self.ports.contains_key(&p) {
                        return;
                    }
                }
                if let Some(n) = self.networks.get_mut(net.0) {
                    n.fdb.learn_from_peer(mac, location, now);
                }
            }
            TableUpdate::Neigh {
                net,
                ip,
                mac,
                source,
            } => {
                if let Some(n) = self.networks.get_mut(net.0) {
                    n.neigh.learn_from_peer(ip, mac, source, now);
                }
            }
        }
    }

    /// Ages out idle FDB and neighbour entries. Called by the owner about once a second.
    pub fn expire(&mut self, now: Timestamp) {
        for n in &mut self.networks {
            n.fdb.expire(now, self.aging_ms);
            n.neigh.expire(now, self.aging_ms);
        }
    }

    // ----- views for `show` (control path) -----

    pub fn networks(&self) -> &[Network] {
        &self.networks
    }

    pub fn peers(&self) -> &[PeerState] {
        &self.peers
    }

    pub fn networks_info(&self) -> Vec<api::NetworkInfo> {
        self.networks
            .iter()
            .map(|n| api::NetworkInfo {
                name: n.spec.name.clone(),
                vni: n.spec.vni.get(),
                subnet: n.spec.subnet.to_string(),
                mtu: n.spec.mtu,
                peers: n.spec.peers.iter().map(|(name, _)| name.clone()).collect(),
                ports: n.ports.len() as u32,
                fdb_entries: n.fdb.len() as u32,
                neigh_entries: n.neigh.len() as u32,
            })
            .collect()
    }

    pub fn fdb_info(&self, now: Timestamp) -> Vec<api::FdbEntryInfo> {
        let mut out = Vec::new();
        for n in &self.networks {
            for (mac, e) in n.fdb.iter() {
                let (kind, location) = match e.location {
                    Location::Port(p) => (
                        "port",
                        self.ports
                            .get(&p)
                            .map_or_else(|| p.to_string(), |s| s.name.clone()),
                    ),
                    Location::Vtep(v) => ("vtep", v.to_string()),
                };
                out.push(api::FdbEntryInfo {
                    network: n.spec.name.clone(),
                    vni: n.spec.vni.get(),
                    mac: mac.to_string(),
                    kind: kind.to_string(),
                    location,
                    age_secs: now.millis_since(e.updated) / 1000,
                });
            }
        }
        out.sort_by(|a, b| (a.vni, &a.mac).cmp(&(b.vni, &b.mac)));
        out
    }

    pub fn neigh_info(&self, now: Timestamp) -> Vec<api::NeighEntryInfo> {
        let mut out: Vec<(u32, Ipv4Addr, api::NeighEntryInfo)> = Vec::new();
        for n in &self.networks {
            for (ip, e) in n.neigh.iter() {
                out.push((
                    n.spec.vni.get(),
                    *ip,
                    api::NeighEntryInfo {
                        network: n.spec.name.clone(),
                        ip: ip.to_string(),
                        mac: e.mac.to_string(),
                        source: e.source.name().to_string(),
                        age_secs: now.millis_since(e.updated) / 1000,
                    },
                ));
            }
        }
        out.sort_by_key(|(vni, ip, _)| (*vni, *ip));
        out.into_iter().map(|(_, _, e)| e).collect()
    }

    pub fn peers_info(&self, now: Timestamp) -> Vec<api::PeerInfo> {
        self.peers
            .iter()
            .map(|p| api::PeerInfo {
                name: p.name.clone(),
                underlay_ip: p.addr.to_string(),
                networks: self
                    .networks
                    .iter()
                    .filter(|n| n.vteps.contains(&p.addr))
                    .map(|n| n.spec.name.clone())
                    .collect(),
                counters: p.counters.to_api(),
                last_seen_secs: p.last_seen.map(|t| now.millis_since(t) / 1000),
            })
            .collect()
    }

    pub fn network_stats(&self) -> Vec<api::NetworkStats> {
        self.networks
            .iter()
            .map(|n| api::NetworkStats {
                name: n.spec.name.clone(),
                vni: n.spec.vni.get(),
                counters: n.counters.traffic.to_api(),
                flooded: n.counters.flooded,
                proxy_arp_replies: n.counters.proxy_arp_replies,
                fdb_learned: n.counters.fdb_learned,
                fdb_moves: n.counters.fdb_moves,
                fdb_full: n.counters.fdb_full,
            })
            .collect()
    }

    /// Drops counted against no network: the underlay's, by reason.
    pub fn underlay_drops(&self) -> &DropCounters {
        &self.underlay.drops
    }
}

impl Network {
    fn max_frame_len(&self, frame: &[u8]) -> usize {
        // A single 802.1Q tag rides inside the MTU budget of the outer path like the kernel's.
        let tag = if frame.len() >= 14 && frame[12..14] == [0x81, 0x00] {
            4
        } else {
            0
        };
        self.spec.mtu as usize + ethernet::HEADER_LEN + tag
    }

    fn learn(&mut self, mac: MacAddr, at: Location, now: Timestamp) {
        match self.fdb.learn(mac, at, now) {
            Learned::New => self.counters.fdb_learned += 1,
            Learned::Moved => self.counters.fdb_moves += 1,
            Learned::Full => self.counters.fdb_full += 1,
            Learned::Refreshed | Learned::StaticConflict => return,
            Learned::RefreshDue => {}
        }
        self.outbox.push(TableUpdate::Fdb {
            net: self.idx,
            mac,
            location: at,
        });
    }

    fn learn_neigh(&mut self, ip: Ipv4Addr, mac: MacAddr, source: Source, now: Timestamp) {
        if self.neigh.learn(ip, mac, source, now) {
            self.outbox.push(TableUpdate::Neigh {
                net: self.idx,
                ip,
                mac,
                source,
            });
        }
    }

    /// Records what an ARP packet tells about its sender (requests, replies and GARP alike).
    fn snoop_arp(&mut self, p: &arp::Packet<&[u8]>, now: Timestamp) {
        let (ip, mac) = (p.sender_ip(), p.sender_mac());
        if self.is_station_address(ip) && mac.is_unicast_source() {
            self.learn_neigh(ip, mac, Source::Arp, now);
        }
    }

    /// An address a station of this network can own: inside the subnet, and neither its
    /// network nor its broadcast address (nor 0.0.0.0, which ARP probes use).
    fn is_station_address(&self, ip: Ipv4Addr) -> bool {
        let s = &self.spec.subnet;
        s.contains(&ip) && ip != s.network() && ip != s.broadcast() && !ip.is_unspecified()
    }

    fn forward_from_port(&mut self, now: Timestamp, port: PortId, frame: &mut [u8]) -> Action {
        let Ok(eth) = Frame::new_checked(&*frame) else {
            return Action::Drop(DropReason::FrameTruncated);
        };
        let (src, dst, ethertype) = (eth.src(), eth.dst(), eth.ethertype());
        if !src.is_unicast_source() {
            return Action::Drop(DropReason::BadSourceMac);
        }
        if frame.len() > self.max_frame_len(frame) {
            return Action::Drop(DropReason::FrameTooBig);
        }
        self.learn(src, Location::Port(port), now);

        if ethertype == EtherType::Arp && self.proxy_arp(now, frame) {
            self.counters.proxy_arp_replies += 1;
            return Action::Reply(port);
        }

        if dst.is_multicast() {
            return self.flood(Some(port), true);
        }
        match self.fdb.lookup(dst) {
            Some(Location::Port(p)) if p == port => Action::Drop(DropReason::Hairpin),
            Some(Location::Port(p)) => Action::ToPort(p),
            Some(Location::Vtep(v)) => Action::ToVtep {
                vtep: v,
                vni: self.spec.vni,
            },
            None => self.flood(Some(port), true),
        }
    }

    /// Snoops an ARP frame from a local port and, when it is a request we can answer, rewrites
    /// it in place into the reply (VPP-style). Returns whether it answered.
    fn proxy_arp(&mut self, now: Timestamp, frame: &mut [u8]) -> bool {
        let Ok(p) = arp::Packet::new_checked(&frame[ethernet::HEADER_LEN..]) else {
            return false;
        };
        self.snoop_arp(&p, now);
        if p.operation() != arp::Operation::Request || p.is_gratuitous() {
            return false;
        }
        let Some(target_mac) = self.neigh.lookup(p.target_ip()) else {
            return false;
        };
        if target_mac == p.sender_mac() {
            return false;
        }
        let req = arp::Repr::parse(&p);
        let reply = arp::Repr {
            operation: arp::Operation::Reply,
            sender_mac: target_mac,
            sender_ip: req.target_ip,
            target_mac: req.sender_mac,
            target_ip: req.sender_ip,
        };
        let eth_src = Frame::new_unchecked(&*frame).src();
        let mut eth = Frame::new_unchecked(&mut *frame);
        eth.set_dst(eth_src);
        eth.set_src(target_mac);
        reply.emit(&mut frame[ethernet::HEADER_LEN..]);
        true
    }

    fn forward_from_underlay(&mut self, now: Timestamp, from: VtepAddr, frame: &[u8]) -> Action {
        let Ok(eth) = Frame::new_checked(frame) else {
            return Action::Drop(DropReason::FrameTruncated);
        };
        let (src, dst) = (eth.src(), eth.dst());
        if !src.is_unicast_source() {
            return Action::Drop(DropReason::BadSourceMac);
        }
        if frame.len() > self.max_frame_len(frame) {
            return Action::Drop(DropReason::FrameTooBig);
        }
        self.learn(src, Location::Vtep(from), now);
        match eth.ethertype() {
            EtherType::Arp => {
                if let Ok(p) = arp::Packet::new_checked(eth.payload()) {
                    self.snoop_arp(&p, now);
                }
            }
            EtherType::Ipv4 => {
                if let Ok(ip) = ipv4::Packet::new_checked(eth.payload()) {
                    let a = ip.src();
                    if self.is_station_address(a) {
                        self.learn_neigh(a, src, Source::Decap, now);
                    }
                }
            }
            _ => {}
        }
        if dst.is_multicast() {
            return self.flood(None, false);
        }
        match self.fdb.lookup(dst) {
            Some(Location::Port(p)) => Action::ToPort(p),
            // Split horizon: what came from the underlay never goes back to it.
            Some(Location::Vtep(_)) => Action::Drop(DropReason::SplitHorizon),
            None => self.flood(None, false),
        }
    }

    fn flood(&mut self, except: Option<PortId>, to_peers: bool) -> Action {
        self.counters.flooded += 1;
        Action::Flood {
            network: self.idx,
            except,
            to_peers,
        }
    }
}
