//! Human-readable rendering of control API results, for `vswitchctl show ...` and attach.
//!
//! Pure functions from the `api` types to text: aligned tables with a header line, numbers
//! right-aligned, `-` for an absent value. Scripts should use `--json` instead: this text may
//! change, the JSON only grows.

use super::api::{
    Counters, FdbEntryInfo, NeighEntryInfo, NetworkInfo, NetworkStats, PortInfo, SaInfo, Stats,
    UnderlayStats,
};
use std::collections::BTreeMap;
use std::fmt::Write;

pub mod cluster;
pub mod peers;

pub use peers::render_peers;

#[derive(Clone, Copy, PartialEq)]
enum Align {
    Left,
    Right,
}

/// A text table: columns as wide as their widest cell, two spaces apart.
struct Table {
    headers: Vec<(&'static str, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(headers: &[(&'static str, Align)]) -> Table {
        Table {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.headers.len());
        self.rows.push(cells);
    }

    fn render(&self, indent: &str) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|(h, _)| h.len()).collect();
        for r in &self.rows {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let mut out = String::new();
        let header: Vec<String> = self.headers.iter().map(|(h, _)| h.to_string()).collect();
        for cells in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::from(indent);
            for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                let pad = w.saturating_sub(cell.chars().count());
                if self.headers[i].1 == Align::Right {
                    line.push_str(&" ".repeat(pad));
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    line.push_str(&" ".repeat(pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

use Align::{Left as L, Right as R};

fn or_dash(s: Option<&str>) -> String {
    match s {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => "-".to_string(),
    }
}

pub(crate) fn list_or_dash(v: &[String]) -> String {
    if v.is_empty() {
        "-".to_string()
    } else {
        v.join(",")
    }
}

fn total_drops(c: &Counters) -> u64 {
    c.drops.values().sum()
}

/// `45s`, `3m07s`, `2h05m`, `3d04h`.
pub fn format_age(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s if s < 86400 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        s => format!("{}d{:02}h", s / 86400, (s % 86400) / 3600),
    }
}

pub fn render_networks(nets: &[NetworkInfo]) -> String {
    if nets.is_empty() {
        return "no networks\n".to_string();
    }
    let mut t = Table::new(&[
        ("NAME", L),
        ("VNI", R),
        ("SUBNET", L),
        ("MTU", R),
        ("PEERS", L),
        ("PORTS", R),
        ("FDB", R),
        ("NEIGH", R),
    ]);
    for n in nets {
        t.row(vec![
            n.name.clone(),
            n.vni.to_string(),
            n.subnet.clone(),
            n.mtu.to_string(),
            list_or_dash(&n.peers),
            n.ports.to_string(),
            n.fdb_entries.to_string(),
            n.neigh_entries.to_string(),
        ]);
    }
    t.render("")
}

pub fn render_ports(ports: &[PortInfo]) -> String {
    if ports.is_empty() {
        return "no ports\n".to_string();
    }
    let mut t = Table::new(&[
        ("ID", R),
        ("NAME", L),
        ("KIND", L),
        ("NETWORK", L),
        ("IFNAME", L),
        ("NETNS", L),
        ("MAC", L),
        ("IP", L),
        ("QUEUES", R),
        ("RX_PKTS", R),
        ("TX_PKTS", R),
        ("DROPS", R),
    ]);
    for p in ports {
        t.row(vec![
            p.id.to_string(),
            p.name.clone(),
            p.kind.clone(),
            p.network.clone(),
            p.ifname.clone(),
            or_dash(p.netns.as_deref()),
            or_dash(p.mac.as_deref()),
            or_dash(p.ip.as_deref()),
            p.queues.to_string(),
            p.counters.rx_packets.to_string(),
            p.counters.tx_packets.to_string(),
            total_drops(&p.counters).to_string(),
        ]);
    }
    t.render("")
}

pub fn render_fdb(entries: &[FdbEntryInfo]) -> String {
    if entries.is_empty() {
        return "no FDB entries\n".to_string();
    }
    let mut t = Table::new(&[
        ("NETWORK", L),
        ("VNI", R),
        ("MAC", L),
        ("KIND", L),
        ("LOCATION", L),
        ("AGE", R),
    ]);
    for e in entries {
        t.row(vec![
            e.network.clone(),
            e.vni.to_string(),
            e.mac.clone(),
            e.kind.clone(),
            e.location.clone(),
            format_age(e.age_secs),
        ]);
    }
    t.render("")
}

pub fn render_neigh(entries: &[NeighEntryInfo]) -> String {
    if entries.is_empty() {
        return "no neighbour entries\n".to_string();
    }
    let mut t = Table::new(&[
        ("NETWORK", L),
        ("IP", L),
        ("MAC", L),
        ("SOURCE", L),
        ("AGE", R),
    ]);
    for e in entries {
        t.row(vec![
            e.network.clone(),
            e.ip.clone(),
            e.mac.clone(),
            e.source.clone(),
            format_age(e.age_secs),
        ]);
    }
    t.render("")
}

/// `show sa`: one row per security association. Keys are never printed here.
pub fn render_sa(sas: &[SaInfo]) -> String {
    if sas.is_empty() {
        return "no security associations (no encrypted network, or no traffic yet)\n".to_string();
    }
    let mut t = Table::new(&[
        ("NETWORK", L),
        ("PEER", L),
        ("DIR", L),
        ("SRC", L),
        ("DST", L),
        ("SPI", L),
        ("SEQ", R),
        ("AGE", R),
        ("PACKETS", R),
        ("BYTES", R),
        ("DROPS", R),
    ]);
    for sa in sas {
        t.row(vec![
            sa.network.clone(),
            sa.peer.clone(),
            sa.direction.clone(),
            sa.src.clone(),
            sa.dst.clone(),
            format!("0x{:08x}", sa.spi),
            sa.seq.to_string(),
            format_age(sa.age_secs),
            sa.packets.to_string(),
            sa.bytes.to_string(),
            sa.drops.to_string(),
        ]);
    }
    t.render("")
}

/// Drop reasons as `reason=count` pairs, busiest first; `-` when nothing was dropped.
fn drops_inline(drops: &BTreeMap<String, u64>) -> String {
    let mut v: Vec<(&String, &u64)> = drops.iter().filter(|(_, n)| **n > 0).collect();
    if v.is_empty() {
        return "-".to_string();
    }
    v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    v.iter()
        .map(|(r, n)| format!("{r}={n}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn render_underlay(u: &UnderlayStats, out: &mut String) {
    let mut t = Table::new(&[
        ("", L),
        ("PACKETS", R),
        ("BYTES", R),
        ("DROPS", R),
        ("BY REASON", L),
    ]);
    t.row(vec![
        "rx".into(),
        u.rx_packets.to_string(),
        u.rx_bytes.to_string(),
        u.drops.values().sum::<u64>().to_string(),
        drops_inline(&u.drops),
    ]);
    t.row(vec![
        "tx".into(),
        u.tx_packets.to_string(),
        u.tx_bytes.to_string(),
        u.tx_errors.values().sum::<u64>().to_string(),
        drops_inline(&u.tx_errors),
    ]);
    out.push_str(&t.render("  "));
}

fn render_network_stats(nets: &[NetworkStats], out: &mut String) {
    if nets.is_empty() {
        out.push_str("  no networks\n");
        return;
    }
    let mut t = Table::new(&[
        ("NAME", L),
        ("VNI", R),
        ("RX_PKTS", R),
        ("RX_BYTES", R),
        ("TX_PKTS", R),
        ("TX_BYTES", R),
        ("FLOODED", R),
        ("PROXY_ARP", R),
        ("DNS_ANS/NX/FWD", R),
        ("LEARNED", R),
        ("MOVES", R),
        ("FDB_FULL", R),
        ("DROPS", R),
        ("BY REASON", L),
    ]);
    for n in nets {
        let c = &n.counters;
        t.row(vec![
            n.name.clone(),
            n.vni.to_string(),
            c.rx_packets.to_string(),
            c.rx_bytes.to_string(),
            c.tx_packets.to_string(),
            c.tx_bytes.to_string(),
            n.events.flooded.to_string(),
            n.events.proxy_arp_replies.to_string(),
            format!(
                "{}/{}/{}",
                n.dns.answered + n.dns.refused,
                n.dns.nxdomain,
                n.dns.forwarded
            ),
            n.events.fdb_learned.to_string(),
            n.events.fdb_moves.to_string(),
            n.events.fdb_full.to_string(),
            total_drops(c).to_string(),
            drops_inline(&c.drops),
        ]);
    }
    out.push_str(&t.render("  "));
}

fn render_port_stats(ports: &[PortInfo], out: &mut String) {
    if ports.is_empty() {
        out.push_str("  no ports\n");
        return;
    }
    let mut t = Table::new(&[
        ("ID", R),
        ("NAME", L),
        ("NETWORK", L),
        ("RX_PKTS", R),
        ("RX_BYTES", R),
        ("TX_PKTS", R),
        ("TX_BYTES", R),
        ("DROPS", R),
        ("BY REASON", L),
    ]);
    for p in ports {
        let c = &p.counters;
        t.row(vec![
            p.id.to_string(),
            p.name.clone(),
            p.network.clone(),
            c.rx_packets.to_string(),
            c.rx_bytes.to_string(),
            c.tx_packets.to_string(),
            c.tx_bytes.to_string(),
            total_drops(c).to_string(),
            drops_inline(&c.drops),
        ]);
    }
    out.push_str(&t.render("  "));
}

/// Three sections: the underlay (drops before a network is known, send errors), each network,
/// each port; drops with their reasons.
pub fn render_stats(s: &Stats) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "uptime {}", format_age(s.uptime_secs));
    out.push_str("\nunderlay (tx drops are send errors, by errno)\n");
    render_underlay(&s.underlay, &mut out);
    out.push_str("\nnetworks\n");
    render_network_stats(&s.networks, &mut out);
    if let Some(d) = &s.dns {
        let _ = writeln!(
            out,
            "\ndns forwarder (names that are not endpoints) to {}\n  queries {}  relayed {}  \
             truncated {}  failed {}  refused {}  stray {}",
            if d.upstreams.is_empty() {
                "no upstream (SERVFAIL)".to_string()
            } else {
                d.upstreams.join(", ")
            },
            d.queries,
            d.relayed,
            d.truncated,
            d.failed,
            d.refused,
            d.stray
        );
    }
    out.push_str("\nports\n");
    render_port_stats(&s.ports, &mut out);
    let o = &s.offload;
    let _ = writeln!(
        out,
        "\noffloads\n  tso {} frames -> {} segments; gso {} sends ({} datagrams, {} refused); gro {} runs; coalesced {} frames <- {} segments; partial checksums completed {}; peer super-frames {}; tunnel {} frames ({} refused)",
        o.tso_frames, o.tso_segments, o.gso_sends, o.gso_datagrams, o.gso_fallbacks, o.gro_runs,
        o.coalesced_frames, o.coalesced_segments, o.partial_checksums, o.peer_super_frames,
        o.tunnel_frames, o.tunnel_refused
    );
    if !s.workers.is_empty() {
        out.push_str(
            "\nworkers (frames read from ports and datagrams from the underlay; table updates sent to / applied from the other workers, and lost; busy-poll windows after traffic, those given up because another thread wanted the core, and looks at the machine that found no core idle (no spinning then); times it slept and was woken; batches of a storming port put off for a millisecond)\n",
        );
        let mut t = Table::new(&[
            ("WORKER", R),
            ("CPU", R),
            ("PORT_FRAMES", R),
            ("UNDERLAY_DGRAMS", R),
            ("UPDATES_SENT", R),
            ("APPLIED", R),
            ("LOST", R),
            ("SPINS", R),
            ("GIVEN_UP", R),
            ("GATED", R),
            ("WAKEUPS", R),
            ("THROTTLED", R),
        ]);
        for w in &s.workers {
            t.row(vec![
                w.worker.to_string(),
                w.cpu.map_or_else(|| "-".to_string(), |c| c.to_string()),
                w.counters.port_frames.to_string(),
                w.counters.underlay_datagrams.to_string(),
                w.counters.updates_sent.to_string(),
                w.counters.updates_applied.to_string(),
                w.counters.updates_lost.to_string(),
                w.counters.busy_poll_windows.to_string(),
                w.counters.busy_poll_given_up.to_string(),
                w.counters.busy_poll_gated.to_string(),
                w.counters.wakeups.to_string(),
                w.counters.throttled_batches.to_string(),
            ]);
        }
        out.push_str(&t.render("  "));
    }
    if !s.latency.is_empty() {
        out.push_str("\nlatency inside vswitchd, read to sent (microseconds)\n");
        let mut t = Table::new(&[
            ("WORKER", R),
            ("FRAMES", R),
            ("P50", R),
            ("P99", R),
            ("P99.9", R),
            ("MAX", R),
        ]);
        for l in &s.latency {
            t.row(vec![
                l.worker.to_string(),
                l.samples.to_string(),
                format!("{:.1}", l.p50_us),
                format!("{:.1}", l.p99_us),
                format!("{:.1}", l.p999_us),
                format!("{:.1}", l.max_us),
            ]);
        }
        out.push_str(&t.render("  "));
    }
    out
}

/// One line saying what an attach made, e.g.
/// `attached 10.0.9.2/24 02:42:0a:00:09:02 as eth0 in netns c1 (network blue, vni 42, mtu 1450, port 3)`.
pub fn render_attached(p: &PortInfo) -> String {
    let station: Vec<&str> = [p.ip.as_deref(), p.mac.as_deref()]
        .into_iter()
        .flatten()
        .collect();
    let what = match &p.netns {
        Some(ns) => format!("{} as {} in netns {ns}", station.join(" "), p.ifname),
        None if station.is_empty() => format!("interface {}", p.ifname),
        None => format!("interface {} for {}", p.ifname, station.join(" ")),
    };
    let mut out = format!(
        "attached {} (network {}, vni {}, mtu {}, port {})\n",
        what.trim_start(),
        p.network,
        p.vni,
        p.mtu,
        p.id
    );
    if let Some(d) = &p.dns {
        out.push_str(&format!(
            "dns: nameserver {}, search {}{}\n",
            d.nameserver,
            d.search,
            match &d.resolv_conf {
                Some(f) => format!(" (written to {f}, which `ip netns exec` uses)"),
                None => " (the namespace's runtime keeps its own resolv.conf)".to_string(),
            }
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::api::{LatencyStats, NetworkEvents};

    fn port(id: u32) -> PortInfo {
        PortInfo {
            id,
            name: format!("c{id}"),
            kind: "tap".into(),
            network: "blue".into(),
            vni: 42,
            ifname: "eth0".into(),
            netns: Some(format!("c{id}")),
            mac: Some("02:42:0a:00:09:02".into()),
            ip: Some("10.0.9.2/24".into()),
            mtu: 1450,
            counters: Counters {
                rx_packets: 10,
                rx_bytes: 1000,
                tx_packets: 12,
                tx_bytes: 1200,
                drops: [("too_big".to_string(), 2), ("unknown_dst".to_string(), 5)].into(),
            },
            queues: 2,
            attachment: None,
            dns: None,
        }
    }

    #[test]
    fn networks_table() {
        let nets = vec![
            NetworkInfo {
                name: "blue".into(),
                vni: 42,
                subnet: "10.0.9.0/24".into(),
                mtu: 1450,
                peers: vec!["node-b".into(), "node-c".into()],
                ports: 2,
                fdb_entries: 3,
                neigh_entries: 1,
                dns: None,
            },
            NetworkInfo {
                name: "red".into(),
                vni: 43,
                subnet: "10.0.9.0/24".into(),
                mtu: 1450,
                peers: vec![],
                ports: 0,
                fdb_entries: 0,
                neigh_entries: 0,
                dns: None,
            },
        ];
        assert_eq!(
            render_networks(&nets),
            "\
NAME  VNI  SUBNET        MTU  PEERS          PORTS  FDB  NEIGH
blue   42  10.0.9.0/24  1450  node-b,node-c      2    3      1
red    43  10.0.9.0/24  1450  -                  0    0      0
"
        );
        assert_eq!(render_networks(&[]), "no networks\n");
    }

    #[test]
    fn ports_table() {
        let mut p2 = port(4);
        p2.kind = "af_packet".into();
        p2.netns = None;
        p2.mac = None;
        p2.ip = None;
        p2.ifname = "veth1".into();
        let out = render_ports(&[port(3), p2]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "ID  NAME  KIND       NETWORK  IFNAME  NETNS  MAC                IP           QUEUES  RX_PKTS  TX_PKTS  DROPS"
        );
        assert_eq!(
            lines[1],
            " 3  c3    tap        blue     eth0    c3     02:42:0a:00:09:02  10.0.9.2/24       2       10       12      7"
        );
        assert_eq!(
            lines[2],
            " 4  c4    af_packet  blue     veth1   -      -                  -                 2       10       12      7"
        );
    }

    #[test]
    fn fdb_and_neigh_tables() {
        let out = render_fdb(&[FdbEntryInfo {
            network: "blue".into(),
            vni: 42,
            mac: "02:42:0a:00:09:03".into(),
            kind: "vtep".into(),
            location: "192.0.2.2".into(),
            age_secs: 187,
        }]);
        assert_eq!(
            out,
            "NETWORK  VNI  MAC                KIND  LOCATION     AGE\n\
             blue      42  02:42:0a:00:09:03  vtep  192.0.2.2  3m07s\n"
        );
        let out = render_neigh(&[NeighEntryInfo {
            network: "red".into(),
            vni: None,
            ip: "10.0.9.3".into(),
            mac: "02:42:0a:00:09:03".into(),
            source: "arp".into(),
            age_secs: 5,
        }]);
        assert_eq!(
            out,
            "NETWORK  IP        MAC                SOURCE  AGE\n\
             red      10.0.9.3  02:42:0a:00:09:03  arp      5s\n"
        );
        assert_eq!(render_fdb(&[]), "no FDB entries\n");
    }

    #[test]
    fn stats_sections() {
        let s = Stats {
            dns: None,
            uptime_secs: 3725,
            ports: vec![port(3)],
            networks: vec![NetworkStats {
                name: "blue".into(),
                vni: 42,
                counters: Counters {
                    rx_packets: 7,
                    drops: [("too_big".to_string(), 1)].into(),
                    ..Counters::default()
                },
                events: NetworkEvents {
                    flooded: 4,
                    proxy_arp_replies: 2,
                    fdb_learned: 3,
                    fdb_moves: 0,
                    fdb_full: 0,
                },
                dns: Default::default(),
            }],
            underlay: UnderlayStats {
                rx_packets: 100,
                rx_bytes: 15000,
                drops: [("unknown_vni".to_string(), 3), ("bad_vxlan".to_string(), 9)].into(),
                tx_errors: [("ENETUNREACH".to_string(), 1)].into(),
                ..UnderlayStats::default()
            },
            offload: Default::default(),
            latency: vec![LatencyStats {
                worker: 0,
                samples: 1000,
                p50_us: 3.2,
                p99_us: 18.5,
                p999_us: 40.1,
                max_us: 95.0,
                ..Default::default()
            }],
            workers: vec![crate::control::api::WorkerStats {
                worker: 1,
                cpu: Some(1),
                counters: crate::control::api::WorkerCounters {
                    port_frames: 500,
                    underlay_datagrams: 700,
                    updates_sent: 3,
                    updates_applied: 4,
                    updates_lost: 0,
                    busy_poll_windows: 90,
                    busy_poll_given_up: 6,
                    busy_poll_gated: 2,
                    wakeups: 40,
                    throttled_batches: 0,
                    esp_opened: 0,
                    esp_refused: 0,
                },
            }],
        };
        let out = render_stats(&s);
        assert!(out.contains("\nworkers ("), "{out}");
        assert!(
            out.contains("1    1          500              700"),
            "{out}"
        );
        assert!(
            out.contains("   0     90         6      2       40          0\n"),
            "{out}"
        );
        assert!(out.contains("latency inside vswitchd"), "{out}");
        assert!(out.contains("0    1000  3.2  18.5   40.1  95.0"), "{out}");
        assert!(out.starts_with("uptime 1h02m\n"), "{out}");
        assert!(out.contains("\nunderlay"), "{out}");
        assert!(
            out.contains("  rx      100  15000     12  bad_vxlan=9 unknown_vni=3\n"),
            "{out}"
        );
        assert!(
            out.contains("  tx        0      0      1  ENETUNREACH=1\n"),
            "{out}"
        );
        assert!(out.contains("\nnetworks\n  NAME  VNI"), "{out}");
        assert!(out.contains("  blue   42        7"), "{out}");
        assert!(out.contains("too_big=1"), "{out}");
        assert!(out.contains("\nports\n  ID  NAME"), "{out}");
        assert!(out.contains("unknown_dst=5 too_big=2"), "{out}");
    }

    #[test]
    fn attached_line() {
        assert_eq!(
            render_attached(&port(3)),
            "attached 10.0.9.2/24 02:42:0a:00:09:02 as eth0 in netns c3 (network blue, vni 42, mtu 1450, port 3)\n"
        );
        let mut p = port(4);
        p.netns = None;
        p.ip = None;
        p.mac = None;
        p.ifname = "veth1".into();
        assert_eq!(
            render_attached(&p),
            "attached interface veth1 (network blue, vni 42, mtu 1450, port 4)\n"
        );
        p.ip = Some("10.0.9.7".into());
        assert_eq!(
            render_attached(&p),
            "attached interface veth1 for 10.0.9.7 (network blue, vni 42, mtu 1450, port 4)\n"
        );
    }

    #[test]
    fn ages() {
        assert_eq!(format_age(0), "0s");
        assert_eq!(format_age(59), "59s");
        assert_eq!(format_age(60), "1m00s");
        assert_eq!(format_age(3599), "59m59s");
        assert_eq!(format_age(3600), "1h00m");
        assert_eq!(format_age(90000), "1d01h");
    }
}
