//! The control plane as a user meets it (root required; see TESTING.md): `vswitchctl trace`
//! tells what forwarding would do and changes nothing; concurrent attaches are checked and
//! applied in one step; the control socket keeps serving while clients misbehave.

mod common;

use common::bins;
use common::testbed::{ping, Host, Testbed, BLUE};
use serde_json::Value;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

fn prefix(tag: &str) -> String {
    format!("vsc{}-{tag}", std::process::id())
}

fn trace(tb: &Testbed, host: usize, args: &[&str]) -> Value {
    let mut full = vec!["trace", "--network", "blue", "--json"];
    full.extend_from_slice(args);
    let out = tb.hosts[host]
        .ctl(&tb.bins, &full)
        .unwrap_or_else(|e| panic!("trace {args:?}: {e}"));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("trace is not JSON ({e}): {out}"))
}

fn steps(t: &Value) -> String {
    t["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{}: {}\n",
                s["step"].as_str().unwrap(),
                s["detail"].as_str().unwrap()
            )
        })
        .collect()
}

/// What a trace must leave alone: the tables, and every traffic counter.
fn tables_and_counters(h: &Host, tb: &Testbed) -> (Value, Value, Value, Value) {
    let mut stats = h.show_json(&tb.bins, "stats").unwrap();
    for k in ["uptime_secs", "latency", "workers"] {
        stats.as_object_mut().unwrap().remove(k);
    }
    for p in stats["ports"].as_array_mut().unwrap() {
        p.as_object_mut().unwrap().remove("queues");
    }
    let fdb = h.show_json(&tb.bins, "fdb").unwrap();
    let mut fdb_no_age = fdb.clone();
    for e in fdb_no_age.as_array_mut().unwrap() {
        e.as_object_mut().unwrap().remove("age_secs");
    }
    let mut neigh = h.show_json(&tb.bins, "neigh").unwrap();
    for e in neigh.as_array_mut().unwrap() {
        e.as_object_mut().unwrap().remove("age_secs");
    }
    // The prober's columns change every 2 s by themselves (crate::control::probe).
    let mut peers = h.show_json(&tb.bins, "peers").unwrap();
    for p in peers.as_array_mut().unwrap() {
        let p = p.as_object_mut().unwrap();
        p.remove("probe");
        p.remove("esp_probe");
    }
    (fdb_no_age, neigh, stats, peers)
}

#[test]
fn trace_tells_what_forwarding_would_do_and_changes_nothing() {
    let mut tb = Testbed::two_hosts(&prefix("trace"), bins(), &[BLUE]).unwrap();
    let a = step!(tb, tb.add_container(0, "a", "blue", "10.0.9.2/24"));
    let _a2 = step!(tb, tb.add_container(0, "a2", "blue", "10.0.9.4/24"));
    let b = step!(tb, tb.add_container(1, "b", "blue", "10.0.9.3/24"));
    // Traffic both ways, so host 0 has learned b's MAC behind host 1.
    assert_eq!(
        ping(tb.container(a), "10.0.9.3", 3, &[]),
        (3, 3),
        "{}",
        tb.logs()
    );
    assert_eq!(
        ping(tb.container(b), "10.0.9.2", 3, &[]),
        (3, 3),
        "{}",
        tb.logs()
    );
    let a_port = format!("{}-a/eth0", tb.prefix);
    let h = &tb.hosts[0];
    // The containers' own kernels must not send meanwhile (IPv6 router solicitations and MLD
    // reports come seconds after an interface is up): IPv6 off, then wait until the switch's
    // tables and counters stand still, so that any change after the traces is theirs.
    for c in &tb.containers {
        let _ = c.try_exec(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
    }
    let mut before = tables_and_counters(h, &tb);
    let settled = common::testbed::wait_until(Duration::from_secs(10), || {
        std::thread::sleep(Duration::from_millis(500));
        let now = tables_and_counters(h, &tb);
        std::mem::replace(&mut before, now) == before
    });
    assert!(
        settled,
        "the switch's counters never stood still\n{}",
        tb.logs()
    );

    // A remote destination: encapsulated to host 1's VTEP with the network's VNI.
    let t = trace(
        &tb,
        0,
        &[
            "--in-port",
            &a_port,
            "--src-ip",
            "10.0.9.2",
            "--dst-ip",
            "10.0.9.3",
        ],
    );
    assert_eq!(t["verdict"], "encapsulate", "{}", steps(&t));
    let out = t["outputs"][0].as_str().unwrap();
    assert!(
        out.contains("192.0.2.2") && out.contains("vni 42"),
        "{}",
        steps(&t)
    );
    assert!(
        steps(&t).contains("learned entry at vtep 192.0.2.2"),
        "{}",
        steps(&t)
    );

    // A local destination: delivered to the other container's port, known from its attach.
    let t = trace(
        &tb,
        0,
        &[
            "--in-port",
            &a_port,
            "--src-ip",
            "10.0.9.2",
            "--dst-ip",
            "10.0.9.4",
            "--proto",
            "tcp",
            "--dport",
            "443",
        ],
    );
    assert_eq!(t["verdict"], "deliver", "{}", steps(&t));
    assert!(
        t["outputs"][0].as_str().unwrap().contains("-a2/eth0"),
        "{}",
        steps(&t)
    );
    assert!(steps(&t).contains("configured endpoint"), "{}", steps(&t));

    // An unknown destination: the ARP request the sender would send, answered by nobody
    // here, so flooded to the other local port and the peer.
    let t = trace(
        &tb,
        0,
        &[
            "--in-port",
            &a_port,
            "--src-ip",
            "10.0.9.2",
            "--dst-ip",
            "10.0.9.99",
        ],
    );
    assert_eq!(t["verdict"], "flood", "{}", steps(&t));
    assert!(
        steps(&t).contains("no MAC known for 10.0.9.99"),
        "{}",
        steps(&t)
    );
    let outs: Vec<&str> = t["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o.as_str().unwrap())
        .collect();
    assert_eq!(outs.len(), 2, "{outs:?}");
    assert!(
        outs.iter().any(|o| o.contains("-a2/eth0")) && outs.iter().any(|o| o.contains("192.0.2.2")),
        "{outs:?}"
    );

    // An ARP request for a known address, given as hex: answered by proxy-ARP on this host.
    let ports = h.show_json(&tb.bins, "ports").unwrap();
    let a_mac = ports
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == a_port.as_str())
        .and_then(|p| p["mac"].as_str())
        .unwrap()
        .replace(':', "");
    let arp = format!("ffffffffffff{a_mac}08060001080006040001{a_mac}0a0009020000000000000a000904");
    let t = trace(&tb, 0, &["--in-port", &a_port, "--frame", &arp]);
    assert_eq!(t["verdict"], "reply", "{}", steps(&t));
    assert!(steps(&t).contains("answer 10.0.9.4 is-at"), "{}", steps(&t));

    // A frame the switch drops: a multicast source MAC, given as hex.
    let bad = "ffffffffffff01005e00000108004500001c0000400040010000";
    let t = trace(&tb, 0, &["--in-port", &a_port, "--frame", bad]);
    assert_eq!(t["verdict"], "drop", "{}", steps(&t));
    assert_eq!(t["drop_reason"], "bad_source_mac", "{}", steps(&t));

    // From the underlay: a frame from host 1 for a is delivered to a's port.
    let t = trace(
        &tb,
        0,
        &[
            "--from-vtep",
            "192.0.2.2",
            "--src-ip",
            "10.0.9.3",
            "--dst-ip",
            "10.0.9.2",
        ],
    );
    assert_eq!(t["verdict"], "deliver", "{}", steps(&t));
    // And from a host that is not a peer: dropped, with the reason.
    let t = trace(
        &tb,
        0,
        &[
            "--from-vtep",
            "192.0.2.77",
            "--src-ip",
            "10.0.9.3",
            "--dst-ip",
            "10.0.9.2",
        ],
    );
    assert_eq!(t["drop_reason"], "unknown_peer", "{}", steps(&t));

    // The plain rendering names the same verdict.
    let text = h
        .ctl(
            &tb.bins,
            &[
                "trace",
                "--network",
                "blue",
                "--in-port",
                &a_port,
                "--src-ip",
                "10.0.9.2",
                "--dst-ip",
                "10.0.9.3",
            ],
        )
        .unwrap();
    assert!(
        text.contains("verdict") && text.contains("encapsulate"),
        "{text}"
    );

    assert_eq!(
        tables_and_counters(h, &tb),
        before,
        "a trace changed tables or counters"
    );

    // Bad input is refused with a message, and the daemon keeps running.
    let e = h
        .ctl(
            &tb.bins,
            &[
                "trace",
                "--network",
                "nope",
                "--in-port",
                "1",
                "--src-ip",
                "10.0.9.2",
                "--dst-ip",
                "10.0.9.3",
            ],
        )
        .unwrap_err();
    assert!(e.contains("no network named"), "{e}");
    let e = h
        .ctl(
            &tb.bins,
            &[
                "trace",
                "--network",
                "blue",
                "--in-port",
                "nope",
                "--src-ip",
                "10.0.9.2",
                "--dst-ip",
                "10.0.9.3",
            ],
        )
        .unwrap_err();
    assert!(e.contains("no port"), "{e}");
    assert_eq!(
        ping(tb.container(a), "10.0.9.3", 2, &[]),
        (2, 2),
        "{}",
        tb.logs()
    );
}

#[test]
fn concurrent_attaches_refuse_exactly_the_duplicates() {
    let mut tb = Testbed::new(&prefix("conc"), bins()).unwrap();
    tb.add_hosts(1).unwrap();
    tb.write_config(0, &[BLUE], "").unwrap();
    tb.start_daemon(0).unwrap();
    // 40 distinct addresses, and 10 more clients asking for 10 of them again.
    let mut names = Vec::new();
    for i in 0..50 {
        let ns = common::testbed::Netns::new(&format!("{}-c{i}", tb.prefix)).unwrap();
        names.push(ns.name.clone());
        tb.containers.push(ns);
    }
    let ip = |i: usize| format!("10.0.9.{}/24", 10 + if i < 40 { i } else { (i - 40) * 3 });
    let results: Vec<(usize, Result<String, String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..50)
            .map(|i| {
                let (tb, name) = (&tb, names[i].clone());
                s.spawn(move || {
                    let r = tb.hosts[0].attach_namespace(&tb.bins, "blue", &name, &ip(i), &[]);
                    (i, r)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut by_ip: std::collections::BTreeMap<String, Vec<(usize, bool)>> = Default::default();
    for (i, r) in &results {
        if let Err(e) = r {
            assert!(
                e.contains("already used"),
                "attach {i} failed otherwise: {e}"
            );
        }
        by_ip.entry(ip(*i)).or_default().push((*i, r.is_ok()));
    }
    assert_eq!(by_ip.len(), 40);
    for (addr, tries) in &by_ip {
        let won = tries.iter().filter(|(_, ok)| *ok).count();
        assert_eq!(won, 1, "{addr}: {tries:?}");
    }
    let refused = results.iter().filter(|(_, r)| r.is_err()).count();
    assert_eq!(refused, 10);
    let ports = tb.hosts[0].show_json(&tb.bins, "ports").unwrap();
    assert_eq!(ports.as_array().unwrap().len(), 40);
}

/// The daemon's resident memory, from /proc.
fn rss_kb(pid: i32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// How long `show networks` takes to answer.
fn show_time(tb: &Testbed) -> Duration {
    let t = Instant::now();
    tb.hosts[0].show_json(&tb.bins, "networks").unwrap();
    t.elapsed()
}

#[test]
fn the_control_socket_serves_others_while_clients_misbehave() {
    let mut tb = Testbed::new(&prefix("sock"), bins()).unwrap();
    tb.add_hosts(1).unwrap();
    tb.write_config(0, &[BLUE], "").unwrap();
    tb.start_daemon(0).unwrap();
    let socket = tb.hosts[0].socket.clone();
    let pid = tb.hosts[0].daemon.as_ref().unwrap().pid();

    // A client that connects and sends nothing, and one that sends a byte every 5 s.
    let idle = UnixStream::connect(&socket).unwrap();
    let mut slow = UnixStream::connect(&socket).unwrap();
    slow.write_all(b"{").unwrap();
    assert!(
        show_time(&tb) < Duration::from_secs(1),
        "idle clients delay show"
    );
    // Both are cut off at the request deadline (2 s): the daemon closes them, so their reads
    // end (rather than time out) soon after it.
    let started = Instant::now();
    for (what, mut s) in [("an idle", idle), ("a slow", slow)] {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 16];
        // A signal to this process (another test's child exiting) may interrupt the read.
        let r = loop {
            match s.read(&mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => break r,
            }
        };
        assert!(
            matches!(&r, Ok(0))
                || matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
            "{what} client was not cut off: {r:?}"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(4));

    // 500 idle connections at once: show still answers within a second.
    let many: Vec<UnixStream> = (0..500)
        .map(|_| UnixStream::connect(&socket).unwrap())
        .collect();
    assert!(
        show_time(&tb) < Duration::from_secs(1),
        "500 idle connections delay show"
    );
    drop(many);

    // A 100 MB request line is refused, and the daemon does not grow by it.
    let before = rss_kb(pid);
    let mut big = UnixStream::connect(&socket).unwrap();
    big.set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let chunk = vec![b'x'; 1 << 20];
    let mut sent = 0;
    for _ in 0..100 {
        match big.write_all(&chunk) {
            Ok(()) => sent += 1,
            Err(_) => break,
        }
    }
    let mut answer = String::new();
    big.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = big.read_to_string(&mut answer);
    assert!(sent < 100, "the daemon took all 100 MB");
    assert!(answer.contains("longer than 1 MiB"), "answer: {answer:?}");
    let grew = rss_kb(pid).saturating_sub(before);
    assert!(grew < 20_000, "the daemon grew by {grew} kB");
    assert!(show_time(&tb) < Duration::from_secs(1));
}

/// Bytes the peer has sent that `s` has not read yet (FIONREAD).
fn unread(s: &UnixStream) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the pointer, on a socket we own.
    let r = unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(s), libc::FIONREAD, &mut n) };
    if r == 0 {
        n as usize
    } else {
        0
    }
}

#[test]
fn a_client_that_never_reads_a_large_reply_delays_no_one() {
    let mut tb = Testbed::new(&prefix("bigreply"), bins()).unwrap();
    tb.add_hosts(1).unwrap();
    tb.write_config(0, &[BLUE], "").unwrap();
    tb.start_daemon(0).unwrap();
    // A container that routes (no port security, no cap on its MACs or floods) sends from 6000
    // MACs, in bursts its TAP queue takes: `show fdb` grows past the socket buffers.
    const MACS: usize = 6000;
    let router = tb
        .add_container_with(
            0,
            "r",
            "blue",
            "10.0.9.4/24",
            &["--no-port-security", "--max-macs", "0", "--bum-rate", "0"],
        )
        .unwrap();
    let script = format!(
        "import socket,time\ns=socket.socket(socket.AF_PACKET,socket.SOCK_RAW)\ns.bind(('eth0',0))\n\
         for i in range({MACS}):\n  \
         s.send(b'\\xff'*6+bytes([2,0xaa,0,0,i>>8,i&255])+b'\\x88\\xb5'+bytes(46))\n  \
         if i % 100 == 99: time.sleep(0.002)"
    );
    tb.container(router)
        .exec(&["python3", "-c", &script])
        .unwrap();
    let fdb_len = || {
        tb.hosts[0]
            .show_json(&tb.bins, "fdb")
            .map_or(0, |v| v.as_array().map_or(0, |a| a.len()))
    };
    assert!(
        common::testbed::wait_until(Duration::from_secs(10), || fdb_len() >= MACS),
        "the FDB never reached {MACS} entries: {}\n{}",
        fdb_len(),
        tb.logs()
    );
    // As the daemon sends it: compact JSON in one line.
    let reply = serde_json::to_string(&tb.hosts[0].show_json(&tb.bins, "fdb").unwrap()).unwrap();
    assert!(
        reply.len() > 400_000,
        "a reply of {} bytes fits the socket buffers: the test would prove nothing",
        reply.len()
    );

    // It asks and never reads: the daemon's writer is stuck on it (the reply has begun to
    // arrive and cannot all fit), and every other client is served meanwhile. A daemon that
    // wrote replies on its one control thread would be stuck there for REPLY_DEADLINE (5 s).
    let mut stuck = UnixStream::connect(&tb.hosts[0].socket).unwrap();
    stuck
        .write_all(b"{\"op\":\"show\",\"what\":\"fdb\"}\n")
        .unwrap();
    assert!(
        common::testbed::wait_until(Duration::from_secs(5), || unread(&stuck) > 0),
        "no reply began"
    );
    for _ in 0..3 {
        assert!(
            show_time(&tb) < Duration::from_secs(1),
            "a client that does not read its reply delays show"
        );
    }
    assert!(
        unread(&stuck) < reply.len(),
        "the whole reply fit: nothing was blocked"
    );
    drop(stuck);
}

#[test]
fn vswitchctl_is_quiet_on_a_closed_pipe() {
    let mut tb = Testbed::new(&prefix("pipe"), bins()).unwrap();
    tb.add_hosts(1).unwrap();
    tb.write_config(0, &[BLUE], "").unwrap();
    tb.start_daemon(0).unwrap();
    let cmd = format!(
        "{} --socket {} show stats | head -1",
        tb.bins.vswitchctl.display(),
        tb.hosts[0].socket.display()
    );
    let out = std::process::Command::new("sh")
        .args(["-c", &cmd])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
}

#[test]
fn reload_adds_and_removes_networks_and_peers_while_traffic_flows() {
    use common::testbed::RED;
    let mut tb = Testbed::two_hosts(&prefix("reload"), bins(), &[BLUE]).unwrap();
    let a = step!(tb, tb.add_container(0, "a", "blue", "10.0.9.2/24"));
    let _b = step!(tb, tb.add_container(1, "b", "blue", "10.0.9.3/24"));
    assert_eq!(
        ping(tb.container(a), "10.0.9.3", 2, &[]),
        (2, 2),
        "{}",
        tb.logs()
    );
    let ghost = "[[peer]]\nname = \"ghost\"\nunderlay_ip = \"192.0.2.99\"\n";
    let names = |tb: &Testbed, i: usize| -> Vec<String> {
        let v = tb.hosts[i].show_json(&tb.bins, "networks").unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|n| n["name"].as_str().unwrap().to_string())
            .collect()
    };
    let peers = |tb: &Testbed, i: usize| -> Vec<String> {
        let v = tb.hosts[i].show_json(&tb.bins, "peers").unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|n| n["name"].as_str().unwrap().to_string())
            .collect()
    };
    let fdb_before = tb.hosts[0]
        .show_json(&tb.bins, "fdb")
        .unwrap()
        .as_array()
        .unwrap()
        .len();

    let blue_rx = |tb: &Testbed| -> u64 {
        let s = tb.hosts[0].show_json(&tb.bins, "stats").unwrap();
        s["networks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == "blue")
            .and_then(|n| n["counters"]["rx_packets"].as_u64())
            .unwrap_or(0)
    };
    let rx_before = blue_rx(&tb);

    std::thread::scope(|s| {
        // 60 pings 50 ms apart on blue, running through every reload below: they flow before
        // the first one.
        let pinger = s.spawn(|| ping(tb.container(a), "10.0.9.3", 60, &["-i", "0.05"]));
        assert!(
            common::testbed::wait_until(Duration::from_secs(5), || blue_rx(&tb) > rx_before),
            "the pings never started"
        );
        // Add network red and a peer, by `vswitchctl reload` on host 0 and SIGHUP on host 1.
        for i in 0..2 {
            tb.write_config(i, &[BLUE, RED], "").unwrap();
            let text = std::fs::read_to_string(&tb.hosts[i].config).unwrap() + ghost;
            std::fs::write(&tb.hosts[i].config, text).unwrap();
        }
        let out = tb.hosts[0].ctl(&tb.bins, &["reload"]).unwrap();
        assert!(
            out.contains("network red (vni 43") && out.contains("peer ghost"),
            "{out}"
        );
        let pid = tb.hosts[1].daemon.as_ref().unwrap().pid();
        assert!(std::process::Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .unwrap()
            .success());
        let deadline = Instant::now() + Duration::from_secs(2);
        while names(&tb, 1) != ["blue", "red"] && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(names(&tb, 0), ["blue", "red"]);
        assert_eq!(
            names(&tb, 1),
            ["blue", "red"],
            "SIGHUP did not reload\n{}",
            tb.logs()
        );
        assert!(peers(&tb, 0).contains(&"ghost".to_string()));
        // A broken file is refused, naming the file and the key; the running config stays.
        let good = std::fs::read_to_string(&tb.hosts[0].config).unwrap();
        std::fs::write(
            &tb.hosts[0].config,
            format!("{good}[[network]]\nname = \"x\"\nvnii = 7\n"),
        )
        .unwrap();
        let e = tb.hosts[0].ctl(&tb.bins, &["reload"]).unwrap_err();
        assert!(
            e.contains(tb.hosts[0].config.to_str().unwrap()) && e.contains("vnii"),
            "{e}"
        );
        assert_eq!(names(&tb, 0), ["blue", "red"]);
        // Remove red and the peer again.
        tb.write_config(0, &[BLUE], "").unwrap();
        let out = tb.hosts[0].ctl(&tb.bins, &["reload"]).unwrap();
        assert!(
            out.contains("network red (vni 43) removed") && out.contains("peer ghost"),
            "{out}"
        );
        assert_eq!(names(&tb, 0), ["blue"]);
        assert!(!peers(&tb, 0).contains(&"ghost".to_string()));
        let (sent, got) = pinger.join().unwrap();
        assert_eq!(
            (sent, got),
            (60, 60),
            "pings lost across reloads\n{}",
            tb.logs()
        );
    });
    // What was learned on blue survived.
    let fdb_after = tb.hosts[0]
        .show_json(&tb.bins, "fdb")
        .unwrap()
        .as_array()
        .unwrap()
        .len();
    assert!(fdb_after >= fdb_before, "{fdb_before} -> {fdb_after}");
    // A container on the new network works after a reload on both hosts.
    for i in 0..2 {
        tb.write_config(i, &[BLUE, RED], "").unwrap();
        tb.hosts[i].ctl(&tb.bins, &["reload"]).unwrap();
    }
    let r = step!(tb, tb.add_container(0, "r", "red", "10.0.9.5/24"));
    let _r2 = step!(tb, tb.add_container(1, "r2", "red", "10.0.9.6/24"));
    assert_eq!(
        ping(tb.container(r), "10.0.9.6", 3, &[]),
        (3, 3),
        "{}",
        tb.logs()
    );
}
