//! What the Docker plugin keeps across a restart of vswitchd: `state_dir/docker.json` (held
//! addresses, endpoints, networks it added), written after every call and read back at start,
//! and which endpoint TAPs can be kept (made persistent once dockerd has moved them).

use super::*;

/// What `state_dir/docker.json` holds: `DockerState` without the TAPs' fds.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Saved {
    #[serde(default)]
    held: Vec<SavedHeld>,
    #[serde(default)]
    endpoints: Vec<SavedEndpoint>,
    #[serde(default)]
    local: Vec<SavedNetwork>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct SavedHeld {
    subnet: Ipv4Net,
    ip: Ipv4Addr,
    network: String,
    name: String,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct SavedEndpoint {
    id: String,
    network: String,
    addr: Ipv4Net,
    mac: String,
    sandbox: String,
    #[serde(default)]
    port: Option<(u32, String)>,
    #[serde(default)]
    attached: bool,
}

/// A network the plugin added to a topology without `[cluster]`.
#[derive(serde::Serialize, serde::Deserialize)]
struct SavedNetwork {
    name: String,
    vni: u32,
    subnet: Ipv4Net,
    mtu: u32,
}

impl Server {
    /// Writes what the plugin holds to `state_dir/docker.json` (without a state_dir, nothing).
    pub(super) fn save_docker(&self) {
        let Some(store) = self.state_store() else {
            return;
        };
        let d = &self.docker;
        let saved = Saved {
            held: d
                .held
                .iter()
                .map(|((subnet, ip), h)| SavedHeld {
                    subnet: *subnet,
                    ip: *ip,
                    network: h.network.clone(),
                    name: h.name.clone(),
                })
                .collect(),
            endpoints: d
                .endpoints
                .iter()
                .map(|(id, e)| SavedEndpoint {
                    id: id.clone(),
                    network: e.network.clone(),
                    addr: e.addr,
                    mac: e.mac.to_string(),
                    sandbox: e.sandbox.clone(),
                    port: e.port.as_ref().map(|(p, tap)| (p.0, tap.clone())),
                    attached: e.attached,
                })
                .collect(),
            local: d
                .local
                .iter()
                .filter_map(|name| {
                    let n = self.topology.network_by_name(name)?;
                    Some(SavedNetwork {
                        name: name.clone(),
                        vni: n.vni().get(),
                        subnet: n.spec.subnet,
                        mtu: n.spec.mtu,
                    })
                })
                .collect(),
        };
        if let Err(e) = store.save_docker(&saved) {
            tracing::warn!(file = %store.docker_file().display(), "docker: cannot keep the plugin's state: {e}; a restart forgets its endpoints");
        }
    }

    /// Takes back what the previous daemon's plugin held (before its ports are re-adopted,
    /// which need its networks).
    pub(in crate::control::server) fn restore_docker(&mut self) {
        let Some(store) = self.state_store() else {
            return;
        };
        let saved: Saved = match store.load_docker() {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(file = %store.docker_file().display(), "docker: the plugin's saved state cannot be read ({e}); starting without it");
                return;
            }
        };
        for n in saved.local {
            if self.topology.network_by_name(&n.name).is_some() {
                continue;
            }
            let Ok(vni) = crate::control::config::values::vni_from(i64::from(n.vni)) else {
                continue;
            };
            let spec = NetworkSpec {
                name: n.name.clone(),
                vni,
                subnet: n.subnet,
                mtu: n.mtu,
                peers: self.static_spec().peers,
                encrypted: false,
            };
            match self.change_topology(|t| t.add_network(spec)) {
                Ok(()) => {
                    self.docker.local.insert(n.name.clone());
                    tracing::info!(network = %n.name, vni = n.vni, "docker: network kept from the previous run");
                }
                Err(e) => tracing::warn!(network = %n.name, "docker: network not restored: {e}"),
            }
        }
        for h in saved.held {
            self.docker.held.insert(
                (h.subnet, h.ip),
                Held {
                    network: h.network,
                    name: h.name,
                },
            );
        }
        for e in saved.endpoints {
            let Ok(mac) = e.mac.parse() else { continue };
            self.docker.endpoints.insert(
                e.id,
                DockerEndpoint {
                    network: e.network,
                    addr: e.addr,
                    mac,
                    sandbox: e.sandbox,
                    port: e.port.map(|(p, tap)| (PortId(p), tap)),
                    pending: Vec::new(),
                    attached: e.attached,
                },
            );
        }
        if !self.docker.endpoints.is_empty() {
            tracing::info!(
                endpoints = self.docker.endpoints.len(),
                addresses = self.docker.held.len(),
                "docker: endpoints kept from the previous run"
            );
        }
    }
}

/// Where dockerd put an endpoint's TAP, once it moved it into the container: the TAP's name
/// there, the container's namespace as a path any process can open (`/proc/PID/ns/net` of
/// its first process: dockerd's sandbox file may be in a mount namespace of dockerd's own),
/// and that namespace's identity, so a pid taken by another process later is told apart.
/// The TAP is made persistent then, so it outlives a daemon killed or stopped with
/// `--keep-ports`. None while the TAP is still in our namespace, or when it cannot be told.
pub(super) fn keepable(queues: &mut [TapDevice]) -> Option<(String, String, (u64, u64))> {
    use std::os::unix::fs::MetadataExt;
    let ours = std::fs::metadata("/proc/thread-self/ns/net").ok()?;
    // dockerd moves the TAP into the container, then renames it (to eth0, say): a port
    // recorded between the two would be looked for under the old name after a restart. The
    // rename follows at once; give it a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(500);
    let (ifname, id) = loop {
        let (ifname, ns) = match queues.first()?.whereabouts() {
            Ok(w) => w,
            Err(e) => {
                tracing::debug!("docker: where is the TAP? {e}");
                return None;
            }
        };
        let id = crate::io::netns::identity(&ns)?;
        if (ours.dev(), ours.ino()) == id {
            return None;
        }
        if ifname != queues.first()?.name() || std::time::Instant::now() >= deadline {
            break (ifname, id);
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    };
    let pid = crate::io::netns::pid_in(id)?;
    for q in queues.iter_mut() {
        if let Err(e) = q.set_persistent() {
            tracing::warn!("docker: {e}");
            return None;
        }
    }
    Some((ifname, format!("/proc/{pid}/ns/net"), id))
}
