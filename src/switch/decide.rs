//! `Switch::decide`: everything that would happen to a frame, without changing anything.
//!
//! Contract: `decide(now, ingress, bytes)` reads the topology snapshot the switch holds and
//! what it learned, and returns a `Decision`: the network, the learning and neighbour facts
//! the frame carries, how its destination was found, and the `Action` (deliver, encapsulate,
//! flood, answer, or drop with a reason). It mutates nothing, allocates nothing and never
//! panics on any input, so `vswitchctl trace` calls it as forwarding does and cannot drift
//! from it. `Switch::commit` then applies the decision's learning and counters; the worker
//! carries out the action.
//!
//! Answers the switch writes itself (proxy-ARP now; DNS next) are described by the decision
//! (`Answer`) and written by `Answer::emit` into a buffer of the caller's, which may be larger
//! than the frame that asked.
//!
//! Thread-safety: pure functions of `&Switch`; called on the worker that owns it.

use super::core::{NetState, Switch};
use super::drop_reason::DropReason;
use super::fdb::{Learned, Location};
use super::limits::PortLimits;
use super::multicast::{self, Scope};
use super::neigh::Source;
use super::topology::NetworkTopo;
use super::{dns, dns_tcp};
use super::{PortId, Timestamp, Vni, VtepAddr};
use crate::wire::ethernet::{self, EtherType, Frame};
use crate::wire::{arp, ipv4, probe, vxlan, MacAddr};
use std::net::Ipv4Addr;

/// Where a frame entered the switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingress {
    /// From a local port; the bytes are an Ethernet frame.
    Port(PortId),
    /// A plaintext UDP payload from the underlay; the bytes are VXLAN header + frame.
    Underlay(VtepAddr),
    /// A VXLAN datagram that came inside ESP of network `sa_vni` and verified.
    Decrypted { from: VtepAddr, sa_vni: Vni },
}

/// What the driver must do with the frame.
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
    /// Send to every destination of `Topology::flood_set(network, except, to_peers)`.
    Flood {
        network: Vni,
        except: Option<PortId>,
        to_peers: bool,
    },
    /// `Flood`, but to the local ports `scope` reaches only (crate::switch::multicast;
    /// `Topology::flood_set_scoped`).
    FloodScoped {
        network: Vni,
        except: Option<PortId>,
        to_peers: bool,
        scope: Scope,
    },
    /// The switch answers itself: write `answer` (see `Switch::write_answer`) to this port.
    Reply {
        port: PortId,
        answer: Answer,
    },
    /// A DNS query for a name the switch does not own (crate::switch::dns): hand the frame to
    /// the control side's forwarder, which asks the host's resolvers and answers the port.
    Upstream {
        port: PortId,
        network: Vni,
    },
    /// A reachability probe from a peer (crate::wire::probe): the driver answers it with
    /// `Switch::write_probe_reply`, to the address and UDP port it came from, from the port it
    /// arrived at (VXLAN or ESP).
    Probe {
        from: VtepAddr,
        request: probe::Request,
    },
}

impl Action {
    /// A flood's network, exception, whether it goes to the peers, and the local ports it
    /// reaches (`Flood`: every one, `Scope::All`); `None` for any other action.
    pub fn flood(&self) -> Option<(Vni, Option<PortId>, bool, Scope)> {
        match *self {
            Action::Flood {
                network,
                except,
                to_peers,
            } => Some((network, except, to_peers, Scope::All)),
            Action::FloodScoped {
                network,
                except,
                to_peers,
                scope,
            } => Some((network, except, to_peers, scope)),
            _ => None,
        }
    }
}

/// An answer the switch writes in place of forwarding a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Proxy-ARP: `ip` is at `mac`, told to the station that asked.
    ArpReply {
        mac: MacAddr,
        ip: Ipv4Addr,
        to_mac: MacAddr,
        to_ip: Ipv4Addr,
    },
    /// A DNS answer from the network's own address to the query in the request frame.
    Dns { network: Vni, reply: dns::Reply },
    /// A TCP segment from the network's own address answering the DNS-over-TCP segment in the
    /// request frame (crate::switch::dns_tcp).
    DnsTcp { network: Vni, step: dns_tcp::Step },
}

impl Answer {
    /// The longest answer `emit` writes.
    pub const MAX_LEN: usize = 1514;

    /// Writes an answer that needs neither the request nor the topology (proxy-ARP) into `out`
    /// (at least `MAX_LEN` bytes, or as long as the answer) and returns its length; 0 for the
    /// others, which `Switch::write_answer` writes.
    pub fn emit(&self, out: &mut [u8]) -> usize {
        match *self {
            Answer::ArpReply {
                mac,
                ip,
                to_mac,
                to_ip,
            } => {
                let len = ethernet::HEADER_LEN + arp::PACKET_LEN;
                let mut eth = Frame::new_unchecked(&mut out[..len]);
                eth.set_dst(to_mac);
                eth.set_src(mac);
                eth.set_ethertype(EtherType::Arp);
                arp::Repr {
                    operation: arp::Operation::Reply,
                    sender_mac: mac,
                    sender_ip: ip,
                    target_mac: to_mac,
                    target_ip: to_ip,
                }
                .emit(&mut out[ethernet::HEADER_LEN..len]);
                len
            }
            Answer::Dns { .. } | Answer::DnsTcp { .. } => 0,
        }
    }
}

/// What the frame's source MAC teaches the FDB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdbFact {
    pub mac: MacAddr,
    pub at: Location,
    pub outcome: Learned,
}

/// What the frame teaches the neighbour table (proxy-ARP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighFact {
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
    pub source: Source,
}

/// How the destination was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// The frame was dropped or answered before a lookup.
    None,
    /// Broadcast or multicast destination.
    Multicast,
    /// A station the control side configured (attach, or a remote endpoint).
    Endpoint(Location),
    /// A learned FDB entry, last refreshed at the given time.
    Learned(Location, Timestamp),
    /// Unknown unicast.
    Miss,
}

/// Everything `decide` found. See the module documentation.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub ingress: Ingress,
    /// Bytes as they arrived (the frame from a port; the VXLAN datagram from the underlay).
    pub len: usize,
    /// The network, once known.
    pub network: Option<Vni>,
    pub learn: Option<FdbFact>,
    pub neigh: Option<NeighFact>,
    pub lookup: Lookup,
    pub action: Action,
}

impl Lookup {
    /// Where the destination is, when it is known (a flood otherwise).
    pub fn location(self) -> Option<Location> {
        match self {
            Lookup::Endpoint(at) | Lookup::Learned(at, _) => Some(at),
            Lookup::None | Lookup::Multicast | Lookup::Miss => None,
        }
    }
}

impl Decision {
    fn new(ingress: Ingress, len: usize) -> Decision {
        Decision {
            ingress,
            len,
            network: None,
            learn: None,
            neigh: None,
            lookup: Lookup::None,
            action: Action::Drop(DropReason::NoRoute),
        }
    }

    fn drop(mut self, r: DropReason) -> Decision {
        self.action = Action::Drop(r);
        self
    }
}

impl Switch {
    /// Writes the answer frame `answer` (decided for the frame `request`) into `out`, at least
    /// `Answer::MAX_LEN` bytes, and returns its length (0: nothing to send, the network having
    /// gone since). `request` and `out` are different buffers: an answer may be longer than
    /// the request.
    pub fn write_answer(&self, answer: &Answer, request: &[u8], out: &mut [u8]) -> usize {
        match *answer {
            Answer::ArpReply { .. } => answer.emit(out),
            Answer::Dns { network, reply } => match self.topology().network(network) {
                Some(net) => dns::emit(net, reply, request, out),
                None => 0,
            },
            Answer::DnsTcp { network, step } => match self.topology().network(network) {
                Some(net) => dns_tcp::emit(net, step, request, out),
                None => 0,
            },
        }
    }

    /// Writes the answer to a probe (`Action::Probe`) into `out`, at least
    /// `probe::MAX_REPLY_LEN` bytes, and returns its length: this host's name `node`, its wall
    /// clock `wall_ns` (the caller reads it: the core reads no clock) and its networks, so the
    /// prober can compare them with its own (`vswitchctl doctor`). Allocates nothing.
    pub fn write_probe_reply(
        &self,
        request: &probe::Request,
        wall_ns: u64,
        node: &str,
        out: &mut [u8],
    ) -> usize {
        let nets = self.topology().networks().map(|n| {
            (
                n.spec.name.as_str(),
                n.vni().get(),
                n.spec.encrypted,
                n.spec.mtu,
            )
        });
        probe::emit_reply(out, request, wall_ns, node, nets)
    }

    /// Decides about `bytes` that arrived at `ingress`. Pure: see the module documentation.
    pub fn decide(&self, now: Timestamp, ingress: Ingress, bytes: &[u8]) -> Decision {
        let d = Decision::new(ingress, bytes.len());
        match ingress {
            Ingress::Port(port) => self.decide_port(now, port, bytes, bytes.len()),
            Ingress::Underlay(from) => self.decide_from_underlay(now, from, bytes, None, d),
            Ingress::Decrypted { from, sa_vni } => {
                self.decide_from_underlay(now, from, bytes, Some(sa_vni), d)
            }
        }
    }

    fn fdb_fact(
        learned: Option<&NetState>,
        net: &NetworkTopo,
        mac: MacAddr,
        at: Location,
        now: Timestamp,
    ) -> Option<FdbFact> {
        // What the control side configured is never overridden by what a frame says.
        if net.endpoint(mac).is_some() {
            return None;
        }
        let outcome = learned?.fdb.would_learn(mac, at, now);
        Some(FdbFact { mac, at, outcome })
    }

    fn neigh_fact(
        &self,
        net: &NetworkTopo,
        ip: Ipv4Addr,
        mac: MacAddr,
        source: Source,
    ) -> Option<NeighFact> {
        if !net.is_station_address(ip) || !mac.is_unicast_source() {
            return None;
        }
        if net.endpoint_by_ip(ip).is_some() {
            return None;
        }
        Some(NeighFact { ip, mac, source })
    }

    /// The MAC behind `ip` in network `vni`: a configured endpoint first, then what was
    /// snooped.
    pub fn resolve(&self, vni: Vni, ip: Ipv4Addr) -> Option<MacAddr> {
        let net = self.topology().network(vni)?;
        if let Some(e) = net.endpoint_by_ip(ip) {
            return Some(e.mac);
        }
        if let Some((_, mac)) = net.service().filter(|(own, _)| *own == ip) {
            return Some(mac);
        }
        self.learned(vni)?.neigh.lookup(ip)
    }

    /// Where `mac` is in network `vni`, and how that is known.
    pub fn locate(&self, vni: Vni, mac: MacAddr) -> Lookup {
        match self.topology().network(vni) {
            Some(net) => Switch::locate_in(self.learned(vni), net, mac),
            None => Lookup::Miss,
        }
    }

    /// How a frame to `dst` is looked up: multicast floods, unicast is located.
    fn lookup_dst(learned: Option<&NetState>, net: &NetworkTopo, dst: MacAddr) -> Lookup {
        if dst.is_multicast() {
            Lookup::Multicast
        } else {
            Switch::locate_in(learned, net, dst)
        }
    }

    fn locate_in(learned: Option<&NetState>, net: &NetworkTopo, mac: MacAddr) -> Lookup {
        if let Some(e) = net.endpoint(mac) {
            return Lookup::Endpoint(e.at);
        }
        match learned.and_then(|l| l.fdb.get(mac)) {
            Some(e) => Lookup::Learned(e.location, e.updated),
            None => Lookup::Miss,
        }
    }

    /// `decide` for a TCP super-frame a container handed port `port` to be segmented (TSO,
    /// crate::offload::tso): decided on its headers, which every segment repeats, and admitted
    /// by the length of its longest segment, `segment_len`, which is what the network carries.
    /// Pure, like `decide`.
    pub fn decide_super_frame(
        &self,
        now: Timestamp,
        port: PortId,
        frame: &[u8],
        segment_len: usize,
    ) -> Decision {
        self.decide_port(now, port, frame, segment_len)
    }

    /// A frame from a port, admitted as if it were `admitted_len` bytes long.
    fn decide_port(
        &self,
        now: Timestamp,
        port: PortId,
        frame: &[u8],
        admitted_len: usize,
    ) -> Decision {
        let d = Decision::new(Ingress::Port(port), frame.len());
        let Some(p) = self.topology().port(port) else {
            return d.drop(DropReason::UnknownPort);
        };
        let Some(net) = self.topology().network(p.vni) else {
            return d.drop(DropReason::UnknownPort);
        };
        let d = self.decide_from_port(now, net, port, frame, admitted_len, d);
        self.limit(now, port, p.limits, d)
    }

    fn decide_from_port(
        &self,
        now: Timestamp,
        net: &NetworkTopo,
        port: PortId,
        frame: &[u8],
        admitted_len: usize,
        mut d: Decision,
    ) -> Decision {
        d.network = Some(net.vni());
        let eth = match admit(net, frame, admitted_len) {
            Ok(eth) => eth,
            Err(r) => return d.drop(r),
        };
        if let Some(r) = self.port_security(port, &eth) {
            return d.drop(r);
        }
        let (src, dst) = (eth.src(), eth.dst());
        let learned = self.learned(net.vni());
        d.learn = Switch::fdb_fact(learned, net, src, Location::Port(port), now);
        if net.service().is_some_and(|(_, own)| own == dst) {
            d.action = match dns::classify(net, &eth) {
                dns::Verdict::Answer(reply) => Action::Reply {
                    port,
                    answer: Answer::Dns {
                        network: net.vni(),
                        reply,
                    },
                },
                dns::Verdict::Forward => Action::Upstream {
                    port,
                    network: net.vni(),
                },
                dns::Verdict::Tcp(step) => Action::Reply {
                    port,
                    answer: Answer::DnsTcp {
                        network: net.vni(),
                        step,
                    },
                },
                dns::Verdict::TcpQuiet => Action::Drop(DropReason::DnsTcpQuiet),
                dns::Verdict::Malformed => Action::Drop(DropReason::DnsMalformed),
                dns::Verdict::NotDns => Action::Drop(DropReason::ToDnsAddress),
            };
            return d;
        }
        if eth.ethertype() == EtherType::Arp {
            if let Ok(p) = arp::Packet::new_checked(eth.payload()) {
                d.neigh = self.neigh_fact(net, p.sender_ip(), p.sender_mac(), Source::Arp);
                if let Some(answer) = self.proxy_arp(net, &p) {
                    d.action = Action::Reply { port, answer };
                    return d;
                }
            }
        }
        d.lookup = Switch::lookup_dst(learned, net, dst);
        d.action = match d.lookup.location() {
            Some(Location::Port(p)) if p == port => Action::Drop(DropReason::Hairpin),
            Some(Location::Port(p)) => Action::ToPort(p),
            Some(Location::Vtep(vtep)) => Action::ToVtep {
                vtep,
                vni: net.vni(),
            },
            None => flood(net, self.topology().port(port), &eth, Some(port), true),
        };
        d
    }

    /// The port's limits (crate::switch::limits) applied to what it would do with a frame: a
    /// new source MAC past the port's cap, or a flood past its rate, is dropped instead, and
    /// teaches nothing. Nothing learned is evicted to make room.
    fn limit(&self, now: Timestamp, port: PortId, limits: PortLimits, d: Decision) -> Decision {
        let over = match (d.learn, limits.max_macs, d.network) {
            (Some(f), Some(max), Some(vni))
                if matches!(f.outcome, Learned::New | Learned::Moved) =>
            {
                self.learned(vni).is_some_and(|l| {
                    l.fdb.port_entries(port) >= max
                        || l.fdb.port_own_entries(port) >= limits.macs_per_reader().unwrap_or(max)
                })
            }
            _ => false,
        };
        let reason = if over {
            DropReason::PortMacLimit
        } else if matches!(d.action, Action::Flood { .. } | Action::FloodScoped { .. })
            && limits.bum.is_some_and(|rate| {
                self.port_state(port)
                    .is_some_and(|s| !s.bum.admits(now, rate, limits.readers))
            })
        {
            DropReason::BumRateLimited
        } else {
            return d;
        };
        Decision {
            learn: None,
            neigh: None,
            ..d
        }
        .drop(reason)
    }

    /// Port security (crate::switch::topology::PortTopo::security): why the frame from `port`
    /// is refused, if it is. A station may send only from its MAC; IPv4 only from its address
    /// (or 0.0.0.0, as DHCP does); ARP only with its MAC and address as sender (or 0.0.0.0,
    /// an address probe). IPv6 and other protocols pass on the MAC check alone.
    fn port_security(&self, port: PortId, eth: &Frame<&[u8]>) -> Option<DropReason> {
        let p = self.topology().port(port).filter(|p| p.security)?;
        let (mac, ip) = p.endpoint?;
        if eth.src() != mac {
            return Some(DropReason::SpoofedMac);
        }
        let own = |a: Ipv4Addr| a == ip || a.is_unspecified();
        match eth.ethertype() {
            EtherType::Ipv4 => match crate::wire::ipv4::Packet::new_checked(eth.payload()) {
                Ok(v4) if !own(v4.src()) => Some(DropReason::SpoofedIp),
                _ => None,
            },
            EtherType::Arp => match arp::Packet::new_checked(eth.payload()) {
                Ok(a) if a.sender_mac() != mac || !own(a.sender_ip()) => {
                    Some(DropReason::SpoofedArp)
                }
                _ => None,
            },
            _ => None,
        }
    }

    /// The answer to an ARP request from a local port, when the switch knows it.
    fn proxy_arp(&self, net: &NetworkTopo, p: &arp::Packet<&[u8]>) -> Option<Answer> {
        if p.operation() != arp::Operation::Request || p.is_gratuitous() {
            return None;
        }
        let mac = self.resolve(net.vni(), p.target_ip())?;
        if mac == p.sender_mac() {
            return None;
        }
        Some(Answer::ArpReply {
            mac,
            ip: p.target_ip(),
            to_mac: p.sender_mac(),
            to_ip: p.sender_ip(),
        })
    }

    fn decide_from_underlay(
        &self,
        now: Timestamp,
        from: VtepAddr,
        datagram: &[u8],
        sealed: Option<Vni>,
        mut d: Decision,
    ) -> Decision {
        let topo = self.topology();
        if topo.peer(from).is_none() {
            return d.drop(DropReason::UnknownPeer);
        }
        // A peer's probe (its VXLAN flags lack the I bit, so it is never a frame) is answered
        // whichever port it came to; only peers are answered, as only peers are forwarded for.
        if sealed.is_none() {
            if let Some(request) = probe::Request::parse(datagram) {
                d.action = Action::Probe { from, request };
                return d;
            }
        }
        let vx = match vxlan::Packet::new_checked(datagram) {
            Ok(vx) => vx,
            Err(vxlan::Error::Truncated) => return d.drop(DropReason::VxlanTruncated),
            Err(vxlan::Error::NoVniFlag) => return d.drop(DropReason::VxlanNoVniFlag),
        };
        let net = match Vni::new(vx.vni()).and_then(|v| topo.network(v)) {
            Some(n) => n,
            None => return d.drop(DropReason::UnknownVni),
        };
        if !net.vteps().contains(&from) {
            return d.drop(DropReason::PeerNotInNetwork);
        }
        match sealed {
            // No downgrade: an encrypted network takes nothing that did not come through ESP.
            None if net.spec.encrypted => return d.drop(DropReason::PlaintextOnEncrypted),
            Some(v) if v != net.vni() => return d.drop(DropReason::EspVniMismatch),
            _ => {}
        }
        d.network = Some(net.vni());
        let eth = match admit_from_peer(net, vx.payload()) {
            Ok(eth) => eth,
            Err(r) => return d.drop(r),
        };
        let (src, dst) = (eth.src(), eth.dst());
        let learned = self.learned(net.vni());
        d.learn = Switch::fdb_fact(learned, net, src, Location::Vtep(from), now);
        d.neigh = match eth.ethertype() {
            EtherType::Arp => arp::Packet::new_checked(eth.payload())
                .ok()
                .and_then(|p| self.neigh_fact(net, p.sender_ip(), p.sender_mac(), Source::Arp)),
            EtherType::Ipv4 => ipv4::Packet::new_checked(eth.payload())
                .ok()
                .and_then(|ip| self.neigh_fact(net, ip.src(), src, Source::Decap)),
            _ => None,
        };
        d.lookup = Switch::lookup_dst(learned, net, dst);
        d.action = match d.lookup.location() {
            Some(Location::Port(p)) => Action::ToPort(p),
            // Split horizon: what came from the underlay never goes back to it.
            Some(Location::Vtep(_)) => Action::Drop(DropReason::SplitHorizon),
            None => flood(net, None, &eth, None, false),
        };
        d
    }
}

/// The flood of `eth` in `net`, narrowed for broadcast and multicast the switch knows who
/// needs (crate::switch::multicast). `from` is the sending port's topology, `None` from a peer.
fn flood(
    net: &NetworkTopo,
    from: Option<&super::topology::PortTopo>,
    eth: &Frame<&[u8]>,
    except: Option<PortId>,
    to_peers: bool,
) -> Action {
    let network = net.vni();
    if !eth.dst().is_multicast() {
        return Action::Flood {
            network,
            except,
            to_peers,
        };
    }
    match multicast::classify(net, from, eth) {
        multicast::Verdict::Drop(r) => Action::Drop(r),
        multicast::Verdict::Flood(Scope::All) => Action::Flood {
            network,
            except,
            to_peers,
        },
        multicast::Verdict::Flood(Scope::Peers) if !to_peers => {
            Action::Drop(DropReason::KnownAnnouncement)
        }
        multicast::Verdict::Flood(scope) => Action::FloodScoped {
            network,
            except,
            to_peers,
            scope,
        },
    }
}

/// `admit` for a frame from a peer, which may also be a TCP super-frame a Linux sender's path
/// left whole (crate::offload::superframe): the executor writes it as one or cuts it.
fn admit_from_peer<'a>(net: &NetworkTopo, frame: &'a [u8]) -> Result<Frame<&'a [u8]>, DropReason> {
    match admit(net, frame, frame.len()) {
        Err(DropReason::FrameTooBig)
            if crate::offload::superframe::peer_super_frame(frame, net.spec.mtu).is_some() =>
        {
            Frame::new_checked(frame).map_err(|_| DropReason::FrameTruncated)
        }
        r => r,
    }
}

/// The checks every frame passes before it is looked at, whichever way it came: a whole
/// Ethernet header, a source that can be a station, and no larger than the network carries
/// (`len`: the frame's, or its longest segment's for a super-frame to be segmented).
fn admit<'a>(
    net: &NetworkTopo,
    frame: &'a [u8],
    len: usize,
) -> Result<Frame<&'a [u8]>, DropReason> {
    let eth = Frame::new_checked(frame).map_err(|_| DropReason::FrameTruncated)?;
    if !eth.src().is_unicast_source() {
        return Err(DropReason::BadSourceMac);
    }
    if len > net.max_frame_len(frame) {
        return Err(DropReason::FrameTooBig);
    }
    Ok(eth)
}
