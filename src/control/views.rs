//! The data plane's merged views (crate::dataplane::view) as the API's types: the one place
//! where typed rows become the strings and maps of `show ... --json`. Counter families are
//! embedded as they are (crate::switch::counters); drop reasons and errno kinds become maps of
//! their non-zero counts by name.
//!
//! Runs on the control actor's thread (and in tests, on a switch directly via `ApiViews`).

use super::api::{self, ShowWhat};
use crate::dataplane::view::{
    FdbPlace, FdbRow, NeighRow, NetworkRow, NetworkStatsRow, PeerRow, PortRow, SaRow, StatsView,
    SwitchViews, UnderlayView, View, ViewKind,
};
use crate::switch::counters::Counters;
use crate::switch::{Switch, Timestamp};
use std::collections::BTreeMap;

impl From<ShowWhat> for ViewKind {
    fn from(w: ShowWhat) -> ViewKind {
        match w {
            ShowWhat::Networks => ViewKind::Networks,
            ShowWhat::Ports => ViewKind::Ports,
            ShowWhat::Fdb => ViewKind::Fdb,
            ShowWhat::Neigh => ViewKind::Neigh,
            ShowWhat::Peers => ViewKind::Peers,
            ShowWhat::Stats => ViewKind::Stats,
            ShowWhat::Sa => ViewKind::Sa,
        }
    }
}

/// Named counts, the zero ones left out (drops by reason, errors by kind).
fn nonzero<'a>(named: impl Iterator<Item = (&'a str, u64)>) -> BTreeMap<String, u64> {
    named
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| (k.to_string(), n))
        .collect()
}

impl From<&Counters> for api::Counters {
    fn from(c: &Counters) -> api::Counters {
        api::Counters {
            rx_packets: c.rx_packets,
            rx_bytes: c.rx_bytes,
            tx_packets: c.tx_packets,
            tx_bytes: c.tx_bytes,
            drops: nonzero(c.drops.nonzero().map(|(r, n)| (r.name(), n))),
        }
    }
}

impl From<&NetworkRow> for api::NetworkInfo {
    fn from(n: &NetworkRow) -> api::NetworkInfo {
        api::NetworkInfo {
            name: n.name.clone(),
            vni: n.vni.get(),
            subnet: n.subnet.to_string(),
            mtu: n.mtu,
            peers: n.peers.clone(),
            ports: n.ports,
            fdb_entries: n.fdb_entries,
            neigh_entries: n.neigh_entries,
            dns: n.dns.map(|ip| ip.to_string()),
        }
    }
}

impl From<&PortRow> for api::PortInfo {
    fn from(p: &PortRow) -> api::PortInfo {
        let m = &p.meta;
        api::PortInfo {
            id: p.id.0,
            name: m.name.clone(),
            kind: m.kind.to_string(),
            network: m.network.clone(),
            vni: m.vni,
            ifname: m.ifname.clone(),
            netns: m.netns.clone(),
            mac: m.mac.map(|m| m.to_string()),
            ip: m.ip.map(|n| n.to_string()),
            mtu: m.mtu,
            counters: (&p.counters).into(),
            queues: p.queues,
            attachment: m.attachment.clone(),
            // The container's resolver is the control actor's to tell (server.rs).
            dns: None,
        }
    }
}

impl From<&FdbRow> for api::FdbEntryInfo {
    fn from(e: &FdbRow) -> api::FdbEntryInfo {
        let (kind, location) = match &e.at {
            FdbPlace::Port(name) => ("port", name.clone()),
            FdbPlace::Vtep(v) => ("vtep", v.to_string()),
        };
        api::FdbEntryInfo {
            network: e.network.clone(),
            vni: e.vni.get(),
            mac: e.mac.to_string(),
            kind: kind.to_string(),
            location,
            age_secs: e.age_secs,
        }
    }
}

impl From<&NeighRow> for api::NeighEntryInfo {
    fn from(e: &NeighRow) -> api::NeighEntryInfo {
        api::NeighEntryInfo {
            network: e.network.clone(),
            vni: Some(e.vni.get()),
            ip: e.ip.to_string(),
            mac: e.mac.to_string(),
            source: e.source.to_string(),
            age_secs: e.age_secs,
        }
    }
}

impl From<&PeerRow> for api::PeerInfo {
    fn from(p: &PeerRow) -> api::PeerInfo {
        api::PeerInfo {
            name: p.name.clone(),
            underlay_ip: p.addr.to_string(),
            networks: p.networks.clone(),
            counters: (&p.counters).into(),
            last_seen_secs: p.last_seen_secs,
            state: None,
            down_for_secs: None,
            keepalive_age_secs: None,
            probe: None,
            esp_probe: None,
        }
    }
}

impl From<&SaRow> for api::SaInfo {
    fn from(r: &SaRow) -> api::SaInfo {
        let sa = &r.sa;
        api::SaInfo {
            network: r.network.clone(),
            vni: sa.vni,
            peer: r.peer.clone(),
            direction: sa.direction.to_string(),
            src: sa.src.to_string(),
            dst: sa.dst.to_string(),
            spi: sa.spi,
            seq: sa.seq,
            age_secs: sa.age_secs,
            packets: sa.packets,
            bytes: sa.bytes,
            drops: sa.drops,
            key: r.key.clone(),
        }
    }
}

impl From<&NetworkStatsRow> for api::NetworkStats {
    fn from(n: &NetworkStatsRow) -> api::NetworkStats {
        api::NetworkStats {
            name: n.name.clone(),
            vni: n.vni.get(),
            counters: (&n.counters.traffic).into(),
            events: n.counters.events,
            dns: n.counters.dns,
        }
    }
}

impl From<&UnderlayView> for api::UnderlayStats {
    fn from(u: &UnderlayView) -> api::UnderlayStats {
        let t = &u.traffic;
        let core = t.drops.nonzero().map(|(r, n)| (r.name(), n));
        let esp = u.esp_drops.nonzero().map(|(d, n)| (d.name(), n));
        api::UnderlayStats {
            rx_packets: t.rx_packets,
            rx_bytes: t.rx_bytes,
            tx_packets: t.tx_packets,
            tx_bytes: t.tx_bytes,
            drops: nonzero(core.chain(esp)),
            tx_errors: nonzero(u.tx_errors.named()),
        }
    }
}

impl From<&StatsView> for api::Stats {
    fn from(s: &StatsView) -> api::Stats {
        api::Stats {
            uptime_secs: s.uptime_secs,
            ports: list(&s.ports),
            networks: list(&s.networks),
            underlay: (&s.underlay).into(),
            latency: s.latency.clone(),
            offload: s.offload,
            // The DNS forwarder's, filled in by the control actor.
            dns: None,
            workers: s
                .workers
                .iter()
                .map(|w| api::WorkerStats {
                    worker: w.worker,
                    cpu: w.cpu,
                    counters: w.counters,
                })
                .collect(),
        }
    }
}

fn list<'a, R: 'a, A: From<&'a R>>(rows: &'a [R]) -> Vec<A> {
    rows.iter().map(A::from).collect()
}

/// The JSON `show` answers with.
pub fn to_json(v: &View) -> serde_json::Value {
    let json = match v {
        View::Networks(r) => serde_json::to_value(list::<_, api::NetworkInfo>(r)),
        View::Ports(r) => serde_json::to_value(list::<_, api::PortInfo>(r)),
        View::Fdb(r) => serde_json::to_value(list::<_, api::FdbEntryInfo>(r)),
        View::Neigh(r) => serde_json::to_value(list::<_, api::NeighEntryInfo>(r)),
        View::Peers(r) => serde_json::to_value(list::<_, api::PeerInfo>(r)),
        View::Sa(r) => serde_json::to_value(list::<_, api::SaInfo>(r)),
        View::Stats(s) => serde_json::to_value(api::Stats::from(&**s)),
    };
    json.unwrap_or(serde_json::Value::Null)
}

/// One switch's tables and counters as the API shows them (what a single-worker daemon
/// answers): for tests that drive a `Switch` directly and assert what a user would read.
pub trait ApiViews {
    fn networks_info(&self) -> Vec<api::NetworkInfo>;
    fn fdb_info(&self, now: Timestamp) -> Vec<api::FdbEntryInfo>;
    fn neigh_info(&self, now: Timestamp) -> Vec<api::NeighEntryInfo>;
    fn peers_info(&self, now: Timestamp) -> Vec<api::PeerInfo>;
    fn network_stats(&self) -> Vec<api::NetworkStats>;
}

impl ApiViews for Switch {
    fn networks_info(&self) -> Vec<api::NetworkInfo> {
        list(&self.network_rows())
    }

    fn fdb_info(&self, now: Timestamp) -> Vec<api::FdbEntryInfo> {
        list(&self.fdb_rows(now))
    }

    fn neigh_info(&self, now: Timestamp) -> Vec<api::NeighEntryInfo> {
        list(&self.neigh_rows(now))
    }

    fn peers_info(&self, now: Timestamp) -> Vec<api::PeerInfo> {
        list(&self.peer_rows(now))
    }

    fn network_stats(&self) -> Vec<api::NetworkStats> {
        list(&self.network_stats_rows())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::switch::counters::{DnsCounters, NetworkCounters, NetworkEvents};
    use crate::switch::{DropReason, Vni};

    /// The families are flattened into the API's objects: the JSON keeps its fields in their
    /// order (scripts and tests parse it; fields are only ever added).
    #[test]
    fn counter_families_keep_the_json_shape() {
        let mut traffic = Counters::default();
        traffic.rx(100);
        traffic.drop(DropReason::UnknownVni);
        let row = NetworkStatsRow {
            name: "blue".into(),
            vni: Vni::new(42).unwrap(),
            counters: NetworkCounters {
                traffic,
                events: NetworkEvents {
                    flooded: 1,
                    proxy_arp_replies: 2,
                    fdb_learned: 3,
                    fdb_moves: 4,
                    fdb_full: 5,
                },
                dns: DnsCounters {
                    answered: 6,
                    ..Default::default()
                },
            },
        };
        let json = serde_json::to_string(&api::NetworkStats::from(&row)).unwrap();
        assert_eq!(
            json,
            r#"{"name":"blue","vni":42,"counters":{"rx_packets":1,"rx_bytes":100,"tx_packets":0,"tx_bytes":0,"drops":{"unknown_vni":1}},"flooded":1,"proxy_arp_replies":2,"fdb_learned":3,"fdb_moves":4,"fdb_full":5,"dns":{"answered":6,"nxdomain":0,"refused":0,"forwarded":0,"tcp_connections":0}}"#
        );
        let back: api::NetworkStats = serde_json::from_str(&json).unwrap();
        assert_eq!((back.events.fdb_full, back.dns.answered), (5, 6));

        let w = api::WorkerStats {
            worker: 1,
            cpu: None,
            counters: api::WorkerCounters {
                port_frames: 7,
                ..Default::default()
            },
        };
        let json = serde_json::to_string(&w).unwrap();
        assert_eq!(
            json,
            r#"{"worker":1,"port_frames":7,"underlay_datagrams":0,"updates_sent":0,"updates_applied":0,"updates_lost":0,"busy_poll_windows":0,"busy_poll_given_up":0,"busy_poll_gated":0,"wakeups":0,"throttled_batches":0,"esp_opened":0,"esp_refused":0}"#
        );
        assert_eq!(serde_json::from_str::<api::WorkerStats>(&json).unwrap(), w);
    }
}
