//! A storm from one container (root required; see TESTING.md): two hosts, two networks, one
//! container flooding broadcasts, then frames from random source MACs, as fast as a raw
//! AF_PACKET socket sends them, for a bounded time. Its neighbours in the same network and the
//! containers of the other network keep their ping (within a few times its idle value, no
//! loss beyond a little); the flood is dropped at its port and counted (`bum_rate_limited`,
//! `port_mac_limit`); the network's table holds at most the port's cap of its MACs, on both
//! hosts (crate::switch::limits).

mod common;

use common::bins;
use common::testbed::{ping, wait_until, Netns, Process, Testbed, BLUE, RED};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn prefix(tag: &str) -> String {
    format!("vsst{}-{tag}", std::process::id())
}

/// How long the flooder sends (it stops by itself; `timeout` and the guard are backstops).
const FLOOD_SECS: u64 = 6;
/// Pings per measurement, 50 ms apart.
const PINGS: u32 = 40;

/// Sends frames on eth0 of its namespace through an AF_PACKET socket for `secs` seconds, as
/// fast as it can, then prints how many it sent. `random` makes every frame's source MAC a new
/// one; else every frame is a broadcast from the interface's own MAC. Frames are broadcasts of
/// the IEEE local experimental EtherType 0x88b5, so no container's stack spends time on them.
const FLOODER: &str = r#"
import socket, sys, time
mode, secs = sys.argv[1], float(sys.argv[2])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
own = s.getsockname()[4][:6]
pad = bytes(46)
if mode == "random":
    frames = [b"\xff" * 6 + b"\x02\x5e" + (i + 1).to_bytes(4, "big") + b"\x88\xb5" + pad
              for i in range(1 << 16)]
else:
    frames = [b"\xff" * 6 + own + b"\x88\xb5" + pad] * 1024
send, n, end = s.send, 0, time.monotonic() + secs
while time.monotonic() < end:
    for i in range(0, len(frames), 1024):
        for f in frames[i:i + 1024]:
            try:
                send(f)
            except OSError:
                pass
        n += 1024
        if time.monotonic() >= end:
            break
print(n)
"#;

/// Round-trip times (ms) of `PINGS` pings 50 ms apart, and how many were lost.
fn rtts(from: &Netns, to: &str) -> (Vec<f64>, u32) {
    let c = PINGS.to_string();
    let out = from.try_exec(&["ping", "-n", "-c", &c, "-i", "0.05", "-W", "1", to]);
    let text = String::from_utf8_lossy(&out.stdout);
    let times: Vec<f64> = text
        .lines()
        .filter_map(|l| l.split("time=").nth(1))
        .filter_map(|t| t.split_whitespace().next())
        .filter_map(|t| t.parse().ok())
        .collect();
    let lost = PINGS.saturating_sub(times.len() as u32);
    (times, lost)
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        f64::INFINITY
    } else {
        v[v.len() / 2]
    }
}

/// Runs `rtts` for both pairs at the same time.
fn both(same: (&Netns, &str), other: (&Netns, &str)) -> ((Vec<f64>, u32), (Vec<f64>, u32)) {
    std::thread::scope(|s| {
        let a = s.spawn(|| rtts(same.0, same.1));
        let b = rtts(other.0, other.1);
        (a.join().unwrap(), b)
    })
}

fn port_json(tb: &Testbed, host: usize, name: &str) -> serde_json::Value {
    let ports = tb.hosts[host].show_json(&tb.bins, "ports").unwrap();
    ports
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no port {name} in {ports}"))
}

fn counter(port: &serde_json::Value, path: &[&str]) -> u64 {
    let mut v = &port["counters"];
    for k in path {
        v = &v[*k];
    }
    v.as_u64().unwrap_or(0)
}

/// Learned MACs of network `net` on host `host`, and those at port `at` among them.
fn fdb_counts(tb: &Testbed, host: usize, net: &str, at: &str) -> (usize, usize) {
    let fdb = tb.hosts[host].show_json(&tb.bins, "fdb").unwrap();
    let rows: Vec<&serde_json::Value> = fdb
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["network"] == net)
        .collect();
    let here = rows.iter().filter(|e| e["location"] == at).count();
    (rows.len(), here)
}

/// Starts the flooder in `ns`: returns it and when it started.
fn flood(ns: &Netns, mode: &str) -> Process {
    let secs = FLOOD_SECS.to_string();
    let limit = (FLOOD_SECS + 10).to_string();
    let child = Command::new("ip")
        .args([
            "netns", "exec", &ns.name, "timeout", &limit, "python3", "-c",
        ])
        .args([FLOODER, mode, &secs])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    Process {
        child,
        what: format!("flooder ({mode})"),
    }
}

/// Waits for `p` to end by itself, up to `limit`; stops it (by its pid) if it does not.
fn wait_or_stop(p: &mut Process, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(st)) = p.child.try_wait() {
            return Some(st);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    p.stop();
    None
}

#[test]
fn a_storm_from_one_container_leaves_its_neighbours_and_other_networks_alone() {
    let mut tb = Testbed::two_hosts(&prefix("storm"), bins(), &[BLUE, RED]).unwrap();
    // The flooder's port is relaxed (no port security), as a router's would be: the limits are
    // what stands between it and everyone else.
    let x = step!(
        tb,
        tb.add_container_with(
            0,
            "x",
            "blue",
            "10.0.9.10/24",
            &["--no-port-security", "--name", "storm"]
        )
    );
    let a = step!(tb, tb.add_container(0, "a", "blue", "10.0.9.2/24"));
    let _b = step!(tb, tb.add_container(1, "b", "blue", "10.0.9.3/24"));
    let r1 = step!(tb, tb.add_container(0, "r1", "red", "10.0.9.2/24"));
    let _r2 = step!(tb, tb.add_container(1, "r2", "red", "10.0.9.3/24"));
    for (from, to) in [(a, "10.0.9.3"), (r1, "10.0.9.3"), (x, "10.0.9.3")] {
        assert_eq!(ping(tb.container(from), to, 2, &[]).1, 2, "{}", tb.logs());
    }
    let same = (tb.container(a), "10.0.9.3");
    let other = (tb.container(r1), "10.0.9.3");
    let ((idle_same, lost), (idle_other, lost_other)) = both(same, other);
    assert!(
        lost + lost_other <= 1,
        "idle pings lost {lost} + {lost_other}"
    );
    let (idle_same, idle_other) = (median(&idle_same), median(&idle_other));
    // Within a few times the idle value, with a floor for a small, shared machine.
    let bound = |idle: f64| (5.0 * idle).max(3.0);

    for (mode, reason) in [
        ("broadcast", "bum_rate_limited"),
        ("random", "port_mac_limit"),
    ] {
        let before = port_json(&tb, 0, "storm");
        let mut flooder = flood(tb.container(x), mode);
        let started = Instant::now();
        // The flood is on once the switch has read a good part of it.
        let rx0 = counter(&before, &["rx_packets"]);
        assert!(
            wait_until(Duration::from_secs(5), || {
                counter(&port_json(&tb, 0, "storm"), &["rx_packets"]) > rx0 + 20_000
            }),
            "the flooder ({mode}) did not get going: {}",
            port_json(&tb, 0, "storm")
        );
        let ((s, lost_s), (o, lost_o)) = both(same, other);
        let busy = started.elapsed();
        let status = wait_or_stop(&mut flooder, Duration::from_secs(FLOOD_SECS + 15));
        let sent: u64 = {
            let mut out = String::new();
            if let Some(mut so) = flooder.child.stdout.take() {
                let _ = std::io::Read::read_to_string(&mut so, &mut out);
            }
            out.trim().parse().unwrap_or(0)
        };
        let after = port_json(&tb, 0, "storm");
        let read = counter(&after, &["rx_packets"]) - rx0;
        let limited = counter(&after, &["drops", reason]) - counter(&before, &["drops", reason]);
        let (s_med, o_med) = (median(&s), median(&o));
        eprintln!(
            "storm ({mode}): flooder sent {sent} frames in {FLOOD_SECS} s ({} kframe/s), the \
             switch read {read} ({} kframe/s) and dropped {limited} as {reason}; ping median \
             same network {idle_same:.3} ms idle -> {s_med:.3} ms ({lost_s} lost), other \
             network {idle_other:.3} ms idle -> {o_med:.3} ms ({lost_o} lost); pings done \
             {:.1} s into the flood; flooder {status:?}",
            sent / FLOOD_SECS / 1000,
            read / FLOOD_SECS / 1000,
            busy.as_secs_f64(),
        );
        assert!(
            busy < Duration::from_secs(FLOOD_SECS),
            "the pings did not run inside the flood ({busy:?}): the figures mean nothing"
        );
        assert!(
            s_med <= bound(idle_same) && o_med <= bound(idle_other),
            "{mode} storm: ping same network {s_med:.3} ms (idle {idle_same:.3}), other \
             network {o_med:.3} ms (idle {idle_other:.3}): more than {:.3} / {:.3}",
            bound(idle_same),
            bound(idle_other)
        );
        assert!(
            lost_s <= 2 && lost_o <= 2,
            "{mode} storm: pings lost, same network {lost_s}, other network {lost_o}"
        );
        // Most of what the switch read of the storm was dropped at the port, and counted.
        assert!(
            limited * 10 >= read * 8,
            "{mode} storm: only {limited} of {read} frames dropped as {reason}: {after}"
        );
        // Neither host's table took more than the port's cap of the flooder's MACs, whatever
        // the worker count (crate::switch::limits: workers reading one port share its cap).
        let workers = tb.hosts[0].show_json(&tb.bins, "stats").unwrap()["workers"]
            .as_array()
            .map_or(1, |w| w.len().max(1));
        let (_, at_storm) = fdb_counts(&tb, 0, "blue", "storm");
        let (remote, _) = fdb_counts(&tb, 1, "blue", "");
        eprintln!(
            "storm ({mode}): {at_storm} MACs learned at the flooder's port, {remote} in blue \
             on the other host ({workers} workers)"
        );
        // (`show fdb` also lists the port's own station, from its attach.)
        assert!(
            at_storm <= 64 + 1,
            "{at_storm} MACs learned at the flooder's port"
        );
        assert!(
            remote <= 64 + 4,
            "{remote} MACs learned in blue on the other host"
        );
        if mode == "random" {
            assert!(at_storm >= 2, "it learned its first MACs ({at_storm})");
        }
        // And the flood stopped by itself.
        assert!(
            wait_until(Duration::from_secs(5), || {
                let a = counter(&port_json(&tb, 0, "storm"), &["rx_packets"]);
                std::thread::sleep(Duration::from_millis(300));
                counter(&port_json(&tb, 0, "storm"), &["rx_packets"]) == a
            }),
            "the flood goes on after the flooder ended"
        );
    }
    // The log says which port was over which limit (rate-limited lines, not one per frame).
    let log = tb.hosts[0].log_text();
    assert!(log.contains("bum_rate_limited"), "{log}");
    assert!(log.contains("port_mac_limit"), "{log}");
    assert!(
        log.lines()
            .filter(|l| l.contains("bum_rate_limited"))
            .count()
            < 20,
        "{log}"
    );
}
