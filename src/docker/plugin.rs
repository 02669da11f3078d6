//! libnetwork's remote network driver and remote IPAM driver: the HTTP calls dockerd makes to
//! a plugin (`POST /NetworkDriver.*`, `POST /IpamDriver.*`, JSON both ways), turned into
//! calls of the control actor (super::calls).
//!
//! Docker gives a plugin IDs, never names; vswitch keys networks by name (a Docker network
//! `blue` is the vswitch network `blue` on every host) and publishes endpoints by container
//! name. So the plugin asks dockerd (super::dockerd): after CreateNetwork, for the network's
//! name and options; after Join, for the container's name. Both questions are asked on a thread
//! of their own once the plugin call has been answered, because dockerd is inside that call
//! until then. Until a network's name is known, calls that need it wait for it (at most the
//! name timeout).
//!
//! Pools: a pool's ID is `vswitch:SUBNET`; an address request is matched to its network by the
//! subnet. The gateway Docker asks for is the network's DNS address
//! (crate::switch::service), which no container gets.
//!
//! Thread-safety: `Plugin` is shared by the HTTP threads (super::serve); its own state is one
//! mutex held only for map lookups.

use super::calls::{AddressReply, DockerCall, EndpointReply, JoinReply, NetworkReply};
use super::dockerd::Dockerd;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The control actor, as the plugin sees it (a trait so the handlers are tested without one).
pub trait Backend: Send + Sync {
    fn call(&self, call: DockerCall) -> Result<Value, String>;
}

impl Backend for crate::control::server::ControlHandle {
    fn call(&self, call: DockerCall) -> Result<Value, String> {
        let r = crate::control::server::ControlHandle::call(
            self,
            crate::control::api::Request::Docker { call },
        );
        match (r.ok, r.error) {
            (true, _) => Ok(r.result.unwrap_or(Value::Null)),
            (false, e) => Err(e.unwrap_or_else(|| "vswitchd refused".to_string())),
        }
    }
}

/// What dockerd is told a plugin implements (`Plugin.Activate`).
const IMPLEMENTS: [&str; 2] = ["NetworkDriver", "IpamDriver"];
/// libnetwork's option key for `-o` options.
const GENERIC: &str = "com.docker.network.generic";
/// libnetwork's RequestAddress option for the network's gateway.
const ADDRESS_TYPE: &str = "RequestAddressType";
const GATEWAY: &str = "com.docker.network.gateway";
const POOL_PREFIX: &str = "vswitch:";

/// One of Docker's networks as the plugin knows it.
#[derive(Debug, Clone, Default)]
struct Net {
    subnet: String,
    vni: Option<u32>,
    encrypted: bool,
    /// vswitch's name for it (Docker's), once dockerd told it.
    name: Option<String>,
    /// Why it could not be made or joined, if so.
    failed: Option<String>,
}

pub struct Plugin {
    backend: Arc<dyn Backend>,
    dockerd: Arc<dyn Dockerd>,
    /// How long to wait for dockerd to tell a name.
    timeout: Duration,
    /// By Docker's network ID.
    nets: Mutex<BTreeMap<String, Net>>,
    named: Condvar,
}

/// A handler's answer: the JSON body, or an error for dockerd to show the user.
pub type Answer = Result<Value, String>;

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, String> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        &b"{}"[..]
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| format!("malformed request: {e}"))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct CreateNetwork {
    #[serde(rename = "NetworkID")]
    network_id: String,
    options: BTreeMap<String, Value>,
    #[serde(rename = "IPv4Data")]
    ipv4_data: Option<Vec<IpamData>>,
    #[serde(rename = "IPv6Data")]
    ipv6_data: Option<Vec<IpamData>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct IpamData {
    address_space: String,
    pool: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct Ids {
    #[serde(rename = "NetworkID")]
    network_id: String,
    #[serde(rename = "EndpointID")]
    endpoint_id: String,
    sandbox_key: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct CreateEndpoint {
    #[serde(rename = "NetworkID")]
    network_id: String,
    #[serde(rename = "EndpointID")]
    endpoint_id: String,
    interface: Option<EndpointInterface>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct EndpointInterface {
    address: String,
    #[serde(rename = "AddressIPv6")]
    address_ipv6: String,
    mac_address: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct RequestPool {
    pool: String,
    sub_pool: String,
    #[serde(rename = "V6")]
    v6: bool,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct AddressRequest {
    #[serde(rename = "PoolID")]
    pool_id: String,
    address: String,
    options: Option<BTreeMap<String, String>>,
}

/// The subnet of a pool ID the plugin gave out.
fn pool_subnet(pool_id: &str) -> Result<&str, String> {
    pool_id
        .strip_prefix(POOL_PREFIX)
        .ok_or_else(|| format!("pool {pool_id:?} is not one of vswitch's"))
}

/// `-o` options: `vni=N`, `encrypted` (or `encrypted=true|false`); anything else is refused.
fn network_options(options: &BTreeMap<String, Value>) -> Result<(Option<u32>, bool), String> {
    let mut vni = None;
    let mut encrypted = false;
    let generic = match options.get(GENERIC) {
        None | Some(Value::Null) => return Ok((None, false)),
        Some(Value::Object(m)) => m,
        Some(other) => return Err(format!("unexpected {GENERIC}: {other}")),
    };
    for (k, v) in generic {
        let v = match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        match k.as_str() {
            "vni" => {
                vni = Some(
                    v.parse::<u32>()
                        .map_err(|_| format!("-o vni={v}: expected a number from 1 to 16777215"))?,
                )
            }
            "encrypted" => {
                encrypted = match v.as_str() {
                    "" | "true" | "1" => true,
                    "false" | "0" => false,
                    _ => return Err(format!("-o encrypted={v}: expected true or false")),
                }
            }
            other => {
                return Err(format!(
                    "unknown option -o {other}: vswitch networks take -o vni=N and -o encrypted"
                ))
            }
        }
    }
    Ok((vni, encrypted))
}

impl Plugin {
    pub fn new(backend: Arc<dyn Backend>, dockerd: Arc<dyn Dockerd>, timeout: Duration) -> Plugin {
        Plugin {
            backend,
            dockerd,
            timeout,
            nets: Mutex::new(BTreeMap::new()),
            named: Condvar::new(),
        }
    }

    fn nets(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Net>> {
        self.nets.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Answers one call. `after` is work to do once the answer is sent (asking dockerd for a
    /// name), which the caller runs on a thread of its own.
    pub fn handle(self: &Arc<Self>, path: &str, body: &[u8]) -> (Answer, Option<After>) {
        let none = |a: Answer| (a, None);
        match path {
            "/Plugin.Activate" => none(Ok(json!({ "Implements": IMPLEMENTS }))),
            "/NetworkDriver.GetCapabilities" => none(Ok(
                json!({ "Scope": "local", "ConnectivityScope": "global" }),
            )),
            "/NetworkDriver.CreateNetwork" => match self.create_network(body) {
                Ok(id) => (Ok(json!({})), Some(After::NetworkName(id))),
                Err(e) => none(Err(e)),
            },
            "/NetworkDriver.DeleteNetwork" => none(self.delete_network(body)),
            "/NetworkDriver.CreateEndpoint" => none(self.create_endpoint(body)),
            "/NetworkDriver.EndpointOperInfo" => none(Ok(json!({ "Value": {} }))),
            "/NetworkDriver.Join" => match self.join(body) {
                Ok((v, ids)) => (Ok(v), Some(After::ContainerName(ids.0, ids.1, ids.2))),
                Err(e) => none(Err(e)),
            },
            "/NetworkDriver.Leave" => none(parse::<Ids>(body).map(|_| json!({}))),
            "/NetworkDriver.DeleteEndpoint" => none(self.delete_endpoint(body)),
            "/NetworkDriver.DiscoverNew"
            | "/NetworkDriver.DiscoverDelete"
            | "/NetworkDriver.ProgramExternalConnectivity"
            | "/NetworkDriver.RevokeExternalConnectivity" => none(Ok(json!({}))),
            "/IpamDriver.GetCapabilities" => none(Ok(json!({ "RequiresMACAddress": false }))),
            "/IpamDriver.GetDefaultAddressSpaces" => none(Ok(json!({
                "LocalDefaultAddressSpace": "vswitch-local",
                "GlobalDefaultAddressSpace": "vswitch-global"
            }))),
            "/IpamDriver.RequestPool" => none(self.request_pool(body)),
            "/IpamDriver.ReleasePool" => none(Ok(json!({}))),
            "/IpamDriver.RequestAddress" => none(self.request_address(body)),
            "/IpamDriver.ReleaseAddress" => none(self.release_address(body)),
            other => none(Err(format!("vswitch does not implement {other}"))),
        }
    }

    fn create_network(&self, body: &[u8]) -> Result<String, String> {
        let r: CreateNetwork = parse(body)?;
        if r.network_id.is_empty() {
            return Err("CreateNetwork without a NetworkID".to_string());
        }
        if r.ipv6_data.as_ref().is_some_and(|v| !v.is_empty()) {
            return Err("vswitch networks are IPv4 only: leave --ipv6 out".to_string());
        }
        let v4 = r.ipv4_data.unwrap_or_default();
        let [data] = v4.as_slice() else {
            return Err(format!(
                "a vswitch network has exactly one IPv4 subnet (got {})",
                v4.len()
            ));
        };
        if !data.address_space.starts_with("vswitch") {
            return Err(
                "vswitch networks take their addresses from vswitch: add --ipam-driver vswitch"
                    .to_string(),
            );
        }
        let (vni, encrypted) = network_options(&r.options)?;
        self.nets().insert(
            r.network_id.clone(),
            Net {
                subnet: data.pool.clone(),
                vni,
                encrypted,
                ..Net::default()
            },
        );
        Ok(r.network_id)
    }

    fn delete_network(&self, body: &[u8]) -> Answer {
        let r: Ids = parse(body)?;
        let gone = self.nets().remove(&r.network_id);
        if let Some(name) = gone.and_then(|n| n.name) {
            self.backend.call(DockerCall::NetworkGone { name })?;
        }
        Ok(json!({}))
    }

    /// After CreateNetwork: dockerd knows the network once the call returns; its name makes
    /// (or joins) the vswitch network.
    fn resolve_network(&self, id: &str) -> Result<String, String> {
        let deadline = Instant::now() + self.timeout;
        let mut wait = Duration::from_millis(20);
        let found = loop {
            match self.dockerd.network(id) {
                Ok(Some(n)) => break n,
                Ok(None) | Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(Duration::from_millis(500));
                }
                Ok(None) => return Err(format!("dockerd does not know network {id}")),
                Err(e) => return Err(e),
            }
        };
        self.ensure(id, found.name)
    }

    /// Makes or joins the vswitch network for Docker's network `id`, now called `name`.
    fn ensure(&self, id: &str, name: String) -> Result<String, String> {
        let net = self
            .nets()
            .get(id)
            .cloned()
            .ok_or_else(|| format!("network {id} was removed"))?;
        let r = self
            .backend
            .call(DockerCall::Network {
                name: name.clone(),
                subnet: net.subnet.clone(),
                vni: net.vni,
                encrypted: net.encrypted,
            })
            .and_then(|v| serde_json::from_value::<NetworkReply>(v).map_err(|e| e.to_string()));
        let mut nets = self.nets();
        if let Some(n) = nets.get_mut(id) {
            match &r {
                Ok(_) => n.name = Some(name.clone()),
                Err(e) => n.failed = Some(e.clone()),
            }
        }
        drop(nets);
        self.named.notify_all();
        r.map(|_| name)
    }

    /// The vswitch network of Docker's network `id`, waiting (at most the timeout) for its
    /// name; asks dockerd itself for networks made before this vswitchd started, and again for
    /// one whose making failed.
    fn network_name(&self, id: &str) -> Result<String, String> {
        let deadline = Instant::now() + self.timeout;
        let mut nets = self.nets();
        loop {
            match nets.get(id) {
                Some(Net { name: Some(n), .. }) => return Ok(n.clone()),
                Some(Net {
                    failed: Some(_), ..
                }) => {
                    // Made or joined in vain after CreateNetwork (etcd away, a subnet that
                    // differs): try again now, and say why if it still fails.
                    drop(nets);
                    return self.resolve_network(id);
                }
                Some(_) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(format!(
                            "dockerd has not told the name of network {id} in time"
                        ));
                    }
                    nets = self
                        .named
                        .wait_timeout(nets, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                None => {
                    drop(nets);
                    return self.adopt(id);
                }
            }
        }
    }

    /// A network dockerd has and this vswitchd has not heard of (it restarted): learns it.
    fn adopt(&self, id: &str) -> Result<String, String> {
        let n = self
            .dockerd
            .network(id)?
            .ok_or_else(|| format!("dockerd does not know network {id}"))?;
        self.take_in(n)
    }

    /// At start: learns every vswitch network dockerd has, so that calls naming one (a
    /// DeleteNetwork after a restart above all: dockerd cannot be asked about a network it is
    /// deleting) find it. Tries for `patience` while dockerd does not answer (it may start
    /// after vswitchd). Runs on a thread of its own.
    pub fn learn_networks(&self, patience: Duration) {
        let deadline = Instant::now() + patience;
        let mut wait = Duration::from_millis(200);
        let networks = loop {
            match self.dockerd.networks() {
                Ok(n) => break n,
                Err(e) if Instant::now() >= deadline => {
                    tracing::info!("docker: dockerd's networks not learned at start: {e}");
                    return;
                }
                Err(_) => {
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        };
        for n in networks.into_iter().filter(|n| n.driver == "vswitch") {
            if self.nets().contains_key(&n.id) {
                continue;
            }
            let (id, name) = (n.id.clone(), n.name.clone());
            match self.take_in(n) {
                Ok(_) => {
                    tracing::info!(network = %name, docker_id = %id, "docker: network known from dockerd")
                }
                Err(e) => tracing::warn!(network = %name, docker_id = %id, "docker: {e}"),
            }
        }
    }

    /// Learns dockerd's network `n` and makes or joins it.
    fn take_in(&self, n: super::dockerd::DockerNetwork) -> Result<String, String> {
        let id = n.id.clone();
        let subnet = n
            .subnets
            .first()
            .cloned()
            .ok_or_else(|| format!("network {} has no subnet", n.name))?;
        let generic = json!({ GENERIC: n.options });
        let (vni, encrypted) =
            network_options(&serde_json::from_value(generic).unwrap_or_default())?;
        self.nets().insert(
            id.clone(),
            Net {
                subnet,
                vni,
                encrypted,
                ..Net::default()
            },
        );
        self.ensure(&id, n.name)
    }

    /// The vswitch network whose pool is `subnet`.
    fn network_of_pool(&self, subnet: &str) -> Result<String, String> {
        let known: Vec<String> = self
            .nets()
            .iter()
            .filter(|(_, n)| n.subnet == subnet)
            .map(|(id, _)| id.clone())
            .collect();
        let ids = if known.is_empty() {
            self.dockerd
                .networks()?
                .into_iter()
                .filter(|n| n.subnets.iter().any(|s| s == subnet))
                .map(|n| n.id)
                .collect()
        } else {
            known
        };
        match ids.as_slice() {
            [id] => self.network_name(id),
            [] => Err(format!("no vswitch network has the subnet {subnet}")),
            _ => Err(format!(
                "several Docker networks have the subnet {subnet} on this host: give each \
                 vswitch network its own subnet"
            )),
        }
    }

    fn request_pool(&self, body: &[u8]) -> Answer {
        let r: RequestPool = parse(body)?;
        if r.v6 {
            return Err("vswitch networks are IPv4 only".to_string());
        }
        if r.pool.is_empty() {
            return Err(
                "vswitch does not choose subnets: give one with --subnet (e.g. 10.0.9.0/24)"
                    .to_string(),
            );
        }
        if !r.sub_pool.is_empty() {
            return Err("vswitch hands out the whole subnet: leave --ip-range out".to_string());
        }
        let subnet = crate::control::config::values::parse_subnet(&r.pool)
            .map_err(|e| format!("--subnet {}: {e}", r.pool))?;
        if crate::switch::service::service_addr(subnet).is_none() {
            return Err(format!(
                "--subnet {subnet} is too small: at least a /30 (its first host address is the \
                 network's DNS address and gateway)"
            ));
        }
        Ok(json!({
            "PoolID": format!("{POOL_PREFIX}{subnet}"),
            "Pool": subnet.to_string(),
            "Data": {}
        }))
    }

    fn request_address(&self, body: &[u8]) -> Answer {
        let r: AddressRequest = parse(body)?;
        let subnet = pool_subnet(&r.pool_id)?;
        let net: ipnet::Ipv4Net = subnet.parse().map_err(|_| format!("bad pool {subnet}"))?;
        let dns = crate::switch::service::service_addr(net)
            .ok_or_else(|| format!("pool {subnet} has no DNS address"))?;
        let gateway = r
            .options
            .as_ref()
            .and_then(|o| o.get(ADDRESS_TYPE))
            .is_some_and(|t| t == GATEWAY);
        if gateway {
            if !r.address.is_empty() && r.address != dns.to_string() {
                return Err(format!(
                    "the gateway of a vswitch network is its DNS address {dns}: leave --gateway \
                     out (or give {dns})"
                ));
            }
            return Ok(json!({ "Address": format!("{dns}/{}", net.prefix_len()), "Data": {} }));
        }
        let network = self.network_of_pool(subnet)?;
        let v = self.backend.call(DockerCall::RequestAddress {
            network,
            ip: Some(r.address).filter(|a| !a.is_empty()),
        })?;
        let a: AddressReply = serde_json::from_value(v).map_err(|e| e.to_string())?;
        Ok(json!({ "Address": a.address, "Data": {} }))
    }

    fn release_address(&self, body: &[u8]) -> Answer {
        let r: AddressRequest = parse(body)?;
        let subnet = pool_subnet(&r.pool_id)?;
        self.backend.call(DockerCall::ReleaseAddress {
            subnet: subnet.to_string(),
            ip: r.address,
        })?;
        Ok(json!({}))
    }

    fn create_endpoint(&self, body: &[u8]) -> Answer {
        let r: CreateEndpoint = parse(body)?;
        let iface = r.interface.unwrap_or_default();
        if iface.address.is_empty() {
            return Err("CreateEndpoint without an IPv4 address".to_string());
        }
        if !iface.address_ipv6.is_empty() {
            return Err("vswitch networks are IPv4 only".to_string());
        }
        let network = self.network_name(&r.network_id)?;
        let given = Some(iface.mac_address).filter(|m| !m.is_empty());
        let v = self.backend.call(DockerCall::CreateEndpoint {
            network,
            endpoint: r.endpoint_id,
            address: iface.address,
            mac: given.clone(),
        })?;
        let e: EndpointReply = serde_json::from_value(v).map_err(|e| e.to_string())?;
        // libnetwork refuses an answer that sets what it gave.
        Ok(match given {
            Some(_) => json!({}),
            None => json!({ "Interface": { "MacAddress": e.mac } }),
        })
    }

    fn join(&self, body: &[u8]) -> Result<(Value, (String, String, String)), String> {
        let r: Ids = parse(body)?;
        let v = self.backend.call(DockerCall::Join {
            endpoint: r.endpoint_id.clone(),
            sandbox: r.sandbox_key,
        })?;
        let j: JoinReply = serde_json::from_value(v).map_err(|e| e.to_string())?;
        // No default route: the network is an island; containers that need the outside are
        // also put on a network that has one. DisableGatewayService keeps dockerd from adding
        // its docker_gwbridge.
        Ok((
            json!({
                "InterfaceName": { "SrcName": j.tap, "DstPrefix": "eth" },
                "DisableGatewayService": true
            }),
            (r.network_id, r.endpoint_id, j.tap),
        ))
    }

    fn delete_endpoint(&self, body: &[u8]) -> Answer {
        let r: Ids = parse(body)?;
        self.backend.call(DockerCall::DeleteEndpoint {
            endpoint: r.endpoint_id,
        })?;
        Ok(json!({}))
    }

    /// After Join: the container's name from dockerd (it lists the endpoint once Join has
    /// returned), then the endpoint is attached under it — once dockerd has moved the TAP
    /// into the container, so that the port is recorded where it will be found after a
    /// restart (crate::control::server::docker).
    fn name_endpoint(&self, network_id: &str, endpoint: &str, tap: &str) -> Result<(), String> {
        let deadline = Instant::now() + self.timeout;
        let mut wait = Duration::from_millis(10);
        let mut name = None;
        loop {
            if name.is_none() {
                if let Ok(Some(n)) = self.dockerd.network(network_id) {
                    name = n.endpoints.get(endpoint).cloned();
                }
            }
            let moved = !matches!(crate::io::ifindex_of(tap), Ok(Some(_)));
            if name.is_some() && moved {
                break;
            }
            if Instant::now() >= deadline {
                if name.is_none() {
                    tracing::warn!(
                        endpoint,
                        "docker: dockerd did not tell the container's name in time"
                    );
                }
                break;
            }
            std::thread::sleep(wait);
            wait = (wait * 2).min(Duration::from_millis(200));
        }
        self.backend
            .call(DockerCall::Named {
                endpoint: endpoint.to_string(),
                name,
            })
            .map(|_| ())
    }

    /// Runs what a call left to do after its answer.
    pub fn after(&self, after: After) {
        let r = match &after {
            After::NetworkName(id) => self.resolve_network(id).map(|name| {
                tracing::info!(network = %name, docker_id = %id, "docker: network ready");
            }),
            After::ContainerName(net, ep, tap) => self.name_endpoint(net, ep, tap),
        };
        if let Err(e) = r {
            tracing::warn!(?after, "docker: {e}");
        }
    }
}

/// Work left after a call was answered.
#[derive(Debug, Clone, PartialEq)]
pub enum After {
    /// Docker's network ID: learn its name, make or join the vswitch network.
    NetworkName(String),
    /// Docker's network and endpoint IDs and the TAP made for it: learn the container's name,
    /// wait for dockerd to move the TAP into the container, attach the endpoint.
    ContainerName(String, String, String),
}

#[cfg(test)]
mod tests {
    use super::super::dockerd::DockerNetwork;
    use super::*;

    /// Records the calls; answers each kind with what the actor would.
    #[derive(Default)]
    struct FakeActor {
        calls: Mutex<Vec<DockerCall>>,
        /// Network calls to refuse first (the store away).
        refuse_networks: std::sync::atomic::AtomicUsize,
    }

    impl Backend for FakeActor {
        fn call(&self, call: DockerCall) -> Result<Value, String> {
            self.calls.lock().unwrap().push(call.clone());
            use std::sync::atomic::Ordering::SeqCst;
            if matches!(call, DockerCall::Network { .. })
                && self
                    .refuse_networks
                    .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
                    .is_ok()
            {
                return Err("the cluster store is unreachable".into());
            }
            Ok(match call {
                DockerCall::Network { name, subnet, .. } => json!({
                    "name": name, "vni": 42, "subnet": subnet, "dns": "10.0.9.1", "mtu": 1450
                }),
                DockerCall::RequestAddress { ip, .. } => {
                    json!({ "address": format!("{}/24", ip.unwrap_or("10.0.9.2".into())) })
                }
                DockerCall::CreateEndpoint { mac, .. } => {
                    json!({ "mac": mac.unwrap_or("02:aa:bb:cc:dd:ee".into()) })
                }
                DockerCall::Join { .. } => json!({ "tap": "vsw7" }),
                _ => json!({}),
            })
        }
    }

    struct FakeDockerd(Vec<DockerNetwork>);

    impl Dockerd for FakeDockerd {
        fn network(&self, id: &str) -> Result<Option<DockerNetwork>, String> {
            Ok(self.0.iter().find(|n| n.id == id).cloned())
        }
        fn networks(&self) -> Result<Vec<DockerNetwork>, String> {
            Ok(self.0.clone())
        }
    }

    fn blue() -> DockerNetwork {
        DockerNetwork {
            id: "n1".into(),
            name: "blue".into(),
            driver: "vswitch".into(),
            subnets: vec!["10.0.9.0/24".into()],
            options: [("vni".to_string(), "42".to_string())].into(),
            endpoints: [("e1".to_string(), "web".to_string())].into(),
        }
    }

    fn plugin() -> (Arc<Plugin>, Arc<FakeActor>) {
        let actor = Arc::new(FakeActor::default());
        let p = Plugin::new(
            actor.clone(),
            Arc::new(FakeDockerd(vec![blue()])),
            Duration::from_secs(1),
        );
        (Arc::new(p), actor)
    }

    fn ok(p: &Arc<Plugin>, path: &str, body: &str) -> (Value, Option<After>) {
        let (a, after) = p.handle(path, body.as_bytes());
        (a.unwrap_or_else(|e| panic!("{path}: {e}")), after)
    }

    fn err(p: &Arc<Plugin>, path: &str, body: &str) -> String {
        p.handle(path, body.as_bytes()).0.unwrap_err()
    }

    const CREATE_BLUE: &str = r#"{"NetworkID":"n1","Options":{"com.docker.network.enable_ipv6":false,
        "com.docker.network.generic":{"vni":"42","encrypted":""}},
        "IPv4Data":[{"AddressSpace":"vswitch-local","Pool":"10.0.9.0/24","Gateway":"10.0.9.1/24","AuxAddresses":null}],
        "IPv6Data":[]}"#;

    #[test]
    fn handshake() {
        let (p, _) = plugin();
        let (v, _) = ok(&p, "/Plugin.Activate", "");
        assert_eq!(v, json!({ "Implements": ["NetworkDriver", "IpamDriver"] }));
        let (v, _) = ok(&p, "/NetworkDriver.GetCapabilities", "{}");
        assert_eq!(v["Scope"], "local");
        let (v, _) = ok(&p, "/IpamDriver.GetDefaultAddressSpaces", "");
        assert_eq!(v["LocalDefaultAddressSpace"], "vswitch-local");
        let (v, _) = ok(&p, "/IpamDriver.GetCapabilities", "");
        assert_eq!(v["RequiresMACAddress"], false);
        assert!(err(&p, "/NetworkDriver.AllocateNetwork", "{}").contains("does not implement"));
        assert!(err(&p, "/NetworkDriver.Join", "{").contains("malformed request"));
    }

    #[test]
    fn pools_are_the_given_subnet_and_the_gateway_is_the_dns_address() {
        let (p, actor) = plugin();
        let (v, _) = ok(
            &p,
            "/IpamDriver.RequestPool",
            r#"{"AddressSpace":"vswitch-local","Pool":"10.0.9.0/24","SubPool":"","Options":{},"V6":false}"#,
        );
        assert_eq!(v["PoolID"], "vswitch:10.0.9.0/24");
        assert_eq!(v["Pool"], "10.0.9.0/24");
        assert!(err(&p, "/IpamDriver.RequestPool", r#"{"Pool":""}"#).contains("--subnet"));
        assert!(err(&p, "/IpamDriver.RequestPool", r#"{"Pool":"","V6":true}"#).contains("IPv4"));
        assert!(err(
            &p,
            "/IpamDriver.RequestPool",
            r#"{"Pool":"10.0.9.0/24","SubPool":"10.0.9.0/25"}"#
        )
        .contains("--ip-range"));
        assert!(
            err(&p, "/IpamDriver.RequestPool", r#"{"Pool":"10.0.9.0/31"}"#).contains("too small")
        );
        assert!(
            err(&p, "/IpamDriver.RequestPool", r#"{"Pool":"10.0.9.1/24"}"#).contains("--subnet")
        );
        let gw = r#"{"PoolID":"vswitch:10.0.9.0/24","Address":"","Options":{"RequestAddressType":"com.docker.network.gateway"}}"#;
        let (v, _) = ok(&p, "/IpamDriver.RequestAddress", gw);
        assert_eq!(v["Address"], "10.0.9.1/24");
        let other = gw.replace(r#""Address":"""#, r#""Address":"10.0.9.254""#);
        assert!(err(&p, "/IpamDriver.RequestAddress", &other).contains("DNS address 10.0.9.1"));
        // The gateway is released without asking the actor for anything it did not hand out.
        assert!(actor.calls.lock().unwrap().is_empty());
    }

    #[test]
    fn create_network_learns_the_name_from_dockerd_then_makes_the_network() {
        let (p, actor) = plugin();
        let (v, after) = ok(&p, "/NetworkDriver.CreateNetwork", CREATE_BLUE);
        assert_eq!(v, json!({}));
        let after = after.expect("the name is asked for after the answer");
        assert_eq!(after, After::NetworkName("n1".into()));
        p.after(after);
        assert_eq!(
            actor.calls.lock().unwrap().as_slice(),
            &[DockerCall::Network {
                name: "blue".into(),
                subnet: "10.0.9.0/24".into(),
                vni: Some(42),
                encrypted: true
            }]
        );
        let bad = CREATE_BLUE.replace(r#""vni":"42""#, r#""colour":"green""#);
        assert!(err(&p, "/NetworkDriver.CreateNetwork", &bad).contains("unknown option -o colour"));
        let bad = CREATE_BLUE.replace(r#""vni":"42""#, r#""vni":"blue""#);
        assert!(err(&p, "/NetworkDriver.CreateNetwork", &bad).contains("-o vni=blue"));
        let foreign = CREATE_BLUE.replace("vswitch-local", "LocalDefault");
        assert!(err(&p, "/NetworkDriver.CreateNetwork", &foreign).contains("--ipam-driver vswitch"));
        let v6 = CREATE_BLUE.replace(r#""IPv6Data":[]"#, r#""IPv6Data":[{"Pool":"fd00::/64"}]"#);
        assert!(err(&p, "/NetworkDriver.CreateNetwork", &v6).contains("IPv4 only"));
    }

    #[test]
    fn a_container_gets_an_address_a_mac_and_a_tap_then_its_name() {
        let (p, actor) = plugin();
        ok(&p, "/NetworkDriver.CreateNetwork", CREATE_BLUE);
        // What the HTTP front-end runs once CreateNetwork is answered.
        p.after(After::NetworkName("n1".into()));
        let (v, _) = ok(
            &p,
            "/IpamDriver.RequestAddress",
            r#"{"PoolID":"vswitch:10.0.9.0/24","Address":"","Options":{}}"#,
        );
        assert_eq!(v["Address"], "10.0.9.2/24");
        let (v, _) = ok(
            &p,
            "/NetworkDriver.CreateEndpoint",
            r#"{"NetworkID":"n1","EndpointID":"e1","Interface":{"Address":"10.0.9.2/24","AddressIPv6":"","MacAddress":""},"Options":{}}"#,
        );
        assert_eq!(
            v,
            json!({ "Interface": { "MacAddress": "02:aa:bb:cc:dd:ee" } })
        );
        let (v, _) = ok(
            &p,
            "/NetworkDriver.CreateEndpoint",
            r#"{"NetworkID":"n1","EndpointID":"e2","Interface":{"Address":"10.0.9.3/24","MacAddress":"02:00:00:00:00:09"}}"#,
        );
        assert_eq!(v, json!({}), "a MAC Docker gave is not given back");
        let (v, after) = ok(
            &p,
            "/NetworkDriver.Join",
            r#"{"NetworkID":"n1","EndpointID":"e1","SandboxKey":"/var/run/docker/netns/abc","Options":{}}"#,
        );
        assert_eq!(
            v["InterfaceName"],
            json!({ "SrcName": "vsw7", "DstPrefix": "eth" })
        );
        assert_eq!(v["DisableGatewayService"], true);
        p.after(after.expect("the container's name is asked for after Join"));
        ok(
            &p,
            "/NetworkDriver.Leave",
            r#"{"NetworkID":"n1","EndpointID":"e1"}"#,
        );
        ok(
            &p,
            "/NetworkDriver.DeleteEndpoint",
            r#"{"NetworkID":"n1","EndpointID":"e1"}"#,
        );
        ok(
            &p,
            "/IpamDriver.ReleaseAddress",
            r#"{"PoolID":"vswitch:10.0.9.0/24","Address":"10.0.9.2"}"#,
        );
        ok(&p, "/NetworkDriver.DeleteNetwork", r#"{"NetworkID":"n1"}"#);
        let calls = actor.calls.lock().unwrap().clone();
        let want = [
            DockerCall::RequestAddress {
                network: "blue".into(),
                ip: None,
            },
            DockerCall::CreateEndpoint {
                network: "blue".into(),
                endpoint: "e1".into(),
                address: "10.0.9.2/24".into(),
                mac: None,
            },
            DockerCall::Join {
                endpoint: "e1".into(),
                sandbox: "/var/run/docker/netns/abc".into(),
            },
            DockerCall::Named {
                endpoint: "e1".into(),
                name: Some("web".into()),
            },
            DockerCall::DeleteEndpoint {
                endpoint: "e1".into(),
            },
            DockerCall::ReleaseAddress {
                subnet: "10.0.9.0/24".into(),
                ip: "10.0.9.2".into(),
            },
            DockerCall::NetworkGone {
                name: "blue".into(),
            },
        ];
        for w in &want {
            assert!(calls.contains(w), "{w:?} not in {calls:#?}");
        }
    }

    #[test]
    fn a_network_whose_making_failed_is_made_at_the_first_address_request() {
        let (p, actor) = plugin();
        actor
            .refuse_networks
            .store(1, std::sync::atomic::Ordering::SeqCst);
        ok(&p, "/NetworkDriver.CreateNetwork", CREATE_BLUE);
        p.after(After::NetworkName("n1".into()));
        let (v, _) = ok(
            &p,
            "/IpamDriver.RequestAddress",
            r#"{"PoolID":"vswitch:10.0.9.0/24","Address":""}"#,
        );
        assert_eq!(v["Address"], "10.0.9.2/24");
        let networks = actor
            .calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| matches!(c, DockerCall::Network { .. }))
            .count();
        assert_eq!(networks, 2);
    }

    #[test]
    fn networks_learned_at_start_are_removed_by_docker_network_rm() {
        let (p, actor) = plugin();
        p.learn_networks(Duration::from_secs(1));
        ok(&p, "/NetworkDriver.DeleteNetwork", r#"{"NetworkID":"n1"}"#);
        let calls = actor.calls.lock().unwrap().clone();
        assert!(
            matches!(&calls[0], DockerCall::Network { name, vni: Some(42), .. } if name == "blue"),
            "{calls:?}"
        );
        assert_eq!(
            calls[1],
            DockerCall::NetworkGone {
                name: "blue".into()
            }
        );
    }

    #[test]
    fn a_network_made_before_a_restart_is_learned_from_dockerd() {
        let (p, actor) = plugin();
        let (v, _) = ok(
            &p,
            "/IpamDriver.RequestAddress",
            r#"{"PoolID":"vswitch:10.0.9.0/24","Address":"10.0.9.7"}"#,
        );
        assert_eq!(v["Address"], "10.0.9.7/24");
        let calls = actor.calls.lock().unwrap().clone();
        assert!(
            matches!(&calls[0], DockerCall::Network { name, vni: Some(42), .. } if name == "blue")
        );
        assert!(err(
            &p,
            "/IpamDriver.RequestAddress",
            r#"{"PoolID":"vswitch:10.0.8.0/24","Address":""}"#
        )
        .contains("no vswitch network has the subnet 10.0.8.0/24"));
        assert!(err(
            &p,
            "/IpamDriver.RequestAddress",
            r#"{"PoolID":"x","Address":""}"#
        )
        .contains("not one of vswitch's"));
    }
}
