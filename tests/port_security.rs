//! Spoofing from a container, with scapy (root required; see TESTING.md): a foreign source MAC,
//! a foreign source IP, and a gratuitous ARP claiming a neighbour's address. Nothing forged
//! reaches the neighbours (captured in their namespaces), the tables of both hosts keep the
//! victims' entries — including the other host's neighbour table, which decapsulation learning
//! would otherwise poison from a forged source IP — each frame is counted under its reason, and
//! `vswitchctl trace` of the forged frame shows the port-security drop.

mod common;

use common::bins;
use common::testbed::{pcap_packets, ping, Netns, Process, Testbed, BLUE};
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Debian's python3-scapy (scripts/install-deps.sh) is for the system's Python, which another
/// python3 earlier on PATH (pyenv, a venv) does not see.
const SCAPY_PYTHON: &str = "/usr/bin/python3";

fn prefix(tag: &str) -> String {
    format!("vsps{}-{tag}", std::process::id())
}

fn port(tb: &Testbed, host: usize, name: &str) -> Value {
    let ports = tb.hosts[host].show_json(&tb.bins, "ports").unwrap();
    ports
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no port {name}: {ports}"))
}

/// FDB rows (network, MAC → kind, location) and neighbours (IP → MAC) of a host, ages left out.
type Tables = (Vec<(String, String, String)>, Vec<(String, String)>);

fn tables(tb: &Testbed, host: usize) -> Tables {
    let h = &tb.hosts[host];
    let mut fdb: Vec<(String, String, String)> = h
        .show_json(&tb.bins, "fdb")
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["mac"].as_str().unwrap().to_string(),
                e["kind"].as_str().unwrap().to_string(),
                e["location"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut neigh: Vec<(String, String)> = h
        .show_json(&tb.bins, "neigh")
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["ip"].as_str().unwrap().to_string(),
                e["mac"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    fdb.sort();
    neigh.sort();
    (fdb, neigh)
}

/// Captures every frame on eth0 of `ns` into `pcap` until the guard is dropped.
fn capture(ns: &Netns, pcap: &std::path::Path) -> Process {
    let child = Command::new("ip")
        .args([
            "netns", "exec", &ns.name, "tcpdump", "-i", "eth0", "-n", "-U", "-s", "0", "-w",
        ])
        .arg(pcap)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("tcpdump");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !pcap.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    Process {
        child,
        what: "tcpdump".into(),
    }
}

fn delivered(pcap: &std::path::Path, marker: &[u8]) -> usize {
    pcap_packets(pcap)
        .iter()
        .filter(|p| p.windows(marker.len()).any(|w| w == marker))
        .count()
}

#[test]
fn forged_frames_from_a_container_reach_nobody_change_no_table_and_are_counted() {
    let mut tb = Testbed::two_hosts(&prefix("spoof"), bins(), &[BLUE]).unwrap();
    let m = step!(
        tb,
        tb.add_container_with(0, "m", "blue", "10.0.9.2/24", &["--name", "mallory"])
    );
    let w = step!(
        tb,
        tb.add_container_with(0, "w", "blue", "10.0.9.4/24", &["--name", "wendy"])
    );
    let v = step!(
        tb,
        tb.add_container_with(1, "v", "blue", "10.0.9.3/24", &["--name", "victor"])
    );
    // Everyone talks first, so both hosts know everyone.
    for (from, to) in [(m, "10.0.9.3"), (w, "10.0.9.3"), (m, "10.0.9.4")] {
        assert_eq!(ping(tb.container(from), to, 2, &[]).1, 2, "{}", tb.logs());
    }
    let mac = |host, name| port(&tb, host, name)["mac"].as_str().unwrap().to_string();
    let (m_mac, w_mac, v_mac) = (mac(0, "mallory"), mac(0, "wendy"), mac(1, "victor"));
    let before = (tables(&tb, 0), tables(&tb, 1));
    let drops0 = port(&tb, 0, "mallory")["counters"]["drops"].clone();

    // Five of each: Wendy's MAC; Wendy's address (which would teach host b, by decapsulation
    // learning, that 10.0.9.4 is at Mallory's MAC); a gratuitous ARP claiming Victor's address;
    // and one honest frame, which must arrive (the captures work).
    let script = format!(
        r#"
from scapy.all import Ether, IP, ICMP, ARP, Raw, Padding, sendp
m, w, v = "{m_mac}", "{w_mac}", "{v_mac}"
forged = [
    Ether(src=w, dst=v) / IP(src="10.0.9.2", dst="10.0.9.3") / ICMP() / Raw(b"FORGED-MAC"),
    Ether(src=m, dst=v) / IP(src="10.0.9.4", dst="10.0.9.3") / ICMP() / Raw(b"FORGED-IP"),
    Ether(src=m, dst="ff:ff:ff:ff:ff:ff") / ARP(op=2, hwsrc=m, psrc="10.0.9.3", hwdst="ff:ff:ff:ff:ff:ff", pdst="10.0.9.3") / Padding(load=b"FORGED-ARP"),
]
sendp(forged * 5, iface="eth0", verbose=False)
sendp(Ether(src=m, dst=v) / IP(src="10.0.9.2", dst="10.0.9.3") / ICMP() / Raw(b"HONEST"), iface="eth0", verbose=False)
"#
    );
    let (pv, pw) = (tb.dir.join("victor.pcap"), tb.dir.join("wendy.pcap"));
    {
        let _cv = capture(tb.container(v), &pv);
        let _cw = capture(tb.container(w), &pw);
        step!(
            tb,
            tb.container(m)
                .exec(&["timeout", "60", SCAPY_PYTHON, "-c", &script])
        );
        // The honest frame arriving says the forged ones, sent before it, had their chance.
        let deadline = Instant::now() + Duration::from_secs(10);
        while delivered(&pv, b"HONEST") == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    // (Captured twice: the echo request, and Victor's reply, which carries the same payload.)
    assert!(
        delivered(&pv, b"HONEST") >= 1,
        "the honest frame did not arrive"
    );
    for marker in [&b"FORGED-MAC"[..], b"FORGED-IP", b"FORGED-ARP"] {
        assert_eq!(
            delivered(&pv, marker) + delivered(&pw, marker),
            0,
            "{} reached a neighbour",
            String::from_utf8_lossy(marker)
        );
    }
    // Counted on the attacker's port, each under its reason.
    let drops = port(&tb, 0, "mallory")["counters"]["drops"].clone();
    for reason in ["spoofed_mac", "spoofed_ip", "spoofed_arp"] {
        let n = drops[reason].as_u64().unwrap_or(0) - drops0[reason].as_u64().unwrap_or(0);
        assert!(n >= 5, "{reason}: {n} counted ({drops})");
    }
    // No table of either host changed: Wendy's MAC is still at Wendy's port, 10.0.9.4 is still
    // Wendy's on host b, 10.0.9.3 still Victor's on host a.
    let after = (tables(&tb, 0), tables(&tb, 1));
    assert_eq!(before, after, "a forged frame changed a table");
    let neigh_b = &after.1 .1;
    assert!(
        !neigh_b
            .iter()
            .any(|(ip, mac)| ip != "10.0.9.2" && *mac == m_mac),
        "host b took Mallory's MAC for another address: {neigh_b:?}"
    );

    // `trace` of the forged frame names the port-security drop, and changes nothing either.
    let mut frame = Vec::new();
    for part in [&v_mac, &w_mac] {
        frame.extend(part.split(':').map(|b| u8::from_str_radix(b, 16).unwrap()));
    }
    frame.extend([0x08, 0x00]);
    frame.extend([
        0x45, 0, 0, 28, 0, 0, 0, 0, 64, 1, 0, 0, 10, 0, 9, 2, 10, 0, 9, 3, 8, 0, 0, 0, 0, 0, 0, 0,
    ]);
    frame.resize(60, 0);
    let hex: String = frame.iter().map(|b| format!("{b:02x}")).collect();
    let out = step!(
        tb,
        tb.hosts[0].ctl(
            &tb.bins,
            &[
                "trace",
                "--network",
                "blue",
                "--in-port",
                "mallory",
                "--frame",
                &hex,
                "--json"
            ],
        )
    );
    let t: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(t["verdict"], "drop", "{t}");
    assert_eq!(t["drop_reason"], "spoofed_mac", "{t}");
    assert!(out.contains("port security"), "the trace explains it: {t}");
    assert_eq!(tables(&tb, 0), after.0);
}
