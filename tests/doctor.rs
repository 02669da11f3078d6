//! `vswitchctl doctor` and the probe columns of `show peers`, end to end (root required; see
//! TESTING.md): two hosts in namespaces, a firewall (iptables inside the peer's namespace)
//! dropping VXLAN or ESP, networks that differ between the hosts.

mod common;

use common::bins;
use common::testbed::{run, wait_until, NetDef, Testbed, BLUE};
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::Duration;

fn prefix(tag: &str) -> String {
    format!("vsw{}-dr{tag}", std::process::id())
}

/// Runs `vswitchctl doctor ARGS` against host `i`: (exit code, stdout).
fn doctor(tb: &Testbed, i: usize, args: &[&str]) -> (i32, String) {
    let out = Command::new(&tb.bins.vswitchctl)
        .arg("--socket")
        .arg(&tb.hosts[i].socket)
        .arg("doctor")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("vswitchctl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!(
        "$ vswitchctl doctor {} (on {})\n{text}",
        args.join(" "),
        tb.hosts[i].name
    );
    (out.status.code().unwrap_or(-1), text)
}

/// `show peers --json` of host `i`: the row of the peer at `ip`.
fn peer_row(tb: &Testbed, i: usize, ip: &str) -> Value {
    let peers = tb.hosts[i].show_json(&tb.bins, "peers").unwrap();
    peers
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["underlay_ip"] == ip)
        .cloned()
        .unwrap_or(Value::Null)
}

/// Drops (or with `-D`, stops dropping) UDP to `port` arriving at host `i`: a firewall in that
/// host's own namespace, nothing in the root namespace.
fn firewall(tb: &Testbed, i: usize, op: &str, port: u16) {
    let port = port.to_string();
    step!(
        tb,
        tb.hosts[i]
            .ns
            .exec(&["iptables", op, "INPUT", "-p", "udp", "--dport", &port, "-j", "DROP"])
    );
}

#[test]
fn doctor_names_a_peer_whose_vxlan_port_is_blocked_and_is_happy_once_it_opens() {
    let tb = Testbed::two_hosts(&prefix("fw"), bins(), &[BLUE]).unwrap();

    // All well: exit 0 and one all-good line that says what was checked.
    let (code, out) = doctor(&tb, 0, &[]);
    assert_eq!(code, 0, "doctor on a healthy pair:\n{out}\n{}", tb.logs());
    assert!(out.starts_with("all good on node-a:"), "{out}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        out.contains("peer node-b (192.0.2.2) answers on UDP 4789 in"),
        "{out}"
    );
    assert!(
        out.contains("1500-byte packets with don't-fragment arrive"),
        "{out}"
    );
    assert!(
        out.contains("1 network(s) with the same name, vni"),
        "{out}"
    );
    if common::kernel_at_least(6, 17) {
        // Once the peer answered probes sent through the tunnel device.
        let on = "tunnel GSO on: TCP super-frames to peers leave whole through vswgso0";
        assert!(
            wait_until(Duration::from_secs(10), || doctor(&tb, 0, &[])
                .1
                .contains(on)),
            "{}",
            tb.logs()
        );
    }

    // The background prober: show peers says reachable, with a round trip time.
    let fresh = wait_until(Duration::from_secs(10), || {
        peer_row(&tb, 0, "192.0.2.2")["probe"]["reachable"] == true
    });
    assert!(fresh, "{}\n{}", peer_row(&tb, 0, "192.0.2.2"), tb.logs());
    let row = peer_row(&tb, 0, "192.0.2.2");
    let rtt = row["probe"]["rtt_ms"].as_f64().expect("an rtt");
    assert!(rtt > 0.0 && rtt < 1000.0, "{row}");
    assert_eq!(row["probe"]["port"], 4789);
    let text = step!(tb, tb.hosts[0].ctl(&tb.bins, &["show", "peers"]));
    let header = text.lines().next().unwrap();
    assert!(header.contains("PROBE"), "{text}");
    let line = text.lines().find(|l| l.contains("192.0.2.2")).unwrap();
    assert!(line.contains(" ok ") && line.ends_with("ms"), "{text}");

    // VXLAN blocked on the peer: doctor names the peer and the port, exits 1.
    firewall(&tb, 1, "-I", 4789);
    let (code, out) = doctor(&tb, 0, &["--wait", "2"]);
    assert_eq!(code, 1, "{out}");
    let finding = out
        .lines()
        .find(|l| l.starts_with("peer node-b (192.0.2.2): no answer on UDP 4789"))
        .unwrap_or_else(|| panic!("no finding about node-b's UDP 4789:\n{out}"));
    assert!(finding.contains("firewall"), "{finding}");
    assert!(!out.contains("all good"), "{out}");
    let (code, json) = doctor(&tb, 0, &["--wait", "1", "--json"]);
    assert_eq!(code, 1);
    let report: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(report["findings"][0]["check"], "reachability", "{report}");
    assert_eq!(report["peers"][0]["vxlan"]["reachable"], false, "{report}");
    // And the background prober sees it go.
    let gone = wait_until(Duration::from_secs(15), || {
        peer_row(&tb, 0, "192.0.2.2")["probe"]["reachable"] == false
    });
    assert!(gone, "{}", peer_row(&tb, 0, "192.0.2.2"));
    let text = step!(tb, tb.hosts[0].ctl(&tb.bins, &["show", "peers"]));
    assert!(text.contains("NO ANSWER"), "{text}");

    // Open again: all good again.
    firewall(&tb, 1, "-D", 4789);
    let (code, out) = doctor(&tb, 0, &[]);
    assert_eq!(code, 0, "after unblocking:\n{out}\n{}", tb.logs());
    assert!(out.starts_with("all good"), "{out}");
    let back = wait_until(Duration::from_secs(10), || {
        peer_row(&tb, 0, "192.0.2.2")["probe"]["reachable"] == true
    });
    assert!(back, "{}", peer_row(&tb, 0, "192.0.2.2"));
}

#[test]
fn doctor_names_networks_whose_vni_or_encryption_differ_between_hosts() {
    let mut tb = Testbed::new(&prefix("nw"), bins()).unwrap();
    step!(tb, tb.add_hosts(2));
    let key = tb.dir.join("green.key");
    step!(
        tb,
        run(&[
            tb.bins.vswitchctl.to_str().unwrap(),
            "gen-key",
            "--out",
            key.to_str().unwrap()
        ])
    );
    let green_enc = NetDef {
        name: "green",
        vni: 44,
        subnet: "10.0.10.0/24",
        extra: "encrypted = true\nkey_file = \"{dir}/green.key\"",
    };
    let green_plain = NetDef {
        extra: "",
        ..green_enc.clone()
    };
    let blue_43 = NetDef { vni: 43, ..BLUE };
    step!(tb, tb.write_config(0, &[BLUE, green_enc], ""));
    step!(tb, tb.write_config(1, &[blue_43, green_plain], ""));
    step!(tb, tb.start_daemon(0));
    step!(tb, tb.start_daemon(1));

    let (code, out) = doctor(&tb, 0, &["--wait", "2"]);
    assert_eq!(code, 1, "{out}\n{}", tb.logs());
    assert!(
        out.lines()
            .any(|l| l.starts_with("network blue (vni 42): has vni 43 on node-b")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("network green (vni 44): encrypted here, not on node-b")),
        "{out}"
    );
    // node-b has no encrypted network, so nothing answers on its ESP port.
    assert!(
        out.contains("peer node-b (192.0.2.2): no answer on ESP-in-UDP 4500"),
        "{out}"
    );
    // The VXLAN port itself is fine.
    assert!(!out.contains("no answer on UDP 4789"), "{out}");
    // Seen from the other side too.
    let (code, out) = doctor(&tb, 1, &["--wait", "1"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("network blue (vni 43): has vni 42 on node-a")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l
                .starts_with("network green (vni 44): not encrypted here, encrypted on node-a")),
        "{out}"
    );
}

#[test]
fn doctor_probes_the_esp_port_of_encrypted_networks() {
    let mut tb = Testbed::new(&prefix("esp"), bins()).unwrap();
    step!(tb, tb.add_hosts(2));
    let key = tb.dir.join("blue.key");
    step!(
        tb,
        run(&[
            tb.bins.vswitchctl.to_str().unwrap(),
            "gen-key",
            "--out",
            key.to_str().unwrap()
        ])
    );
    let blue_enc = NetDef {
        extra: "encrypted = true\nkey_file = \"{dir}/blue.key\"",
        ..BLUE
    };
    for i in 0..2 {
        step!(tb, tb.write_config(i, std::slice::from_ref(&blue_enc), ""));
        step!(tb, tb.start_daemon(i));
    }
    let (code, out) = doctor(&tb, 0, &[]);
    assert_eq!(code, 0, "{out}\n{}", tb.logs());
    assert!(out.contains("answers on ESP-in-UDP 4500 in"), "{out}");
    assert!(out.contains("clocks agree within"), "{out}");
    let fresh = wait_until(Duration::from_secs(10), || {
        peer_row(&tb, 0, "192.0.2.2")["esp_probe"]["reachable"] == true
    });
    assert!(fresh, "{}", peer_row(&tb, 0, "192.0.2.2"));

    firewall(&tb, 1, "-I", 4500);
    let (code, out) = doctor(&tb, 0, &["--wait", "1"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.lines().any(|l| l
            .starts_with("peer node-b (192.0.2.2): no answer on ESP-in-UDP 4500 for 1 s")),
        "{out}"
    );
    assert!(!out.contains("no answer on UDP 4789"), "{out}");
    firewall(&tb, 1, "-D", 4500);
    let (code, out) = doctor(&tb, 0, &[]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn doctor_reports_the_largest_packet_that_crosses_a_narrower_path() {
    let tb = Testbed::two_hosts(&prefix("mtu"), bins(), &[BLUE]).unwrap();
    // The underlay's switch namespace forwards at most 1400-byte packets towards node-b: its
    // bridge drops larger ones, as a hop with a smaller MTU does.
    let sw = tb
        .containers
        .iter()
        .find(|n| n.name.ends_with("-ul"))
        .expect("the underlay switch namespace");
    step!(tb, sw.exec(&["ip", "link", "set", "p1", "mtu", "1400"]));
    let (code, out) = doctor(&tb, 0, &["--wait", "2"]);
    assert_eq!(code, 1, "{out}");
    let finding = out
        .lines()
        .find(|l| {
            l.starts_with(
                "peer node-b (192.0.2.2): 1500-byte packets with don't-fragment do not arrive",
            )
        })
        .unwrap_or_else(|| panic!("no MTU finding:\n{out}"));
    assert!(finding.contains("blue (mtu 1450)"), "{finding}");
    assert!(finding.contains("1400-byte packets do"), "{finding}");
    assert!(
        finding.contains("lower those networks' mtu by 100"),
        "{finding}"
    );
    // Small packets still cross: reachable, and nothing else is wrong.
    assert!(!out.contains("no answer"), "{out}");
    assert_eq!(out.lines().count(), 1, "{out}");

    step!(tb, sw.exec(&["ip", "link", "set", "p1", "mtu", "1500"]));
    let (code, out) = doctor(&tb, 0, &[]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn in_a_cluster_doctor_checks_the_store_and_the_peers_it_lists() {
    let (mut tb, _urls) =
        Testbed::cluster(&prefix("cl"), bins(), 2, 1, "lease_ttl = \"3s\"\n").unwrap();
    // The peers come from etcd: wait until each host carries the other.
    let peered = wait_until(Duration::from_secs(5), || {
        peer_row(&tb, 0, "192.0.2.2")["probe"]["reachable"] == true
    });
    assert!(peered, "{}\n{}", peer_row(&tb, 0, "192.0.2.2"), tb.logs());
    let (code, out) = doctor(&tb, 0, &[]);
    assert_eq!(code, 0, "{out}\n{}", tb.logs());
    assert!(
        out.contains("cluster store reachable (http://192.0.2.100:2379)"),
        "{out}"
    );
    assert!(
        out.contains("peer node-b (192.0.2.2) answers on UDP 4789"),
        "{out}"
    );

    // etcd gone: forwarding goes on, and doctor says so and what to do.
    tb.stop_etcd_member(0);
    let seen = wait_until(Duration::from_secs(15), || {
        let (code, out) = doctor(&tb, 0, &["--wait", "1"]);
        code == 1 && out.contains("cluster store: http://192.0.2.100:2379 unreachable")
    });
    assert!(seen, "{}", tb.logs());
    let (_, out) = doctor(&tb, 0, &["--wait", "1", "--json"]);
    let report: Value = serde_json::from_str(&out).unwrap();
    let checks: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["check"].as_str().unwrap())
        .collect();
    assert!(checks.contains(&"cluster"), "{report}");
}

#[test]
fn doctor_names_the_underlay_offload_that_is_off_and_is_happy_once_it_is_on() {
    let tb = Testbed::two_hosts(&prefix("off"), bins(), &[BLUE]).unwrap();
    let ethtool = |args: &[&str]| {
        let mut a = vec!["ethtool", "-K", "ul0"];
        a.extend_from_slice(args);
        step!(tb, tb.hosts[0].ns.exec(&a));
    };
    let (code, out) = doctor(&tb, 0, &[]);
    assert_eq!(code, 0, "{out}\n{}", tb.logs());
    assert!(
        out.contains("underlay ul0: tx-checksumming, scatter-gather, tx-udp-segmentation on"),
        "{out}"
    );

    // Transmit checksumming off (UDP segmentation goes with it): one line, naming the
    // interface, the offload and the command that turns it on.
    ethtool(&["tx", "off"]);
    let (code, out) = doctor(&tb, 0, &[]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        out.starts_with("underlay ul0: tx-checksumming is off (tx-udp-segmentation off with it)"),
        "{out}"
    );
    assert!(out.contains("`ethtool -K ul0 tx on`"), "{out}");
    let (code, json) = doctor(&tb, 0, &["--json"]);
    assert_eq!(code, 1);
    let report: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(report["findings"][0]["check"], "offloads", "{report}");
    assert_eq!(report["findings"][0]["subject"], "underlay ul0", "{report}");
    // The other host's doctor is not concerned.
    let (code, out) = doctor(&tb, 1, &[]);
    assert_eq!(code, 0, "{out}");

    ethtool(&["tx", "on"]);
    let (code, out) = doctor(&tb, 0, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("all good"), "{out}");

    // UDP segmentation alone.
    ethtool(&["tx-udp-segmentation", "off"]);
    let (code, out) = doctor(&tb, 0, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.starts_with("underlay ul0: tx-udp-segmentation is off: the kernel cuts"),
        "{out}"
    );
    assert!(
        out.contains("`ethtool -K ul0 tx-udp-segmentation on`"),
        "{out}"
    );
    ethtool(&["tx-udp-segmentation", "on"]);
    let (code, out) = doctor(&tb, 0, &[]);
    assert_eq!(code, 0, "{out}");
}

/// An underlay address on a bridge: doctor checks the bridge's ports too, since the datagrams
/// leave through them and `ethtool -K` on the bridge does not change theirs.
#[test]
fn doctor_checks_the_ports_of_an_underlay_bridge() {
    let tb = Testbed::two_hosts(&prefix("br"), bins(), &[BLUE]).unwrap();
    let ns = &tb.hosts[0].ns;
    // Host 0's underlay address moves from ul0 to a bridge with ul0 as its port.
    for cmd in [
        &["ip", "link", "add", "brul", "type", "bridge"][..],
        &["ip", "link", "set", "ul0", "master", "brul"],
        &["ip", "addr", "flush", "dev", "ul0"],
        &["ip", "addr", "add", "192.0.2.1/24", "dev", "brul"],
        &["ip", "link", "set", "brul", "up"],
    ] {
        step!(tb, ns.exec(cmd));
    }
    assert!(
        wait_until(Duration::from_secs(10), || doctor(&tb, 0, &[]).0 == 0),
        "doctor never all good over the bridge\n{}",
        tb.logs()
    );
    let (_, out) = doctor(&tb, 0, &[]);
    assert!(out.contains("underlay brul: "), "{out}");
    assert!(
        out.contains("underlay ul0 (port of brul): tx-checksumming, scatter-gather"),
        "{out}"
    );

    step!(tb, ns.exec(&["ethtool", "-K", "ul0", "tx", "off"]));
    let (code, out) = doctor(&tb, 0, &[]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(out.lines().count(), 1, "only the port's line: {out}");
    assert!(
        out.starts_with(
            "underlay ul0 (port of brul): tx-checksumming is off (tx-udp-segmentation off with it)"
        ),
        "{out}"
    );
    assert!(out.contains("`ethtool -K ul0 tx on`"), "{out}");

    step!(tb, ns.exec(&["ethtool", "-K", "ul0", "tx", "on"]));
    let (code, out) = doctor(&tb, 0, &[]);
    assert_eq!(code, 0, "{out}");
}
