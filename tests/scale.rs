//! What lets one host carry thousands of containers, as a user sees it (root required; see
//! TESTING.md). The 4096-container figures come from benches/scale.sh, a benchmark; these
//! tests check the behaviour behind them:
//!
//! - vswitchd started under a low open-file soft limit raises it to the hard limit, and then
//!   holds more ports than the low limit would allow, one fd per port with two workers;
//! - a container's own IPv6 chatter (MLD reports, router solicitations, which vswitchd turns
//!   off in the container, duplicate address detection) and the switch's announcement of it
//!   are not copied to the other ports: the
//!   ports' transmit counters stay at zero while `mld` and `router_solicitation` count, and
//!   IPv6 neighbour discovery between two containers still works;
//! - a detach answers once the container's interface is gone, so the same name can be attached
//!   again at once, and a plain stop removes every interface (the kernel's slow part of
//!   removing a device runs on the reaper threads, many at once: crate::dataplane::reaper).

mod common;

use common::bins;
use common::testbed::{ping, wait_until, NetDef, Testbed};
use serde_json::Value;
use std::time::Duration;

fn prefix(tag: &str) -> String {
    format!("vsw{}-sc{tag}", std::process::id())
}

const WIDE: NetDef = NetDef {
    extra: "",
    name: "blue",
    vni: 42,
    subnet: "10.0.0.0/16",
};

/// `Max open files` of process `pid`: (soft, hard).
fn nofile(pid: i32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let v: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (v[0], v[1])
}

fn fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// The daemon's fds once a control connection just served has been closed: the least of a
/// few readings.
fn settled_fds(pid: i32) -> usize {
    (0..10)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(50));
            fds(pid)
        })
        .min()
        .unwrap()
}

/// A port's counters from `show stats --json`, by port name.
fn port_counters(stats: &Value, name: &str) -> Value {
    stats["ports"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == name))
        .map(|p| p["counters"].clone())
        .unwrap_or_else(|| panic!("no port {name} in {stats}"))
}

fn network_drop(stats: &Value, reason: &str) -> u64 {
    stats["networks"][0]["counters"]["drops"][reason]
        .as_u64()
        .unwrap_or(0)
}

const PORTS: usize = 150;
const LOW_LIMIT: u64 = 128;

#[test]
fn a_daemon_under_a_low_fd_limit_raises_it_and_holds_more_ports_than_it_allowed() {
    let mut tb = Testbed::new(&prefix("fd"), bins()).unwrap();
    step!(tb, tb.add_hosts(1));
    step!(tb, tb.write_config(0, &[WIDE], "workers = 2"));
    // Started the way a shell with the common default limit would start it, only lower, so a
    // small test crosses it: `ulimit -Sn 128`.
    let wrapper = tb.dir.join("vswitchd-low-limit");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec prlimit --nofile={LOW_LIMIT}: -- {} \"$@\"\n",
            tb.bins.vswitchd.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    tb.bins.vswitchd = wrapper;
    step!(tb, tb.start_daemon(0));
    let pid = tb.hosts[0].daemon.as_ref().unwrap().pid();

    let (soft, hard) = nofile(pid);
    assert!(
        hard > LOW_LIMIT,
        "the hard limit is {hard}: the test needs more"
    );
    assert_eq!(soft, hard, "soft limit not raised to the hard one");
    assert!(
        tb.hosts[0]
            .log_text()
            .contains("raised the open-file limit"),
        "not logged:\n{}",
        tb.logs()
    );

    let before = settled_fds(pid);
    for i in 0..PORTS {
        let ip = format!("10.0.{}.{}/16", (i + 2) >> 8, (i + 2) & 255);
        step!(tb, tb.add_container(0, &format!("c{i}"), "blue", &ip));
    }
    let during = settled_fds(pid);
    assert!(
        during as u64 > LOW_LIMIT,
        "{during} fds: more than the old limit of {LOW_LIMIT}"
    );
    assert_eq!(
        during - before,
        PORTS,
        "one fd per port with two workers ({before} fds before, {during} with {PORTS} ports)"
    );
    // The first and the last container reach each other.
    let last = format!("10.0.{}.{}", (PORTS + 1) >> 8, (PORTS + 1) & 255);
    assert_eq!(
        ping(tb.container(1), &last, 2, &[]),
        (2, 2),
        "{}",
        tb.logs()
    );

    // Detaching gives the fds back, and the interfaces are gone when detach answers.
    for i in 0..10 {
        let ns = tb.container(1 + i).name.clone();
        step!(
            tb,
            tb.hosts[0].ctl(
                &tb.bins,
                &["detach-namespace", "--network", "blue", "--netns", &ns]
            )
        );
        let out = tb
            .container(1 + i)
            .try_exec(&["ip", "link", "show", "eth0"]);
        assert!(!out.status.success(), "eth0 still in {ns} after detach");
    }
    assert_eq!(settled_fds(pid), during - 10);
}

/// The address of the `i`-th container of a WIDE network.
fn wide_ip(i: usize) -> String {
    format!("10.0.{}.{}", (i + 2) >> 8, (i + 2) & 255)
}

#[test]
fn a_detached_container_can_be_attached_again_at_once_and_a_stop_removes_every_interface() {
    const N: usize = 24;
    let mut tb = Testbed::new(&prefix("re"), bins()).unwrap();
    step!(tb, tb.add_hosts(1));
    step!(tb, tb.write_config(0, &[WIDE], ""));
    step!(tb, tb.start_daemon(0));
    let idx: Vec<usize> = (0..N)
        .map(|i| {
            let ip = format!("{}/16", wide_ip(i));
            step!(tb, tb.add_container(0, &format!("c{i}"), "blue", &ip))
        })
        .collect();
    // Each container detached and attached again straight away, as a runtime restarting a
    // container in the same namespace does: when detach answers, eth0 is gone and its name
    // free, while the kernel may still be finishing the old device's removal.
    for (i, &k) in idx.iter().enumerate() {
        let ns = tb.container(k).name.clone();
        let ip = format!("{}/16", wide_ip(i));
        step!(
            tb,
            tb.hosts[0].ctl(
                &tb.bins,
                &["detach-namespace", "--network", "blue", "--netns", &ns]
            )
        );
        let out = tb.container(k).try_exec(&["ip", "link", "show", "eth0"]);
        assert!(!out.status.success(), "eth0 still in {ns} after detach");
        step!(
            tb,
            tb.hosts[0].attach_namespace(&tb.bins, "blue", &ns, &ip, &[])
        );
    }
    let ports = step!(tb, tb.hosts[0].show_json(&tb.bins, "ports"));
    assert_eq!(ports.as_array().unwrap().len(), N, "{ports}");
    assert_eq!(
        ping(tb.container(idx[0]), &wide_ip(N - 1), 2, &[]),
        (2, 2),
        "{}",
        tb.logs()
    );

    // A plain stop removes every container's interface before the daemon exits.
    let status = tb.hosts[0].daemon.as_mut().unwrap().stop().unwrap();
    assert!(
        status.success(),
        "vswitchd exited with {status}\n{}",
        tb.logs()
    );
    for &k in &idx {
        let out = tb.container(k).try_exec(&["ip", "link", "show", "eth0"]);
        assert!(
            !out.status.success(),
            "eth0 of {} survived the daemon",
            tb.container(k).name
        );
    }
}

/// The IPv6 link-local address Linux gives an interface with this MAC (RFC 4291 §2.5.1).
fn link_local(mac: &str) -> String {
    let b: Vec<u8> = mac
        .split(':')
        .map(|x| u8::from_str_radix(x, 16).unwrap())
        .collect();
    format!(
        "fe80::{:x}:{:x}:{:x}:{:x}",
        u16::from_be_bytes([b[0] ^ 2, b[1]]),
        u16::from_be_bytes([b[2], 0xff]),
        u16::from_be_bytes([0xfe, b[3]]),
        u16::from_be_bytes([b[4], b[5]])
    )
}

#[test]
fn a_containers_ipv6_chatter_is_not_copied_to_the_other_ports() {
    let mut tb = Testbed::new(&prefix("mc"), bins()).unwrap();
    step!(tb, tb.add_hosts(1));
    step!(tb, tb.write_config(0, &[WIDE], ""));
    step!(tb, tb.start_daemon(0));
    let (mut names, mut idx) = (Vec::new(), Vec::new());
    for (i, tag) in ["a", "b", "c", "d"].iter().enumerate() {
        let k = step!(
            tb,
            tb.add_container(0, tag, "blue", &format!("10.0.0.{}/16", i + 2))
        );
        names.push(format!("{}/eth0", tb.container(k).name));
        idx.push(k);
    }
    // vswitchd turned router solicitations off in each container (no router answers on its
    // networks); a container that turns them on again, as here, solicits routers once its
    // link-local address passed duplicate address detection. Every container joins its
    // groups (MLD reports) when its link comes up.
    for &k in &idx {
        let c = tb.container(k);
        let rs = c.exec(&["sysctl", "-n", "net.ipv6.conf.eth0.router_solicitations"]);
        let rs = String::from_utf8_lossy(&step!(tb, rs).stdout)
            .trim()
            .to_string();
        assert_eq!(rs, "0", "router solicitations in {}", c.name);
        // Its TAP takes TCP super-frames no larger than one UDP GSO send carries.
        let link = step!(tb, c.exec(&["ip", "-d", "-j", "link", "show", "eth0"]));
        let link: Value = serde_json::from_slice(&link.stdout).unwrap();
        let mtu = link[0]["mtu"].as_u64().unwrap() as u32;
        assert_eq!(
            link[0]["gso_max_size"].as_u64(),
            vswitch::offload::tso::tap_gso_max_size(mtu).map(u64::from),
            "{link}"
        );
        for cmd in [
            &["sysctl", "-qw", "net.ipv6.conf.eth0.router_solicitations=1"][..],
            &["ip", "link", "set", "eth0", "down"],
            &["ip", "link", "set", "eth0", "up"],
        ] {
            step!(tb, c.exec(cmd));
        }
    }
    let stats = || tb.hosts[0].show_json(&tb.bins, "stats").unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || {
            let s = stats();
            network_drop(&s, "mld") >= 4 && network_drop(&s, "router_solicitation") >= 4
        }),
        "no MLD report or router solicitation counted: {}",
        stats()
    );
    let s = stats();
    for n in &names {
        let c = port_counters(&s, n);
        assert_eq!(
            c["tx_packets"], 0,
            "port {n} was sent another container's chatter: {c}"
        );
        assert!(c["rx_packets"].as_u64().unwrap() >= 2, "{n}: {c}");
    }

    // Neighbour discovery still works: a's solicitation reaches b, whose MAC names the group.
    let ports = step!(tb, tb.hosts[0].show_json(&tb.bins, "ports"));
    let mac_b = ports
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == names[1])
        .and_then(|p| p["mac"].as_str())
        .unwrap()
        .to_string();
    let b_ll = format!("{}%eth0", link_local(&mac_b));
    let (sent, got) = ping(tb.container(idx[0]), &b_ll, 2, &["-6"]);
    assert_eq!((sent, got), (2, 2), "ping {b_ll}: {}", tb.logs());
    // ... and c and d, which do not hold that group, were not sent it.
    let s = stats();
    for n in [&names[2], &names[3]] {
        let c = port_counters(&s, n);
        assert_eq!(c["tx_packets"], 0, "port {n}: {c}");
    }
    // IPv4 between them too (proxy-ARP, unicast).
    assert_eq!(ping(tb.container(idx[2]), "10.0.0.5", 2, &[]), (2, 2));
}
