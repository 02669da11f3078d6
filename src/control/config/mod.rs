//! `node.toml`: the daemon's configuration file (DESIGN.md §3 "node.toml"), parsed and validated.
//!
//! Contract: `Config::load` either returns a configuration in which every value is usable as is
//! (names unique and non-empty, VNIs in 1..=16777215, subnets in canonical form, every network's
//! peer list resolved to existing peers), or a `ConfigError` whose message names the file, the key
//! and what is wrong, one line per problem. All problems found are reported at once, so an
//! operator fixes the file in one go. Unknown keys are refused (`deny_unknown_fields`) so a typo
//! never silently falls back to a default.
//!
//! The underlay MTU is usually not in the file: the daemon detects it from the interface holding
//! `underlay_ip` and then calls `Config::validate_mtus`. When the file does set `underlay_mtu`,
//! `load` checks the network MTUs against it straight away.
//!
//! Thread-safety: plain data, no I/O but the one `read_to_string` in `load`. Called by the
//! control thread at start (and by `vswitchd --check`).
mod raw;
#[cfg(test)]
mod tests;
mod validate;
pub mod values;

use crate::switch::LimitSettings;
use crate::switch::{NetworkSpec, SwitchSpec, Vni, VtepAddr};
use ipnet::Ipv4Net;
use raw::RawFile;
use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use validate::{
    network_key, validate_cluster, validate_dns, validate_docker, validate_limits,
    validate_metrics, validate_networks, validate_node, validate_peers, Problems,
};

pub const DEFAULT_VXLAN_PORT: u16 = 4789;
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/vswitch/vswitchd.sock";
pub const DEFAULT_FDB_MAX_ENTRIES: usize = 8192;
pub const DEFAULT_FDB_AGING: Duration = Duration::from_secs(300);
/// Outer Ethernet (14) + IPv4 (20) + UDP (8) + VXLAN (8) headers: what a container frame loses
/// to the encapsulation on an IPv4 underlay (RFC 7348 §5).
pub const VXLAN_OVERHEAD: u32 = 50;
/// What an encrypted network's frame loses on an IPv4 underlay: outer IPv4 (20) + UDP (8) + ESP
/// header (8) + IV (8) + inner UDP (8) + VXLAN (8) + inner Ethernet (14) + ESP trailer (2) +
/// ICV (16), plus up to 3 bytes of padding that `effective_mtu` avoids by keeping the MTU a
/// multiple of 4 (RFC 4303 §2.4 aligns the trailer to 4 bytes).
pub const ESP_OVERHEAD: u32 = 92;
pub const DEFAULT_ESP_PORT: u16 = 4500;
pub const DEFAULT_REKEY_INTERVAL: Duration = Duration::from_secs(12 * 3600);
pub const DEFAULT_STATE_DIR: &str = "/var/lib/vswitch";
/// The smallest MTU we let a network have: the IPv4 minimum datagram size every host must accept
/// (RFC 791).
pub const MIN_MTU: u32 = 576;
/// Largest IPv4 datagram; no underlay carries more.
pub const MAX_UNDERLAY_MTU: u32 = 65535;
pub const MAX_WORKERS: u32 = 1024;
/// Per-network cap on learned MACs; above this the table is more likely a typo than a plan.
pub const MAX_FDB_ENTRIES: usize = 1 << 24;

/// A validated `node.toml`.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file it was read from, as given (used in later error messages).
    pub path: PathBuf,
    pub node: NodeConfig,
    pub peers: Vec<PeerConfig>,
    pub networks: Vec<NetworkConfig>,
    /// `[cluster]`: peers, networks and endpoints also come from etcd. `None`: static only.
    pub cluster: Option<ClusterConfig>,
    /// `[docker]`: serve Docker's network and IPAM plugin API (crate::docker). `None`: off.
    pub docker: Option<DockerConfig>,
    /// `[dns]`: where names the switch does not own are asked.
    pub dns: DnsConfig,
    /// `[port_limits]`: every port's limits unless its network or its attach says otherwise
    /// (crate::switch::limits); unset fields take the built-in defaults.
    pub port_limits: LimitSettings,
    /// `[metrics]`: serve Prometheus metrics over HTTP (crate::control::metrics). `None`: off.
    pub metrics: Option<MetricsConfig>,
}

/// `[metrics]`: where `GET /metrics` is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsConfig {
    /// An address of this host (or 0.0.0.0 / [::] for all) and a port other than 0.
    pub listen: std::net::SocketAddr,
}

/// `[dns]`. Every network's own address answers DNS (crate::switch::dns); names that are not
/// endpoints are forwarded to `upstreams`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsConfig {
    /// Resolvers to forward to, tried in order. `None`: the nameservers of the host's
    /// /etc/resolv.conf, read at start.
    pub upstreams: Option<Vec<std::net::SocketAddr>>,
}

pub const DEFAULT_DOCKER_PLUGIN_SOCKET: &str = "/run/docker/plugins/vswitch.sock";
pub const DEFAULT_DOCKER_API_SOCKET: &str = "/var/run/docker.sock";
pub const DEFAULT_DOCKER_NAME_TIMEOUT: Duration = Duration::from_secs(10);

/// `[docker]`: the libnetwork remote network and IPAM driver (README "Docker").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerConfig {
    /// Where the plugin listens; dockerd discovers plugins by their socket under
    /// /run/docker/plugins (the file name, less `.sock`, is the driver name).
    pub socket: PathBuf,
    /// dockerd's own API socket, asked for network and container names (the plugin API
    /// carries only IDs).
    pub docker_socket: PathBuf,
    /// How long after Join the plugin waits for dockerd to tell the container's name before it
    /// attaches the endpoint under a name of its own.
    pub name_timeout: Duration,
}

pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);
pub const MIN_LEASE_TTL: Duration = Duration::from_secs(2);
pub const MAX_LEASE_TTL: Duration = Duration::from_secs(300);
pub const DEFAULT_ADDRESS_GRACE: Duration = Duration::from_secs(300);
/// The longest `address_grace` accepted: a week.
pub const MAX_ADDRESS_GRACE: Duration = Duration::from_secs(7 * 24 * 3600);
pub const DEFAULT_CLUSTER_PREFIX: &str = "/vswitch";

/// `[cluster]`: the etcd cluster this node registers in and watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// `http://` or `https://` URLs of etcd members' client ports; tried in turn.
    pub etcd_endpoints: Vec<String>,
    /// How long this node's registration and endpoints outlive its last keepalive.
    pub lease_ttl: Duration,
    /// How long a host's address claims outlive its last keepalive: a host that dies or is cut
    /// off from etcd keeps its containers' addresses this long (so it keeps them across a
    /// restart, and they are never handed out while it could still be using them).
    pub address_grace: Duration,
    /// Every key vswitch writes starts with this (no trailing `/`).
    pub prefix: String,
    /// TLS client settings for `https://` endpoints.
    pub tls: Option<ClusterTls>,
}

impl ClusterConfig {
    /// Whether network secrets may travel between this node and etcd: every endpoint is
    /// https and this node shows a client certificate (so etcd can refuse anyone without one).
    pub fn secrets_safe(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.client.is_some())
            && self
                .etcd_endpoints
                .iter()
                .all(|e| e.starts_with("https://"))
    }
}

/// PEM files for `https://` etcd endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterTls {
    /// The CA that signed the etcd servers' certificates.
    pub ca_file: PathBuf,
    /// Client certificate and key, for etcd run with `--client-cert-auth`.
    pub client: Option<(PathBuf, PathBuf)>,
}

/// `[node]`: this host.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeConfig {
    pub name: String,
    /// This host's VTEP address: the source of our VXLAN packets.
    pub underlay_ip: Ipv4Addr,
    pub vxlan_port: u16,
    pub control_socket: PathBuf,
    /// Number of forwarding workers; 0 means half the available cores, at least one
    /// (crate::io::cpu::default_workers).
    pub workers: u32,
    /// `None`: detect from the interface holding `underlay_ip` at start.
    pub underlay_mtu: Option<u32>,
    /// Cap on learned MACs, per network.
    pub fdb_max_entries: usize,
    /// A learned MAC not seen for this long is forgotten.
    pub fdb_aging: Duration,
    /// Where the daemon keeps state that must survive restarts (the boot counter that keeps
    /// encryption nonces unique).
    pub state_dir: PathBuf,
}

/// `[[peer]]`: another VTEP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    pub name: String,
    pub underlay_ip: Ipv4Addr,
}

/// `[[network]]`: one overlay network (one VNI).
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkConfig {
    pub name: String,
    pub vni: Vni,
    /// In canonical form (no host bits set).
    pub subnet: Ipv4Net,
    /// `None`: derived from the underlay MTU, see `effective_mtu`.
    pub mtu: Option<u32>,
    /// Names of the peers that carry this network; every `[[peer]]` when the file says nothing.
    pub peers: Vec<String>,
    /// `Some` when `encrypted = true`.
    pub encryption: Option<EncryptionConfig>,
    /// `port_limits`: this network's ports' limits, over `[port_limits]`.
    pub port_limits: LimitSettings,
}

/// An encrypted network's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptionConfig {
    /// The network secret (32 bytes, raw or hex), mode 0600.
    pub key_file: PathBuf,
    /// How often the keys of every SA are replaced.
    pub rekey_interval: Duration,
    /// UDP port of the ESP-in-UDP packets (RFC 3948).
    pub esp_port: u16,
}

impl NetworkConfig {
    /// Bytes of encapsulation this network's frames carry on the underlay.
    pub fn overhead(&self) -> u32 {
        if self.encryption.is_some() {
            ESP_OVERHEAD
        } else {
            VXLAN_OVERHEAD
        }
    }

    /// The largest MTU that fits in the underlay once encapsulated.
    pub fn max_mtu(&self, underlay_mtu: u32) -> u32 {
        let max = underlay_mtu.saturating_sub(self.overhead());
        if self.encryption.is_some() {
            max & !3
        } else {
            max
        }
    }

    /// The MTU containers on this network get: the configured one, or the largest that fits
    /// (1450 on a 1500 underlay; 1408 when encrypted).
    pub fn effective_mtu(&self, underlay_mtu: u32) -> u32 {
        self.mtu.unwrap_or_else(|| self.max_mtu(underlay_mtu))
    }
}

/// One thing wrong with the file: which key, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// e.g. `network "blue" (network[1]).vni`
    pub key: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// TOML syntax, a missing or unknown key, a value of the wrong type: toml's own message,
    /// which keeps the line and column.
    #[error("{}: {message}", path.display())]
    Syntax { path: PathBuf, message: String },
    /// The file parses but some values are not acceptable.
    #[error("{}", ProblemList(path, problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

struct ProblemList<'a>(&'a Path, &'a [Problem]);

impl fmt::Display for ProblemList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.1.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}: {}: {}", self.0.display(), p.key, p.message)?;
        }
        Ok(())
    }
}

impl Config {
    /// Reads and validates `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_str(&text, path)
    }

    /// Parses and validates `text`; `path` is only used in messages and kept in `Config::path`.
    pub fn from_str(text: &str, path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        let path = path.as_ref().to_path_buf();
        let raw: RawFile = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.clone(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let mut p = Problems::default();

        let node = validate_node(raw.node, &mut p);
        let peers = validate_peers(raw.peer, &node, &mut p);
        let cluster = raw.cluster.map(|c| validate_cluster(c, &mut p));
        let networks = validate_networks(raw.network, &peers, cluster.is_some(), &mut p);
        let docker = raw.docker.map(|d| validate_docker(d, &mut p));
        let dns = raw.dns.map(|d| validate_dns(d, &mut p)).unwrap_or_default();
        let port_limits = raw
            .port_limits
            .map(|l| validate_limits(l, &|f| format!("port_limits.{f}"), &mut p))
            .unwrap_or_default();
        let metrics = raw.metrics.and_then(|m| validate_metrics(m, &mut p));

        let config = Config {
            path: path.clone(),
            node,
            peers,
            networks,
            cluster,
            docker,
            dns,
            port_limits,
            metrics,
        };
        if let Some(mtu) = config.node.underlay_mtu {
            config.mtu_problems(mtu, "node.underlay_mtu", &mut p);
        }
        if p.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid {
                path,
                problems: p.into_vec(),
            })
        }
    }

    /// Checks every network's MTU against the underlay MTU (from the file or detected): a
    /// configured MTU must fit in the underlay once encapsulated, and neither a configured nor a
    /// derived MTU may be below 576.
    pub fn validate_mtus(&self, underlay_mtu: u32) -> Result<(), ConfigError> {
        let mut p = Problems::default();
        let source = match self.node.underlay_mtu {
            Some(_) => "node.underlay_mtu",
            None => "detected on the underlay interface",
        };
        self.mtu_problems(underlay_mtu, source, &mut p);
        if p.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid {
                path: self.path.clone(),
                problems: p.into_vec(),
            })
        }
    }

    fn mtu_problems(&self, underlay_mtu: u32, source: &str, p: &mut Problems) {
        for (i, n) in self.networks.iter().enumerate() {
            let max = n.max_mtu(underlay_mtu);
            let overhead = n.overhead();
            let what = if n.encryption.is_some() {
                "ESP+VXLAN"
            } else {
                "VXLAN"
            };
            let key = network_key(i, &n.name, "mtu");
            match n.mtu {
                Some(mtu) if mtu > max => p.add(
                    key,
                    format!(
                        "{mtu} does not fit in the underlay: underlay MTU {underlay_mtu} ({source}) \
                         minus {overhead} bytes of {what} overhead leaves at most {max}"
                    ),
                ),
                Some(mtu) if mtu < MIN_MTU => {
                    p.add(key, format!("{mtu} is below the minimum {MIN_MTU}"))
                }
                None if max < MIN_MTU => p.add(
                    key,
                    format!(
                        "the derived MTU {max} (underlay MTU {underlay_mtu} ({source}) minus \
                         {overhead}) is below the minimum {MIN_MTU}; the underlay is too small"
                    ),
                ),
                _ => {}
            }
        }
    }

    /// What the switch core needs from this file, with MTUs derived from `underlay_mtu`.
    pub fn switch_spec(&self, underlay_mtu: u32) -> SwitchSpec {
        let peer = |name: &String| {
            self.peer(name)
                .map(|p| (p.name.clone(), VtepAddr(p.underlay_ip)))
        };
        SwitchSpec {
            networks: self
                .networks
                .iter()
                .map(|n| NetworkSpec {
                    name: n.name.clone(),
                    vni: n.vni,
                    subnet: n.subnet,
                    mtu: n.effective_mtu(underlay_mtu),
                    peers: n.peers.iter().filter_map(peer).collect(),
                    encrypted: n.encryption.is_some(),
                })
                .collect(),
            peers: self
                .peers
                .iter()
                .map(|p| (p.name.clone(), VtepAddr(p.underlay_ip)))
                .collect(),
            fdb_max_entries: self.node.fdb_max_entries,
            aging_ms: self.node.fdb_aging.as_millis() as u64,
        }
    }

    /// The limits of a port of network `name` before its attach's own options: the
    /// network's `port_limits` over `[port_limits]` (only the latter for a network not in
    /// the file, such as a cluster network).
    pub fn limits_for(&self, name: &str) -> LimitSettings {
        match self.network(name) {
            Some(n) => n.port_limits.or(self.port_limits),
            None => self.port_limits,
        }
    }

    pub fn network(&self, name: &str) -> Option<&NetworkConfig> {
        self.networks.iter().find(|n| n.name == name)
    }

    pub fn peer(&self, name: &str) -> Option<&PeerConfig> {
        self.peers.iter().find(|n| n.name == name)
    }
}
