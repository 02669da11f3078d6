//! The reachability probe in the sans-IO core (crate::wire::probe, `Action::Probe`): a peer's
//! probe in, the answer's bytes out; nothing else is answered and nothing is learned.

use std::net::Ipv4Addr;
use vswitch::control::views::ApiViews;
use vswitch::switch::{
    Action, DropReason, Ingress, NetworkSpec, Switch, SwitchSpec, Timestamp, Vni, VtepAddr,
};
use vswitch::wire::probe::{self, Reply, Request};
use vswitch::wire::vxlan;

const PEER: VtepAddr = VtepAddr(Ipv4Addr::new(192, 0, 2, 2));
const NOT_A_PEER: VtepAddr = VtepAddr(Ipv4Addr::new(192, 0, 2, 99));
const NOW: Timestamp = Timestamp(1_000);

/// A probe request as the prober sends it: 24 bytes, token 0x1122334455667788.
const PROBE: [u8; 24] = [
    0x00, 0x00, 0x00, 0x00, b'V', b'S', b'W', b'P', 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,
];

fn switch() -> Switch {
    let net = |name: &str, v: u32, encrypted: bool, mtu: u32| NetworkSpec {
        name: name.to_string(),
        vni: Vni::new(v).unwrap(),
        subnet: "10.0.9.0/24".parse().unwrap(),
        mtu,
        peers: vec![("node-b".to_string(), PEER)],
        encrypted,
    };
    Switch::new(SwitchSpec {
        networks: vec![net("blue", 42, false, 1450), net("red", 43, true, 1408)],
        peers: vec![("node-b".to_string(), PEER)],
        fdb_max_entries: 1024,
        aging_ms: 300_000,
    })
}

#[test]
fn a_peers_probe_is_answered_with_name_clock_and_networks() {
    let mut sw = switch();
    let action = sw.process_from_underlay(NOW, PEER, &PROBE);
    let Action::Probe { from, request } = action else {
        panic!("a peer's probe ended as {action:?}");
    };
    assert_eq!(from, PEER);
    assert_eq!(request.token, 0x1122334455667788);
    assert_eq!(request.len, 24);

    let mut out = [0u8; probe::MAX_REPLY_LEN];
    let n = sw.write_probe_reply(&request, 1_700_000_000_123_456_789, "node-a", &mut out);
    #[rustfmt::skip]
    let expected: Vec<u8> = [
        &[0, 0, 0, 0][..], b"VSWP", &[1, 2],
        &[0, 2],                         // two networks in all
        &[0, 0, 0, 24],                  // the request's length as it arrived
        &[0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88],
        &1_700_000_000_123_456_789u64.to_be_bytes(),
        &[0, 2],                         // two listed
        &[6], b"node-a",
        &[0, 0, 0, 42, 0x05, 0xaa, 4], b"blue",   // plain, vni 42, mtu 1450
        &[1, 0, 0, 43, 0x05, 0x80, 3], b"red",    // encrypted, vni 43, mtu 1408
    ]
    .concat();
    assert_eq!(out[..n], expected[..]);
    let r = Reply::parse(&out[..n]).unwrap();
    assert_eq!(r.node, "node-a");
    assert_eq!(r.networks.len(), 2);
    assert!(r.networks[1].encrypted);
}

#[test]
fn only_peers_are_answered_and_a_probe_teaches_nothing() {
    let mut sw = switch();
    assert_eq!(
        sw.process_from_underlay(NOW, NOT_A_PEER, &PROBE),
        Action::Drop(DropReason::UnknownPeer)
    );
    // Inside ESP a probe is no VXLAN datagram (its I flag is clear): dropped, never answered.
    let d = sw.decide(
        NOW,
        Ingress::Decrypted {
            from: PEER,
            sa_vni: Vni::new(43).unwrap(),
        },
        &PROBE,
    );
    assert_eq!(d.action, Action::Drop(DropReason::VxlanNoVniFlag));
    // A reply, or another version, is not a request: left to the VXLAN checks.
    let mut reply = PROBE;
    reply[9] = probe::KIND_REPLY;
    assert_eq!(
        sw.process_from_underlay(NOW, PEER, &reply),
        Action::Drop(DropReason::VxlanNoVniFlag)
    );
    let mut v2 = PROBE;
    v2[8] = 2;
    assert_eq!(
        sw.process_from_underlay(NOW, PEER, &v2),
        Action::Drop(DropReason::VxlanNoVniFlag)
    );
    // Answered probes leave the tables as they were.
    let d = sw.decide(NOW, Ingress::Underlay(PEER), &PROBE);
    assert_eq!((d.network, d.learn, d.neigh), (None, None, None));
    // Nor are they the overlay's traffic: no counter moves for them.
    let rx = sw.underlay.rx_packets;
    let _ = sw.process_from_underlay(NOW, PEER, &PROBE);
    assert_eq!(sw.underlay.rx_packets, rx);
    assert!(sw.fdb_info(NOW).is_empty() && sw.neigh_info(NOW).is_empty());
}

#[test]
fn a_padded_probe_reports_its_size_and_vxlan_is_never_taken_for_one() {
    let mut sw = switch();
    let mut big = vec![0u8; 1472];
    let n = probe::emit_request(&mut big, 9, 0, 1472);
    let Action::Probe { request, .. } = sw.process_from_underlay(NOW, PEER, &big[..n]) else {
        panic!("not answered");
    };
    assert_eq!(request.len, 1472);
    // A VXLAN datagram whose frame happens to start with the magic is still VXLAN.
    let mut vx = vec![0u8; vxlan::HEADER_LEN];
    vxlan::emit(&mut vx, 42);
    vx.extend_from_slice(&PROBE);
    assert!(!matches!(
        sw.process_from_underlay(NOW, PEER, &vx),
        Action::Probe { .. }
    ));
    assert!(Request::parse(&vx).is_none());
}

#[test]
fn trace_tells_a_probe() {
    let sw = switch();
    let t = sw.trace(NOW, Ingress::Underlay(PEER), &PROBE);
    assert_eq!(t.verdict, "probe reply");
    assert!(
        t.steps.iter().any(|s| s.step == "probe"
            && s.detail
                .contains("reachability probe from vtep 192.0.2.2 (node-b)")),
        "{:?}",
        t.steps
    );
}
