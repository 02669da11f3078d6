//! Bodies of the fuzz targets, shared by `fuzz/fuzz_targets/*.rs` (libFuzzer, nightly) and
//! `tests/fuzz_corpus.rs` (which replays every file of `fuzz/corpus/<target>/` on stable, so CI
//! covers the corpora). Included by path (`#[path = ...] mod harness;`), not a crate of its own.
//!
//! Each function builds a fresh switch, feeds it the input and checks what must hold for *any*
//! input: no panic, every packet counted, no action that crosses networks or sends underlay
//! traffic back to the underlay, and a rewritten frame only when it is a well-formed ARP reply.
#![allow(dead_code)]

use std::net::Ipv4Addr;
use vswitch::control::config::Config;
use vswitch::control::views::ApiViews;
use vswitch::switch::{
    Action, Answer, DropReason, NetworkSpec, PortId, Switch, SwitchSpec, Timestamp, Vni, VtepAddr,
};
use vswitch::wire::ethernet::{EtherType, Frame};
use vswitch::wire::{arp, vxlan, MacAddr};

/// A peer of both networks.
pub const PEER: VtepAddr = VtepAddr(Ipv4Addr::new(192, 0, 2, 2));
/// A peer of network "red" only.
pub const RED_PEER: VtepAddr = VtepAddr(Ipv4Addr::new(192, 0, 2, 3));
pub const NOT_A_PEER: VtepAddr = VtepAddr(Ipv4Addr::new(198, 51, 100, 7));

pub const BLUE: Vni = Vni::of(BLUE_VNI);
pub const RED: Vni = Vni::of(RED_VNI);
pub const BLUE_VNI: u32 = 42;
pub const RED_VNI: u32 = 43;
pub const MTU: u32 = 1450;

/// Blue port 1: container 10.0.9.2 at `endpoint_mac(2)`; the port the port_frame target writes.
pub const PORT_IN: PortId = PortId(1);
/// Blue port 2: container 10.0.9.3 at `endpoint_mac(3)`: what an ARP request can resolve.
pub const PORT_OTHER: PortId = PortId(2);
/// Red port 11: the same address 10.0.9.2 as blue's port 1, another MAC.
pub const RED_PORT: PortId = PortId(11);

pub fn endpoint_mac(n: u8) -> MacAddr {
    MacAddr([0x02, 0x42, 0x0a, 0x00, 0x09, n])
}

pub fn red_mac() -> MacAddr {
    MacAddr([0x02, 0x42, 0x0a, 0x00, 0x2b, 0x02])
}

pub const NOW: Timestamp = Timestamp(1_000);

/// Two networks on the same subnet ("blue" VNI 42 with peer PEER, "red" VNI 43 with PEER and
/// RED_PEER) and three attached containers.
pub fn switch() -> Switch {
    let vni = |v| Vni::new(v).unwrap();
    let net = |name: &str, v, peers: Vec<(String, VtepAddr)>| NetworkSpec {
        name: name.into(),
        vni: vni(v),
        subnet: "10.0.9.0/24".parse().unwrap(),
        mtu: MTU,
        peers,
        encrypted: false,
    };
    let b = ("b".to_string(), PEER);
    let c = ("c".to_string(), RED_PEER);
    let mut sw = Switch::new(SwitchSpec {
        networks: vec![
            net("blue", BLUE_VNI, vec![b.clone()]),
            net("red", RED_VNI, vec![b.clone(), c.clone()]),
        ],
        peers: vec![b, c],
        fdb_max_entries: 64,
        aging_ms: 300_000,
    });
    let ep = |n| Some((endpoint_mac(n), Ipv4Addr::new(10, 0, 9, n)));
    sw.add_port(PORT_IN, "c2", BLUE, ep(2), NOW).unwrap();
    sw.add_port(PORT_OTHER, "c3", BLUE, ep(3), NOW).unwrap();
    let red_ep = Some((red_mac(), Ipv4Addr::new(10, 0, 9, 2)));
    sw.add_port(RED_PORT, "r2", RED, red_ep, NOW).unwrap();
    sw
}

fn net_of_vni(vni: u32) -> Option<Vni> {
    match vni {
        BLUE_VNI => Some(BLUE),
        RED_VNI => Some(RED),
        _ => None,
    }
}

/// Target `underlay_datagram`: `data` is a UDP payload arriving on the VXLAN port.
pub fn underlay_datagram(data: &[u8]) {
    let mut sw = switch();
    // Twice: the second pass meets what the first one taught the tables.
    for _ in 0..2 {
        let action = sw.process_from_underlay(NOW, PEER, data);
        check_underlay_action(&sw, data, action);
    }
    // A peer's probe is answered, not counted as overlay traffic (crate::wire::probe).
    let mut fed = if vswitch::wire::probe::Request::parse(data).is_some() {
        0
    } else {
        2
    };
    if data.first().is_some_and(|b| b & 1 == 1) {
        let action = sw.process_from_underlay(NOW, NOT_A_PEER, data);
        assert_eq!(action, Action::Drop(DropReason::UnknownPeer));
        fed += 1;
    }
    assert_eq!(sw.underlay.rx_packets, fed, "every datagram counted");
    let _ = (sw.fdb_info(NOW), sw.neigh_info(NOW), sw.peers_info(NOW));
    let _ = (sw.network_stats(), sw.networks_info());
}

fn check_underlay_action(sw: &Switch, data: &[u8], action: Action) {
    if let Action::Drop(_) = action {
        return;
    }
    if let Action::Probe { request, .. } = action {
        // Answered, not forwarded: only a probe request is (crate::wire::probe).
        assert!(vswitch::wire::probe::is_probe(data), "answered a non-probe");
        assert_eq!(request.len as usize, data.len());
        return;
    }
    let vx = vxlan::Packet::new_checked(data).expect("forwarded only valid VXLAN");
    let net = net_of_vni(vx.vni()).expect("forwarded only a configured VNI");
    let frame = vx.payload();
    assert!(Frame::new_checked(frame).is_ok(), "forwarded a runt");
    assert!(frame.len() <= MTU as usize + 14 + 4, "forwarded a giant");
    match action {
        Action::ToPort(p) => {
            assert_eq!(sw.topology().port(p).expect("an attached port").vni, net);
        }
        Action::Flood {
            network,
            except,
            to_peers,
        } => {
            assert_eq!(network, net, "flooded into another network");
            assert_eq!((except, to_peers), (None, false), "split horizon");
        }
        other => panic!("underlay traffic must not go to {other:?}"),
    }
}

/// Target `port_frame`: `data` is a frame written by the container behind `PORT_IN`.
pub fn port_frame(data: &[u8]) {
    let mut sw = switch();
    for _ in 0..2 {
        let mut frame = data.to_vec();
        let action = sw.process_from_port(NOW, PORT_IN, &mut frame);
        check_port_action(&sw, data, &frame, action);
    }
    let rx = sw.port_counters(PORT_IN).unwrap().rx_packets;
    assert_eq!(rx, 2, "every frame counted");
    let _ = (sw.fdb_info(NOW), sw.neigh_info(NOW), sw.network_stats());
}

fn check_port_action(sw: &Switch, original: &[u8], frame: &[u8], action: Action) {
    if let Action::Reply { port: p, answer } = action {
        assert_eq!(p, PORT_IN, "a reply goes back where the request came from");
        match answer {
            Answer::ArpReply { .. } => check_arp_reply(original, frame),
            Answer::Dns { .. } => {
                assert_eq!(frame, original, "a DNS answer is written elsewhere");
                check_dns_answer(sw, original, &answer);
            }
            Answer::DnsTcp { .. } => {
                assert_eq!(frame, original, "a DNS answer is written elsewhere");
                check_dns_tcp_answer(sw, original, &answer);
            }
        }
        return;
    }
    if let Action::Upstream { port, network } = action {
        assert_eq!((port, network), (PORT_IN, BLUE), "forwarded for whom asked");
        return;
    }
    assert_eq!(frame, original, "only a proxy-ARP reply rewrites the frame");
    match action {
        Action::ToPort(p) => {
            assert_ne!(p, PORT_IN, "hairpin");
            assert_eq!(sw.topology().port(p).unwrap().vni, BLUE, "crossed networks");
        }
        Action::ToVtep { vtep, vni } => {
            assert_eq!(vni.get(), BLUE_VNI);
            assert_eq!(vtep, PEER, "only blue's peer");
        }
        Action::Flood {
            network,
            except,
            to_peers,
        }
        | Action::FloodScoped {
            network,
            except,
            to_peers,
            ..
        } => {
            assert_eq!(network, BLUE);
            assert_eq!((except, to_peers), (Some(PORT_IN), true));
        }
        Action::Drop(_) | Action::Reply { .. } | Action::Upstream { .. } | Action::Probe { .. } => {
        }
    }
}

/// The address and MAC of blue's DNS (crate::switch::service).
pub fn blue_dns(sw: &Switch) -> (Ipv4Addr, MacAddr) {
    sw.topology().network(BLUE).unwrap().service().unwrap()
}

/// `data` as a DNS message in a UDP datagram from PORT_IN's container (10.0.9.2:40000) to
/// blue's DNS address, port 53.
pub fn dns_query_frame(sw: &Switch, data: &[u8]) -> Vec<u8> {
    use vswitch::wire::udp;
    let (own_ip, own_mac) = blue_dns(sw);
    let mut f = vec![0u8; 14 + udp::Repr::HEADERS_LEN + data.len()];
    {
        let mut eth = Frame::new_unchecked(&mut f[..]);
        eth.set_dst(own_mac);
        eth.set_src(endpoint_mac(2));
        eth.set_ethertype(EtherType::Ipv4);
    }
    f[14 + udp::Repr::HEADERS_LEN..].copy_from_slice(data);
    udp::Repr {
        src: Ipv4Addr::new(10, 0, 9, 2),
        dst: own_ip,
        src_port: 40000,
        dst_port: 53,
    }
    .emit(&mut f[14..], data.len());
    f
}

/// Sends the frame `make` builds around `data` from PORT_IN's container to blue's DNS address:
/// the switch, the frame as sent and as left, and the action; `None` when the frame is longer
/// than the network carries (then refused before anyone looks at it, which it checks).
fn to_dns_address(
    make: fn(&Switch, &[u8]) -> Vec<u8>,
    data: &[u8],
) -> Option<(Switch, Vec<u8>, Vec<u8>, Action)> {
    let mut sw = switch();
    let mut frame = make(&sw, data);
    let original = frame.clone();
    let action = sw.process_from_port(NOW, PORT_IN, &mut frame);
    if frame.len() > MTU as usize + 14 {
        assert_eq!(action, Action::Drop(DropReason::FrameTooBig));
        return None;
    }
    Some((sw, original, frame, action))
}

/// Target `dns_query`: `data` is a DNS message a container sends to its network's DNS address.
/// It is answered, forwarded, or dropped as malformed; nothing else.
pub fn dns_query(data: &[u8]) {
    let Some((sw, original, frame, action)) = to_dns_address(dns_query_frame, data) else {
        return;
    };
    match action {
        Action::Reply { .. } | Action::Upstream { .. } => {}
        Action::Drop(DropReason::DnsMalformed) => {}
        other => panic!("a datagram to the DNS address ended as {other:?}"),
    }
    check_port_action(&sw, &original, &frame, action);
    let s = sw
        .network_stats()
        .into_iter()
        .find(|n| n.vni == BLUE_VNI)
        .unwrap();
    let outcomes = s.dns.answered + s.dns.nxdomain + s.dns.refused + s.dns.forwarded;
    let dropped = s.counters.drops.get("dns_malformed").copied().unwrap_or(0);
    assert_eq!(outcomes + dropped, 1, "one query, one outcome");
}

/// `data` as a TCP segment from PORT_IN's container (10.0.9.2:40000) to blue's DNS address,
/// port 53: its first byte the flags, the next eight the sequence and acknowledgment numbers,
/// the rest the payload.
pub fn dns_tcp_frame(sw: &Switch, data: &[u8]) -> Vec<u8> {
    use vswitch::wire::tcp;
    let (own_ip, own_mac) = blue_dns(sw);
    let mut head = [0u8; 9];
    let n = data.len().min(9);
    head[..n].copy_from_slice(&data[..n]);
    let payload = &data[n..];
    let r = tcp::Repr {
        src: Ipv4Addr::new(10, 0, 9, 2),
        dst: own_ip,
        src_port: 40000,
        dst_port: 53,
        seq: u32::from_be_bytes([head[1], head[2], head[3], head[4]]),
        ack: u32::from_be_bytes([head[5], head[6], head[7], head[8]]),
        flags: tcp::Flags(head[0] & 0x3f),
        window: 64240,
        mss: None,
    };
    let mut f = vec![0u8; 14 + r.headers_len() + payload.len()];
    {
        let mut eth = Frame::new_unchecked(&mut f[..]);
        eth.set_dst(own_mac);
        eth.set_src(endpoint_mac(2));
        eth.set_ethertype(EtherType::Ipv4);
    }
    f[14 + r.headers_len()..].copy_from_slice(payload);
    r.emit(&mut f[14..], payload.len());
    f
}

/// Target `dns_tcp`: `data` is a TCP segment a container sends to its network's DNS address
/// (see `dns_tcp_frame`). It is answered with a segment, forwarded, taken quietly, or dropped
/// as malformed; nothing else.
pub fn dns_tcp(data: &[u8]) {
    let Some((sw, original, frame, action)) = to_dns_address(dns_tcp_frame, data) else {
        return;
    };
    match action {
        Action::Reply {
            answer: Answer::DnsTcp { .. },
            ..
        }
        | Action::Upstream { .. } => {}
        Action::Drop(DropReason::DnsMalformed | DropReason::DnsTcpQuiet) => {}
        other => panic!("a segment to the DNS address ended as {other:?}"),
    }
    check_port_action(&sw, &original, &frame, action);
}

/// `answer` written for the TCP segment `request` must be a segment from blue's DNS address,
/// port 53, to the asker, with valid checksums, no more payload than the MSS, and, when it
/// answers queries, whole answers (each behind its length) with the IDs of the leading
/// queries, acknowledging exactly the queries answered.
fn check_dns_tcp_answer(sw: &Switch, request: &[u8], answer: &Answer) {
    use vswitch::wire::{checksum, ipv4, tcp};
    let mut out = vec![0u8; Answer::MAX_LEN];
    let n = sw.write_answer(answer, request, &mut out);
    assert!(n > 0, "a decided answer is written");
    let (own_ip, own_mac) = blue_dns(sw);
    let req = Frame::new_checked(request).unwrap();
    let rip = ipv4::Packet::new_checked(req.payload()).unwrap();
    let rt = tcp::Packet::new_checked(rip.payload()).unwrap();
    let eth = Frame::new_checked(&out[..n]).expect("answer parses as Ethernet");
    assert_eq!((eth.src(), eth.dst()), (own_mac, req.src()));
    let ip = ipv4::Packet::new_checked(eth.payload()).expect("answer parses as IPv4");
    assert_eq!((ip.src(), ip.dst()), (own_ip, rip.src()));
    let seg = &eth.payload()[20..usize::from(ip.total_len())];
    let sum = checksum::add(
        checksum::pseudo_v4(own_ip, rip.src(), ipv4::PROTO_TCP, seg.len()),
        seg,
    );
    assert_eq!(checksum::finish(sum), 0, "TCP checksum");
    let t = tcp::Packet::new_checked(seg).expect("answer parses as TCP");
    assert_eq!((t.src_port(), t.dst_port()), (53, rt.src_port()));
    assert!(t.flags().has(tcp::Flags::ACK));
    let m = t.payload();
    assert!(m.len() <= 1450 - 40, "{} bytes of payload", m.len());
    let (mut at, mut asked) = (0, rt.payload());
    while at < m.len() {
        let len = usize::from(u16::from_be_bytes([m[at], m[at + 1]]));
        let a = &m[at + 2..at + 2 + len];
        let (q, used) = vswitch::switch::dns_tcp::first_query(asked).expect("answers a query");
        assert_eq!(a[..2], q[..2], "the query's ID");
        assert!(a[2] & 0x80 != 0, "QR set");
        at += 2 + len;
        asked = &asked[used..];
    }
    let answered = (rt.payload().len() - asked.len()) as u32;
    if !m.is_empty() {
        assert_eq!(
            t.ack(),
            rt.seq().wrapping_add(answered),
            "acknowledges what it answered"
        );
        assert_eq!(t.seq(), rt.ack(), "from where the client stands");
    }
}

/// `answer` written for `request` must be a DNS response from blue's DNS address to the
/// asker, port 53 to its port, with the query's ID, QR set, within 512 bytes.
fn check_dns_answer(sw: &Switch, request: &[u8], answer: &Answer) {
    use vswitch::wire::{ipv4, udp};
    let mut out = vec![0u8; Answer::MAX_LEN];
    let n = sw.write_answer(answer, request, &mut out);
    assert!(n > 0, "a decided answer is written");
    let (own_ip, own_mac) = blue_dns(sw);
    let req = Frame::new_checked(request).unwrap();
    let eth = Frame::new_checked(&out[..n]).expect("answer parses as Ethernet");
    assert_eq!((eth.src(), eth.dst()), (own_mac, req.src()));
    let ip = ipv4::Packet::new_checked(eth.payload()).expect("answer parses as IPv4");
    assert_eq!(ip.src(), own_ip);
    let u = udp::Packet::new_checked(ip.payload()).expect("answer parses as UDP");
    assert_eq!(u.src_port(), 53);
    let m = u.payload();
    assert!(m.len() <= 512, "an answer of {} bytes", m.len());
    let q = &req.payload()[28..];
    assert_eq!(m[..2], q[..2], "the query's ID");
    assert!(m[2] & 0x80 != 0, "QR set");
}

/// `reply` must be the proxy-ARP answer to `request`: still Ethernet/IPv4 ARP, same length,
/// addressed back to the requester, and answering the question asked.
fn check_arp_reply(request: &[u8], reply: &[u8]) {
    assert_eq!(reply.len(), request.len());
    let req_eth = Frame::new_checked(request).expect("answered a runt");
    let req = arp::Packet::new_checked(req_eth.payload()).expect("answered a non-ARP frame");
    assert_eq!(req.operation(), arp::Operation::Request);

    let eth = Frame::new_checked(reply).expect("reply parses as Ethernet");
    assert_eq!(eth.ethertype(), EtherType::Arp);
    let p = arp::Packet::new_checked(eth.payload()).expect("reply parses as ARP");
    assert_eq!(p.operation(), arp::Operation::Reply);
    assert_eq!(eth.dst(), req_eth.src());
    assert_eq!(eth.src(), p.sender_mac());
    assert_eq!(p.sender_ip(), req.target_ip());
    assert_eq!(
        (p.target_mac(), p.target_ip()),
        (req.sender_mac(), req.sender_ip())
    );
    assert!(p.sender_mac().is_unicast_source());
    assert_ne!(
        p.sender_mac(),
        req.sender_mac(),
        "answered its own question"
    );
}

/// Target `config`: `data` is the text of a `node.toml`.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let cfg = match Config::from_str(text, "fuzz.toml") {
        Ok(cfg) => cfg,
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.starts_with("fuzz.toml"), "error names the file: {msg}");
            return;
        }
    };
    // What `Config`'s contract promises about a loaded file.
    let mut vnis: Vec<u32> = cfg.networks.iter().map(|n| n.vni.get()).collect();
    vnis.sort_unstable();
    vnis.dedup();
    assert_eq!(vnis.len(), cfg.networks.len(), "VNIs unique");
    assert!(vnis.iter().all(|v| (1..=Vni::MAX).contains(v)));
    let mut names: Vec<&str> = cfg.networks.iter().map(|n| n.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), cfg.networks.len(), "network names unique");
    for n in &cfg.networks {
        assert!(!n.name.is_empty());
        assert_eq!(n.subnet, n.subnet.trunc(), "subnet canonical");
        for p in &n.peers {
            assert!(cfg.peer(p).is_some(), "peer {p:?} of {:?} resolves", n.name);
        }
    }
    for mtu in [0, 575, 626, 1500, 9000, 65535, u32::MAX] {
        let _ = cfg.validate_mtus(mtu).map_err(|e| e.to_string());
        for n in &cfg.networks {
            let _ = n.effective_mtu(mtu);
        }
    }
    // The switch vswitchd would build from it (bounded, so a huge fdb_max_entries does not make
    // the fuzzer run out of memory on the preallocated tables).
    if cfg.node.fdb_max_entries <= 4096 && cfg.networks.len() <= 64 {
        let mut sw = Switch::new(switch_spec(&cfg, 1500));
        for n in &cfg.networks {
            assert_eq!(sw.network_by_name(&n.name), Some(n.vni));
        }
        let _ = sw.process_from_underlay(NOW, NOT_A_PEER, &[0x08; 60]);
        sw.expire(NOW);
        let _ = (sw.networks_info(), sw.peers_info(NOW));
    }
}

/// `SwitchSpec` from a `Config`, as `vswitchd` makes it.
pub fn switch_spec(cfg: &Config, underlay_mtu: u32) -> SwitchSpec {
    cfg.switch_spec(underlay_mtu)
}

// ----- ESP receive -----

use vswitch::crypto::{EspConfig, EspDrop, EspNetwork, EspTable};

pub const ESP_NOW: u64 = 1_700_000_000;
const HOST_A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const HOST_B: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const SECRET: [u8; 32] = [7; 32];

fn esp_table(local: Ipv4Addr, peer: Ipv4Addr) -> EspTable {
    EspTable::new(EspConfig {
        local_ip: local,
        boot: 1,
        rekey_interval_secs: 3600,
        networks: vec![EspNetwork {
            vni: BLUE_VNI,
            secret: SECRET,
            peers: vec![peer],
        }],
    })
    .expect("valid ESP config")
}

/// What B seals for A: inner UDP header, VXLAN header for blue, a small frame.
pub fn esp_plaintext() -> Vec<u8> {
    let frame = [0xffu8; 6]
        .into_iter()
        .chain(endpoint_mac(9).0)
        .chain([0x08, 0x06])
        .chain([0u8; 28])
        .collect::<Vec<u8>>();
    let mut p = vec![0u8; 16];
    vswitch::io::underlay::write_udp_header(&mut p[..8], 50000, 4789, 8 + frame.len());
    vxlan::emit(&mut p[8..16], BLUE_VNI);
    p.extend_from_slice(&frame);
    p
}

/// A genuine ESP packet from B to A (SPI to ICV).
pub fn esp_genuine(seals: usize) -> Vec<Vec<u8>> {
    let mut b = esp_table(HOST_B, HOST_A);
    let plain = esp_plaintext();
    (0..seals)
        .map(|_| {
            let mut buf = vec![0u8; 256];
            let n = b
                .seal_from(ESP_NOW, BLUE_VNI, HOST_A, 0, &plain, &mut buf, 0)
                .expect("seal");
            buf.truncate(n);
            buf
        })
        .collect()
}

/// Any ESP-in-UDP payload from a peer. The first byte picks a mode: raw bytes (must never
/// open, nor leave an SA behind); a genuine packet XORed with the rest (must open, to the same
/// plaintext, only if unchanged: anything else accepted would be a forgery); a genuine packet
/// twice (the second is a replay), then the rest as raw bytes.
pub fn esp_receive(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut a = esp_table(HOST_A, HOST_B);
    match mode % 3 {
        0 => {
            let mut buf = rest.to_vec();
            assert!(
                a.open(ESP_NOW, 0, HOST_B, &mut buf).is_err(),
                "raw bytes opened"
            );
            assert!(a.sa_list(ESP_NOW).is_empty(), "raw bytes installed an SA");
        }
        1 => {
            let original = esp_genuine(1).remove(0);
            let mut pkt = original.clone();
            if !rest.is_empty() {
                for (i, b) in pkt.iter_mut().enumerate() {
                    *b ^= rest[i % rest.len()];
                }
            }
            let changed = pkt != original;
            match a.open(ESP_NOW, 0, HOST_B, &mut pkt) {
                Ok((vni, range)) => {
                    assert!(!changed, "a modified ESP packet was accepted");
                    assert_eq!(vni, BLUE_VNI);
                    assert_eq!(&pkt[range], &esp_plaintext()[..]);
                }
                Err(_) => assert!(changed, "a genuine packet was refused"),
            }
        }
        _ => {
            let mut p = esp_genuine(1).remove(0);
            let mut again = p.clone();
            assert!(
                a.open(ESP_NOW, 0, HOST_B, &mut p).is_ok(),
                "genuine packet refused"
            );
            assert_eq!(a.open(ESP_NOW, 0, HOST_B, &mut again), Err(EspDrop::Replay));
            let mut buf = rest.to_vec();
            let _ = a.open(ESP_NOW, 0, HOST_B, &mut buf);
        }
    }
}

// ----- offload: super-frames a container hands its TAP, runs the coalescer builds -----

const SLOT: usize = 2048;
const SLOTS: usize = 64;

/// Where the payload of a TCP or UDP/IPv4-or-IPv6 frame starts, as the segmenter reads it.
fn payload_start(hdr: &vswitch::offload::vnet::Header, frame: &[u8]) -> usize {
    let l4 = usize::from(hdr.csum_start);
    if hdr.gso_kind() == vswitch::offload::vnet::GSO_UDP_L4 {
        l4 + 8
    } else {
        l4 + usize::from(frame[l4 + 12] >> 4) * 4
    }
}

/// Input: a mode byte. Even: a 10-byte virtio_net_hdr and a super-frame, cut by
/// `tso::segment`: no panic, and when it succeeds every segment fits its slot and the
/// segments' payloads are the super-frame's. Odd: frames (2-byte length prefixes) pushed into
/// the coalescer as the worker does (UDP too when bit 1 is set); every run it returns, cut back
/// by the segmenter, carries exactly the payloads of the frames that joined it.
pub fn offload(data: &[u8]) {
    use vswitch::offload::{gro::Coalescer, tso, vnet};
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut out = vec![0u8; SLOT * SLOTS];
    let mut lens = [0usize; SLOTS];
    if mode % 2 == 0 {
        let Some(hdr) = vnet::Header::parse(rest) else {
            return;
        };
        let frame = &rest[vnet::HDR_LEN..];
        if let Ok(n) = tso::segment(&hdr, frame, &mut out, SLOT, 40, &mut lens) {
            let start = payload_start(&hdr, frame);
            let mut joined = Vec::new();
            for k in 0..n {
                assert!(40 + lens[k] <= SLOT, "segment {k} overflows its slot");
                let seg = &out[k * SLOT + 40..k * SLOT + 40 + lens[k]];
                joined.extend_from_slice(&seg[start..]);
            }
            assert_eq!(joined, frame[start..], "segments carry the payload");
        }
        return;
    }
    let udp = mode & 2 != 0;
    let mut c = Coalescer::new();
    let mut frames = Vec::new();
    let mut at = rest;
    while at.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([at[0], at[1]])).min(at.len() - 2);
        frames.push(&at[2..2 + len]);
        at = &at[2 + len..];
    }
    // The frames of the run in progress: what the run must give back.
    let mut run: Vec<&[u8]> = Vec::new();
    let mut check = |c: &mut Coalescer, run: &mut Vec<&[u8]>| {
        let Some((hdr, merged)) = c.take() else {
            assert!(run.is_empty());
            return;
        };
        match hdr {
            None => {
                assert_eq!(run.len(), 1, "a run of one comes back as it went in");
                assert_eq!(merged, run[0]);
            }
            Some(hdr) => {
                let n = tso::segment(&hdr, merged, &mut out, SLOT, 0, &mut lens)
                    .expect("a coalesced run cuts back");
                assert_eq!(n, run.len(), "as many segments as frames joined");
                for (k, f) in run.iter().enumerate() {
                    let seg = &out[k * SLOT..k * SLOT + lens[k]];
                    let start = payload_start(&hdr, seg);
                    assert_eq!(seg.len(), f.len(), "segment {k} length");
                    assert_eq!(seg[start..], f[start..], "segment {k} payload");
                }
            }
        }
        run.clear();
    };
    for f in frames {
        if c.push(1, f, udp) {
            run.push(f);
            continue;
        }
        check(&mut c, &mut run);
        if c.push(1, f, udp) {
            run.push(f);
        }
    }
    check(&mut c, &mut run);
}
