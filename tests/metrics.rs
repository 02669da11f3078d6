//! Prometheus metrics (`[metrics] listen`, issue 12) checked with Prometheus' own tools: a
//! real Prometheus server (Debian's `prometheus`) started by the test in a host namespace
//! scrapes the daemons every second, and its query API must show what `vswitchctl show
//! stats` shows after real traffic; `promtool check metrics` must accept a scrape; with a
//! cluster (real etcd) the store's state must follow etcd going away. Root required; all is
//! removed when a test ends, pass or fail.

mod common;

use common::bins;
use common::testbed::{ping, run, wait_until, Process, Testbed, BLUE, RED};
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::Duration;

fn prefix(tag: &str) -> String {
    format!("vsm{}-{tag}", std::process::id())
}

const METRICS_PORT: u16 = 9474;
const PROMETHEUS: &str = "192.0.2.1:9090";

fn listen_on(ip: &str) -> String {
    format!("[metrics]\nlisten = \"{ip}:{METRICS_PORT}\"\n")
}

/// `curl` in host `h`'s namespace: (HTTP status, body).
fn http(tb: &Testbed, h: usize, args: &[&str]) -> (u16, String) {
    let mut full = vec!["curl", "-s", "-m", "5", "-w", "\n%{http_code}"];
    full.extend_from_slice(args);
    let o = tb.hosts[h].ns.try_exec(&full);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let (body, code) = out.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn scrape(tb: &Testbed, h: usize) -> String {
    let url = format!("http://{}:{METRICS_PORT}/metrics", tb.hosts[h].underlay_ip);
    let (code, body) = http(tb, h, &[&url]);
    assert_eq!(code, 200, "GET {url}: {body}\n{}", tb.logs());
    body
}

/// The value of the sample `series` (name and labels exactly as exposed) in a scrape.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Starts Prometheus in host 0's namespace, scraping every host's metrics every second, its
/// data in the test's directory. A testbed service: stopped by pid before the namespaces go.
fn start_prometheus(tb: &mut Testbed) {
    let targets: Vec<String> = tb
        .hosts
        .iter()
        .map(|h| format!("\"{}:{METRICS_PORT}\"", h.underlay_ip))
        .collect();
    let config = tb.dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: vswitch\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        ),
    )
    .unwrap();
    let data = tb.dir.join("prometheus-data");
    let log = tb.dir.join("prometheus.log");
    let child = tb.hosts[0]
        .ns
        .spawn(
            &[
                "prometheus",
                &format!("--config.file={}", config.display()),
                &format!("--storage.tsdb.path={}", data.display()),
                &format!("--web.listen-address={PROMETHEUS}"),
                "--log.level=warn",
            ],
            &log,
        )
        .expect("prometheus starts (scripts/install-deps.sh installs it)");
    tb.services.push(Some(Process {
        child,
        what: "prometheus".into(),
    }));
    let ready = || http(tb, 0, &[&format!("http://{PROMETHEUS}/-/ready")]).0 == 200;
    assert!(
        wait_until(Duration::from_secs(30), ready),
        "prometheus did not become ready:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}

/// Prometheus' answer to an instant query: each series' labels and value.
fn query(tb: &Testbed, q: &str) -> Vec<(Value, f64)> {
    let url = format!("http://{PROMETHEUS}/api/v1/query");
    let arg = format!("query={q}");
    let (code, body) = http(tb, 0, &["-G", &url, "--data-urlencode", &arg]);
    assert_eq!(code, 200, "query {q}: {body}");
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(v["status"], "success", "{body}");
    v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let val = r["value"][1].as_str().unwrap().parse().unwrap();
            (r["metric"].clone(), val)
        })
        .collect()
}

/// One value of a query that selects one series (None while Prometheus has none).
fn query_one(tb: &Testbed, q: &str) -> Option<f64> {
    let r = query(tb, q);
    assert!(r.len() <= 1, "{q} selects several series: {r:?}");
    r.first().map(|(_, v)| *v)
}

fn network_stat(stats: &Value, network: &str, field: &str) -> f64 {
    let n = stats["networks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == network)
        .unwrap_or_else(|| panic!("no network {network} in show stats: {stats}"));
    n["counters"][field].as_f64().unwrap()
}

/// Waits until Prometheus' value of `q` is at least what `show` said before (`before`), then
/// checks it is at most what `show` says after (`after`): the scrape it took lies between.
fn agrees(tb: &Testbed, q: &str, before: f64, after: impl Fn() -> f64) -> f64 {
    let mut seen = None;
    let caught_up = wait_until(Duration::from_secs(20), || {
        seen = query_one(tb, q);
        seen.is_some_and(|v| v >= before)
    });
    assert!(
        caught_up,
        "Prometheus: {q} = {seen:?}, show stats said {before}\n{}",
        tb.logs()
    );
    let v = seen.unwrap();
    let a = after();
    assert!(
        v <= a,
        "Prometheus: {q} = {v}, above what show stats says now ({a})"
    );
    v
}

#[test]
fn prometheus_scrapes_what_show_stats_shows() {
    let mut tb = Testbed::new(&prefix("prom"), bins()).unwrap();
    step!(tb, tb.add_hosts(2));
    for i in 0..2 {
        let ip = tb.hosts[i].underlay_ip.clone();
        step!(tb, tb.write_config(i, &[BLUE, RED], &listen_on(&ip)));
        step!(tb, tb.start_daemon(i));
    }
    let c1 = step!(tb, tb.add_container(0, "c1", "blue", "10.0.9.2/24"));
    step!(tb, tb.add_container(1, "c2", "blue", "10.0.9.3/24"));
    step!(tb, tb.add_container(0, "r1", "red", "10.0.9.2/24"));
    start_prometheus(&mut tb);
    let both_up = || query(&tb, "up{job=\"vswitch\"} == 1").len() == 2;
    assert!(
        wait_until(Duration::from_secs(20), both_up),
        "Prometheus does not see both daemons up: {:?}\n{}",
        query(&tb, "up"),
        tb.logs()
    );

    let (tx, rx) = ping(tb.container(c1), "10.0.9.3", 10, &[]);
    assert_eq!((tx, rx), (10, 10), "{}", tb.logs());

    let h0 = "instance=\"192.0.2.1:9474\"";
    let stats = || tb.hosts[0].show_json(&tb.bins, "stats").unwrap();
    let s = stats();
    // Frames from c1 and from the peer, forwarded on blue: at least the 20 pings.
    let blue_rx = network_stat(&s, "blue", "rx_packets");
    assert!(blue_rx >= 20.0, "show stats: {s}");
    let q = format!("vswitch_network_receive_packets_total{{{h0},network=\"blue\",vni=\"42\"}}");
    let v = agrees(&tb, &q, blue_rx, || {
        network_stat(&stats(), "blue", "rx_packets")
    });
    eprintln!("blue: show stats {blue_rx}, Prometheus {v}");
    let blue_tx = network_stat(&s, "blue", "tx_packets");
    let q = format!("vswitch_network_transmit_bytes_total{{{h0},network=\"blue\"}}");
    agrees(&tb, &q, network_stat(&s, "blue", "tx_bytes"), || {
        network_stat(&stats(), "blue", "tx_bytes")
    });
    assert!(blue_tx >= 20.0, "{s}");
    // The other network, on the same host, is its own series with its own (smaller) count.
    let q = format!("vswitch_network_receive_packets_total{{{h0},network=\"red\"}}");
    let red = agrees(&tb, &q, network_stat(&s, "red", "rx_packets"), || {
        network_stat(&stats(), "red", "rx_packets")
    });
    assert!(red < blue_rx, "red {red} blue {blue_rx}");

    // The port and the peer, by their labels.
    let port = s["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["network"] == "blue")
        .unwrap()
        .clone();
    let q = format!(
        "vswitch_port_receive_packets_total{{{h0},port={},port_id=\"{}\",network=\"blue\"}}",
        port["name"], port["id"]
    );
    let port_rx = port["counters"]["rx_packets"].as_f64().unwrap();
    assert!(port_rx >= 10.0, "{port}");
    agrees(&tb, &q, port_rx, || {
        let s = stats();
        let p = s["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == port["id"])
            .cloned();
        p.unwrap()["counters"]["rx_packets"].as_f64().unwrap()
    });
    let peer_rx = || {
        let p = tb.hosts[0].show_json(&tb.bins, "peers").unwrap();
        p[0]["counters"]["rx_packets"].as_f64().unwrap()
    };
    let q =
        format!("vswitch_peer_receive_packets_total{{{h0},peer=\"node-b\",peer_ip=\"192.0.2.2\"}}");
    assert!(agrees(&tb, &q, peer_rx(), peer_rx) >= 10.0);

    // Table sizes as `show networks` has them.
    let nets = tb.hosts[0].show_json(&tb.bins, "networks").unwrap();
    let blue = nets
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "blue")
        .unwrap();
    for (metric, field) in [
        ("vswitch_network_fdb_entries", "fdb_entries"),
        ("vswitch_network_neighbour_entries", "neigh_entries"),
        ("vswitch_network_ports", "ports"),
    ] {
        let want = blue[field].as_f64().unwrap();
        let q = format!("{metric}{{{h0},network=\"blue\"}}");
        let ok = wait_until(Duration::from_secs(10), || query_one(&tb, &q) == Some(want));
        assert!(ok, "{q} = {:?}, show networks: {want}", query_one(&tb, &q));
    }
    assert_eq!(query_one(&tb, &format!("vswitch_ports{{{h0}}}")), Some(2.0));
    assert_eq!(query_one(&tb, &format!("vswitch_peers{{{h0}}}")), Some(1.0));

    // The latency histogram: every frame a worker handled is a sample; quantiles are
    // computable from the buckets.
    let samples: f64 = s["latency"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["samples"].as_f64().unwrap())
        .sum();
    let q = format!("sum(vswitch_frame_latency_seconds_count{{{h0}}})");
    agrees(&tb, &q, samples, || {
        stats()["latency"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["samples"].as_f64().unwrap())
            .sum()
    });
    let q = format!(
        "histogram_quantile(0.5, sum by (le) (vswitch_frame_latency_seconds_bucket{{{h0}}}))"
    );
    let p50 = query_one(&tb, &q).expect("a median");
    assert!(p50 > 0.0 && p50 < 1.0, "median latency {p50} s");

    // Worker and drop-reason labels exist as `show stats` lists them.
    let workers = query(&tb, &format!("vswitch_worker_port_frames_total{{{h0}}}"));
    assert_eq!(
        workers.len(),
        s["workers"].as_array().unwrap().len(),
        "{workers:?}"
    );
    assert!(
        workers.iter().all(|(m, _)| m["worker"].is_string()),
        "{workers:?}"
    );
}

#[test]
fn promtool_accepts_a_scrape_and_http_answers_sensibly() {
    let mut tb = Testbed::new(&prefix("tool"), bins()).unwrap();
    step!(tb, tb.add_hosts(2));
    for i in 0..2 {
        let ip = tb.hosts[i].underlay_ip.clone();
        step!(tb, tb.write_config(i, &[BLUE], &listen_on(&ip)));
        step!(tb, tb.start_daemon(i));
    }
    let c1 = step!(tb, tb.add_container(0, "c1", "blue", "10.0.9.2/24"));
    step!(tb, tb.add_container(1, "c2", "blue", "10.0.9.3/24"));
    assert_eq!(
        ping(tb.container(c1), "10.0.9.3", 3, &[]).1,
        3,
        "{}",
        tb.logs()
    );

    let text = scrape(&tb, 0);
    let file = tb.dir.join("scrape.txt");
    std::fs::write(&file, &text).unwrap();
    if std::env::var_os("VSWITCH_KEEP_SCRAPE").is_some() {
        std::fs::write("/tmp/vswitch-scrape.txt", &text).unwrap();
    }
    let check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&file).unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("promtool runs (scripts/install-deps.sh installs prometheus)");
    assert!(
        check.status.success(),
        "promtool check metrics refused the scrape:\n{}{}\n--- scrape ---\n{text}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    // What the daemon reported is what it shows: the ping's frames on blue.
    let v = sample(
        &text,
        "vswitch_network_receive_packets_total{network=\"blue\",vni=\"42\"}",
    );
    assert!(v.is_some_and(|v| v >= 6.0), "{text}");
    assert!(
        text.contains("# TYPE vswitch_frame_latency_seconds histogram"),
        "{text}"
    );
    assert!(text.contains("vswitch_build_info{version="), "{text}");

    // OpenMetrics for who asks for it (Prometheus does), ending as the format requires.
    let url = "http://192.0.2.1:9474/metrics";
    let (code, om) = http(
        &tb,
        0,
        &[
            "-H",
            "Accept: application/openmetrics-text;version=1.0.0",
            url,
        ],
    );
    assert_eq!(code, 200);
    if std::env::var_os("VSWITCH_KEEP_SCRAPE").is_some() {
        std::fs::write("/tmp/vswitch-scrape-om.txt", &om).unwrap();
    }
    assert!(om.trim_end().ends_with("# EOF"), "{om}");
    // Elsewhere: a pointer to /metrics, and only GET.
    let (code, body) = http(&tb, 0, &["http://192.0.2.1:9474/nothing"]);
    assert_eq!(code, 404);
    assert!(body.contains("/metrics"), "{body}");
    assert_eq!(http(&tb, 0, &["-X", "POST", url]).0, 405);
    assert_eq!(http(&tb, 0, &["http://192.0.2.1:9474/"]).0, 200);
}

#[test]
fn a_listen_address_that_cannot_be_bound_stops_the_start() {
    let mut tb = Testbed::new(&prefix("bind"), bins()).unwrap();
    step!(tb, tb.add_hosts(2));
    // Host 1 asked to listen on host 0's address: not an address of its own.
    step!(tb, tb.write_config(1, &[BLUE], &listen_on("192.0.2.1")));
    let err = tb
        .start_daemon(1)
        .expect_err("vswitchd must refuse to start");
    assert!(
        err.contains("cannot listen for metrics on 192.0.2.1:9474 ([metrics] listen)"),
        "{err}"
    );
    assert!(
        !tb.hosts[1].socket.exists(),
        "the control socket was left behind"
    );
}

#[test]
fn a_bad_listen_value_is_refused_with_what_to_write() {
    let dir = std::env::temp_dir().join(format!("vswitch-metrics-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("node.toml");
    let check = |listen: &str| {
        std::fs::write(
            &file,
            format!(
                "[node]\nname = \"a\"\nunderlay_ip = \"192.0.2.1\"\n\n\
                 [[network]]\nname = \"blue\"\nvni = 42\nsubnet = \"10.0.9.0/24\"\n\n\
                 [metrics]\nlisten = \"{listen}\"\n"
            ),
        )
        .unwrap();
        let o = run(&[
            env!("CARGO_BIN_EXE_vswitchd"),
            "--config",
            file.to_str().unwrap(),
            "--check",
        ]);
        o.map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    };
    for (bad, why) in [
        ("localhost:9474", "is not an IP address and port"),
        ("0.0.0.0", "has no port"),
        (":9474", "has no address"),
        ("127.0.0.1:0", "port 0"),
        ("127.0.0.1:99999", "is not an IP address and port"),
    ] {
        let err = check(bad).expect_err(bad);
        assert!(err.contains("metrics.listen"), "{bad}: {err}");
        assert!(err.contains(why), "{bad}: {err}");
        assert!(err.contains("127.0.0.1:9474"), "{bad}: no example in {err}");
    }
    let ok = check("127.0.0.1:9474").expect("a good address");
    assert!(
        ok.contains("metrics: http://127.0.0.1:9474/metrics"),
        "{ok}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cluster_store_state_follows_etcd() {
    let extra = format!("\n{}", listen_on("0.0.0.0"));
    let (mut tb, _urls) = Testbed::cluster(&prefix("etcd"), bins(), 2, 1, &extra).unwrap();
    let reachable = |t: &str| sample(t, "vswitch_cluster_store_reachable");
    let up = |t: &str| sample(t, "vswitch_cluster_nodes{state=\"up\"}");
    let ok = wait_until(Duration::from_secs(10), || {
        let t = scrape(&tb, 0);
        reachable(&t) == Some(1.0) && up(&t) == Some(2.0)
    });
    assert!(ok, "{}", scrape(&tb, 0));
    let t = scrape(&tb, 0);
    assert!(
        t.contains("vswitch_peer_state{peer=\"node-b\",peer_ip=\"192.0.2.2\",state=\"up\"} 1"),
        "{t}"
    );
    tb.stop_etcd_member(0);
    let gone = wait_until(Duration::from_secs(30), || {
        reachable(&scrape(&tb, 0)) == Some(0.0)
    });
    assert!(gone, "{}", scrape(&tb, 0));
}
