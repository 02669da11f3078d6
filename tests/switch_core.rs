//! Sans-IO tests of the forwarding core (`vswitch::switch`): frames in, `Action`s and counters out.
//!
//! No kernel, no root, no real clock: time is a `Timestamp` the test passes in. The last part
//! joins two switches by an in-memory underlay (a tiny driver that carries out the actions) in the
//! spirit of quinn-proto's two-endpoint tests.
//!
//! Layout used throughout (see `switch()`):
//! - network "blue", VNI 42, 10.0.9.0/24, MTU 1450, peers B and C;
//! - network "green", VNI 43, the same subnet, MTU 1450, peers B and D;
//! - E is not a peer at all.

mod common;

use common::frames::{arp_request, eth_frame, vxlan_datagram};
use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use vswitch::control::api;
use vswitch::control::views::ApiViews;
use vswitch::switch::fdb::Learned;
use vswitch::switch::topology::Output;
use vswitch::switch::{
    garp, Action, DropReason, Ingress, NetworkSpec, PortId, Switch, SwitchSpec, Timestamp, Vni,
    VtepAddr,
};
use vswitch::wire::ethernet::{EtherType, Frame};
use vswitch::wire::{arp, vxlan, MacAddr};

// ----- the test world -----

const VTEP_B: VtepAddr = VtepAddr(Ipv4Addr::new(192, 0, 2, 2));
const VTEP_C: VtepAddr = VtepAddr(Ipv4Addr::new(192, 0, 2, 3));
const VTEP_D: VtepAddr = VtepAddr(Ipv4Addr::new(192, 0, 2, 4));
const NOT_A_PEER: VtepAddr = VtepAddr(Ipv4Addr::new(192, 0, 2, 99));

const BLUE: Vni = Vni::of(42);
const GREEN: Vni = Vni::of(43);
const MTU: usize = 1450;
const AGING_MS: u64 = 300_000;

const P1: PortId = PortId(1);
const P2: PortId = PortId(2);
const P3: PortId = PortId(3);
/// Ports of network green.
const G1: PortId = PortId(11);
const G2: PortId = PortId(12);

fn vni(v: u32) -> Vni {
    Vni::new(v).unwrap()
}

/// The port a proxy answer goes to, if the action is one.
fn replied(a: Action) -> Option<PortId> {
    match a {
        Action::Reply { port, .. } => Some(port),
        _ => None,
    }
}

/// A locally administered unicast MAC ending in `n`.
fn mac(n: u8) -> MacAddr {
    MacAddr([0x02, 0x42, 0x0a, 0x00, 0x09, n])
}

fn ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 9, n)
}

fn at_secs(s: u64) -> Timestamp {
    Timestamp::from_secs(s)
}

const T0: Timestamp = Timestamp(1_000);

fn spec(fdb_max_entries: usize, aging_ms: u64) -> SwitchSpec {
    let net = |name: &str, v: u32, peers: &[(&str, VtepAddr)]| NetworkSpec {
        name: name.to_string(),
        vni: vni(v),
        subnet: "10.0.9.0/24".parse().unwrap(),
        mtu: MTU as u32,
        peers: peers.iter().map(|(n, a)| (n.to_string(), *a)).collect(),
        encrypted: false,
    };
    SwitchSpec {
        networks: vec![
            net("blue", 42, &[("b", VTEP_B), ("c", VTEP_C)]),
            net("green", 43, &[("b", VTEP_B), ("d", VTEP_D)]),
        ],
        peers: vec![
            ("b".to_string(), VTEP_B),
            ("c".to_string(), VTEP_C),
            ("d".to_string(), VTEP_D),
        ],
        fdb_max_entries,
        aging_ms,
    }
}

/// The standard switch with plain (endpoint-less) ports 1, 2, 3 in blue and 11, 12 in green.
fn switch() -> Switch {
    switch_with(spec(1024, AGING_MS))
}

fn switch_with(spec: SwitchSpec) -> Switch {
    let mut sw = Switch::new(spec);
    for (id, net) in [(P1, BLUE), (P2, BLUE), (P3, BLUE), (G1, GREEN), (G2, GREEN)] {
        sw.add_port(id, &format!("port{}", id.0), net, None, T0)
            .unwrap();
    }
    sw
}

/// A switch whose port 1 carries an attached endpoint (`mac(2)`, 10.0.9.2).
fn switch_with_endpoint() -> Switch {
    let mut sw = Switch::new(spec(1024, AGING_MS));
    sw.add_port(P1, "c1", BLUE, Some((mac(2), ip(2))), T0)
        .unwrap();
    sw.add_port(P2, "port2", BLUE, None, T0).unwrap();
    sw.add_port(P3, "port3", BLUE, None, T0).unwrap();
    sw
}

// ----- frame builders -----

fn arp_frame(eth_dst: MacAddr, repr: arp::Repr) -> Vec<u8> {
    let mut payload = [0u8; arp::PACKET_LEN];
    repr.emit(&mut payload);
    eth_frame(eth_dst, repr.sender_mac, EtherType::Arp, &payload)
}

/// "`sender_ip` is-at `sender_mac`", unicast to the requester.
fn arp_reply(
    sender_mac: MacAddr,
    sender_ip: Ipv4Addr,
    target_mac: MacAddr,
    target_ip: Ipv4Addr,
) -> Vec<u8> {
    arp_frame(
        target_mac,
        arp::Repr {
            operation: arp::Operation::Reply,
            sender_mac,
            sender_ip,
            target_mac,
            target_ip,
        },
    )
}

/// An IPv4/ICMP-ish frame: a valid 20-byte header and `payload_len` bytes of pattern. The total
/// frame is `14 + 20 + payload_len` bytes.
fn ipv4_frame(
    src_mac: MacAddr,
    dst_mac: MacAddr,
    src_ip: Ipv4Addr,
    dst_ip: Ipv4Addr,
    payload_len: usize,
) -> Vec<u8> {
    let total = 20 + payload_len;
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 1; // ICMP
    p[12..16].copy_from_slice(&src_ip.octets());
    p[16..20].copy_from_slice(&dst_ip.octets());
    for (i, b) in p[20..].iter_mut().enumerate() {
        *b = i as u8;
    }
    eth_frame(dst_mac, src_mac, EtherType::Ipv4, &p)
}

/// A frame of exactly `len` bytes (`len >= 14`) from `src` to `dst`.
fn frame_of_len(dst: MacAddr, src: MacAddr, len: usize) -> Vec<u8> {
    eth_frame(dst, src, EtherType::Unknown(0x88b5), &vec![0xa5; len - 14])
}

/// Deterministic pseudo-random numbers (xorshift64), so failures reproduce.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn unicast_mac(&mut self) -> MacAddr {
        let b = self.next().to_be_bytes();
        // Locally administered, unicast, never zero.
        MacAddr([0x06, b[1], b[2], b[3], b[4], b[5] | 1])
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

// ----- views -----

fn fdb_entry(sw: &Switch, network: &str, m: MacAddr) -> Option<api::FdbEntryInfo> {
    sw.fdb_info(T0)
        .into_iter()
        .find(|e| e.network == network && e.mac == m.to_string())
}

fn neigh_entry(sw: &Switch, network: &str, a: Ipv4Addr) -> Option<api::NeighEntryInfo> {
    sw.neigh_info(T0)
        .into_iter()
        .find(|e| e.network == network && e.ip == a.to_string())
}

fn stats(sw: &Switch, network: &str) -> api::NetworkStats {
    sw.network_stats()
        .into_iter()
        .find(|s| s.name == network)
        .unwrap()
}

fn fdb_entries(sw: &Switch, network: &str) -> u32 {
    sw.networks_info()
        .into_iter()
        .find(|n| n.name == network)
        .unwrap()
        .fdb_entries
}

/// Every drop the switch counted, by reason name: the underlay's plus every network's. Per-port
/// and per-peer counters are other views of the same drops and are not added in.
fn all_drops(sw: &Switch) -> BTreeMap<String, u64> {
    let mut out = sw.underlay_drops().to_map();
    for s in sw.network_stats() {
        for (reason, n) in s.counters.drops {
            *out.entry(reason).or_default() += n;
        }
    }
    out
}

fn one_drop(reason: &str) -> BTreeMap<String, u64> {
    BTreeMap::from([(reason.to_string(), 1)])
}

/// Where the driver actually sends a flood: the network's ports minus `except`, and its peers
/// when `to_peers`.
fn flood_set(sw: &Switch, action: Action) -> (Vec<PortId>, Vec<VtepAddr>) {
    let (network, except, to_peers, scope) = action.flood().expect("a flood");
    let mut ports = Vec::new();
    let mut vteps = Vec::new();
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

// ===== learning =====

#[test]
fn frame_from_a_port_teaches_its_source_mac_to_that_port() {
    let mut sw = switch();
    let mut f = frame_of_len(MacAddr::BROADCAST, mac(7), 60);
    let _ = sw.process_from_port(T0, P1, &mut f);

    let e = fdb_entry(&sw, "blue", mac(7)).expect("mac(7) learned");
    assert_eq!(e.kind, "port");
    assert_eq!(e.location, "port1");
    assert_eq!(e.vni, 42);
    assert_eq!(stats(&sw, "blue").events.fdb_learned, 1);
    assert!(
        fdb_entry(&sw, "green", mac(7)).is_none(),
        "learning stays in the network"
    );
}

#[test]
fn frame_to_a_mac_learned_on_port_1_goes_to_port_1() {
    let mut sw = switch();
    let _ = sw.process_from_port(T0, P1, &mut frame_of_len(MacAddr::BROADCAST, mac(7), 60));

    let action = sw.process_from_port(T0, P2, &mut frame_of_len(mac(7), mac(8), 60));
    assert_eq!(action, Action::ToPort(P1));
}

#[test]
fn frame_from_the_underlay_teaches_its_source_mac_to_the_sending_vtep() {
    let mut sw = switch();
    let d = vxlan_datagram(42, &frame_of_len(MacAddr::BROADCAST, mac(20), 60));
    let _ = sw.process_from_underlay(T0, VTEP_B, &d);

    let e = fdb_entry(&sw, "blue", mac(20)).expect("mac(20) learned");
    assert_eq!(e.kind, "vtep");
    assert_eq!(e.location, "192.0.2.2");

    let action = sw.process_from_port(T0, P1, &mut frame_of_len(mac(20), mac(7), 60));
    assert_eq!(
        action,
        Action::ToVtep {
            vtep: VTEP_B,
            vni: vni(42)
        }
    );
}

#[test]
fn station_moving_from_a_port_to_a_vtep_is_followed_and_counted() {
    let mut sw = switch();
    let _ = sw.process_from_port(T0, P1, &mut frame_of_len(MacAddr::BROADCAST, mac(7), 60));
    assert_eq!(stats(&sw, "blue").events.fdb_moves, 0);

    let d = vxlan_datagram(42, &frame_of_len(MacAddr::BROADCAST, mac(7), 60));
    let _ = sw.process_from_underlay(T0, VTEP_C, &d);

    assert_eq!(stats(&sw, "blue").events.fdb_moves, 1);
    assert_eq!(fdb_entry(&sw, "blue", mac(7)).unwrap().kind, "vtep");
    let action = sw.process_from_port(T0, P2, &mut frame_of_len(mac(7), mac(8), 60));
    assert_eq!(
        action,
        Action::ToVtep {
            vtep: VTEP_C,
            vni: vni(42)
        }
    );
}

#[test]
fn attached_mac_is_not_moved_by_the_same_source_from_the_underlay() {
    let mut sw = switch_with_endpoint();
    let d = vxlan_datagram(42, &frame_of_len(MacAddr::BROADCAST, mac(2), 60));
    let _ = sw.process_from_underlay(T0, VTEP_B, &d);

    assert_eq!(fdb_entry(&sw, "blue", mac(2)).unwrap().kind, "port");
    assert_eq!(stats(&sw, "blue").events.fdb_moves, 0);
    let action = sw.process_from_port(T0, P2, &mut frame_of_len(mac(2), mac(8), 60));
    assert_eq!(action, Action::ToPort(P1));
}

// ===== aging =====

#[test]
fn learned_entry_is_kept_at_299s_idle_and_gone_after_300s() {
    let mut sw = switch();
    let learned_at = at_secs(10);
    let _ = sw.process_from_port(
        learned_at,
        P1,
        &mut frame_of_len(MacAddr::BROADCAST, mac(7), 60),
    );

    sw.expire(learned_at.plus_millis(299_000));
    assert!(fdb_entry(&sw, "blue", mac(7)).is_some(), "gone at 299 s");
    sw.expire(learned_at.plus_millis(299_999));
    assert!(
        fdb_entry(&sw, "blue", mac(7)).is_some(),
        "gone before 300 s"
    );

    let later = learned_at.plus_millis(300_000);
    sw.expire(later);
    assert!(fdb_entry(&sw, "blue", mac(7)).is_none(), "kept at 300 s");
    let action = sw.process_from_port(later, P2, &mut frame_of_len(mac(7), mac(8), 60));
    assert!(
        matches!(action, Action::Flood { .. }),
        "an aged-out MAC is unknown again: {action:?}"
    );
}

#[test]
fn traffic_from_a_station_keeps_its_entry_alive() {
    let mut sw = switch();
    for s in (0..=600).step_by(100) {
        let _ = sw.process_from_port(
            at_secs(s),
            P1,
            &mut frame_of_len(MacAddr::BROADCAST, mac(7), 60),
        );
        sw.expire(at_secs(s + 50));
    }
    assert!(fdb_entry(&sw, "blue", mac(7)).is_some());
}

#[test]
fn attached_entries_never_age() {
    let mut sw = switch_with_endpoint();
    let _ = sw.process_from_port(T0, P2, &mut frame_of_len(MacAddr::BROADCAST, mac(8), 60));

    sw.expire(at_secs(10_000_000));

    assert!(fdb_entry(&sw, "blue", mac(8)).is_none(), "learned one aged");
    let e = fdb_entry(&sw, "blue", mac(2)).expect("attached MAC kept");
    assert_eq!(e.kind, "port");
    assert_eq!(e.location, "c1");
    let n = neigh_entry(&sw, "blue", ip(2)).expect("attached address kept");
    assert_eq!(n.mac, mac(2).to_string());
    assert_eq!(n.source, "attach");
}

#[test]
fn aging_time_comes_from_the_switch_spec() {
    let mut sw = switch_with(spec(1024, 10_000));
    let _ = sw.process_from_port(T0, P1, &mut frame_of_len(MacAddr::BROADCAST, mac(7), 60));
    let d = vxlan_datagram(42, &arp_request(mac(20), ip(20), ip(21)));
    let _ = sw.process_from_underlay(T0, VTEP_B, &d);
    assert!(neigh_entry(&sw, "blue", ip(20)).is_some());

    sw.expire(T0.plus_millis(9_999));
    assert!(fdb_entry(&sw, "blue", mac(7)).is_some());
    assert!(neigh_entry(&sw, "blue", ip(20)).is_some());

    sw.expire(T0.plus_millis(10_000));
    assert!(fdb_entry(&sw, "blue", mac(7)).is_none());
    assert!(fdb_entry(&sw, "blue", mac(20)).is_none());
    assert!(
        neigh_entry(&sw, "blue", ip(20)).is_none(),
        "snooped neighbours age like MACs"
    );
}

// ===== size cap =====

#[test]
fn fdb_cap_bounds_random_source_macs_without_evicting_known_stations() {
    const CAP: usize = 16;
    let mut sw = Switch::new(spec(CAP, AGING_MS));
    sw.add_port(P1, "c1", BLUE, Some((mac(2), ip(2))), T0)
        .unwrap();
    sw.add_port(P2, "attacker", BLUE, None, T0).unwrap();
    sw.add_port(P3, "port3", BLUE, None, T0).unwrap();
    let statics = 1;
    // A station known before the flood of random MACs.
    let _ = sw.process_from_port(T0, P3, &mut frame_of_len(MacAddr::BROADCAST, mac(3), 60));

    let mut rng = XorShift(0x5eed_1234_abcd_0001);
    for _ in 0..1000 {
        let src = rng.unicast_mac();
        let dst = rng.unicast_mac();
        let action = sw.process_from_port(T0, P2, &mut frame_of_len(dst, src, 60));
        assert!(
            matches!(action, Action::Flood { .. }),
            "unknown unicast still flooded when the table is full: {action:?}"
        );
        assert!(fdb_entries(&sw, "blue") as usize <= CAP + statics);
    }

    assert!(fdb_entries(&sw, "blue") as usize <= CAP + statics);
    assert_eq!(fdb_entry(&sw, "blue", mac(3)).unwrap().location, "port3");
    assert_eq!(fdb_entry(&sw, "blue", mac(2)).unwrap().location, "c1");
    let to_known = sw.process_from_port(T0, P2, &mut frame_of_len(mac(3), mac(9), 60));
    assert_eq!(to_known, Action::ToPort(P3));
    let to_attached = sw.process_from_port(T0, P2, &mut frame_of_len(mac(2), mac(9), 60));
    assert_eq!(to_attached, Action::ToPort(P1));
}

// ===== flooding =====

#[test]
fn broadcast_from_a_port_floods_to_the_other_local_ports_and_the_networks_peers() {
    let mut sw = switch();
    let action = sw.process_from_port(T0, P1, &mut frame_of_len(MacAddr::BROADCAST, mac(7), 60));

    assert_eq!(
        action,
        Action::Flood {
            network: BLUE,
            except: Some(P1),
            to_peers: true
        }
    );
    let (ports, vteps) = flood_set(&sw, action);
    assert_eq!(ports, vec![P2, P3], "no green port, not the ingress port");
    assert_eq!(vteps, vec![VTEP_B, VTEP_C], "not D, a peer of green only");
    assert_eq!(sw.topology().network(BLUE).unwrap().vni(), vni(42));
    assert_eq!(stats(&sw, "blue").events.flooded, 1);
}

#[test]
fn unknown_unicast_from_a_port_floods_like_a_broadcast() {
    let mut sw = switch();
    let action = sw.process_from_port(T0, P2, &mut frame_of_len(mac(99), mac(7), 60));

    assert_eq!(
        action,
        Action::Flood {
            network: BLUE,
            except: Some(P2),
            to_peers: true
        }
    );
    assert_eq!(flood_set(&sw, action), (vec![P1, P3], vec![VTEP_B, VTEP_C]));
}

#[test]
fn multicast_from_a_port_floods_even_when_someone_used_the_address_as_source() {
    let mut sw = switch();
    let group = MacAddr([0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb]);
    let action = sw.process_from_port(T0, P1, &mut frame_of_len(group, mac(7), 60));
    assert!(matches!(action, Action::Flood { .. }));
}

#[test]
fn broadcast_from_the_underlay_floods_to_local_ports_only() {
    let mut sw = switch();
    let d = vxlan_datagram(42, &frame_of_len(MacAddr::BROADCAST, mac(20), 60));
    let action = sw.process_from_underlay(T0, VTEP_B, &d);

    assert_eq!(
        action,
        Action::Flood {
            network: BLUE,
            except: None,
            to_peers: false
        }
    );
    assert_eq!(flood_set(&sw, action), (vec![P1, P2, P3], vec![]));
}

#[test]
fn unknown_unicast_from_the_underlay_floods_to_local_ports_only() {
    let mut sw = switch();
    let d = vxlan_datagram(43, &frame_of_len(mac(99), mac(20), 60));
    let action = sw.process_from_underlay(T0, VTEP_D, &d);

    assert_eq!(
        action,
        Action::Flood {
            network: GREEN,
            except: None,
            to_peers: false
        }
    );
    assert_eq!(flood_set(&sw, action), (vec![G1, G2], vec![]));
}

#[test]
fn unicast_from_the_underlay_to_a_mac_behind_another_vtep_is_dropped_by_split_horizon() {
    let mut sw = switch();
    let from_c = vxlan_datagram(42, &frame_of_len(MacAddr::BROADCAST, mac(30), 60));
    let _ = sw.process_from_underlay(T0, VTEP_C, &from_c);

    let from_b = vxlan_datagram(42, &frame_of_len(mac(30), mac(20), 60));
    let action = sw.process_from_underlay(T0, VTEP_B, &from_b);

    assert_eq!(action, Action::Drop(DropReason::SplitHorizon));
    assert_eq!(all_drops(&sw), one_drop("split_horizon"));
    let b = sw
        .peers_info(T0)
        .into_iter()
        .find(|p| p.name == "b")
        .unwrap();
    assert_eq!(b.counters.drops.get("split_horizon"), Some(&1));
}

#[test]
fn frame_to_a_mac_behind_the_ingress_port_is_dropped_as_hairpin() {
    let mut sw = switch();
    let _ = sw.process_from_port(T0, P1, &mut frame_of_len(MacAddr::BROADCAST, mac(7), 60));

    let action = sw.process_from_port(T0, P1, &mut frame_of_len(mac(7), mac(8), 60));

    assert_eq!(action, Action::Drop(DropReason::Hairpin));
    assert_eq!(all_drops(&sw), one_drop("hairpin"));
    assert_eq!(
        sw.port_counters(P1).unwrap().drops.get(DropReason::Hairpin),
        1
    );
}

// ===== proxy-ARP =====

/// Asserts that `frame` is the ARP reply "`ip` is-at `mac`" addressed to the requester.
fn assert_arp_reply(
    frame: &[u8],
    mac_: MacAddr,
    ip_: Ipv4Addr,
    requester_mac: MacAddr,
    requester_ip: Ipv4Addr,
) {
    let eth = Frame::new_checked(frame).unwrap();
    assert_eq!(eth.dst(), requester_mac, "eth dst");
    assert_eq!(eth.src(), mac_, "eth src");
    assert_eq!(eth.ethertype(), EtherType::Arp, "ethertype");
    let p = arp::Packet::new_checked(eth.payload()).expect("Ethernet/IPv4 ARP");
    assert_eq!(
        arp::Repr::parse(&p),
        arp::Repr {
            operation: arp::Operation::Reply,
            sender_mac: mac_,
            sender_ip: ip_,
            target_mac: requester_mac,
            target_ip: requester_ip,
        }
    );
    // htype, ptype, hlen, plen, byte for byte.
    assert_eq!(&eth.payload()[..6], &[0x00, 0x01, 0x08, 0x00, 6, 4]);
}

#[test]
fn arp_request_for_an_attached_endpoint_is_answered_in_place_on_the_asking_port() {
    let mut sw = switch_with_endpoint();
    let mut frame = arp_request(mac(3), ip(3), ip(2));
    let len = frame.len();

    let action = sw.process_from_port(T0, P2, &mut frame);

    assert_eq!(replied(action), Some(P2));
    assert_eq!(frame.len(), len);
    assert_arp_reply(&frame, mac(2), ip(2), mac(3), ip(3));
    let s = stats(&sw, "blue");
    assert_eq!(s.events.proxy_arp_replies, 1);
    assert_eq!(s.events.flooded, 0, "the request went nowhere else");
}

#[test]
fn arp_reply_keeps_the_padding_of_a_minimum_size_request() {
    let mut sw = switch_with_endpoint();
    let mut frame = arp_request(mac(3), ip(3), ip(2));
    frame.resize(60, 0);

    let action = sw.process_from_port(T0, P2, &mut frame);

    assert_eq!(replied(action), Some(P2));
    assert_eq!(frame.len(), 60);
    assert_arp_reply(&frame, mac(2), ip(2), mac(3), ip(3));
    assert!(frame[42..].iter().all(|b| *b == 0));
}

#[test]
fn remote_endpoint_learned_from_a_decapsulated_arp_reply_is_answered_locally() {
    let mut sw = switch_with_endpoint();
    let reply = arp_reply(mac(20), ip(20), mac(2), ip(2));
    let action = sw.process_from_underlay(T0, VTEP_B, &vxlan_datagram(42, &reply));
    assert_eq!(action, Action::ToPort(P1));
    assert_eq!(neigh_entry(&sw, "blue", ip(20)).unwrap().source, "arp");

    let mut req = arp_request(mac(3), ip(3), ip(20));
    assert_eq!(replied(sw.process_from_port(T0, P2, &mut req)), Some(P2));
    assert_arp_reply(&req, mac(20), ip(20), mac(3), ip(3));
}

#[test]
fn remote_endpoint_learned_from_a_decapsulated_garp_is_answered_locally() {
    let mut sw = switch_with_endpoint();
    let mut announce = [0u8; garp::FRAME_LEN];
    garp::build(&mut announce, mac(20), ip(20));
    let _ = sw.process_from_underlay(T0, VTEP_B, &vxlan_datagram(42, &announce));

    let mut req = arp_request(mac(3), ip(3), ip(20));
    assert_eq!(replied(sw.process_from_port(T0, P2, &mut req)), Some(P2));
    assert_arp_reply(&req, mac(20), ip(20), mac(3), ip(3));
}

#[test]
fn remote_endpoint_learned_from_decapsulated_ipv4_is_answered_locally() {
    let mut sw = switch_with_endpoint();
    let ping = ipv4_frame(mac(20), mac(2), ip(20), ip(2), 64);
    let action = sw.process_from_underlay(T0, VTEP_B, &vxlan_datagram(42, &ping));
    assert_eq!(action, Action::ToPort(P1));
    let n = neigh_entry(&sw, "blue", ip(20)).unwrap();
    assert_eq!(
        (n.mac.as_str(), n.source.as_str()),
        ("02:42:0a:00:09:14", "decap")
    );

    let mut req = arp_request(mac(3), ip(3), ip(20));
    assert_eq!(replied(sw.process_from_port(T0, P2, &mut req)), Some(P2));
    assert_arp_reply(&req, mac(20), ip(20), mac(3), ip(3));
}

#[test]
fn decapsulated_ipv4_from_outside_the_subnet_does_not_teach_a_neighbour() {
    let mut sw = switch_with_endpoint();
    let router = mac(1);
    let from_internet = ipv4_frame(router, mac(2), Ipv4Addr::new(8, 8, 8, 8), ip(2), 64);
    let _ = sw.process_from_underlay(T0, VTEP_B, &vxlan_datagram(42, &from_internet));
    let from_bcast = ipv4_frame(mac(21), mac(2), ip(255), ip(2), 64);
    let _ = sw.process_from_underlay(T0, VTEP_B, &vxlan_datagram(42, &from_bcast));

    let ips: Vec<String> = sw.neigh_info(T0).into_iter().map(|n| n.ip).collect();
    assert_eq!(ips, vec!["10.0.9.2"]);
}

#[test]
fn arp_request_for_an_unknown_address_is_flooded_to_ports_and_peers() {
    let mut sw = switch_with_endpoint();
    let mut req = arp_request(mac(3), ip(3), ip(77));
    let original = req.clone();

    let action = sw.process_from_port(T0, P2, &mut req);

    assert_eq!(flood_set(&sw, action), (vec![P1, P3], vec![VTEP_B, VTEP_C]));
    assert_eq!(req, original, "a flooded request is not rewritten");
    assert_eq!(stats(&sw, "blue").events.proxy_arp_replies, 0);
}

#[test]
fn gratuitous_arp_is_flooded_not_answered() {
    let mut sw = switch_with_endpoint();
    let mut announce = [0u8; garp::FRAME_LEN];
    garp::build(&mut announce, mac(7), ip(7));
    let original = announce;

    // A station the switch does not know announcing itself (one the topology holds goes to
    // the peers only: tests/multicast_core.rs).
    let action = sw.process_from_port(T0, P2, &mut announce);

    assert_eq!(flood_set(&sw, action), (vec![P1, P3], vec![VTEP_B, VTEP_C]));
    assert_eq!(announce, original);
    assert_eq!(stats(&sw, "blue").events.proxy_arp_replies, 0);
}

#[test]
fn arp_probe_for_the_requesters_own_address_is_not_answered() {
    // RFC 5227 §2.1.1 probe: sender IP 0.0.0.0, target IP the address being checked.
    let mut sw = switch_with_endpoint();
    let mut probe = arp_request(mac(2), Ipv4Addr::UNSPECIFIED, ip(2));

    let action = sw.process_from_port(T0, P1, &mut probe);

    assert!(matches!(action, Action::Flood { .. }), "{action:?}");
    assert_eq!(stats(&sw, "blue").events.proxy_arp_replies, 0);
}

#[test]
fn arp_request_from_the_underlay_is_left_to_the_owner_to_answer() {
    let mut sw = switch_with_endpoint();
    let req = arp_request(mac(20), ip(20), ip(2));

    let action = sw.process_from_underlay(T0, VTEP_B, &vxlan_datagram(42, &req));

    assert_eq!(flood_set(&sw, action), (vec![P1, P2, P3], vec![]));
    assert_eq!(stats(&sw, "blue").events.proxy_arp_replies, 0);
}

#[test]
fn snooped_arp_cannot_take_over_an_attached_address() {
    let mut sw = switch_with_endpoint();
    let spoof = arp_reply(mac(66), ip(2), mac(3), ip(3));
    let _ = sw.process_from_port(T0, P2, &mut spoof.clone());
    let _ = sw.process_from_underlay(T0, VTEP_B, &vxlan_datagram(42, &spoof));

    let mut req = arp_request(mac(3), ip(3), ip(2));
    assert_eq!(replied(sw.process_from_port(T0, P3, &mut req)), Some(P3));
    assert_arp_reply(&req, mac(2), ip(2), mac(3), ip(3));
}

// ===== GARP at attach =====

#[test]
fn garp_floods_to_peers_and_teaches_the_receiving_switch() {
    let mut frame = [0u8; 64];
    let len = garp::build(&mut frame, mac(2), ip(2));
    assert_eq!(len, garp::FRAME_LEN);
    let mut announce = frame[..len].to_vec();
    {
        let eth = Frame::new_checked(&announce[..]).unwrap();
        assert_eq!(eth.dst(), MacAddr::BROADCAST);
        assert_eq!(eth.src(), mac(2));
        let p = arp::Packet::new_checked(eth.payload()).unwrap();
        assert_eq!(p.operation(), arp::Operation::Request);
        assert!(p.is_gratuitous());
        assert_eq!((p.sender_mac(), p.sender_ip()), (mac(2), ip(2)));
    }

    let mut here = switch_with_endpoint();
    let action = here.process_from_port(T0, P1, &mut announce);
    let (_, vteps) = flood_set(&here, action);
    assert!(vteps.contains(&VTEP_B));

    // The receiving host: its peer B is "us" (192.0.2.1 is how B knows this host).
    let here_addr = VtepAddr(Ipv4Addr::new(192, 0, 2, 1));
    let mut there = Switch::new(SwitchSpec {
        networks: vec![NetworkSpec {
            name: "blue".into(),
            vni: vni(42),
            subnet: "10.0.9.0/24".parse().unwrap(),
            mtu: MTU as u32,
            peers: vec![("a".into(), here_addr)],
            encrypted: false,
        }],
        peers: vec![("a".into(), here_addr)],
        fdb_max_entries: 1024,
        aging_ms: AGING_MS,
    });
    there.add_port(P1, "cb", BLUE, None, T0).unwrap();
    let got = there.process_from_underlay(T0, here_addr, &vxlan_datagram(42, &announce));

    assert_eq!(flood_set(&there, got), (vec![P1], vec![]));
    let f = fdb_entry(&there, "blue", mac(2)).unwrap();
    assert_eq!(
        (f.kind.as_str(), f.location.as_str()),
        ("vtep", "192.0.2.1")
    );
    let n = neigh_entry(&there, "blue", ip(2)).unwrap();
    assert_eq!(
        (n.mac.as_str(), n.source.as_str()),
        ("02:42:0a:00:09:02", "arp")
    );
}

// ===== isolation between networks =====

/// Blue and green both attach 10.0.9.2, with different MACs.
fn switch_with_same_ip_in_two_networks() -> Switch {
    let mut sw = Switch::new(spec(1024, AGING_MS));
    sw.add_port(P1, "blue-c1", BLUE, Some((mac(2), ip(2))), T0)
        .unwrap();
    sw.add_port(P2, "port2", BLUE, None, T0).unwrap();
    sw.add_port(G1, "green-c1", GREEN, Some((mac(102), ip(2))), T0)
        .unwrap();
    sw.add_port(G2, "port12", GREEN, None, T0).unwrap();
    sw
}

#[test]
fn same_ip_in_two_networks_is_answered_with_each_networks_own_mac() {
    let mut sw = switch_with_same_ip_in_two_networks();

    let mut in_blue = arp_request(mac(3), ip(3), ip(2));
    assert_eq!(
        replied(sw.process_from_port(T0, P2, &mut in_blue)),
        Some(P2)
    );
    assert_arp_reply(&in_blue, mac(2), ip(2), mac(3), ip(3));

    let mut in_green = arp_request(mac(3), ip(3), ip(2));
    assert_eq!(
        replied(sw.process_from_port(T0, G2, &mut in_green)),
        Some(G2)
    );
    assert_arp_reply(&in_green, mac(102), ip(2), mac(3), ip(3));
}

#[test]
fn datagram_with_vni_43_never_reaches_a_network_42_port() {
    let mut sw = switch_with_same_ip_in_two_networks();
    let blue_ports = [P1, P2, P3];
    let frames = [
        frame_of_len(MacAddr::BROADCAST, mac(50), 60),
        frame_of_len(mac(2), mac(50), 60), // blue's endpoint MAC
        frame_of_len(mac(102), mac(50), 60),
        ipv4_frame(mac(50), mac(2), ip(50), ip(2), 32),
        arp_request(mac(50), ip(50), ip(2)),
        frame_of_len(mac(99), mac(50), 60),
    ];
    for frame in &frames {
        let action = sw.process_from_underlay(T0, VTEP_B, &vxlan_datagram(43, frame));
        match action {
            Action::ToPort(p) => {
                assert_eq!(sw.topology().port(p).unwrap().vni, GREEN, "{action:?}");
                assert!(!blue_ports.contains(&p));
            }
            Action::Flood { network, .. } => {
                assert_eq!(network, GREEN);
                let (ports, _) = flood_set(&sw, action);
                assert!(ports.iter().all(|p| !blue_ports.contains(p)), "{ports:?}");
            }
            Action::Drop(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(fdb_entry(&sw, "blue", mac(50)).is_none());
    assert!(neigh_entry(&sw, "blue", ip(50)).is_none());
    assert_eq!(stats(&sw, "blue").counters.rx_packets, 0);
    assert_eq!(
        neigh_entry(&sw, "green", ip(2)).unwrap().mac,
        mac(102).to_string()
    );
}

#[test]
fn datagram_with_an_unconfigured_vni_is_dropped_and_counted() {
    let mut sw = switch();
    let d = vxlan_datagram(99, &frame_of_len(MacAddr::BROADCAST, mac(20), 60));

    assert_eq!(
        sw.process_from_underlay(T0, VTEP_B, &d),
        Action::Drop(DropReason::UnknownVni)
    );
    assert_eq!(sw.underlay_drops().to_map(), one_drop("unknown_vni"));
    assert_eq!(all_drops(&sw), one_drop("unknown_vni"));
    assert!(sw.fdb_info(T0).is_empty(), "nothing learned from it");
}

// ===== drop reasons: each moves exactly its named counter =====

#[test]
fn datagram_shorter_than_a_vxlan_header_is_dropped_vxlan_truncated() {
    let mut sw = switch();
    for len in [0, 1, 7] {
        let action = sw.process_from_underlay(T0, VTEP_B, &vec![0x08; len]);
        assert_eq!(action, Action::Drop(DropReason::VxlanTruncated));
    }
    assert_eq!(
        all_drops(&sw),
        BTreeMap::from([("vxlan_truncated".into(), 3)])
    );
}

#[test]
fn vxlan_without_the_i_flag_is_dropped_vxlan_no_vni_flag() {
    let mut sw = switch();
    let mut d = vxlan_datagram(42, &frame_of_len(MacAddr::BROADCAST, mac(20), 60));
    d[0] = 0x00;
    assert_eq!(
        sw.process_from_underlay(T0, VTEP_B, &d),
        Action::Drop(DropReason::VxlanNoVniFlag)
    );
    assert_eq!(all_drops(&sw), one_drop("vxlan_no_vni_flag"));
}

#[test]
fn reserved_vxlan_bits_are_ignored_on_receipt() {
    // RFC 7348 §5: reserved fields "MUST be ... ignored on receipt".
    let mut sw = switch();
    let mut d = vxlan_datagram(42, &frame_of_len(MacAddr::BROADCAST, mac(20), 60));
    d[0] = 0xff;
    d[1..4].fill(0xff);
    d[7] = 0xff;
    assert!(matches!(
        sw.process_from_underlay(T0, VTEP_B, &d),
        Action::Flood { .. }
    ));
}

#[test]
fn valid_vxlan_from_a_non_peer_is_dropped_unknown_peer() {
    let mut sw = switch();
    let d = vxlan_datagram(42, &frame_of_len(MacAddr::BROADCAST, mac(20), 60));
    assert_eq!(
        sw.process_from_underlay(T0, NOT_A_PEER, &d),
        Action::Drop(DropReason::UnknownPeer)
    );
    // Checked before the header is even read.
    assert_eq!(
        sw.process_from_underlay(T0, NOT_A_PEER, &[]),
        Action::Drop(DropReason::UnknownPeer)
    );
    assert_eq!(all_drops(&sw), BTreeMap::from([("unknown_peer".into(), 2)]));
    assert!(sw.fdb_info(T0).is_empty());
}

#[test]
fn vxlan_from_a_peer_of_another_network_is_dropped_peer_not_in_network() {
    let mut sw = switch();
    // D is a peer of green only.
    let d = vxlan_datagram(42, &frame_of_len(MacAddr::BROADCAST, mac(20), 60));
    assert_eq!(
        sw.process_from_underlay(T0, VTEP_D, &d),
        Action::Drop(DropReason::PeerNotInNetwork)
    );
    assert_eq!(all_drops(&sw), one_drop("peer_not_in_network"));
    assert!(sw.fdb_info(T0).is_empty());
}

#[test]
fn inner_frame_shorter_than_an_ethernet_header_is_dropped_frame_truncated() {
    let mut sw = switch();
    let d = vxlan_datagram(42, &[0xff; 5]);
    assert_eq!(
        sw.process_from_underlay(T0, VTEP_B, &d),
        Action::Drop(DropReason::FrameTruncated)
    );
    assert_eq!(all_drops(&sw), one_drop("frame_truncated"));
    let b = sw
        .peers_info(T0)
        .into_iter()
        .find(|p| p.name == "b")
        .unwrap();
    assert_eq!(b.counters.drops.get("frame_truncated"), Some(&1));

    let mut short = vec![0xff; 13];
    assert_eq!(
        sw.process_from_port(T0, P1, &mut short),
        Action::Drop(DropReason::FrameTruncated)
    );
    assert_eq!(
        all_drops(&sw),
        BTreeMap::from([("frame_truncated".into(), 2)])
    );
}

#[test]
fn multicast_or_zero_source_mac_is_dropped_bad_source_mac() {
    let mut sw = switch();
    let multicast = MacAddr([0x01, 0x00, 0x5e, 0x00, 0x00, 0x01]);
    for src in [multicast, MacAddr::ZERO, MacAddr::BROADCAST] {
        let mut f = frame_of_len(mac(9), src, 60);
        assert_eq!(
            sw.process_from_port(T0, P1, &mut f),
            Action::Drop(DropReason::BadSourceMac),
            "from a port, src {src}"
        );
        assert_eq!(
            sw.process_from_underlay(T0, VTEP_B, &vxlan_datagram(42, &f)),
            Action::Drop(DropReason::BadSourceMac),
            "from the underlay, src {src}"
        );
    }
    assert_eq!(
        all_drops(&sw),
        BTreeMap::from([("bad_source_mac".into(), 6)])
    );
    assert!(sw.fdb_info(T0).is_empty(), "never learned");
}

#[test]
fn frame_larger_than_mtu_plus_ethernet_header_is_dropped_frame_too_big() {
    let mut sw = switch();
    let largest = frame_of_len(MacAddr::BROADCAST, mac(7), MTU + 14);
    let too_big = frame_of_len(MacAddr::BROADCAST, mac(7), MTU + 15);

    assert!(matches!(
        sw.process_from_port(T0, P1, &mut largest.clone()),
        Action::Flood { .. }
    ));
    assert_eq!(
        sw.process_from_port(T0, P1, &mut too_big.clone()),
        Action::Drop(DropReason::FrameTooBig)
    );
    assert!(matches!(
        sw.process_from_underlay(T0, VTEP_B, &vxlan_datagram(42, &largest)),
        Action::Flood { .. }
    ));
    assert_eq!(
        sw.process_from_underlay(T0, VTEP_B, &vxlan_datagram(42, &too_big)),
        Action::Drop(DropReason::FrameTooBig)
    );
    assert_eq!(
        all_drops(&sw),
        BTreeMap::from([("frame_too_big".into(), 2)])
    );
}

/// A container's TSO super-frame (up to 64 KB, for the kernel to segment on the way out,
/// crate::offload::tunnel) is decided on its headers and admitted by its longest segment.
#[test]
fn a_super_frame_is_admitted_by_its_longest_segment() {
    let mut sw = switch();
    let d = vxlan_datagram(42, &frame_of_len(MacAddr::BROADCAST, mac(20), 60));
    let _ = sw.process_from_underlay(T0, VTEP_B, &d);
    let super_frame = frame_of_len(mac(20), mac(7), 60_000);
    let d = sw.decide_super_frame(T0, P1, &super_frame, MTU + 14);
    assert_eq!(
        d.action,
        Action::ToVtep {
            vtep: VTEP_B,
            vni: vni(42)
        }
    );
    assert_eq!(d.len, 60_000, "counted as the bytes it carries");
    assert_eq!(
        sw.decide_super_frame(T0, P1, &super_frame, MTU + 15).action,
        Action::Drop(DropReason::FrameTooBig),
        "segments larger than the network's MTU"
    );
    // The same frame decided as one frame is too big for the network.
    assert_eq!(
        sw.process_from_port(T0, P1, &mut super_frame.clone()),
        Action::Drop(DropReason::FrameTooBig)
    );
}

#[test]
fn one_vlan_tag_is_allowed_on_top_of_the_mtu() {
    let mut sw = switch();
    let mut tagged = frame_of_len(MacAddr::BROADCAST, mac(7), MTU + 18);
    tagged[12..14].copy_from_slice(&[0x81, 0x00]);
    assert!(matches!(
        sw.process_from_port(T0, P1, &mut tagged.clone()),
        Action::Flood { .. }
    ));
    tagged.push(0);
    assert_eq!(
        sw.process_from_port(T0, P1, &mut tagged),
        Action::Drop(DropReason::FrameTooBig)
    );
}

#[test]
fn frame_from_a_port_that_is_not_attached_is_dropped_unknown_port() {
    let mut sw = switch();
    let mut f = frame_of_len(MacAddr::BROADCAST, mac(7), 60);
    assert_eq!(
        sw.process_from_port(T0, PortId(77), &mut f.clone()),
        Action::Drop(DropReason::UnknownPort)
    );
    sw.remove_port(P3).unwrap();
    assert_eq!(
        sw.process_from_port(T0, P3, &mut f),
        Action::Drop(DropReason::UnknownPort)
    );
    assert_eq!(
        sw.underlay_drops().to_map(),
        BTreeMap::from([("unknown_port".into(), 2)])
    );
    assert_eq!(all_drops(&sw), BTreeMap::from([("unknown_port".into(), 2)]));
    assert!(sw.fdb_info(T0).is_empty());
}

#[test]
fn detaching_a_port_forgets_the_stations_behind_it() {
    let mut sw = switch_with_endpoint();
    let _ = sw.process_from_port(T0, P3, &mut frame_of_len(MacAddr::BROADCAST, mac(7), 60));
    sw.remove_port(P1).unwrap();
    sw.remove_port(P3).unwrap();

    assert!(sw.fdb_info(T0).is_empty());
    assert!(neigh_entry(&sw, "blue", ip(2)).is_none());
    let action = sw.process_from_port(T0, P2, &mut frame_of_len(mac(7), mac(8), 60));
    assert_eq!(flood_set(&sw, action), (vec![], vec![VTEP_B, VTEP_C]));
}

#[test]
fn attaching_and_detaching_other_ports_keeps_what_was_learned_at_the_rest() {
    let mut sw = switch_with_endpoint();
    let _ = sw.process_from_port(T0, P3, &mut frame_of_len(MacAddr::BROADCAST, mac(7), 60));
    let _ = sw.process_from_port(T0, P2, &mut frame_of_len(MacAddr::BROADCAST, mac(8), 60));
    let p4 = PortId(4);
    sw.add_port(p4, "port4", BLUE, None, T0).unwrap();
    assert!(
        fdb_entry(&sw, "blue", mac(7)).is_some(),
        "an attach forgot port 3's station"
    );
    sw.remove_port(P2).unwrap();
    assert!(
        fdb_entry(&sw, "blue", mac(8)).is_none(),
        "port 2's station outlived it"
    );
    assert!(
        fdb_entry(&sw, "blue", mac(7)).is_some(),
        "a detach forgot port 3's station"
    );
    let action = sw.process_from_port(T0, p4, &mut frame_of_len(mac(7), mac(9), 60));
    assert_eq!(action, Action::ToPort(P3));
}

// ===== two switches over an in-memory underlay =====

const HOST_A: usize = 0;
const HOST_B: usize = 1;
/// Largest UDP payload the in-memory link carries: 1500-byte underlay MTU minus IPv4 and UDP.
const LINK_MAX_DATAGRAM: usize = 1500 - 20 - 8;

struct Host {
    sw: Switch,
    addr: VtepAddr,
    inbox: HashMap<PortId, Vec<Vec<u8>>>,
}

/// Two hosts with one network each (blue, VNI 42, MTU 1450), peers of each other, joined by a
/// link that loses datagrams larger than `LINK_MAX_DATAGRAM`. Carries out every `Action` the
/// switches return, the way the dataplane does.
struct Testbed {
    hosts: Vec<Host>,
    now: Timestamp,
    datagrams_delivered: u64,
    datagrams_lost_too_big: u64,
}

impl Testbed {
    fn new(network_mtu: u32) -> Testbed {
        let addrs = [
            VtepAddr(Ipv4Addr::new(192, 0, 2, 1)),
            VtepAddr(Ipv4Addr::new(192, 0, 2, 2)),
        ];
        let hosts = (0..2)
            .map(|i| {
                let peer = ("other".to_string(), addrs[1 - i]);
                Host {
                    sw: Switch::new(SwitchSpec {
                        networks: vec![NetworkSpec {
                            name: "blue".into(),
                            vni: vni(42),
                            subnet: "10.0.9.0/24".parse().unwrap(),
                            mtu: network_mtu,
                            peers: vec![peer.clone()],
                            encrypted: false,
                        }],
                        peers: vec![peer],
                        fdb_max_entries: 1024,
                        aging_ms: AGING_MS,
                    }),
                    addr: addrs[i],
                    inbox: HashMap::new(),
                }
            })
            .collect();
        Testbed {
            hosts,
            now: T0,
            datagrams_delivered: 0,
            datagrams_lost_too_big: 0,
        }
    }

    /// Attaches a container and announces it with a GARP, as attach does.
    fn attach(&mut self, host: usize, port: PortId, m: MacAddr, a: Ipv4Addr) {
        self.hosts[host]
            .sw
            .add_port(port, &format!("c{port}"), BLUE, Some((m, a)), self.now)
            .unwrap();
        let mut announce = [0u8; garp::FRAME_LEN];
        garp::build(&mut announce, m, a);
        let _ = self.send_from_port(host, port, &announce);
    }

    fn advance_secs(&mut self, s: u64) {
        self.now = self.now.plus_millis(s * 1000);
        for h in &mut self.hosts {
            h.sw.expire(self.now);
        }
    }

    /// A container writes `frame`; returns what its switch decided.
    fn send_from_port(&mut self, host: usize, port: PortId, frame: &[u8]) -> Action {
        let mut buf = frame.to_vec();
        let action = self.hosts[host]
            .sw
            .process_from_port(self.now, port, &mut buf);
        self.execute(host, action, &buf);
        action
    }

    fn execute(&mut self, host: usize, action: Action, frame: &[u8]) {
        match action {
            // The in-memory hosts have no DNS forwarder.
            Action::Drop(_) | Action::Upstream { .. } | Action::Probe { .. } => {}
            Action::ToPort(p) | Action::Reply { port: p, .. } => self.deliver(host, p, frame),
            Action::ToVtep { vtep, vni } => self.transmit(host, vtep, vni, frame),
            Action::Flood { network, .. } | Action::FloodScoped { network, .. } => {
                let (except, to_peers, scope) = match action {
                    Action::FloodScoped {
                        except,
                        to_peers,
                        scope,
                        ..
                    } => (except, to_peers, scope),
                    Action::Flood {
                        except, to_peers, ..
                    } => (except, to_peers, vswitch::switch::multicast::Scope::All),
                    _ => unreachable!(),
                };
                let outs: Vec<Output> = self.hosts[host]
                    .sw
                    .topology()
                    .flood_set_scoped(network, except, to_peers, scope)
                    .collect();
                for out in outs {
                    match out {
                        Output::Port(p) => self.deliver(host, p, frame),
                        Output::Vtep(v) => self.transmit(host, v, network, frame),
                    }
                }
            }
        }
    }

    fn deliver(&mut self, host: usize, port: PortId, frame: &[u8]) {
        let h = &mut self.hosts[host];
        h.sw.note_port_tx(port, frame.len());
        h.inbox.entry(port).or_default().push(frame.to_vec());
    }

    fn transmit(&mut self, from: usize, to: VtepAddr, vni: Vni, frame: &[u8]) {
        let datagram = vxlan_datagram(vni.get(), frame);
        self.hosts[from].sw.note_vtep_tx(vni, to, datagram.len());
        if datagram.len() > LINK_MAX_DATAGRAM {
            self.datagrams_lost_too_big += 1;
            return;
        }
        self.datagrams_delivered += 1;
        let src = self.hosts[from].addr;
        let dst = self
            .hosts
            .iter()
            .position(|h| h.addr == to)
            .expect("every peer is a host of the testbed");
        let action = self.hosts[dst]
            .sw
            .process_from_underlay(self.now, src, &datagram);
        self.execute(dst, action, &datagram[vxlan::HEADER_LEN..]);
    }

    fn take_inbox(&mut self, host: usize, port: PortId) -> Vec<Vec<u8>> {
        self.hosts[host].inbox.remove(&port).unwrap_or_default()
    }

    fn clear_inboxes(&mut self) {
        for h in &mut self.hosts {
            h.inbox.clear();
        }
    }
}

const MAC_A: MacAddr = MacAddr([0x02, 0x42, 0x0a, 0x00, 0x09, 0x02]);
const MAC_B: MacAddr = MacAddr([0x02, 0x42, 0x0a, 0x00, 0x09, 0x03]);
const IP_A: Ipv4Addr = Ipv4Addr::new(10, 0, 9, 2);
const IP_B: Ipv4Addr = Ipv4Addr::new(10, 0, 9, 3);

fn two_hosts(network_mtu: u32) -> Testbed {
    let mut tb = Testbed::new(network_mtu);
    tb.attach(HOST_A, P1, MAC_A, IP_A);
    tb.attach(HOST_B, P1, MAC_B, IP_B);
    tb.clear_inboxes();
    tb
}

#[test]
fn attach_announcements_cross_the_underlay_and_teach_the_other_host() {
    let mut tb = Testbed::new(MTU as u32);
    tb.attach(HOST_A, P1, MAC_A, IP_A);
    assert_eq!(tb.datagrams_delivered, 1);
    tb.attach(HOST_B, P1, MAC_B, IP_B);
    assert_eq!(tb.datagrams_delivered, 2);
    // B's GARP was flooded to A's container.
    assert_eq!(tb.take_inbox(HOST_A, P1).len(), 1);

    let a = &tb.hosts[HOST_A].sw;
    assert_eq!(fdb_entry(a, "blue", MAC_B).unwrap().location, "192.0.2.2");
    assert_eq!(neigh_entry(a, "blue", IP_B).unwrap().mac, MAC_B.to_string());
    let peers = a.peers_info(tb.now);
    assert_eq!(peers[0].counters.rx_packets, 1);
    assert_eq!(peers[0].counters.tx_packets, 1);
    assert_eq!(peers[0].last_seen_secs, Some(0));
}

#[test]
fn two_hosts_resolve_by_local_proxy_arp_and_exchange_frames_unchanged() {
    let mut tb = two_hosts(MTU as u32);

    // A's container asks for B's address: answered on host A, nothing crosses the underlay.
    let before = tb.datagrams_delivered;
    let action = tb.send_from_port(HOST_A, P1, &arp_request(MAC_A, IP_A, IP_B));
    assert_eq!(replied(action), Some(P1));
    assert_eq!(tb.datagrams_delivered, before, "no datagram for the ARP");
    let replies = tb.take_inbox(HOST_A, P1);
    assert_eq!(replies.len(), 1);
    assert_arp_reply(&replies[0], MAC_B, IP_B, MAC_A, IP_A);
    assert!(tb.take_inbox(HOST_B, P1).is_empty());

    // Echo request A → B and reply B → A arrive byte for byte.
    let request = ipv4_frame(MAC_A, MAC_B, IP_A, IP_B, 56);
    let action = tb.send_from_port(HOST_A, P1, &request);
    assert_eq!(
        action,
        Action::ToVtep {
            vtep: tb.hosts[HOST_B].addr,
            vni: vni(42)
        }
    );
    assert_eq!(tb.take_inbox(HOST_B, P1), vec![request]);

    let reply = ipv4_frame(MAC_B, MAC_A, IP_B, IP_A, 56);
    let action = tb.send_from_port(HOST_B, P1, &reply);
    assert!(matches!(action, Action::ToVtep { .. }), "{action:?}");
    assert_eq!(tb.take_inbox(HOST_A, P1), vec![reply]);
    assert_eq!(tb.datagrams_delivered, before + 2);
    assert_eq!(tb.datagrams_lost_too_big, 0);

    for h in &tb.hosts {
        assert!(all_drops(&h.sw).is_empty(), "{:?}", all_drops(&h.sw));
    }
}

#[test]
fn largest_frame_within_the_network_mtu_crosses_the_link() {
    let mut tb = two_hosts(MTU as u32);
    // 14 + 20 + payload == MTU + 14: the datagram is exactly LINK_MAX_DATAGRAM.
    let frame = ipv4_frame(MAC_A, MAC_B, IP_A, IP_B, MTU - 20);
    assert_eq!(vxlan::HEADER_LEN + frame.len(), LINK_MAX_DATAGRAM);

    let action = tb.send_from_port(HOST_A, P1, &frame);

    assert!(matches!(action, Action::ToVtep { .. }), "{action:?}");
    assert_eq!(tb.take_inbox(HOST_B, P1), vec![frame]);
    assert_eq!(tb.datagrams_lost_too_big, 0);
}

#[test]
fn frame_over_the_network_mtu_is_dropped_by_the_sender_before_the_link() {
    let mut tb = two_hosts(MTU as u32);
    let before = tb.datagrams_delivered;
    let frame = ipv4_frame(MAC_A, MAC_B, IP_A, IP_B, MTU - 20 + 1);

    let action = tb.send_from_port(HOST_A, P1, &frame);

    assert_eq!(action, Action::Drop(DropReason::FrameTooBig));
    assert_eq!(all_drops(&tb.hosts[HOST_A].sw), one_drop("frame_too_big"));
    assert_eq!(tb.datagrams_delivered, before);
    assert_eq!(tb.datagrams_lost_too_big, 0, "never reached the link");
    assert!(tb.take_inbox(HOST_B, P1).is_empty());
}

#[test]
fn link_loses_datagrams_over_its_mtu_when_the_network_mtu_is_set_too_high() {
    // The control case for the test above: with a network MTU the underlay cannot carry, the
    // switch sends and the link loses the datagram, so the switch's check is what saved it.
    let mut tb = two_hosts(1500);
    let frame = ipv4_frame(MAC_A, MAC_B, IP_A, IP_B, MTU - 20 + 1);

    let action = tb.send_from_port(HOST_A, P1, &frame);

    assert!(matches!(action, Action::ToVtep { .. }), "{action:?}");
    assert_eq!(tb.datagrams_lost_too_big, 1);
    assert!(tb.take_inbox(HOST_B, P1).is_empty());
}

#[test]
fn remote_station_ages_out_then_is_reached_by_flooding_and_relearned() {
    let mut tb = two_hosts(MTU as u32);
    tb.advance_secs(301);
    assert!(fdb_entry(&tb.hosts[HOST_A].sw, "blue", MAC_B).is_none());
    assert!(
        fdb_entry(&tb.hosts[HOST_B].sw, "blue", MAC_B).is_some(),
        "attached: static"
    );

    let request = ipv4_frame(MAC_A, MAC_B, IP_A, IP_B, 56);
    let action = tb.send_from_port(HOST_A, P1, &request);
    assert!(matches!(action, Action::Flood { to_peers: true, .. }));
    assert_eq!(tb.take_inbox(HOST_B, P1), vec![request]);

    let reply = ipv4_frame(MAC_B, MAC_A, IP_B, IP_A, 56);
    let action = tb.send_from_port(HOST_B, P1, &reply);
    assert!(matches!(action, Action::ToVtep { .. }), "B learned A again");
    assert_eq!(tb.take_inbox(HOST_A, P1), vec![reply]);
    assert!(fdb_entry(&tb.hosts[HOST_A].sw, "blue", MAC_B).is_some());
}

// ===== robustness =====

#[test]
fn twenty_thousand_random_inputs_never_panic_and_are_all_counted() {
    const N: u64 = 20_000;
    let mut sw = switch_with_same_ip_in_two_networks();
    let mut rng = XorShift(0x0123_4567_89ab_cdef);
    let mut now = T0;
    let peers = [VTEP_B, VTEP_C, VTEP_D, NOT_A_PEER];
    // Every input's outcome, by kind: a drop by reason, or where it went.
    let mut dropped: BTreeMap<String, u64> = BTreeMap::new();
    let (mut to_port, mut to_vtep, mut flooded, mut replied, mut upstream) = (0, 0, 0, 0, 0u64);
    let mut tally = |a: &Action| match a {
        Action::Drop(r) => *dropped.entry(r.name().to_string()).or_default() += 1,
        Action::ToPort(_) => to_port += 1,
        Action::ToVtep { .. } => to_vtep += 1,
        Action::Flood { .. } | Action::FloodScoped { .. } => flooded += 1,
        Action::Reply { .. } => replied += 1,
        Action::Upstream { .. } => upstream += 1,
        Action::Probe { .. } => replied += 1,
    };

    for i in 0..N {
        let len = (rng.next() % 1600) as usize;
        let mut d = rng.bytes(len);
        // Give a quarter of them a valid header for a configured VNI so they reach the networks.
        if i % 4 == 0 && d.len() >= vxlan::HEADER_LEN {
            vxlan::emit(&mut d, 42 + (rng.next() % 2) as u32);
        }
        let src = peers[(rng.next() % 4) as usize];
        let action = sw.process_from_underlay(now, src, &d);
        assert!(
            !matches!(action, Action::Reply { .. } | Action::ToVtep { .. }),
            "underlay traffic never goes back out: {action:?}"
        );
        tally(&action);

        let len = (rng.next() % 1600) as usize;
        let mut f = rng.bytes(len);
        let port = [P1, P2, G1, G2, PortId(999)][(rng.next() % 5) as usize];
        let before = f.clone();
        let action = sw.process_from_port(now, port, &mut f);
        match action {
            Action::Reply { port: p, .. } => {
                assert_eq!(p, port);
                let eth = Frame::new_checked(&f[..]).unwrap();
                let p = arp::Packet::new_checked(eth.payload()).unwrap();
                assert_eq!(p.operation(), arp::Operation::Reply);
            }
            _ => assert_eq!(f, before, "only a proxy-ARP reply rewrites the frame"),
        }
        tally(&action);

        now = now.plus_millis(10);
        if i % 1000 == 0 {
            sw.expire(now);
        }
    }

    assert_eq!(sw.underlay.rx_packets, N);
    let port_rx: u64 = [P1, P2, G1, G2]
        .iter()
        .filter_map(|p| sw.port_counters(*p))
        .map(|c| c.rx_packets)
        .sum();
    let unknown_port = sw.underlay_drops().get(DropReason::UnknownPort);
    assert_eq!(port_rx + unknown_port, N, "every frame from a port counted");

    // Every input ended in exactly one outcome, and each outcome kind moved its counter once
    // per input: drops by reason, floods, proxy answers.
    assert!(
        flooded > 0 && dropped.len() >= 5,
        "the mix reached the networks and many drop reasons: {dropped:?}, {flooded} floods"
    );
    let drops: u64 = dropped.values().sum();
    assert_eq!(
        drops + to_port + to_vtep + flooded + replied + upstream,
        2 * N
    );
    assert_eq!(
        all_drops(&sw),
        dropped,
        "drops counted once each, by reason"
    );
    let nets = sw.network_stats();
    let sum = |f: fn(&api::NetworkStats) -> u64| nets.iter().map(f).sum::<u64>();
    assert_eq!(sum(|n| n.events.flooded), flooded, "floods counted");
    let answers = |n: &api::NetworkStats| {
        n.events.proxy_arp_replies + n.dns.answered + n.dns.nxdomain + n.dns.refused
    };
    assert_eq!(sum(answers), replied, "answers counted");
    assert_eq!(
        sum(|n| n.dns.forwarded),
        upstream,
        "forwarded queries counted"
    );
    // Each input is received either by a network or, refused before one was found, by the
    // underlay's drop counters: never both, never neither.
    assert_eq!(
        sum(|n| n.counters.rx_packets) + sw.underlay_drops().total(),
        2 * N,
        "every input counted once where it ended"
    );

    // The views agree with each other: a network's table sizes are its rows.
    let (fdb, neigh) = (sw.fdb_info(now), sw.neigh_info(now));
    for n in sw.networks_info() {
        let rows = fdb.iter().filter(|e| e.network == n.name).count();
        assert_eq!(n.fdb_entries as usize, rows, "fdb of {}", n.name);
        let rows = neigh.iter().filter(|e| e.network == n.name).count();
        assert_eq!(n.neigh_entries as usize, rows, "neigh of {}", n.name);
    }
}

#[test]
fn snooped_arp_for_the_subnet_broadcast_address_does_not_teach_a_neighbour() {
    // A peer's ARP claiming the network or broadcast address must not be recorded: proxy-ARP
    // would then answer for 10.0.9.255 on every local port.
    let mut sw = switch_with_endpoint();
    for claimed in [ip(255), ip(0)] {
        let garp = arp_request(mac(66), claimed, claimed);
        let _ = sw.process_from_underlay(T0, VTEP_B, &vxlan_datagram(42, &garp));
        let _ = sw.process_from_port(T0, P2, &mut garp.clone());
    }

    let ips: Vec<String> = sw.neigh_info(T0).into_iter().map(|n| n.ip).collect();
    assert_eq!(ips, vec!["10.0.9.2"]);
    let mut req = arp_request(mac(3), ip(3), ip(255));
    assert!(matches!(
        sw.process_from_port(T0, P2, &mut req),
        Action::Flood { .. }
    ));
}

// ----- encrypted networks: no downgrade -----

/// The standard switch with green (VNI 43) encrypted.
fn switch_with_encrypted_green() -> Switch {
    let mut s = spec(1024, AGING_MS);
    s.networks[1].encrypted = true;
    switch_with(s)
}

#[test]
fn plaintext_vxlan_for_an_encrypted_network_is_dropped_and_counted() {
    let mut sw = switch_with_encrypted_green();
    let frame = ipv4_frame(mac(99), mac(11), ip(9), ip(11), 32);
    let a = sw.process_from_underlay(T0, VTEP_B, &vxlan_datagram(43, &frame));
    assert_eq!(a, Action::Drop(DropReason::PlaintextOnEncrypted));
    assert_eq!(all_drops(&sw), one_drop("plaintext_on_encrypted"));
    assert!(
        fdb_entry(&sw, "green", mac(99)).is_none(),
        "learned from a plaintext packet"
    );
    // The plaintext network next to it is unaffected.
    let frame = ipv4_frame(mac(98), mac(1), ip(9), ip(1), 32);
    assert!(!matches!(
        sw.process_from_underlay(T0, VTEP_B, &vxlan_datagram(42, &frame)),
        Action::Drop(_)
    ));
    assert!(sw.is_encrypted(vni(43)) && !sw.is_encrypted(vni(42)));
}

#[test]
fn decrypted_vxlan_must_name_the_network_of_its_sa() {
    let mut sw = switch_with_encrypted_green();
    let frame = ipv4_frame(mac(99), MacAddr::BROADCAST, ip(9), ip(11), 32);
    let ok = sw.process_decrypted(T0, VTEP_B, &vxlan_datagram(43, &frame), vni(43));
    assert!(
        matches!(
            ok,
            Action::Flood {
                to_peers: false,
                ..
            }
        ),
        "{ok:?}"
    );
    let wrong = sw.process_decrypted(T0, VTEP_B, &vxlan_datagram(42, &frame), vni(43));
    assert_eq!(wrong, Action::Drop(DropReason::EspVniMismatch));
    assert_eq!(all_drops(&sw), one_drop("esp_vni_mismatch"));
}

// ===== copies on several workers (switch::sync) =====

/// Two copies of the standard switch, as two workers hold them, with sync on.
fn two_copies() -> (Switch, Switch) {
    let (mut a, mut b) = (switch(), switch());
    a.enable_sync();
    b.enable_sync();
    (a, b)
}

/// Carries every announcement of `from` to `to`; returns how many there were.
fn carry(from: &mut Switch, to: &mut Switch, now: Timestamp) -> usize {
    let mut updates = Vec::new();
    from.take_updates(|u| updates.push(u));
    for u in &updates {
        to.apply_update(now, u);
    }
    updates.len()
}

#[test]
fn what_one_copy_learns_the_other_forwards_on_without_flooding() {
    let (mut a, mut b) = two_copies();
    // Worker A sees mac(7) behind port 1, and mac(20) behind VTEP B.
    let _ = a.process_from_port(T0, P1, &mut frame_of_len(MacAddr::BROADCAST, mac(7), 60));
    let d = vxlan_datagram(42, &frame_of_len(MacAddr::BROADCAST, mac(20), 60));
    let _ = a.process_from_underlay(T0, VTEP_B, &d);
    assert_eq!(carry(&mut a, &mut b, T0), 2);

    // Worker B, which saw neither, now delivers to both without a flood.
    let to_port = b.process_from_port(T0, P2, &mut frame_of_len(mac(7), mac(8), 60));
    assert_eq!(to_port, Action::ToPort(P1));
    let to_vtep = b.process_from_port(T0, P2, &mut frame_of_len(mac(20), mac(8), 60));
    assert_eq!(
        to_vtep,
        Action::ToVtep {
            vtep: VTEP_B,
            vni: vni(42)
        }
    );
    // Learning is counted once, where it happened; applying an announcement counts nothing
    // and is not echoed back.
    assert_eq!(stats(&a, "blue").events.fdb_learned, 2);
    assert_eq!(
        stats(&b, "blue").events.fdb_learned,
        1,
        "b learned only mac(8) itself"
    );
    let mut echoed = Vec::new();
    b.take_updates(|u| echoed.push(u));
    assert!(
        echoed.iter().all(|u| !matches!(u,
            vswitch::switch::TableUpdate::Fdb { mac: m, .. } if *m == mac(7) || *m == mac(20))),
        "b announced back what it was told: {echoed:?}"
    );
}

#[test]
fn a_station_one_copy_keeps_seeing_does_not_age_out_of_the_other() {
    let aging = 4_000;
    let mut a = switch_with(spec(1024, aging));
    let mut b = switch_with(spec(1024, aging));
    a.enable_sync();
    b.enable_sync();
    let frame = || frame_of_len(MacAddr::BROADCAST, mac(7), 60);
    // mac(7) talks through worker A only, every 500 ms, for three aging times.
    for step in 0..24u64 {
        let now = Timestamp(T0.0 + step * 500);
        let _ = a.process_from_port(now, P1, &mut frame());
        carry(&mut a, &mut b, now);
        a.expire(now);
        b.expire(now);
        assert!(
            fdb_entry(&b, "blue", mac(7)).is_some(),
            "b lost mac(7) at step {step}"
        );
    }
    // It stops talking: both copies forget it after the aging time.
    let later = Timestamp(T0.0 + 24 * 500 + aging + 1);
    a.expire(later);
    b.expire(later);
    assert!(fdb_entry(&a, "blue", mac(7)).is_none());
    assert!(fdb_entry(&b, "blue", mac(7)).is_none());
}

#[test]
fn proxy_arp_answers_on_a_copy_that_only_heard_of_the_address() {
    let (mut a, mut b) = two_copies();
    // An IPv4 packet from 10.0.9.20 arrives through worker A: its address is learned there.
    let d = vxlan_datagram(42, &ipv4_frame(mac(20), mac(1), ip(20), ip(1), 64));
    let _ = a.process_from_underlay(T0, VTEP_B, &d);
    carry(&mut a, &mut b, T0);
    assert_eq!(
        neigh_entry(&b, "blue", ip(20)).map(|e| e.mac),
        Some(mac(20).to_string())
    );

    let req = arp::Repr {
        operation: arp::Operation::Request,
        sender_mac: mac(1),
        sender_ip: ip(1),
        target_mac: MacAddr([0; 6]),
        target_ip: ip(20),
    };
    let mut f = arp_frame(MacAddr::BROADCAST, req);
    assert_eq!(replied(b.process_from_port(T0, P1, &mut f)), Some(P1));
}

#[test]
fn an_announcement_for_a_detached_port_is_ignored() {
    let (mut a, mut b) = two_copies();
    let _ = a.process_from_port(T0, P3, &mut frame_of_len(MacAddr::BROADCAST, mac(7), 60));
    b.remove_port(P3).unwrap();
    carry(&mut a, &mut b, T0);
    assert!(fdb_entry(&b, "blue", mac(7)).is_none());
}

#[test]
fn without_sync_nothing_is_collected() {
    let mut a = switch();
    let _ = a.process_from_port(T0, P1, &mut frame_of_len(MacAddr::BROADCAST, mac(7), 60));
    let mut n = 0;
    a.take_updates(|_| n += 1);
    assert_eq!(n, 0);
}

// ===== decide, then commit; a topology that changes =====

#[test]
fn decide_changes_nothing_and_commit_applies_exactly_what_it_said() {
    let mut sw = switch();
    let f = arp_frame(
        MacAddr::BROADCAST,
        arp::Repr {
            operation: arp::Operation::Request,
            sender_mac: mac(7),
            sender_ip: ip(7),
            target_mac: MacAddr::ZERO,
            target_ip: ip(9),
        },
    );
    let before = (sw.fdb_info(T0), sw.neigh_info(T0), sw.network_stats());
    let d = sw.decide(T0, Ingress::Port(P1), &f);
    // Deciding twice gives the same answer: nothing moved in between.
    assert_eq!(sw.decide(T0, Ingress::Port(P1), &f), d);
    assert_eq!(
        (sw.fdb_info(T0), sw.neigh_info(T0), sw.network_stats()),
        before
    );
    assert_eq!(d.network, Some(BLUE));
    assert_eq!(
        d.learn.map(|l| (l.mac, l.outcome)),
        Some((mac(7), Learned::New))
    );
    assert_eq!(d.neigh.map(|n| (n.ip, n.mac)), Some((ip(7), mac(7))));
    assert!(matches!(
        d.action,
        Action::Flood {
            network: BLUE,
            except: Some(P1),
            to_peers: true
        }
    ));

    sw.commit(T0, &d);
    assert_eq!(fdb_entry(&sw, "blue", mac(7)).unwrap().location, "port1");
    assert_eq!(
        neigh_entry(&sw, "blue", ip(7)).unwrap().mac,
        mac(7).to_string()
    );
    let s = stats(&sw, "blue");
    assert_eq!(
        (
            s.counters.rx_packets,
            s.events.flooded,
            s.events.fdb_learned
        ),
        (1, 1, 1)
    );
    // The trace of the same frame now says the entry would be refreshed, and changes nothing.
    let t = sw.trace(T0, Ingress::Port(P1), &f);
    assert!(
        t.steps
            .iter()
            .any(|s| s.detail.starts_with("would refresh")),
        "{t:?}"
    );
    assert_eq!(stats(&sw, "blue").counters.rx_packets, 1);
}

#[test]
fn a_remote_endpoint_is_answered_and_forwarded_before_its_first_packet() {
    let mut sw = switch();
    let t = sw
        .topology()
        .change(|t| t.add_remote_endpoint(BLUE, "web", mac(40), Some(ip(40)), VTEP_B))
        .unwrap();
    sw.set_topology(std::sync::Arc::new(t));
    let mut req = arp_frame(
        MacAddr::BROADCAST,
        arp::Repr {
            operation: arp::Operation::Request,
            sender_mac: mac(7),
            sender_ip: ip(7),
            target_mac: MacAddr::ZERO,
            target_ip: ip(40),
        },
    );
    assert_eq!(replied(sw.process_from_port(T0, P1, &mut req)), Some(P1));
    assert_arp_reply(&req, mac(40), ip(40), mac(7), ip(7));
    let action = sw.process_from_port(T0, P1, &mut frame_of_len(mac(40), mac(7), 60));
    assert_eq!(
        action,
        Action::ToVtep {
            vtep: VTEP_B,
            vni: vni(42)
        }
    );
    // A frame claiming that MAC from another host does not move it.
    let _ = sw.process_from_underlay(
        T0,
        VTEP_C,
        &vxlan_datagram(42, &frame_of_len(MacAddr::BROADCAST, mac(40), 60)),
    );
    let action = sw.process_from_port(T0, P1, &mut frame_of_len(mac(40), mac(7), 60));
    assert_eq!(
        action,
        Action::ToVtep {
            vtep: VTEP_B,
            vni: vni(42)
        }
    );
}

#[test]
fn a_new_topology_keeps_what_untouched_networks_learned() {
    let mut sw = switch();
    let _ = sw.process_from_port(T0, P1, &mut frame_of_len(MacAddr::BROADCAST, mac(7), 60));
    let _ = sw.process_from_port(T0, G1, &mut frame_of_len(MacAddr::BROADCAST, mac(8), 60));
    let t = sw
        .topology()
        .change(|t| {
            t.remove_port(G1)?;
            t.remove_port(G2)?;
            t.remove_network(GREEN).map(|_| ())?;
            t.add_network(NetworkSpec {
                name: "red".into(),
                vni: vni(44),
                subnet: "10.0.8.0/24".parse().unwrap(),
                mtu: 1450,
                peers: vec![("b".into(), VTEP_B)],
                encrypted: false,
            })
        })
        .unwrap();
    sw.set_topology(std::sync::Arc::new(t));
    assert_eq!(fdb_entry(&sw, "blue", mac(7)).unwrap().location, "port1");
    assert_eq!(stats(&sw, "blue").events.fdb_learned, 1);
    assert!(sw.learned(GREEN).is_none());
    let names: Vec<String> = sw.networks_info().into_iter().map(|n| n.name).collect();
    assert_eq!(names, ["blue", "red"]);
    // The gone network's VNI is now unknown on the wire.
    let a = sw.process_from_underlay(
        T0,
        VTEP_B,
        &vxlan_datagram(43, &frame_of_len(MacAddr::BROADCAST, mac(9), 60)),
    );
    assert_eq!(a, Action::Drop(DropReason::UnknownVni));
}

// ----- port security -----

/// Port 1 carries the endpoint (`mac(2)`, 10.0.9.2) with port security on.
fn secured() -> Switch {
    let mut sw = switch_with_endpoint();
    sw.set_port_security(P1, true).unwrap();
    sw
}

fn arp_request_from(sender_mac: MacAddr, sender_ip: Ipv4Addr, target_ip: Ipv4Addr) -> Vec<u8> {
    arp_frame(
        MacAddr::BROADCAST,
        arp::Repr {
            operation: arp::Operation::Request,
            sender_mac,
            sender_ip,
            target_mac: MacAddr::ZERO,
            target_ip,
        },
    )
}

#[test]
fn a_secured_port_sends_only_as_its_own_station() {
    let mut sw = secured();
    // Its own MAC and address, DHCP's 0.0.0.0 and an ARP probe pass.
    for mut f in [
        ipv4_frame(mac(2), mac(3), ip(2), ip(3), 40),
        ipv4_frame(
            mac(2),
            MacAddr::BROADCAST,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::BROADCAST,
            40,
        ),
        arp_request_from(mac(2), ip(2), ip(3)),
        arp_request_from(mac(2), Ipv4Addr::UNSPECIFIED, ip(2)),
    ] {
        let a = sw.process_from_port(T0, P1, &mut f);
        assert!(!matches!(a, Action::Drop(_)), "{a:?}");
    }
    assert!(all_drops(&sw).is_empty(), "{:?}", all_drops(&sw));

    // Another MAC, another source address, ARP claiming another address or MAC: dropped, each
    // under its reason, and nothing learned from them.
    let cases = [
        (ipv4_frame(mac(9), mac(3), ip(2), ip(3), 40), "spoofed_mac"),
        (ipv4_frame(mac(2), mac(3), ip(99), ip(3), 40), "spoofed_ip"),
        (arp_request_from(mac(2), ip(3), ip(4)), "spoofed_arp"),
        (
            {
                // Ethernet source its own, ARP sender MAC someone else's.
                let mut f = arp_request_from(mac(9), ip(2), ip(4));
                f[6..12].copy_from_slice(&mac(2).0);
                f
            },
            "spoofed_arp",
        ),
    ];
    for (mut f, reason) in cases {
        let mut fresh = secured();
        let a = fresh.process_from_port(T0, P1, &mut f);
        assert!(matches!(a, Action::Drop(_)), "{reason}: {a:?}");
        assert_eq!(all_drops(&fresh), one_drop(reason));
        assert!(
            fdb_entry(&fresh, "blue", mac(9)).is_none(),
            "{reason}: learned a forged MAC"
        );
        assert!(
            neigh_entry(&fresh, "blue", ip(3)).is_none(),
            "{reason}: learned a forged address"
        );
    }
}

#[test]
fn a_port_without_security_may_send_as_anyone() {
    let mut sw = switch_with_endpoint(); // security off, as for attach-interface or a router
    let a = sw.process_from_port(T0, P1, &mut ipv4_frame(mac(9), mac(3), ip(99), ip(3), 40));
    assert!(!matches!(a, Action::Drop(_)), "{a:?}");
    assert!(fdb_entry(&sw, "blue", mac(9)).is_some());
}
