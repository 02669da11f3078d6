//! `show peers`: one row per peer with its traffic, when we last heard from it, what the
//! prober found (crate::control::probe: reachable on the VXLAN port, and the ESP port when
//! it shares an encrypted network, with the round trip time), and in cluster mode its state
//! in etcd.

use super::{format_age, list_or_dash, Table, L, R};
use crate::control::api::{PeerInfo, ProbeInfo};

/// `ok 0.12ms`, `NO ANSWER 6s`, or `-` when not probed yet.
pub fn probe_cell(p: Option<&ProbeInfo>) -> String {
    match p {
        None => "-".to_string(),
        Some(p) if p.reachable => match p.rtt_ms {
            Some(ms) => format!("ok {ms:.2}ms"),
            None => "ok".to_string(),
        },
        Some(p) => match p.silent_for_secs {
            Some(s) => format!("NO ANSWER {}", format_age(s)),
            None => "NO ANSWER".to_string(),
        },
    }
}

pub fn render_peers(peers: &[PeerInfo]) -> String {
    if peers.is_empty() {
        return "no peers\n".to_string();
    }
    // Cluster mode: each node's state in etcd too.
    let cluster = peers.iter().any(|p| p.state.is_some());
    let probed = peers.iter().any(|p| p.probe.is_some());
    let esp = peers.iter().any(|p| p.esp_probe.is_some());
    let mut cols = vec![
        ("NAME", L),
        ("UNDERLAY", L),
        ("NETWORKS", L),
        ("RX", R),
        ("TX", R),
        ("LAST_SEEN", R),
    ];
    if probed {
        cols.push(("PROBE", L));
    }
    if esp {
        cols.push(("ESP_PROBE", L));
    }
    if cluster {
        cols.extend([("STATE", L), ("KEEPALIVE", R)]);
    }
    let mut t = Table::new(&cols);
    for p in peers {
        let mut row = vec![
            p.name.clone(),
            p.underlay_ip.clone(),
            list_or_dash(&p.networks),
            p.counters.rx_packets.to_string(),
            p.counters.tx_packets.to_string(),
            match p.last_seen_secs {
                Some(s) => format!("{} ago", format_age(s)),
                None => "never".to_string(),
            },
        ];
        if probed {
            row.push(probe_cell(p.probe.as_ref()));
        }
        if esp {
            row.push(probe_cell(p.esp_probe.as_ref()));
        }
        if cluster {
            row.push(match (p.state.as_deref(), p.down_for_secs) {
                (Some("down"), Some(s)) => format!("down {} ago", format_age(s)),
                (Some(st), _) => st.to_string(),
                (None, _) => "-".to_string(),
            });
            row.push(match p.keepalive_age_secs {
                Some(s) => format!("{} ago", format_age(s)),
                None => "-".to_string(),
            });
        }
        t.row(row);
    }
    t.render("")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::api::Counters;

    fn peer(name: &str, ip: &str) -> PeerInfo {
        PeerInfo {
            name: name.into(),
            underlay_ip: ip.into(),
            networks: vec!["blue".into()],
            counters: Counters::default(),
            last_seen_secs: None,
            state: None,
            down_for_secs: None,
            keepalive_age_secs: None,
            probe: None,
            esp_probe: None,
        }
    }

    #[test]
    fn peers_table() {
        let mut b = peer("node-b", "192.0.2.2");
        b.networks = vec!["blue".into(), "red".into()];
        b.counters.rx_packets = 5;
        b.counters.tx_packets = 6;
        b.last_seen_secs = Some(2);
        let out = render_peers(&[b, peer("node-c", "192.0.2.3")]);
        assert_eq!(
            out,
            "NAME    UNDERLAY   NETWORKS  RX  TX  LAST_SEEN\n\
             node-b  192.0.2.2  blue,red   5   6     2s ago\n\
             node-c  192.0.2.3  blue       0   0      never\n"
        );
    }

    #[test]
    fn probe_columns() {
        let mut b = peer("node-b", "192.0.2.2");
        b.probe = Some(ProbeInfo {
            port: 4789,
            reachable: true,
            rtt_ms: Some(0.123),
            last_answer_secs: Some(1),
            silent_for_secs: None,
        });
        let mut c = peer("node-c", "192.0.2.3");
        c.probe = Some(ProbeInfo {
            port: 4789,
            reachable: false,
            rtt_ms: None,
            last_answer_secs: None,
            silent_for_secs: Some(6),
        });
        assert_eq!(
            render_peers(&[b, c]),
            "NAME    UNDERLAY   NETWORKS  RX  TX  LAST_SEEN  PROBE\n\
             node-b  192.0.2.2  blue       0   0      never  ok 0.12ms\n\
             node-c  192.0.2.3  blue       0   0      never  NO ANSWER 6s\n"
        );
    }
}
