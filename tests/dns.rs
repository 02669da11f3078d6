//! DNS by endpoint name end to end (issue 11): two hosts of a cluster (real etcd), containers
//! attached by name, and the container's own resolver (`getent`, `ping`, a Python stub
//! resolver) asking the switch at its network's DNS address. Names the switch does not own go
//! to a real upstream resolver (Debian's dnsmasq) in host 0's namespace. Root required; all is
//! removed when a test ends, pass or fail.

mod common;

use common::bins;
use common::cluster::addr_of;
use common::testbed::{ping, wait_until, Netns, Process, Testbed};
use serde_json::Value;
use std::time::{Duration, Instant};

fn prefix(tag: &str) -> String {
    format!("vsd{}-{tag}", std::process::id())
}

/// Where host 0's upstream resolver listens.
const UPSTREAM: &str = "192.0.2.1";
const UPSTREAM_PORT: &str = "5353";

/// Addresses of `big.test`, whose answer (about 1 kB) does not fit a 512-byte UDP answer.
const BIG_COUNT: usize = 60;

/// Starts dnsmasq in `ns` on UPSTREAM:UPSTREAM_PORT (UDP and TCP) answering `outside.test` with
/// 198.51.100.7, `big.test` with BIG_COUNT addresses 198.51.100.1.., and nothing else (no
/// upstream of its own, no hosts file).
fn start_upstream(tb: &mut Testbed, host: usize) -> Process {
    let log = tb.dir.join("dnsmasq.log");
    let ns = &tb.hosts[host].ns;
    let mut args: Vec<String> = [
        "dnsmasq",
        "--keep-in-foreground",
        "--no-resolv",
        "--no-hosts",
        "--user=root",
        "--bind-interfaces",
        &format!("--listen-address={UPSTREAM}"),
        &format!("--port={UPSTREAM_PORT}"),
        "--address=/outside.test/198.51.100.7",
        &format!("--pid-file={}", tb.dir.join("dnsmasq.pid").display()),
        "--log-facility=-",
    ]
    .map(String::from)
    .to_vec();
    args.extend((1..=BIG_COUNT).map(|i| format!("--host-record=big.test,198.51.100.{i}")));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let child = ns
        .spawn(&args, &log)
        .expect("dnsmasq starts (scripts/install-deps.sh installs dnsmasq-base)");
    Process {
        child,
        what: "dnsmasq".into(),
    }
}

/// `getent hosts NAME` in `c`: its output and whether it found the name.
fn getent(c: &Netns, name: &str) -> (String, bool) {
    let o = c.try_exec(&["getent", "hosts", name]);
    (
        String::from_utf8_lossy(&o.stdout).to_string(),
        o.status.success(),
    )
}

fn stats(tb: &Testbed, host: usize) -> Value {
    tb.hosts[host].show_json(&tb.bins, "stats").unwrap()
}

fn blue_dns(stats: &Value) -> Value {
    stats["networks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "blue")
        .map(|n| n["dns"].clone())
        .unwrap_or_default()
}

fn rss_kb(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// A stub resolver in Python: sends `count` A queries for `name` to 10.0.9.1:53, at most 64
/// outstanding, and asks again (up to 3 times) for what is not answered within a second.
/// Prints "answered A resent R wrong W".
const BURST: &str = r#"
import socket, struct, sys, time
name, count = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect(("10.0.9.1", 53))
s.settimeout(1.0)
qname = b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0"
def query(i):
    return struct.pack("!HHHHHH", i, 0x0100, 1, 0, 0, 0) + qname + struct.pack("!HH", 1, 1)
answered, wrong, resent, sent, tries = set(), 0, 0, 0, {}
while len(answered) < count:
    while sent < count and sent - len(answered) < 64:
        s.send(query(sent)); tries[sent] = 1; sent += 1
    try:
        r = s.recv(2048)
    except socket.timeout:
        late = [i for i in range(sent) if i not in answered]
        if any(tries[i] >= 3 for i in late):
            break
        for i in late:
            s.send(query(i)); tries[i] += 1; resent += 1
        continue
    i, flags, qd, an = struct.unpack("!HHHH", r[:8])
    if flags & 0x8000 and flags & 0xf == 0 and an == 1:
        answered.add(i)
    else:
        wrong += 1
print("answered", len(answered), "resent", resent, "wrong", wrong)
"#;

/// Sends `n` datagrams to 10.0.9.1:53 that are not DNS messages.
const JUNK: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(int(sys.argv[1])):
    s.sendto(b"\xde\xad" * (i % 3), ("10.0.9.1", 53))
"#;

#[test]
fn containers_find_each_other_by_name_across_hosts_and_the_outside_through_the_host() {
    let extra = format!("\n[dns]\nupstreams = [\"{UPSTREAM}:{UPSTREAM_PORT}\"]\n");
    let (mut tb, _urls) = Testbed::cluster(&prefix("names"), bins(), 2, 1, &extra).unwrap();
    let upstream = start_upstream(&mut tb, 0);
    tb.services.push(Some(upstream));
    let created = tb.hosts[0]
        .ctl(
            &tb.bins,
            &["network", "create", "blue", "--subnet", "10.0.9.0/24"],
        )
        .unwrap();
    assert!(created.contains("blue"), "{created}");
    for h in 0..2 {
        let carried = wait_until(Duration::from_secs(2), || {
            tb.hosts[h]
                .show_json(&tb.bins, "networks")
                .is_ok_and(|v| v.to_string().contains("\"blue\""))
        });
        assert!(carried, "host {h} does not carry blue\n{}", tb.logs());
    }

    let (web, web_port) = step!(tb, tb.attach(0, "web", "blue", &["--name", "web"]));
    let (_, db_port) = step!(tb, tb.attach(1, "db", "blue", &["--name", "db"]));
    let db_ip = addr_of(&db_port);
    // The attach tells the container's resolver and wrote it where `ip netns exec` looks.
    let dns = &web_port["dns"];
    assert_eq!(dns["nameserver"], "10.0.9.1", "{web_port}");
    assert_eq!(dns["search"], "blue");
    let conf = std::fs::read_to_string(dns["resolv_conf"].as_str().unwrap()).unwrap();
    assert!(
        conf.contains("nameserver 10.0.9.1") && conf.contains("search blue"),
        "{conf}"
    );
    let c = tb.container(web);

    // NAME and NAME.NETWORK of a container on the other host.
    for name in ["db", "db.blue"] {
        let (out, found) = getent(c, name);
        eprintln!("getent hosts {name}: {}", out.trim_end());
        assert!(
            found && out.starts_with(&format!("{db_ip} ")),
            "{name}: {out:?}\n{}",
            tb.logs()
        );
    }
    let (sent, got) = ping(c, "db", 3, &[]);
    assert_eq!((sent, got), (3, 3), "ping db by name");
    // PTR: its address gives its name.
    let (out, found) = getent(c, &db_ip);
    assert!(found && out.contains("db.blue"), "{out:?}");
    // A name under the network's domain that nobody has: NXDOMAIN, at once.
    let t = Instant::now();
    let (out, found) = getent(c, "nobody.blue");
    let took = t.elapsed();
    assert!(!found, "{out:?}");
    assert!(took < Duration::from_millis(500), "NXDOMAIN took {took:?}");
    eprintln!("getent hosts nobody.blue: not found in {took:?}");
    // Other names are asked of the host's resolver.
    let (out, found) = getent(c, "outside.test");
    assert!(
        found && out.starts_with("198.51.100.7 "),
        "{out:?}\n{}",
        tb.logs()
    );

    // A container attached on the other host resolves within a second.
    let (_, late_port) = step!(tb, tb.attach(1, "late", "blue", &["--name", "late"]));
    let t = Instant::now();
    let c = tb.container(web);
    let late_ip = addr_of(&late_port);
    let resolved = wait_until(Duration::from_secs(1), || {
        getent(c, "late").0.starts_with(&format!("{late_ip} "))
    });
    assert!(resolved, "late not resolved after {:?}", t.elapsed());
    eprintln!("late resolved {:?} after its attach returned", t.elapsed());

    // What the counters say.
    let s = stats(&tb, 0);
    let d = blue_dns(&s);
    assert!(d["answered"].as_u64().unwrap() >= 5, "{d}");
    assert!(d["nxdomain"].as_u64().unwrap() >= 1, "{d}");
    assert!(d["forwarded"].as_u64().unwrap() >= 1, "{d}");
    assert!(s["dns"]["relayed"].as_u64().unwrap() >= 1, "{}", s["dns"]);
    assert_eq!(
        s["dns"]["upstreams"][0],
        format!("{UPSTREAM}:{UPSTREAM_PORT}")
    );

    // Detach: the resolv.conf written for it goes.
    let path = dns["resolv_conf"].as_str().unwrap().to_string();
    let ns_name = c.name.clone();
    step!(
        tb,
        tb.hosts[0].ctl(
            &tb.bins,
            &["detach-namespace", "--network", "blue", "--netns", &ns_name]
        )
    );
    assert!(!std::path::Path::new(&path).exists(), "{path} left behind");
}

#[test]
fn over_tcp_names_resolve_and_a_large_outside_answer_comes_whole() {
    let extra = format!("\n[dns]\nupstreams = [\"{UPSTREAM}:{UPSTREAM_PORT}\"]\n");
    let (mut tb, _urls) = Testbed::cluster(&prefix("tcp"), bins(), 1, 1, &extra).unwrap();
    let upstream = start_upstream(&mut tb, 0);
    tb.services.push(Some(upstream));
    step!(
        tb,
        tb.hosts[0].ctl(
            &tb.bins,
            &["network", "create", "blue", "--subnet", "10.0.9.0/24"]
        )
    );
    let (web, web_port) = step!(tb, tb.attach(0, "web", "blue", &["--name", "web"]));
    let (_, db_port) = step!(tb, tb.attach(0, "db", "blue", &["--name", "db"]));
    let db_ip = addr_of(&db_port);
    let c = tb.container(web);

    // An answer larger than 512 bytes: the container's resolver gets it truncated over UDP,
    // asks again over TCP, and the forwarder asks dnsmasq over TCP in turn.
    let (out, found) = getent(c, "big.test");
    let got: std::collections::BTreeSet<&str> = out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(
        found && got.len() == BIG_COUNT,
        "{} of {BIG_COUNT} addresses: {out:?}\n{}",
        got.len(),
        tb.logs()
    );
    let s = stats(&tb, 0);
    assert!(
        s["dns"]["tcp_queries"].as_u64().unwrap() >= 1,
        "{}",
        s["dns"]
    );
    assert!(
        s["dns"]["tcp_upstream"].as_u64().unwrap() >= 1,
        "{}",
        s["dns"]
    );
    assert!(blue_dns(&s)["tcp_connections"].as_u64().unwrap() >= 1);

    // A resolver told to use TCP only (`options use-vc`): the switch's own names, NXDOMAIN
    // and the outside, all over TCP.
    let conf = web_port["dns"]["resolv_conf"].as_str().unwrap().to_string();
    let mut text = std::fs::read_to_string(&conf).unwrap();
    text.push_str("options use-vc\n");
    std::fs::write(&conf, text).unwrap();
    let before = blue_dns(&stats(&tb, 0))["tcp_connections"]
        .as_u64()
        .unwrap();
    for name in ["db", "db.blue"] {
        let (out, found) = getent(c, name);
        assert!(
            found && out.starts_with(&format!("{db_ip} ")),
            "{name}: {out:?}"
        );
    }
    let t = Instant::now();
    let (out, found) = getent(c, "nobody.blue");
    assert!(!found, "{out:?}");
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
    let (out, found) = getent(c, "outside.test");
    assert!(found && out.starts_with("198.51.100.7 "), "{out:?}");
    let after = blue_dns(&stats(&tb, 0))["tcp_connections"]
        .as_u64()
        .unwrap();
    assert!(after >= before + 4, "{before} -> {after} TCP connections");
}

#[test]
fn a_burst_of_ten_thousand_queries_is_all_answered_and_junk_is_counted() {
    let (mut tb, _urls) = Testbed::cluster(&prefix("burst"), bins(), 1, 1, "").unwrap();
    step!(
        tb,
        tb.hosts[0].ctl(
            &tb.bins,
            &["network", "create", "blue", "--subnet", "10.0.9.0/24"]
        )
    );
    let carried = wait_until(Duration::from_secs(2), || {
        tb.hosts[0]
            .show_json(&tb.bins, "networks")
            .is_ok_and(|v| v.to_string().contains("\"blue\""))
    });
    assert!(carried, "{}", tb.logs());
    let (c, _) = step!(tb, tb.attach(0, "c", "blue", &["--name", "web"]));
    let pid = tb.hosts[0].daemon.as_ref().unwrap().pid();
    let c = tb.container(c);

    let before = rss_kb(pid);
    let out = c
        .exec(&["python3", "-c", BURST, "web.blue", "10000"])
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout).to_string();
    let grown = rss_kb(pid).saturating_sub(before);
    eprintln!("burst: {} RSS +{grown} kB", out.trim_end());
    assert!(out.starts_with("answered 10000 "), "{out}");
    assert!(out.trim_end().ends_with("wrong 0"), "{out}");
    assert!(grown < 10_000, "RSS grew by {grown} kB during the burst");

    let d0 = blue_dns(&stats(&tb, 0));
    c.exec(&["python3", "-c", JUNK, "30"]).unwrap();
    let counted = wait_until(Duration::from_secs(2), || {
        let s = stats(&tb, 0);
        let drops = s["networks"][0]["counters"]["drops"]["dns_malformed"].as_u64();
        drops == Some(30)
    });
    assert!(counted, "{}", stats(&tb, 0)["networks"][0]);
    assert_eq!(
        blue_dns(&stats(&tb, 0)),
        d0,
        "junk is not counted as queries"
    );
}
