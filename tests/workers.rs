//! Worker per core, end to end (root required; see TESTING.md): with `workers = 2` each daemon
//! runs two pinned worker threads, a container's interface has two queues (asked for with
//! VSWITCH_TAP_QUEUES=per-worker; by default a port has one, crate::control::attach), the flows of many
//! connections spread over both workers on both hosts, and every flow arrives in order.

mod common;

use common::bins;
use common::testbed::{ping, udp_in, Testbed, BLUE};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::time::Duration;

/// The worker threads of process `pid`: name → the CPUs it may run on (Cpus_allowed_list).
fn worker_threads(pid: i32) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let dir = task.unwrap().path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let comm = comm.trim();
        if !comm.starts_with("vswitch-w") {
            continue;
        }
        let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
        let cpus = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .unwrap_or("?")
            .trim()
            .to_string();
        out.insert(comm.to_string(), cpus);
    }
    out
}

const FLOWS: u16 = 32;
const PER_FLOW: u32 = 300;

#[test]
fn two_pinned_workers_two_queues_flows_spread_and_stay_in_order() {
    let prefix = format!("vsw{}-wk", std::process::id());
    let mut tb = Testbed::two_hosts_with(
        &prefix,
        bins(),
        &[BLUE],
        &[("VSWITCH_TAP_QUEUES", "per-worker")],
        "workers = 2",
    )
    .unwrap();
    let a = step!(tb, tb.add_container(0, "a", "blue", "10.0.9.2/24"));
    let b = step!(tb, tb.add_container(1, "b", "blue", "10.0.9.3/24"));
    let cpus = vswitch::io::cpu::allowed_cpus();

    // Two worker threads per daemon, each pinned to one core (distinct cores when the machine
    // has two).
    for h in &tb.hosts {
        let pid = h.daemon.as_ref().unwrap().pid();
        let threads = worker_threads(pid);
        assert_eq!(
            threads.keys().collect::<Vec<_>>(),
            ["vswitch-w0", "vswitch-w1"],
            "{threads:?}"
        );
        for c in threads.values() {
            assert!(
                c.parse::<usize>().is_ok(),
                "not pinned to one core: {threads:?}"
            );
        }
        if cpus.len() >= 2 {
            assert_ne!(threads["vswitch-w0"], threads["vswitch-w1"], "{threads:?}");
        }
    }

    // The container's interface has two queues, and `show ports` says so.
    let queues = tb
        .container(a)
        .exec(&["ls", "/sys/class/net/eth0/queues"])
        .unwrap();
    let queues = String::from_utf8_lossy(&queues.stdout).to_string();
    for q in ["rx-0", "rx-1", "tx-0", "tx-1"] {
        assert!(queues.contains(q), "eth0 queues: {queues}");
    }
    let ports = step!(tb, tb.hosts[0].show_json(&tb.bins, "ports"));
    assert_eq!(ports[0]["queues"], 2, "{ports}");

    // Basic service with two workers: ping both ways, 20 MB of TCP intact.
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
    tb.transfer_intact(a, b, "10.0.9.3", 5001, 20 << 20, "TCP transfer");

    // Many flows: FLOWS UDP source ports, PER_FLOW numbered datagrams each, interleaved.
    let rx = udp_in(&tb.container(b).name, "10.0.9.3:7000");
    // Room for bursts while this test thread is not scheduled (the kernel caps it at rmem_max).
    socket2::SockRef::from(&rx)
        .set_recv_buffer_size(4 << 20)
        .unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let senders: Vec<UdpSocket> = (0..FLOWS)
        .map(|f| udp_in(&tb.container(a).name, &format!("10.0.9.2:{}", 20000 + f)))
        .collect();
    let receiver = std::thread::spawn(move || {
        let mut seen: BTreeMap<u16, Vec<u32>> = BTreeMap::new();
        let mut buf = [0u8; 64];
        while let Ok((n, from)) = rx.recv_from(&mut buf) {
            if n >= 4 {
                let seq = u32::from_be_bytes(buf[..4].try_into().unwrap());
                seen.entry(from.port()).or_default().push(seq);
            }
        }
        seen
    });
    for seq in 0..PER_FLOW {
        for s in &senders {
            let mut msg = [0u8; 32];
            msg[..4].copy_from_slice(&seq.to_be_bytes());
            s.send_to(&msg, "10.0.9.3:7000").unwrap();
        }
        // Paced, so no socket buffer overflows: what is measured is order, not capacity.
        std::thread::sleep(Duration::from_micros(500));
    }
    let seen = receiver.join().unwrap();

    assert_eq!(
        seen.len(),
        FLOWS as usize,
        "flows that arrived: {:?}",
        seen.keys()
    );
    let mut lost = 0;
    for (port, seqs) in &seen {
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "flow from port {port} arrived out of order: {seqs:?}"
        );
        lost += PER_FLOW as usize - seqs.len();
    }
    // UDP may lose a little on a loaded machine; order is what this test is about.
    assert!(
        lost * 20 <= (FLOWS as usize * PER_FLOW as usize),
        "{lost} datagrams lost of {}",
        FLOWS as u32 * PER_FLOW
    );

    // The flows spread: on the sending host both workers read frames from the container's
    // queues; on the receiving host both read datagrams from the underlay.
    let load = |h: usize, key: &str| -> Vec<u64> {
        let stats: Value = tb.hosts[h].show_json(&tb.bins, "stats").unwrap();
        stats["workers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w[key].as_u64().unwrap())
            .collect()
    };
    let sender_frames = load(0, "port_frames");
    let receiver_dgrams = load(1, "underlay_datagrams");
    eprintln!(
        "lost {lost}; sending host frames per worker {sender_frames:?}; receiving host datagrams per worker {receiver_dgrams:?}"
    );
    assert_eq!(sender_frames.len(), 2);
    assert!(
        sender_frames.iter().all(|&n| n > 100),
        "sending host, frames per worker: {sender_frames:?}"
    );
    assert!(
        receiver_dgrams.iter().all(|&n| n > 100),
        "receiving host, datagrams per worker: {receiver_dgrams:?}"
    );
    // The workers kept their tables in step, and nothing was lost doing it.
    let stats: Value = tb.hosts[1].show_json(&tb.bins, "stats").unwrap();
    let w = stats["workers"].as_array().unwrap();
    let total = |k: &str| w.iter().map(|x| x[k].as_u64().unwrap()).sum::<u64>();
    assert!(total("updates_applied") > 0, "{}", stats["workers"]);
    assert_eq!(total("updates_lost"), 0, "{}", stats["workers"]);
    assert!(
        w.iter().all(|x| x["cpu"].is_u64()),
        "workers report their core: {}",
        stats["workers"]
    );
}
