//! What `show` asks of the workers, and how their answers become one.
//!
//! Each worker answers from its own copy of the switch and its own counters with typed rows
//! (`View`): addresses as addresses, counters as the core's counter structs. The control
//! thread merges the answers (`merge`) as numbers: counters add up, tables are the union of
//! the copies keyed by (VNI, MAC) or (VNI, IP) (the most recently refreshed entry wins), and
//! per-worker figures (latency, load) are listed side by side. The control layer converts the
//! merged view to the API's JSON types once (crate::control::views). Nothing here runs on the
//! packet path.

use super::counters::{LatencySummary, OffloadCounters, TxErrors, WorkerCounters};
use super::port::PortMeta;
use crate::crypto::EspDrop;
use crate::switch::core::PeerState;
use crate::switch::counters::{Counters, NetworkCounters};
use crate::switch::fdb::Location;
use crate::switch::{PortId, Switch, Timestamp, Vni, VtepAddr};
use crate::wire::MacAddr;
use ipnet::Ipv4Net;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// What a `show` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViewKind {
    Networks,
    Ports,
    Fdb,
    Neigh,
    Peers,
    Stats,
    /// Security associations of encrypted networks.
    Sa,
}

/// One worker's answer to a `show`, or the merge of all of them.
#[derive(Debug, Clone)]
pub enum View {
    Networks(Vec<NetworkRow>),
    Ports(Vec<PortRow>),
    Fdb(Vec<FdbRow>),
    Neigh(Vec<NeighRow>),
    Peers(Vec<PeerRow>),
    Sa(Vec<SaRow>),
    Stats(Box<StatsView>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct NetworkRow {
    pub name: String,
    pub vni: Vni,
    pub subnet: Ipv4Net,
    pub mtu: u32,
    pub peers: Vec<String>,
    pub ports: u32,
    pub fdb_entries: u32,
    pub neigh_entries: u32,
    /// The switch's own address in the network (its DNS server).
    pub dns: Option<Ipv4Addr>,
}

/// A port as one worker has it (or, merged, as all have it: counters added, one queue each).
#[derive(Debug, Clone)]
pub struct PortRow {
    pub id: PortId,
    pub meta: PortMeta,
    pub counters: Counters,
    pub queues: u32,
}

impl PortRow {
    /// Adds another worker's queue of the same port.
    pub fn add(&mut self, o: &PortRow) {
        self.counters.add(&o.counters);
        self.queues += o.queues;
    }
}

/// Where an FDB entry sends frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FdbPlace {
    /// A local port, by its name.
    Port(String),
    Vtep(VtepAddr),
}

#[derive(Debug, Clone, PartialEq)]
pub struct FdbRow {
    pub network: String,
    pub vni: Vni,
    pub mac: MacAddr,
    pub at: FdbPlace,
    pub age_secs: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NeighRow {
    pub network: String,
    pub vni: Vni,
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
    /// Where the switch learned it: "attach", "endpoint", "arp", "decap".
    pub source: &'static str,
    pub age_secs: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PeerRow {
    pub name: String,
    pub addr: VtepAddr,
    pub networks: Vec<String>,
    pub counters: Counters,
    pub last_seen_secs: Option<u64>,
}

/// One ESP security association, with the names of its network and peer.
#[derive(Debug, Clone)]
pub struct SaRow {
    pub network: String,
    pub peer: String,
    pub sa: crate::crypto::table::SaInfo,
    /// Key material, only when asked for (`show sa --wireshark`).
    pub key: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NetworkStatsRow {
    pub name: String,
    pub vni: Vni,
    pub counters: NetworkCounters,
}

/// ESP packets refused before the switch core, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EspDrops(pub [u64; EspDrop::ALL.len()]);

impl EspDrops {
    pub fn count(&mut self, d: EspDrop) {
        self.0[d as usize] += 1;
    }

    pub fn add(&mut self, o: &EspDrops) {
        for (a, b) in self.0.iter_mut().zip(o.0) {
            *a += b;
        }
    }

    /// Non-zero counters with their reasons.
    pub fn nonzero(&self) -> impl Iterator<Item = (EspDrop, u64)> + '_ {
        EspDrop::ALL
            .iter()
            .map(|d| (*d, self.0[*d as usize]))
            .filter(|(_, n)| *n > 0)
    }
}

/// The underlay: the core's counters (drops before a network is known), ESP refusals, and the
/// kernel's send errors.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UnderlayView {
    pub traffic: Counters,
    pub esp_drops: EspDrops,
    pub tx_errors: TxErrors,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkerRow {
    pub worker: u32,
    pub cpu: Option<u32>,
    pub counters: WorkerCounters,
}

#[derive(Debug, Clone, Default)]
pub struct StatsView {
    pub uptime_secs: u64,
    pub ports: Vec<PortRow>,
    pub networks: Vec<NetworkStatsRow>,
    pub underlay: UnderlayView,
    pub latency: Vec<LatencySummary>,
    pub offload: OffloadCounters,
    pub workers: Vec<WorkerRow>,
}

/// One switch's tables and counters as typed rows.
pub trait SwitchViews {
    fn network_rows(&self) -> Vec<NetworkRow>;
    fn fdb_rows(&self, now: Timestamp) -> Vec<FdbRow>;
    fn neigh_rows(&self, now: Timestamp) -> Vec<NeighRow>;
    fn peer_rows(&self, now: Timestamp) -> Vec<PeerRow>;
    fn network_stats_rows(&self) -> Vec<NetworkStatsRow>;
}

impl SwitchViews for Switch {
    fn network_rows(&self) -> Vec<NetworkRow> {
        self.topology()
            .networks()
            .map(|n| {
                let learned = self.learned(n.vni());
                NetworkRow {
                    name: n.spec.name.clone(),
                    vni: n.vni(),
                    subnet: n.spec.subnet,
                    mtu: n.spec.mtu,
                    peers: n.spec.peers.iter().map(|(name, _)| name.clone()).collect(),
                    ports: n.ports().len() as u32,
                    fdb_entries: (n.endpoints().count() + learned.map_or(0, |l| l.fdb.len()))
                        as u32,
                    neigh_entries: (n.endpoints().filter(|e| e.ip.is_some()).count()
                        + learned.map_or(0, |l| l.neigh.len()))
                        as u32,
                    dns: n.service().map(|(ip, _)| ip),
                }
            })
            .collect()
    }

    fn fdb_rows(&self, now: Timestamp) -> Vec<FdbRow> {
        let topo = self.topology();
        let place = |at: Location| match at {
            Location::Port(p) => FdbPlace::Port(
                topo.port(p)
                    .map_or_else(|| p.to_string(), |s| s.name.clone()),
            ),
            Location::Vtep(v) => FdbPlace::Vtep(v),
        };
        let mut out = Vec::new();
        for n in topo.networks() {
            let row = |mac: MacAddr, at: Location, age_secs: u64| FdbRow {
                network: n.spec.name.clone(),
                vni: n.vni(),
                mac,
                at: place(at),
                age_secs,
            };
            for e in n.endpoints() {
                out.push(row(e.mac, e.at, 0));
            }
            if let Some(l) = self.learned(n.vni()) {
                for (mac, e) in l.fdb.iter().filter(|(m, _)| n.endpoint(**m).is_none()) {
                    out.push(row(*mac, e.location, now.millis_since(e.updated) / 1000));
                }
            }
        }
        out.sort_by_key(|r| (r.vni, r.mac));
        out
    }

    fn neigh_rows(&self, now: Timestamp) -> Vec<NeighRow> {
        let mut out = Vec::new();
        for n in self.topology().networks() {
            let row = |ip: Ipv4Addr, mac: MacAddr, source: &'static str, age_secs: u64| NeighRow {
                network: n.spec.name.clone(),
                vni: n.vni(),
                ip,
                mac,
                source,
                age_secs,
            };
            for e in n.endpoints() {
                if let Some(ip) = e.ip {
                    let source = match e.at {
                        Location::Port(_) => "attach",
                        Location::Vtep(_) => "endpoint",
                    };
                    out.push(row(ip, e.mac, source, 0));
                }
            }
            if let Some(l) = self.learned(n.vni()) {
                for (ip, e) in l
                    .neigh
                    .iter()
                    .filter(|(ip, _)| n.endpoint_by_ip(**ip).is_none())
                {
                    let age = now.millis_since(e.updated) / 1000;
                    out.push(row(*ip, e.mac, e.source.name(), age));
                }
            }
        }
        out.sort_by_key(|r| (r.vni, r.ip));
        out
    }

    fn peer_rows(&self, now: Timestamp) -> Vec<PeerRow> {
        let topo = self.topology();
        topo.peers()
            .iter()
            .map(|p| {
                let state: Option<&PeerState> = self.peer_state(p.addr);
                PeerRow {
                    name: p.name.clone(),
                    addr: p.addr,
                    networks: topo
                        .networks()
                        .filter(|n| n.vteps().contains(&p.addr))
                        .map(|n| n.spec.name.clone())
                        .collect(),
                    counters: state.map(|s| s.counters.clone()).unwrap_or_default(),
                    last_seen_secs: state
                        .and_then(|s| s.last_seen)
                        .map(|t| now.millis_since(t) / 1000),
                }
            })
            .collect()
    }

    fn network_stats_rows(&self) -> Vec<NetworkStatsRow> {
        self.topology()
            .networks()
            .map(|n| NetworkStatsRow {
                name: n.spec.name.clone(),
                vni: n.vni(),
                counters: self
                    .learned(n.vni())
                    .map(|l| l.counters.clone())
                    .unwrap_or_default(),
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
        (View::Fdb(a), View::Fdb(b)) => {
            View::Fdb(union_newest(a, b, |e| (e.vni, e.mac), |e| e.age_secs))
        }
        (View::Neigh(a), View::Neigh(b)) => {
            View::Neigh(union_newest(a, b, |e| (e.vni, e.ip), |e| e.age_secs))
        }
        (View::Peers(a), View::Peers(b)) => View::Peers(merge_peers(a, &b)),
        (View::Sa(a), View::Sa(b)) => View::Sa(merge_sas(a, b)),
        (View::Stats(mut a), View::Stats(b)) => {
            merge_stats(&mut a, *b);
            View::Stats(a)
        }
        (a, _) => a,
    }))
}

/// The same ports on several workers: one queue each, counters added.
fn merge_ports(mut a: Vec<PortRow>, b: &[PortRow]) -> Vec<PortRow> {
    for p in &mut a {
        if let Some(o) = b.iter().find(|o| o.id == p.id) {
            p.add(o);
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

fn merge_peers(mut a: Vec<PeerRow>, b: &[PeerRow]) -> Vec<PeerRow> {
    for p in &mut a {
        if let Some(o) = b.iter().find(|o| o.addr == p.addr) {
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
fn merge_sas(a: Vec<SaRow>, b: Vec<SaRow>) -> Vec<SaRow> {
    let mut out = a;
    for s in b {
        let key = |r: &SaRow| (r.sa.vni, r.sa.peer, r.sa.direction, r.sa.spi);
        match out.iter_mut().find(|o| key(o) == key(&s)) {
            Some(o) => {
                o.sa.packets += s.sa.packets;
                o.sa.bytes += s.sa.bytes;
                o.sa.drops += s.sa.drops;
                o.sa.seq = o.sa.seq.max(s.sa.seq);
            }
            None => out.push(s),
        }
    }
    out
}

fn merge_stats(a: &mut StatsView, b: StatsView) {
    a.uptime_secs = a.uptime_secs.max(b.uptime_secs);
    a.ports = merge_ports(std::mem::take(&mut a.ports), &b.ports);
    for n in &mut a.networks {
        if let Some(o) = b.networks.iter().find(|o| o.vni == n.vni) {
            n.counters.add(&o.counters);
        }
    }
    a.underlay.traffic.add(&b.underlay.traffic);
    a.underlay.esp_drops.add(&b.underlay.esp_drops);
    a.underlay.tx_errors.add(&b.underlay.tx_errors);
    a.latency.extend(b.latency);
    a.offload.add(&b.offload);
    a.workers.extend(b.workers);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::switch::DropReason;

    fn fdb(mac: u8, age: u64, at: &str) -> FdbRow {
        FdbRow {
            network: "blue".into(),
            vni: Vni::new(42).unwrap(),
            mac: MacAddr([2, 0, 0, 0, 0, mac]),
            at: FdbPlace::Port(at.into()),
            age_secs: age,
        }
    }

    #[test]
    fn counters_add_up_and_tables_unite() {
        let stats = |w: u32, rx: u64| {
            let mut traffic = Counters {
                rx_packets: rx,
                rx_bytes: rx * 100,
                ..Default::default()
            };
            traffic.drop(DropReason::UnknownVni);
            let mut counters = NetworkCounters {
                traffic: traffic.clone(),
                ..Default::default()
            };
            counters.events.flooded = 2;
            StatsView {
                networks: vec![NetworkStatsRow {
                    name: "blue".into(),
                    vni: Vni::new(42).unwrap(),
                    counters,
                }],
                underlay: UnderlayView {
                    traffic,
                    ..Default::default()
                },
                workers: vec![WorkerRow {
                    worker: w,
                    cpu: None,
                    counters: WorkerCounters {
                        port_frames: rx,
                        ..Default::default()
                    },
                }],
                ..Default::default()
            }
        };
        let Some(View::Stats(s)) = merge(vec![
            View::Stats(Box::new(stats(0, 5))),
            View::Stats(Box::new(stats(1, 7))),
        ]) else {
            panic!("stats merge to stats");
        };
        let n = &s.networks[0].counters;
        assert_eq!(n.traffic.rx_packets, 12);
        assert_eq!(n.traffic.rx_bytes, 1200);
        assert_eq!(n.traffic.drops.get(DropReason::UnknownVni), 2);
        assert_eq!(n.events.flooded, 4);
        assert_eq!(s.underlay.traffic.rx_packets, 12);
        let w: Vec<(u32, u64)> = s
            .workers
            .iter()
            .map(|w| (w.worker, w.counters.port_frames))
            .collect();
        assert_eq!(w, [(0, 5), (1, 7)]);

        let Some(View::Fdb(t)) = merge(vec![
            View::Fdb(vec![fdb(1, 9, "old"), fdb(2, 1, "x")]),
            View::Fdb(vec![fdb(1, 3, "new")]),
        ]) else {
            panic!("fdb merge to fdb");
        };
        let got: Vec<(u8, FdbPlace)> = t.iter().map(|e| (e.mac.0[5], e.at.clone())).collect();
        assert_eq!(
            got,
            [
                (1, FdbPlace::Port("new".into())),
                (2, FdbPlace::Port("x".into()))
            ]
        );
    }

    #[test]
    fn addresses_sort_as_numbers_when_merged() {
        let row = |last: u8| NeighRow {
            network: "blue".into(),
            vni: Vni::new(42).unwrap(),
            ip: Ipv4Addr::new(10, 0, 9, last),
            mac: MacAddr([2, 0, 0, 0, 0, last]),
            source: "arp",
            age_secs: 0,
        };
        let Some(View::Neigh(t)) =
            merge(vec![View::Neigh(vec![row(10)]), View::Neigh(vec![row(2)])])
        else {
            panic!("neigh merge to neigh");
        };
        let ips: Vec<u8> = t.iter().map(|r| r.ip.octets()[3]).collect();
        assert_eq!(ips, [2, 10]);
    }
}
