//! Busy-polling on a busy host (root required; see TESTING.md). After traffic a worker polls
//! for a while instead of sleeping, yielding its core between polls; when a container keeps
//! every core busy, such a yield lasts a scheduler tick, and the worker must notice and sleep
//! instead (src/dataplane/busy_poll.rs, mode `spin`); by default (mode `auto`) it does not
//! spin at all while no core is idle. Its own test binary: the CPU-bound loops it starts
//! would slow whatever else ran beside it (and its tests take turns, for the same reason).

mod common;

use common::bins;
use common::testbed::{ping, Testbed, BLUE};
use std::process::{Child, Command, Stdio};

/// CPU-bound shell loops in a namespace, one per CPU, stopped (by pid) when dropped, also when
/// the test fails.
struct BusyLoops(Vec<Child>);

impl BusyLoops {
    fn start(netns: &str, n: usize) -> BusyLoops {
        let loops = (0..n)
            .map(|_| {
                Command::new("ip")
                    .args(["netns", "exec", netns, "sh", "-c", "while :; do :; done"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("ip netns exec sh")
            })
            .collect();
        BusyLoops(loops)
    }
}

impl Drop for BusyLoops {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A worker counter summed over the workers of host `h`.
fn worker_sum(tb: &Testbed, h: usize, key: &str) -> u64 {
    let stats = tb.hosts[h].show_json(&tb.bins, "stats").unwrap();
    let workers = stats["workers"].as_array().unwrap();
    workers
        .iter()
        .map(|w| w[key].as_u64().unwrap())
        .sum::<u64>()
}

/// (busy-poll windows, windows given up), summed over the workers of host `h`.
fn spins(tb: &Testbed, h: usize) -> (u64, u64) {
    (
        worker_sum(tb, h, "busy_poll_windows"),
        worker_sum(tb, h, "busy_poll_given_up"),
    )
}

/// One test at a time: each one's CPU-bound loops would disturb the other.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn a_worker_stops_spinning_when_containers_keep_every_core_busy() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let prefix = format!("vsw{}-bp", std::process::id());
    let mut tb = Testbed::two_hosts_with(
        &prefix,
        bins(),
        &[BLUE],
        &[("VSWITCH_BUSY_POLL", "spin")],
        "workers = 1",
    )
    .unwrap();
    let a = step!(tb, tb.add_container(0, "a", "blue", "10.0.9.2/24"));
    let b = step!(tb, tb.add_container(1, "b", "blue", "10.0.9.3/24"));

    // Idle host: every ping opens a busy-poll window on the host that sends it.
    assert_eq!(
        ping(tb.container(a), "10.0.9.3", 20, &["-i", "0.01"]),
        (20, 20),
        "{}",
        tb.logs()
    );
    let (windows, given_up_idle) = spins(&tb, 0);
    assert!(windows > 0, "busy-poll windows after 20 pings: {windows}");

    // Container b keeps every core busy: the workers' yields now last until a tick, each
    // worker gives its window up, and the pings still all come back.
    let given_up_before: u64 = (0..2).map(|h| spins(&tb, h).1).sum();
    let cpus = vswitch::io::cpu::allowed_cpus().len().max(1);
    let busy = BusyLoops::start(&tb.container(b).name, cpus);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let replies = ping(tb.container(a), "10.0.9.3", 100, &["-i", "0.01"]);
    drop(busy);
    assert_eq!(replies, (100, 100), "{}", tb.logs());
    let given_up_after: u64 = (0..2).map(|h| spins(&tb, h).1).sum();
    eprintln!(
        "host 1: {windows} windows, {given_up_idle} given up idle; both hosts: given up {given_up_before} before the busy loops, {given_up_after} after"
    );
    assert!(
        given_up_after > given_up_before,
        "no worker gave up spinning while {cpus} CPU-bound loops ran (GIVEN_UP {given_up_before} -> {given_up_after})"
    );
}

/// The default mode: with containers keeping every core busy, the workers look at the machine,
/// find no core idle and do not spin (GATED grows); the pings all come back.
#[test]
fn by_default_workers_do_not_spin_while_no_core_is_idle() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let prefix = format!("vsw{}-bq", std::process::id());
    let mut tb = Testbed::two_hosts(&prefix, bins(), &[BLUE]).unwrap();
    let a = step!(tb, tb.add_container(0, "a", "blue", "10.0.9.2/24"));
    let b = step!(tb, tb.add_container(1, "b", "blue", "10.0.9.3/24"));
    assert_eq!(
        ping(tb.container(a), "10.0.9.3", 5, &["-i", "0.05"]),
        (5, 5),
        "{}",
        tb.logs()
    );
    let gated =
        |tb: &Testbed| -> u64 { (0..2).map(|h| worker_sum(tb, h, "busy_poll_gated")).sum() };
    let before = gated(&tb);
    let cpus = vswitch::io::cpu::allowed_cpus().len().max(1);
    let busy = BusyLoops::start(&tb.container(b).name, cpus);
    std::thread::sleep(std::time::Duration::from_millis(300));
    // 1.5 s of pings: several looks at the machine (every 200 ms with traffic) on each host.
    let replies = ping(tb.container(a), "10.0.9.3", 150, &["-i", "0.01"]);
    drop(busy);
    assert_eq!(replies, (150, 150), "{}", tb.logs());
    let after = gated(&tb);
    eprintln!("both hosts: GATED {before} -> {after}");
    assert!(
        after >= before + 2,
        "the workers did not find the cores taken while {cpus} CPU-bound loops ran (GATED {before} -> {after})"
    );
}
