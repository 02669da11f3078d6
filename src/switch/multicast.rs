//! Which local ports a broadcast or multicast frame needs to reach: a step of `decide` that
//! keeps the cost of the containers' own chatter from growing with the number of ports.
//!
//! Every Linux container brought up on a network sends, unasked, IPv6 multicast that no other
//! container of an IPv4 overlay reads: MLD reports (for multicast routers; hosts ignore
//! them, RFC 3810 §6), router solicitations (repeated for as long as no router answers, with
//! back-off), and the duplicate address detection of its link-local address (a neighbour
//! solicitation to its solicited-node group, RFC 4862 §5.4.2). And the switch announces every
//! attached station with a gratuitous ARP. Flooded to every port, each of these costs one
//! write per port: with N containers attaching, N² writes (at 4096 ports, minutes of a core).
//! Here the switch decides from what it already knows:
//!
//! - MLD reports and dones (ICMPv6 131, 132, 143) and queries (130) go nowhere: the overlay
//!   has no multicast router or querier, and hosts ignore them. Dropped, `mld`.
//! - Router solicitations (ICMPv6 133) go nowhere: vswitch networks are IPv4 networks with no
//!   IPv6 router. Dropped, `router_solicitation`.
//! - A neighbour solicitation to a solicited-node group ff02::1:ffXX:XXXX (MAC
//!   33:33:ff:XX:XX:XX) goes to the peers and to the local ports whose station can have
//!   joined that group: those whose MAC ends in XX:XX:XX (a Linux interface's link-local
//!   address is made from its MAC, RFC 4291 §2.5.1), and every port whose station the switch
//!   does not know for sure (no configured endpoint, or port security off, e.g. a router).
//! - A gratuitous ARP by which a station announces exactly the MAC and address the topology
//!   already holds for it goes to the peers only: every local container asking for that
//!   address gets the answer from proxy-ARP. From the underlay, such an announcement of a
//!   station the topology knows is consumed (`known_announcement`).
//!
//! Everything else (broadcast ARP requests proxy-ARP cannot answer, IPv4 multicast, other
//! IPv6 multicast such as ff02::1) floods as before. Pure: reads the frame and the topology.

use super::drop_reason::DropReason;
use super::topology::{NetworkTopo, PortTopo};
use crate::wire::ethernet::{EtherType, Frame};
use crate::wire::{arp, MacAddr};

/// Where a flood goes besides the peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every local port of the network (but the one it came from).
    All,
    /// No local port: the peers only.
    Peers,
    /// The local ports whose station may have joined the IPv6 solicited-node group
    /// ff02::1:ffXX:XXXX given by its low 24 bits (`Scope::reaches`).
    SolicitedNode([u8; 3]),
}

impl Scope {
    /// Whether a flood of this scope goes to local port `port`.
    pub fn reaches(self, port: &PortTopo) -> bool {
        match self {
            Scope::All => true,
            Scope::Peers => false,
            Scope::SolicitedNode(low) => match port.endpoint {
                Some((mac, _)) if port.security => mac.0[3..] == low,
                _ => true,
            },
        }
    }
}

/// What this step decided about a broadcast or multicast frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Flood(Scope),
    Drop(DropReason),
}

/// ICMPv6 types (RFC 4443, RFC 4861, RFC 2710, RFC 3810).
mod icmpv6 {
    pub const MLD_QUERY: u8 = 130;
    pub const MLD_REPORT: u8 = 131;
    pub const MLD_DONE: u8 = 132;
    pub const ROUTER_SOLICITATION: u8 = 133;
    pub const NEIGHBOR_SOLICITATION: u8 = 135;
    pub const MLDV2_REPORT: u8 = 143;
}

/// IPv6 header fields (RFC 8200 §3) and the extension headers MLD comes behind.
mod ipv6 {
    pub const HEADER_LEN: usize = 40;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_BY_HOP: u8 = 0;
    pub const ICMPV6: u8 = 58;
}

/// The ICMPv6 type of an IPv6 packet, looking through a hop-by-hop options header (MLD
/// messages carry one with the router alert, RFC 2711). `None` for anything else.
fn icmpv6_type(packet: &[u8]) -> Option<u8> {
    if packet.len() < ipv6::HEADER_LEN || packet[0] >> 4 != 6 {
        return None;
    }
    let mut next = packet[ipv6::NEXT_HEADER];
    let mut at = ipv6::HEADER_LEN;
    if next == ipv6::HOP_BY_HOP {
        let hdr = packet.get(at..at + 2)?;
        next = hdr[0];
        at += 8 * (hdr[1] as usize + 1);
    }
    if next != ipv6::ICMPV6 {
        return None;
    }
    packet.get(at).copied()
}

/// Decides where the multicast or broadcast `eth` goes, in network `net`. `from` is the
/// sending port's topology for a frame from a local port, `None` for one from the underlay.
pub fn classify(net: &NetworkTopo, from: Option<&PortTopo>, eth: &Frame<&[u8]>) -> Verdict {
    let dst = eth.dst();
    match eth.ethertype() {
        EtherType::Ipv6 if dst.0[..2] == [0x33, 0x33] => match icmpv6_type(eth.payload()) {
            Some(
                icmpv6::MLD_QUERY | icmpv6::MLD_REPORT | icmpv6::MLD_DONE | icmpv6::MLDV2_REPORT,
            ) => Verdict::Drop(DropReason::Mld),
            Some(icmpv6::ROUTER_SOLICITATION) => Verdict::Drop(DropReason::RouterSolicitation),
            Some(icmpv6::NEIGHBOR_SOLICITATION) if dst.0[2] == 0xff => {
                Verdict::Flood(Scope::SolicitedNode([dst.0[3], dst.0[4], dst.0[5]]))
            }
            _ => Verdict::Flood(Scope::All),
        },
        EtherType::Arp if dst == MacAddr::BROADCAST => {
            match arp::Packet::new_checked(eth.payload()) {
                Ok(p) if p.is_gratuitous() && known(net, from, p.sender_mac(), p.sender_ip()) => {
                    Verdict::Flood(Scope::Peers)
                }
                _ => Verdict::Flood(Scope::All),
            }
        }
        _ => Verdict::Flood(Scope::All),
    }
}

/// Whether the topology holds `mac` at `ip` as the station that sent the frame: the sending
/// port's own endpoint, or (from the underlay) a configured endpoint of the network.
fn known(net: &NetworkTopo, from: Option<&PortTopo>, mac: MacAddr, ip: std::net::Ipv4Addr) -> bool {
    match from {
        Some(port) => port.endpoint == Some((mac, ip)),
        None => net
            .endpoint(mac)
            .is_some_and(|e| net.endpoint_by_ip(ip).is_some_and(|o| o.mac == e.mac)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An MLDv2 report as a Linux container sends it on bring-up (tcpdump -x): IPv6 from ::
    /// to ff02::16, a hop-by-hop header with the router alert, ICMPv6 type 143.
    const MLDV2_REPORT: &[u8] = &[
        0x60, 0, 0, 0, 0, 0x24, 0x00, 0x01, // version, payload 36, next header hop-by-hop
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // ::
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x16, // ff02::16
        0x3a, 0x00, 0x05, 0x02, 0x00, 0x00, 0x01, 0x00, // HBH: next ICMPv6, router alert
        0x8f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, // type 143, 1 record
        0x04, 0x00, 0x00, 0x00, 0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff, 0x13, 0x24,
        0xcc,
    ];

    fn icmp6(ty: u8) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0, 0, 8, ipv6::ICMPV6, 255];
        p.extend_from_slice(&[0; 32]);
        p.extend_from_slice(&[ty, 0, 0, 0, 0, 0, 0, 0]);
        p
    }

    #[test]
    fn finds_the_icmpv6_type_behind_hop_by_hop() {
        assert_eq!(icmpv6_type(MLDV2_REPORT), Some(icmpv6::MLDV2_REPORT));
        assert_eq!(icmpv6_type(&icmp6(135)), Some(135));
        // Truncated, not IPv6, not ICMPv6: nothing.
        assert_eq!(icmpv6_type(&MLDV2_REPORT[..44]), None);
        assert_eq!(icmpv6_type(&MLDV2_REPORT[..20]), None);
        let mut udp = icmp6(135);
        udp[ipv6::NEXT_HEADER] = 17;
        assert_eq!(icmpv6_type(&udp), None);
        let mut v4 = icmp6(135);
        v4[0] = 0x45;
        assert_eq!(icmpv6_type(&v4), None);
    }

    #[test]
    fn solicited_node_scope_reaches_matching_and_unknown_stations() {
        let mac: MacAddr = "02:4d:2d:13:24:cb".parse().unwrap();
        let port = |endpoint, security| PortTopo {
            name: "p".into(),
            vni: crate::switch::Vni::new(42).unwrap(),
            endpoint,
            security,
            limits: crate::switch::limits::PortLimits::NONE,
        };
        let station = Some((mac, std::net::Ipv4Addr::new(10, 0, 9, 2)));
        let s = Scope::SolicitedNode([0x13, 0x24, 0xcb]);
        assert!(s.reaches(&port(station, true)));
        assert!(!Scope::SolicitedNode([0x13, 0x24, 0xcc]).reaches(&port(station, true)));
        assert!(Scope::SolicitedNode([0x13, 0x24, 0xcc]).reaches(&port(station, false)));
        assert!(Scope::SolicitedNode([0, 0, 1]).reaches(&port(None, true)));
        assert!(!Scope::Peers.reaches(&port(station, true)));
        assert!(Scope::All.reaches(&port(None, true)));
    }
}
