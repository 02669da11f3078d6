//! The cluster plane end to end (issue 10): real etcd members started in the testbed's
//! underlay namespace, hosts whose node.toml names no peers and no networks. Root required
//! (TESTING.md); everything is removed when a test ends, pass or fail.

mod common;

use common::bins;
use common::cluster::addr_of;
use common::testbed::{self, ping, run, wait_until, Netns, Testbed};
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

fn prefix(tag: &str) -> String {
    format!("vsc{}-{tag}", std::process::id())
}

fn json(tb: &Testbed, host: usize, args: &[&str]) -> Value {
    let out = step!(tb, tb.hosts[host].ctl(&tb.bins, args));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out}"))
}

/// Whether host `host` carries network `name` (`show networks`).
fn carries(tb: &Testbed, host: usize, name: &str) -> bool {
    tb.hosts[host]
        .show_json(&tb.bins, "networks")
        .map(|v| {
            v.as_array()
                .is_some_and(|a| a.iter().any(|n| n["name"] == name))
        })
        .unwrap_or(false)
}

/// The addresses host `host` answers ARP for on `network` (`show neigh`).
fn neigh_ips(tb: &Testbed, host: usize, network: &str) -> BTreeSet<String> {
    tb.hosts[host]
        .show_json(&tb.bins, "neigh")
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter(|e| e["network"] == network)
        .filter_map(|e| e["ip"].as_str().map(str::to_string))
        .collect()
}

fn peer<'a>(peers: &'a Value, name: &str) -> Option<&'a Value> {
    peers.as_array()?.iter().find(|p| p["name"] == name)
}

fn create_blue(tb: &Testbed, host: usize) -> Value {
    let v = json(
        tb,
        host,
        &[
            "network",
            "create",
            "blue",
            "--subnet",
            "10.0.9.0/24",
            "--json",
        ],
    );
    let t0 = Instant::now();
    for h in (0..tb.hosts.len()).filter(|h| tb.hosts[*h].daemon.is_some()) {
        assert!(
            wait_until(Duration::from_secs(1), || carries(tb, h, "blue")),
            "host {h} did not carry the new network within a second ({:?})\n{}",
            t0.elapsed(),
            tb.logs()
        );
    }
    v
}

/// VXLAN-carried ARP seen on the underlays of all `hosts` while `f` runs.
fn arp_on_underlays(tb: &Testbed, hosts: &[usize], f: impl FnOnce()) -> usize {
    let Some((&h, rest)) = hosts.split_first() else {
        f();
        return 0;
    };
    let pcap = tb.dir.join(format!("arp-h{h}.pcap"));
    let mut inner = 0;
    // UDP (8) + VXLAN (8) + Ethernet addresses (12): the inner EtherType is at udp[28].
    testbed::capture_underlay(
        &tb.hosts[h].ns,
        &pcap,
        "udp port 4789 and udp[28:2] = 0x0806",
        || {
            inner = arp_on_underlays(tb, rest, f);
        },
    );
    inner + testbed::pcap_packets(&pcap).len()
}

#[test]
fn three_hosts_without_peers_find_each_other_and_the_first_ping_needs_no_arp_on_the_underlay() {
    let (mut tb, _urls) = Testbed::cluster(&prefix("three"), bins(), 3, 1, "").unwrap();
    // Membership: every host lists the two others as up, with a recent keepalive.
    for h in 0..3 {
        let ok = wait_until(Duration::from_secs(1), || {
            let Ok(p) = tb.hosts[h].show_json(&tb.bins, "peers") else {
                return false;
            };
            tb.hosts
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != h)
                .all(|(_, o)| peer(&p, &o.name).is_some_and(|x| x["state"] == "up"))
        });
        assert!(
            ok,
            "host {h} does not list both others as up\n{}",
            tb.logs()
        );
    }
    let text = step!(tb, tb.hosts[0].ctl(&tb.bins, &["show", "peers"]));
    assert!(
        text.contains("STATE") && text.contains("cluster store: reachable"),
        "{text}"
    );

    let net = create_blue(&tb, 1);
    assert!(net["vni"].as_u64().unwrap() >= 4096, "auto VNI: {net}");
    let mut ips = Vec::new();
    let mut cs = Vec::new();
    for h in 0..3 {
        let (c, port) = step!(tb, tb.attach(h, &format!("c{h}"), "blue", &[]));
        ips.push(addr_of(&port));
        cs.push(c);
    }
    let distinct: BTreeSet<&String> = ips.iter().collect();
    assert_eq!(distinct.len(), 3, "addresses handed out: {ips:?}");
    for ip in &ips {
        assert!(ip.starts_with("10.0.9."), "{ip} is not in the subnet");
    }
    // Every host knows every container before any packet.
    let all: BTreeSet<String> = ips.iter().cloned().collect();
    for h in 0..3 {
        assert!(
            wait_until(Duration::from_secs(1), || neigh_ips(&tb, h, "blue") == all),
            "host {h} neighbours {:?}, want {all:?}\n{}",
            neigh_ips(&tb, h, "blue"),
            tb.logs()
        );
    }
    let inspect = json(&tb, 2, &["network", "inspect", "blue", "--json"]);
    let hosts: BTreeSet<&str> = inspect["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["host"].as_str())
        .collect();
    assert_eq!(hosts, ["node-a", "node-b", "node-c"].into_iter().collect());

    let mut results = Vec::new();
    let arps = arp_on_underlays(&tb, &[0, 1, 2], || {
        for (a, ca) in cs.iter().enumerate() {
            for (b, ip) in ips.iter().enumerate() {
                if a != b {
                    results.push((a, b, ping(tb.container(*ca), ip, 1, &[])));
                }
            }
        }
    });
    for (a, b, r) in &results {
        assert_eq!(
            *r,
            (1, 1),
            "first ping c{a} -> c{b} ({})\n{}",
            ips[*b],
            tb.logs()
        );
    }
    assert_eq!(
        arps, 0,
        "ARP crossed the underlay although every host knew every container"
    );
    // Control: an address no container has is flooded, and the capture does see it.
    let arps = arp_on_underlays(&tb, &[0], || {
        let _ = ping(tb.container(cs[0]), "10.0.9.200", 1, &[]);
    });
    assert!(arps >= 1, "the capture saw no ARP for an unknown address");
}

#[test]
fn concurrent_attaches_get_distinct_addresses_and_taken_ones_and_names_are_refused() {
    let mut tb = Testbed::new(&prefix("ipam"), bins()).unwrap();
    step!(tb, tb.add_hosts(3));
    let urls = step!(tb, tb.start_etcd(1));
    for i in 0..2 {
        let name = tb.hosts[i].name.clone();
        step!(tb, tb.write_cluster_config(i, &name, &urls, ""));
        step!(tb, tb.start_daemon(i));
    }
    // A third host that calls itself node-a: refused, naming where node-a runs.
    step!(tb, tb.write_cluster_config(2, "node-a", &urls, ""));
    let h2 = &tb.hosts[2];
    let out = h2.ns.try_exec(&[
        tb.bins.vswitchd.to_str().unwrap(),
        "--config",
        h2.config.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a second node-a started");
    assert!(
        err.contains("\"node-a\" is already registered") && err.contains("192.0.2.1:4789"),
        "{err}"
    );

    create_blue(&tb, 0);
    // 20 attaches at once on each of the two hosts.
    let mut nss = Vec::new();
    for k in 0..40 {
        nss.push(step!(tb, Netns::new(&format!("{}-k{k}", tb.prefix))));
    }
    let answers: Vec<(usize, Result<String, String>)> = std::thread::scope(|s| {
        let jobs: Vec<_> = nss
            .iter()
            .enumerate()
            .map(|(k, ns)| {
                let (host, bins) = (&tb.hosts[k % 2], &tb.bins);
                s.spawn(move || {
                    let args = [
                        "attach-namespace",
                        "--network",
                        "blue",
                        "--netns",
                        &ns.name,
                        "--json",
                    ];
                    (k, host.ctl(bins, &args))
                })
            })
            .collect();
        jobs.into_iter().map(|j| j.join().unwrap()).collect()
    });
    tb.containers.extend(nss);
    let mut ips = BTreeSet::new();
    let mut on_b = Vec::new();
    for (k, a) in &answers {
        let out = a
            .as_ref()
            .unwrap_or_else(|e| panic!("attach {k}: {e}\n{}", tb.logs()));
        let v: Value = serde_json::from_str(out).unwrap();
        let ip = addr_of(&v);
        assert!(ip.starts_with("10.0.9."), "{ip}");
        ips.insert(ip.clone());
        if k % 2 == 1 {
            on_b.push((ip, v["name"].as_str().unwrap().to_string()));
        }
    }
    assert_eq!(
        ips.len(),
        40,
        "40 attaches got {} distinct addresses",
        ips.len()
    );
    assert!(
        wait_until(Duration::from_secs(2), || {
            let v = json(&tb, 0, &["network", "inspect", "blue", "--json"]);
            v["endpoints"].as_array().map_or(0, |a| a.len()) == 40
        }),
        "network inspect does not show the 40 endpoints"
    );

    // An address taken on node-b is refused on node-a, naming it and its holder.
    let (taken, holder) = on_b[0].clone();
    let err = tb
        .attach(0, "t1", "blue", &["--ip", &format!("{taken}/24")])
        .unwrap_err();
    assert!(
        err.contains(&taken) && err.contains("node-b") && err.contains(&holder),
        "{err}"
    );
    // A name is unique per network.
    step!(tb, tb.attach(0, "n1", "blue", &["--name", "web"]));
    let err = tb.attach(1, "n2", "blue", &["--name", "web"]).unwrap_err();
    assert!(
        err.contains("name \"web\" is taken") && err.contains("node-a"),
        "{err}"
    );
    // Over plain http no secret may travel: an encrypted network is refused, saying why.
    let err = tb.hosts[0]
        .ctl(
            &tb.bins,
            &[
                "network",
                "create",
                "sec",
                "--subnet",
                "10.0.7.0/24",
                "--encrypted",
            ],
        )
        .unwrap_err();
    assert!(
        err.contains("only over TLS with a client certificate"),
        "{err}"
    );
    // A network neither the cluster nor this host has: refused, naming it.
    let err = tb.attach(0, "n3", "nosuch", &[]).unwrap_err();
    assert!(err.contains("no network named \"nosuch\""), "{err}");

    // Detach gives the address back: node-a can then have it.
    let ns_of_taken = holder.split('/').next().unwrap().to_string();
    step!(
        tb,
        tb.hosts[1].ctl(
            &tb.bins,
            &[
                "detach-namespace",
                "--network",
                "blue",
                "--netns",
                &ns_of_taken
            ]
        )
    );
    let (_, got) = step!(
        tb,
        tb.attach(0, "t2", "blue", &["--ip", &format!("{taken}/24")])
    );
    assert_eq!(addr_of(&got), taken);
    // And a network with endpoints cannot be removed.
    let err = tb.hosts[0]
        .ctl(&tb.bins, &["network", "rm", "blue"])
        .unwrap_err();
    assert!(
        err.contains("still has") && err.contains("endpoint"),
        "{err}"
    );
}

#[test]
fn a_killed_host_is_forgotten_within_its_lease_and_keeps_its_addresses_when_it_returns() {
    let ttl = 2;
    let extra = format!("lease_ttl = \"{ttl}s\"\n");
    let (mut tb, _urls) = Testbed::cluster(&prefix("loss"), bins(), 3, 1, &extra).unwrap();
    create_blue(&tb, 0);
    let (a, pa) = step!(tb, tb.attach(0, "a", "blue", &[]));
    let (_, pc) = step!(tb, tb.attach(2, "c", "blue", &["--name", "c"]));
    let ip_c = addr_of(&pc);
    // A second container on node-c, which goes away while node-c's daemon is dead.
    let (c2, pc2) = step!(tb, tb.attach(2, "c2", "blue", &["--name", "c2"]));
    let ip_c2 = addr_of(&pc2);
    assert!(wait_until(Duration::from_secs(1), || neigh_ips(
        &tb, 0, "blue"
    )
    .contains(&ip_c)));
    assert_eq!(
        ping(tb.container(a), &ip_c, 1, &[]),
        (1, 1),
        "{}",
        tb.logs()
    );

    // kill -9: no goodbye; its lease has to run out.
    let pid = tb.hosts[2].daemon.as_ref().unwrap().pid();
    // SAFETY: kill(2) on the pid of a vswitchd this test started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let _ = tb.hosts[2].daemon.take().unwrap().child.wait();
    let t0 = Instant::now();
    let c2_ns = tb.container(c2).name.clone();
    step!(tb, run(&["ip", "netns", "del", &c2_ns]));
    for h in [0, 1] {
        let forgotten = wait_until(Duration::from_secs(ttl + 3), || {
            let Ok(p) = tb.hosts[h].show_json(&tb.bins, "peers") else {
                return false;
            };
            let down = peer(&p, "node-c").is_some_and(|x| x["state"] == "down");
            let fdb = tb.hosts[h].show_json(&tb.bins, "fdb").unwrap_or_default();
            let at_c = fdb
                .as_array()
                .into_iter()
                .flatten()
                .any(|e| e["location"] == "192.0.2.3");
            down && !at_c && !neigh_ips(&tb, h, "blue").contains(&ip_c)
        });
        assert!(
            forgotten,
            "host {h} still holds node-c {:?} after it died\n{}",
            t0.elapsed(),
            tb.logs()
        );
    }
    let forgotten_after = t0.elapsed();
    let inspect = json(&tb, 1, &["network", "inspect", "blue", "--json"]);
    assert!(
        !inspect["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["host"] == "node-c"),
        "{inspect}"
    );
    // Its address is not handed to anyone while it could still be alive.
    let err = tb
        .attach(0, "x", "blue", &["--ip", &format!("{ip_c}/24")])
        .unwrap_err();
    assert!(err.contains("taken") && err.contains("node-c"), "{err}");

    // It comes back: registered again, and it re-adopts its container, whose interface
    // outlived the kill (crate::control::server::restart), under the same address and name,
    // published again once it has read etcd.
    let c_eth0 = |tb: &Testbed| {
        let ns = format!("{}-c", tb.prefix);
        let o = tb.containers.iter().find(|n| n.name == ns).unwrap();
        o.try_exec(&["ip", "-br", "-4", "addr", "show", "eth0"])
    };
    let kept = String::from_utf8_lossy(&c_eth0(&tb).stdout).to_string();
    assert!(kept.contains(&ip_c), "c's eth0 survives the kill: {kept}");
    step!(tb, tb.start_daemon(2));
    let adopted = wait_until(Duration::from_secs(5), || {
        // Every saved port adopted or dropped (after the first view of etcd), c among them.
        tb.hosts[2]
            .log_text()
            .contains("saved ports on cluster networks re-adopted")
            && tb.hosts[2].show_json(&tb.bins, "ports").is_ok_and(|p| {
                p.as_array()
                    .is_some_and(|a| a.iter().any(|x| addr_of(x) == ip_c))
            })
    });
    assert!(
        adopted,
        "the restarted host did not re-adopt c\n{}",
        tb.logs()
    );
    // The container that went while it was down is dropped: its claim is released, so its
    // address may be given to another container at once.
    let (_, py) = step!(
        tb,
        tb.attach(0, "y", "blue", &["--ip", &format!("{ip_c2}/24")])
    );
    assert_eq!(addr_of(&py), ip_c2);
    let ports = tb.hosts[2].show_json(&tb.bins, "ports").unwrap();
    assert_eq!(ports.as_array().map(Vec::len), Some(1), "{ports}");
    let inspect = json(&tb, 1, &["network", "inspect", "blue", "--json"]);
    assert!(
        inspect["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["host"] == "node-c" && e["name"] == "c" && e["ip"] == ip_c.as_str()),
        "{inspect}"
    );
    assert!(wait_until(Duration::from_secs(2), || neigh_ips(
        &tb, 0, "blue"
    )
    .contains(&ip_c)));
    let p = tb.hosts[0].show_json(&tb.bins, "peers").unwrap();
    assert_eq!(peer(&p, "node-c").unwrap()["state"], "up", "{p}");
    assert_eq!(
        ping(tb.container(a), &ip_c, 1, &[]),
        (1, 1),
        "{}",
        tb.logs()
    );
    eprintln!(
        "node-c forgotten {forgotten_after:?} after kill -9 (lease_ttl {ttl}s); a={}",
        addr_of(&pa)
    );
}

#[test]
fn traffic_survives_an_etcd_outage_and_the_cluster_resyncs_when_it_returns() {
    let (mut tb, urls) =
        Testbed::cluster(&prefix("outage"), bins(), 2, 1, "lease_ttl = \"3s\"\n").unwrap();
    create_blue(&tb, 0);
    let (a, _) = step!(tb, tb.attach(0, "a", "blue", &[]));
    let (_, pb) = step!(tb, tb.attach(1, "b", "blue", &[]));
    let ip_b = addr_of(&pb);
    assert!(wait_until(Duration::from_secs(1), || neigh_ips(
        &tb, 0, "blue"
    )
    .contains(&ip_b)));
    assert_eq!(
        ping(tb.container(a), &ip_b, 1, &[]),
        (1, 1),
        "{}",
        tb.logs()
    );

    tb.stop_etcd_member(0);
    let unreachable = |tb: &Testbed, h: usize| {
        tb.hosts[h]
            .ctl(&tb.bins, &["network", "ls", "--json"])
            .ok()
            .and_then(|o| serde_json::from_str::<Value>(&o).ok())
            .is_some_and(|v| v["store"]["reachable"] == false)
    };
    for h in 0..2 {
        assert!(
            wait_until(Duration::from_secs(5), || unreachable(&tb, h)),
            "host {h}\n{}",
            tb.logs()
        );
    }
    let text = step!(tb, tb.hosts[0].ctl(&tb.bins, &["show", "peers"]));
    assert!(text.contains("cluster store: UNREACHABLE"), "{text}");
    let err = tb.attach(0, "c", "blue", &[]).unwrap_err();
    assert!(err.contains("unreachable"), "{err}");
    // Longer than the lease: nothing installed is forgotten; ARP is still answered locally.
    std::thread::sleep(Duration::from_secs(4));
    tb.container(a)
        .exec(&["ip", "neigh", "flush", "all"])
        .unwrap();
    assert_eq!(
        ping(tb.container(a), &ip_b, 3, &[]),
        (3, 3),
        "during the outage\n{}",
        tb.logs()
    );
    let p = tb.hosts[0].show_json(&tb.bins, "peers").unwrap();
    assert_eq!(peer(&p, "node-b").unwrap()["state"], "up", "{p}");

    step!(tb, tb.start_etcd_member(0, 1));
    step!(tb, tb.wait_etcd_healthy(&urls));
    for h in 0..2 {
        assert!(
            wait_until(Duration::from_secs(10), || !unreachable(&tb, h)),
            "host {h} did not see the store return\n{}",
            tb.logs()
        );
    }
    let (_, pd) = step!(tb, tb.attach(1, "d", "blue", &[]));
    let ip_d = addr_of(&pd);
    assert!(
        wait_until(Duration::from_secs(2), || neigh_ips(&tb, 0, "blue")
            .contains(&ip_d)),
        "host 0 did not learn the endpoint attached after the outage\n{}",
        tb.logs()
    );
    assert_eq!(
        ping(tb.container(a), &ip_d, 1, &[]),
        (1, 1),
        "{}",
        tb.logs()
    );
    assert_eq!(
        ping(tb.container(a), &ip_b, 1, &[]),
        (1, 1),
        "{}",
        tb.logs()
    );

    // A compacted watch revision: other users of etcd move its revision on, it is compacted,
    // and the daemons' next watch (they reopen a quiet one every few seconds) starts from a
    // revision that is gone. They read everything again rather than keep a stale table.
    for k in 0..50 {
        step!(
            tb,
            tb.etcdctl(&urls, &["put", &format!("/other/k{k}"), "x"])
        );
    }
    let status = step!(tb, tb.etcdctl(&urls, &["endpoint", "status", "-w", "json"]));
    let rev = serde_json::from_str::<Value>(&status).unwrap()[0]["Status"]["header"]["revision"]
        .as_i64()
        .unwrap();
    step!(tb, tb.etcdctl(&urls, &["compact", &rev.to_string()]));
    for h in 0..2 {
        assert!(
            wait_until(Duration::from_secs(12), || tb.hosts[h]
                .log_text()
                .contains("watch revision compacted: reading everything again")),
            "host {h} never hit the compacted revision\n{}",
            tb.logs()
        );
    }
    let (_, pe) = step!(tb, tb.attach(1, "e", "blue", &[]));
    let ip_e = addr_of(&pe);
    assert!(
        wait_until(Duration::from_secs(2), || neigh_ips(&tb, 0, "blue")
            .contains(&ip_e)),
        "host 0 stopped following etcd after the compaction\n{}",
        tb.logs()
    );
    assert_eq!(
        ping(tb.container(a), &ip_e, 1, &[]),
        (1, 1),
        "{}",
        tb.logs()
    );
}

#[test]
fn losing_one_of_three_etcd_members_changes_nothing() {
    let (mut tb, urls) = Testbed::cluster(&prefix("members"), bins(), 2, 3, "").unwrap();
    create_blue(&tb, 0);
    let (a, _) = step!(tb, tb.attach(0, "a", "blue", &[]));
    let (b, pb) = step!(tb, tb.attach(1, "b", "blue", &[]));
    assert!(wait_until(Duration::from_secs(1), || neigh_ips(
        &tb, 0, "blue"
    )
    .contains(&addr_of(&pb))));
    assert_eq!(
        ping(tb.container(a), &addr_of(&pb), 1, &[]),
        (1, 1),
        "{}",
        tb.logs()
    );

    // The member every host lists first.
    tb.stop_etcd_member(0);
    step!(tb, tb.wait_etcd_healthy(&urls[1..]));
    let (_, pc) = step!(tb, tb.attach(0, "c", "blue", &[]));
    let (_, pd) = step!(tb, tb.attach(1, "d", "blue", &[]));
    let (ip_c, ip_d) = (addr_of(&pc), addr_of(&pd));
    assert!(
        wait_until(Duration::from_secs(2), || {
            neigh_ips(&tb, 0, "blue").contains(&ip_d) && neigh_ips(&tb, 1, "blue").contains(&ip_c)
        }),
        "{}",
        tb.logs()
    );
    assert_eq!(
        ping(tb.container(a), &ip_d, 1, &[]),
        (1, 1),
        "{}",
        tb.logs()
    );
    assert_eq!(
        ping(tb.container(b), &ip_c, 1, &[]),
        (1, 1),
        "{}",
        tb.logs()
    );
    for h in 0..2 {
        let l = json(&tb, h, &["network", "ls", "--json"]);
        assert_eq!(l["store"]["reachable"], true, "host {h}: {l}");
        let p = tb.hosts[h].show_json(&tb.bins, "peers").unwrap();
        let other = &tb.hosts[1 - h].name;
        assert_eq!(peer(&p, other).unwrap()["state"], "up", "{p}");
    }
    let _ = run(&["true"]);
}

#[test]
fn an_encrypted_cluster_network_gets_its_secret_over_tls_only_and_carries_only_esp() {
    let mut tb = Testbed::new(&prefix("esp"), bins()).unwrap();
    step!(tb, tb.add_hosts(2));
    let urls = step!(tb, tb.start_etcd_tls(1));
    assert!(urls[0].starts_with("https://"));
    for i in 0..2 {
        let name = tb.hosts[i].name.clone();
        step!(tb, tb.write_cluster_config(i, &name, &urls, ""));
        step!(tb, tb.start_daemon(i));
    }
    let net = json(
        &tb,
        0,
        &[
            "network",
            "create",
            "red",
            "--subnet",
            "10.0.8.0/24",
            "--encrypted",
            "--json",
        ],
    );
    assert_eq!(net["encrypted"], true, "{net}");
    for h in 0..2 {
        assert!(
            wait_until(Duration::from_secs(1), || carries(&tb, h, "red")),
            "host {h} does not carry the encrypted network\n{}",
            tb.logs()
        );
    }
    // The secret is in etcd, readable only with a client certificate.
    let secret = step!(
        tb,
        tb.etcdctl(
            &urls,
            &["get", "--print-value-only", "/vswitch/secrets/red"]
        )
    );
    assert_eq!(secret.trim().len(), 64, "{secret}");
    let nets = tb.hosts[1].show_json(&tb.bins, "networks").unwrap();
    let red = nets
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "red")
        .unwrap();
    assert_eq!(
        red["mtu"], 1408,
        "ESP leaves 1408 bytes on a 1500 underlay: {red}"
    );

    let (a, _) = step!(tb, tb.attach(0, "a", "red", &[]));
    let (_, pb) = step!(tb, tb.attach(1, "b", "red", &[]));
    let ip_b = addr_of(&pb);
    assert!(wait_until(Duration::from_secs(1), || neigh_ips(
        &tb, 0, "red"
    )
    .contains(&ip_b)));
    let (vxlan, esp) = (tb.dir.join("vxlan.pcap"), tb.dir.join("esp.pcap"));
    let ns = &tb.hosts[0].ns;
    let mut got = (0, 0);
    testbed::capture_underlay(ns, &vxlan, "udp port 4789", || {
        testbed::capture_underlay(ns, &esp, "udp port 4500", || {
            got = ping(tb.container(a), &ip_b, 10, &[]);
        });
    });
    assert_eq!(
        got,
        (10, 10),
        "ping over the encrypted network\n{}",
        tb.logs()
    );
    assert_eq!(
        testbed::pcap_packets(&vxlan).len(),
        0,
        "plaintext VXLAN on the underlay"
    );
    assert!(
        testbed::pcap_packets(&esp).len() >= 10,
        "no ESP on the underlay"
    );
    let sa = tb.hosts[0].show_json(&tb.bins, "sa").unwrap();
    assert!(
        sa.as_array()
            .unwrap()
            .iter()
            .any(|s| s["network"] == "red" && s["peer"] == "node-b"),
        "{sa}"
    );
}
