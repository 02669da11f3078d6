//! Makes the topology say what the cluster says: one pure step from (topology, static
//! configuration, cluster view) to the changed topology, run by the control actor inside one
//! `Topology::change` every time the view changes.
//!
//! - Peers: the static `[[peer]]`s, plus every node registered in etcd but this one.
//! - Networks: the static `[[network]]`s as the file says; every cluster network spans every
//!   registered node. A cluster network whose name or VNI a static one already uses is skipped
//!   with a warning (the file wins on this host). One that disappears from etcd is removed
//!   here too, unless containers are still attached here.
//! - Endpoints: every endpoint of a cluster network published by another registered node is
//!   installed at that node's VTEP (so the first ARP is answered on the container's own host);
//!   endpoints whose host left, or that left etcd, are removed; a move replaces the old
//!   location in the same step.
//!
//! Nothing here fails: what cannot be applied is skipped and reported in `Outcome::warnings`.
//! The same view applied twice changes nothing the second time (`Outcome::changes` is empty).
//!
//! Thread-safety: pure; runs on the control actor.

use super::view::ClusterView;
use crate::switch::fdb::Location;
use crate::switch::{NetworkSpec, SwitchSpec, Topology, Vni, VtepAddr};
use crate::wire::MacAddr;
use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

/// This node, as reconcile needs it.
#[derive(Debug, Clone)]
pub struct Local {
    pub name: String,
    pub addr: VtepAddr,
    /// For the MTU of cluster networks that do not set one.
    pub underlay_mtu: u32,
    /// Whether this host can carry encrypted cluster networks: it runs ESP, and talks to etcd
    /// over TLS with a client certificate (the only way their secrets travel).
    pub esp: bool,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// One line per change made, for the log.
    pub changes: Vec<String>,
    /// One line per thing skipped, and why.
    pub warnings: Vec<String>,
}

/// Applies `view` to `t`; see the module documentation.
pub fn reconcile(t: &mut Topology, base: &SwitchSpec, view: &ClusterView, me: &Local) -> Outcome {
    let mut out = Outcome::default();
    // Peers: static ones first (their names win), then the registered nodes.
    let mut want: BTreeMap<VtepAddr, String> = BTreeMap::new();
    for (name, addr) in &base.peers {
        want.insert(*addr, name.clone());
    }
    let mut nodes: Vec<(String, VtepAddr)> = Vec::new();
    for n in view.nodes.values() {
        let addr = VtepAddr(n.underlay_ip);
        if n.name == me.name || addr == me.addr {
            continue;
        }
        want.entry(addr).or_insert_with(|| n.name.clone());
        nodes.push((n.name.clone(), addr));
    }
    let have: Vec<VtepAddr> = t.peers().iter().map(|p| p.addr).collect();
    for addr in have {
        if !want.contains_key(&addr) && t.remove_peer(addr).is_ok() {
            out.changes.push(format!("peer {addr} removed"));
        }
    }
    for (addr, name) in &want {
        if t.peer(*addr).is_none() && t.add_peer(name, *addr).is_ok() {
            out.changes.push(format!("peer {name} ({addr}) added"));
        }
    }

    // Networks.
    let is_static = |vni: Vni| base.networks.iter().any(|n| n.vni == vni);
    let mut wanted: HashMap<Vni, NetworkSpec> = HashMap::new();
    let mut secrets: HashMap<Vni, crate::switch::NetSecret> = HashMap::new();
    for r in view.networks.values() {
        let Some(vni) = Vni::new(r.vni).filter(|v| v.get() != 0) else {
            out.warnings
                .push(format!("cluster network {}: invalid vni {}", r.name, r.vni));
            continue;
        };
        if let Some(s) = base
            .networks
            .iter()
            .find(|s| s.vni == vni || s.name == r.name)
        {
            out.warnings.push(format!(
                "cluster network {} (vni {}) is not carried here: node.toml's network {} (vni {}) uses its name or VNI",
                r.name, r.vni, s.name, s.vni
            ));
            continue;
        }
        let secret = if r.encrypted {
            if !me.esp {
                out.warnings.push(format!(
                    "cluster network {} is encrypted: not carried here (that needs [cluster] over https with a client certificate: its secret travels only over TLS)",
                    r.name
                ));
                continue;
            }
            let Some(secret) = view.secrets.get(&r.name) else {
                out.warnings.push(format!(
                    "cluster network {} is encrypted but its secret is not readable: not carried here",
                    r.name
                ));
                continue;
            };
            // An SPI carries the VNI modulo 4096: two encrypted networks must differ in it.
            let id = vni.get() % 4096;
            let clash = base
                .networks
                .iter()
                .filter(|s| s.encrypted)
                .map(|s| (s.name.clone(), s.vni))
                .chain(
                    wanted
                        .values()
                        .filter(|w| w.encrypted)
                        .map(|w| (w.name.clone(), w.vni)),
                )
                .find(|(_, v)| v.get() % 4096 == id);
            if let Some((other, v)) = clash {
                out.warnings.push(format!(
                    "cluster network {} (vni {vni}) is not carried here: encrypted network {other} (vni {v}) has the same VNI modulo 4096, which ESP SPIs carry",
                    r.name
                ));
                continue;
            }
            Some(secret.clone())
        } else {
            None
        };
        let overhead = if r.encrypted {
            crate::control::config::ESP_OVERHEAD
        } else {
            crate::control::config::VXLAN_OVERHEAD
        };
        let mut max = me.underlay_mtu.saturating_sub(overhead);
        if r.encrypted {
            max &= !3;
        }
        let mtu = r.mtu.unwrap_or(max);
        if mtu > max {
            out.warnings.push(format!(
                "cluster network {}: mtu {mtu} does not fit this host's underlay (at most {max}); not carried here",
                r.name
            ));
            continue;
        }
        if let Some(s) = secret {
            secrets.insert(vni, s);
        }
        wanted.insert(
            vni,
            NetworkSpec {
                name: r.name.clone(),
                vni,
                subnet: r.subnet,
                mtu,
                peers: nodes.clone(),
                encrypted: r.encrypted,
            },
        );
    }
    let present: Vec<(Vni, NetworkSpec)> =
        t.networks().map(|n| (n.vni(), n.spec.clone())).collect();
    for (vni, spec) in present {
        if is_static(vni) {
            continue;
        }
        let keep = wanted.get(&vni).is_some_and(|w| {
            w.name == spec.name && w.subnet == spec.subnet && w.encrypted == spec.encrypted
        });
        if keep {
            continue;
        }
        match t.remove_network(vni) {
            Ok(_) => out
                .changes
                .push(format!("network {} (vni {vni}) removed", spec.name)),
            Err(e) => out.warnings.push(format!(
                "network {} left etcd but stays here: {e}",
                spec.name
            )),
        }
    }
    let mut vnis: Vec<&Vni> = wanted.keys().collect();
    vnis.sort();
    for vni in vnis {
        let w = &wanted[vni];
        match t.network(*vni).map(|n| n.spec.clone()) {
            None => match t.add_network(w.clone()) {
                Ok(()) => out.changes.push(format!(
                    "network {} (vni {vni}, {}) added",
                    w.name, w.subnet
                )),
                Err(e) => out
                    .warnings
                    .push(format!("cluster network {}: {e}", w.name)),
            },
            Some(s) if s.name == w.name && s.subnet == w.subnet && s.encrypted == w.encrypted => {
                let idle = t.network(*vni).is_some_and(|n| n.ports().is_empty());
                let mtu = if idle { w.mtu } else { s.mtu };
                if mtu != w.mtu {
                    out.warnings.push(format!(
                        "network {}: mtu {} -> {} not applied while containers are attached here",
                        w.name, s.mtu, w.mtu
                    ));
                }
                if s.peers != w.peers || s.mtu != mtu {
                    let _ = t.update_network(*vni, mtu, w.peers.clone());
                    out.changes.push(format!(
                        "network {} now spans {} peer(s), mtu {mtu}",
                        w.name,
                        w.peers.len()
                    ));
                }
            }
            Some(_) => {} // kept above: could not be removed
        }
    }

    for (vni, w) in &wanted {
        if t.network(*vni).map(|n| &n.spec.name) == Some(&w.name) {
            let had = t.secrets().get(vni).cloned();
            let want = secrets.get(vni).cloned();
            if had != want {
                t.set_secret(*vni, want);
                out.changes
                    .push(format!("network {}: encryption keys set", w.name));
            }
        }
    }

    // Endpoints of cluster networks, published by the other registered nodes.
    let vtep_of: HashMap<&str, VtepAddr> = nodes.iter().map(|(n, a)| (n.as_str(), *a)).collect();
    for (vni, w) in &wanted {
        if t.network(*vni).map(|n| &n.spec.name) != Some(&w.name) {
            continue;
        }
        let mut desired: HashMap<MacAddr, (String, Ipv4Addr, VtepAddr)> = HashMap::new();
        for e in view.endpoints_of(&w.name) {
            if e.host == me.name {
                continue;
            }
            let Some(vtep) = vtep_of.get(e.host.as_str()) else {
                continue; // its host is not registered: gone with it
            };
            match e.mac.parse::<MacAddr>() {
                Ok(mac) if mac.is_unicast_source() => {
                    desired.insert(mac, (e.name.clone(), e.ip, *vtep));
                }
                _ => out.warnings.push(format!(
                    "endpoint {} on {}: invalid MAC {:?}",
                    e.ip, w.name, e.mac
                )),
            }
        }
        let net = t.network(*vni).expect("checked above");
        let stale: Vec<MacAddr> = net
            .endpoints()
            .filter(|e| match e.at {
                Location::Vtep(v) => desired.get(&e.mac).map_or(true, |(n, ip, at)| {
                    *at != v || Some(*ip) != e.ip || *n != e.name
                }),
                Location::Port(_) => false,
            })
            .map(|e| e.mac)
            .collect();
        let missing: Vec<(MacAddr, (String, Ipv4Addr, VtepAddr))> = desired
            .into_iter()
            .filter(|(mac, (n, ip, at))| {
                !net.endpoint(*mac).is_some_and(|e| {
                    e.at == Location::Vtep(*at) && e.ip == Some(*ip) && e.name == *n
                })
            })
            .collect();
        let mut removed = 0;
        for mac in stale {
            // A move is replaced below in one step; only what is gone is removed here.
            if !missing.iter().any(|(m, _)| *m == mac)
                && t.remove_remote_endpoint(*vni, mac).is_ok()
            {
                removed += 1;
            }
        }
        // An address that moved to another MAC: the old holder goes first.
        let mut added = 0;
        for (mac, (name, ip, vtep)) in missing {
            let old = t
                .network(*vni)
                .and_then(|n| n.endpoint_by_ip(ip))
                .filter(|e| e.mac != mac && matches!(e.at, Location::Vtep(_)))
                .map(|e| e.mac);
            if let Some(old) = old {
                let _ = t.remove_remote_endpoint(*vni, old);
                removed += 1;
            }
            match t.add_remote_endpoint(*vni, &name, mac, Some(ip), vtep) {
                Ok(()) => added += 1,
                Err(e) => out
                    .warnings
                    .push(format!("endpoint {name} ({ip}) of {}: {e}", w.name)),
            }
        }
        if added + removed > 0 {
            out.changes.push(format!(
                "network {}: {added} endpoint(s) installed, {removed} removed",
                w.name
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::records::{EndpointRecord, NetworkRecord, NodeRecord};

    fn node(name: &str, last: u8) -> NodeRecord {
        NodeRecord {
            name: name.into(),
            underlay_ip: Ipv4Addr::new(192, 0, 2, last),
            vxlan_port: 4789,
            version: "t".into(),
            boot_id: "b".into(),
            started: 0,
            lease: 1,
            address_lease: 2,
        }
    }

    fn ep(name: &str, last: u8, host: &str) -> EndpointRecord {
        EndpointRecord {
            network: "blue".into(),
            name: name.into(),
            ip: Ipv4Addr::new(10, 0, 9, last),
            mac: format!("02:00:00:00:00:{last:02x}"),
            host: host.into(),
        }
    }

    fn view(nodes: &[NodeRecord], eps: &[EndpointRecord]) -> ClusterView {
        let mut v = ClusterView::default();
        for n in nodes {
            v.nodes.insert(n.name.clone(), n.clone());
        }
        v.networks.insert(
            "blue".into(),
            NetworkRecord {
                name: "blue".into(),
                vni: 4096,
                subnet: "10.0.9.0/24".parse().unwrap(),
                mtu: None,
                encrypted: false,
            },
        );
        for e in eps {
            v.endpoints.insert((e.network.clone(), e.ip), e.clone());
        }
        v
    }

    fn base() -> SwitchSpec {
        SwitchSpec {
            networks: vec![],
            peers: vec![],
            fdb_max_entries: 1024,
            aging_ms: 300_000,
        }
    }

    fn me() -> Local {
        Local {
            name: "a".into(),
            addr: VtepAddr(Ipv4Addr::new(192, 0, 2, 1)),
            underlay_mtu: 1500,
            esp: false,
        }
    }

    const BLUE: Vni = match Vni::new(4096) {
        Some(v) => v,
        None => panic!(),
    };

    fn at(t: &Topology, last: u8) -> Option<Location> {
        t.network(BLUE)?
            .endpoint_by_ip(Ipv4Addr::new(10, 0, 9, last))
            .map(|e| e.at)
    }

    #[test]
    fn nodes_become_peers_networks_span_them_and_remote_endpoints_are_installed() {
        let mut t = Topology::new(base());
        let (a, b, c) = (node("a", 1), node("b", 2), node("c", 3));
        let v = view(&[a, b.clone(), c], &[ep("x", 5, "b"), ep("y", 6, "a")]);
        let out = reconcile(&mut t, &base(), &v, &me());
        assert!(out.warnings.is_empty(), "{:?}", out.warnings);
        assert_eq!(t.peers().len(), 2, "this node is not its own peer");
        let n = t.network(BLUE).expect("cluster network carried");
        assert_eq!(n.spec.mtu, 1450);
        assert_eq!(n.vteps().len(), 2);
        assert_eq!(at(&t, 5), Some(Location::Vtep(VtepAddr(b.underlay_ip))));
        assert_eq!(
            at(&t, 6),
            None,
            "own endpoints come from attach, not from etcd"
        );
        // The same view again changes nothing.
        let again = reconcile(&mut t, &base(), &v, &me());
        assert_eq!(again, Outcome::default());
    }

    #[test]
    fn a_host_that_leaves_takes_its_endpoints_and_a_move_replaces_the_location() {
        let mut t = Topology::new(base());
        let (a, b, c) = (node("a", 1), node("b", 2), node("c", 3));
        let v = view(
            &[a.clone(), b.clone(), c.clone()],
            &[ep("x", 5, "b"), ep("z", 7, "c")],
        );
        reconcile(&mut t, &base(), &v, &me());
        assert!(at(&t, 7).is_some());
        // c's lease expired: its record and endpoints are gone from the view.
        let v = view(&[a.clone(), b.clone()], &[ep("x", 5, "b")]);
        reconcile(&mut t, &base(), &v, &me());
        assert_eq!(at(&t, 7), None);
        assert!(t.peer(VtepAddr(c.underlay_ip)).is_none());
        // x moves from b to c (same MAC, same address): one step, new location.
        let v = view(&[a, b, c.clone()], &[ep("x", 5, "c")]);
        let out = reconcile(&mut t, &base(), &v, &me());
        assert_eq!(
            at(&t, 5),
            Some(Location::Vtep(VtepAddr(c.underlay_ip))),
            "{out:?}"
        );
    }

    #[test]
    fn an_address_reused_by_another_mac_replaces_the_old_holder() {
        let mut t = Topology::new(base());
        let (a, b, c) = (node("a", 1), node("b", 2), node("c", 3));
        reconcile(
            &mut t,
            &base(),
            &view(&[a.clone(), b, c.clone()], &[ep("x", 5, "b")]),
            &me(),
        );
        let mut reused = ep("w", 5, "c");
        reused.mac = "02:00:00:00:00:99".into();
        reconcile(&mut t, &base(), &view(&[a, c.clone()], &[reused]), &me());
        let e = t
            .network(BLUE)
            .unwrap()
            .endpoint_by_ip(Ipv4Addr::new(10, 0, 9, 5))
            .unwrap();
        assert_eq!(e.mac.to_string(), "02:00:00:00:00:99");
        assert_eq!(e.at, Location::Vtep(VtepAddr(c.underlay_ip)));
    }

    #[test]
    fn static_networks_win_and_unusable_cluster_networks_are_skipped_with_a_reason() {
        let mut b = base();
        b.networks.push(NetworkSpec {
            name: "blue".into(),
            vni: Vni::new(42).unwrap(),
            subnet: "10.0.9.0/24".parse().unwrap(),
            mtu: 1450,
            peers: vec![],
            encrypted: false,
        });
        let mut t = Topology::new(b.clone());
        let mut v = view(&[node("a", 1), node("b", 2)], &[]);
        v.networks.insert(
            "big".into(),
            NetworkRecord {
                name: "big".into(),
                vni: 5000,
                subnet: "10.1.0.0/24".parse().unwrap(),
                mtu: Some(9000),
                encrypted: false,
            },
        );
        let out = reconcile(&mut t, &b, &v, &me());
        assert!(t.network(BLUE).is_none());
        assert!(
            t.network(Vni::new(42).unwrap()).is_some(),
            "the static one stays"
        );
        assert!(
            out.warnings
                .iter()
                .any(|w| w.contains("node.toml's network blue")),
            "{out:?}"
        );
        assert!(
            out.warnings
                .iter()
                .any(|w| w.contains("mtu 9000 does not fit")),
            "{out:?}"
        );
    }
}
