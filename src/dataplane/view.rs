//! What `show` asks of the workers, and how their answers become one.
//!
//! Each worker answers from its own copy of the switch and its own counters (`View`); the
//! control thread merges the answers (`merge`): counters add up, tables are the union of the
//! copies (the most recently refreshed entry wins), and per-worker figures (latency, load)
//! are listed side by side. Nothing here runs on the packet path.

use crate::control::api::{self, add_counts};
use crate::switch::counters::Counters;
use crate::switch::fdb::Location;
use crate::switch::{Switch, Timestamp, Vni};
use crate::wire::MacAddr;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// One worker's answer to a `show`.
#[derive(Debug, Clone)]
pub enum View {
    Networks(Vec<api::NetworkInfo>),
    Ports(Vec<api::PortInfo>),
    Fdb(Vec<api::FdbEntryInfo>),
    Neigh(Vec<api::NeighEntryInfo>),
    Peers(Vec<api::PeerInfo>),
    Sa(Vec<api::SaInfo>),
    Stats(Box<api::Stats>),
}

impl View {
    pub fn to_json(&self) -> serde_json::Value {
        let v = match self {
            View::Networks(v) => serde_json::to_value(v),
            View::Ports(v) => serde_json::to_value(v),
            View::Fdb(v) => serde_json::to_value(v),
            View::Neigh(v) => serde_json::to_value(v),
            View::Peers(v) => serde_json::to_value(v),
            View::Sa(v) => serde_json::to_value(v),
            View::Stats(v) => serde_json::to_value(v),
        };
        v.unwrap_or(serde_json::Value::Null)
    }
}

/// The API's counters from the core's.
pub fn counters(c: &Counters) -> api::Counters {
    api::Counters {
        rx_packets: c.rx_packets,
        rx_bytes: c.rx_bytes,
        tx_packets: c.tx_packets,
        tx_bytes: c.tx_bytes,
        drops: c.drops.to_map(),
    }
}

/// One switch's tables and counters as the API's types: the conversion from the core's typed
/// state happens here, once, not in the core.
pub trait SwitchViews {
    fn networks_info(&self) -> Vec<api::NetworkInfo>;
    fn fdb_info(&self, now: Timestamp) -> Vec<api::FdbEntryInfo>;
    fn neigh_info(&self, now: Timestamp) -> Vec<api::NeighEntryInfo>;
    fn peers_info(&self, now: Timestamp) -> Vec<api::PeerInfo>;
    fn network_stats(&self) -> Vec<api::NetworkStats>;
}

impl SwitchViews for Switch {
    fn networks_info(&self) -> Vec<api::NetworkInfo> {
        self.topology()
            .networks()
            .map(|n| {
                let learned = self.learned(n.vni());
                api::NetworkInfo {
                    name: n.spec.name.clone(),
                    vni: n.vni().get(),
                    subnet: n.spec.subnet.to_string(),
                    mtu: n.spec.mtu,
                    peers: n.spec.peers.iter().map(|(name, _)| name.clone()).collect(),
                    ports: n.ports().len() as u32,
                    fdb_entries: (n.endpoints().count() + learned.map_or(0, |l| l.fdb.len()))
                        as u32,
                    neigh_entries: (n.endpoints().filter(|e| e.ip.is_some()).count()
                        + learned.map_or(0, |l| l.neigh.len()))
                        as u32,
                    dns: n.service().map(|(ip, _)| ip.to_string()),
                }
            })
            .collect()
    }

    fn fdb_info(&self, now: Timestamp) -> Vec<api::FdbEntryInfo> {
        let topo = self.topology();
        let place = |at: Location| match at {
            Location::Port(p) => (
                "port",
                topo.port(p)
                    .map_or_else(|| p.to_string(), |s| s.name.clone()),
            ),
            Location::Vtep(v) => ("vtep", v.to_string()),
        };
        let mut out = Vec::new();
        for n in topo.networks() {
            let entry = |mac: &MacAddr, at: Location, age_secs: u64| {
                let (kind, location) = place(at);
                api::FdbEntryInfo {
                    network: n.spec.name.clone(),
                    vni: n.vni().get(),
                    mac: mac.to_string(),
                    kind: kind.to_string(),
                    location,
                    age_secs,
                }
            };
            for e in n.endpoints() {
                out.push((n.vni(), e.mac, entry(&e.mac, e.at, 0)));
            }
            if let Some(l) = self.learned(n.vni()) {
                for (mac, e) in l.fdb.iter().filter(|(m, _)| n.endpoint(**m).is_none()) {
                    let age = now.millis_since(e.updated) / 1000;
                    out.push((n.vni(), *mac, entry(mac, e.location, age)));
                }
            }
        }
        out.sort_by_key(|(vni, mac, _)| (*vni, *mac));
        out.into_iter().map(|(_, _, e)| e).collect()
    }

    fn neigh_info(&self, now: Timestamp) -> Vec<api::NeighEntryInfo> {
        let mut out: Vec<(Vni, Ipv4Addr, api::NeighEntryInfo)> = Vec::new();
        for n in self.topology().networks() {
            let entry =
                |ip: &Ipv4Addr, mac: MacAddr, source: &str, age_secs: u64| api::NeighEntryInfo {
                    network: n.spec.name.clone(),
                    vni: Some(n.vni().get()),
                    ip: ip.to_string(),
                    mac: mac.to_string(),
                    source: source.to_string(),
                    age_secs,
                };
            for e in n.endpoints() {
                if let Some(ip) = e.ip {
                    let source = match e.at {
                        Location::Port(_) => "attach",
                        Location::Vtep(_) => "endpoint",
                    };
                    out.push((n.vni(), ip, entry(&ip, e.mac, source, 0)));
                }
            }
            if let Some(l) = self.learned(n.vni()) {
                for (ip, e) in l
                    .neigh
                    .iter()
                    .filter(|(ip, _)| n.endpoint_by_ip(**ip).is_none())
                {
                    let age = now.millis_since(e.updated) / 1000;
                    out.push((n.vni(), *ip, entry(ip, e.mac, e.source.name(), age)));
                }
            }
        }
        out.sort_by_key(|(vni, ip, _)| (*vni, *ip));
        out.into_iter().map(|(_, _, e)| e).collect()
    }

    fn peers_info(&self, now: Timestamp) -> Vec<api::PeerInfo> {
        let topo = self.topology();
        topo.peers()
            .iter()
            .map(|p| {
                let state = self.peer_state(p.addr);
                api::PeerInfo {
                    name: p.name.clone(),
                    underlay_ip: p.addr.to_string(),
                    networks: topo
                        .networks()
                        .filter(|n| n.vteps().contains(&p.addr))
                        .map(|n| n.spec.name.clone())
                        .collect(),
                    counters: state.map(|s| counters(&s.counters)).unwrap_or_default(),
                    last_seen_secs: state
                        .and_then(|s| s.last_seen)
                        .map(|t| now.millis_since(t) / 1000),
                    state: None,
                    down_for_secs: None,
                    keepalive_age_secs: None,
                }
            })
            .collect()
    }

    fn network_stats(&self) -> Vec<api::NetworkStats> {
        self.topology()
            .networks()
            .map(|n| {
                let c = self.learned(n.vni()).map(|l| &l.counters);
                api::NetworkStats {
                    name: n.spec.name.clone(),
                    vni: n.vni().get(),
                    counters: c.map(|c| counters(&c.traffic)).unwrap_or_default(),
                    flooded: c.map_or(0, |c| c.flooded),
                    proxy_arp_replies: c.map_or(0, |c| c.proxy_arp_replies),
                    fdb_learned: c.map_or(0, |c| c.fdb_learned),
                    fdb_moves: c.map_or(0, |c| c.fdb_moves),
                    fdb_full: c.map_or(0, |c| c.fdb_full),
                    dns: c.map_or_else(Default::default, |c| api::DnsStats {
                        answered: c.dns.answered,
                        nxdomain: c.dns.nxdomain,
                        refused: c.dns.refused,
                        forwarded: c.dns.forwarded,
                    }),
                }
            })
            .collect()
    }
}

/// Merges the workers' answers to one `show` (all of the same kind, worker 0 first).
pub fn merge(views: Vec<View>) -> Option<View> {
    let mut it = views.into_iter();
    let first = it.next()?;
    Some(it.fold(first, |acc, v| match (acc, v) {
        // Table sizes are not added or maxed: `Workers::show` counts the union of the merged
        // tables (the copies share most entries).
        (View::Networks(a), View::Networks(_)) => View::Networks(a),
        (View::Ports(a), View::Ports(b)) => View::Ports(merge_ports(a, &b)),
        (View::Fdb(a), View::Fdb(b)) => View::Fdb(union_newest(
            a,
            b,
            |e| (e.vni, e.mac.parse::<MacAddr>().ok()),
            |e| e.age_secs,
        )),
        (View::Neigh(a), View::Neigh(b)) => View::Neigh(union_newest(
            a,
            b,
            |e| (e.vni, e.ip.parse::<Ipv4Addr>().ok(), e.network.clone()),
            |e| e.age_secs,
        )),
        (View::Peers(a), View::Peers(b)) => View::Peers(merge_peers(a, &b)),
        (View::Sa(a), View::Sa(b)) => View::Sa(merge_sas(a, b)),
        (View::Stats(mut a), View::Stats(b)) => {
            merge_stats(&mut a, *b);
            View::Stats(a)
        }
        (a, _) => a,
    }))
}

fn merge_ports(mut a: Vec<api::PortInfo>, b: &[api::PortInfo]) -> Vec<api::PortInfo> {
    for p in &mut a {
        if let Some(o) = b.iter().find(|o| o.id == p.id) {
            p.counters.add(&o.counters);
            p.queues += o.queues;
        }
    }
    a
}

/// The union of two tables keyed by `key`; of two entries for one key, the younger stays.
/// Sorted by key, as the single-worker views are.
fn union_newest<T, K: Ord>(
    a: Vec<T>,
    b: Vec<T>,
    key: impl Fn(&T) -> K,
    age: impl Fn(&T) -> u64,
) -> Vec<T> {
    let mut m: BTreeMap<K, T> = BTreeMap::new();
    for e in a.into_iter().chain(b) {
        let k = key(&e);
        match m.get(&k) {
            Some(old) if age(old) <= age(&e) => {}
            _ => {
                m.insert(k, e);
            }
        }
    }
    m.into_values().collect()
}

fn merge_peers(mut a: Vec<api::PeerInfo>, b: &[api::PeerInfo]) -> Vec<api::PeerInfo> {
    for p in &mut a {
        if let Some(o) = b.iter().find(|o| o.name == p.name) {
            p.counters.add(&o.counters);
            p.last_seen_secs = match (p.last_seen_secs, o.last_seen_secs) {
                (Some(x), Some(y)) => Some(x.min(y)),
                (x, y) => x.or(y),
            };
        }
    }
    a
}

/// Outbound SAs exist on every worker (with one shared sequence counter); inbound ones on the
/// worker that receives ESP. Packets and bytes add up; the sequence number is the highest.
fn merge_sas(a: Vec<api::SaInfo>, b: Vec<api::SaInfo>) -> Vec<api::SaInfo> {
    let mut out = a;
    for s in b {
        match out.iter_mut().find(|o| {
            (o.vni, &o.peer, &o.direction, o.spi) == (s.vni, &s.peer, &s.direction, s.spi)
        }) {
            Some(o) => {
                o.packets += s.packets;
                o.bytes += s.bytes;
                o.drops += s.drops;
                o.seq = o.seq.max(s.seq);
            }
            None => out.push(s),
        }
    }
    out
}

fn merge_stats(a: &mut api::Stats, b: api::Stats) {
    a.uptime_secs = a.uptime_secs.max(b.uptime_secs);
    a.ports = merge_ports(std::mem::take(&mut a.ports), &b.ports);
    for n in &mut a.networks {
        if let Some(o) = b.networks.iter().find(|o| o.vni == n.vni) {
            n.counters.add(&o.counters);
            n.flooded += o.flooded;
            n.proxy_arp_replies += o.proxy_arp_replies;
            n.fdb_learned += o.fdb_learned;
            n.fdb_moves += o.fdb_moves;
            n.fdb_full += o.fdb_full;
            n.dns.answered += o.dns.answered;
            n.dns.nxdomain += o.dns.nxdomain;
            n.dns.refused += o.dns.refused;
            n.dns.forwarded += o.dns.forwarded;
        }
    }
    let (u, o) = (&mut a.underlay, &b.underlay);
    u.rx_packets += o.rx_packets;
    u.rx_bytes += o.rx_bytes;
    u.tx_packets += o.tx_packets;
    u.tx_bytes += o.tx_bytes;
    add_counts(&mut u.drops, &o.drops);
    add_counts(&mut u.tx_errors, &o.tx_errors);
    a.latency.extend(b.latency);
    let (f, o) = (&mut a.offload, &b.offload);
    f.tso_frames += o.tso_frames;
    f.tso_segments += o.tso_segments;
    f.gso_sends += o.gso_sends;
    f.gso_datagrams += o.gso_datagrams;
    f.gso_fallbacks += o.gso_fallbacks;
    f.gro_runs += o.gro_runs;
    f.coalesced_frames += o.coalesced_frames;
    f.coalesced_segments += o.coalesced_segments;
    f.partial_checksums += o.partial_checksums;
    f.peer_super_frames += o.peer_super_frames;
    a.workers.extend(b.workers);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(rx: u64, drop: u64) -> api::Counters {
        api::Counters {
            rx_packets: rx,
            rx_bytes: rx * 100,
            drops: [("unknown_vni".to_string(), drop)].into_iter().collect(),
            ..Default::default()
        }
    }

    fn fdb(mac: &str, age: u64, location: &str) -> api::FdbEntryInfo {
        api::FdbEntryInfo {
            network: "blue".into(),
            vni: 42,
            mac: mac.into(),
            kind: "vtep".into(),
            location: location.into(),
            age_secs: age,
        }
    }

    #[test]
    fn counters_add_up_and_tables_unite() {
        let stats = |w: u32, rx: u64| api::Stats {
            networks: vec![api::NetworkStats {
                name: "blue".into(),
                vni: 42,
                counters: counters(rx, 1),
                flooded: 2,
                ..Default::default()
            }],
            underlay: api::UnderlayStats {
                rx_packets: rx,
                ..Default::default()
            },
            workers: vec![api::WorkerStats {
                worker: w,
                port_frames: rx,
                ..Default::default()
            }],
            ..Default::default()
        };
        let Some(View::Stats(s)) = merge(vec![
            View::Stats(Box::new(stats(0, 5))),
            View::Stats(Box::new(stats(1, 7))),
        ]) else {
            panic!("stats merge to stats");
        };
        assert_eq!(s.networks[0].counters.rx_packets, 12);
        assert_eq!(s.networks[0].counters.rx_bytes, 1200);
        assert_eq!(s.networks[0].counters.drops["unknown_vni"], 2);
        assert_eq!(s.networks[0].flooded, 4);
        assert_eq!(s.underlay.rx_packets, 12);
        let w: Vec<(u32, u64)> = s
            .workers
            .iter()
            .map(|w| (w.worker, w.port_frames))
            .collect();
        assert_eq!(w, [(0, 5), (1, 7)]);

        let Some(View::Fdb(t)) = merge(vec![
            View::Fdb(vec![
                fdb("02:00:00:00:00:01", 9, "old"),
                fdb("02:00:00:00:00:02", 1, "x"),
            ]),
            View::Fdb(vec![fdb("02:00:00:00:00:01", 3, "new")]),
        ]) else {
            panic!("fdb merge to fdb");
        };
        let got: Vec<(&str, &str)> = t
            .iter()
            .map(|e| (e.mac.as_str(), e.location.as_str()))
            .collect();
        assert_eq!(
            got,
            [("02:00:00:00:00:01", "new"), ("02:00:00:00:00:02", "x")]
        );
    }
}
