//! The control actor's cluster work: applying each new view of etcd to the topology, and the
//! requests that need the store (address claims around attach/detach, `network create|ls|
//! inspect|rm`, `cluster-status`, the cluster columns of `show peers`).
//!
//! Everything here runs on the actor thread. Writes to etcd block it for at most the agent's
//! request timeout per member (crate::cluster::agent::REQUEST_TIMEOUT); reads of what the
//! cluster holds come from the last view and never touch the store.

use super::{ControlError, Server};
use crate::cluster::agent::Cluster;
use crate::cluster::reconcile::{reconcile, Local, Outcome};
use crate::cluster::records::{EndpointRecord, NetworkRecord};
use crate::cluster::view::ClusterView;
use crate::control::api::{
    ClusterEndpointInfo, ClusterNetworkInfo, ClusterStatusInfo, NetworkList, PeerInfo,
};
use crate::switch::SwitchSpec;
use ipnet::Ipv4Net;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::SystemTime;

/// What the actor keeps of the cluster plane.
pub(super) struct ClusterPlane {
    pub(super) agent: Arc<Cluster>,
    pub(super) local: Local,
    /// The newest view applied.
    pub(super) view: Arc<ClusterView>,
    /// Warnings of the last reconcile, logged only when they change.
    warnings: BTreeSet<String>,
    /// Releases that failed (store away at detach), retried with every view.
    pending: Vec<(String, Ipv4Addr, String)>,
}

/// An attach on a cluster network: the address claimed and the name it was claimed under.
pub(super) struct Claimed {
    pub(super) network: String,
    pub(super) name: String,
    pub(super) addr: Ipv4Net,
}

fn secs_since(t: SystemTime) -> u64 {
    t.elapsed().map_or(0, |d| d.as_secs())
}

impl Server {
    /// Makes this actor a client of the cluster plane: it applies every view `agent` hands it.
    pub fn with_cluster(mut self, agent: Arc<Cluster>, local: Local) -> Server {
        self.cluster = Some(ClusterPlane {
            agent,
            local,
            view: Arc::new(ClusterView::default()),
            warnings: BTreeSet::new(),
            pending: Vec::new(),
        });
        self
    }

    /// node.toml's part of the topology (what reconcile must leave alone).
    pub(super) fn static_spec(&self) -> SwitchSpec {
        match &self.config {
            Some((cfg, mtu)) => cfg.switch_spec(*mtu),
            None => SwitchSpec {
                networks: Vec::new(),
                peers: Vec::new(),
                fdb_max_entries: crate::control::config::DEFAULT_FDB_MAX_ENTRIES,
                aging_ms: 300_000,
            },
        }
    }

    /// Applies a new view of the cluster: one topology change, published at once.
    pub(super) fn apply_view(&mut self, view: Arc<ClusterView>) {
        let base = self.static_spec();
        let Some(cp) = self.cluster.as_mut() else {
            return;
        };
        cp.view = view.clone();
        let local = cp.local.clone();
        let mut out = Outcome::default();
        let changed = self.topology.change(|t| {
            out = reconcile(t, &base, &view, &local);
            Ok(())
        });
        if let (Ok(t), false) = (changed, out.changes.is_empty()) {
            self.published.store(t.clone());
            self.topology = t;
            for c in &out.changes {
                tracing::info!(revision = view.revision, "cluster: {c}");
            }
        }
        let cp = self.cluster.as_mut().expect("checked above");
        let warnings: BTreeSet<String> = out.warnings.into_iter().collect();
        for w in warnings.difference(&cp.warnings) {
            tracing::warn!("cluster: {w}");
        }
        cp.warnings = warnings;
        let pending = std::mem::take(&mut cp.pending);
        for (net, ip, name) in pending {
            let agent = cp.agent.clone();
            let r = agent
                .unpublish_endpoint(&net, ip)
                .and_then(|_| agent.release(&net, ip, &name));
            if r.is_err() {
                cp.pending.push((net, ip, name));
            } else {
                tracing::info!(network = %net, %ip, "cluster: released an address held since an outage");
            }
        }
        // Ports the previous daemon left on cluster networks (server/restart.rs).
        self.adopt_pending();
    }

    /// The cluster's record of `network` if it is a cluster network this host carries.
    pub(super) fn cluster_network(
        &self,
        network: &str,
    ) -> Result<Option<NetworkRecord>, ControlError> {
        let Some(cp) = &self.cluster else {
            return Ok(None);
        };
        if self
            .static_spec()
            .networks
            .iter()
            .any(|n| n.name == network)
        {
            return Ok(None);
        }
        match cp.view.networks.get(network) {
            None => Ok(None),
            Some(r) if self.topology.network_by_name(network).is_some() => Ok(Some(r.clone())),
            Some(r) => Err(format!(
                "cluster network {network} (vni {}) is not carried on this host: {}",
                r.vni,
                cp.warnings
                    .iter()
                    .find(|w| w.contains(&format!("network {network} ")))
                    .cloned()
                    .unwrap_or_else(|| "see the daemon's log".to_string())
            )
            .into()),
        }
    }

    /// Before an attach: on a cluster network, claims the address (`ip`, or the next free one)
    /// and the endpoint name in etcd. `None`: not a cluster network; `ip` is then required.
    pub(super) fn claim_for_attach(
        &mut self,
        network: &str,
        ip: Option<&str>,
        name: &str,
    ) -> Result<Option<Claimed>, ControlError> {
        let Some(rec) = self.cluster_network(network)? else {
            return Ok(None);
        };
        let want = match ip {
            None => None,
            Some(s) => {
                let (addr, prefix) = match s.split_once('/') {
                    Some((a, p)) => (a, Some(p)),
                    None => (s, None),
                };
                let addr: Ipv4Addr = addr.parse().map_err(|_| {
                    format!("invalid --ip {s:?}: expected ADDR or ADDR/PREFIX such as 10.0.9.2")
                })?;
                if let Some(p) = prefix.filter(|p| *p != rec.subnet.prefix_len().to_string()) {
                    return Err(format!(
                        "--ip {s}: network {network} is {}, so the prefix is /{} (not /{p}); \
                         give the bare address or leave --ip out to be given one",
                        rec.subnet,
                        rec.subnet.prefix_len()
                    )
                    .into());
                }
                if crate::switch::service::service_addr(rec.subnet) == Some(addr) {
                    return Err(format!(
                        "--ip {addr} is network {network}'s own address (its DNS server): \
                         give a container another one"
                    )
                    .into());
                }
                if !rec.subnet.contains(&addr)
                    || addr == rec.subnet.network()
                    || addr == rec.subnet.broadcast()
                {
                    return Err(format!(
                        "--ip {addr} is not a host address of network {network}'s subnet {}",
                        rec.subnet
                    )
                    .into());
                }
                Some(addr)
            }
        };
        let agent = self
            .cluster
            .as_ref()
            .expect("cluster network")
            .agent
            .clone();
        let got = agent
            .claim(&rec, name, want)
            .map_err(ControlError::Cluster)?;
        Ok(Some(Claimed {
            network: network.to_string(),
            name: name.to_string(),
            addr: Ipv4Net::new(got, rec.subnet.prefix_len()).expect("prefix of a subnet"),
        }))
    }

    /// After an attach on a cluster network: publishes the endpoint, or (attach failed, or it
    /// cannot be published) gives the claim back. Returns the attach's own result.
    pub(super) fn finish_attach(
        &mut self,
        claimed: Claimed,
        attached: Result<serde_json::Value, ControlError>,
    ) -> Result<serde_json::Value, ControlError> {
        let agent = self.cluster.as_ref().expect("claimed").agent.clone();
        let release = |why: &str| {
            if let Err(e) = agent.release(&claimed.network, claimed.addr.addr(), &claimed.name) {
                tracing::warn!(network = %claimed.network, ip = %claimed.addr.addr(), "cluster: cannot release the address after {why}: {e}");
            }
        };
        let info = match attached {
            Ok(v) => v,
            Err(e) => {
                release("a failed attach");
                return Err(e);
            }
        };
        let rec = EndpointRecord {
            network: claimed.network.clone(),
            name: claimed.name.clone(),
            ip: claimed.addr.addr(),
            mac: info["mac"].as_str().unwrap_or_default().to_string(),
            host: agent.name(),
        };
        if let Err(e) = agent.publish_endpoint(rec) {
            let id = info["id"].as_u64().unwrap_or(0) as u32;
            let _ = self.remove_port(
                Arc::new(
                    move |pid: crate::switch::PortId, _: &crate::dataplane::PortMeta| pid.0 == id,
                ),
                format!("port {id}"),
            );
            let _ = agent.unpublish_endpoint(&claimed.network, claimed.addr.addr());
            release("an endpoint that could not be published");
            return Err(ControlError::Cluster(format!(
                "the container was not attached: {e}"
            )));
        }
        Ok(info)
    }

    /// After a detach: withdraws the endpoint and gives its address and name back.
    pub(super) fn finish_detach(&mut self, info: &serde_json::Value) {
        let network = info["network"].as_str().unwrap_or_default().to_string();
        let Ok(Some(_)) = self.cluster_network(&network) else {
            return;
        };
        let (Some(ip), Some(name)) = (
            info["ip"]
                .as_str()
                .and_then(|s| s.split('/').next())
                .and_then(|s| s.parse::<Ipv4Addr>().ok()),
            info["name"].as_str().map(str::to_string),
        ) else {
            return;
        };
        let cp = self.cluster.as_mut().expect("cluster network");
        let r = cp
            .agent
            .unpublish_endpoint(&network, ip)
            .and_then(|_| cp.agent.release(&network, ip, &name));
        if let Err(e) = r {
            tracing::warn!(%network, %ip, "cluster: detached here, but {e}; retried when the store answers");
            cp.pending.push((network, ip, name));
        }
    }

    fn need_cluster(&self) -> Result<&ClusterPlane, ControlError> {
        self.cluster.as_ref().ok_or_else(|| {
            "this vswitchd has no [cluster] table in its node.toml: its networks are the \
             [[network]] tables of that file (see `vswitchctl show networks`)"
                .into()
        })
    }

    pub(super) fn cluster_status(&self) -> Result<ClusterStatusInfo, ControlError> {
        let cp = self.need_cluster()?;
        let s = cp.agent.status();
        Ok(ClusterStatusInfo {
            node: cp.local.name.clone(),
            endpoints: s.endpoints,
            reachable: s.reachable,
            unreachable_for_secs: s.unreachable_since.map(|t| {
                let now = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                now.saturating_sub(t)
            }),
            last_error: s.last_error,
            revision: cp.view.revision,
            nodes_up: cp.view.nodes.len() as u32,
            nodes_down: cp.view.down.len() as u32,
        })
    }

    fn network_info(&self, r: &NetworkRecord) -> ClusterNetworkInfo {
        let cp = self.cluster.as_ref().expect("cluster mode");
        let carried = self
            .topology
            .network_by_name(&r.name)
            .is_some_and(|n| n.vni().get() == r.vni);
        ClusterNetworkInfo {
            name: r.name.clone(),
            vni: r.vni,
            subnet: r.subnet.to_string(),
            mtu: r.mtu,
            encrypted: r.encrypted,
            carried_here: carried,
            dns: crate::switch::service::service_addr(r.subnet).map(|ip| ip.to_string()),
            endpoints: cp
                .view
                .endpoints_of(&r.name)
                .map(|e| ClusterEndpointInfo {
                    name: e.name.clone(),
                    ip: e.ip.to_string(),
                    mac: e.mac.clone(),
                    host: e.host.clone(),
                })
                .collect(),
        }
    }

    pub(super) fn network_ls(&self) -> Result<NetworkList, ControlError> {
        let cp = self.need_cluster()?;
        Ok(NetworkList {
            store: self.cluster_status()?,
            networks: cp
                .view
                .networks
                .values()
                .map(|r| self.network_info(r))
                .collect(),
        })
    }

    pub(super) fn network_inspect(&self, name: &str) -> Result<ClusterNetworkInfo, ControlError> {
        let cp = self.need_cluster()?;
        let r = cp.view.networks.get(name).ok_or_else(|| {
            format!("no cluster network named {name:?} (see `vswitchctl network ls`)")
        })?;
        Ok(self.network_info(r))
    }

    pub(super) fn network_create(
        &mut self,
        name: &str,
        subnet: &str,
        vni: Option<u32>,
        mtu: Option<u32>,
        encrypted: bool,
    ) -> Result<ClusterNetworkInfo, ControlError> {
        use crate::control::config::values::{
            check_mtu, check_network_name, parse_subnet, vni_from,
        };
        let cp = self.need_cluster()?;
        check_network_name(name).map_err(|e| format!("network name {name:?}: {e}"))?;
        let subnet = parse_subnet(subnet).map_err(|e| format!("--subnet: {e}"))?;
        let vni = vni
            .map(|v| vni_from(v as i64).map_err(|e| format!("--vni: {e}")))
            .transpose()?;
        let mtu = mtu
            .map(|m| check_mtu(m as i64).map_err(|e| format!("--mtu: {e}")))
            .transpose()?;
        let (overhead, what) = if encrypted {
            (crate::control::config::ESP_OVERHEAD, "VXLAN in ESP")
        } else {
            (crate::control::config::VXLAN_OVERHEAD, "VXLAN")
        };
        let mut max = cp.local.underlay_mtu.saturating_sub(overhead);
        if encrypted {
            max &= !3;
        }
        if let Some(m) = mtu.filter(|m| *m > max) {
            return Err(format!(
                "--mtu {m} does not fit this host's underlay: at most {max} (underlay MTU {} less {overhead} bytes of {what})",
                cp.local.underlay_mtu
            )
            .into());
        }
        if encrypted && !cp.local.esp {
            return Err(
                "--encrypted needs the network's secret to travel through etcd, which \
                        vswitchd does only over TLS with a client certificate: give [cluster] \
                        https:// etcd_endpoints, ca_file, cert_file and key_file (and run etcd \
                        with --client-cert-auth), or make the network a [[network]] with \
                        `encrypted = true` in every host's node.toml"
                    .into(),
            );
        }
        if let Some(s) = self
            .static_spec()
            .networks
            .iter()
            .find(|s| s.name == name || Some(s.vni) == vni)
        {
            return Err(format!(
                "this host's node.toml already has network {} (vni {}): a cluster network needs \
                 its own name and VNI",
                s.name, s.vni
            )
            .into());
        }
        let rec = NetworkRecord {
            name: name.to_string(),
            vni: vni.map_or(0, |v| v.get()),
            subnet,
            mtu,
            encrypted,
        };
        let agent = cp.agent.clone();
        let rec = agent
            .network_create(rec, vni.is_none())
            .map_err(ControlError::Cluster)?;
        // Carry it here at once, ahead of the watch, so that an attach right after works.
        let mut view = (*self.cluster.as_ref().expect("checked").view).clone();
        view.networks.insert(rec.name.clone(), rec.clone());
        if rec.encrypted {
            if let Ok(Some(secret)) = agent.secret(&rec.name) {
                view.secrets.insert(rec.name.clone(), secret);
            }
        }
        self.apply_view(Arc::new(view));
        Ok(self.network_info(&rec))
    }

    pub(super) fn network_rm(&mut self, name: &str) -> Result<serde_json::Value, ControlError> {
        let cp = self.need_cluster()?;
        let agent = cp.agent.clone();
        let rec = agent.network_rm(name).map_err(ControlError::Cluster)?;
        let mut view = (*self.cluster.as_ref().expect("checked").view).clone();
        view.networks.remove(name);
        self.apply_view(Arc::new(view));
        Ok(serde_json::json!({ "removed": rec.name, "vni": rec.vni }))
    }

    /// `show peers` in cluster mode: every peer with its state in etcd, and the nodes that
    /// went down.
    pub(super) fn cluster_peers(&self, mut peers: Vec<PeerInfo>) -> Vec<PeerInfo> {
        let Some(cp) = &self.cluster else {
            return peers;
        };
        let ages = if cp.agent.status().reachable {
            cp.agent.keepalive_ages(&cp.view)
        } else {
            Default::default()
        };
        for p in &mut peers {
            let up = cp
                .view
                .nodes
                .values()
                .find(|n| n.underlay_ip.to_string() == p.underlay_ip);
            p.state = Some(if up.is_some() { "up" } else { "static" }.to_string());
            p.keepalive_age_secs = up.and_then(|n| ages.get(&n.name).copied());
        }
        for (name, (rec, since)) in &cp.view.down {
            if peers
                .iter()
                .any(|p| p.underlay_ip == rec.underlay_ip.to_string())
            {
                continue;
            }
            peers.push(PeerInfo {
                name: name.clone(),
                underlay_ip: rec.underlay_ip.to_string(),
                networks: Vec::new(),
                counters: Default::default(),
                last_seen_secs: None,
                state: Some("down".to_string()),
                down_for_secs: Some(secs_since(*since)),
                keepalive_age_secs: None,
                probe: None,
                esp_probe: None,
            });
        }
        peers
    }
}
