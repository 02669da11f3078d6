//! End-to-end tests on the namespace testbed (root required; see TESTING.md). Each test builds
//! its own hosts and containers with a unique prefix and removes them when it ends, pass or
//! fail. They assert what a user would see: replies received, bytes that arrive intact,
//! packets on the wire, counters in `vswitchctl show`.

mod common;

use common::testbed::{self, ping, tcp_transfer, Netns, Testbed, BLUE, RED};
use common::{bins, counter, kernel_at_least, offload_env};
use serde_json::Value;
use std::time::Duration;

fn prefix(tag: &str) -> String {
    format!("vst{}-{tag}", std::process::id())
}

fn network<'a>(stats: &'a Value, name: &str) -> &'a Value {
    stats["networks"]
        .as_array()
        .and_then(|a| a.iter().find(|n| n["name"] == name))
        .unwrap_or_else(|| panic!("network {name} missing in {stats}"))
}

/// How a container's TCP super-frames reach the peer in a run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Offloads {
    /// The default on Linux >= 6.17: whole, through the host's tunnel device, the kernel
    /// segmenting them (src/io/tunnel.rs).
    Tunnel,
    /// Cut into datagrams by the worker and sent in UDP GSO runs (VSWITCH_TUNNEL_GSO=off, or
    /// an older kernel).
    Segmented,
    /// No TAP offloads at all: one frame per MTU from the container.
    Off,
}

/// What each daemon logs once its tunnel device is found to work: a peer answered probes sent
/// through it, or (while no peer answered at all, as before the other daemon is up) its probes
/// were seen leaving the host.
const TUNNEL_ON: &str = "tunnel GSO on:";

/// Whether this kernel has UDP-tunnel GSO for TUN/TAP (Linux 6.17).
fn tunnel_gso_kernel() -> bool {
    kernel_at_least(6, 17)
}

#[test]
fn containers_on_two_hosts_ping_and_transfer_100mb_intact() {
    two_hosts_ping_and_transfer(if tunnel_gso_kernel() {
        Offloads::Tunnel
    } else {
        Offloads::Segmented
    });
}

#[test]
fn containers_on_two_hosts_ping_and_transfer_100mb_intact_segmented_here() {
    two_hosts_ping_and_transfer(Offloads::Segmented);
}

#[test]
fn containers_on_two_hosts_ping_and_transfer_100mb_intact_without_offloads() {
    two_hosts_ping_and_transfer(Offloads::Off);
}

fn two_hosts_ping_and_transfer(mode: Offloads) {
    let (tag, env): (&str, &[(&str, &str)]) = match mode {
        Offloads::Tunnel => ("two", &[]),
        Offloads::Segmented => ("two-seg", &[("VSWITCH_TUNNEL_GSO", "off")]),
        Offloads::Off => ("two-nooff", offload_env(false)),
    };
    let offloads = mode != Offloads::Off;
    let mut tb = Testbed::two_hosts_with_env(&prefix(tag), bins(), &[BLUE], env).unwrap();
    let offload_log = match mode {
        Offloads::Tunnel => "tunnel GSO ready: TCP super-frames to peers will leave whole",
        Offloads::Segmented if tunnel_gso_kernel() => "tunnel GSO off (VSWITCH_TUNNEL_GSO=off)",
        Offloads::Segmented => "TAP offloads: checksum and TSO",
        Offloads::Off => "offloads off",
    };
    assert!(
        tb.logs().contains(offload_log),
        "daemons did not report {offload_log:?}:\n{}",
        tb.logs()
    );
    let a = step!(tb, tb.add_container(0, "a", "blue", "10.0.9.2/24"));
    let b = step!(tb, tb.add_container(1, "b", "blue", "10.0.9.3/24"));

    assert_eq!(
        ping(tb.container(a), "10.0.9.3", 5, &[]),
        (5, 5),
        "a -> b\n{}",
        tb.logs()
    );
    assert_eq!(
        ping(tb.container(b), "10.0.9.2", 5, &[]),
        (5, 5),
        "b -> a\n{}",
        tb.logs()
    );
    // Full-size: 1422 bytes of ICMP payload + 28 of headers = 1450, the network MTU, with DF.
    assert_eq!(
        ping(tb.container(a), "10.0.9.3", 3, &["-M", "do", "-s", "1422"]),
        (3, 3),
        "full-size DF ping"
    );
    // One byte more must not fit: the container's own MTU refuses it.
    assert_eq!(
        ping(tb.container(a), "10.0.9.3", 1, &["-M", "do", "-s", "1423"]).1,
        0
    );

    if mode == Offloads::Tunnel {
        // The workers use the tunnel device once it is found to work.
        assert!(
            testbed::wait_until(Duration::from_secs(10), || {
                tb.logs().matches(TUNNEL_ON).count() == 2
            }),
            "{}",
            tb.logs()
        );
    }
    tb.transfer_intact(a, b, "10.0.9.3", 5001, 100 << 20, "100 MB TCP transfer");

    // The tables show what happened: each host learned the other's container behind its VTEP.
    let fdb = step!(tb, tb.hosts[0].show_json(&tb.bins, "fdb"));
    let remote: Vec<&Value> = fdb
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "vtep")
        .collect();
    assert!(
        remote.iter().any(|e| e["location"] == "192.0.2.2"),
        "no entry behind 192.0.2.2: {fdb}"
    );
    let stats = step!(tb, tb.hosts[1].show_json(&tb.bins, "stats"));
    assert!(counter(network(&stats, "blue"), &["counters", "rx_bytes"]) > 100 << 20);
    assert!(
        stats["underlay"]["drops"].as_object().unwrap().is_empty(),
        "unexpected drops: {stats}"
    );
    // The offloads did the work (or, when off, none of it). Through the tunnel device the
    // sender handed the kernel whole super-frames, which crossed the veth underlay whole and
    // which the receiver wrote to its container whole; segmented here, the sender cut TSO
    // frames and sent GSO runs, and the receiver wrote coalesced super-frames.
    let sender = step!(tb, tb.hosts[0].show_json(&tb.bins, "stats"));
    let o = |s: &Value, k: &str| counter(s, &["offload", k]);
    if mode == Offloads::Tunnel {
        assert!(o(&sender, "tunnel_frames") > 1000, "{}", sender["offload"]);
        // The prober found the path through the tunnel device open all along.
        assert!(
            !tb.logs().contains("not through its tunnel device"),
            "{}",
            tb.logs()
        );
        assert_eq!(o(&sender, "tunnel_refused"), 0, "{}", sender["offload"]);
        assert!(
            o(&sender, "tso_frames") < o(&sender, "tunnel_frames") / 100,
            "super-frames cut here: {}",
            sender["offload"]
        );
        assert!(
            o(&stats, "peer_super_frames") >= o(&sender, "tunnel_frames") / 2,
            "receiver {} sender {}",
            stats["offload"],
            sender["offload"]
        );
    } else if offloads {
        assert_eq!(o(&sender, "tunnel_frames"), 0, "{}", sender["offload"]);
        assert!(
            o(&sender, "tso_frames") > 0 && o(&sender, "gso_sends") > 0,
            "{}",
            sender["offload"]
        );
        assert_eq!(o(&sender, "gso_fallbacks"), 0, "{}", sender["offload"]);
        assert!(o(&stats, "coalesced_frames") > 0, "{}", stats["offload"]);
    } else {
        for k in [
            "tso_frames",
            "gso_sends",
            "gro_runs",
            "coalesced_frames",
            "tunnel_frames",
        ] {
            assert_eq!(o(&sender, k) + o(&stats, k), 0, "{k} with offloads off");
        }
    }
}

/// RFC 7348 §5 entropy without reordering: the outer UDP source port follows the inner flow,
/// and it is the same for every datagram of a flow, whether the datagram left in a UDP GSO run
/// (a segment of a TSO super-frame: the port of a GSO socket) or on its own (the SYN, a short
/// segment: the raw socket), and whichever worker sent it. Two ports for one flow would be
/// two flows to the receiver's SO_REUSEPORT group, which may hand them to two workers.
#[test]
fn every_datagram_of_a_flow_carries_one_outer_source_port_gso_or_not() {
    // Two workers: a flow's frames may be read by either (the TAP steers a flow to the queue
    // its replies last came through), and the port must not depend on which.
    let mut tb =
        Testbed::two_hosts_with(&prefix("sport"), bins(), &[BLUE], &[], "workers = 2").unwrap();
    let a = step!(tb, tb.add_container(0, "a", "blue", "10.0.9.2/24"));
    let b = step!(tb, tb.add_container(1, "b", "blue", "10.0.9.3/24"));
    assert_eq!(ping(tb.container(a), "10.0.9.3", 1, &[]), (1, 1));
    // A veth with tx offloads passes our GSO runs to the capture whole; without them the
    // kernel cuts each run before the capture point, so every datagram is seen.
    step!(
        tb,
        tb.hosts[0].ns.exec(&["ethtool", "-K", "ul0", "tx", "off"])
    );
    let pcap = tb.dir.join("sport.pcap");
    let mut transfer = Err(String::new());
    testbed::capture_underlay(&tb.hosts[0].ns, &pcap, "udp dst port 4789", || {
        transfer = tcp_transfer(
            tb.container(a),
            tb.container(b),
            "10.0.9.3",
            5003,
            4 << 20,
            &tb.dir,
        );
    });
    let (sent, got) = step!(tb, transfer);
    assert_eq!(sent, got, "transfer arrived changed");

    // Outer source ports of the datagrams of the connection a -> b:5003, by inner TCP flags.
    let (mut ports, mut syns, mut data) = (std::collections::BTreeSet::new(), 0, 0);
    for p in testbed::pcap_packets(&pcap) {
        // Ethernet | IPv4 (20) | UDP | VXLAN | Ethernet | IPv4 (20) | TCP
        let (outer_udp, inner_ip) = (14 + 20, 14 + 20 + 8 + 8 + 14);
        let Some(tcp) = p.get(inner_ip + 20..inner_ip + 40) else {
            continue;
        };
        if p[inner_ip + 9] != 6 || tcp[2..4] != 5003u16.to_be_bytes() {
            continue;
        }
        ports.insert(u16::from_be_bytes([p[outer_udp], p[outer_udp + 1]]));
        let inner_len = u16::from_be_bytes([p[inner_ip + 2], p[inner_ip + 3]]) as usize;
        if tcp[13] & 0x02 != 0 {
            syns += 1;
        } else if inner_len > 1000 {
            data += 1;
        }
    }
    assert!(syns >= 1 && data > 1000, "syn {syns}, data {data}");
    let stats = step!(tb, tb.hosts[0].show_json(&tb.bins, "stats"));
    assert!(
        counter(&stats, &["offload", "gso_sends"]) > 0,
        "no GSO run: {}",
        stats["offload"]
    );
    assert_eq!(
        ports.len(),
        1,
        "one flow left with several outer source ports: {ports:?}"
    );
}

/// Small frames batch too: a burst of small UDP datagrams read from the container's TAP in one
/// batch leaves for the peer as UDP GSO runs (fewer sendmsg calls than datagrams), and every
/// datagram arrives intact and in order.
#[test]
fn a_burst_of_small_datagrams_leaves_in_gso_runs_and_arrives_in_order() {
    let mut tb = Testbed::two_hosts_with_env(&prefix("burst"), bins(), &[BLUE], &[]).unwrap();
    let a = step!(tb, tb.add_container(0, "a", "blue", "10.0.9.2/24"));
    let b = step!(tb, tb.add_container(1, "b", "blue", "10.0.9.3/24"));
    assert_eq!(ping(tb.container(a), "10.0.9.3", 1, &[]), (1, 1));
    let before = step!(tb, tb.hosts[0].show_json(&tb.bins, "stats"));
    let rx = testbed::udp_in(&tb.container(b).name, "10.0.9.3:7100");
    socket2::SockRef::from(&rx)
        .set_recv_buffer_size(8 << 20)
        .unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let tx = testbed::udp_in(&tb.container(a).name, "10.0.9.2:7101");
    const BURSTS: u32 = 20;
    const PER_BURST: u32 = 200;
    let datagram = |seq: u32| -> [u8; 64] {
        let mut d = [0u8; 64];
        d[..4].copy_from_slice(&seq.to_be_bytes());
        for (i, x) in d[4..].iter_mut().enumerate() {
            *x = (seq as u8).wrapping_mul(31).wrapping_add(i as u8);
        }
        d
    };
    let receiver = std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = [0u8; 128];
        while let Ok(n) = rx.recv(&mut buf) {
            got.push(buf[..n].to_vec());
        }
        got
    });
    tx.connect("10.0.9.3:7100").unwrap();
    for burst in 0..BURSTS {
        let msgs: Vec<[u8; 64]> = (0..PER_BURST)
            .map(|k| datagram(burst * PER_BURST + k))
            .collect();
        send_burst(&tx, &msgs);
        // Bursts, not a flood: what is checked is batching and order, not capacity.
        std::thread::sleep(Duration::from_millis(20));
    }
    let got = receiver.join().unwrap();
    let seqs: Vec<u32> = got
        .iter()
        .map(|d| u32::from_be_bytes(d[..4].try_into().unwrap()))
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "out of order: {seqs:?}"
    );
    for d in &got {
        let seq = u32::from_be_bytes(d[..4].try_into().unwrap());
        assert_eq!(d[..], datagram(seq)[..], "datagram {seq} changed");
    }
    let total = (BURSTS * PER_BURST) as usize;
    assert!(
        got.len() * 100 >= total * 99,
        "{} of {total} arrived",
        got.len()
    );
    let after = step!(tb, tb.hosts[0].show_json(&tb.bins, "stats"));
    let delta = |k: &str| counter(&after, &["offload", k]) - counter(&before, &["offload", k]);
    let (sends, datagrams) = (delta("gso_sends"), delta("gso_datagrams"));
    // The receiving side wrote runs of them to the container's TAP as single USO frames
    // (TUN_F_USO4, Linux 6.2; the daemon logs whether it has it).
    let rx = step!(tb, tb.hosts[1].show_json(&tb.bins, "stats"));
    let (runs, merged) = (
        counter(&rx, &["offload", "coalesced_frames"]),
        counter(&rx, &["offload", "coalesced_segments"]),
    );
    eprintln!("{datagrams} datagrams in {sends} GSO sends; {merged} written as {runs} frames");
    assert!(
        datagrams >= total as u64 && sends * 2 <= datagrams,
        "{datagrams} datagrams in {sends} GSO sends: the burst was not batched"
    );
    if kernel_at_least(6, 2) {
        assert!(
            tb.logs().contains("uso=true"),
            "no USO on the TAP:\n{}",
            tb.logs()
        );
    }
    if tb.logs().contains("uso=true") {
        assert!(
            runs > 0 && merged >= 2 * runs,
            "{merged} datagrams in {runs} coalesced frames: {}",
            rx["offload"]
        );
    }
}

/// A container's UDP socket with UDP_SEGMENT hands its TAP one frame of many datagrams
/// (USO, where the TAP has it: then vswitchd cuts it; otherwise the container's kernel does),
/// and the datagrams arrive as sent.
#[test]
fn a_containers_udp_gso_send_is_cut_into_datagrams_that_arrive_intact() {
    let mut tb = Testbed::two_hosts_with_env(&prefix("uso"), bins(), &[BLUE], &[]).unwrap();
    let a = step!(tb, tb.add_container(0, "a", "blue", "10.0.9.2/24"));
    let b = step!(tb, tb.add_container(1, "b", "blue", "10.0.9.3/24"));
    assert_eq!(ping(tb.container(a), "10.0.9.3", 1, &[]), (1, 1));
    let rx = testbed::udp_in(&tb.container(b).name, "10.0.9.3:7200");
    rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let tx = testbed::udp_in(&tb.container(a).name, "10.0.9.2:7201");
    let seg: libc::c_int = 1000;
    // SAFETY: setsockopt on a socket we own, with a c_int option value.
    let rc = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&tx),
            libc::SOL_UDP,
            libc::UDP_SEGMENT,
            (&seg as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "UDP_SEGMENT: {}", std::io::Error::last_os_error());
    let before = step!(tb, tb.hosts[0].show_json(&tb.bins, "stats"));
    // 5 sends of 7 datagrams each: six of 1000 bytes and one of 321.
    let payload =
        |send: usize| -> Vec<u8> { (0..6321).map(|i| (i * 13 + send * 101) as u8).collect() };
    for send in 0..5 {
        tx.send_to(&payload(send), "10.0.9.3:7200").unwrap();
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    while got.len() < 35 {
        match rx.recv(&mut buf) {
            Ok(n) => got.push(buf[..n].to_vec()),
            Err(_) => break,
        }
    }
    let want: Vec<Vec<u8>> = (0..5)
        .flat_map(|send| {
            payload(send)
                .chunks(1000)
                .map(|c| c.to_vec())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(got.len(), want.len(), "datagrams that arrived");
    assert!(got == want, "datagrams arrived changed or out of order");
    let after = step!(tb, tb.hosts[0].show_json(&tb.bins, "stats"));
    let cut =
        counter(&after, &["offload", "tso_frames"]) - counter(&before, &["offload", "tso_frames"]);
    let uso = tb.logs().contains("uso=true");
    assert_eq!(
        cut,
        if uso { 5 } else { 0 },
        "super-frames cut: {}",
        after["offload"]
    );
}

/// Sends `msgs` on the connected socket `tx` with sendmmsg: one syscall queues them all on the
/// container's TAP faster than any worker reads them, so they are there to batch.
fn send_burst(tx: &std::net::UdpSocket, msgs: &[[u8; 64]]) {
    let mut iovs: Vec<libc::iovec> = msgs
        .iter()
        .map(|m| libc::iovec {
            iov_base: m.as_ptr() as *mut libc::c_void,
            iov_len: m.len(),
        })
        .collect();
    // SAFETY: all-zero is a valid mmsghdr; each one points at one iovec above, which outlive
    // the call.
    let mut hdrs: Vec<libc::mmsghdr> = iovs
        .iter_mut()
        .map(|iov| {
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
            h
        })
        .collect();
    let mut sent = 0;
    while sent < hdrs.len() {
        // SAFETY: the headers from `sent` on are valid for the count given.
        let n = unsafe {
            libc::sendmmsg(
                std::os::fd::AsRawFd::as_raw_fd(tx),
                hdrs[sent..].as_mut_ptr(),
                (hdrs.len() - sent) as libc::c_uint,
                0,
            )
        };
        assert!(n > 0, "sendmmsg: {}", std::io::Error::last_os_error());
        sent += n as usize;
    }
}

#[test]
fn networks_with_the_same_subnet_never_cross() {
    let mut tb = Testbed::two_hosts(&prefix("iso"), bins(), &[BLUE, RED]).unwrap();
    // The same address on both networks of host 0.
    let a_blue = step!(tb, tb.add_container(0, "ab", "blue", "10.0.9.2/24"));
    let a_red = step!(tb, tb.add_container(0, "ar", "red", "10.0.9.2/24"));
    let b_blue = step!(tb, tb.add_container(1, "bb", "blue", "10.0.9.3/24"));
    let b_red = step!(tb, tb.add_container(1, "br", "red", "10.0.9.4/24"));

    assert_eq!(
        ping(tb.container(a_blue), "10.0.9.3", 3, &[]),
        (3, 3),
        "blue to blue\n{}",
        tb.logs()
    );
    assert_eq!(
        ping(tb.container(a_red), "10.0.9.4", 3, &[]),
        (3, 3),
        "red to red\n{}",
        tb.logs()
    );
    assert_eq!(
        ping(tb.container(a_blue), "10.0.9.4", 2, &[]).1,
        0,
        "blue reached red's address"
    );
    assert_eq!(
        ping(tb.container(a_red), "10.0.9.3", 2, &[]).1,
        0,
        "red reached blue's address"
    );

    // The overlapping address resolves, on each network, to that network's container.
    let mac_of = |ns: &Netns| -> String {
        let out = ns.exec(&["cat", "/sys/class/net/eth0/address"]).unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let neigh_of = |ns: &Netns, ip: &str| -> String {
        let out = ns.exec(&["ip", "-j", "neigh", "show", ip]).unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v[0]["lladdr"].as_str().unwrap_or("").to_string()
    };
    assert_eq!(ping(tb.container(b_blue), "10.0.9.2", 2, &[]), (2, 2));
    assert_eq!(ping(tb.container(b_red), "10.0.9.2", 2, &[]), (2, 2));
    assert_eq!(
        neigh_of(tb.container(b_blue), "10.0.9.2"),
        mac_of(tb.container(a_blue))
    );
    assert_eq!(
        neigh_of(tb.container(b_red), "10.0.9.2"),
        mac_of(tb.container(a_red))
    );
    assert_ne!(mac_of(tb.container(a_blue)), mac_of(tb.container(a_red)));
}

/// Counts VXLAN-carried ARP frames seen on host `ns`'s underlay while `f` runs.
fn count_arp_on_underlay(ns: &Netns, dir: &std::path::Path, f: impl FnOnce()) -> usize {
    let pcap = dir.join(format!("arp-{}.pcap", ns.name));
    // UDP header (8) + VXLAN header (8) + Ethernet addresses (12) = offset 28 of the EtherType.
    testbed::capture_underlay(ns, &pcap, "udp port 4789 and udp[28:2] = 0x0806", f);
    testbed::pcap_packets(&pcap).len()
}

#[test]
fn proxy_arp_answers_locally_and_no_arp_crosses_the_underlay() {
    let mut tb = Testbed::two_hosts(&prefix("parp"), bins(), &[BLUE]).unwrap();
    let a = step!(tb, tb.add_container(0, "a", "blue", "10.0.9.2/24"));
    let b = step!(tb, tb.add_container(1, "b", "blue", "10.0.9.3/24"));
    assert_eq!(
        ping(tb.container(a), "10.0.9.3", 2, &[]),
        (2, 2),
        "first exchange\n{}",
        tb.logs()
    );

    let before = step!(tb, tb.hosts[0].show_json(&tb.bins, "stats"));
    let ca = tb.container(a);
    let arps = count_arp_on_underlay(&tb.hosts[0].ns, &tb.dir, || {
        for _ in 0..3 {
            ca.exec(&["ip", "neigh", "flush", "all"]).unwrap();
            assert_eq!(ping(ca, "10.0.9.3", 1, &[]), (1, 1));
        }
    });
    assert_eq!(
        arps, 0,
        "ARP crossed the underlay although the switch knew the answer"
    );
    let after = step!(tb, tb.hosts[0].show_json(&tb.bins, "stats"));
    let replies = |s: &Value| counter(network(s, "blue"), &["proxy_arp_replies"]);
    assert!(
        replies(&after) >= replies(&before) + 3,
        "proxy_arp_replies did not move: {after}"
    );
    let out = ca.exec(&["ip", "-j", "neigh", "show", "10.0.9.3"]).unwrap();
    let mac_b = tb
        .container(b)
        .exec(&["cat", "/sys/class/net/eth0/address"])
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains(String::from_utf8_lossy(&mac_b.stdout).trim()),
        "container a resolved 10.0.9.3 to the wrong MAC"
    );

    // Control: an address nobody has is not answered, so its ARP is flooded over the
    // underlay — the capture does see VXLAN-carried ARP when there is some.
    let arps = count_arp_on_underlay(&tb.hosts[0].ns, &tb.dir, || {
        let _ = ping(ca, "10.0.9.77", 1, &[]);
    });
    assert!(
        arps >= 1,
        "the capture saw no flooded ARP for an unknown address"
    );
}

#[test]
fn malformed_underlay_traffic_is_dropped_and_counted_and_traffic_still_flows() {
    let mut tb = Testbed::two_hosts(&prefix("bad"), bins(), &[BLUE]).unwrap();
    let a = step!(tb, tb.add_container(0, "a", "blue", "10.0.9.2/24"));
    let _b = step!(tb, tb.add_container(1, "b", "blue", "10.0.9.3/24"));
    assert_eq!(ping(tb.container(a), "10.0.9.3", 2, &[]), (2, 2));
    let before = step!(tb, tb.hosts[0].show_json(&tb.bins, "stats"));

    // From host 1 (a configured peer), and from an extra address on its underlay that is not
    // a peer. 1000 of each kind, paced so the kernel's socket buffer never overflows.
    let h1 = &tb.hosts[1].ns;
    step!(
        tb,
        h1.exec(&["ip", "addr", "add", "192.0.2.99/24", "dev", "ul0"])
    );
    let script = r#"
import socket, random, time
random.seed(7)
peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); peer.bind(("192.0.2.2", 0))
stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); stranger.bind(("192.0.2.99", 0))
dst = ("192.0.2.1", 4789)
def vx(vni, flags=0x08): return bytes([flags, 0, 0, 0]) + vni.to_bytes(3, "big") + b"\0"
kinds = [
  (peer, lambda: bytes(random.randrange(256) for _ in range(random.randrange(8)))),        # shorter than VXLAN
  (peer, lambda: vx(42, flags=random.choice([0x00, 0x01, 0x80, 0xf7])) + bytes(60)),       # I flag clear
  (peer, lambda: vx(random.randrange(100, 1 << 24)) + bytes(60)),                          # unknown VNI
  (peer, lambda: vx(42) + bytes(random.randrange(14))),                                    # truncated inner frame
  (stranger, lambda: bytes(random.randrange(256) for _ in range(random.randrange(1, 1400)))), # random, not a peer
]
for s, make in kinds:
    for i in range(1000):
        s.sendto(make(), dst)
        if i % 50 == 0: time.sleep(0.005)
"#;
    step!(tb, h1.exec(&["python3", "-c", script]));
    // Every datagram sent has reached the switch (and been counted) before counting.
    let rx = |s: &Value| counter(s, &["underlay", "rx_packets"]);
    let all_in = testbed::wait_until(Duration::from_secs(10), || {
        tb.hosts[0]
            .show_json(&tb.bins, "stats")
            .is_ok_and(|s| rx(&s) >= rx(&before) + 5000)
    });
    assert!(
        all_in,
        "the switch did not receive the 5,000 datagrams\n{}",
        tb.logs()
    );

    let after = step!(tb, tb.hosts[0].show_json(&tb.bins, "stats"));
    let d = |s: &Value, k: &str| counter(s, &["underlay", "drops", k]);
    let nd = |s: &Value, k: &str| counter(network(s, "blue"), &["counters", "drops", k]);
    assert_eq!(
        d(&after, "vxlan_truncated") - d(&before, "vxlan_truncated"),
        1000,
        "{after}"
    );
    assert_eq!(
        d(&after, "vxlan_no_vni_flag") - d(&before, "vxlan_no_vni_flag"),
        1000,
        "{after}"
    );
    assert_eq!(
        d(&after, "unknown_vni") - d(&before, "unknown_vni"),
        1000,
        "{after}"
    );
    assert_eq!(
        nd(&after, "frame_truncated") - nd(&before, "frame_truncated"),
        1000,
        "{after}"
    );
    assert_eq!(
        d(&after, "unknown_peer") - d(&before, "unknown_peer"),
        1000,
        "{after}"
    );

    assert!(
        tb.hosts[0]
            .daemon
            .as_mut()
            .unwrap()
            .child
            .try_wait()
            .unwrap()
            .is_none(),
        "vswitchd died"
    );
    assert_eq!(
        ping(tb.container(a), "10.0.9.3", 3, &[]),
        (3, 3),
        "traffic stopped after bad input"
    );
}

#[test]
fn af_packet_port_reaches_a_tap_container_on_the_other_host() {
    af_packet_port(true);
}

/// The same with VSWITCH_AF_PACKET_RING=off: one recvmsg per frame.
#[test]
fn af_packet_port_without_the_ring_reaches_a_tap_container_on_the_other_host() {
    af_packet_port(false);
}

fn af_packet_port(ring: bool) {
    let env: &[(&str, &str)] = if ring {
        &[]
    } else {
        &[("VSWITCH_AF_PACKET_RING", "off")]
    };
    let tag = if ring { "afp" } else { "afp-rm" };
    let mut tb = Testbed::two_hosts_with_env(&prefix(tag), bins(), &[BLUE], env).unwrap();
    let b = step!(tb, tb.add_container(1, "b", "blue", "10.0.9.3/24"));
    // Another runtime made this veth: container end eth0, host end "ext0" in host 0.
    let x = step!(tb, tb.add_veth_station(0, "x", "10.0.9.5/24"));
    let out = step!(
        tb,
        tb.hosts[0].ctl(
            &tb.bins,
            &[
                "attach-interface",
                "--network",
                "blue",
                "--interface",
                "ext0",
                "--ip",
                "10.0.9.5/24"
            ]
        )
    );
    assert!(out.contains("ext0"), "attach-interface said: {out}");

    assert_eq!(
        ping(tb.container(x), "10.0.9.3", 3, &[]),
        (3, 3),
        "af_packet -> tap\n{}",
        tb.logs()
    );
    assert_eq!(
        ping(tb.container(b), "10.0.9.5", 3, &[]),
        (3, 3),
        "tap -> af_packet\n{}",
        tb.logs()
    );
    let path = if ring {
        "packet sockets receive through a TPACKET_V3 ring"
    } else {
        "attached interfaces receive with one recvmsg per frame"
    };
    assert!(tb.logs().contains(path), "no {path:?} in\n{}", tb.logs());
    // TCP both ways: the container's veth end has TSO on (the default), so its super-frames
    // arrive whole on the packet socket and are segmented here; what comes back is coalesced.
    tb.transfer_intact(x, b, "10.0.9.3", 5021, 20 << 20, "af_packet -> tap TCP");
    tb.transfer_intact(b, x, "10.0.9.5", 5022, 20 << 20, "tap -> af_packet TCP");
    let ports = step!(tb, tb.hosts[0].show_json(&tb.bins, "ports"));
    let p = ports
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["kind"] == "af_packet")
        .expect("af_packet port listed");
    // The container's own IPv6 chatter (MLD reports, router solicitations) goes nowhere by
    // design (crate::switch::multicast); nothing else may be dropped.
    let drops = p["counters"]["drops"].as_object().unwrap();
    assert!(
        drops
            .keys()
            .all(|k| k == "mld" || k == "router_solicitation"),
        "af_packet port dropped frames: {p}"
    );
    assert!(
        counter(p, &["counters", "rx_packets"]) >= 3
            && counter(p, &["counters", "tx_packets"]) >= 3,
        "{p}"
    );

    step!(
        tb,
        tb.hosts[0].ctl(
            &tb.bins,
            &[
                "detach-interface",
                "--network",
                "blue",
                "--interface",
                "ext0"
            ]
        )
    );
    assert_eq!(
        ping(tb.container(x), "10.0.9.3", 1, &[]).1,
        0,
        "still forwarding after detach"
    );
}

#[test]
fn detach_and_shutdown_remove_the_interfaces_they_made() {
    let mut tb = Testbed::two_hosts(&prefix("det"), bins(), &[BLUE]).unwrap();
    let a = step!(tb, tb.add_container(0, "a", "blue", "10.0.9.2/24"));
    let b = step!(tb, tb.add_container(0, "b", "blue", "10.0.9.4/24"));
    let has_eth0 = |ns: &Netns| {
        ns.try_exec(&["ip", "link", "show", "eth0"])
            .status
            .success()
    };
    assert!(has_eth0(tb.container(a)));
    let ns_a = tb.container(a).name.clone();
    step!(
        tb,
        tb.hosts[0].ctl(
            &tb.bins,
            &["detach-namespace", "--network", "blue", "--netns", &ns_a]
        )
    );
    assert!(
        !has_eth0(tb.container(a)),
        "eth0 still in the namespace after detach"
    );
    // Detaching twice is an error that says so.
    let err = tb.hosts[0]
        .ctl(
            &tb.bins,
            &["detach-namespace", "--network", "blue", "--netns", &ns_a],
        )
        .unwrap_err();
    assert!(err.contains("not attached"), "{err}");

    // SIGTERM: the daemon exits cleanly and the container's interface is gone with it.
    let status = tb.hosts[0].daemon.as_mut().unwrap().stop().unwrap();
    assert!(
        status.success(),
        "vswitchd exited with {status}\n{}",
        tb.logs()
    );
    assert!(!has_eth0(tb.container(b)), "eth0 survived the daemon");
    assert!(!tb.hosts[0].socket.exists(), "control socket left behind");
}

#[test]
fn bad_attach_requests_fail_with_clear_errors() {
    let mut tb = Testbed::two_hosts(&prefix("err"), bins(), &[BLUE]).unwrap();
    let _a = step!(tb, tb.add_container(0, "a", "blue", "10.0.9.2/24"));
    let other = step!(tb, Netns::new(&format!("{}-o", tb.prefix)));
    let h = &tb.hosts[0];
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "attach-namespace",
                "--network",
                "green",
                "--netns",
                &other.name,
                "--ip",
                "10.0.9.9/24",
            ],
            "green",
        ),
        (
            &[
                "attach-namespace",
                "--network",
                "blue",
                "--netns",
                "no-such-ns-x",
                "--ip",
                "10.0.9.9/24",
            ],
            "no-such-ns-x",
        ),
        (
            &[
                "attach-namespace",
                "--network",
                "blue",
                "--netns",
                &other.name,
                "--ip",
                "10.0.8.9/24",
            ],
            "subnet",
        ),
        (
            &[
                "attach-namespace",
                "--network",
                "blue",
                "--netns",
                &other.name,
                "--ip",
                "10.0.9.2/24",
            ],
            "already used",
        ),
        (
            &[
                "attach-interface",
                "--network",
                "blue",
                "--interface",
                "nosuchif0",
            ],
            "nosuchif0",
        ),
    ];
    for (args, expect) in cases {
        let err = h.ctl(&tb.bins, args).unwrap_err();
        assert!(err.contains(expect), "`{}` said: {err}", args.join(" "));
    }
    // Nothing was left half-made in the namespace.
    assert!(!other
        .try_exec(&["ip", "link", "show", "eth0"])
        .status
        .success());
    drop(other);
    let _ = testbed::run(&["true"]);
}

#[test]
fn port_security_drops_and_counts_what_a_container_forges_unless_relaxed() {
    let mut tb = Testbed::two_hosts(&prefix("psec"), bins(), &[BLUE]).unwrap();
    let a = step!(tb, tb.add_container(0, "a", "blue", "10.0.9.2/24"));
    let _b = step!(tb, tb.add_container(1, "b", "blue", "10.0.9.3/24"));
    assert_eq!(
        ping(tb.container(a), "10.0.9.3", 1, &[]),
        (1, 1),
        "{}",
        tb.logs()
    );
    let port_drops = |tb: &Testbed, reason: &str| {
        let ports = tb.hosts[0].show_json(&tb.bins, "ports").unwrap();
        ports[0]["counters"]["drops"][reason].as_u64().unwrap_or(0)
    };

    // A second address the switch did not give it: its packets never leave the host.
    let ca = tb.container(a);
    ca.exec(&["ip", "addr", "add", "10.0.9.99/24", "dev", "eth0"])
        .unwrap();
    assert_eq!(ping(ca, "10.0.9.3", 2, &["-I", "10.0.9.99"]), (2, 0));
    // (The ICMP itself, or the ARP it needs first, which names the forged address too.)
    let forged = port_drops(&tb, "spoofed_ip") + port_drops(&tb, "spoofed_arp");
    assert!(
        forged >= 2,
        "{}",
        tb.hosts[0].show_json(&tb.bins, "ports").unwrap()
    );
    // Another MAC: nothing passes, and the neighbours keep the real one.
    ca.exec(&["ip", "link", "set", "eth0", "address", "02:66:66:66:66:66"])
        .unwrap();
    assert_eq!(ping(ca, "10.0.9.3", 2, &[]).1, 0);
    assert!(port_drops(&tb, "spoofed_mac") >= 2);

    // Relaxed for a container that routes: the same forged source gets its answers.
    let r = step!(tb, Netns::new(&format!("{}-r", tb.prefix)));
    step!(
        tb,
        tb.hosts[0].attach_namespace(
            &tb.bins,
            "blue",
            &r.name,
            "10.0.9.4/24",
            &["--no-port-security"]
        )
    );
    r.exec(&["ip", "addr", "add", "10.0.9.98/24", "dev", "eth0"])
        .unwrap();
    assert_eq!(
        ping(&r, "10.0.9.3", 2, &["-I", "10.0.9.98"]),
        (2, 2),
        "{}",
        tb.logs()
    );
    tb.containers.push(r);
}
