//! What `GET /metrics` shows: one scrape's `Snapshot` of the API's own views (`show stats`,
//! `show networks`, `show peers`, `cluster-status`) written as Prometheus metrics by the
//! Prometheus org's client library (`prometheus-client`), in the Prometheus text format or
//! OpenMetrics.
//!
//! Names follow Prometheus' conventions: `vswitch_` first, base units in the name (`_bytes`,
//! `_seconds`), counters end in `_total` (the library adds it). What `show stats` keys by name
//! is a label here: `network` (and `vni`), `port` (and `port_id`), `peer` (and `peer_ip`),
//! `worker`, drop `reason`, send `error`. A drop reason appears once it has counted a drop,
//! as in `show stats`. Counter families (crate::switch::counters) are written field by field
//! from `named()`, so a counter added to a family appears here without a line of this file.
//!
//! Pure: no I/O, nothing shared; the metrics thread calls it once per scrape.

use crate::control::api::{self, ClusterStatusInfo, NetworkInfo, PeerInfo};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::fmt;

/// Everything one scrape shows, as the control API answered it.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// `show stats`: traffic, drops, events, DNS, offloads, workers, latency.
    pub stats: api::Stats,
    /// `show networks`: table sizes per network.
    pub networks: Vec<NetworkInfo>,
    /// `show peers`: per-peer traffic; with a cluster, each peer's state.
    pub peers: Vec<PeerInfo>,
    /// `cluster-status`, with `[cluster]` only.
    pub cluster: Option<ClusterStatusInfo>,
    /// Unix time of the scrape, in seconds: turns `show`'s ages into timestamps.
    pub now_unix: u64,
}

/// The wire formats a scraper may ask for (`Accept`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4: what `curl` and `promtool check metrics` read.
    Text,
    /// OpenMetrics 1.0 text: what Prometheus asks for first.
    OpenMetrics,
}

impl Format {
    /// OpenMetrics when the `Accept` header names it, else the Prometheus text format.
    pub fn from_accept(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Text,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// The exposition of `snap` in `format`.
pub fn encode(snap: Snapshot, format: Format) -> Result<String, fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(snap));
    let mut out = String::with_capacity(64 * 1024);
    match format {
        Format::Text => prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)?,
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &registry)?,
    }
    Ok(out)
}

type Labels = Vec<(&'static str, String)>;

/// One metric family at a time into the library's encoder.
struct Out<'a, 'b>(&'a mut DescriptorEncoder<'b>);

impl Out<'_, '_> {
    fn counter(
        &mut self,
        name: &str,
        help: &str,
        series: impl IntoIterator<Item = (Labels, u64)>,
    ) -> fmt::Result {
        let mut m = self
            .0
            .encode_descriptor(name, help, None, MetricType::Counter)?;
        for (labels, v) in series {
            ConstCounter::new(v).encode(m.encode_family(&labels)?)?;
        }
        Ok(())
    }

    fn gauge<V>(
        &mut self,
        name: &str,
        help: &str,
        series: impl IntoIterator<Item = (Labels, V)>,
    ) -> fmt::Result
    where
        ConstGauge<V>: EncodeMetric,
    {
        let mut m = self
            .0
            .encode_descriptor(name, help, None, MetricType::Gauge)?;
        for (labels, v) in series {
            ConstGauge::new(v).encode(m.encode_family(&labels)?)?;
        }
        Ok(())
    }

    /// rx/tx packets and bytes and drops by reason of things keyed by `labels`.
    fn traffic(&mut self, what: &str, of: &str, rows: &[(Labels, &api::Counters)]) -> fmt::Result {
        let each = |f: fn(&api::Counters) -> u64| {
            rows.iter()
                .map(move |(l, c)| (l.clone(), f(c)))
                .collect::<Vec<_>>()
        };
        self.counter(
            &format!("vswitch_{what}_receive_packets"),
            &format!("Frames received from {of}."),
            each(|c| c.rx_packets),
        )?;
        self.counter(
            &format!("vswitch_{what}_receive_bytes"),
            &format!("Bytes of the frames received from {of}."),
            each(|c| c.rx_bytes),
        )?;
        self.counter(
            &format!("vswitch_{what}_transmit_packets"),
            &format!("Frames sent to {of}."),
            each(|c| c.tx_packets),
        )?;
        self.counter(
            &format!("vswitch_{what}_transmit_bytes"),
            &format!("Bytes of the frames sent to {of}."),
            each(|c| c.tx_bytes),
        )?;
        self.counter(
            &format!("vswitch_{what}_drops"),
            &format!(
                "Frames of {of} dropped, by reason (README: reading the counters); a reason \
                 appears with its first drop."
            ),
            rows.iter()
                .flat_map(|(l, c)| by_name(l, "reason", &c.drops)),
        )
    }
}

fn by_name<'m>(
    labels: &'m Labels,
    key: &'static str,
    counts: &'m BTreeMap<String, u64>,
) -> impl Iterator<Item = (Labels, u64)> + 'm {
    counts
        .iter()
        .map(move |(name, n)| (with(labels, key, name.clone()), *n))
}

fn with(labels: &Labels, key: &'static str, value: String) -> Labels {
    let mut l = labels.clone();
    l.push((key, value));
    l
}

/// HELP of a counter-family member: what it counts where known, else its name in words
/// (a counter added to a family later still gets a line).
fn help(name: &str, scope: &str) -> String {
    let what = match name {
        "flooded" => "frames flooded (broadcast, multicast, unknown unicast)",
        "proxy_arp_replies" => "ARP requests answered by the switch itself (proxy-ARP)",
        "fdb_learned" => "MAC addresses learned",
        "fdb_moves" => "learned MAC addresses that moved to another port or host",
        "fdb_full" => "new MAC addresses not learned because the table was full (fdb_max_entries)",
        "port_frames" => "frames read from local ports (a TSO super-frame counts once)",
        "underlay_datagrams" => "datagrams read from the underlay",
        "updates_sent" => "table announcements sent to the other workers",
        "updates_applied" => "table announcements taken from the other workers",
        "updates_lost" => "table announcements dropped because a queue was full",
        "busy_poll_windows" => "busy-poll windows begun after traffic",
        "busy_poll_given_up" => "busy-poll windows given up because another thread wanted the core",
        "busy_poll_gated" => "looks at the machine (every 200 ms with traffic) that found no core idle, so no spinning",
        "wakeups" => "times the worker slept and was woken by work",
        "esp_opened" => "ESP packets this worker opened (the lanes the kernel steers to it)",
        "esp_refused" => "ESP packets this worker refused (any esp_* drop reason)",
        "tso_frames" => "TSO/USO super-frames from containers",
        "tso_segments" => "segments the TSO/USO super-frames were cut into",
        "gso_sends" => "UDP GSO sends to the underlay",
        "gso_datagrams" => "datagrams carried by UDP GSO sends",
        "gso_fallbacks" => "UDP GSO runs the kernel refused (sent one by one)",
        "gro_runs" => "underlay reads that returned a UDP GRO run",
        "coalesced_frames" => "super-frames written to ports after coalescing",
        "coalesced_segments" => "segments carried by coalesced super-frames",
        "partial_checksums" => "inner checksums a peer left partial, completed here",
        "peer_super_frames" => "TCP super-frames from a peer whose path never segmented them",
        "tunnel_frames" => "TCP super-frames from containers handed to the kernel whole (tunnel GSO)",
        "tunnel_refused" => "TCP super-frames the tunnel device refused (segmented instead)",
        "tcp_connections" => "TCP connections opened to the network's DNS address",
        "queries" => "queries for names the switch does not own, taken from the workers",
        "relayed" => "answers from upstream resolvers relayed to containers",
        "truncated" => "relayed answers cut to what the container takes (TC set)",
        "failed" => {
            "queries answered SERVFAIL (no upstream answered in time, or too many in flight)"
        }
        "refused" => "queries the workers could not hand over (the container asks again)",
        "stray" => "datagrams on the forwarder's socket that answer nothing it asked",
        "tcp_queries" => "queries that came over TCP",
        "tcp_upstream" => "queries asked of an upstream again over TCP, its UDP answer truncated",
        other => {
            return format!(
                "{scope}: {} (vswitchctl show stats).",
                other.replace('_', " ")
            )
        }
    };
    format!("{scope}: {what}.")
}

fn none() -> Labels {
    Vec::new()
}

fn secs(us: f64) -> f64 {
    us / 1e6
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let mut out = Out(&mut encoder);
        self.process(&mut out)?;
        self.underlay(&mut out)?;
        self.networks(&mut out)?;
        self.ports(&mut out)?;
        self.peers(&mut out)?;
        self.workers(&mut out)?;
        self.dns_forwarder(&mut out)?;
        self.cluster(&mut out)
    }
}

impl Snapshot {
    fn process(&self, out: &mut Out) -> fmt::Result {
        let mut m = out.0.encode_descriptor(
            "vswitch_build",
            "The vswitchd version running.",
            None,
            MetricType::Info,
        )?;
        m.encode_info(&vec![("version", env!("CARGO_PKG_VERSION"))])?;
        let started = self.now_unix.saturating_sub(self.stats.uptime_secs);
        out.gauge(
            "vswitch_start_time_seconds",
            "When vswitchd started, in seconds since the Unix epoch.",
            [(none(), started as i64)],
        )
    }

    fn underlay(&self, out: &mut Out) -> fmt::Result {
        let u = &self.stats.underlay;
        let c = api::Counters {
            rx_packets: u.rx_packets,
            rx_bytes: u.rx_bytes,
            tx_packets: u.tx_packets,
            tx_bytes: u.tx_bytes,
            drops: u.drops.clone(),
        };
        out.traffic(
            "underlay",
            "the underlay (VXLAN and ESP datagrams; drops before a network is known)",
            &[(none(), &c)],
        )?;
        out.counter(
            "vswitch_underlay_transmit_errors",
            "Sends the kernel refused on the underlay, by error.",
            by_name(&none(), "error", &u.tx_errors),
        )
    }

    fn network_labels(name: &str, vni: u32) -> Labels {
        vec![("network", name.to_string()), ("vni", vni.to_string())]
    }

    fn networks(&self, out: &mut Out) -> fmt::Result {
        let nets = &self.stats.networks;
        let rows: Vec<(Labels, &api::Counters)> = nets
            .iter()
            .map(|n| (Self::network_labels(&n.name, n.vni), &n.counters))
            .collect();
        out.traffic("network", "a network's ports and peers", &rows)?;
        let events = api::NetworkEvents::default();
        for (event, _) in events.named() {
            out.counter(
                &format!("vswitch_network_{event}"),
                &help(event, "Per network"),
                nets.iter().map(|n| {
                    let v = n
                        .events
                        .named()
                        .find(|(k, _)| *k == event)
                        .map_or(0, |(_, v)| v);
                    (Self::network_labels(&n.name, n.vni), v)
                }),
            )?;
        }
        // What became of a query is a label; anything else the family counts (TCP
        // connections...) is a counter of its own.
        const RESULTS: [&str; 4] = ["answered", "nxdomain", "refused", "forwarded"];
        out.counter(
            "vswitch_network_dns_queries",
            "DNS queries to a network's own address, by result: answered, nxdomain, refused \
             (FORMERR/NOTIMP), forwarded (to the host's resolvers).",
            nets.iter().flat_map(|n| {
                let l = Self::network_labels(&n.name, n.vni);
                n.dns
                    .named()
                    .filter(|(r, _)| RESULTS.contains(r))
                    .map(move |(result, v)| (with(&l, "result", result.to_string()), v))
            }),
        )?;
        let others = api::DnsStats::default().named().map(|(k, _)| k);
        for name in others.filter(|k| !RESULTS.contains(k)) {
            out.counter(
                &format!("vswitch_network_dns_{name}"),
                &help(name, "DNS at a network's own address"),
                nets.iter().map(|n| {
                    let v = n
                        .dns
                        .named()
                        .find(|(k, _)| *k == name)
                        .map_or(0, |(_, v)| v);
                    (Self::network_labels(&n.name, n.vni), v)
                }),
            )?;
        }
        let tables = |f: fn(&NetworkInfo) -> u32| {
            self.networks
                .iter()
                .map(move |n| (Self::network_labels(&n.name, n.vni), f(n) as i64))
        };
        out.gauge(
            "vswitch_network_fdb_entries",
            "MAC addresses in a network's forwarding table (attached and learned).",
            tables(|n| n.fdb_entries),
        )?;
        out.gauge(
            "vswitch_network_neighbour_entries",
            "IPv4 addresses in a network's neighbour table (what proxy-ARP answers from).",
            tables(|n| n.neigh_entries),
        )?;
        out.gauge(
            "vswitch_network_ports",
            "Local ports attached to a network.",
            tables(|n| n.ports),
        )?;
        out.gauge(
            "vswitch_network_mtu_bytes",
            "A network's MTU: the containers' interface MTU.",
            tables(|n| n.mtu),
        )?;
        out.gauge(
            "vswitch_networks",
            "Networks this host carries.",
            [(none(), self.networks.len() as i64)],
        )
    }

    fn ports(&self, out: &mut Out) -> fmt::Result {
        let rows: Vec<(Labels, &api::Counters)> = self
            .stats
            .ports
            .iter()
            .map(|p| {
                let l = vec![
                    ("port", p.name.clone()),
                    ("port_id", p.id.to_string()),
                    ("network", p.network.clone()),
                ];
                (l, &p.counters)
            })
            .collect();
        out.traffic("port", "a local port (a container's interface)", &rows)?;
        out.gauge(
            "vswitch_ports",
            "Local ports (containers' interfaces and attached interfaces).",
            [(none(), self.stats.ports.len() as i64)],
        )
    }

    fn peers(&self, out: &mut Out) -> fmt::Result {
        let label =
            |p: &PeerInfo| vec![("peer", p.name.clone()), ("peer_ip", p.underlay_ip.clone())];
        let rows: Vec<(Labels, &api::Counters)> =
            self.peers.iter().map(|p| (label(p), &p.counters)).collect();
        out.traffic("peer", "a peer host over the underlay", &rows)?;
        out.gauge(
            "vswitch_peer_last_seen_timestamp_seconds",
            "When the last valid VXLAN packet came from a peer, in seconds since the Unix \
             epoch (absent: never).",
            self.peers.iter().filter_map(|p| {
                p.last_seen_secs
                    .map(|age| (label(p), self.now_unix.saturating_sub(age) as i64))
            }),
        )?;
        out.gauge(
            "vswitch_peers",
            "Peer hosts this host knows (with a cluster: also those down).",
            [(none(), self.peers.len() as i64)],
        )?;
        if self.cluster.is_none() {
            return Ok(());
        }
        out.gauge(
            "vswitch_peer_state",
            "Cluster: a peer's state, 1 for the one it is in: up (registered in the store), \
             down (its registration expired), static (from node.toml).",
            self.peers.iter().flat_map(|p| {
                let l = label(p);
                let now = p.state.clone().unwrap_or_default();
                ["up", "down", "static"]
                    .into_iter()
                    .map(move |s| (with(&l, "state", s.to_string()), i64::from(now == s)))
            }),
        )?;
        out.gauge(
            "vswitch_peer_keepalive_age_seconds",
            "Cluster: seconds since an up peer last renewed its lease in the store.",
            self.peers
                .iter()
                .filter_map(|p| p.keepalive_age_secs.map(|a| (label(p), a as i64))),
        )
    }

    fn workers(&self, out: &mut Out) -> fmt::Result {
        let s = &self.stats;
        let worker = |w: u32| vec![("worker", w.to_string())];
        for (name, _) in api::WorkerCounters::default().named() {
            out.counter(
                &format!("vswitch_worker_{name}"),
                &help(name, "Per worker thread"),
                s.workers.iter().map(|w| {
                    let v = w
                        .counters
                        .named()
                        .find(|(k, _)| *k == name)
                        .map_or(0, |(_, v)| v);
                    (worker(w.worker), v)
                }),
            )?;
        }
        for (name, v) in s.offload.named() {
            out.counter(
                &format!("vswitch_offload_{name}"),
                &help(name, "All workers' offloads"),
                [(none(), v)],
            )?;
        }
        let mut m = out.0.encode_descriptor(
            "vswitch_frame_latency_seconds",
            "Time a frame spends inside a worker, from its read to its last send.",
            None,
            MetricType::Histogram,
        )?;
        for l in &s.latency {
            let labels = worker(l.worker);
            // The library wants each bucket's own count; the API's are cumulative.
            let mut below = 0;
            let mut buckets: Vec<(f64, u64)> = l
                .buckets
                .iter()
                .map(|b| {
                    let own = b.count.saturating_sub(below);
                    below = b.count;
                    (secs(b.le_us), own)
                })
                .collect();
            // OpenMetrics' encoder writes only the buckets it is given: +Inf is ours to add.
            buckets.push((f64::INFINITY, l.samples.saturating_sub(below)));
            m.encode_family(&labels)?.encode_histogram::<NoLabelSet>(
                secs(l.sum_us),
                l.samples,
                &buckets,
                None,
            )?;
        }
        out.gauge(
            "vswitch_frame_latency_max_seconds",
            "The longest a frame has spent inside a worker since it started.",
            s.latency.iter().map(|l| (worker(l.worker), secs(l.max_us))),
        )
    }

    /// Every count of the forwarder's stats, by its field name: a field added there appears
    /// here too.
    fn dns_forwarder(&self, out: &mut Out) -> fmt::Result {
        let Some(f) = &self.stats.dns else {
            return Ok(());
        };
        let fields = serde_json::to_value(f).unwrap_or_default();
        for (name, v) in fields.as_object().into_iter().flatten() {
            if let Some(v) = v.as_u64() {
                out.counter(
                    &format!("vswitch_dns_forwarder_{name}"),
                    &help(name, "DNS forwarder"),
                    [(none(), v)],
                )?;
            }
        }
        out.gauge(
            "vswitch_dns_forwarder_upstreams",
            "Upstream resolvers the forwarder asks.",
            [(none(), f.upstreams.len() as i64)],
        )
    }

    fn cluster(&self, out: &mut Out) -> fmt::Result {
        let Some(c) = &self.cluster else {
            return Ok(());
        };
        out.gauge(
            "vswitch_cluster_store_reachable",
            "Cluster: 1 when the store (etcd) answers this host, 0 when it does not \
             (forwarding goes on with what is known).",
            [(none(), i64::from(c.reachable))],
        )?;
        out.gauge(
            "vswitch_cluster_store_unreachable_seconds",
            "Cluster: seconds since the store stopped answering (0 while it answers).",
            [(none(), c.unreachable_for_secs.unwrap_or(0) as i64)],
        )?;
        out.gauge(
            "vswitch_cluster_revision",
            "Cluster: the store revision of this host's view.",
            [(none(), c.revision)],
        )?;
        out.gauge(
            "vswitch_cluster_nodes",
            "Cluster: hosts registered in the store (up) and whose registration expired (down).",
            [
                (vec![("state", "up".to_string())], c.nodes_up as i64),
                (vec![("state", "down".to_string())], c.nodes_down as i64),
            ],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::counters::LatencySummary;

    fn snapshot() -> Snapshot {
        let mut latency = LatencySummary {
            worker: 1,
            samples: 4,
            ..Default::default()
        };
        latency.fill_buckets([(3_000, 3), (2_000_000_000, 1)].into_iter());
        let counters = api::Counters {
            rx_packets: 12,
            rx_bytes: 1200,
            drops: [("spoofed_mac".to_string(), 2)].into(),
            ..Default::default()
        };
        Snapshot {
            stats: api::Stats {
                uptime_secs: 10,
                networks: vec![api::NetworkStats {
                    name: "blue".into(),
                    vni: 42,
                    counters: counters.clone(),
                    ..Default::default()
                }],
                latency: vec![latency],
                ..Default::default()
            },
            peers: vec![PeerInfo {
                name: "node-b".into(),
                underlay_ip: "192.0.2.2".into(),
                networks: vec!["blue".into()],
                counters,
                last_seen_secs: Some(3),
                state: Some("down".into()),
                down_for_secs: Some(1),
                keepalive_age_secs: None,
                probe: None,
                esp_probe: None,
            }],
            now_unix: 1_000,
            ..Default::default()
        }
    }

    fn lines(text: &str, prefix: &str) -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn counters_carry_their_labels_and_the_total_suffix() {
        let t = encode(snapshot(), Format::Text).unwrap();
        assert!(
            t.contains("\nvswitch_network_receive_packets_total{network=\"blue\",vni=\"42\"} 12\n"),
            "{t}"
        );
        assert!(t.contains("\nvswitch_network_drops_total{network=\"blue\",vni=\"42\",reason=\"spoofed_mac\"} 2\n"), "{t}");
        assert!(
            t.contains(
                "\nvswitch_peer_receive_bytes_total{peer=\"node-b\",peer_ip=\"192.0.2.2\"} 1200\n"
            ),
            "{t}"
        );
        assert!(t.contains("\nvswitch_peer_last_seen_timestamp_seconds{peer=\"node-b\",peer_ip=\"192.0.2.2\"} 997\n"), "{t}");
        assert!(t.contains("\nvswitch_start_time_seconds 990\n"), "{t}");
        // DNS: results as a label, other counts of the family and the forwarder by name.
        let mut snap = snapshot();
        snap.stats.networks[0].dns.tcp_connections = 5;
        snap.stats.networks[0].dns.nxdomain = 1;
        snap.stats.dns = Some(crate::control::dns::ForwarderStats {
            upstreams: vec!["192.0.2.53:53".into()],
            tcp_queries: 3,
            ..Default::default()
        });
        let d = encode(snap, Format::Text).unwrap();
        for line in [
            "vswitch_network_dns_queries_total{network=\"blue\",vni=\"42\",result=\"nxdomain\"} 1",
            "vswitch_network_dns_tcp_connections_total{network=\"blue\",vni=\"42\"} 5",
            "vswitch_dns_forwarder_tcp_queries_total 3",
            "vswitch_dns_forwarder_queries_total 0",
            "vswitch_dns_forwarder_upstreams 1",
        ] {
            assert!(d.contains(&format!("\n{line}\n")), "{line} not in {d}");
        }
        assert!(!d.contains("result=\"tcp_connections\""), "{d}");
        // Without a cluster, no cluster metrics at all.
        assert!(!t.contains("vswitch_cluster_"), "{t}");
        assert!(!t.contains("vswitch_peer_state"), "{t}");
    }

    #[test]
    fn the_histogram_ends_at_inf_with_its_count_in_both_formats() {
        for format in [Format::Text, Format::OpenMetrics] {
            let t = encode(snapshot(), format).unwrap();
            let buckets = lines(&t, "vswitch_frame_latency_seconds_bucket");
            assert_eq!(buckets.len(), LATENCY_BOUNDS_LEN + 1, "{t}");
            let inf = buckets
                .iter()
                .find(|l| l.contains("le=\"+Inf\""))
                .expect("+Inf");
            assert!(inf.ends_with(" 4"), "{inf}");
            let at_5us = buckets
                .iter()
                .find(|l| l.contains("le=\"5e-06\"") || l.contains("le=\"0.000005\""));
            assert!(at_5us.is_some_and(|l| l.ends_with(" 3")), "{t}");
            assert!(
                t.contains("vswitch_frame_latency_seconds_count{worker=\"1\"} 4"),
                "{t}"
            );
        }
    }

    #[test]
    fn openmetrics_ends_with_eof_and_cluster_state_is_a_state_set() {
        let mut s = snapshot();
        s.cluster = Some(ClusterStatusInfo {
            reachable: false,
            unreachable_for_secs: Some(7),
            nodes_up: 1,
            nodes_down: 1,
            ..Default::default()
        });
        let t = encode(s, Format::OpenMetrics).unwrap();
        assert!(t.ends_with("# EOF\n"), "{t}");
        assert!(t.contains("\nvswitch_cluster_store_reachable 0\n"), "{t}");
        assert!(
            t.contains("\nvswitch_cluster_store_unreachable_seconds 7\n"),
            "{t}"
        );
        let states = lines(&t, "vswitch_peer_state{");
        assert_eq!(states.len(), 3, "{t}");
        assert!(
            states
                .iter()
                .any(|l| l.contains("state=\"down\"") && l.ends_with(" 1")),
            "{t}"
        );
        assert_eq!(
            Format::from_accept(Some(
                "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"
            )),
            Format::OpenMetrics
        );
        assert_eq!(Format::from_accept(Some("*/*")), Format::Text);
        assert_eq!(Format::from_accept(None), Format::Text);
    }

    const LATENCY_BOUNDS_LEN: usize = crate::dataplane::counters::LATENCY_BOUNDS_US.len();
}
