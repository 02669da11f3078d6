//! Micro-benchmarks of the per-packet work: the core's decision, encap, decap, FDB lookups,
//! ESP seal and open.
//!
//! `cargo bench --bench core` (about a minute). These are not timed tests (TESTING.md): they
//! report ns per packet on whatever machine runs them, to compare one change with the next on
//! the same machine. Throughput is in packets (`Throughput::Elements(1)`).

#[path = "../tests/common/frames.rs"]
mod frames;

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use frames::{arp_request, udp_frame, vxlan_datagram};
use std::net::Ipv4Addr;
use std::time::Duration;
use vswitch::io::underlay::{write_udp_header, UDP_HEADER_LEN, VXLAN_HEADERS_LEN};
use vswitch::switch::fdb::{Fdb, Location};
use vswitch::switch::{Action, NetworkSpec, PortId, Switch, SwitchSpec, Timestamp, Vni, VtepAddr};
use vswitch::wire::ethernet::Frame;
use vswitch::wire::{flow, vxlan, MacAddr};

const VTEP_B: VtepAddr = VtepAddr(Ipv4Addr::new(192, 0, 2, 2));
const VTEP_C: VtepAddr = VtepAddr(Ipv4Addr::new(192, 0, 2, 3));
const BLUE: Vni = Vni::of(42);
const P1: PortId = PortId(1);
const P2: PortId = PortId(2);
const T0: Timestamp = Timestamp(1_000);
const MTU: usize = 1450;
/// Headroom in front of the frame for the outer headers, as `dataplane::worker` has.
const HEADROOM: usize = 40;
const VXLAN_START: usize = HEADROOM - VXLAN_HEADERS_LEN;

fn mac(n: u8) -> MacAddr {
    MacAddr([0x02, 0x42, 0x0a, 0x00, 0x09, n])
}

fn ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 9, n)
}

/// Network blue (VNI 42, peers B and C) with P1 attached (`mac(2)`, 10.0.9.2) and P2 plain;
/// `mac(0x20)` known behind B and `mac(3)` behind P2.
fn switch() -> Switch {
    let mut sw = Switch::new(SwitchSpec {
        networks: vec![NetworkSpec {
            name: "blue".to_string(),
            vni: Vni::new(42).unwrap(),
            subnet: "10.0.9.0/24".parse().unwrap(),
            mtu: MTU as u32,
            peers: vec![("b".to_string(), VTEP_B), ("c".to_string(), VTEP_C)],
            encrypted: false,
        }],
        peers: vec![("b".to_string(), VTEP_B), ("c".to_string(), VTEP_C)],
        fdb_max_entries: 4096,
        aging_ms: 300_000,
    });
    sw.add_port(P1, "c1", BLUE, Some((mac(2), ip(2))), T0)
        .unwrap();
    sw.add_port(P2, "port2", BLUE, None, T0).unwrap();
    let hello = |n: u8| udp_frame(mac(n), MacAddr::BROADCAST, ip(n), ip(255), 20);
    let _ = sw.process_from_underlay(T0, VTEP_B, &vxlan_datagram(42, &hello(0x20)));
    let _ = sw.process_from_port(T0, P2, &mut hello(3));
    sw
}

/// A 1450-byte IPv4/UDP frame from `mac(3)` (a full-size frame for MTU 1450 would be 1464).
fn frame_1450(dst: MacAddr) -> Vec<u8> {
    udp_frame(mac(3), dst, ip(3), ip(0x20), 1450 - 14 - 28)
}

fn quick<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
        .throughput(Throughput::Elements(1));
    g
}

fn core_decision(c: &mut Criterion) {
    let mut g = quick(c, "core");

    let mut sw = switch();
    let mut frame = frame_1450(mac(0x20));
    assert_eq!(
        sw.process_from_port(T0, P2, &mut frame),
        Action::ToVtep {
            vtep: VTEP_B,
            vni: Vni::new(42).unwrap()
        }
    );
    g.bench_function("from_port/unicast_to_vtep", |b| {
        b.iter(|| sw.process_from_port(black_box(T0), black_box(P2), black_box(&mut frame)))
    });

    let mut sw = switch();
    let datagram = vxlan_datagram(42, &udp_frame(mac(0x20), mac(2), ip(0x20), ip(2), 1400));
    assert_eq!(
        sw.process_from_underlay(T0, VTEP_B, &datagram),
        Action::ToPort(P1)
    );
    g.bench_function("from_underlay/unicast_to_port", |b| {
        b.iter(|| sw.process_from_underlay(black_box(T0), black_box(VTEP_B), black_box(&datagram)))
    });

    // The reply overwrites the request, so each iteration starts from a fresh copy (a 42-byte
    // copy_from_slice, included in the time: the driver's receive writes the frame anyway).
    let mut sw = switch();
    let request = arp_request(mac(3), ip(3), ip(2));
    let mut buf = request.clone();
    assert!(matches!(
        sw.process_from_port(T0, P2, &mut buf),
        Action::Reply { port: P2, .. }
    ));
    g.bench_function("from_port/proxy_arp_reply", |b| {
        b.iter(|| {
            buf.copy_from_slice(&request);
            sw.process_from_port(black_box(T0), black_box(P2), black_box(&mut buf))
        })
    });
    g.finish();
}

/// What the driver does to send a frame to a VTEP, short of the syscall: flow hash for the UDP
/// source port, then the UDP and VXLAN headers written into the headroom in front of the frame
/// (what `Underlay::write_vxlan_headers` does; an `Underlay` needs sockets).
fn encap(c: &mut Criterion) {
    let mut g = quick(c, "encap");
    let frame = frame_1450(mac(0x20));
    let len = frame.len();
    let mut buf = vec![0u8; HEADROOM + len];
    buf[HEADROOM..].copy_from_slice(&frame);
    g.bench_function("1450B/source_port+udp+vxlan", |b| {
        b.iter(|| {
            let buf = black_box(&mut buf[..]);
            let src_port = flow::source_port(&buf[HEADROOM..HEADROOM + len]);
            let hdrs = &mut buf[VXLAN_START..HEADROOM];
            write_udp_header(hdrs, src_port, vxlan::DEFAULT_PORT, vxlan::HEADER_LEN + len);
            vxlan::emit(&mut hdrs[UDP_HEADER_LEN..VXLAN_HEADERS_LEN], 42);
        })
    });
    g.finish();
}

/// The Internet checksum over a full-size segment: what the TSO segmenter and the UDP
/// coalescer compute per datagram.
fn checksum(c: &mut Criterion) {
    let mut g = quick(c, "checksum");
    let data: Vec<u8> = (0..1448u32).map(|i| (i * 7) as u8).collect();
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("1448B", |b| {
        b.iter(|| {
            vswitch::wire::checksum::finish(vswitch::wire::checksum::add(0, black_box(&data)))
        })
    });
    g.finish();
}

/// AES-256-GCM ESP as the workers use it: one datagram of an encrypted network's full-size
/// frame (MTU 1408: inner UDP + VXLAN + 1422-byte frame) sealed in place, then opened and
/// replay-checked in place. In bytes, so that criterion's rate is what the cipher costs per
/// byte moved, both ends together (`benches/iperf.sh --encrypted` compares CPU per GB).
fn esp(c: &mut Criterion) {
    use vswitch::crypto::keys::SaKey;
    use vswitch::crypto::sa::{InboundSa, OutboundSa};
    use vswitch::wire::esp::packet_len;
    let mut g = quick(c, "esp");
    let plain_len = UDP_HEADER_LEN + 8 + 14 + 1408;
    g.throughput(Throughput::Bytes(plain_len as u64));
    let key = || SaKey {
        key: [7; 32],
        salt: [1, 2, 3, 4],
    };
    let mut out = OutboundSa::new(0x1400_102a, key(), 0, 0);
    let mut inb = InboundSa::new(0x1400_102a, 42, key(), 0, 0);
    let mut buf = vec![0u8; packet_len(plain_len) + 64];
    g.bench_function("1438B/seal+open", |b| {
        b.iter(|| {
            let n = out.seal_in_place(&mut buf, 0, plain_len).unwrap();
            black_box(inb.open_in_place(&mut buf[..n]).unwrap())
        })
    });
    g.finish();
}

/// The parsing the core does first on an underlay datagram: VXLAN header, then Ethernet.
fn decap(c: &mut Criterion) {
    let mut g = quick(c, "decap");
    let datagram = vxlan_datagram(42, &frame_1450(mac(2)));
    g.bench_function("1450B/vxlan+ethernet_parse", |b| {
        b.iter(|| {
            let Ok(vx) = vxlan::Packet::new_checked(black_box(&datagram[..])) else {
                return None;
            };
            let eth = Frame::new_checked(vx.payload()).ok()?;
            Some((vx.vni(), eth.dst(), eth.src(), eth.ethertype()))
        })
    });
    g.finish();
}

/// xorshift64: deterministic MACs and access order.
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
        MacAddr([0x06, b[1], b[2], b[3], b[4], b[5]])
    }
}

/// Lookups of present MACs in a table of `n` entries, in a random order precomputed so the
/// random number generator is not timed. With 1,000,000 entries the table is far larger than the
/// caches, so most lookups miss them: that is the point of the second size.
fn fdb_lookup(c: &mut Criterion) {
    let mut g = quick(c, "fdb_lookup");
    for n in [1usize, 1_000_000] {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let mut fdb = Fdb::new(n);
        let mut macs = Vec::with_capacity(n);
        while macs.len() < n {
            let m = rng.unicast_mac();
            if fdb.lookup(m).is_none() {
                let _ = fdb.learn(m, Location::Vtep(VTEP_B), T0);
                macs.push(m);
            }
        }
        assert_eq!(fdb.len(), n);
        const ORDER: usize = 1 << 16;
        let order: Vec<MacAddr> = (0..ORDER)
            .map(|_| macs[(rng.next() % n as u64) as usize])
            .collect();
        let mut i = 0usize;
        g.bench_function(format!("{n}_entries/random_present"), |b| {
            b.iter(|| {
                let m = order[i & (ORDER - 1)];
                i = i.wrapping_add(1);
                fdb.lookup(black_box(m))
            })
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    core_decision,
    encap,
    decap,
    checksum,
    fdb_lookup,
    esp
);
criterion_main!(benches);
