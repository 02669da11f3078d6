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
        if r.encrypted {
            out.warnings.push(format!(
                "cluster network {} is encrypted: not carried here (this vswitchd makes ESP SAs only for node.toml's networks)",
                r.name
            ));
            continue;
        }
        let max = me
            .underlay_mtu
            .saturating_sub(crate::control::config::VXLAN_OVERHEAD);
        let mtu = r.mtu.unwrap_or(max);
        if mtu > max {
            out.warnings.push(format!(
                "cluster network {}: mtu {mtu} does not fit this host's underlay (at most {max}); not carried here",
                r.name
            ));
            continue;
        }
        wanted.insert(
            vni,
            NetworkSpec {
                name: r.name.clone(),
                vni,
                subnet: r.subnet,
                mtu,
                peers: nodes.clone(),
                encrypted: false,
            },
        );
    }
    let present: Vec<(Vni, NetworkSpec)> =
        t.networks().map(|n| (n.vni(), n.spec.clone())).collect();
    for (vni, spec) in present {
        if is_static(vni) {
            continue;
        }
        let keep = wanted
            .get(&vni)
            .is_some_and(|w| w.name == spec.name && w.subnet == spec.subnet);
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
            Some(s) if s.name == w.name && s.subnet == w.subnet => {
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
