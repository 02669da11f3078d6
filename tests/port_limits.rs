//! Sans-IO tests of the per-port limits (crate::switch::limits): a cap on the MACs a port is
//! learned with, and on the broadcast/multicast/unknown-unicast frames it may flood a second.
//! Frames in, actions, tables and counters out; time is passed in.

mod common;

use common::frames::{arp_request, eth_frame, udp_frame};
use std::net::Ipv4Addr;
use vswitch::switch::limits::Rate;
use vswitch::switch::{
    Action, DropReason, Ingress, NetworkSpec, PortId, PortLimits, Switch, SwitchSpec, Timestamp,
    Vni, VtepAddr,
};
use vswitch::wire::ethernet::EtherType;
use vswitch::wire::MacAddr;

const BLUE: Vni = Vni::of(42);
const GREEN: Vni = Vni::of(43);
const VTEP_B: VtepAddr = VtepAddr(Ipv4Addr::new(192, 0, 2, 2));
const P1: PortId = PortId(1);
const P2: PortId = PortId(2);
const P3: PortId = PortId(3);
const G1: PortId = PortId(11);
const G2: PortId = PortId(12);
const T0: Timestamp = Timestamp(1_000);

fn mac(n: u16) -> MacAddr {
    let [a, b] = n.to_be_bytes();
    MacAddr([0x02, 0x42, 0x0a, 0x00, a, b])
}

fn ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 9, n)
}

/// Blue (ports 1, 2, 3 and peer B) and green (ports 11, 12 and peer B), 1024 MACs each.
fn switch() -> Switch {
    let net = |name: &str, vni: Vni| NetworkSpec {
        name: name.into(),
        vni,
        subnet: "10.0.9.0/24".parse().unwrap(),
        mtu: 1450,
        peers: vec![("b".into(), VTEP_B)],
        encrypted: false,
    };
    let mut sw = Switch::new(SwitchSpec {
        networks: vec![net("blue", BLUE), net("green", GREEN)],
        peers: vec![("b".into(), VTEP_B)],
        fdb_max_entries: 1024,
        aging_ms: 300_000,
    });
    for (id, vni) in [(P1, BLUE), (P2, BLUE), (P3, BLUE), (G1, GREEN), (G2, GREEN)] {
        sw.add_port(id, &format!("port{}", id.0), vni, None, T0)
            .unwrap();
    }
    sw
}

fn limits(max_macs: Option<u32>, bum: Option<(u32, u32)>) -> PortLimits {
    PortLimits {
        max_macs,
        bum: bum.map(|(per_sec, burst)| Rate { per_sec, burst }),
    }
}

fn port_drops(sw: &Switch, p: PortId, r: DropReason) -> u64 {
    sw.port_counters(p).unwrap().drops.get(r)
}

fn unicast(dst: MacAddr, src: MacAddr) -> Vec<u8> {
    udp_frame(src, dst, ip(2), ip(3), 40)
}

fn broadcast(src: MacAddr) -> Vec<u8> {
    eth_frame(MacAddr::BROADCAST, src, EtherType::Ipv4, &[0u8; 46])
}

fn learned_at(sw: &Switch, m: MacAddr) -> Option<PortId> {
    match sw.learned(BLUE)?.fdb.lookup(m)? {
        vswitch::switch::fdb::Location::Port(p) => Some(p),
        _ => None,
    }
}

#[test]
fn a_port_is_learned_with_at_most_its_cap_of_macs_and_nothing_known_is_evicted() {
    let mut sw = switch();
    sw.set_port_limits(P1, limits(Some(4), None)).unwrap();
    // A neighbour on port 2 was here first.
    let _ = sw.process_from_port(T0, P2, &mut broadcast(mac(2)));
    // Port 1 sends from 100 source MACs: the first four are learned, the others dropped.
    let mut passed = 0;
    for n in 100..200 {
        let a = sw.process_from_port(T0, P1, &mut unicast(mac(2), mac(n)));
        if a == Action::ToPort(P2) {
            passed += 1;
        } else {
            assert_eq!(a, Action::Drop(DropReason::PortMacLimit));
        }
    }
    assert_eq!(passed, 4);
    assert_eq!(port_drops(&sw, P1, DropReason::PortMacLimit), 96);
    assert_eq!(sw.learned(BLUE).unwrap().fdb.port_entries(P1), 4);
    assert_eq!(sw.learned(BLUE).unwrap().fdb.len(), 5);
    assert_eq!(learned_at(&sw, mac(2)), Some(P2), "the neighbour stays");
    // The stations it has keep working, and are refreshed.
    let a = sw.process_from_port(Timestamp(2_000), P1, &mut unicast(mac(2), mac(101)));
    assert_eq!(a, Action::ToPort(P2));
    // Nor may it take over its neighbour's MAC once full (a move counts as a new MAC).
    let a = sw.process_from_port(T0, P1, &mut unicast(mac(3), mac(2)));
    assert_eq!(a, Action::Drop(DropReason::PortMacLimit));
    assert_eq!(learned_at(&sw, mac(2)), Some(P2));
    // Other ports are not limited by port 1's cap.
    for n in 300..310 {
        let a = sw.process_from_port(T0, P3, &mut unicast(mac(2), mac(n)));
        assert_eq!(a, Action::ToPort(P2));
    }
    // Once its stations age out, there is room again.
    sw.expire(Timestamp(T0.0 + 300_000));
    assert_eq!(
        sw.learned(BLUE).unwrap().fdb.port_entries(P1),
        1,
        "mac(101) was refreshed"
    );
    let a = sw.process_from_port(
        Timestamp(T0.0 + 300_000),
        P1,
        &mut unicast(mac(2), mac(400)),
    );
    assert_ne!(a, Action::Drop(DropReason::PortMacLimit));
    assert_eq!(sw.learned(BLUE).unwrap().fdb.port_entries(P1), 2);
}

#[test]
fn a_port_that_leaves_takes_its_count_with_it_and_a_new_one_starts_at_zero() {
    let mut sw = switch();
    sw.set_port_limits(P1, limits(Some(2), None)).unwrap();
    for n in 10..12 {
        let _ = sw.process_from_port(T0, P1, &mut broadcast(mac(n)));
    }
    assert_eq!(sw.learned(BLUE).unwrap().fdb.port_entries(P1), 2);
    sw.remove_port(P1).unwrap();
    sw.add_port(P1, "again", BLUE, None, T0).unwrap();
    sw.set_port_limits(P1, limits(Some(2), None)).unwrap();
    assert_eq!(sw.learned(BLUE).unwrap().fdb.port_entries(P1), 0);
    let a = sw.process_from_port(T0, P1, &mut broadcast(mac(20)));
    assert!(matches!(a, Action::Flood { .. }), "{a:?}");
}

#[test]
fn floods_from_a_port_over_its_rate_are_dropped_and_counted_and_others_go_on() {
    let mut sw = switch();
    sw.set_port_limits(P1, limits(None, Some((100, 10))))
        .unwrap();
    sw.set_port_limits(G1, limits(None, Some((100, 10))))
        .unwrap();
    // Learn a station on port 2 so unicast from port 1 to it is known.
    let _ = sw.process_from_port(T0, P2, &mut broadcast(mac(2)));

    // A storm of 1000 broadcasts in one millisecond: the burst passes, the rest is dropped.
    let mut flooded = 0;
    for _ in 0..1000 {
        match sw.process_from_port(T0, P1, &mut broadcast(mac(1))) {
            Action::Flood { .. } => flooded += 1,
            a => assert_eq!(a, Action::Drop(DropReason::BumRateLimited)),
        }
    }
    assert_eq!(flooded, 10);
    assert_eq!(port_drops(&sw, P1, DropReason::BumRateLimited), 990);
    // Unknown unicast and ARP requests nobody can answer are floods too.
    let a = sw.process_from_port(T0, P1, &mut unicast(mac(77), mac(1)));
    assert_eq!(a, Action::Drop(DropReason::BumRateLimited));
    let a = sw.process_from_port(T0, P1, &mut arp_request(mac(1), ip(2), ip(50)));
    assert_eq!(a, Action::Drop(DropReason::BumRateLimited));
    // Its known unicast is not limited.
    let a = sw.process_from_port(T0, P1, &mut unicast(mac(2), mac(1)));
    assert_eq!(a, Action::ToPort(P2));
    // Its neighbours flood as before: each port has its own bucket, each network its own ports.
    for p in [P2, G1] {
        let a = sw.process_from_port(T0, p, &mut broadcast(mac(60 + p.0 as u16)));
        assert!(matches!(a, Action::Flood { .. }), "{p:?}: {a:?}");
    }
    // The rate comes back with time: 100/s is one frame per 10 ms.
    let t = Timestamp(T0.0 + 50);
    let passed = (0..100)
        .filter(|_| {
            matches!(
                sw.process_from_port(t, P1, &mut broadcast(mac(1))),
                Action::Flood { .. }
            )
        })
        .count();
    assert_eq!(passed, 5);
    // Frames from the underlay are not the port's: they flood to it unlimited.
    let d = common::frames::vxlan_datagram(42, &broadcast(mac(900)));
    let a = sw.process_from_underlay(t, VTEP_B, &d);
    assert!(matches!(a, Action::Flood { .. }), "{a:?}");
}

#[test]
fn decide_and_trace_show_a_limit_without_taking_a_token() {
    let mut sw = switch();
    sw.set_port_limits(P1, limits(Some(1), Some((1, 1))))
        .unwrap();
    let frame = broadcast(mac(1));
    // Deciding (and tracing) twice changes nothing: the one token is still there.
    for _ in 0..2 {
        let d = sw.decide(T0, Ingress::Port(P1), &frame);
        assert!(matches!(d.action, Action::Flood { .. }), "{:?}", d.action);
    }
    let _ = sw.process_from_port(T0, P1, &mut frame.clone());
    let t = sw.trace(T0, Ingress::Port(P1), &frame);
    assert_eq!(t.drop_reason, Some("bum_rate_limited"), "{t:?}");
    let t = sw.trace(T0, Ingress::Port(P1), &unicast(mac(1), mac(5)));
    assert_eq!(t.drop_reason, Some("port_mac_limit"), "{t:?}");
    assert!(
        t.steps.iter().any(|s| s.detail.contains("max_macs")),
        "the trace says which limit: {t:?}"
    );
}

#[test]
fn ports_without_limits_flood_and_learn_as_before() {
    let mut sw = switch();
    for n in 0..2000u16 {
        let a = sw.process_from_port(T0, P1, &mut broadcast(mac(n)));
        assert!(matches!(a, Action::Flood { .. }), "{a:?}");
    }
    assert_eq!(sw.learned(BLUE).unwrap().fdb.port_entries(P1), 1024);
}

// ----- no allocation: the limits are on the packet path -----

struct Counting;

thread_local! {
    static ARMED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static ALLOCS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        // `try_with`: during thread teardown the slots may be gone; such allocations are not ours.
        let _ = ARMED.try_with(|a| {
            if a.get() {
                ALLOCS.with(|n| n.set(n.get() + 1));
            }
        });
        std::alloc::System.alloc(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        let _ = ARMED.try_with(|a| {
            if a.get() {
                ALLOCS.with(|n| n.set(n.get() + 1));
            }
        });
        std::alloc::System.realloc(ptr, layout, new_size)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        std::alloc::System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A relaxed port at both caps, as in a storm of broadcasts from more source MACs than it may
/// have: counting per port, the bucket and the limit drops allocate nothing (the worker's hot
/// path; see also tests/no_alloc.rs).
#[test]
fn limits_at_work_do_not_allocate() {
    let mut sw = switch();
    sw.set_port_limits(P1, limits(Some(16), Some((1000, 50))))
        .unwrap();
    let mut frame = broadcast(mac(1));
    // Warm up: the first frames of the port.
    let _ = sw.process_from_port(T0, P1, &mut frame.clone());
    ARMED.with(|a| a.set(true));
    for i in 0..200_000u32 {
        let now = Timestamp(T0.0 + u64::from(i) / 20);
        frame[6..12].copy_from_slice(&mac((i % 32) as u16 + 1000).0);
        let _ = sw.process_from_port(now, P1, &mut frame);
        if i % 20_000 == 0 {
            sw.expire(now);
        }
    }
    ARMED.with(|a| a.set(false));
    let allocs = ALLOCS.with(|n| n.get());
    assert_eq!(allocs, 0, "the limits allocated {allocs} times");
    assert!(port_drops(&sw, P1, DropReason::PortMacLimit) > 50_000);
    assert!(port_drops(&sw, P1, DropReason::BumRateLimited) > 0);
    // The counter works: else the zero above would prove nothing.
    ALLOCS.with(|n| n.set(0));
    ARMED.with(|a| a.set(true));
    let v = std::hint::black_box(Vec::<u8>::with_capacity(16));
    ARMED.with(|a| a.set(false));
    drop(v);
    assert_eq!(ALLOCS.with(|n| n.get()), 1);
}
