//! The control thread: serves the Unix-socket API (`api.rs`) that `vswitchctl` speaks.
//!
//! Overview. `Server` is the control actor: one thread (`Server::start`) that owns the control
//! state — the topology it publishes to the workers, port ids — and answers requests one at a
//! time, so a check and its effect are one step (two attaches of one address: one wins). It
//! does the slow, fallible work of attach/detach (namespaces, netlink, TAP creation) itself,
//! then hands finished ports to the workers over their command channels, so the data plane
//! never waits on the kernel's control paths. Front-ends reach it through a `ControlHandle`:
//! the Unix socket (`serve`: a thread per connection, each bounded in request size and time,
//! so a client that is idle, slow or never reads holds up only itself), SIGHUP, and the
//! cluster agent's watch (crate::cluster), whose newest view of etcd waits in a one-view slot
//! and is applied in one topology change (server/cluster.rs). A request that fails ends as a
//! `ControlError` (server/error.rs) whose Display is what the user reads; `handle` makes it
//! the `Response` once.
//!
//! Thread-safety: `Server` lives on the actor thread; `ControlHandle` is Send + Clone.
//!
//! The socket is created mode 0600 (root only): the API can put interfaces into any namespace.

mod attachments;
mod cluster;
mod docker;
mod doctor;
mod error;
mod ports;
mod restart;
mod socket;
mod trace;

pub use error::ControlError;
pub use restart::Adoption;
pub use socket::{answered, serve, MAX_CONNECTIONS, MAX_REQUEST, REPLY_DEADLINE, REQUEST_DEADLINE};

use super::api::{self, PeerInfo, PortInfo, Request, Response, ShowWhat};
use super::views;
use crate::cluster::view::ClusterView;
use crate::control::attach::{create_namespace_port_queues, NamespacePortSpec};
use crate::dataplane::view::View;
use crate::dataplane::worker::PortSelector;
use crate::dataplane::{PortDevice, PortMeta, Workers};
use crate::io::af_packet::PacketSocket;
use crate::switch::{PortId, Published, Topology, Vni};
use crate::wire::MacAddr;
use crossbeam_channel::Sender;
use ipnet::Ipv4Net;
use std::io;
use std::net::Ipv4Addr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("another vswitchd is already listening on {0}")]
    InUse(PathBuf),
    #[error("cannot create the control socket {path}: {source}")]
    Bind { path: PathBuf, source: io::Error },
}

/// Binds the control socket, replacing a stale one left by a daemon that died.
pub fn bind(path: &Path) -> Result<UnixListener, ServerError> {
    let err = |source| ServerError::Bind {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(ServerError::InUse(path.to_path_buf()));
        }
        std::fs::remove_file(path).map_err(err)?;
    }
    let listener = UnixListener::bind(path).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    Ok(listener)
}

/// An `attach-namespace` request, as the actor works on it.
struct NsAttach {
    network: String,
    netns: String,
    /// As given: ADDR/PREFIX, a bare ADDR (cluster networks), or none (cluster networks).
    ip: Option<String>,
    mac: Option<String>,
    ifname: String,
    /// The endpoint name; default NETNS/IFNAME.
    name: Option<String>,
    /// Port security (crate::switch::topology::PortTopo::security).
    security: bool,
    /// Who asks, for what (api::Request::AttachNamespace); unique among the ports.
    attachment: Option<String>,
    /// The port's own limits (crate::switch::limits).
    limits: crate::switch::LimitSettings,
}

/// What a new port may send (port security) and do (its own limits, over its network's and
/// the daemon's: crate::switch::limits).
#[derive(Debug, Clone, Copy, Default)]
struct PortRules {
    security: bool,
    limits: crate::switch::LimitSettings,
}

pub struct Server {
    workers: Workers,
    next_port: u32,
    /// Ports were removed since the allocator last gave memory back (crate::io::give_back_memory).
    trim_due: bool,
    /// How containers' TAP devices are opened (offloads on or off).
    tap_options: crate::io::TapOptions,
    /// How attached interfaces' packet sockets receive.
    packet_rx: crate::io::RxMode,
    /// What is configured: this actor owns it, changes it, and publishes every change to the
    /// workers (crate::switch::topology).
    topology: Topology,
    published: Published,
    /// The file the daemon runs from and the underlay MTU it was read against, for reload.
    config: Option<(crate::control::config::Config, u32)>,
    /// With `[cluster]`: the agent, and what the actor applied of it (server/cluster.rs).
    cluster: Option<cluster::ClusterPlane>,
    /// The Docker plugin's networks, addresses and endpoints (server/docker.rs).
    docker: docker::DockerState,
    /// Ports by the `attachment` they were made for (server/attachments.rs).
    attachments: std::collections::HashMap<String, PortId>,
    /// The DNS forwarder, for `show stats`.
    dns: Option<crate::control::dns::Forwarder>,
    /// resolv.conf files written for attached namespaces.
    resolv: crate::control::attach::ResolvFiles,
    /// Ports recorded in state_dir for a restart (server/restart.rs).
    restart: Option<restart::Restart>,
    /// Probes the peers for `show peers` (server/doctor.rs).
    prober: Option<crate::control::probe::Prober>,
}

impl Server {
    /// A control actor for workers that follow `published`.
    pub fn new(
        workers: Workers,
        tap_options: crate::io::TapOptions,
        published: Published,
    ) -> Server {
        Server {
            workers,
            next_port: 1,
            trim_due: false,
            tap_options,
            packet_rx: crate::io::RxMode::default(),
            topology: (*published.load()).clone(),
            published,
            config: None,
            cluster: None,
            docker: docker::DockerState::default(),
            attachments: Default::default(),
            dns: None,
            resolv: Default::default(),
            restart: None,
            prober: None,
        }
    }

    /// Where the resolv.conf files written on attach are kept, so the daemon removes them
    /// when it stops.
    pub fn with_resolv_files(mut self, files: crate::control::attach::ResolvFiles) -> Server {
        self.resolv = files;
        self
    }

    /// The configuration the topology was built from, so that `reload` can re-read its file.
    pub fn with_config(mut self, cfg: crate::control::config::Config, underlay_mtu: u32) -> Server {
        self.config = Some((cfg, underlay_mtu));
        self
    }

    /// Re-reads node.toml and publishes what changed, all or nothing.
    fn reload(&mut self) -> Result<serde_json::Value, ControlError> {
        use crate::control::config::Config;
        use crate::control::reload::{self, ReloadError};
        let Some((old, mtu)) = &self.config else {
            return Err("this daemon was not started from a file: nothing to reload".into());
        };
        let mtu = *mtu;
        let refuse = |e: ReloadError| {
            tracing::warn!("reload refused: {e}");
            ControlError::Reload(e)
        };
        let new = Config::load(&old.path)
            .map_err(|e| e.to_string())
            .and_then(|c| c.validate_mtus(mtu).map(|_| c).map_err(|e| e.to_string()))
            .map_err(|e| refuse(ReloadError::Config(e)))?;
        reload::check_node(old, &new).map_err(refuse)?;
        let (old_spec, new_spec) = (old.switch_spec(mtu), new.switch_spec(mtu));
        let mut done = Vec::new();
        let mut failed = None;
        let changed = self
            .topology
            .change(|t| match reload::apply(t, &old_spec, &new_spec) {
                Ok(d) => {
                    done = d;
                    Ok(())
                }
                Err(e) => {
                    failed = Some(e);
                    Err(crate::switch::TopologyError::UnknownNetwork(String::new()))
                }
            });
        if let Some(e) = failed {
            return Err(refuse(e));
        }
        let t = changed.map_err(|e| refuse(e.into()))?;
        self.published.store(t.clone());
        self.topology = t;
        for line in &done {
            tracing::info!("reload: {line}");
        }
        tracing::info!(changes = done.len(), file = %new.path.display(), "reloaded");
        self.config = Some((new, mtu));
        if let Some(view) = self.cluster.as_ref().map(|c| c.view.clone()) {
            self.apply_view(view);
        }
        Ok(serde_json::json!({ "changes": done }))
    }

    /// Applies `f` to the topology and publishes the result; nothing changes if `f` fails.
    fn change_topology(
        &mut self,
        f: impl FnOnce(&mut Topology) -> Result<(), crate::switch::TopologyError>,
    ) -> Result<(), crate::switch::TopologyError> {
        let t = self.topology.change(f)?;
        self.published.store(t.clone());
        self.topology = t;
        Ok(())
    }

    /// How `attach-interface` ports receive: a TPACKET_V3 ring (the default) or recvmsg.
    /// `show stats` includes what the DNS forwarder did.
    pub fn with_dns(mut self, forwarder: crate::control::dns::Forwarder) -> Server {
        self.dns = Some(forwarder);
        self
    }

    pub fn with_packet_rx(mut self, rx: crate::io::RxMode) -> Server {
        self.packet_rx = rx;
        self
    }

    /// Starts the control actor on its own thread: it owns this `Server` and answers requests
    /// one at a time, so a check and its effect (an address free, then taken) are one step.
    /// The returned handle is how front-ends reach it.
    pub fn start(mut self) -> std::io::Result<ControlHandle> {
        let (tx, rx) = crossbeam_channel::bounded::<(Request, Sender<Response>)>(256);
        // The newest view of the cluster waits in one slot; a bounded(1) channel wakes the
        // actor. However fast views come and however long a request takes, one is held.
        let slot: ViewSlot = Arc::default();
        let (wake_tx, wake_rx) = crossbeam_channel::bounded::<()>(1);
        let held = Arc::clone(&slot);
        std::thread::Builder::new()
            .name("vswitch-control".into())
            .spawn(move || loop {
                // A while after the last of a burst of detaches, memory goes back to the system.
                let quiet = if self.trim_due { TRIM_AFTER } else { Duration::from_secs(3600) };
                crossbeam_channel::select! {
                    recv(rx) -> m => match m {
                        // Probing takes seconds: doctor answers from a thread of its own.
                        Ok((Request::Doctor { wait_ms }, reply)) => self.doctor_async(wait_ms, reply),
                        Ok((req, reply)) => { let _ = reply.send(self.handle(req)); }
                        Err(_) => return,
                    },
                    recv(wake_rx) -> w => {
                        if w.is_err() {
                            return;
                        }
                        let newest = held.lock().unwrap_or_else(|e| e.into_inner()).take();
                        if let Some(v) = newest {
                            self.apply_view(v);
                        }
                    },
                    default(quiet) => if std::mem::take(&mut self.trim_due) {
                        crate::io::give_back_memory();
                    },
                }
            })?;
        Ok(ControlHandle {
            tx,
            views: slot,
            wake: wake_tx,
        })
    }

    pub fn handle(&mut self, req: Request) -> Response {
        let result = match req {
            Request::AttachNamespace {
                network,
                netns,
                ip,
                mac,
                ifname,
                name,
                no_port_security,
                attachment,
                limits,
            } => self.attach_namespace_for(NsAttach {
                network,
                netns,
                ip,
                mac,
                ifname: ifname.unwrap_or_else(|| "eth0".to_string()),
                name,
                security: !no_port_security,
                attachment,
                limits,
            }),
            Request::DetachAttachment { attachment } => self.detach_attachment(&attachment),
            Request::Attachments => to_json(self.attachment_list()),
            Request::DetachNamespace {
                network,
                netns,
                ifname,
            } => self.detach_namespace(&network, &netns, ifname.as_deref().unwrap_or("eth0")),
            Request::AttachInterface {
                network,
                interface,
                ip,
                mac,
                limits,
            } => self.attach_interface(&network, &interface, ip.as_deref(), mac.as_deref(), limits),
            Request::DetachInterface { network, interface } => {
                self.detach_interface(&network, &interface)
            }
            Request::Show { what, secrets } => self.show(what, secrets),
            Request::Trace(t) => self.trace(&t),
            Request::Reload => self.reload(),
            Request::Doctor { wait_ms } => self.doctor(wait_ms),
            Request::Shutdown { keep_ports } => self.shutdown(keep_ports),
            Request::NetworkCreate {
                name,
                subnet,
                vni,
                mtu,
                encrypted,
            } => self
                .network_create(&name, &subnet, vni, mtu, encrypted)
                .and_then(to_json),
            Request::NetworkLs => self.network_ls().and_then(to_json),
            Request::NetworkInspect { name } => self.network_inspect(&name).and_then(to_json),
            Request::NetworkRm { name } => self.network_rm(&name),
            Request::ClusterStatus => self.cluster_status().and_then(to_json),
            // The plugin's refusals are worded for Docker's user (server/docker.rs).
            Request::Docker { call } => self.docker(call).map_err(ControlError::Refused),
        };
        match result {
            Ok(v) => Response {
                ok: true,
                error: None,
                result: Some(v),
            },
            Err(e) => e.into(),
        }
    }

    /// The workers' merged view, as the API shows it; in cluster mode, peers with their state
    /// in etcd.
    fn show(&self, what: ShowWhat, secrets: bool) -> Result<serde_json::Value, ControlError> {
        let view = self
            .workers
            .show(what.into(), secrets)
            .map_err(ControlError::DataPlane)?;
        match (&view, &self.cluster) {
            (View::Peers(rows), _) => {
                let mut peers: Vec<PeerInfo> = rows.iter().map(PeerInfo::from).collect();
                if let Some(p) = &self.prober {
                    p.annotate(&mut peers);
                }
                to_json(self.cluster_peers(peers))
            }
            (View::Stats(_), _) => {
                let mut v = views::to_json(&view);
                if let (Some(f), Some(o)) = (&self.dns, v.as_object_mut()) {
                    o.insert("dns".into(), serde_json::json!(f.stats()));
                }
                Ok(v)
            }
            _ => Ok(views::to_json(&view)),
        }
    }

    /// Checks that an endpoint with `ip` and `mac` may join `network`: its VNI and MTU.
    fn check_endpoint(
        &self,
        network: &str,
        ip: Option<Ipv4Addr>,
        mac: Option<MacAddr>,
    ) -> Result<(Vni, u32), ControlError> {
        let n = self.topology.check_endpoint(network, ip, mac)?;
        Ok((n.vni(), n.spec.mtu))
    }

    /// Publishes the port in the topology, then hands its devices to the workers; if they
    /// refuse, the port leaves the topology again.
    fn add_port(
        &mut self,
        (devices, reader): (Vec<Box<dyn PortDevice>>, Option<usize>),
        meta: PortMeta,
        vni: Vni,
        endpoint: Option<(MacAddr, Ipv4Addr)>,
        id: PortId,
        rules: PortRules,
    ) -> Result<serde_json::Value, ControlError> {
        let name = meta.name.clone();
        let PortRules { security, limits } = rules;
        // Every worker reads the port when each has a device of its own (a TAP queue, a
        // fanout socket) and no one reader was named: they share its limits.
        let readers = if reader.is_some() { 1 } else { devices.len() };
        let limits = self.port_limits(&meta.network, limits).read_by(readers);
        self.change_topology(|t| {
            t.add_port(id, &name, vni, endpoint)?;
            t.set_port_security(id, security)?;
            t.set_port_limits(id, limits)
        })?;
        let info: PortInfo = match self.workers.add_port(id, devices, reader, meta, endpoint) {
            Ok(row) => (&row).into(),
            Err(e) => {
                let _ = self.change_topology(|t| t.remove_port(id).map(|_| ()));
                return Err(ControlError::DataPlane(e));
            }
        };
        tracing::info!(
            port = info.id, name = %info.name, network = %info.network, ifname = %info.ifname,
            netns = info.netns.as_deref().unwrap_or("-"), mac = info.mac.as_deref().unwrap_or("-"),
            ip = info.ip.as_deref().unwrap_or("-"), queues = info.queues, "port attached"
        );
        to_json(info)
    }

    /// A new port's limits: its attach's own `given`, over its network's and the daemon's
    /// (node.toml), over the built-in defaults.
    fn port_limits(
        &self,
        network: &str,
        given: crate::switch::LimitSettings,
    ) -> crate::switch::PortLimits {
        let base = self
            .config
            .as_ref()
            .map(|(c, _)| c.limits_for(network))
            .unwrap_or_default();
        given.or(base).resolve()
    }

    /// Takes the port from the workers, then from the topology.
    fn remove_port(
        &mut self,
        select: PortSelector,
        what: String,
    ) -> Result<serde_json::Value, ControlError> {
        let row = self
            .workers
            .remove_port(select)
            .map_err(|_| format!("{what} is not attached (see `vswitchctl show ports`)"))?;
        wait_port_gone(&row);
        self.trim_due = true;
        let _ = self.change_topology(|t| t.remove_port(row.id).map(|_| ()));
        self.resolv.remove(row.id.0);
        self.forget_port(row.id);
        to_json(PortInfo::from(&row))
    }
}

/// How long a connection waits for the actor (attach does netlink work).
const ACTOR_DEADLINE: Duration = Duration::from_secs(30);

/// A front-end's way to the control actor: the socket's connections, SIGHUP, and later the
/// Docker, CNI and cluster front-ends. Cloneable; any thread.
#[derive(Clone)]
pub struct ControlHandle {
    tx: Sender<(Request, Sender<Response>)>,
    views: ViewSlot,
    wake: Sender<()>,
}

/// Where the newest cluster view waits for the actor (control threads only).
type ViewSlot = Arc<std::sync::Mutex<Option<Arc<ClusterView>>>>;

impl ControlHandle {
    /// Sends `req` to the actor and waits for its answer.
    pub fn call(&self, req: Request) -> Response {
        let (tx, rx) = crossbeam_channel::bounded(1);
        if self.tx.send((req, tx)).is_err() {
            return Response::err("vswitchd is shutting down");
        }
        rx.recv_timeout(ACTOR_DEADLINE)
            .unwrap_or_else(|_| Response::err("vswitchd did not answer in time"))
    }

    /// Hands the actor a new view of the cluster (from the agent's watch thread); never
    /// blocks. The actor applies the newest it has when it gets to it.
    pub fn cluster_view(&self, view: Arc<ClusterView>) {
        *self.views.lock().unwrap_or_else(|e| e.into_inner()) = Some(view);
        // Full: a wake-up is pending already, and it will find this view.
        let _ = self.wake.try_send(());
    }
}

fn to_json<T: serde::Serialize>(v: T) -> Result<serde_json::Value, ControlError> {
    Ok(serde_json::to_value(v)?)
}

fn parse_ip_prefix(s: &str) -> Result<Ipv4Net, String> {
    s.parse::<Ipv4Net>()
        .map_err(|_| format!("invalid --ip {s:?}: expected ADDR/PREFIX such as 10.0.9.2/24"))
}

/// ADDR or ADDR/PREFIX; a bare address is taken as a /32.
fn parse_ip_or_prefix(s: &str) -> Result<Ipv4Net, String> {
    if s.contains('/') {
        return parse_ip_prefix(s);
    }
    s.parse::<Ipv4Addr>()
        .map(|a| Ipv4Net::new(a, 32).expect("32 is a valid prefix"))
        .map_err(|_| {
            format!("invalid --ip {s:?}: expected ADDR or ADDR/PREFIX such as 10.0.9.2/24")
        })
}

fn parse_station_mac(s: &str) -> Result<MacAddr, String> {
    let mac: MacAddr = s
        .parse()
        .map_err(|e: crate::wire::mac::ParseMacError| e.to_string())?;
    if !mac.is_unicast_source() {
        return Err(format!(
            "--mac {mac} is not a unicast address (the first octet must be even, and not all zero)"
        ));
    }
    Ok(mac)
}

pub use crate::switch::service::station_mac as generated_mac;

/// How long the control actor waits, after removing ports, for no request to come before it
/// gives freed memory back.
const TRIM_AFTER: Duration = Duration::from_secs(1);

/// Waits, at most 10 s, until the port the workers just let go of is gone, so that a detach
/// answers once its interface has left: for a container's TAP, until no interface of its name
/// is left in the container's namespace, which comes early in the kernel's close of the device
/// (crate::control::attach::wait_interface_gone); the rest of that close goes on on the reaper
/// while the next detaches are served (crate::dataplane::reaper). For any other port, or a
/// namespace that went, until the reaper has closed the port's devices.
fn wait_port_gone(row: &crate::dataplane::view::PortRow) {
    let limit = std::time::Duration::from_secs(10);
    let m = &row.meta;
    if let (Some(netns), "tap") = (&m.netns, m.kind) {
        match crate::control::attach::wait_interface_gone(netns, m.netns_id, &m.ifname, limit) {
            Ok(true) => return,
            Ok(false) => {
                tracing::warn!(port = %m.name, ifname = %m.ifname, %netns, "the interface is still there 10 s after its port was removed");
                return;
            }
            Err(e) => {
                tracing::debug!(port = %m.name, "waiting for the port's devices to close: {e}")
            }
        }
    }
    if !crate::dataplane::reaper::wait(row.id, limit) {
        tracing::warn!(port = %m.name, "the port's devices are still closing 10 s after its removal");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_parsing_errors_say_what_is_expected() {
        assert!(parse_ip_prefix("10.0.9.2")
            .unwrap_err()
            .contains("ADDR/PREFIX"));
        assert_eq!(parse_ip_or_prefix("10.0.9.2").unwrap().prefix_len(), 32);
        assert!(parse_station_mac("01:00:5e:00:00:01")
            .unwrap_err()
            .contains("unicast"));
    }
}
