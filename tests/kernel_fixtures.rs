//! Byte fixtures captured from the Linux kernel's own vxlan device (`ip link add vx0 type
//! vxlan id 42 dstport 4789`, two namespaces, `tcpdump -xx` on the underlay; see
//! tests/fixtures/kernel-vxlan-vni42.txt): an ARP request, its reply, an ICMP echo and its
//! reply, whole Ethernet frames as the kernel put them on the wire. Our parsers must read them,
//! our encapsulation must produce the same VXLAN header, and the switch core must learn from
//! them as from any peer.

use std::net::Ipv4Addr;
use vswitch::control::views::ApiViews;
use vswitch::switch::{Action, NetworkSpec, PortId, Switch, SwitchSpec, Timestamp, Vni, VtepAddr};
use vswitch::wire::ethernet::{EtherType, Frame};
use vswitch::wire::{arp, ipv4, vxlan, MacAddr};

/// Parses tcpdump -xx text into one byte vector per packet.
fn packets() -> Vec<Vec<u8>> {
    let text = include_str!("fixtures/kernel-vxlan-vni42.txt");
    let mut out: Vec<Vec<u8>> = Vec::new();
    for line in text.lines() {
        let t = line.trim_start();
        let Some(rest) = t.strip_prefix("0x") else {
            if !line.starts_with(char::is_whitespace) && line.contains(" IP ") {
                out.push(Vec::new());
            }
            continue;
        };
        let hex = rest.split_once(':').map(|(_, h)| h).unwrap_or("");
        for word in hex.split_whitespace() {
            for i in (0..word.len()).step_by(2) {
                out.last_mut()
                    .unwrap()
                    .push(u8::from_str_radix(&word[i..i + 2], 16).unwrap());
            }
        }
    }
    out
}

/// Outer Ethernet (14) + IPv4 (20, no options here) + UDP (8): returns (src ip, UDP payload).
fn udp_payload(pkt: &[u8]) -> (Ipv4Addr, u16, &[u8]) {
    let eth = Frame::new_checked(pkt).unwrap();
    assert_eq!(eth.ethertype(), EtherType::Ipv4);
    let ip = ipv4::Packet::new_checked(eth.payload()).unwrap();
    assert_eq!(ip.protocol(), ipv4::PROTO_UDP);
    let udp = &pkt[14 + ip.header_len()..];
    let dport = u16::from_be_bytes([udp[2], udp[3]]);
    (ip.src(), dport, &udp[8..])
}

const MAC_A: MacAddr = MacAddr([0x02, 0, 0, 0, 0x09, 0x02]);
const MAC_B: MacAddr = MacAddr([0x02, 0, 0, 0, 0x09, 0x03]);

#[test]
fn kernel_vxlan_packets_parse() {
    let pkts = packets();
    assert_eq!(pkts.len(), 4, "fixture should hold 4 packets");
    for p in &pkts {
        let (_, dport, payload) = udp_payload(p);
        assert_eq!(dport, vxlan::DEFAULT_PORT);
        let vx = vxlan::Packet::new_checked(payload).unwrap();
        assert_eq!(vx.vni(), 42);
    }

    // 1: ARP request who-has 10.0.9.3 tell 10.0.9.2, broadcast.
    let (_, _, vx) = udp_payload(&pkts[0]);
    let inner = Frame::new_checked(&vx[8..]).unwrap();
    assert_eq!(inner.dst(), MacAddr::BROADCAST);
    assert_eq!(inner.src(), MAC_A);
    let a = arp::Packet::new_checked(inner.payload()).unwrap();
    assert_eq!(a.operation(), arp::Operation::Request);
    assert_eq!(a.sender_ip(), Ipv4Addr::new(10, 0, 9, 2));
    assert_eq!(a.target_ip(), Ipv4Addr::new(10, 0, 9, 3));

    // 2: the reply.
    let (src, _, vx) = udp_payload(&pkts[1]);
    assert_eq!(src, Ipv4Addr::new(192, 0, 2, 2));
    let inner = Frame::new_checked(&vx[8..]).unwrap();
    let a = arp::Packet::new_checked(inner.payload()).unwrap();
    assert_eq!(a.operation(), arp::Operation::Reply);
    assert_eq!(a.sender_mac(), MAC_B);

    // 3: ICMP echo request carrying the marker "vswitch!".
    let (_, _, vx) = udp_payload(&pkts[2]);
    let inner = Frame::new_checked(&vx[8..]).unwrap();
    let ip = ipv4::Packet::new_checked(inner.payload()).unwrap();
    assert_eq!(ip.protocol(), ipv4::PROTO_ICMP);
    assert_eq!(
        (ip.src(), ip.dst()),
        (Ipv4Addr::new(10, 0, 9, 2), Ipv4Addr::new(10, 0, 9, 3))
    );
    assert!(inner.payload().windows(8).any(|w| w == b"vswitch!"));
}

#[test]
fn our_vxlan_header_matches_the_kernels() {
    for p in packets() {
        let (_, _, vx) = udp_payload(&p);
        let mut ours = [0u8; 8];
        vxlan::emit(&mut ours, 42);
        assert_eq!(
            &vx[..8],
            &ours,
            "kernel and vswitch disagree on the VXLAN header"
        );
    }
}

#[test]
fn the_switch_core_learns_from_kernel_packets() {
    let mut sw = Switch::new(SwitchSpec {
        networks: vec![NetworkSpec {
            name: "blue".into(),
            vni: Vni::new(42).unwrap(),
            subnet: "10.0.9.0/24".parse().unwrap(),
            mtu: 1450,
            peers: vec![("kernel".into(), VtepAddr(Ipv4Addr::new(192, 0, 2, 1)))],
            encrypted: false,
        }],
        peers: vec![("kernel".into(), VtepAddr(Ipv4Addr::new(192, 0, 2, 1)))],
        fdb_max_entries: 64,
        aging_ms: 300_000,
    });
    let net = sw.network_by_name("blue").unwrap();
    sw.add_port(
        PortId(1),
        "b",
        net,
        Some((MAC_B, Ipv4Addr::new(10, 0, 9, 3))),
        Timestamp(0),
    )
    .unwrap();
    let pkts = packets();

    // The kernel host 192.0.2.1 broadcasts an ARP request: flooded to local ports only.
    let (src, _, vx) = udp_payload(&pkts[0]);
    let a = sw.process_from_underlay(Timestamp(1), VtepAddr(src), vx);
    assert!(
        matches!(
            a,
            Action::Flood {
                to_peers: false,
                ..
            }
        ),
        "{a:?}"
    );
    // Its ICMP echo to our container goes straight to port 1.
    let (src, _, vx) = udp_payload(&pkts[2]);
    assert_eq!(
        sw.process_from_underlay(Timestamp(2), VtepAddr(src), vx),
        Action::ToPort(PortId(1))
    );

    let fdb = sw.fdb_info(Timestamp(3));
    assert!(
        fdb.iter()
            .any(|e| e.mac == MAC_A.to_string() && e.location == "192.0.2.1"),
        "{fdb:?}"
    );
    let neigh = sw.neigh_info(Timestamp(3));
    assert!(
        neigh
            .iter()
            .any(|e| e.ip == "10.0.9.2" && e.mac == MAC_A.to_string()),
        "{neigh:?}"
    );
}
