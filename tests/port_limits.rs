//! Tests of the per-port limits (crate::switch::limits): a cap on the MACs a port is learned
//! with, and on the broadcast/multicast/unknown-unicast frames it may flood a second. Sans-IO
//! first (frames in, actions, tables and counters out; time is passed in), then end to end
//! with two workers reading one container's TAP (root required, see TESTING.md).

mod common;

use common::bins;
use common::frames::{arp_request, eth_frame, udp_frame};
use common::testbed::{Testbed, BLUE as BLUE_NET};
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
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
        readers: 1,
    }
}

/// Two workers' switches whose port 1 is read by both (a queue each), its limits shared, and
/// whose learned tables are kept in step as the workers keep them (crate::switch::sync).
fn two_workers(l: PortLimits) -> [Switch; 2] {
    let mut w = [switch(), switch()];
    for sw in &mut w {
        sw.enable_sync();
        sw.set_port_limits(P1, l.read_by(2)).unwrap();
    }
    w
}

/// Hands what each worker learned to the other, as the driver does between batches.
fn sync(w: &mut [Switch; 2], now: Timestamp) {
    let (mut a, mut b) = (Vec::new(), Vec::new());
    w[0].take_updates(|u| a.push(u));
    w[1].take_updates(|u| b.push(u));
    for u in &a {
        w[1].apply_update(now, u);
    }
    for u in &b {
        w[0].apply_update(now, u);
    }
}

#[test]
fn two_workers_reading_one_port_flood_its_rate_together_not_each() {
    let mut w = two_workers(limits(None, Some((1000, 100))));
    // A storm the kernel spreads over both workers' queues, 100 frames a millisecond for a
    // second, after the burst.
    let mut flooded = 0;
    for ms in 0..1001u64 {
        for k in 0..100 {
            let sw = &mut w[k % 2];
            match sw.process_from_port(Timestamp(T0.0 + ms), P1, &mut broadcast(mac(1))) {
                Action::Flood { .. } => flooded += 1,
                a => assert_eq!(a, Action::Drop(DropReason::BumRateLimited)),
            }
        }
        sync(&mut w, Timestamp(T0.0 + ms));
    }
    assert_eq!(flooded, 100 + 1000, "the burst and one second at the rate");
    let dropped: u64 = w
        .iter()
        .map(|sw| port_drops(sw, P1, DropReason::BumRateLimited))
        .sum();
    assert_eq!(dropped, 100_100 - flooded);
}

#[test]
fn two_workers_reading_one_port_learn_its_cap_of_macs_together_not_each() {
    let mut w = two_workers(limits(Some(8), None));
    // Sixty new source MACs, alternately on each worker, faster than the workers' copies
    // meet: each learns its share (4), and their copies then hold the cap, not twice it.
    let mut learned = 0;
    for n in 100..160u16 {
        let sw = &mut w[usize::from(n % 2)];
        if sw.process_from_port(T0, P1, &mut broadcast(mac(n)))
            != Action::Drop(DropReason::PortMacLimit)
        {
            learned += 1;
        }
    }
    sync(&mut w, T0);
    assert_eq!(learned, 8);
    for sw in &w {
        assert_eq!(sw.learned(BLUE).unwrap().fdb.port_entries(P1), 8);
    }
    // Full: no worker learns another.
    for (k, sw) in w.iter_mut().enumerate() {
        let a = sw.process_from_port(T0, P1, &mut broadcast(mac(500 + k as u16)));
        assert_eq!(a, Action::Drop(DropReason::PortMacLimit));
    }
    // Once they age out (in both copies), there is room again.
    let later = Timestamp(T0.0 + 300_000);
    for sw in &mut w {
        sw.expire(later);
    }
    let a = w[0].process_from_port(later, P1, &mut broadcast(mac(700)));
    assert!(matches!(a, Action::Flood { .. }), "{a:?}");
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

/// Sends, for `secs` seconds and as fast as it can, UDP broadcasts (to 10.0.9.255:9, from the
/// container's own MAC and address, so port security lets them by) on eth0 through an
/// AF_PACKET socket, each of 1024 frames from another source port, so that the kernel spreads
/// them over the TAP's queues by flow hash; prints how many it sent.
const FLOODER: &str = r#"
import socket, struct, sys, time
own_ip, secs = socket.inet_aton(sys.argv[1]), float(sys.argv[2])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
own = s.getsockname()[4][:6]
def csum(h):
    t = sum(struct.unpack("!10H", h))
    t = (t & 0xffff) + (t >> 16)
    return (~((t & 0xffff) + (t >> 16))) & 0xffff
frames = []
for i in range(1024):
    udp = struct.pack("!HHHH", 10000 + i, 9, 8 + 18, 0) + bytes(18)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i, 0, 64, 17, 0, own_ip,
                     socket.inet_aton("10.0.9.255"))
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    frames.append(b"\xff" * 6 + own + b"\x08\x00" + ip + udp)
send, n, end = s.send, 0, time.monotonic() + secs
while time.monotonic() < end:
    for f in frames:
        try:
            send(f)
        except OSError:
            pass
    n += len(frames)
print(n)
"#;

/// Counts the UDP broadcasts to port 9 that arrive on eth0 for `secs` seconds; prints how
/// many.
const COUNTER: &str = r#"
import socket, sys, time
secs = float(sys.argv[1])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind(("eth0", 0))
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
s.settimeout(0.2)
n, end = 0, time.monotonic() + secs
while time.monotonic() < end:
    try:
        f = s.recv(2048)
    except socket.timeout:
        continue
    if f[:6] == b"\xff" * 6 and f[12:14] == b"\x08\x00" and f[23] == 17 and f[36:38] == b"\x00\x09":
        n += 1
print(n)
"#;

/// Runs `script ARGS` with python3 in namespace `ns`; the child, its output piped.
fn python_in(ns: &str, script: &str, args: &[&str]) -> std::process::Child {
    Command::new("ip")
        .args([
            "netns", "exec", ns, "timeout", "30", "python3", "-c", script,
        ])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3")
}

/// What a python child printed: its one number.
fn printed(c: std::process::Child) -> u64 {
    let out = c.wait_with_output().expect("python3 ran");
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim().parse().unwrap_or_else(|_| {
        panic!(
            "python3 printed {text:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn json_u64(v: &serde_json::Value, path: &[&str]) -> u64 {
    path.iter().fold(v, |v, k| &v[*k]).as_u64().unwrap_or(0)
}

#[test]
fn with_two_workers_a_broadcast_flood_is_delivered_at_the_ports_rate() {
    const RATE: u64 = 300;
    const BURST: u64 = 100;
    const SECS: u64 = 3;
    // Two workers, and a TAP queue for each: the kernel spreads the container's flows over
    // both, so both workers read its flood.
    let mut tb = Testbed::two_hosts_with(
        &format!("vsw{}-pl", std::process::id()),
        bins(),
        &[BLUE_NET],
        &[("VSWITCH_TAP_QUEUES", "per-worker")],
        "workers = 2",
    )
    .unwrap();
    let rate = RATE.to_string();
    let burst = BURST.to_string();
    let x = step!(
        tb,
        tb.add_container_with(
            0,
            "x",
            "blue",
            "10.0.9.10/24",
            &[
                "--name",
                "storm",
                "--bum-rate",
                &rate,
                "--bum-burst",
                &burst
            ]
        )
    );
    let a = step!(tb, tb.add_container(0, "a", "blue", "10.0.9.2/24"));
    let port = |tb: &Testbed| {
        tb.hosts[0]
            .show_json(&tb.bins, "ports")
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "storm")
            .cloned()
            .unwrap()
    };
    let worker_frames = |tb: &Testbed| -> Vec<u64> {
        let stats = tb.hosts[0].show_json(&tb.bins, "stats").unwrap();
        stats["workers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| json_u64(w, &["port_frames"]))
            .collect()
    };
    assert_eq!(port(&tb)["queues"], 2, "{}", port(&tb));
    let (before, frames_before) = (port(&tb), worker_frames(&tb));

    let counter = python_in(&tb.container(a).name, COUNTER, &[&(SECS + 3).to_string()]);
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let flooder = python_in(
        &tb.container(x).name,
        FLOODER,
        &["10.0.9.10", &SECS.to_string()],
    );
    let sent = printed(flooder);
    let flood_secs = started.elapsed().as_secs_f64();
    let delivered = printed(counter);
    let (after, frames_after) = (port(&tb), worker_frames(&tb));
    let read = json_u64(&after, &["counters", "rx_packets"])
        - json_u64(&before, &["counters", "rx_packets"]);
    let limited = json_u64(&after, &["counters", "drops", "bum_rate_limited"])
        - json_u64(&before, &["counters", "drops", "bum_rate_limited"]);
    let per_worker: Vec<u64> = frames_after
        .iter()
        .zip(&frames_before)
        .map(|(a, b)| a - b)
        .collect();
    eprintln!(
        "flooder sent {sent} in {flood_secs:.1} s; the switch read {read} (per worker \
         {per_worker:?}), dropped {limited} as bum_rate_limited; {delivered} delivered to a \
         neighbour (rate {RATE}/s, burst {BURST})"
    );
    // Both workers read a good part of the flood: each alone could pass the whole rate.
    assert_eq!(per_worker.len(), 2);
    assert!(
        per_worker.iter().all(|n| *n >= 2_000),
        "the flood did not reach both workers: {per_worker:?}\n{}",
        tb.logs()
    );
    // The port's rate over the flood (a second more for what the TAP queued), its burst, and
    // 10 %: with each worker passing the whole rate it would be about twice that.
    let bound = ((RATE as f64 * (flood_secs + 1.0) + BURST as f64) * 1.1) as u64;
    assert!(
        delivered <= bound,
        "{delivered} broadcasts delivered, more than {bound}"
    );
    assert!(
        delivered >= RATE * SECS / 2,
        "{delivered} broadcasts delivered: far under the rate"
    );
    // Beyond it, dropped at the port and counted: the switch flooded what it did not drop.
    assert!(read >= 10_000, "the switch read {read} of the flood");
    assert!(
        read - limited <= bound,
        "the switch flooded {} of {read}",
        read - limited
    );
    assert!(limited * 10 >= read * 8, "{limited} of {read} dropped");
}
