//! Sans-IO tests of DNS by endpoint name (`vswitch::switch::dns`): query frames in, the
//! decision and the answer frame's bytes out, as a container would read them.
//!
//! Layout: network "blue", VNI 42, 10.0.9.0/24 (its own address 10.0.9.1), peer B; port 1 is
//! endpoint "web" (10.0.9.2), port 2 endpoint "db" (10.0.9.3); "cache" (10.0.9.7) is an
//! endpoint published at peer B.

mod common;

use common::frames::{arp_request, dns_query, dns_query_frame, dns_tcp_frame, eth_frame};
use domain::base::iana::{Rcode, Rtype};
use domain::base::Message;
use domain::rdata::AllRecordData;
use std::net::Ipv4Addr;
use std::sync::Arc;
use vswitch::control::views::ApiViews;
use vswitch::switch::dns::Reply;
use vswitch::switch::{
    Action, Answer, DropReason, Ingress, NetworkSpec, PortId, Switch, SwitchSpec, Timestamp, Vni,
    VtepAddr,
};
use vswitch::wire::ethernet::{EtherType, Frame};
use vswitch::wire::tcp::Flags;
use vswitch::wire::{arp, checksum, ipv4, udp, MacAddr};

const BLUE: Vni = Vni::of(42);
const VTEP_B: VtepAddr = VtepAddr(Ipv4Addr::new(192, 0, 2, 2));
const P1: PortId = PortId(1);
const P2: PortId = PortId(2);
const T0: Timestamp = Timestamp(1_000);

fn mac(n: u8) -> MacAddr {
    MacAddr([0x02, 0x42, 0x0a, 0x00, 0x09, n])
}

fn ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 9, n)
}

fn switch() -> Switch {
    let mut sw = Switch::new(SwitchSpec {
        networks: vec![NetworkSpec {
            name: "blue".into(),
            vni: BLUE,
            subnet: "10.0.9.0/24".parse().unwrap(),
            mtu: 1450,
            peers: vec![("b".into(), VTEP_B)],
            encrypted: false,
        }],
        peers: vec![("b".into(), VTEP_B)],
        fdb_max_entries: 1024,
        aging_ms: 300_000,
    });
    sw.add_port(P1, "web", BLUE, Some((mac(2), ip(2))), T0)
        .unwrap();
    sw.add_port(P2, "db", BLUE, Some((mac(3), ip(3))), T0)
        .unwrap();
    let t = sw
        .topology()
        .change(|t| t.add_remote_endpoint(BLUE, "cache", mac(7), Some(ip(7)), VTEP_B))
        .unwrap();
    sw.set_topology(Arc::new(t));
    sw
}

/// The network's own address and MAC.
fn service(sw: &Switch) -> (Ipv4Addr, MacAddr) {
    sw.topology().network(BLUE).unwrap().service().unwrap()
}

/// The query `name`/`qtype` as web (port 1) sends it to the network's DNS address (10.0.9.1,
/// at the MAC every host gives it).
fn query_from_web(name: &str, qtype: Rtype) -> Vec<u8> {
    let (own_ip, own_mac) = (ip(1), vswitch::switch::service::station_mac(42, ip(1)));
    dns_query_frame(
        mac(2),
        own_mac,
        ip(2),
        own_ip,
        40000,
        &dns_query(name, qtype, 0x1234),
    )
}

/// Decides and commits the frame from web, and writes the answer frame when there is one.
fn ask(sw: &mut Switch, frame: &[u8]) -> (Action, Vec<u8>) {
    let d = sw.decide(T0, Ingress::Port(P1), frame);
    assert_eq!(d, sw.decide(T0, Ingress::Port(P1), frame), "decide is pure");
    sw.commit(T0, &d);
    let mut out = vec![0u8; Answer::MAX_LEN];
    let n = match d.action {
        Action::Reply { answer, .. } => sw.write_answer(&answer, frame, &mut out),
        _ => 0,
    };
    out.truncate(n);
    (d.action, out)
}

/// The DNS message of an answer frame, after checking its headers as the container's stack
/// would: from the network's address and MAC, port 53, to web; IPv4 and UDP checksums valid.
fn answer_message(sw: &Switch, frame: &[u8]) -> Vec<u8> {
    let (own_ip, own_mac) = service(sw);
    let eth = Frame::new_checked(frame).unwrap();
    assert_eq!((eth.src(), eth.dst()), (own_mac, mac(2)));
    assert_eq!(eth.ethertype(), EtherType::Ipv4);
    let ipb = eth.payload();
    let ip4 = ipv4::Packet::new_checked(ipb).unwrap();
    assert_eq!((ip4.src(), ip4.dst()), (own_ip, ip(2)));
    assert_eq!(
        checksum::finish(checksum::add(0, &ipb[..20])),
        0,
        "IPv4 checksum"
    );
    let u = udp::Packet::new_checked(ip4.payload()).unwrap();
    assert_eq!((u.src_port(), u.dst_port()), (53, 40000));
    let sum = checksum::add(
        checksum::pseudo_v4(own_ip, ip(2), ipv4::PROTO_UDP, u.len()),
        &ip4.payload()[..u.len()],
    );
    assert_eq!(checksum::finish(sum), 0, "UDP checksum");
    u.payload().to_vec()
}

/// The rcode and the answer records (as text, e.g. "A 10.0.9.2") of a DNS message.
fn records(m: &[u8]) -> (Rcode, Vec<String>, Message<&[u8]>) {
    let msg = Message::from_octets(m).unwrap();
    let mut out = Vec::new();
    for r in msg.answer().unwrap() {
        let r = r
            .unwrap()
            .into_record::<AllRecordData<_, _>>()
            .unwrap()
            .unwrap();
        out.push(format!("{} {} {}", r.owner(), r.rtype(), r.data()));
    }
    (msg.header().rcode(), out, msg)
}

#[test]
fn an_endpoint_is_found_by_name_and_by_name_dot_network_in_any_case() {
    let mut sw = switch();
    for name in ["db", "db.blue", "DB.Blue.", "cache", "cache.blue"] {
        let (a, out) = ask(&mut sw, &query_from_web(name, Rtype::A));
        assert!(matches!(a, Action::Reply { port: P1, .. }), "{name}: {a:?}");
        let m = answer_message(&sw, &out);
        let (rcode, recs, msg) = records(&m);
        assert_eq!(rcode, Rcode::NOERROR, "{name}");
        let want_ip = if name.to_lowercase().starts_with("db") {
            ip(3)
        } else {
            ip(7)
        };
        let owner = name.trim_end_matches('.');
        assert_eq!(recs, vec![format!("{owner} A {want_ip}")], "{name}");
        let h = msg.header();
        assert_eq!(h.id(), 0x1234);
        assert!(h.qr() && h.aa() && h.rd(), "QR, AA and the query's RD");
        assert_eq!(msg.first_question().unwrap().qtype(), Rtype::A);
    }
    let s = &sw.network_stats()[0];
    assert_eq!(s.dns.answered, 5);
    assert_eq!((s.dns.nxdomain, s.dns.forwarded), (0, 0));
}

#[test]
fn a_name_under_the_network_that_no_endpoint_has_is_nxdomain() {
    let mut sw = switch();
    for name in ["nobody.blue", "web.db.blue", "a.b.c.d.e.blue"] {
        let (_, out) = ask(&mut sw, &query_from_web(name, Rtype::A));
        let (rcode, recs, _) = records(&answer_message(&sw, &out));
        assert_eq!((rcode, recs.len()), (Rcode::NXDOMAIN, 0), "{name}");
    }
    assert_eq!(sw.network_stats()[0].dns.nxdomain, 3);
}

#[test]
fn other_types_for_an_endpoint_are_noerror_without_records() {
    let mut sw = switch();
    let (a, out) = ask(&mut sw, &query_from_web("db.blue", Rtype::AAAA));
    assert!(matches!(
        a,
        Action::Reply {
            answer: Answer::Dns {
                reply: Reply::NoData,
                ..
            },
            ..
        }
    ));
    let (rcode, recs, _) = records(&answer_message(&sw, &out));
    assert_eq!((rcode, recs.len()), (Rcode::NOERROR, 0));
}

#[test]
fn reverse_lookups_name_the_endpoint_of_an_address() {
    let mut sw = switch();
    let (_, out) = ask(
        &mut sw,
        &query_from_web("3.9.0.10.in-addr.arpa", Rtype::PTR),
    );
    let (rcode, recs, _) = records(&answer_message(&sw, &out));
    assert_eq!(rcode, Rcode::NOERROR);
    assert_eq!(recs, vec!["3.9.0.10.in-addr.arpa PTR db.blue.".to_string()]);
    // An address of the subnet nobody holds: NXDOMAIN here; outside it: not ours.
    let (_, out) = ask(
        &mut sw,
        &query_from_web("77.9.0.10.in-addr.arpa", Rtype::PTR),
    );
    assert_eq!(records(&answer_message(&sw, &out)).0, Rcode::NXDOMAIN);
    let (a, _) = ask(
        &mut sw,
        &query_from_web("1.2.0.192.in-addr.arpa", Rtype::PTR),
    );
    assert_eq!(
        a,
        Action::Upstream {
            port: P1,
            network: BLUE
        }
    );
}

#[test]
fn other_names_go_to_the_forwarder() {
    let mut sw = switch();
    for name in ["example.org", "nobody"] {
        let (a, out) = ask(&mut sw, &query_from_web(name, Rtype::A));
        assert_eq!(
            a,
            Action::Upstream {
                port: P1,
                network: BLUE
            },
            "{name}"
        );
        assert!(out.is_empty());
    }
    assert_eq!(sw.network_stats()[0].dns.forwarded, 2);
}

#[test]
fn a_name_published_later_resolves_from_the_next_topology() {
    let mut sw = switch();
    let (a, _) = ask(&mut sw, &query_from_web("late.blue", Rtype::A));
    assert!(matches!(
        a,
        Action::Reply {
            answer: Answer::Dns {
                reply: Reply::NxDomain,
                ..
            },
            ..
        }
    ));
    let t = sw
        .topology()
        .change(|t| t.add_remote_endpoint(BLUE, "late", mac(9), Some(ip(9)), VTEP_B))
        .unwrap();
    sw.set_topology(Arc::new(t));
    let (_, out) = ask(&mut sw, &query_from_web("late.blue", Rtype::A));
    let (_, recs, _) = records(&answer_message(&sw, &out));
    assert_eq!(recs, vec!["late.blue A 10.0.9.9".to_string()]);
}

#[test]
fn garbage_to_the_dns_address_is_dropped_and_counted_and_other_traffic_to_it_too() {
    let mut sw = switch();
    let (own_ip, own_mac) = service(&sw);
    let junk = dns_query_frame(mac(2), own_mac, ip(2), own_ip, 40000, &[0xde, 0xad, 0xbe]);
    assert_eq!(
        ask(&mut sw, &junk).0,
        Action::Drop(DropReason::DnsMalformed)
    );
    // A response sent to the switch answers nothing it asked.
    let mut resp = dns_query("db", Rtype::A, 1);
    resp[2] |= 0x80;
    let f = dns_query_frame(mac(2), own_mac, ip(2), own_ip, 40000, &resp);
    assert_eq!(ask(&mut sw, &f).0, Action::Drop(DropReason::DnsMalformed));
    // An ICMP echo (or traffic routed via it as a gateway) is not DNS.
    let mut icmp = vec![0u8; 28];
    ipv4::Repr {
        src: ip(2),
        dst: Ipv4Addr::new(198, 51, 100, 1),
        protocol: ipv4::PROTO_ICMP,
        payload_len: 8,
        ttl: 64,
    }
    .emit(&mut icmp);
    let f = eth_frame(own_mac, mac(2), EtherType::Ipv4, &icmp);
    assert_eq!(ask(&mut sw, &f).0, Action::Drop(DropReason::ToDnsAddress));
    let drops = &sw.network_stats()[0].counters.drops;
    assert_eq!(drops.get("dns_malformed"), Some(&2));
    assert_eq!(drops.get("to_dns_address"), Some(&1));
}

#[test]
fn two_questions_are_formerr_and_other_opcodes_notimp() {
    let mut sw = switch();
    let mut m = dns_query("db", Rtype::A, 5);
    m[5] = 2; // QDCOUNT 2, one question present
    let (own_ip, own_mac) = service(&sw);
    let f = dns_query_frame(mac(2), own_mac, ip(2), own_ip, 40000, &m);
    let (_, out) = ask(&mut sw, &f);
    assert_eq!(records(&answer_message(&sw, &out)).0, Rcode::FORMERR);
    let mut m = dns_query("db", Rtype::A, 6);
    m[2] |= 2 << 3; // OPCODE 2 (STATUS)
    let f = dns_query_frame(mac(2), own_mac, ip(2), own_ip, 40000, &m);
    let (_, out) = ask(&mut sw, &f);
    assert_eq!(records(&answer_message(&sw, &out)).0, Rcode::NOTIMP);
}

#[test]
fn the_dns_address_is_answered_by_proxy_arp_and_never_given_to_a_container() {
    let mut sw = switch();
    let (own_ip, own_mac) = service(&sw);
    assert_eq!(
        (own_ip, own_mac),
        (ip(1), vswitch::switch::service::station_mac(42, ip(1)))
    );
    let mut req = arp_request(mac(2), ip(2), own_ip);
    let a = sw.process_from_port(T0, P1, &mut req);
    assert!(matches!(a, Action::Reply { port: P1, .. }), "{a:?}");
    let reply = arp::Packet::new_checked(&req[14..]).unwrap();
    assert_eq!((reply.sender_ip(), reply.sender_mac()), (own_ip, own_mac));
    let e = sw
        .topology()
        .check_endpoint("blue", Some(own_ip), None)
        .unwrap_err();
    assert!(e.to_string().contains("own address"), "{e}");
}

#[test]
fn trace_tells_the_dns_answer_from_the_same_decision() {
    let sw = switch();
    let q = query_from_web("db.blue", Rtype::A);
    let d = sw.decide(T0, Ingress::Port(P1), &q);
    let t = sw.explain(T0, &d, &q);
    let dns: Vec<&str> = t
        .steps
        .iter()
        .filter(|s| s.step == "dns")
        .map(|s| s.detail.as_str())
        .collect();
    assert_eq!(dns, ["answer A 10.0.9.3"]);
    assert_eq!(t.verdict, "reply");
    let q = query_from_web("example.org", Rtype::A);
    let t = sw.explain(T0, &sw.decide(T0, Ingress::Port(P1), &q), &q);
    assert_eq!(t.verdict, "forward");
}

// ----- DNS over TCP (vswitch::switch::dns_tcp) -----

/// web's client port, and its initial sequence number, for the TCP tests.
const WEB_PORT: u16 = 41000;
const WEB_ISN: u32 = 0xfffe_0000;

/// A segment from web to the network's address, port 53.
fn tcp_from_web(seq: u32, ack: u32, flags: Flags, payload: &[u8]) -> Vec<u8> {
    let (own_ip, own_mac) = (ip(1), vswitch::switch::service::station_mac(42, ip(1)));
    dns_tcp_frame(
        mac(2),
        own_mac,
        ip(2),
        own_ip,
        WEB_PORT,
        seq,
        ack,
        flags,
        payload,
    )
}

/// A query with the two-byte length DNS over TCP puts in front of it.
fn framed(msg: &[u8]) -> Vec<u8> {
    let mut v = (msg.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(msg);
    v
}

/// A segment as web's stack reads it, its fields taken by offset (RFC 9293 §3.1), after
/// checking addresses, ports and both checksums.
struct Seg {
    seq: u32,
    ack: u32,
    flags: u8,
    options: Vec<u8>,
    payload: Vec<u8>,
}

fn segment_to_web(sw: &Switch, frame: &[u8]) -> Seg {
    let (own_ip, own_mac) = service(sw);
    let eth = Frame::new_checked(frame).unwrap();
    assert_eq!((eth.src(), eth.dst()), (own_mac, mac(2)));
    let ipb = eth.payload();
    let ip4 = ipv4::Packet::new_checked(ipb).unwrap();
    assert_eq!((ip4.src(), ip4.dst()), (own_ip, ip(2)));
    assert_eq!(ip4.protocol(), ipv4::PROTO_TCP);
    assert_eq!(checksum::finish(checksum::add(0, &ipb[..20])), 0, "IPv4");
    let t = &ipb[20..usize::from(ip4.total_len())];
    let sum = checksum::add(
        checksum::pseudo_v4(own_ip, ip(2), ipv4::PROTO_TCP, t.len()),
        t,
    );
    assert_eq!(checksum::finish(sum), 0, "TCP checksum");
    let be32 = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    assert_eq!(u16::from_be_bytes([t[0], t[1]]), 53);
    assert_eq!(u16::from_be_bytes([t[2], t[3]]), WEB_PORT);
    let hl = usize::from(t[12] >> 4) * 4;
    Seg {
        seq: be32(&t[4..8]),
        ack: be32(&t[8..12]),
        flags: t[13],
        options: t[20..hl].to_vec(),
        payload: t[hl..].to_vec(),
    }
}

const SYN: u8 = 0x02;
const FIN: u8 = 0x01;
const ACK: u8 = 0x10;
const PSH: u8 = 0x08;

#[test]
fn over_tcp_a_connection_is_taken_answered_and_closed_without_state() {
    let mut sw = switch();
    // SYN: a SYN-ACK with an MSS for the network's MTU (1450 - 40), the same for the SYN sent
    // again.
    let (a, out) = ask(&mut sw, &tcp_from_web(WEB_ISN, 0, Flags::SYN, &[]));
    assert!(matches!(a, Action::Reply { port: P1, .. }), "{a:?}");
    let syn_ack = segment_to_web(&sw, &out);
    assert_eq!(syn_ack.flags, SYN | ACK);
    assert_eq!(syn_ack.ack, WEB_ISN.wrapping_add(1));
    assert_eq!(syn_ack.options, [2, 4, 0x05, 0x82], "MSS 1410");
    let (_, again) = ask(&mut sw, &tcp_from_web(WEB_ISN, 0, Flags::SYN, &[]));
    assert_eq!(segment_to_web(&sw, &again).seq, syn_ack.seq);
    let ours = syn_ack.seq.wrapping_add(1);
    let theirs = WEB_ISN.wrapping_add(1);

    // The handshake's last ACK needs nothing back.
    let (a, out) = ask(&mut sw, &tcp_from_web(theirs, ours, Flags::ACK, &[]));
    assert_eq!(a, Action::Drop(DropReason::DnsTcpQuiet));
    assert!(out.is_empty());

    // Two queries in one segment (glibc writes A and AAAA together): both answered in order,
    // in one segment at the sequence number web acknowledged, acknowledging both.
    let mut queries = framed(&dns_query("db", Rtype::A, 7));
    queries.extend(framed(&dns_query("db.blue", Rtype::AAAA, 8)));
    let (_, out) = ask(
        &mut sw,
        &tcp_from_web(theirs, ours, Flags::ACK | Flags::PSH, &queries),
    );
    let seg = segment_to_web(&sw, &out);
    assert_eq!(seg.flags, ACK | PSH);
    assert_eq!(seg.seq, ours);
    assert_eq!(seg.ack, theirs.wrapping_add(queries.len() as u32));
    let first_len = usize::from(u16::from_be_bytes([seg.payload[0], seg.payload[1]]));
    let first = &seg.payload[2..2 + first_len];
    let (rcode, recs, msg) = records(first);
    assert_eq!((rcode, msg.header().id()), (Rcode::NOERROR, 7));
    assert_eq!(recs, ["db A 10.0.9.3"]);
    let rest = &seg.payload[2 + first_len..];
    let second_len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
    assert_eq!(
        rest.len(),
        2 + second_len,
        "nothing after the second answer"
    );
    let (rcode, recs, msg) = records(&rest[2..]);
    assert_eq!((rcode, msg.header().id()), (Rcode::NOERROR, 8));
    assert!(recs.is_empty(), "no AAAA for db: {recs:?}");

    // Half a query: nothing yet (web sends the rest, or all of it again).
    let half = &framed(&dns_query("db", Rtype::A, 9))[..10];
    let (a, _) = ask(&mut sw, &tcp_from_web(theirs, ours, Flags::ACK, half));
    assert_eq!(a, Action::Drop(DropReason::DnsTcpQuiet));

    // FIN: FIN-ACK, acknowledging the FIN.
    let after = ours.wrapping_add(seg.payload.len() as u32);
    let done = theirs.wrapping_add(queries.len() as u32);
    let (_, out) = ask(
        &mut sw,
        &tcp_from_web(done, after, Flags::FIN | Flags::ACK, &[]),
    );
    let fin = segment_to_web(&sw, &out);
    assert_eq!(fin.flags, FIN | ACK);
    assert_eq!((fin.seq, fin.ack), (after, done.wrapping_add(1)));

    // A reset: nothing.
    let (a, _) = ask(&mut sw, &tcp_from_web(done, 0, Flags::RST, &[]));
    assert_eq!(a, Action::Drop(DropReason::DnsTcpQuiet));

    let dns = &sw.network_stats()[0].dns;
    assert_eq!((dns.tcp_connections, dns.answered), (2, 1));
}

#[test]
fn over_tcp_unknown_names_are_nxdomain_and_other_names_go_to_the_forwarder() {
    let mut sw = switch();
    let (_, out) = ask(
        &mut sw,
        &tcp_from_web(
            5,
            77,
            Flags::ACK,
            &framed(&dns_query("nobody.blue", Rtype::A, 3)),
        ),
    );
    let seg = segment_to_web(&sw, &out);
    let (rcode, _, _) = records(&seg.payload[2..]);
    assert_eq!(rcode, Rcode::NXDOMAIN);
    // Names the switch does not own: the forwarder answers on the same connection.
    let (a, out) = ask(
        &mut sw,
        &tcp_from_web(
            5,
            77,
            Flags::ACK,
            &framed(&dns_query("example.org", Rtype::A, 4)),
        ),
    );
    assert_eq!(
        a,
        Action::Upstream {
            port: P1,
            network: BLUE
        }
    );
    assert!(out.is_empty());
    // Other TCP to the address than port 53 is not DNS.
    let mut other = tcp_from_web(5, 77, Flags::SYN, &[]);
    other[14 + 20 + 2..14 + 20 + 4].copy_from_slice(&80u16.to_be_bytes());
    let (a, _) = ask(&mut sw, &other);
    assert_eq!(a, Action::Drop(DropReason::ToDnsAddress));
}
