//! The hot path does not allocate (STYLE.md "Hot path": "A test with a counting allocator keeps
//! it so").
//!
//! A global allocator wraps `System` and counts `alloc`/`alloc_zeroed`/`realloc` calls made by
//! the current thread while that thread has armed it. Both the armed flag and the count are
//! thread-local: the test harness runs tests on several threads, and their setup allocations
//! must not land in another test's count.
//!
//! Setup (switch, ports, frames, the driver's buffers) may allocate; a warm-up pass sends every
//! frame kind once so the tables hold their entries. Then, armed, 10,000 rounds of a realistic
//! mix go through `Switch` and through what the driver (`dataplane::worker`) does per packet:
//! flood target lists, flow hash, the outer UDP + VXLAN headers written into headroom, and the
//! `note_*` accounting.
//!
//! `Underlay::write_vxlan_headers` needs an `Underlay`, which binds sockets (and a raw one needs
//! CAP_NET_RAW); the test calls what it consists of instead: the free function
//! `io::underlay::write_udp_header` and `wire::vxlan::emit`.
//!
//! `PacketSocket::recv` (an AF_PACKET port) is counted on real frames, through its TPACKET_V3
//! ring and through recvmsg; that test needs root for its network namespace.

mod common;

use common::frames::{
    arp_request, dns_query, dns_query_frame, dns_tcp_frame, udp_frame, vxlan_datagram,
};
use domain::base::iana::Rtype;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::Ipv4Addr;
use vswitch::control::views::ApiViews;
use vswitch::io::underlay::{write_udp_header, UDP_HEADER_LEN, VXLAN_HEADERS_LEN};
use vswitch::switch::dns::UpstreamQuery;
use vswitch::switch::multicast::Scope;
use vswitch::switch::topology::Output;
use vswitch::switch::{
    Action, Answer, DropReason, NetworkSpec, PortId, Switch, SwitchSpec, Timestamp, Vni, VtepAddr,
};
use vswitch::wire::{flow, vxlan, MacAddr};

// ----- the counting allocator -----

struct Counting;

thread_local! {
    // Const-initialised `Cell`s of `Copy` types: reading them never allocates nor registers a
    // destructor, so the allocator may touch them.
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
    /// Size of the first allocation counted, to say what to look for when the test fails.
    static FIRST_SIZE: Cell<usize> = const { Cell::new(0) };
}

fn count(layout: Layout) {
    // `try_with`: during thread teardown the slots may be gone; such allocations are not ours.
    let _ = ARMED.try_with(|armed| {
        if armed.get() {
            ALLOCS.with(|n| {
                if n.get() == 0 {
                    FIRST_SIZE.with(|s| s.set(layout.size()));
                }
                n.set(n.get() + 1);
            });
        }
    });
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout);
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout);
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(Layout::from_size_align_unchecked(new_size, layout.align()));
        System.realloc(ptr, layout, new_size)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f` with this thread's counter armed; returns how many allocations it made and the size
/// of the first one.
fn allocations_in<R>(f: impl FnOnce() -> R) -> (u64, usize, R) {
    ALLOCS.with(|n| n.set(0));
    FIRST_SIZE.with(|s| s.set(0));
    ARMED.with(|a| a.set(true));
    let r = f();
    ARMED.with(|a| a.set(false));
    (ALLOCS.with(Cell::get), FIRST_SIZE.with(Cell::get), r)
}

// ----- the world (as in tests/switch_core.rs) -----

const VTEP_B: VtepAddr = VtepAddr(Ipv4Addr::new(192, 0, 2, 2));
const VTEP_C: VtepAddr = VtepAddr(Ipv4Addr::new(192, 0, 2, 3));
const VTEP_D: VtepAddr = VtepAddr(Ipv4Addr::new(192, 0, 2, 4));
const NOT_A_PEER: VtepAddr = VtepAddr(Ipv4Addr::new(192, 0, 2, 99));

const BLUE: Vni = Vni::of(42);
const GREEN: Vni = Vni::of(43);
const MTU: usize = 1450;

/// Blue: P1 carries an attached endpoint (`mac(2)`, 10.0.9.2); P2, P3 plain.
const P1: PortId = PortId(1);
const P2: PortId = PortId(2);
const P3: PortId = PortId(3);
/// Green.
const G1: PortId = PortId(11);
const G2: PortId = PortId(12);

const T0: Timestamp = Timestamp(1_000);
const ROUNDS: u64 = 10_000;

fn vni(v: u32) -> Vni {
    Vni::new(v).unwrap()
}

fn mac(n: u8) -> MacAddr {
    MacAddr([0x02, 0x42, 0x0a, 0x00, 0x09, n])
}

fn ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 9, n)
}

fn switch() -> Switch {
    let net = |name: &str, v: u32, peers: &[(&str, VtepAddr)]| NetworkSpec {
        name: name.to_string(),
        vni: vni(v),
        subnet: "10.0.9.0/24".parse().unwrap(),
        mtu: MTU as u32,
        peers: peers.iter().map(|(n, a)| (n.to_string(), *a)).collect(),
        encrypted: false,
    };
    let mut sw = Switch::new(SwitchSpec {
        networks: vec![
            net("blue", 42, &[("b", VTEP_B), ("c", VTEP_C)]),
            net("green", 43, &[("b", VTEP_B), ("d", VTEP_D)]),
        ],
        peers: vec![
            ("b".to_string(), VTEP_B),
            ("c".to_string(), VTEP_C),
            ("d".to_string(), VTEP_D),
        ],
        fdb_max_entries: 1024,
        aging_ms: 300_000,
    });
    sw.add_port(P1, "c1", BLUE, Some((mac(2), ip(2))), T0)
        .unwrap();
    sw.add_port(P2, "port2", BLUE, None, T0).unwrap();
    sw.add_port(P3, "port3", BLUE, None, T0).unwrap();
    sw.add_port(G1, "g1", GREEN, None, T0).unwrap();
    sw.add_port(G2, "g2", GREEN, None, T0).unwrap();
    sw
}

// ----- frame builders (setup only) -----

// ----- a driver that does per packet what `dataplane::worker` does, minus the syscalls -----

const HEADROOM: usize = 40;
const VXLAN_START: usize = HEADROOM - VXLAN_HEADERS_LEN;

struct Driver {
    /// One receive buffer with headroom for the outer headers, as the worker has.
    buf: Vec<u8>,
    /// Where answers are written (proxy-ARP, DNS), as the worker's answer buffer.
    answer: Vec<u8>,
    /// The forwarder's channel, as the worker holds it (its slots made once), and its far end.
    upstream: crossbeam_channel::Sender<UpstreamQuery>,
    upstream_rx: crossbeam_channel::Receiver<UpstreamQuery>,
    /// What would have gone out, so the work cannot be optimised away and the mix is checked.
    port_sends: u64,
    vtep_sends: u64,
    checksum: u64,
}

impl Driver {
    fn new() -> Driver {
        let (upstream, upstream_rx) = crossbeam_channel::bounded(16);
        Driver {
            buf: vec![0u8; HEADROOM + 65536],
            answer: vec![0u8; Answer::MAX_LEN],
            upstream,
            upstream_rx,
            port_sends: 0,
            vtep_sends: 0,
            checksum: 0,
        }
    }

    /// A frame from local port `id`: copied into the buffer as a receive would, then handled
    /// like `Worker::forward_local_frame`.
    fn port_rx(&mut self, sw: &mut Switch, now: Timestamp, id: PortId, frame: &[u8]) -> Action {
        let len = frame.len();
        self.buf[HEADROOM..HEADROOM + len].copy_from_slice(frame);
        let action = sw.process_from_port(now, id, &mut self.buf[HEADROOM..HEADROOM + len]);
        match action {
            Action::Drop(_) | Action::Probe { .. } => {}
            Action::ToPort(p) => self.send_to_port(sw, p, len),
            Action::Reply { port, answer } => {
                let n = sw.write_answer(
                    &answer,
                    &self.buf[HEADROOM..HEADROOM + len],
                    &mut self.answer,
                );
                self.checksum = self.checksum.wrapping_add(u64::from(self.answer[n - 1]));
                self.send_to_port(sw, port, n);
            }
            Action::Upstream { port, network } => {
                // As `Worker::ask_upstream`: the query by value into a slot; the forwarder
                // (another thread) takes it.
                let q = UpstreamQuery::new(port, network, &self.buf[HEADROOM..HEADROOM + len]);
                self.upstream.try_send(q.expect("fits")).expect("room");
                let _ = self.upstream_rx.try_recv();
            }
            Action::ToVtep { vtep, vni } => {
                self.encap_headers(len, vni);
                self.send_to_vtep(sw, vtep, vni, len);
            }
            Action::Flood { .. } | Action::FloodScoped { .. } => {
                let (network, except, to_peers, scope) = action.flood().expect("a flood");
                // As the worker does: the snapshot held across the sends, one place expands.
                let topo = std::sync::Arc::clone(sw.topology());
                let mut encapped = false;
                for out in topo.flood_set_scoped(network, except, to_peers, scope) {
                    match out {
                        Output::Port(p) => self.send_to_port(sw, p, len),
                        Output::Vtep(v) => {
                            if !encapped {
                                self.encap_headers(len, network);
                                encapped = true;
                            }
                            self.send_to_vtep(sw, v, network, len);
                        }
                    }
                }
            }
        }
        action
    }

    /// A datagram from the underlay, handled like `Worker::drain_underlay`.
    fn underlay_rx(
        &mut self,
        sw: &mut Switch,
        now: Timestamp,
        src: VtepAddr,
        datagram: &[u8],
    ) -> Action {
        let n = datagram.len();
        self.buf[..n].copy_from_slice(datagram);
        let action = sw.process_from_underlay(now, src, &self.buf[..n]);
        let len = n.saturating_sub(vxlan::HEADER_LEN);
        match action {
            Action::ToPort(p) | Action::Reply { port: p, .. } => self.send_to_port(sw, p, len),
            Action::Flood { .. } | Action::FloodScoped { .. } => {
                let (network, except, _, scope) = action.flood().expect("a flood");
                self.flood_local(sw, network, except, scope, len)
            }
            // Probes are answered by the caller, which knows the port they came from.
            Action::Drop(_)
            | Action::ToVtep { .. }
            | Action::Upstream { .. }
            | Action::Probe { .. } => {}
        }
        action
    }

    /// `Underlay::write_vxlan_headers`, spelled out (see the module comment).
    fn encap_headers(&mut self, len: usize, vni: Vni) {
        let src_port = flow::source_port(&self.buf[HEADROOM..HEADROOM + len]);
        let hdrs = &mut self.buf[VXLAN_START..HEADROOM];
        write_udp_header(hdrs, src_port, vxlan::DEFAULT_PORT, vxlan::HEADER_LEN + len);
        vxlan::emit(&mut hdrs[UDP_HEADER_LEN..VXLAN_HEADERS_LEN], vni.get());
    }

    fn send_to_vtep(&mut self, sw: &mut Switch, vtep: VtepAddr, vni: Vni, len: usize) {
        self.vtep_sends += 1;
        let src_port = u16::from_be_bytes([self.buf[VXLAN_START], self.buf[VXLAN_START + 1]]);
        self.checksum = self.checksum.wrapping_add(u64::from(src_port));
        sw.note_vtep_tx(vni, vtep, VXLAN_HEADERS_LEN + len);
    }

    fn send_to_port(&mut self, sw: &mut Switch, id: PortId, len: usize) {
        self.port_sends += 1;
        sw.note_port_tx(id, len);
    }

    fn flood_local(
        &mut self,
        sw: &mut Switch,
        network: Vni,
        except: Option<PortId>,
        scope: Scope,
        len: usize,
    ) {
        let topo = std::sync::Arc::clone(sw.topology());
        for out in topo.flood_set_scoped(network, except, false, scope) {
            if let Output::Port(p) = out {
                self.send_to_port(sw, p, len);
            }
        }
    }
}

// ----- the mix -----

/// One frame of the mix and the action the core must take for it.
enum Input {
    Port(PortId, Vec<u8>),
    Underlay(VtepAddr, Vec<u8>),
}

fn mix() -> Vec<(&'static str, Input, Action)> {
    use Input::{Port, Underlay};
    // Remote stations: mac(0x20) behind B, mac(0x30) behind C (blue); mac(0x40) behind D (green).
    let to_remote = |n: u8, dst: u8| udp_frame(mac(n), mac(dst), ip(n), ip(dst), 1000);
    let flood_blue_from = |p| Action::Flood {
        network: BLUE,
        except: Some(p),
        to_peers: true,
    };
    let flood_blue_decap = Action::Flood {
        network: BLUE,
        except: None,
        to_peers: false,
    };
    let big = udp_frame(mac(3), mac(2), ip(3), ip(2), MTU); // 14 + 28 + MTU > 14 + MTU
    let mut no_vni_flag = vxlan_datagram(42, &to_remote(0x20, 2));
    no_vni_flag[0] = 0;
    vec![
        // From local ports.
        (
            "port: unicast to a local port",
            Port(P2, udp_frame(mac(3), mac(2), ip(3), ip(2), 1400)),
            Action::ToPort(P1),
        ),
        (
            "port: unicast to a remote VTEP",
            Port(P2, udp_frame(mac(3), mac(0x20), ip(3), ip(0x20), 1400)),
            Action::ToVtep {
                vtep: VTEP_B,
                vni: vni(42),
            },
        ),
        (
            "port: small unicast to a remote VTEP",
            Port(P1, udp_frame(mac(2), mac(0x30), ip(2), ip(0x30), 36)),
            Action::ToVtep {
                vtep: VTEP_C,
                vni: vni(42),
            },
        ),
        (
            "port: broadcast (ARP for an unknown address)",
            Port(P3, arp_request(mac(4), ip(4), ip(77))),
            flood_blue_from(P3),
        ),
        (
            "port: unknown unicast",
            Port(P2, udp_frame(mac(3), mac(0x77), ip(3), ip(77), 200)),
            flood_blue_from(P2),
        ),
        (
            "port: ARP answered by proxy-ARP",
            Port(P2, arp_request(mac(3), ip(3), ip(2))),
            Action::Reply {
                port: P2,
                answer: Answer::ArpReply {
                    mac: mac(2),
                    ip: ip(2),
                    to_mac: mac(3),
                    to_ip: ip(3),
                },
            },
        ),
        (
            "port: green unicast to a local port",
            Port(G1, udp_frame(mac(0x11), mac(0x12), ip(0x11), ip(0x12), 500)),
            Action::ToPort(G2),
        ),
        (
            "port: green unicast to a remote VTEP",
            Port(G2, udp_frame(mac(0x12), mac(0x40), ip(0x12), ip(0x40), 500)),
            Action::ToVtep {
                vtep: VTEP_D,
                vni: vni(43),
            },
        ),
        (
            "port: hairpin",
            Port(P1, udp_frame(mac(2), mac(2), ip(2), ip(2), 64)),
            Action::Drop(DropReason::Hairpin),
        ),
        (
            "port: frame too big",
            Port(P2, big),
            Action::Drop(DropReason::FrameTooBig),
        ),
        (
            "port: truncated",
            Port(P2, vec![0xff; 10]),
            Action::Drop(DropReason::FrameTruncated),
        ),
        (
            "port: unknown port",
            Port(PortId(99), udp_frame(mac(3), mac(2), ip(3), ip(2), 64)),
            Action::Drop(DropReason::UnknownPort),
        ),
        // From the underlay.
        (
            "underlay: unicast to a local port",
            Underlay(VTEP_B, vxlan_datagram(42, &to_remote(0x20, 2))),
            Action::ToPort(P1),
        ),
        (
            "underlay: broadcast",
            Underlay(
                VTEP_C,
                vxlan_datagram(42, &arp_request(mac(0x30), ip(0x30), ip(9))),
            ),
            flood_blue_decap,
        ),
        (
            "underlay: green unicast to a local port",
            Underlay(VTEP_D, vxlan_datagram(43, &to_remote(0x40, 0x12))),
            Action::ToPort(G2),
        ),
        (
            "port: DNS query for an endpoint, answered",
            Port(P2, dns_to_blue(3, "c1.blue")),
            Action::Reply {
                port: P2,
                answer: Answer::Dns {
                    network: BLUE,
                    reply: vswitch::switch::dns::Reply::Address(ip(2)),
                },
            },
        ),
        (
            "port: DNS query over TCP for an endpoint, answered",
            Port(P2, dns_tcp_to_blue(3, "c1.blue")),
            Action::Reply {
                port: P2,
                answer: Answer::DnsTcp {
                    network: BLUE,
                    step: vswitch::switch::dns_tcp::Step::Answer(
                        vswitch::switch::dns::Reply::Address(ip(2)),
                    ),
                },
            },
        ),
        (
            "port: DNS query for another name, forwarded",
            Port(P2, dns_to_blue(3, "example.org")),
            Action::Upstream {
                port: P2,
                network: BLUE,
            },
        ),
        (
            "underlay: split horizon",
            Underlay(VTEP_B, vxlan_datagram(42, &to_remote(0x20, 0x30))),
            Action::Drop(DropReason::SplitHorizon),
        ),
        (
            "underlay: unknown VNI",
            Underlay(VTEP_B, vxlan_datagram(99, &to_remote(0x20, 2))),
            Action::Drop(DropReason::UnknownVni),
        ),
        (
            "underlay: truncated",
            Underlay(VTEP_B, vec![vxlan::FLAG_I, 0, 0, 0]),
            Action::Drop(DropReason::VxlanTruncated),
        ),
        (
            "underlay: no VNI flag",
            Underlay(VTEP_B, no_vni_flag),
            Action::Drop(DropReason::VxlanNoVniFlag),
        ),
        (
            "underlay: unknown peer",
            Underlay(NOT_A_PEER, vxlan_datagram(42, &to_remote(0x20, 2))),
            Action::Drop(DropReason::UnknownPeer),
        ),
        (
            "underlay: peer not in the network",
            Underlay(VTEP_D, vxlan_datagram(42, &to_remote(0x40, 2))),
            Action::Drop(DropReason::PeerNotInNetwork),
        ),
    ]
}

/// A DNS query for `name` from station `n` to blue's DNS address (10.0.9.1).
fn dns_to_blue(n: u8, name: &str) -> Vec<u8> {
    let own = vswitch::switch::service::station_mac(42, ip(1));
    dns_query_frame(
        mac(n),
        own,
        ip(n),
        ip(1),
        40000,
        &dns_query(name, Rtype::A, 7),
    )
}

/// The same query over TCP, in a segment of an open connection.
fn dns_tcp_to_blue(n: u8, name: &str) -> Vec<u8> {
    let own = vswitch::switch::service::station_mac(42, ip(1));
    let msg = dns_query(name, Rtype::A, 7);
    let mut payload = (msg.len() as u16).to_be_bytes().to_vec();
    payload.extend_from_slice(&msg);
    let flags = vswitch::wire::tcp::Flags::ACK | vswitch::wire::tcp::Flags::PSH;
    dns_tcp_frame(mac(n), own, ip(n), ip(1), 40001, 1, 1, flags, &payload)
}

/// Teaches the switch where the stations of the mix live, as earlier traffic would have.
fn learn_stations(sw: &mut Switch, d: &mut Driver) {
    let hello = |n: u8| udp_frame(mac(n), MacAddr::BROADCAST, ip(n), ip(255), 20);
    for (src, v, n) in [(VTEP_B, 42, 0x20), (VTEP_C, 42, 0x30), (VTEP_D, 43, 0x40)] {
        let _ = d.underlay_rx(sw, T0, src, &vxlan_datagram(v, &hello(n)));
    }
    for (p, n) in [(P2, 3), (P3, 4), (G1, 0x11), (G2, 0x12)] {
        let _ = d.port_rx(sw, T0, p, &hello(n));
    }
}

fn run_mix(sw: &mut Switch, d: &mut Driver, mix: &[(&str, Input, Action)], now: Timestamp) {
    for (what, input, expected) in mix {
        let got = match input {
            Input::Port(p, f) => d.port_rx(sw, now, *p, f),
            Input::Underlay(src, dg) => d.underlay_rx(sw, now, *src, dg),
        };
        // `assert_eq!` formats only when it fails.
        assert_eq!(got, *expected, "{what}");
    }
}

#[test]
fn hot_path_does_not_allocate() {
    let mut sw = switch();
    let mut d = Driver::new();
    let mix = mix();
    learn_stations(&mut sw, &mut d);
    let before = (d.port_sends, d.vtep_sends);
    run_mix(&mut sw, &mut d, &mix, T0);
    let per_round = (d.port_sends - before.0, d.vtep_sends - before.1);

    let (allocs, first, ()) = allocations_in(|| {
        for i in 0..ROUNDS {
            // Time moves as it would between batches; the worker expires once a second.
            let now = T0.plus_millis(i / 10);
            run_mix(&mut sw, &mut d, &mix, now);
            if i % 1000 == 999 {
                sw.expire(now);
            }
        }
    });
    assert_eq!(
        allocs, 0,
        "the hot path allocated {allocs} times in {ROUNDS} rounds of the mix (first: {first} bytes)"
    );
    // Every round sent what the warm-up round sent, and the counters saw it.
    assert_eq!(d.port_sends, before.0 + per_round.0 * (ROUNDS + 1));
    assert_eq!(d.vtep_sends, before.1 + per_round.1 * (ROUNDS + 1));
    assert!(d.checksum > 0);
    let blue = &sw.network_stats()[0];
    assert!(blue.events.proxy_arp_replies > ROUNDS);
    assert!(blue.dns.answered > ROUNDS && blue.dns.forwarded > ROUNDS);
}

/// Steady churn at the cap: a container sending from a new random source MAC every 250 ms
/// while learned entries age out after 300 s, so about 1,200 MACs would be live and the table
/// (cap 1,024) sits at its cap, learning as entries age out. Capacity is reserved when the
/// network is made, so this must not allocate either.
///
/// It did, once per network, until the tables reserved twice their cap: aging leaves
/// tombstones, and hashbrown rehashes in place only while at most half the room is live
/// (see `switch::fdb::reservation`).
#[test]
fn learning_new_macs_near_the_cap_does_not_allocate() {
    let mut sw = switch();
    let mut d = Driver::new();
    let mut frame = udp_frame(mac(3), mac(2), ip(3), ip(2), 64);
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    // One frame to warm up the driver's path.
    let _ = d.port_rx(&mut sw, T0, P2, &frame);

    let (allocs, first, ()) = allocations_in(|| {
        for i in 0..ROUNDS * 30 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let b = state.to_be_bytes();
            // Locally administered unicast source.
            frame[6..12].copy_from_slice(&[0x06, b[1], b[2], b[3], b[4], b[5]]);
            let now = T0.plus_millis(i * 250);
            let _ = d.port_rx(&mut sw, now, P2, &frame);
            // The worker expires once a second.
            if i % 4 == 0 {
                sw.expire(now);
            }
        }
    });
    assert_eq!(
        allocs, 0,
        "learning allocated {allocs} times (first: {first} bytes)"
    );
    let blue = &sw.network_stats()[0];
    assert!(blue.events.fdb_full > 0, "the mix never reached the cap");
    assert!(blue.events.fdb_learned > 100_000, "too little churn");
}

/// The counter works: without this, a broken allocator hook would make the tests above pass.
#[test]
fn control_counter_sees_allocations() {
    let (allocs, first, v) = allocations_in(|| Vec::<u8>::with_capacity(16));
    assert_eq!((allocs, first), (1, 16));
    drop(v);
    let (allocs, _, v) = allocations_in(|| {
        let mut v = Vec::<u64>::with_capacity(1);
        v.extend_from_slice(&[1, 2, 3]);
        v
    });
    assert_eq!(allocs, 2, "alloc + realloc");
    drop(v);
    let (allocs, _, ()) = allocations_in(|| {});
    assert_eq!(allocs, 0);
}

/// Encrypted networks: once the SAs exist, sealing (in place, and from a copy as floods do) and
/// opening with the anti-replay check allocate nothing.
#[test]
fn esp_seal_and_open_do_not_allocate() {
    use vswitch::crypto::{EspConfig, EspNetwork, EspTable};
    let (a_ip, b_ip) = (Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2));
    let table = |me: Ipv4Addr, peer: Ipv4Addr| {
        EspTable::new(EspConfig {
            local_ip: me,
            boot: 1,
            rekey_interval_secs: 3600,
            networks: vec![EspNetwork {
                vni: 42,
                secret: [9; 32],
                peers: vec![peer],
            }],
        })
        .unwrap()
    };
    let (mut a, mut b) = (table(a_ip, b_ip), table(b_ip, a_ip));
    const NOW: u64 = 1_700_000_000;
    // Plaintext: inner UDP to 4789, VXLAN 42, a 1400-byte frame.
    let mut plain = vec![0u8; 16 + 1400];
    vswitch::io::underlay::write_udp_header(&mut plain[..8], 50000, 4789, 8 + 1400);
    vswitch::wire::vxlan::emit(&mut plain[8..16], 42);
    let mut buf = vec![0u8; 2048];
    let mut copy = vec![0u8; 2048];
    let round = |a: &mut EspTable, b: &mut EspTable, buf: &mut Vec<u8>, copy: &mut Vec<u8>| {
        buf[16..16 + plain.len()].copy_from_slice(&plain);
        let n = a.seal(NOW, 42, b_ip, 0, buf, 0, plain.len()).unwrap();
        let (vni, r) = b.open(NOW, 0, a_ip, &mut buf[..n]).unwrap();
        assert_eq!((vni, r.len()), (42, plain.len()));
        let n = a.seal_from(NOW, 42, b_ip, 3, &plain, copy, 0).unwrap();
        assert!(b.open(NOW, 0, a_ip, &mut copy[..n]).is_ok());
    };
    round(&mut a, &mut b, &mut buf, &mut copy); // makes the SAs
    let (allocs, first, ()) = allocations_in(|| {
        for _ in 0..5_000 {
            round(&mut a, &mut b, &mut buf, &mut copy);
        }
    });
    assert_eq!(
        allocs, 0,
        "ESP allocated {allocs} times (first: {first} bytes)"
    );
}

/// Several workers: what one learns is announced to the other over the sync channel and
/// applied there (`switch::sync`, `dataplane::sync`). New stations near the cap, re-announced
/// refreshes, the channel send and the apply allocate nothing.
#[test]
fn table_sync_between_workers_does_not_allocate() {
    let (mut a, mut b) = (switch(), switch());
    a.enable_sync();
    b.enable_sync();
    let mut links = vswitch::dataplane::sync::links(2).into_iter();
    let (la, lb) = (links.next().unwrap(), links.next().unwrap());
    let mut d = Driver::new();
    let mut frame = udp_frame(mac(3), mac(2), ip(3), ip(2), 64);
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut step = |i: u64, a: &mut Switch, b: &mut Switch, d: &mut Driver| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let s = state.to_be_bytes();
        // Every other frame from a new station, the others from a known one (refreshes).
        if i % 2 == 0 {
            frame[6..12].copy_from_slice(&[0x06, s[1], s[2], s[3], s[4], s[5]]);
        } else {
            frame[6..12].copy_from_slice(&mac(9).0);
        }
        let now = T0.plus_millis(i * 250);
        let _ = d.port_rx(a, now, P2, &frame);
        a.take_updates(|u| {
            la.announce(u);
        });
        while let Some(u) = lb.next() {
            b.apply_update(now, &u);
        }
        if i % 4 == 0 {
            a.expire(now);
            b.expire(now);
        }
    };
    step(0, &mut a, &mut b, &mut d);
    let (allocs, first, ()) = allocations_in(|| {
        for i in 1..ROUNDS * 30 {
            step(i, &mut a, &mut b, &mut d);
        }
    });
    assert_eq!(
        allocs, 0,
        "table sync allocated {allocs} times (first: {first} bytes)"
    );
    // The other copy followed: it knows the steady station without having seen its frames.
    let fdb = b.fdb_info(T0.plus_millis(ROUNDS * 30 * 250));
    assert!(
        fdb.iter().any(|e| e.mac == mac(9).to_string()),
        "b never heard of mac(9)"
    );
    assert!(fdb.len() > 100, "b heard of {} stations", fdb.len());
}

/// An AF_PACKET port's receive, through the TPACKET_V3 ring and through recvmsg: copying
/// frames out allocates nothing (the ring is mapped at open). Needs root: a namespace with a
/// veth pair, frames injected on one end and read on the other.
#[test]
fn packet_socket_recv_does_not_allocate() {
    use common::testbed::Netns;
    use std::os::fd::AsRawFd;
    use vswitch::io::{open_netns, run_in_netns, PacketOptions, PacketSocket, RxMode};

    let ns = Netns::new(&format!("vswt-na-{}", std::process::id())).unwrap();
    for args in [
        &["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"][..],
        &["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"],
        &[
            "ip", "link", "add", "vp", "type", "veth", "peer", "name", "vc",
        ],
        &["ip", "link", "set", "vp", "up"],
        &["ip", "link", "set", "vc", "up"],
    ] {
        ns.exec(args).unwrap();
    }
    let fd = open_netns(&ns.name).unwrap();
    let frame = udp_frame(mac(2), mac(3), ip(2), ip(3), 200);
    for rx in [RxMode::Ring, RxMode::Recvmsg] {
        let (s, tx) = run_in_netns(&fd, || {
            let open = |ifname, rx| {
                PacketSocket::open_with(
                    ifname,
                    &PacketOptions {
                        rx,
                        ..PacketOptions::default()
                    },
                )
                .unwrap()
            };
            (open("vp", rx), open("vc", RxMode::Recvmsg))
        })
        .unwrap();
        assert_eq!(s.rx_mode(), rx);
        // In batches small enough for recvmsg's default receive buffer.
        const BATCHES: usize = 10;
        const N: usize = 200;
        let mut buf = vec![0u8; 65536];
        let (mut got, mut allocs) = (0, 0);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        for b in 1..=BATCHES {
            for _ in 0..N / BATCHES {
                tx.send(&frame).unwrap();
            }
            while got < b * N / BATCHES && std::time::Instant::now() < deadline {
                let mut pfd = libc::pollfd {
                    fd: s.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                unsafe { libc::poll(&mut pfd, 1, 100) };
                let (n, _, k) = allocations_in(|| {
                    let mut k = 0;
                    while let Ok(info) = s.recv(&mut buf) {
                        k += usize::from(info.len == frame.len() && buf[..info.len] == frame[..]);
                    }
                    k
                });
                allocs += n;
                got += k;
            }
        }
        assert_eq!(got, N, "{rx:?}: frames received");
        assert_eq!(allocs, 0, "{rx:?}: recv allocated {allocs} times");
    }
}
