//! The control actor's Docker work: the calls of the Docker plugin (crate::docker), which
//! carry vswitch's names rather than Docker's IDs by the time they get here.
//!
//! Life of a container's endpoint, in libnetwork's order:
//! 1. `RequestAddress` hands out an address: on a cluster network a claim in etcd under a
//!    name of our own (`docker-` and random hex: the container's name is not known yet), on
//!    a static network the lowest free address. Held here until `ReleaseAddress`.
//! 2. `CreateEndpoint` records the endpoint with its address and MAC (made here when Docker
//!    gives none: the same stable MAC `attach-namespace` would give).
//! 3. `Join` makes the TAP in our namespace (crate::control::attach::create_host_port_queues)
//!    and keeps its queues; dockerd moves it into the container and addresses it.
//! 4. `Named`, once dockerd has told the front-end the container's name: the claim takes that
//!    name, the TAP becomes a port with the endpoint's MAC and address (port security on),
//!    and the endpoint is published to the cluster under that name.
//! 5. `DeleteEndpoint` removes the port (which removes the TAP) and the published record;
//!    `ReleaseAddress` gives the address back.
//!
//! Across a restart: with a `state_dir`, what is kept here (addresses held, endpoints, the
//! networks the plugin added) is written to `state_dir/docker.json` after every call and read
//! back at start (`restore_docker`, docker/saved.rs), and an endpoint's port is recorded like any other once
//! dockerd has moved its TAP into the container (server/restart.rs), so `shutdown
//! --keep-ports` or a crash keeps the container's interface, the next daemon re-adopts it,
//! and dockerd's later DeleteEndpoint and ReleaseAddress find what they name. A port is only
//! ever removed for the endpoint it was made for (its `attachment` is `docker:ENDPOINT`), so
//! an endpoint whose port was not re-adopted cannot take another's.
//!
//! Everything here runs on the actor thread.

use super::{parse_station_mac, PortRules, Server};
use crate::cluster::records::EndpointRecord;
use crate::control::attach::create_host_port_queues;
use crate::dataplane::PortMeta;
use crate::docker::calls::{AddressReply, DockerCall, EndpointReply, JoinReply, NetworkReply};
use crate::io::TapDevice;
use crate::switch::service::station_mac;
use crate::switch::{NetworkSpec, PortId};
use crate::wire::MacAddr;
use ipnet::Ipv4Net;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

mod saved;
use saved::keepable;

/// The key of an endpoint's port (its `attachment`).
fn port_key(endpoint: &str) -> String {
    format!("docker:{endpoint}")
}

/// What the actor keeps of Docker's networks and endpoints.
#[derive(Default)]
pub(super) struct DockerState {
    /// Addresses handed out by RequestAddress and not yet released, by pool and address.
    held: BTreeMap<(Ipv4Net, Ipv4Addr), Held>,
    /// By Docker's endpoint ID.
    endpoints: BTreeMap<String, DockerEndpoint>,
    /// Networks the plugin added to a topology without `[cluster]` (removed with Docker's).
    local: BTreeSet<String>,
}

struct Held {
    network: String,
    /// The name the address is claimed under in etcd (cluster networks).
    name: String,
}

struct DockerEndpoint {
    network: String,
    addr: Ipv4Net,
    mac: MacAddr,
    sandbox: String,
    /// The port id, and the TAP's name, from Join on.
    port: Option<(PortId, String)>,
    /// The TAP's queues between Join and `Named`.
    pending: Vec<TapDevice>,
    /// Attached as a port (after `Named`).
    attached: bool,
}

/// The DNS address of a subnet (crate::switch::service): Docker is given it as the network's
/// gateway. Subnets are at least /30 here, so there is one.
pub fn dns_address(subnet: Ipv4Net) -> Ipv4Addr {
    crate::switch::service::service_addr(subnet).unwrap_or(subnet.network())
}

fn parse_subnet(s: &str) -> Result<Ipv4Net, String> {
    let subnet = crate::control::config::values::parse_subnet(s)?;
    if crate::switch::service::service_addr(subnet).is_none() {
        return Err(format!(
            "subnet {subnet} is too small: a vswitch network needs at least a /30 (its first \
             host address is the network's DNS address and Docker's gateway)"
        ));
    }
    Ok(subnet)
}

fn parse_addr(s: &str) -> Result<Ipv4Addr, String> {
    s.split('/')
        .next()
        .unwrap_or_default()
        .parse()
        .map_err(|_| format!("invalid address {s:?}: expected an IPv4 address"))
}

/// 12 random hex digits: a name for a claim made before the container's name is known.
fn provisional_name() -> String {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 6];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("docker-{hex}")
}

impl Server {
    pub(super) fn docker(&mut self, call: DockerCall) -> Result<serde_json::Value, String> {
        let r = self.docker_call(call);
        self.save_docker();
        r
    }

    fn docker_call(&mut self, call: DockerCall) -> Result<serde_json::Value, String> {
        fn json<T: serde::Serialize>(v: Result<T, String>) -> Result<serde_json::Value, String> {
            v.and_then(|v| serde_json::to_value(v).map_err(|e| e.to_string()))
        }
        match call {
            DockerCall::Network {
                name,
                subnet,
                vni,
                encrypted,
            } => json(self.docker_network(&name, &subnet, vni, encrypted)),
            DockerCall::NetworkGone { name } => {
                self.docker_network_gone(&name);
                Ok(serde_json::json!({}))
            }
            DockerCall::RequestAddress { network, ip } => {
                json(self.docker_request_address(&network, ip.as_deref()))
            }
            DockerCall::ReleaseAddress { subnet, ip } => {
                self.docker_release_address(&subnet, &ip)?;
                Ok(serde_json::json!({}))
            }
            DockerCall::CreateEndpoint {
                network,
                endpoint,
                address,
                mac,
            } => json(self.docker_create_endpoint(&network, endpoint, &address, mac.as_deref())),
            DockerCall::Join { endpoint, sandbox } => json(self.docker_join(&endpoint, sandbox)),
            DockerCall::Named { endpoint, name } => self.docker_named(&endpoint, name),
            DockerCall::DeleteEndpoint { endpoint } => {
                self.docker_delete_endpoint(&endpoint);
                Ok(serde_json::json!({}))
            }
        }
    }

    /// The cluster agent (only called for cluster networks).
    fn agent(&self) -> Arc<crate::cluster::agent::Cluster> {
        self.cluster
            .as_ref()
            .expect("cluster network")
            .agent
            .clone()
    }

    fn network_reply(&self, name: &str) -> Result<NetworkReply, String> {
        let net = self
            .topology
            .network_by_name(name)
            .ok_or_else(|| format!("network {name} is not carried on this host"))?;
        Ok(NetworkReply {
            name: name.to_string(),
            vni: net.vni().get(),
            subnet: net.spec.subnet.to_string(),
            dns: dns_address(net.spec.subnet).to_string(),
            mtu: net.spec.mtu,
        })
    }

    /// Makes the network, or joins it when it exists with the same subnet (and the same VNI
    /// and encryption, when asked for).
    fn docker_network(
        &mut self,
        name: &str,
        subnet: &str,
        vni: Option<u32>,
        encrypted: bool,
    ) -> Result<NetworkReply, String> {
        let subnet = parse_subnet(subnet)?;
        let existing = self
            .cluster
            .as_ref()
            .and_then(|c| c.view.networks.get(name))
            .map(|r| (r.subnet, r.vni, r.encrypted))
            .or_else(|| {
                self.topology
                    .network_by_name(name)
                    .map(|n| (n.spec.subnet, n.vni().get(), n.spec.encrypted))
            });
        if let Some((have_subnet, have_vni, have_encrypted)) = existing {
            let differs = |what: &str, have: String, want: String| {
                Err(format!(
                    "network {name} exists with {what} {have}, not {want}: use its {what} (or \
                     another name)"
                ))
            };
            if have_subnet != subnet {
                return differs("subnet", have_subnet.to_string(), subnet.to_string());
            }
            if let Some(v) = vni.filter(|v| *v != have_vni) {
                return differs("vni", have_vni.to_string(), v.to_string());
            }
            if encrypted && !have_encrypted {
                return differs("encryption", "off".into(), "on".into());
            }
            return self.network_reply(name);
        }
        if self.cluster.is_some() {
            self.network_create(name, &subnet.to_string(), vni, None, encrypted)
                .map_err(|e| e.to_string())?;
            return self.network_reply(name);
        }
        if encrypted {
            return Err(format!(
                "-o encrypted needs a [cluster] (its secret travels through etcd) or a \
                 [[network]] {name} with `encrypted = true` and a key_file in every host's node.toml"
            ));
        }
        let vni = match vni {
            Some(v) => crate::control::config::values::vni_from(v as i64)
                .map_err(|e| format!("-o vni: {e}"))?,
            None => (4096..=crate::switch::Vni::MAX)
                .find(|v| self.topology.networks().all(|n| n.vni().get() != *v))
                .and_then(|v| crate::control::config::values::vni_from(v as i64).ok())
                .ok_or("no free VNI left")?,
        };
        let underlay_mtu = self.config.as_ref().map_or(1500, |(_, m)| *m);
        let spec = NetworkSpec {
            name: name.to_string(),
            vni,
            subnet,
            mtu: underlay_mtu.saturating_sub(crate::control::config::VXLAN_OVERHEAD),
            peers: self.static_spec().peers,
            encrypted: false,
        };
        self.change_topology(|t| t.add_network(spec))
            .map_err(|e| e.to_string())?;
        self.docker.local.insert(name.to_string());
        tracing::info!(network = name, vni = vni.get(), %subnet, "docker: network added");
        self.network_reply(name)
    }

    fn docker_network_gone(&mut self, name: &str) {
        if !self.docker.local.contains(name) {
            return;
        }
        let Some(vni) = self.topology.network_by_name(name).map(|n| n.vni()) else {
            self.docker.local.remove(name);
            return;
        };
        match self.change_topology(|t| t.remove_network(vni).map(|_| ())) {
            Ok(()) => {
                self.docker.local.remove(name);
                tracing::info!(network = name, "docker: network removed");
            }
            Err(e) => tracing::warn!(network = name, "docker: network kept: {e}"),
        }
    }

    fn docker_request_address(
        &mut self,
        network: &str,
        ip: Option<&str>,
    ) -> Result<AddressReply, String> {
        let subnet = self
            .topology
            .network_by_name(network)
            .map(|n| n.spec.subnet)
            .ok_or_else(|| format!("network {network} is not carried on this host"))?;
        let dns = dns_address(subnet);
        let want = ip.map(parse_addr).transpose()?;
        if let Some(w) = want {
            if w == dns {
                return Err(format!(
                    "{w} is network {network}'s DNS address (and Docker's gateway): it is not \
                     handed to a container"
                ));
            }
            if !subnet.contains(&w) || w == subnet.network() || w == subnet.broadcast() {
                return Err(format!(
                    "{w} is not a host address of {network}'s subnet {subnet}"
                ));
            }
            if let Some(h) = self.docker.held.get(&(subnet, w)) {
                return Err(format!(
                    "address {w} on network {network} is taken: by {}",
                    h.name
                ));
            }
        }
        let (addr, name) = match self.cluster_network(network).map_err(|e| e.to_string())? {
            Some(rec) => {
                let name = provisional_name();
                let agent = self.agent();
                (agent.claim(&rec, &name, want)?, name)
            }
            None => {
                let w = match want {
                    Some(w) => {
                        self.check_endpoint(network, Some(w), None)
                            .map_err(|e| e.to_string())?;
                        w
                    }
                    None => self.local_free_address(network)?.addr(),
                };
                (w, format!("{network}/{w}"))
            }
        };
        self.docker.held.insert(
            (subnet, addr),
            Held {
                network: network.to_string(),
                name,
            },
        );
        let addr = Ipv4Net::new(addr, subnet.prefix_len()).expect("prefix of a subnet");
        tracing::info!(network, %addr, "docker: address handed out");
        Ok(AddressReply {
            address: addr.to_string(),
        })
    }

    /// Whether the Docker plugin handed out `ip` of pool `subnet` (server.rs's local IPAM
    /// skips those).
    pub(super) fn docker_holds(&self, subnet: Ipv4Net, ip: Ipv4Addr) -> bool {
        self.docker.held.contains_key(&(subnet, ip))
    }

    fn docker_release_address(&mut self, subnet: &str, ip: &str) -> Result<(), String> {
        let subnet = parse_subnet(subnet)?;
        let ip = parse_addr(ip)?;
        let Some(held) = self.docker.held.remove(&(subnet, ip)) else {
            // The gateway (the DNS address), or released already: nothing to give back.
            return Ok(());
        };
        let stale: Vec<String> = self
            .docker
            .endpoints
            .iter()
            .filter(|(_, e)| e.network == held.network && e.addr.addr() == ip)
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            self.docker_delete_endpoint(&id);
        }
        if let Ok(Some(_)) = self.cluster_network(&held.network) {
            let agent = self.agent();
            agent.release(&held.network, ip, &held.name)?;
        }
        tracing::info!(network = %held.network, %ip, "docker: address released");
        Ok(())
    }

    fn docker_create_endpoint(
        &mut self,
        network: &str,
        endpoint: String,
        address: &str,
        mac: Option<&str>,
    ) -> Result<EndpointReply, String> {
        let addr: Ipv4Net = address
            .parse()
            .map_err(|_| format!("invalid Address {address:?}: expected ADDR/PREFIX"))?;
        let (vni, _) = self
            .check_endpoint(network, Some(addr.addr()), None)
            .map_err(|e| e.to_string())?;
        let mac = match mac.filter(|m| !m.is_empty()) {
            Some(m) => parse_station_mac(m)?,
            None => station_mac(vni.get(), addr.addr()),
        };
        self.check_endpoint(network, Some(addr.addr()), Some(mac))
            .map_err(|e| e.to_string())?;
        if let Some(e) = self.docker.endpoints.get(&endpoint) {
            return Ok(EndpointReply {
                mac: e.mac.to_string(),
            });
        }
        self.docker.endpoints.insert(
            endpoint,
            DockerEndpoint {
                network: network.to_string(),
                addr,
                mac,
                sandbox: String::new(),
                port: None,
                pending: Vec::new(),
                attached: false,
            },
        );
        Ok(EndpointReply {
            mac: mac.to_string(),
        })
    }

    fn docker_join(&mut self, endpoint: &str, sandbox: String) -> Result<JoinReply, String> {
        let workers = crate::control::attach::queues_per_port(self.workers.len());
        let tap_options = crate::io::TapOptions {
            multi_queue: workers > 1,
            ..self.tap_options
        };
        let mtu = {
            let e = self.docker_endpoint(endpoint)?;
            self.topology
                .network_by_name(&e.network)
                .map(|n| n.spec.mtu)
                .ok_or_else(|| format!("network {} is gone", e.network))?
        };
        if let Some((_, tap)) = &self.docker_endpoint(endpoint)?.port {
            return Ok(JoinReply { tap: tap.clone() });
        }
        let id = PortId(self.next_port);
        self.next_port += 1;
        let tap = format!("vsw{}", id.0);
        let mac = self.docker_endpoint(endpoint)?.mac;
        let queues = create_host_port_queues(&tap, mac, mtu, tap_options, workers)
            .map_err(|e| e.to_string())?;
        let e = self.docker.endpoints.get_mut(endpoint).expect("looked up");
        e.sandbox = sandbox;
        e.pending = queues;
        e.port = Some((id, tap.clone()));
        tracing::info!(endpoint, %tap, "docker: TAP made for Join");
        Ok(JoinReply { tap })
    }

    fn docker_endpoint(&self, endpoint: &str) -> Result<&DockerEndpoint, String> {
        self.docker
            .endpoints
            .get(endpoint)
            .ok_or_else(|| format!("no endpoint {endpoint} (CreateEndpoint first)"))
    }

    /// Attaches the joined endpoint as a port under the container's name (or, if it has none,
    /// under its claim's name), and publishes it.
    fn docker_named(
        &mut self,
        endpoint: &str,
        name: Option<String>,
    ) -> Result<serde_json::Value, String> {
        let e = self.docker_endpoint(endpoint)?;
        if e.attached {
            return Ok(serde_json::json!({}));
        }
        let Some((id, tap)) = e.port.clone() else {
            return Err(format!("endpoint {endpoint} has not joined"));
        };
        let (network, addr, mac, sandbox) = (e.network.clone(), e.addr, e.mac, e.sandbox.clone());
        let subnet = addr.trunc();
        let held_name = self
            .docker
            .held
            .get(&(subnet, addr.addr()))
            .map(|h| h.name.clone());
        let cluster = self
            .cluster_network(&network)
            .map_err(|e| e.to_string())?
            .is_some();
        let fallback = || format!("docker-{}", &endpoint[..endpoint.len().min(12)]);
        let mut name = name.unwrap_or_else(|| held_name.clone().unwrap_or_else(fallback));
        if cluster {
            let agent = self.agent();
            if let Some(old) = held_name.filter(|o| *o != name) {
                match agent.rename_claim(&network, addr.addr(), &old, &name) {
                    Ok(()) => {
                        if let Some(h) = self.docker.held.get_mut(&(subnet, addr.addr())) {
                            h.name = name.clone();
                        }
                    }
                    Err(err) => {
                        tracing::warn!(%network, endpoint, "docker: the endpoint keeps the name {old}: {err}");
                        name = old;
                    }
                }
            }
        }
        let (vni, mtu) = self
            .check_endpoint(&network, Some(addr.addr()), Some(mac))
            .map_err(|e| e.to_string())?;
        let queues = std::mem::take(
            &mut self
                .docker
                .endpoints
                .get_mut(endpoint)
                .expect("looked up")
                .pending,
        );
        if queues.is_empty() {
            return Err(format!("endpoint {endpoint}: its TAP is gone"));
        }
        let mut queues = queues;
        let place = keepable(&mut queues);
        let multi_queue = queues.len() > 1;
        let devices = self.tap_devices(id, queues);
        let (ifname, netns, netns_id) = match &place {
            Some((ifname, path, ns)) => (ifname.clone(), path.clone(), Some(*ns)),
            None => (tap, sandbox, None),
        };
        let meta = PortMeta {
            name: name.clone(),
            kind: "tap",
            network: network.clone(),
            vni: vni.get(),
            ifname,
            netns: Some(netns),
            netns_id,
            mac: Some(mac),
            ip: Some(addr),
            mtu,
            attachment: Some(port_key(endpoint)),
        };
        let info = self
            .add_port(
                devices,
                meta.clone(),
                vni,
                Some((mac, addr.addr())),
                id,
                PortRules {
                    security: true,
                    limits: Default::default(),
                },
            )
            .map_err(|e| e.to_string())?;
        if place.is_some() {
            self.remember_port(id, &meta, true, Default::default(), multi_queue);
        } else {
            tracing::warn!(
                endpoint,
                "docker: the container's interface cannot be found in its namespace: it will \
                 not be kept across a restart of vswitchd"
            );
        }
        self.docker
            .endpoints
            .get_mut(endpoint)
            .expect("looked up")
            .attached = true;
        if cluster {
            let agent = self.agent();
            let rec = EndpointRecord {
                network: network.clone(),
                name,
                ip: addr.addr(),
                mac: mac.to_string(),
                host: agent.name(),
            };
            if let Err(err) = agent.publish_endpoint(rec) {
                // Kept by the agent and published again when the store answers.
                tracing::warn!(%network, endpoint, "docker: endpoint not yet published: {err}");
            }
        }
        Ok(info)
    }

    fn docker_delete_endpoint(&mut self, endpoint: &str) {
        let Some(e) = self.docker.endpoints.remove(endpoint) else {
            return;
        };
        if let (true, Some((id, _))) = (e.attached, &e.port) {
            let id = *id;
            let key = port_key(endpoint);
            let _ = self.remove_port(
                Arc::new(move |pid: PortId, m: &PortMeta| {
                    pid == id && m.attachment.as_deref() == Some(key.as_str())
                }),
                format!("port {}", id.0),
            );
            if let Ok(Some(_)) = self.cluster_network(&e.network) {
                let agent = self.agent();
                if let Err(err) = agent.unpublish_endpoint(&e.network, e.addr.addr()) {
                    tracing::warn!(network = %e.network, "docker: endpoint not unpublished: {err}");
                }
            }
        }
        tracing::info!(endpoint, network = %e.network, ip = %e.addr, "docker: endpoint deleted");
        // A TAP that never became a port goes with its queues here.
        drop(e.pending);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_address_is_the_first_host() {
        assert_eq!(
            dns_address("10.0.9.0/24".parse().unwrap()),
            Ipv4Addr::new(10, 0, 9, 1)
        );
    }

    #[test]
    fn subnets_too_small_or_not_canonical_are_refused() {
        assert!(parse_subnet("10.0.9.0/31").unwrap_err().contains("/30"));
        assert!(parse_subnet("10.0.9.1/24").is_err());
        assert!(parse_subnet("10.0.9.0/24").is_ok());
    }

    #[test]
    fn provisional_names_differ() {
        let (a, b) = (provisional_name(), provisional_name());
        assert!(a.starts_with("docker-") && a.len() == 19, "{a}");
        assert_ne!(a, b);
    }
}
