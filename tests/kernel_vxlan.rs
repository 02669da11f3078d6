//! vswitchd beside the Linux kernel's own VXLAN device on the namespace testbed (root required;
//! see TESTING.md): host 1 runs no vswitchd but a kernel `vxlan` device and a bridge, and the
//! two carry each other's traffic both ways — pings, TCP, partial checksums, tunnel-GSO
//! super-frames — as any two Linux VXLAN hosts would.

mod common;

use common::testbed::{self, ping, run, Netns, Testbed, BLUE};
use common::{bins, counter, kernel_at_least, offload_env};
use serde_json::Value;
use std::time::Duration;

fn prefix(tag: &str) -> String {
    format!("vst{}-{tag}", std::process::id())
}

/// Whether this kernel has UDP-tunnel GSO for TUN/TAP (Linux 6.17).
fn tunnel_gso_kernel() -> bool {
    kernel_at_least(6, 17)
}

#[test]
fn interoperates_with_the_kernel_vxlan_device() {
    kernel_interop(true);
}

#[test]
fn interoperates_with_the_kernel_vxlan_device_without_offloads() {
    kernel_interop(false);
}

fn kernel_interop(offloads: bool) {
    let mut tb = Testbed::new(&prefix(if offloads { "kvx" } else { "kvx-nooff" }), bins()).unwrap();
    tb.daemon_env = offload_env(offloads)
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    step!(tb, tb.add_hosts(2));
    step!(tb, tb.write_config(0, &[BLUE], ""));
    step!(tb, tb.start_daemon(0));
    let a = step!(tb, tb.add_container(0, "a", "blue", "10.0.9.2/24"));

    // Host 1 runs no vswitchd: the kernel's own VXLAN device and a bridge (TESTING.md).
    let h1 = &tb.hosts[1].ns;
    for cmd in [
        "ip link add vx0 type vxlan id 42 dstport 4789 local 192.0.2.2 nolearning",
        "bridge fdb append 00:00:00:00:00:00 dev vx0 dst 192.0.2.1",
        "ip link add br0 type bridge",
        "ip link set vx0 master br0",
        "ip link set vx0 up",
        "ip link set br0 up",
    ] {
        step!(tb, h1.exec(&cmd.split(' ').collect::<Vec<_>>()));
    }
    let c = step!(tb, Netns::new(&format!("{}-k", tb.prefix)));
    step!(
        tb,
        run(&[
            "ip", "link", "add", "eth0", "netns", &c.name, "type", "veth", "peer", "name", "vc",
            "netns", &h1.name
        ])
    );
    step!(
        tb,
        h1.exec(&["ip", "link", "set", "vc", "master", "br0", "up"])
    );
    step!(
        tb,
        c.exec(&["ip", "link", "set", "eth0", "mtu", "1450", "up"])
    );
    step!(
        tb,
        c.exec(&["ip", "addr", "add", "10.0.9.3/24", "dev", "eth0"])
    );
    tb.containers.push(c);
    let k = tb.containers.len() - 1;

    assert_eq!(
        ping(tb.container(a), "10.0.9.3", 5, &[]),
        (5, 5),
        "vswitch -> kernel\n{}",
        tb.logs()
    );
    assert_eq!(
        ping(tb.container(k), "10.0.9.2", 5, &[]),
        (5, 5),
        "kernel -> vswitch\n{}",
        tb.logs()
    );
    assert_eq!(
        ping(tb.container(a), "10.0.9.3", 2, &["-M", "do", "-s", "1422"]),
        (2, 2),
        "full-size DF ping to kernel"
    );
    // A kernel VXLAN peer never answers vswitchd's probes: the prober checks the tunnel device
    // by seeing its probes leave the host instead (src/io/egress.rs), and the workers then hand
    // super-frames to the kernel whole, which the kernel peer takes as from its own kind.
    let tunnel = offloads && tunnel_gso_kernel();
    if tunnel {
        let on = "tunnel GSO on: probes sent through the tunnel device leave the host";
        assert!(
            testbed::wait_until(Duration::from_secs(10), || tb.logs().contains(on)),
            "{}",
            tb.logs()
        );
    }
    tb.transfer_intact(a, k, "10.0.9.3", 5002, 20 << 20, "vswitch -> kernel TCP");
    let sent = step!(tb, tb.hosts[0].show_json(&tb.bins, "stats"));
    if tunnel {
        assert!(
            counter(&sent, &["offload", "tunnel_frames"]) > 100,
            "{}",
            sent["offload"]
        );
        assert!(
            counter(&sent, &["offload", "tso_frames"]) < 20,
            "{}",
            sent["offload"]
        );
    }
    tb.transfer_intact(k, a, "10.0.9.2", 5003, 20 << 20, "kernel -> vswitch TCP");
    // The kernel's underlay is a veth with tx offloads on, as the testbed leaves it: its TCP
    // arrived as tunnel-GSO super-datagrams that vswitchd wrote whole (offloads on) or cut
    // (offloads off) rather than dropped.
    let stats = step!(tb, tb.hosts[0].show_json(&tb.bins, "stats"));
    assert!(
        counter(&stats, &["offload", "peer_super_frames"]) > 0,
        "no super-frame from the kernel peer: {}",
        stats["offload"]
    );

    // And its VXLAN device leaves every inner UDP checksum partial, which vswitchd completes.
    // Without that the container's kernel would drop each datagram as corrupt.
    let rx = testbed::udp_in(&tb.container(a).name, "10.0.9.2:5005");
    rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let before = counter(
        &step!(tb, tb.hosts[0].show_json(&tb.bins, "stats")),
        &["offload", "partial_checksums"],
    );
    let send = "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\nfor i in range(20): s.sendto(b'partial-%02d' % i + bytes(300), ('10.0.9.2', 5005))";
    step!(tb, tb.container(k).exec(&["python3", "-c", send]));
    let mut got = 0;
    let mut buf = [0u8; 2048];
    while let Ok(n) = rx.recv(&mut buf) {
        assert!(buf[..n].starts_with(b"partial-"), "datagram changed");
        got += 1;
        if got == 20 {
            break;
        }
    }
    assert_eq!(
        got,
        20,
        "UDP from the kernel with tx offload on\n{}",
        tb.logs()
    );
    let after = counter(
        &step!(tb, tb.hosts[0].show_json(&tb.bins, "stats")),
        &["offload", "partial_checksums"],
    );
    assert!(
        after >= before + 20,
        "partial_checksums {before} -> {after}"
    );
    if tunnel {
        kernel_peer_behind_a_forward_drop(&mut tb, a, k, &sent);
    }
}

/// A FORWARD chain that drops (what dockerd sets) keeps the probes written to the tunnel
/// device from leaving the host: with only a kernel peer, the daemon sees that, says so with
/// the rule that would let them through, and segments super-frames itself from then on.
fn kernel_peer_behind_a_forward_drop(tb: &mut Testbed, a: usize, k: usize, before: &Value) {
    // In host 0's own namespace: gone with it, nothing in the root namespace.
    step!(
        tb,
        tb.hosts[0].ns.exec(&["iptables", "-P", "FORWARD", "DROP"])
    );
    let said = "probes vswitchd sends from its socket leave the host, those it sends through its \
                tunnel device do not";
    tb.expect_tunnel_firewall_warning(said);
    tb.transfer_intact(
        a,
        k,
        "10.0.9.3",
        5006,
        20 << 20,
        "vswitch -> kernel TCP, segmented",
    );
    let after = step!(tb, tb.hosts[0].show_json(&tb.bins, "stats"));
    let tunnel = &["offload", "tunnel_frames"];
    let tso = &["offload", "tso_frames"];
    assert_eq!(
        counter(&after, tunnel),
        counter(before, tunnel),
        "{}",
        after["offload"]
    );
    assert!(
        counter(&after, tso) > counter(before, tso) + 100,
        "{}",
        after["offload"]
    );
}
