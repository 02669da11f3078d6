//! Live reload (`SIGHUP`, `vswitchctl reload`): a re-read node.toml applied to the running
//! topology as one change.
//!
//! `apply` compares the running switch spec with the file's and changes the topology in one
//! step: networks added or removed (a network with ports attached is not removed), MTUs and
//! the peers a network spans changed, peers added or removed. What cannot change while the
//! daemon runs — the [node] table, the table and port limits, anything about an encrypted network (its
//! SAs are made at start) — refuses the whole reload with a message saying what and why, and the
//! running configuration stays. Learned state of untouched networks is kept: workers only see a
//! new topology snapshot (crate::switch::topology).
//!
//! Thread-safety: runs on the control actor.

use crate::control::config::Config;
use crate::switch::{NetworkSpec, SwitchSpec, Topology, Vni};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReloadError {
    #[error("{0}")]
    Config(String),
    #[error("{what} changed: that needs a restart of vswitchd (the running configuration stays)")]
    NeedsRestart { what: String },
    #[error("network {network:?} is encrypted: {what} needs a restart of vswitchd (its SAs are made at start; the running configuration stays)")]
    Encrypted { network: String, what: String },
    #[error("{0} (the running configuration stays)")]
    Topology(#[from] crate::switch::TopologyError),
}

/// Checks what may not change between two files of the same daemon.
pub fn check_node(old: &Config, new: &Config) -> Result<(), ReloadError> {
    let (a, b) = (&old.node, &new.node);
    let changed = [
        ("[node] name", a.name != b.name),
        ("[node] underlay_ip", a.underlay_ip != b.underlay_ip),
        ("[node] vxlan_port", a.vxlan_port != b.vxlan_port),
        (
            "[node] control_socket",
            a.control_socket != b.control_socket,
        ),
        ("[node] workers", a.workers != b.workers),
        ("[node] underlay_mtu", a.underlay_mtu != b.underlay_mtu),
        ("[node] state_dir", a.state_dir != b.state_dir),
        (
            "[node] fdb_max_entries",
            a.fdb_max_entries != b.fdb_max_entries,
        ),
        ("[node] fdb_aging", a.fdb_aging != b.fdb_aging),
        // The metrics listener is bound at start (crate::control::metrics).
        ("[metrics] listen", old.metrics != new.metrics),
    ];
    if let Some((what, _)) = changed.iter().find(|(_, c)| *c) {
        return Err(ReloadError::NeedsRestart {
            what: what.to_string(),
        });
    }
    // Port limits are resolved into each port at attach (crate::switch::limits).
    if old.port_limits != new.port_limits {
        return Err(ReloadError::NeedsRestart {
            what: "[port_limits]".to_string(),
        });
    }
    for n in &new.networks {
        if old
            .network(&n.name)
            .is_some_and(|o| o.port_limits != n.port_limits)
        {
            return Err(ReloadError::NeedsRestart {
                what: format!("network {:?}'s port_limits", n.name),
            });
        }
    }
    Ok(())
}

/// Applies the difference between the running spec and `new` to `topo` (inside one
/// `Topology::change`); returns one line per change made.
pub fn apply(
    topo: &mut Topology,
    old: &SwitchSpec,
    new: &SwitchSpec,
) -> Result<Vec<String>, ReloadError> {
    let mut done = Vec::new();
    let find = |spec: &SwitchSpec, vni: Vni| spec.networks.iter().find(|n| n.vni == vni).cloned();
    let encrypted = |n: &NetworkSpec, what: &str| ReloadError::Encrypted {
        network: n.name.clone(),
        what: what.to_string(),
    };
    // Peers first in, last out: networks may name the new ones.
    for (name, addr) in &new.peers {
        match old.peers.iter().find(|(n, _)| n == name) {
            Some((_, a)) if a == addr => {}
            Some((_, a)) => {
                return Err(ReloadError::NeedsRestart {
                    what: format!("peer {name:?}'s underlay_ip ({a} -> {addr})"),
                })
            }
            None => {
                topo.add_peer(name, *addr)?;
                done.push(format!("peer {name} ({addr}) added"));
            }
        }
    }
    for n in &old.networks {
        let Some(m) = find(new, n.vni) else {
            if n.encrypted {
                return Err(encrypted(n, "removing it"));
            }
            topo.remove_network(n.vni)?;
            done.push(format!("network {} (vni {}) removed", n.name, n.vni));
            continue;
        };
        if m == *n {
            continue;
        }
        if n.encrypted || m.encrypted {
            return Err(encrypted(n, "changing it"));
        }
        if m.name != n.name || m.subnet != n.subnet {
            // Another network on the same VNI: only while nothing is attached to it.
            topo.remove_network(n.vni)?;
            topo.add_network(m.clone())?;
            done.push(format!(
                "network {} (vni {}) replaced by {} subnet {}",
                n.name, n.vni, m.name, m.subnet
            ));
            continue;
        }
        let ports = topo.network(n.vni).map_or(0, |t| t.ports().len());
        if m.mtu != n.mtu && ports > 0 {
            return Err(ReloadError::NeedsRestart {
                what: format!(
                    "network {:?}'s mtu ({} -> {}) while {ports} port(s) are attached: their interfaces keep the old MTU; detach them first, or",
                    n.name, n.mtu, m.mtu
                ),
            });
        }
        topo.update_network(n.vni, m.mtu, m.peers.clone())?;
        done.push(format!(
            "network {} (vni {}): mtu {}, peers [{}]",
            m.name,
            m.vni,
            m.mtu,
            m.peers
                .iter()
                .map(|(p, _)| p.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    for m in &new.networks {
        if find(old, m.vni).is_none() {
            if m.encrypted {
                return Err(encrypted(m, "adding it"));
            }
            topo.add_network(m.clone())?;
            done.push(format!(
                "network {} (vni {}, {}) added",
                m.name, m.vni, m.subnet
            ));
        }
    }
    for (name, addr) in &old.peers {
        if !new.peers.iter().any(|(n, _)| n == name) {
            if let Some(n) = old
                .networks
                .iter()
                .find(|n| n.encrypted && n.peers.iter().any(|(_, a)| a == addr))
            {
                return Err(encrypted(n, &format!("removing its peer {name:?}")));
            }
            topo.remove_peer(crate::switch::VtepAddr(addr.0))?;
            done.push(format!("peer {name} ({addr}) removed"));
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::switch::{PortId, VtepAddr};
    use std::net::Ipv4Addr;

    fn net(name: &str, vni: u32, peers: &[(&str, u8)]) -> NetworkSpec {
        NetworkSpec {
            name: name.into(),
            vni: Vni::of(vni),
            subnet: "10.0.9.0/24".parse().unwrap(),
            mtu: 1450,
            peers: peers
                .iter()
                .map(|(n, a)| (n.to_string(), VtepAddr(Ipv4Addr::new(192, 0, 2, *a))))
                .collect(),
            encrypted: false,
        }
    }

    fn spec(networks: Vec<NetworkSpec>, peers: &[(&str, u8)]) -> SwitchSpec {
        SwitchSpec {
            networks,
            peers: peers
                .iter()
                .map(|(n, a)| (n.to_string(), VtepAddr(Ipv4Addr::new(192, 0, 2, *a))))
                .collect(),
            fdb_max_entries: 16,
            aging_ms: 1000,
        }
    }

    #[test]
    fn networks_and_peers_come_and_go_in_one_change() {
        let old = spec(
            vec![net("blue", 42, &[("b", 2)]), net("red", 43, &[("b", 2)])],
            &[("b", 2)],
        );
        let new = spec(
            vec![
                net("blue", 42, &[("b", 2), ("c", 3)]),
                net("green", 44, &[("c", 3)]),
            ],
            &[("b", 2), ("c", 3)],
        );
        let mut t2 = Topology::new(old.clone());
        let done = apply(&mut t2, &old, &new).unwrap();
        assert_eq!(done.len(), 4, "{done:?}");
        let names: Vec<&str> = t2.networks().map(|n| n.spec.name.as_str()).collect();
        assert_eq!(names, ["blue", "green"]);
        assert_eq!(t2.network(Vni::of(42)).unwrap().vteps().len(), 2);
        assert_eq!(t2.peers().len(), 2);
    }

    #[test]
    fn a_network_in_use_or_encrypted_refuses_the_whole_reload() {
        let old = spec(vec![net("blue", 42, &[("b", 2)])], &[("b", 2)]);
        let mut t = Topology::new(old.clone());
        t.add_port(PortId(1), "c1", Vni::of(42), None).unwrap();
        let gone = spec(vec![], &[("b", 2)]);
        let e = apply(&mut t.clone(), &old, &gone).unwrap_err();
        assert!(e.to_string().contains("detach them first"), "{e}");
        let mut enc = net("blue", 42, &[("b", 2)]);
        enc.encrypted = true;
        let e = apply(&mut t.clone(), &old, &spec(vec![enc], &[("b", 2)])).unwrap_err();
        assert!(matches!(e, ReloadError::Encrypted { .. }), "{e}");
        let mut mtu = net("blue", 42, &[("b", 2)]);
        mtu.mtu = 1400;
        let e = apply(&mut t, &old, &spec(vec![mtu], &[("b", 2)])).unwrap_err();
        assert!(e.to_string().contains("mtu"), "{e}");
    }

    #[test]
    fn a_change_of_port_limits_needs_a_restart() {
        let file = |extra: &str| {
            Config::from_str(
                &format!(
                    "[node]\nname = \"a\"\nunderlay_ip = \"192.0.2.1\"\n\n[[network]]\nname = \"blue\"\nvni = 42\nsubnet = \"10.0.9.0/24\"\n{extra}"
                ),
                "node.toml",
            )
            .unwrap()
        };
        let old = file("");
        assert!(check_node(&old, &file("")).is_ok());
        let e = check_node(&old, &file("\n[port_limits]\nbum_rate = 10\n")).unwrap_err();
        assert!(e.to_string().contains("[port_limits]"), "{e}");
        let e = check_node(&old, &file("port_limits = { max_macs = 2 }\n")).unwrap_err();
        assert!(
            e.to_string().contains("network \"blue\"'s port_limits"),
            "{e}"
        );
    }

    #[test]
    fn a_new_metrics_listen_address_needs_a_restart() {
        let file = |metrics: &str| {
            let text = format!(
                "[node]\nname = \"a\"\nunderlay_ip = \"192.0.2.1\"\n[[network]]\nname = \"blue\"\n\
                 vni = 42\nsubnet = \"10.0.9.0/24\"\n{metrics}"
            );
            Config::from_str(&text, "node.toml").unwrap()
        };
        let off = file("");
        let on = file("[metrics]\nlisten = \"127.0.0.1:9474\"\n");
        assert!(check_node(&on, &on).is_ok());
        let e = check_node(&off, &on).unwrap_err();
        assert!(e.to_string().contains("[metrics] listen changed"), "{e}");
    }
}
