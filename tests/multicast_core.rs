//! crate::switch::multicast through the sans-IO core, with byte vectors: what the switch does
//! with a container's IPv6 chatter and with announcements it already knows, on a switch with
//! three attached stations (port security on, as `attach-namespace` makes them), a port
//! whose station is unknown, and two peers.

mod common;

use common::frames::eth_frame;
use std::net::Ipv4Addr;
use vswitch::control::views::ApiViews;
use vswitch::switch::topology::Output;
use vswitch::switch::{
    garp, Action, DropReason, NetworkSpec, PortId, Switch, SwitchSpec, Timestamp, Vni, VtepAddr,
};
use vswitch::wire::ethernet::EtherType;
use vswitch::wire::MacAddr;

const T0: Timestamp = Timestamp(1_000);
const BLUE: Vni = Vni::of(42);
const VTEP_B: VtepAddr = VtepAddr(Ipv4Addr::new(192, 0, 2, 2));
const VTEP_C: VtepAddr = VtepAddr(Ipv4Addr::new(192, 0, 2, 3));
const P1: PortId = PortId(1);
const P2: PortId = PortId(2);
const P3: PortId = PortId(3);
/// A port with no configured station (an attached interface): it may listen to anything.
const P4: PortId = PortId(4);

/// Station n's MAC: its low 24 bits differ per station, as generated MACs do.
fn mac(n: u8) -> MacAddr {
    MacAddr([0x02, 0x42, 0x0a, n, 0x10 + n, 0x20 + n])
}

fn ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 9, n)
}

fn switch() -> Switch {
    let peers = vec![("b".to_string(), VTEP_B), ("c".to_string(), VTEP_C)];
    let mut sw = Switch::new(SwitchSpec {
        networks: vec![NetworkSpec {
            name: "blue".into(),
            vni: BLUE,
            subnet: "10.0.9.0/24".parse().unwrap(),
            mtu: 1450,
            peers: peers.clone(),
            encrypted: false,
        }],
        peers,
        fdb_max_entries: 1024,
        aging_ms: 300_000,
    });
    for (p, n) in [(P1, 2), (P2, 3), (P3, 4)] {
        sw.add_port(p, &format!("c{n}"), BLUE, Some((mac(n), ip(n))), T0)
            .unwrap();
        sw.set_port_security(p, true).unwrap();
    }
    sw.add_port(P4, "veth4", BLUE, None, T0).unwrap();
    sw
}

/// Where a (scoped) flood goes: local ports, peers.
fn outputs(sw: &Switch, action: Action) -> (Vec<PortId>, Vec<VtepAddr>) {
    let (network, except, to_peers, scope) = action.flood().expect("a flood");
    let (mut ports, mut vteps) = (Vec::new(), Vec::new());
    for out in sw
        .topology()
        .flood_set_scoped(network, except, to_peers, scope)
    {
        match out {
            Output::Port(p) => ports.push(p),
            Output::Vtep(v) => vteps.push(v),
        }
    }
    ports.sort();
    vteps.sort();
    (ports, vteps)
}

/// An IPv6 packet from `src_mac`'s link-local (or ::) to `dst` carrying ICMPv6 `body`, behind
/// a hop-by-hop header with the router alert when `hbh` (as MLD sends it).
fn icmpv6(src_mac: MacAddr, dst_mac: MacAddr, dst: [u8; 16], body: &[u8], hbh: bool) -> Vec<u8> {
    let mut ext = Vec::new();
    if hbh {
        ext = vec![58, 0, 5, 2, 0, 0, 1, 0];
    }
    let len = (ext.len() + body.len()) as u16;
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&len.to_be_bytes());
    p.push(if hbh { 0 } else { 58 });
    p.push(if hbh { 1 } else { 255 });
    p.extend_from_slice(&[0u8; 16]); // ::, as in duplicate address detection
    p.extend_from_slice(&dst);
    p.extend_from_slice(&ext);
    p.extend_from_slice(body);
    eth_frame(dst_mac, src_mac, EtherType::Ipv6, &p)
}

fn group(last: [u8; 4]) -> ([u8; 16], MacAddr) {
    let mut a = [0u8; 16];
    a[0] = 0xff;
    a[1] = 0x02;
    a[12..].copy_from_slice(&last);
    (a, MacAddr([0x33, 0x33, last[0], last[1], last[2], last[3]]))
}

fn drops(sw: &Switch, reason: DropReason) -> u64 {
    let blue = sw.network_stats().into_iter().find(|s| s.name == "blue");
    blue.and_then(|s| s.counters.drops.get(reason.name()).copied())
        .unwrap_or(0)
}

#[test]
fn mld_reports_from_a_container_go_nowhere_and_are_counted() {
    let mut sw = switch();
    let (all_routers_v2, m) = group([0, 0, 0, 0x16]);
    // MLDv2 report (143) with one record, and an MLDv1 report (131) and done (132).
    for ty in [143u8, 131, 132] {
        let mut f = icmpv6(mac(2), m, all_routers_v2, &[ty, 0, 0, 0, 0, 0, 0, 1], true);
        let action = sw.process_from_port(T0, P1, &mut f);
        assert_eq!(action, Action::Drop(DropReason::Mld), "type {ty}");
    }
    assert_eq!(drops(&sw, DropReason::Mld), 3);
}

#[test]
fn router_solicitations_go_nowhere_and_are_counted() {
    let mut sw = switch();
    let (all_routers, m) = group([0, 0, 0, 2]);
    let mut f = icmpv6(mac(3), m, all_routers, &[133, 0, 0, 0, 0, 0, 0, 0], false);
    let action = sw.process_from_port(T0, P2, &mut f);
    assert_eq!(action, Action::Drop(DropReason::RouterSolicitation));
    assert_eq!(drops(&sw, DropReason::RouterSolicitation), 1);
}

#[test]
fn a_neighbour_solicitation_goes_to_the_peers_and_the_station_whose_mac_names_the_group() {
    let mut sw = switch();
    // Duplicate address detection of station 3's link-local address, or a resolution of it:
    // to ff02::1:ff13:2023 (the low 24 bits of mac(3)).
    let m3 = mac(3).0;
    let (solicited, m) = group([0xff, m3[3], m3[4], m3[5]]);
    let mut ns = vec![135, 0, 0, 0, 0, 0, 0, 0];
    ns.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0x00, 0x42, 0x0a, 0xff, 0xfe]);
    ns.extend_from_slice(&m3[3..]);
    let mut f = icmpv6(mac(2), m, solicited, &ns, false);
    let action = sw.process_from_port(T0, P1, &mut f);
    // Station 3 (P2) and the port whose station is unknown (P4); not station 4 (P3).
    assert_eq!(outputs(&sw, action), (vec![P2, P4], vec![VTEP_B, VTEP_C]));

    // From a peer: the same local ports, no peer (split horizon).
    let mut datagram = vec![0x08, 0, 0, 0, 0, 0, 42, 0];
    datagram.extend_from_slice(&icmpv6(
        MacAddr([2, 9, 9, 9, 9, 9]),
        m,
        solicited,
        &ns,
        false,
    ));
    let action = sw.process_from_underlay(T0, VTEP_B, &datagram);
    assert_eq!(outputs(&sw, action), (vec![P2, P4], vec![]));
}

#[test]
fn other_ipv6_multicast_still_floods() {
    let mut sw = switch();
    // An echo request to all nodes (ff02::1): every host listens there.
    let (all_nodes, m) = group([0, 0, 0, 1]);
    let mut f = icmpv6(mac(2), m, all_nodes, &[128, 0, 0, 0, 0, 1, 0, 1], false);
    let action = sw.process_from_port(T0, P1, &mut f);
    assert_eq!(
        outputs(&sw, action),
        (vec![P2, P3, P4], vec![VTEP_B, VTEP_C])
    );
}

#[test]
fn a_stations_announcement_of_itself_goes_to_the_peers_only() {
    let mut sw = switch();
    let mut announce = [0u8; garp::FRAME_LEN];
    garp::build(&mut announce, mac(2), ip(2));
    let action = sw.process_from_port(T0, P1, &mut announce);
    assert_eq!(outputs(&sw, action), (vec![], vec![VTEP_B, VTEP_C]));

    // Another address than the topology holds for it is not "known": port security drops it.
    let mut other = [0u8; garp::FRAME_LEN];
    garp::build(&mut other, mac(2), ip(9));
    let action = sw.process_from_port(T0, P1, &mut other);
    assert_eq!(action, Action::Drop(DropReason::SpoofedArp));

    // From a port whose station is unknown, an announcement floods as before.
    let mut theirs = [0u8; garp::FRAME_LEN];
    garp::build(&mut theirs, mac(7), ip(7));
    let action = sw.process_from_port(T0, P4, &mut theirs);
    assert_eq!(
        outputs(&sw, action),
        (vec![P1, P2, P3], vec![VTEP_B, VTEP_C])
    );
}
