//! Benchmark (not a test): how one real vswitchd copes with a large cluster in etcd.
//!
//! Run as root:  `cargo run --release --example cluster-scale [-- HOSTS ENDPOINTS_PER_HOST]`
//! (default 500 × 20 = 10,000 endpoints).
//!
//! In namespaces it makes (`csb<pid>-*`, removed at the end): one etcd, one host running
//! vswitchd with a `[cluster]` table. Before the daemon starts, HOSTS simulated nodes and their
//! endpoints are written straight into etcd under the daemon's key layout. It reports:
//! - start: from spawning vswitchd to every endpoint installed (`show networks` counts them),
//!   and the part inside the daemon (its "registered" log line to its "installed" line);
//! - running: 200 endpoints put one by one, 20 ms apart; for each, the delay from the put's
//!   return to the daemon's log line applying the revision (p50, p99, max);
//! - the daemon's RSS and the CPU time it used (from /proc).

#[path = "../tests/common/cluster.rs"]
mod cluster;
#[path = "support/demo.rs"]
mod demo;
#[path = "../tests/common/pki.rs"]
mod pki;
#[path = "../tests/common/testbed.rs"]
mod testbed;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant, SystemTime};
use testbed::{wait_until, Result, Testbed};
use vswitch::cluster::etcd::{Etcd, Op, Txn};
use vswitch::cluster::records::{EndpointRecord, Keys, NetworkRecord, NodeRecord};

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let (hosts, per) = (*args.first().unwrap_or(&500), *args.get(1).unwrap_or(&20));
    demo::catch_interrupts();
    let tools = ["ip", "ethtool", "etcd", "etcdctl"];
    let bins = demo::preflight("cluster-scale", &tools, &tools).and_then(|_| demo::find_binaries());
    let bins = bins.unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(1)
    });
    let prefix = format!("csb{}", std::process::id());
    let mut tb = Testbed::new(&prefix, bins).unwrap();
    let r = bench(&mut tb, hosts, per);
    if let Err(e) = &r {
        eprintln!("error: {e}\n{}", tb.logs());
    }
    drop(tb);
    let left = demo::namespaces_named(&prefix);
    if !left.is_empty() {
        eprintln!("error: namespaces left behind: {left:?}");
    }
    std::process::exit(if r.is_ok() && left.is_empty() { 0 } else { 1 });
}

/// Work done with an etcd client inside the underlay namespace.
type EtcdJob = Box<dyn FnOnce(&Etcd) -> Result<()> + Send>;

fn ep_ip(k: usize) -> Ipv4Addr {
    // 10.0.0.0/16: 250 per /24 keeps clear of .0 and .255.
    Ipv4Addr::new(10, 0, (k / 250) as u8, (k % 250 + 1) as u8)
}

fn endpoint(k: usize, host: &str) -> EndpointRecord {
    let b = (k as u32).to_be_bytes();
    EndpointRecord {
        network: "big".into(),
        name: format!("sim-{k}"),
        ip: ep_ip(k),
        mac: format!("02:5e:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3]),
        host: host.into(),
    }
}

fn unix_micros(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// `2026-12-03T07:33:25.944336Z` → microseconds since the epoch (UTC).
fn log_time(line: &str) -> Option<i64> {
    let ts = line.split_whitespace().next()?;
    let (date, time) = ts.strip_suffix('Z')?.split_once('T')?;
    let d: Vec<i64> = date
        .split('-')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let (hms, frac) = time.split_once('.')?;
    let t: Vec<i64> = hms
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y, m) = if d[1] <= 2 {
        (d[0] - 1, d[1] + 9)
    } else {
        (d[0], d[1] - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d[2] - 1;
    let days = era * 146097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719468;
    let micros: i64 = format!("{frac:0<6}")[..6].parse().ok()?;
    Some(((days * 86400 + t[0] * 3600 + t[1] * 60 + t[2]) * 1_000_000) + micros)
}

fn proc_stats(pid: i32) -> (u64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kb = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat(5); after the ')' field 3 (state) is first.
    let field = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    let ticks = field(11) + field(12);
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (rss_kb, ticks as f64 / hz)
}

fn installed(tb: &Testbed) -> u64 {
    tb.hosts[0]
        .show_json(&tb.bins, "networks")
        .ok()
        .and_then(|v| {
            v.as_array()?
                .iter()
                .find(|n| n["name"] == "big")
                .and_then(|n| n["fdb_entries"].as_u64())
        })
        .unwrap_or(0)
}

fn bench(tb: &mut Testbed, hosts: usize, per: usize) -> Result<()> {
    tb.add_hosts(1)?;
    let urls = tb.start_etcd(1)?;
    let keys = Keys::new("/vswitch");
    let total = hosts * per;
    let ul =
        vswitch::io::netns::open_netns(&format!("{}-ul", tb.prefix)).map_err(|e| e.to_string())?;
    let url = urls[0].clone();
    let in_ul = |f: EtcdJob| -> Result<()> {
        let url = url.clone();
        vswitch::io::netns::run_in_netns(&ul, move || {
            let etcd =
                Etcd::new(&[url], None, Duration::from_secs(5)).map_err(|e| e.to_string())?;
            f(&etcd)
        })
        .map_err(|e| e.to_string())?
    };

    // The cluster as etcd holds it: one network, HOSTS nodes, PER endpoints each.
    let t_load = Instant::now();
    let keys2 = keys.clone();
    in_ul(Box::new(move |etcd| {
        let net = NetworkRecord {
            name: "big".into(),
            vni: 4096,
            subnet: "10.0.0.0/16".parse().unwrap(),
            mtu: None,
            encrypted: false,
        };
        let mut ops = vec![
            Op::Put {
                key: keys2.network("big").into_bytes(),
                value: serde_json::to_vec(&net).unwrap(),
                lease: 0,
            },
            Op::Put {
                key: keys2.vni(4096).into_bytes(),
                value: b"big".to_vec(),
                lease: 0,
            },
        ];
        for h in 0..hosts {
            let name = format!("sim{h}");
            let n = NodeRecord {
                name: name.clone(),
                underlay_ip: Ipv4Addr::new(198, 18, (h / 250) as u8, (h % 250 + 1) as u8),
                vxlan_port: 4789,
                version: "sim".into(),
                boot_id: "sim".into(),
                started: 0,
                lease: 0,
                address_lease: 0,
            };
            ops.push(Op::Put {
                key: keys2.node(&name).into_bytes(),
                value: serde_json::to_vec(&n).unwrap(),
                lease: 0,
            });
            for j in 0..per {
                let e = endpoint(h * per + j, &name);
                ops.push(Op::Put {
                    key: keys2.endpoint("big", e.ip).into_bytes(),
                    value: serde_json::to_vec(&e).unwrap(),
                    lease: 0,
                });
            }
        }
        for chunk in ops.chunks(100) {
            let t = Txn {
                compare: vec![],
                success: chunk.to_vec(),
                failure: vec![],
            };
            etcd.txn(&t).map_err(|e| e.to_string())?;
        }
        Ok(())
    }))?;
    println!(
        "loaded {hosts} nodes and {total} endpoints into etcd in {:.1} s",
        t_load.elapsed().as_secs_f64()
    );

    // Start: spawn to everything installed.
    let name = tb.hosts[0].name.clone();
    tb.write_cluster_config(0, &name, &urls, "")?;
    let t0 = Instant::now();
    tb.start_daemon(0)?;
    if !wait_until(Duration::from_secs(60), || installed(tb) >= total as u64) {
        return Err(format!(
            "only {} of {total} endpoints installed after 60 s",
            installed(tb)
        ));
    }
    let start_s = t0.elapsed().as_secs_f64();
    let log = tb.hosts[0].log_text();
    let at = |needle: &str| log.lines().find(|l| l.contains(needle)).and_then(log_time);
    let inside = match (
        at("cluster: registered"),
        at(&format!("{total} endpoint(s) installed")),
    ) {
        (Some(a), Some(b)) => format!("{:.0} ms", (b - a) as f64 / 1000.0),
        _ => "? (log lines not found)".into(),
    };
    let pid = tb.hosts[0].daemon.as_ref().unwrap().pid();
    let (rss_start, cpu_start) = proc_stats(pid);
    println!(
        "start: {total} endpoints of {hosts} hosts installed {start_s:.2} s after spawning vswitchd \
         (inside the daemon, registration to installed: {inside}); RSS {:.1} MiB, CPU {cpu_start:.2} s",
        rss_start as f64 / 1024.0
    );

    // Running: puts one at a time.
    let n = 200;
    let keys3 = keys.clone();
    let (tx, rx) = std::sync::mpsc::channel::<(i64, i64)>();
    in_ul(Box::new(move |etcd| {
        for k in 0..n {
            let e = endpoint(total + k, "sim0");
            let v = serde_json::to_vec(&e).unwrap();
            let rev = etcd
                .put(keys3.endpoint("big", e.ip).as_bytes(), &v, 0)
                .map_err(|e| e.to_string())?;
            let _ = tx.send((rev, unix_micros(SystemTime::now())));
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }))?;
    let puts: Vec<(i64, i64)> = rx.try_iter().collect();
    if !wait_until(Duration::from_secs(10), || {
        installed(tb) >= (total + n) as u64
    }) {
        return Err(format!(
            "only {} installed after the running puts",
            installed(tb)
        ));
    }
    let log = tb.hosts[0].log_text();
    let applied: Vec<(i64, i64)> = log
        .lines()
        .filter(|l| l.contains("network big: ") && l.contains("installed"))
        .filter_map(|l| {
            let rev = l.rsplit_once("revision=")?.1.trim().parse().ok()?;
            Some((rev, log_time(l)?))
        })
        .collect();
    let mut delays: Vec<f64> = puts
        .iter()
        .filter_map(|(rev, t)| {
            let (_, at) = applied.iter().find(|(r, _)| r >= rev)?;
            Some((at - t) as f64 / 1000.0)
        })
        .collect();
    delays.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if delays.len() < n {
        return Err(format!(
            "only {} of {n} puts found applied in the log",
            delays.len()
        ));
    }
    let q = |p: f64| delays[((delays.len() - 1) as f64 * p).round() as usize];
    let (rss, cpu) = proc_stats(pid);
    println!(
        "running: {n} endpoint puts, put to installed: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        q(0.5),
        q(0.99),
        delays[delays.len() - 1]
    );
    println!(
        "daemon: RSS {:.1} MiB, CPU {:.2} s in total ({:.2} s for the {n} puts)",
        rss as f64 / 1024.0,
        cpu,
        cpu - cpu_start
    );
    Ok(())
}
