//! The topology: everything that is configured — networks keyed by VNI, peers, ports and the
//! endpoints behind them (local or at a remote VTEP) — as one immutable snapshot.
//!
//! Overview. The control side (the control actor, crate::control::server) owns the current
//! `Topology`, makes a changed copy for every change (`Topology::change`), and publishes it
//! (`Published::store`). Workers load the published snapshot once per batch of frames, so a
//! frame is decided by the old or by the new topology, never a mix. What workers learn (FDB,
//! snooped neighbours, counters) lives in their `Switch` beside it, keyed by VNI and port id,
//! never by position, so a change to one network leaves what was learned on the others alone.
//!
//! Endpoints made from attachments (and later the cluster plane) are static: a lookup finds them
//! before anything learned, and learning never overrides them. A remote endpoint sits at a VTEP,
//! so its MAC is forwarded and its address answered by proxy-ARP before its first packet.
//!
//! Thread-safety: a `Topology` is immutable once published (`Arc`); building one allocates and
//! happens only on the control side. Workers only read it.

use super::fdb::Location;
use super::limits::PortLimits;
use super::{PortId, Vni, VtepAddr};
use crate::wire::MacAddr;
use arc_swap::ArcSwap;
use ipnet::Ipv4Net;
use rustc_hash::FxHashMap as HashMap;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

mod network;
pub use network::{dns_label, Endpoint, NetworkTopo};

#[derive(Debug, Clone, PartialEq)]
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

/// The whole configuration a switch starts from.
#[derive(Debug, Clone)]
pub struct SwitchSpec {
    pub networks: Vec<NetworkSpec>,
    /// Every configured peer (name, address).
    pub peers: Vec<(String, VtepAddr)>,
    pub fdb_max_entries: usize,
    pub aging_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortTopo {
    pub name: String,
    pub vni: Vni,
    /// The station behind the port when the operator told us (attach).
    pub endpoint: Option<(MacAddr, Ipv4Addr)>,
    /// Port security: the station may send only from its own MAC, IPv4 only from its own
    /// address, and ARP only about itself (`decide`). Needs `endpoint`.
    pub security: bool,
    /// How many MACs it may be learned with and frames a second it may flood
    /// (crate::switch::limits); none until the control side sets them.
    pub limits: PortLimits,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerTopo {
    pub name: String,
    pub addr: VtepAddr,
}

/// Where one copy of a flooded frame goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Port(PortId),
    Vtep(VtepAddr),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopologyError {
    #[error("no network named {0:?}")]
    UnknownNetwork(String),
    #[error("no network with VNI {0}")]
    UnknownVni(Vni),
    #[error("a network named {0:?} exists already")]
    NetworkExists(String),
    #[error("VNI {vni} is already used by network {network:?}")]
    VniInUse { vni: Vni, network: String },
    #[error("network {network:?} still has {ports} port(s) attached: detach them first")]
    NetworkInUse { network: String, ports: usize },
    #[error("a peer at {0} exists already")]
    PeerExists(VtepAddr),
    #[error("no peer at {0}")]
    UnknownPeer(VtepAddr),
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
    #[error(
        "{ip} is network {network:?}'s own address (its DNS server): give a container another one"
    )]
    ServiceAddress { ip: Ipv4Addr, network: String },
    #[error("MAC {mac} is already used in network {network:?} by {owner}")]
    MacInUse {
        mac: MacAddr,
        network: String,
        owner: String,
    },
}

/// A network secret (32 bytes) from the cluster plane; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct NetSecret(pub [u8; 32]);

impl std::fmt::Debug for NetSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NetSecret(..)")
    }
}

/// One snapshot of what is configured. See the module documentation.
#[derive(Debug, Clone, Default)]
pub struct Topology {
    generation: u64,
    /// Secrets of the encrypted networks made by the cluster plane (node.toml's own are given
    /// to the ESP tables at start). Shared between snapshots until one changes: a worker
    /// re-keys its ESP table only when this or the hosts of these networks change.
    secrets: Arc<BTreeMap<Vni, NetSecret>>,
    networks: HashMap<Vni, NetworkTopo>,
    /// VNIs in the order the networks were made, for views.
    order: Vec<Vni>,
    peers: Vec<PeerTopo>,
    /// Index into `peers` by address: every datagram from the underlay looks its sender up.
    peer_at: HashMap<VtepAddr, usize>,
    ports: HashMap<PortId, PortTopo>,
    pub fdb_max_entries: usize,
    pub aging_ms: u64,
}

impl Topology {
    /// The topology of a static configuration. The spec is taken as validated (config.rs).
    pub fn new(spec: SwitchSpec) -> Topology {
        let mut t = Topology {
            generation: 0,
            secrets: Arc::default(),
            networks: HashMap::default(),
            order: Vec::new(),
            peers: Vec::new(),
            peer_at: HashMap::default(),
            ports: HashMap::default(),
            fdb_max_entries: spec.fdb_max_entries,
            aging_ms: spec.aging_ms,
        };
        for (name, addr) in spec.peers {
            t.peers.push(PeerTopo { name, addr });
        }
        t.index_peers();
        for n in spec.networks {
            t.order.push(n.vni);
            t.networks.insert(n.vni, NetworkTopo::new(n));
        }
        t
    }

    /// Counts the snapshots made from the first one: a worker compares it to know whether
    /// what it holds is current.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// A copy with `f` applied, one generation on; `self` is untouched if `f` fails.
    pub fn change(
        &self,
        f: impl FnOnce(&mut Topology) -> Result<(), TopologyError>,
    ) -> Result<Topology, TopologyError> {
        let mut t = self.clone();
        f(&mut t)?;
        t.generation = self.generation + 1;
        Ok(t)
    }

    // ----- reading (any thread) -----

    pub fn network(&self, vni: Vni) -> Option<&NetworkTopo> {
        self.networks.get(&vni)
    }

    pub fn network_by_name(&self, name: &str) -> Option<&NetworkTopo> {
        self.networks.values().find(|n| n.spec.name == name)
    }

    /// Every network, in the order they were made.
    pub fn networks(&self) -> impl Iterator<Item = &NetworkTopo> {
        self.order.iter().filter_map(|v| self.networks.get(v))
    }

    pub fn peers(&self) -> &[PeerTopo] {
        &self.peers
    }

    pub fn peer(&self, addr: VtepAddr) -> Option<&PeerTopo> {
        self.peer_at.get(&addr).map(|&i| &self.peers[i])
    }

    fn index_peers(&mut self) {
        self.peer_at = self
            .peers
            .iter()
            .enumerate()
            .map(|(i, p)| (p.addr, i))
            .collect();
    }

    pub fn port(&self, id: PortId) -> Option<&PortTopo> {
        self.ports.get(&id)
    }

    pub fn ports(&self) -> impl Iterator<Item = (&PortId, &PortTopo)> {
        self.ports.iter()
    }

    /// Every destination of a flood in network `vni`: its local ports but `except`, then, when
    /// `to_peers`, its peer VTEPs (head-end replication). The one place floods are expanded:
    /// the worker sends to it, `trace` prints it, tests compare it.
    pub fn flood_set(
        &self,
        vni: Vni,
        except: Option<PortId>,
        to_peers: bool,
    ) -> impl Iterator<Item = Output> + '_ {
        self.flood_set_scoped(vni, except, to_peers, super::multicast::Scope::All)
    }

    /// `flood_set` with only the local ports `scope` reaches (crate::switch::multicast).
    pub fn flood_set_scoped(
        &self,
        vni: Vni,
        except: Option<PortId>,
        to_peers: bool,
        scope: super::multicast::Scope,
    ) -> impl Iterator<Item = Output> + '_ {
        let net = self.networks.get(&vni);
        let ports = net.map_or(&[][..], |n| &n.ports[..]);
        let vteps = match net {
            Some(n) if to_peers => &n.vteps[..],
            _ => &[][..],
        };
        ports
            .iter()
            .filter(move |p| {
                Some(**p) != except
                    && (scope == super::multicast::Scope::All
                        || self.ports.get(p).is_some_and(|t| scope.reaches(t)))
            })
            .map(|p| Output::Port(*p))
            .chain(vteps.iter().map(|v| Output::Vtep(*v)))
    }

    /// Checks that a new endpoint with `ip` (and `mac`) may join network `name`; returns the
    /// network. Used inside `add_port`, and by the control side before it makes an interface.
    pub fn check_endpoint(
        &self,
        name: &str,
        ip: Option<Ipv4Addr>,
        mac: Option<MacAddr>,
    ) -> Result<&NetworkTopo, TopologyError> {
        let net = self
            .network_by_name(name)
            .ok_or_else(|| TopologyError::UnknownNetwork(name.to_string()))?;
        if let Some(ip) = ip {
            if !net.spec.subnet.contains(&ip) {
                return Err(TopologyError::OutsideSubnet {
                    ip,
                    network: name.to_string(),
                    subnet: net.spec.subnet,
                });
            }
            if net.service.is_some_and(|(own, _)| own == ip) {
                return Err(TopologyError::ServiceAddress {
                    ip,
                    network: name.to_string(),
                });
            }
            if let Some(e) = net.endpoint_by_ip(ip) {
                return Err(TopologyError::AddressInUse {
                    ip,
                    network: name.to_string(),
                    owner: self.owner(e),
                });
            }
        }
        if let Some(e) = mac.and_then(|m| net.endpoint(m)) {
            return Err(TopologyError::MacInUse {
                mac: e.mac,
                network: name.to_string(),
                owner: self.owner(e),
            });
        }
        Ok(net)
    }

    fn owner(&self, e: &Endpoint) -> String {
        match e.at {
            Location::Port(p) => match self.ports.get(&p) {
                Some(port) => format!("port {}", port.name),
                None => format!("port {p}"),
            },
            Location::Vtep(v) => format!("{} on {}", e.name, self.peer_label(v)),
        }
    }

    fn peer_label(&self, v: VtepAddr) -> String {
        self.peer(v)
            .map_or_else(|| v.to_string(), |p| format!("{} ({v})", p.name))
    }

    /// The cluster plane's network secrets (see the field).
    pub fn secrets(&self) -> &Arc<BTreeMap<Vni, NetSecret>> {
        &self.secrets
    }

    // ----- changing (control side, inside `change`) -----

    /// Sets or clears the secret of cluster network `vni`.
    pub fn set_secret(&mut self, vni: Vni, secret: Option<NetSecret>) {
        if self.secrets.get(&vni) == secret.as_ref() {
            return;
        }
        let m = Arc::make_mut(&mut self.secrets);
        match secret {
            Some(s) => m.insert(vni, s),
            None => m.remove(&vni),
        };
    }

    pub fn add_network(&mut self, spec: NetworkSpec) -> Result<(), TopologyError> {
        if let Some(n) = self.networks.get(&spec.vni) {
            return Err(TopologyError::VniInUse {
                vni: spec.vni,
                network: n.spec.name.clone(),
            });
        }
        if self.network_by_name(&spec.name).is_some() {
            return Err(TopologyError::NetworkExists(spec.name));
        }
        self.order.push(spec.vni);
        self.networks.insert(spec.vni, NetworkTopo::new(spec));
        Ok(())
    }

    /// Removes a network; refused while ports are attached to it.
    pub fn remove_network(&mut self, vni: Vni) -> Result<NetworkSpec, TopologyError> {
        let n = self
            .networks
            .get(&vni)
            .ok_or(TopologyError::UnknownVni(vni))?;
        if !n.ports.is_empty() {
            return Err(TopologyError::NetworkInUse {
                network: n.spec.name.clone(),
                ports: n.ports.len(),
            });
        }
        self.order.retain(|v| *v != vni);
        self.set_secret(vni, None);
        Ok(self.networks.remove(&vni).expect("found above").spec)
    }

    /// Changes what may change of a network in place: its MTU and the peers it spans
    /// (endpoints at a VTEP that leaves it are removed).
    pub fn update_network(
        &mut self,
        vni: Vni,
        mtu: u32,
        peers: Vec<(String, VtepAddr)>,
    ) -> Result<(), TopologyError> {
        let n = self
            .networks
            .get_mut(&vni)
            .ok_or(TopologyError::UnknownVni(vni))?;
        n.spec.mtu = mtu;
        n.vteps = peers.iter().map(|(_, a)| *a).collect();
        n.spec.peers = peers;
        let vteps = n.vteps.clone();
        n.remove_endpoints_at(|v| !vteps.contains(&v));
        Ok(())
    }

    pub fn add_peer(&mut self, name: &str, addr: VtepAddr) -> Result<(), TopologyError> {
        if self.peer(addr).is_some() {
            return Err(TopologyError::PeerExists(addr));
        }
        self.peers.push(PeerTopo {
            name: name.to_string(),
            addr,
        });
        self.index_peers();
        Ok(())
    }

    /// Removes a peer from the topology and from every network it was in, with the endpoints
    /// that were published at it.
    pub fn remove_peer(&mut self, addr: VtepAddr) -> Result<(), TopologyError> {
        if self.peer(addr).is_none() {
            return Err(TopologyError::UnknownPeer(addr));
        }
        self.peers.retain(|p| p.addr != addr);
        self.index_peers();
        for n in self.networks.values_mut() {
            if n.vteps.contains(&addr) {
                n.vteps.retain(|v| *v != addr);
                n.spec.peers.retain(|(_, a)| *a != addr);
                n.remove_endpoints_at(|v| v == addr);
            }
        }
        Ok(())
    }

    /// Adds a port to network `vni`. With an endpoint, its MAC is forwarded to the port and
    /// its address answered by proxy-ARP from the first frame; an address or MAC already used
    /// in the network is refused.
    pub fn add_port(
        &mut self,
        id: PortId,
        name: &str,
        vni: Vni,
        endpoint: Option<(MacAddr, Ipv4Addr)>,
    ) -> Result<(), TopologyError> {
        if self.ports.contains_key(&id) {
            return Err(TopologyError::PortExists(id));
        }
        let net_name = self
            .networks
            .get(&vni)
            .ok_or(TopologyError::UnknownVni(vni))?
            .spec
            .name
            .clone();
        if let Some((mac, ip)) = endpoint {
            self.check_endpoint(&net_name, Some(ip), Some(mac))?;
        }
        let net = self.networks.get_mut(&vni).expect("checked above");
        net.ports.push(id);
        if let Some((mac, ip)) = endpoint {
            net.insert_endpoint(Endpoint {
                name: name.to_string(),
                mac,
                ip: Some(ip),
                at: Location::Port(id),
            });
        }
        self.ports.insert(
            id,
            PortTopo {
                name: name.to_string(),
                vni,
                endpoint,
                security: false,
                limits: PortLimits::NONE,
            },
        );
        Ok(())
    }

    /// Turns port security on or off for a port with an endpoint.
    pub fn set_port_security(&mut self, id: PortId, on: bool) -> Result<(), TopologyError> {
        let port = self
            .ports
            .get_mut(&id)
            .ok_or(TopologyError::UnknownPort(id))?;
        port.security = on && port.endpoint.is_some();
        Ok(())
    }

    /// Sets a port's limits (crate::switch::limits).
    pub fn set_port_limits(&mut self, id: PortId, limits: PortLimits) -> Result<(), TopologyError> {
        self.ports
            .get_mut(&id)
            .ok_or(TopologyError::UnknownPort(id))?
            .limits = limits;
        Ok(())
    }

    pub fn remove_port(&mut self, id: PortId) -> Result<PortTopo, TopologyError> {
        let port = self
            .ports
            .remove(&id)
            .ok_or(TopologyError::UnknownPort(id))?;
        if let Some(net) = self.networks.get_mut(&port.vni) {
            net.ports.retain(|p| *p != id);
            if let Some((mac, _)) = port.endpoint {
                net.remove_endpoint(mac);
            }
            if net.ports.len() * 4 < net.ports.capacity() {
                net.ports.shrink_to_fit();
            }
        }
        super::shrink_sparse(&mut self.ports);
        Ok(port)
    }

    /// Installs a station of network `vni` that lives behind the peer at `vtep` (from the
    /// cluster plane): its frames go straight there and its address is answered locally. An
    /// endpoint with the same MAC elsewhere is replaced in one step (a move).
    pub fn add_remote_endpoint(
        &mut self,
        vni: Vni,
        name: &str,
        mac: MacAddr,
        ip: Option<Ipv4Addr>,
        vtep: VtepAddr,
    ) -> Result<(), TopologyError> {
        let net = self
            .networks
            .get(&vni)
            .ok_or(TopologyError::UnknownVni(vni))?;
        if !net.vteps.contains(&vtep) {
            return Err(TopologyError::UnknownPeer(vtep));
        }
        if let Some(e) = net.endpoint(mac) {
            if matches!(e.at, Location::Port(_)) {
                return Err(TopologyError::MacInUse {
                    mac,
                    network: net.spec.name.clone(),
                    owner: self.owner(e),
                });
            }
        }
        if let Some(ip) = ip {
            if let Some(e) = net.endpoint_by_ip(ip).filter(|e| e.mac != mac) {
                return Err(TopologyError::AddressInUse {
                    ip,
                    network: net.spec.name.clone(),
                    owner: self.owner(e),
                });
            }
        }
        let net = self.networks.get_mut(&vni).expect("checked above");
        net.remove_endpoint(mac);
        net.insert_endpoint(Endpoint {
            name: name.to_string(),
            mac,
            ip,
            at: Location::Vtep(vtep),
        });
        Ok(())
    }

    pub fn remove_remote_endpoint(&mut self, vni: Vni, mac: MacAddr) -> Result<(), TopologyError> {
        let net = self
            .networks
            .get_mut(&vni)
            .ok_or(TopologyError::UnknownVni(vni))?;
        if net
            .endpoint(mac)
            .is_some_and(|e| matches!(e.at, Location::Vtep(_)))
        {
            net.remove_endpoint(mac);
        }
        Ok(())
    }
}

/// The published topology: the control side stores, workers load. Loading takes no lock and
/// does not allocate (arc_swap).
#[derive(Clone)]
pub struct Published(Arc<ArcSwap<Topology>>);

impl Published {
    pub fn new(t: Topology) -> Published {
        Published(Arc::new(ArcSwap::from_pointee(t)))
    }

    /// The current snapshot.
    pub fn load(&self) -> Arc<Topology> {
        self.0.load_full()
    }

    /// The current snapshot if it is not `held` (the worker's fast path: one atomic load per
    /// batch, and a reference count taken only when the topology changed).
    pub fn newer(&self, held: &Arc<Topology>) -> Option<Arc<Topology>> {
        let cur = self.0.load();
        if Arc::ptr_eq(&cur, held) {
            return None;
        }
        Some(arc_swap::Guard::into_inner(cur))
    }

    pub fn store(&self, t: Topology) {
        self.0.store(Arc::new(t));
    }
}

impl std::fmt::Debug for Published {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Published(generation {})", self.0.load().generation)
    }
}

#[cfg(test)]
mod tests;
