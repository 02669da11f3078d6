//! Text for the cluster commands: `network ls`, `network inspect`, and the store line printed
//! under `show peers`.

use super::{format_age, Table, L, R};
use crate::control::api::{ClusterNetworkInfo, ClusterStatusInfo, NetworkList};

/// One line: whether this node reaches etcd, and since when it does not.
pub fn render_store(s: &ClusterStatusInfo) -> String {
    let members = s.endpoints.join(",");
    if s.reachable {
        format!(
            "cluster store: reachable ({members}), revision {}, {} node(s) up, {} down\n",
            s.revision, s.nodes_up, s.nodes_down
        )
    } else {
        format!(
            "cluster store: UNREACHABLE ({members}) for {}{}: forwarding continues on what is \
             known; attaches and network changes fail until it answers\n",
            format_age(s.unreachable_for_secs.unwrap_or(0)),
            s.last_error
                .as_deref()
                .map(|e| format!(" (last error: {e})"))
                .unwrap_or_default()
        )
    }
}

fn mtu(n: &ClusterNetworkInfo) -> String {
    n.mtu.map_or("auto".to_string(), |m| m.to_string())
}

pub fn render_network_ls(l: &NetworkList) -> String {
    let mut out = String::new();
    if l.networks.is_empty() {
        out.push_str(
            "no cluster networks (make one with `vswitchctl network create NAME --subnet CIDR`)\n",
        );
    } else {
        let mut t = Table::new(&[
            ("NAME", L),
            ("VNI", R),
            ("SUBNET", L),
            ("MTU", R),
            ("ENCRYPTED", L),
            ("ENDPOINTS", R),
            ("HERE", L),
        ]);
        for n in &l.networks {
            t.row(vec![
                n.name.clone(),
                n.vni.to_string(),
                n.subnet.clone(),
                mtu(n),
                if n.encrypted { "yes" } else { "no" }.to_string(),
                n.endpoints.len().to_string(),
                if n.carried_here {
                    "yes"
                } else {
                    "no (see log)"
                }
                .to_string(),
            ]);
        }
        out.push_str(&t.render(""));
    }
    out.push_str(&render_store(&l.store));
    out
}

pub fn render_network_inspect(n: &ClusterNetworkInfo) -> String {
    let mut out = format!(
        "network {}\n  vni        {}\n  subnet     {}\n  mtu        {}\n  encrypted  {}\n  here       {}\n",
        n.name,
        n.vni,
        n.subnet,
        mtu(n),
        if n.encrypted { "yes" } else { "no" },
        if n.carried_here { "carried by this host" } else { "not carried by this host (see its log)" },
    );
    if let Some(dns) = &n.dns {
        out.push_str(&format!(
            "  dns        {dns} (answered by every host's switch)\n"
        ));
    }
    if n.endpoints.is_empty() {
        out.push_str("  endpoints  none\n");
        return out;
    }
    out.push_str(&format!("  endpoints  {}\n", n.endpoints.len()));
    let mut t = Table::new(&[("NAME", L), ("IP", L), ("MAC", L), ("HOST", L)]);
    for e in &n.endpoints {
        t.row(vec![
            e.name.clone(),
            e.ip.clone(),
            e.mac.clone(),
            e.host.clone(),
        ]);
    }
    out.push_str(&t.render("    "));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::api::ClusterEndpointInfo;

    fn net() -> ClusterNetworkInfo {
        ClusterNetworkInfo {
            name: "blue".into(),
            vni: 4096,
            subnet: "10.0.9.0/24".into(),
            mtu: None,
            encrypted: false,
            carried_here: true,
            dns: None,
            endpoints: vec![ClusterEndpointInfo {
                name: "web".into(),
                ip: "10.0.9.1".into(),
                mac: "02:00:00:00:00:01".into(),
                host: "node-a".into(),
            }],
        }
    }

    #[test]
    fn ls_and_inspect() {
        let store = ClusterStatusInfo {
            node: "node-a".into(),
            endpoints: vec!["http://192.0.2.100:2379".into()],
            reachable: false,
            unreachable_for_secs: Some(75),
            ..Default::default()
        };
        let out = render_network_ls(&NetworkList {
            store,
            networks: vec![net()],
        });
        assert_eq!(
            out.lines().next().unwrap(),
            "NAME   VNI  SUBNET        MTU  ENCRYPTED  ENDPOINTS  HERE"
        );
        assert!(out.contains("blue  4096  10.0.9.0/24  auto  no                 1  yes"));
        assert!(out.contains("cluster store: UNREACHABLE (http://192.0.2.100:2379) for 1m15s"));
        let i = render_network_inspect(&net());
        assert!(
            i.contains("    web   10.0.9.1  02:00:00:00:00:01  node-a\n"),
            "{i}"
        );
    }
}
